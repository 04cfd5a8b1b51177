//! `mod.rs`: the root table with every default and every key set, durations, and the
//! file entry points. Invalid files: `tests/scenarios/invalid/{root,syntax}`.

use std::time::Duration;

use super::*;
use crate::plan::{Backoff, ConsumerKind, ProxyMode, StartPacing, Step, StepAction, SyncOp};

#[test]
fn defaults() {
    let plan = plan(MINIMAL);
    assert_eq!(plan.name, "quick");
    assert_eq!(plan.description, "");
    assert_eq!(plan.seed, 1);
    assert_eq!(plan.broker.url, None);
    assert_eq!(plan.broker.monitor_url, None);
    assert_eq!(plan.broker.max_connections, 65_536);
    assert_eq!(plan.broker.request_queue_limit, 10_000);
    assert_eq!(plan.broker.default_max_consumers, -1);
    assert!(plan.broker.reset);
    assert_eq!(plan.fleet.agents, 5);
    assert_eq!(plan.fleet.groups, 4);
    assert_eq!(plan.fleet.profile, "kanade");
    assert_eq!(plan.fleet.catalog_entries, 20);
    // The kanade profile's [client]: async-nats' defaults, as the agent ships.
    assert_eq!(plan.fleet.connect_timeout, Duration::from_secs(5));
    assert_eq!(plan.fleet.request_timeout, Duration::from_secs(10));
    assert_eq!(plan.fleet.ping_interval, Duration::from_secs(60));
    assert_eq!(plan.fleet.setup_retries, 3);
    assert_eq!(plan.broker.lame_duck_duration, Duration::from_secs(30));
    assert_eq!(plan.broker.lame_duck_grace_period, Duration::from_secs(1));
    assert_eq!(plan.fleet.reconnect, Backoff::AsyncNatsDefault);
    assert_eq!(plan.fleet.splay, None);
    assert_eq!(plan.fleet.proxy, ProxyMode::Off);
    assert_eq!(plan.fleet.read_buffer_capacity, 65535);
    assert_eq!(
        plan.fleet.exec_ack_wait, None,
        "the server's default, as the agent ships"
    );
    assert_eq!(
        plan.profile,
        crate::scenario::profile::builtin("kanade")
            .unwrap()
            .unwrap()
    );
    assert_eq!(
        plan.steps,
        [Step {
            index: 1,
            action: StepAction::Start {
                pacing: StartPacing::AllAtOnce
            }
        }]
    );
    // The default name is the file stem of the origin.
    let plan = parse_str(MINIMAL, "scenarios/power-on.toml").unwrap();
    assert_eq!(plan.name, "power-on");
}

#[test]
fn full_scenario_round_trip() {
    let text = r#"name = "full"
description = "every key set"
seed = 42

[broker]
url = "nats://127.0.0.1:4222"
monitor = "http://127.0.0.1:8222"
reset = false

[fleet]
agents = 50
groups = 3
profile = "mine"
catalog_entries = 0
connect_timeout = "2.5s"
request_timeout = "500ms"
setup_retries = 0

[profiles.mine]
consumers = [
  { name = "agent_config", watch_many = { bucket = "agent_config", keys = ["global", "pcs.{pc}", "groups.{group}"] } },
  { name = "membership", watch = { bucket = "agent_groups", key = "{pc}" } },
  { name = "jobs", watch_all = { bucket = "jobs" } },
  { name = "exec_replay", exec_replay = {} },
]
sync = [
  { get = { bucket = "agent_config", keys = ["global", "pcs.{pc}", "groups.{group}"] } },
  { walk = { bucket = "schedules" } },
]

[[steps]]
kind = "start"
mode = "spread"
over = "10s"

[[steps]]
kind = "wait_ready"

[[steps]]
kind = "hold"
duration = "1m"

[[steps]]
kind = "wait_ready"
timeout = "1h"
"#;
    let plan = plan(text);
    assert_eq!(plan.name, "full");
    assert_eq!(plan.description, "every key set");
    assert_eq!(plan.seed, 42);
    assert_eq!(plan.broker.url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert_eq!(
        plan.broker.monitor_url.as_deref(),
        Some("http://127.0.0.1:8222")
    );
    assert!(!plan.broker.reset);
    assert_eq!(plan.fleet.agents, 50);
    assert_eq!(plan.fleet.groups, 3);
    assert_eq!(plan.fleet.profile, "mine");
    assert_eq!(plan.fleet.catalog_entries, 0);
    assert_eq!(plan.fleet.connect_timeout, Duration::from_millis(2500));
    assert_eq!(plan.fleet.request_timeout, Duration::from_millis(500));
    assert_eq!(plan.fleet.setup_retries, 0);

    let own_keys = vec![key("global"), key("pcs.{pc}"), key("groups.{group}")];
    assert_eq!(plan.profile.name, "mine");
    let consumers: Vec<(&str, &ConsumerKind)> = plan
        .profile
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), &c.kind))
        .collect();
    assert_eq!(
        consumers,
        [
            (
                "agent_config",
                &ConsumerKind::WatchMany {
                    bucket: "agent_config".into(),
                    keys: own_keys.clone(),
                }
            ),
            (
                "membership",
                &ConsumerKind::Watch {
                    bucket: "agent_groups".into(),
                    key: key("{pc}"),
                }
            ),
            (
                "jobs",
                &ConsumerKind::WatchAll {
                    bucket: "jobs".into()
                }
            ),
            ("exec_replay", &ConsumerKind::ExecReplay),
        ]
    );
    let reads = [
        SyncOp::Get {
            bucket: "agent_config".into(),
            keys: own_keys,
        }
        .call(),
        SyncOp::Walk {
            bucket: "schedules".into(),
        }
        .call(),
    ];
    assert_eq!(plan.profile.on_reconnect[0].calls, reads);
    assert!(plan.profile.cold_start[0].calls.ends_with(&reads));

    let actions: Vec<(usize, StepAction)> = plan
        .steps
        .iter()
        .map(|s| (s.index, s.action.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            (
                1,
                StepAction::Start {
                    pacing: StartPacing::Spread {
                        over: Duration::from_secs(10)
                    }
                }
            ),
            (
                2,
                StepAction::WaitReady {
                    timeout: Duration::from_secs(120)
                }
            ),
            (
                3,
                StepAction::Hold {
                    duration: Duration::from_secs(60)
                }
            ),
            (
                4,
                StepAction::WaitReady {
                    timeout: Duration::from_secs(3600)
                }
            ),
        ]
    );
    assert_eq!(plan.steps[2].label(), "3:hold");
}

#[test]
fn durations() {
    let ok = [
        ("10s", Duration::from_secs(10)),
        ("1.5s", Duration::from_millis(1500)),
        ("500ms", Duration::from_millis(500)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
        ("0s", Duration::ZERO),
        ("0.1s", Duration::from_millis(100)),
        ("1.25ms", Duration::from_micros(1250)),
        ("0.5h", Duration::from_secs(1800)),
    ];
    for (text, expected) in ok {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    for bad in [
        "",
        "10",
        "s",
        ".5s",
        "1.s",
        "1.2.3s",
        "-1s",
        "5 parsecs",
        "10 s",
        "1e3s",
        "10sec",
        "1m30s",
    ] {
        assert_eq!(
            parse_duration(bad),
            Err(format!(
                "bad duration {bad:?}; use a number with a unit: 500ms, 10s, 2m, 1h"
            )),
            "{bad}"
        );
    }
    assert_eq!(
        parse_duration("99999999999999999999999h"),
        Err("duration \"99999999999999999999999h\" is too long".to_string())
    );
}

#[test]
fn read_error_names_the_path() {
    let err = parse_file(Path::new("/nonexistent/quick.toml")).unwrap_err();
    assert!(matches!(err, ScenarioError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot read scenario /nonexistent/quick.toml: "),
        "{err}"
    );
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = parse_file(&path) {
                panic!("{e}");
            }
        }
    }
}

#[test]
fn a_problem_renders_on_one_line() {
    let problem = Problem {
        file: "q.toml".into(),
        line: 3,
        key: "fleet.profile".into(),
        message: "a control character\nslipped\tthrough".into(),
    };
    assert_eq!(
        problem.to_string(),
        r"q.toml:3: fleet.profile: a control character\nslipped\tthrough"
    );
}
