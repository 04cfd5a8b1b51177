//! `profile.rs`: the built-in profiles and `[profiles.<name>]`. Invalid profiles:
//! `tests/scenarios/invalid/profile`.

use super::*;
use crate::plan::{ConsumerKind, SyncOp};

#[test]
fn builtin_kanade_profile() {
    let kanade = crate::scenario::profile::builtin("kanade")
        .unwrap()
        .expect("kanade.toml has no problems");
    assert_eq!(kanade.name, "kanade");
    let kinds: Vec<(&str, &ConsumerKind)> = kanade
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), &c.kind))
        .collect();
    let own_keys = vec![key("global"), key("pcs.{pc}"), key("groups.{group}")];
    assert_eq!(
        kinds,
        [
            (
                "agent_config",
                &ConsumerKind::WatchMany {
                    bucket: "agent_config".into(),
                    keys: own_keys.clone(),
                }
            ),
            (
                "groups_config",
                &ConsumerKind::Watch {
                    bucket: "agent_groups".into(),
                    key: key("{pc}"),
                }
            ),
            (
                "groups_subs",
                &ConsumerKind::Watch {
                    bucket: "agent_groups".into(),
                    key: key("{pc}"),
                }
            ),
            (
                "schedules",
                &ConsumerKind::WatchAll {
                    bucket: "schedules".into()
                }
            ),
            (
                "jobs",
                &ConsumerKind::WatchAll {
                    bucket: "jobs".into()
                }
            ),
            (
                "freeze",
                &ConsumerKind::Watch {
                    bucket: "fleet_config".into(),
                    key: key("freeze"),
                }
            ),
            ("exec_replay", &ConsumerKind::ExecReplay),
        ]
    );
    assert_eq!(
        kanade.sync,
        [
            SyncOp::Get {
                bucket: "agent_config".into(),
                keys: own_keys,
            },
            SyncOp::Get {
                bucket: "agent_groups".into(),
                keys: vec![key("{pc}")],
            },
            SyncOp::Get {
                bucket: "fleet_config".into(),
                keys: vec![key("freeze")],
            },
            SyncOp::Walk {
                bucket: "schedules".into()
            },
            SyncOp::Walk {
                bucket: "jobs".into()
            },
        ]
    );
}

#[test]
fn builtin_legacy_profile_differs_only_in_agent_config() {
    let kanade = crate::scenario::profile::builtin("kanade")
        .unwrap()
        .unwrap();
    let legacy = crate::scenario::profile::builtin("legacy")
        .unwrap()
        .expect("legacy.toml has no problems");
    assert_eq!(legacy.name, "legacy");
    assert_eq!(legacy.consumers.len(), 7);
    assert_eq!(legacy.consumers[0].name, "agent_config");
    assert_eq!(
        legacy.consumers[0].kind,
        ConsumerKind::WatchAll {
            bucket: "agent_config".into()
        }
    );
    assert_eq!(legacy.consumers[1..], kanade.consumers[1..]);
    assert_eq!(
        legacy.sync[0],
        SyncOp::Walk {
            bucket: "agent_config".into()
        }
    );
    assert_eq!(legacy.sync[1..], kanade.sync[1..]);
    assert!(crate::scenario::profile::builtin("other").is_none());
}

#[test]
fn custom_profile() {
    let text = r#"[fleet]
agents = 5
profile = "slim"

[profiles.slim]
consumers = [{ name = "cfg", watch = { bucket = "agent_config", key = "pcs.{pc}" } }]
sync = [{ get = { bucket = "agent_config", keys = ["pcs.{pc}"] } }]

[profiles.unused]
consumers = [{ name = "all", watch_all = { bucket = "jobs" } }]

[[steps]]
kind = "start"
"#;
    let plan = plan(text);
    assert_eq!(plan.fleet.profile, "slim");
    assert_eq!(
        plan.profile,
        Profile::simple(
            "slim",
            vec![crate::plan::ConsumerSpec {
                name: "cfg".into(),
                kind: ConsumerKind::Watch {
                    bucket: "agent_config".into(),
                    key: key("pcs.{pc}"),
                },
            }],
            vec![SyncOp::Get {
                bucket: "agent_config".into(),
                keys: vec![key("pcs.{pc}")],
            }],
        )
    );
    // A built-in is still chosen by name when the file defines others.
    let text = text.replace("profile = \"slim\"", "profile = \"legacy\"");
    assert_eq!(parse_str(&text, "q.toml").unwrap().profile.name, "legacy");
}
