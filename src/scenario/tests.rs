use std::time::Duration;

use super::*;
use crate::plan::{
    Backoff, ConsumerKind, KeyTemplate, ProxyMode, Splay, SplayPlacement, StartPacing, Step,
    StepAction, StopSignal, SyncOp, Trigger,
};
use crate::plan::{ExecTarget, WriteLoad, WriteTarget};

/// The problems of `text` as displayed, one string each.
fn problems(text: &str) -> Vec<String> {
    match parse_str(text, "quick.toml") {
        Ok(plan) => panic!("expected problems, got a plan: {plan:?}"),
        Err(ScenarioError::Invalid(problems)) => problems.iter().map(Problem::to_string).collect(),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn plan(text: &str) -> Plan {
    parse_str(text, "quick.toml").unwrap_or_else(|e| panic!("expected a plan, got:\n{e}"))
}

fn key(k: &str) -> KeyTemplate {
    KeyTemplate(k.to_string())
}

const MINIMAL: &str = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";

#[test]
fn unknown_key_lists_the_allowed_keys() {
    let text = r#"name = "quick"

[fleet]
agents = 5

[[steps]]
kind = "start"
agnets = 3
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:8: steps[1].agnets: unknown key; allowed: kind, mode, rate, over, timeout, duration, target, agents, count, value_size, drain_timeout, background, agent, consumer, recover_timeout, signal, downtime, refuse_for, command, command_timeout"
        ]
    );
    let text = "[fleet]\nagents = 5\nagnets = 5\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            "quick.toml:3: fleet.agnets: unknown key; allowed: agents, groups, profile, catalog_entries, connect_timeout, request_timeout, setup_retries, reconnect_base, reconnect_cap, reconnect_jitter, splay, splay_placement, splay_on_start, proxy, read_buffer_capacity, exec_ack_wait"
        ]
    );
}

#[test]
fn bad_duration_says_the_allowed_form() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "hold"
duration = "5 parsecs"
"#;
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:9: steps[2].duration: bad duration "5 parsecs"; use a number with a unit: 500ms, 10s, 2m, 1h"#
        ]
    );
}

#[test]
fn negative_agent_count() {
    let text = "name = \"q\"\n\n[fleet]\nagents = -5\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        ["quick.toml:4: fleet.agents: must be a positive whole number, got -5"]
    );
    let text = "[fleet]\nagents = 0\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        ["quick.toml:2: fleet.agents: must be a positive whole number, got 0"]
    );
    let text = "[fleet]\nagents = \"50\"\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [r#"quick.toml:2: fleet.agents: must be a positive whole number, got string "50""#]
    );
}

#[test]
fn missing_agents_points_at_the_fleet_table() {
    let text = "name = \"q\"\n\n[fleet]\ngroups = 2\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        ["quick.toml:3: fleet.agents: required: the number of agents, a positive whole number"]
    );
    // No [fleet] at all: a file-level problem, at line 1.
    let text = "name = \"q\"\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        ["quick.toml:1: fleet.agents: required: the number of agents, a positive whole number"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"name = "quick"

[fleet]
agents = -5
groups = 2

[[steps]]
kind = "start"
agnets = 3

[[steps]]
kind = "hold"
duration = "5 parsecs"
"#;
    let err = parse_str(text, "quick.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "quick.toml:4: fleet.agents: must be a positive whole number, got -5\n\
         quick.toml:9: steps[1].agnets: unknown key; allowed: kind, mode, rate, over, timeout, duration, target, agents, count, value_size, drain_timeout, background, agent, consumer, recover_timeout, signal, downtime, refuse_for, command, command_timeout\n\
         quick.toml:13: steps[2].duration: bad duration \"5 parsecs\"; use a number with a unit: 500ms, 10s, 2m, 1h"
    );
    let ScenarioError::Invalid(list) = err else {
        panic!("not Invalid")
    };
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0],
        Problem {
            file: "quick.toml".into(),
            line: 4,
            key: "fleet.agents".into(),
            message: "must be a positive whole number, got -5".into(),
        }
    );
}

#[test]
fn syntax_error_is_one_problem_with_its_line() {
    let text = "name = \"q\"\n\n[fleet\nagents = 5\n";
    let found = problems(text);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("quick.toml:3: invalid TOML: "),
        "{found:?}"
    );
    let text = "[fleet]\nagents = 5\nagents = 6\n";
    assert_eq!(
        problems(text),
        ["quick.toml:3: invalid TOML: duplicate key"]
    );
}

#[test]
fn builtin_kanade_profile() {
    let kanade = profile::builtin("kanade")
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
    let kanade = profile::builtin("kanade").unwrap().unwrap();
    let legacy = profile::builtin("legacy")
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
    assert!(profile::builtin("other").is_none());
}

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
    assert_eq!(plan.fleet.connect_timeout, Duration::from_secs(10));
    assert_eq!(plan.fleet.request_timeout, Duration::from_secs(10));
    assert_eq!(plan.fleet.setup_retries, 3);
    assert_eq!(plan.broker.lame_duck_duration, Duration::from_secs(30));
    assert_eq!(plan.broker.lame_duck_grace_period, Duration::from_secs(1));
    assert_eq!(plan.fleet.reconnect, Backoff::AsyncNatsDefault);
    assert_eq!(plan.fleet.splay, None);
    assert_eq!(plan.fleet.proxy, ProxyMode::Off);
    assert_eq!(plan.fleet.read_buffer_capacity, 8192);
    assert_eq!(
        plan.fleet.exec_ack_wait, None,
        "the server's default, as the agent ships"
    );
    assert_eq!(plan.profile, profile::builtin("kanade").unwrap().unwrap());
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
    assert_eq!(
        plan.profile.sync,
        [
            SyncOp::Get {
                bucket: "agent_config".into(),
                keys: own_keys,
            },
            SyncOp::Walk {
                bucket: "schedules".into()
            },
        ]
    );

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
fn embedded_broker_limits() {
    let text = "[broker]\nmax_connections = 20000\nrequest_queue_limit = 500\ndefault_max_consumers = 1000\n\n\
                [fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";
    let plan = plan(text);
    assert_eq!(plan.broker.max_connections, 20_000);
    assert_eq!(plan.broker.request_queue_limit, 500);
    assert_eq!(plan.broker.default_max_consumers, 1000);
}

#[test]
fn broker_problems() {
    let text = r#"[broker]
url = "http://127.0.0.1:4222"
monitor = "127.0.0.1:8222"
max_connections = 0
default_max_consumers = 0
reset = "yes"

[fleet]
agents = 5

[[steps]]
kind = "start"
"#;
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:2: broker.url: must start with nats:// or tls://, got "http://127.0.0.1:4222""#,
            r#"quick.toml:3: broker.monitor: must start with http:// or https://, got "127.0.0.1:8222""#,
            "quick.toml:4: broker.max_connections: max_connections only applies to the embedded broker (no url)",
            "quick.toml:4: broker.max_connections: must be a positive whole number, got 0",
            "quick.toml:5: broker.default_max_consumers: default_max_consumers only applies to the embedded broker (no url)",
            "quick.toml:5: broker.default_max_consumers: must be -1 (unlimited) or a positive whole number, got 0",
            r#"quick.toml:6: broker.reset: expected true or false, got string "yes""#,
        ]
    );
    let text = "[broker]\nmonitor = \"http://h:8222\"\n\n[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            "quick.toml:2: broker.monitor: monitor only applies with url (an external broker); the embedded broker's is known"
        ]
    );
}

#[test]
fn read_buffer_capacity_is_set_within_async_nats_range() {
    let text = "[fleet]\nagents = 5\nread_buffer_capacity = 65535\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(plan(text).fleet.read_buffer_capacity, 65535);
    for (value, message) in [
        ("65536", "must be at most 65535, got 65536"),
        (
            "100",
            "must be a whole number of bytes from 512 to 65535 (async-nats' default), got 100",
        ),
    ] {
        let text = format!(
            "[fleet]\nagents = 5\nread_buffer_capacity = {value}\n\n[[steps]]\nkind = \"start\"\n"
        );
        assert_eq!(
            problems(&text),
            [format!(
                "quick.toml:3: fleet.read_buffer_capacity: {message}"
            )]
        );
    }
}

#[test]
fn fleet_problems() {
    let text = r#"[fleet]
agents = 2.5
groups = 0
catalog_entries = -1
connect_timeout = 10
request_timeout = "0s"
setup_retries = true
exec_ack_wait = "0s"

[[steps]]
kind = "start"
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:2: fleet.agents: must be a positive whole number, got float 2.5",
            "quick.toml:3: fleet.groups: must be a positive whole number, got 0",
            "quick.toml:4: fleet.catalog_entries: must be zero or a positive whole number, got -1",
            r#"quick.toml:5: fleet.connect_timeout: expected a duration such as "10s", got 10"#,
            "quick.toml:6: fleet.request_timeout: must be longer than 0s",
            "quick.toml:7: fleet.setup_retries: must be zero or a positive whole number, got boolean true",
            "quick.toml:8: fleet.exec_ack_wait: must be longer than 0s (leave it out for the server's default, 30s)",
        ]
    );
    let plan =
        plan("[fleet]\nagents = 2\nexec_ack_wait = \"12s\"\n\n[[steps]]\nkind = \"start\"\n");
    assert_eq!(plan.fleet.exec_ack_wait, Some(Duration::from_secs(12)));
}

#[test]
fn top_level_problems() {
    let text = "name = \"\"\nseed = -1\nfleets = 3\n\n[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            "quick.toml:1: name: must not be empty",
            "quick.toml:2: seed: must be zero or a positive whole number, got -1",
            "quick.toml:3: fleets: unknown key; allowed: name, description, seed, broker, fleet, profiles, steps, variants, repeat, thresholds",
        ]
    );
    let text = "fleet = 5\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        ["quick.toml:1: fleet: expected a table ([fleet]), got 5"]
    );
}

#[test]
fn rate_mode_requires_rate() {
    let text = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\nmode = \"rate\"\n";
    assert_eq!(
        problems(text),
        [
            "quick.toml:6: steps[1].rate: required with mode = \"rate\": agents per second, a positive whole number"
        ]
    );
    let text = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\nmode = \"rate\"\nrate = 0\n";
    assert_eq!(
        problems(text),
        ["quick.toml:7: steps[1].rate: must be a positive whole number (agents per second), got 0"]
    );
    let text = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\nmode = \"rate\"\nrate = 200\n";
    assert_eq!(
        plan(text).steps[0].action,
        StepAction::Start {
            pacing: StartPacing::Rate { per_second: 200 }
        }
    );
}

#[test]
fn keys_that_do_not_apply() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "start"
rate = 200
over = "5s"
timeout = "5s"

[[steps]]
kind = "hold"
duration = "1s"
mode = "rate"

[[steps]]
kind = "start"
mode = "spread"
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:6: steps[1].rate: rate only applies to mode = \"rate\"",
            "quick.toml:7: steps[1].over: over only applies to mode = \"spread\"",
            "quick.toml:8: steps[1].timeout: timeout only applies to kind = \"wait_ready\"",
            "quick.toml:13: steps[2].mode: mode only applies to kind = \"start\"",
            "quick.toml:16: steps[3].kind: only one start step: steps[1] already starts every agent",
            "quick.toml:17: steps[3].over: required with mode = \"spread\": a duration such as \"10s\"",
        ]
    );
}

#[test]
fn step_order_and_kinds() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "wait_ready"

[[steps]]
mode = "rate"

[[steps]]
kind = "sleep"

[[steps]]
kind = "hold"

[[steps]]
kind = "start"
mode = "fast"
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:5: steps[1].kind: wait_ready before any start step; put a step with kind = \"start\" first",
            "quick.toml:7: steps[2].kind: required; one of start, wait_ready, hold, write, exec, drop_consumer, broker_restart, network_cut, lame_duck, client_reconnect, command",
            "quick.toml:11: steps[3].kind: unknown step kind \"sleep\"; use one of start, wait_ready, hold, write, exec, drop_consumer, broker_restart, network_cut, lame_duck, client_reconnect, command",
            "quick.toml:14: steps[4].duration: required for kind = \"hold\": a duration such as \"5s\"",
            "quick.toml:18: steps[5].mode: unknown mode \"fast\"; use one of all_at_once, rate, spread",
        ]
    );
}

#[test]
fn at_least_one_step() {
    let required =
        "steps: at least one step is required; add a [[steps]] table with kind = \"start\"";
    assert_eq!(
        problems("[fleet]\nagents = 5\n"),
        [format!("quick.toml:1: {required}")]
    );
    assert_eq!(
        problems("steps = []\n\n[fleet]\nagents = 5\n"),
        [format!("quick.toml:1: {required}")]
    );
    assert_eq!(
        problems("[fleet]\nagents = 5\n\n[steps]\nkind = \"start\"\n"),
        ["quick.toml:4: steps: expected an array of tables ([[steps]]), got a table"]
    );
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
        Profile {
            name: "slim".into(),
            consumers: vec![crate::plan::ConsumerSpec {
                name: "cfg".into(),
                kind: ConsumerKind::Watch {
                    bucket: "agent_config".into(),
                    key: key("pcs.{pc}"),
                },
            }],
            sync: vec![SyncOp::Get {
                bucket: "agent_config".into(),
                keys: vec![key("pcs.{pc}")],
            }],
        }
    );
    // A built-in is still chosen by name when the file defines others.
    let text = text.replace("profile = \"slim\"", "profile = \"legacy\"");
    assert_eq!(parse_str(&text, "q.toml").unwrap().profile.name, "legacy");
}

#[test]
fn profile_problems() {
    let text = r#"[fleet]
agents = 5
profile = "mine"

[profiles.kanade]
consumers = []

[profiles.mine]
consumers = [
  { name = "a", watch = { bucket = "agent_cfg", key = "{host}" } },
  { name = "a", watch_all = { bucket = "jobs" }, watch = { bucket = "jobs", key = "x" } },
  { name = "b" },
  { name = "c", exec_replay = { durable = "x" } },
  { name = "d", watch_many = { bucket = "jobs", keys = ["x", "x", "a b"] } },
  { name = "e", exec_replay = {} },
  { name = "f", exec_replay = {} },
]
sync = [
  { get = { bucket = "jobs", keys = [] }, walk = { bucket = "jobs" } },
  { walk = { bucket = "jobs", keys = ["x"] } },
  { get = { bucket = "jobs", keys = ["pcs.*"] } },
  { fetch = {} },
]
colour = "red"

[[steps]]
kind = "start"
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:5: profiles.kanade: built-in profile name; choose another name",
            r#"quick.toml:10: profiles.mine.consumers[1].watch.bucket: unknown bucket "agent_cfg"; allowed: agent_config, agent_groups, schedules, jobs, fleet_config"#,
            r#"quick.toml:10: profiles.mine.consumers[1].watch.key: key "{host}": unknown placeholder {host}; only {pc} and {group} are allowed"#,
            r#"quick.toml:11: profiles.mine.consumers[2].name: duplicate consumer name "a"; consumers[1] already uses it"#,
            "quick.toml:11: profiles.mine.consumers[2]: has watch and watch_all; use exactly one of watch, watch_many, watch_all, exec_replay",
            "quick.toml:12: profiles.mine.consumers[3]: needs one of watch, watch_many, watch_all, exec_replay",
            "quick.toml:13: profiles.mine.consumers[4].exec_replay.durable: unknown key; this table takes no keys",
            r#"quick.toml:14: profiles.mine.consumers[5].watch_many.keys[2]: duplicate key "x""#,
            r#"quick.toml:14: profiles.mine.consumers[5].watch_many.keys[3]: key "a b": character ' ' is not allowed; use letters, digits, - / _ = . and the placeholders {pc} and {group}, or the wildcards * and >"#,
            "quick.toml:15: profiles.mine.consumers[6].exec_replay: consumers[4] is already exec_replay; a profile has at most one (both would be the durable agent_replay_<pc>)",
            "quick.toml:16: profiles.mine.consumers[7].exec_replay: consumers[4] is already exec_replay; a profile has at most one (both would be the durable agent_replay_<pc>)",
            "quick.toml:19: profiles.mine.sync[1].get.keys: needs at least one key",
            "quick.toml:19: profiles.mine.sync[1]: has get and walk; use exactly one of get, walk",
            "quick.toml:20: profiles.mine.sync[2].walk.keys: unknown key; allowed: bucket",
            r#"quick.toml:21: profiles.mine.sync[3].get.keys[1]: key "pcs.*": character '*' is not allowed; use letters, digits, - / _ = . and the placeholders {pc} and {group}"#,
            "quick.toml:22: profiles.mine.sync[4].fetch: unknown key; allowed: get, walk",
            "quick.toml:22: profiles.mine.sync[4]: needs one of get, walk",
            "quick.toml:24: profiles.mine.colour: unknown key; allowed: consumers, sync",
        ]
    );
}

#[test]
fn unknown_profile() {
    let text = "[fleet]\nagents = 5\nprofile = \"kanda\"\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:3: fleet.profile: unknown profile "kanda"; use kanade or legacy, or define [profiles.kanda]"#
        ]
    );
    let text = "[fleet]\nagents = 5\nprofile = \"x\"\n\n[profiles.a]\n[profiles.b]\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:3: fleet.profile: unknown profile "x"; use kanade, legacy, or one of this file's [profiles]: a, b"#
        ]
    );
}

/// The actions of `plan`'s steps after its first (the start).
fn herd_actions(plan: &Plan) -> Vec<StepAction> {
    plan.steps[1..].iter().map(|s| s.action.clone()).collect()
}

fn herd(trigger: Trigger, recover_secs: u64) -> StepAction {
    StepAction::Herd {
        trigger,
        recover_timeout: Duration::from_secs(recover_secs),
    }
}

#[test]
fn herd_steps_with_their_defaults() {
    let text = r#"[fleet]
agents = 5
proxy = true

[[steps]]
kind = "start"

[[steps]]
kind = "broker_restart"

[[steps]]
kind = "network_cut"

[[steps]]
kind = "lame_duck"

[[steps]]
kind = "client_reconnect"

[[steps]]
kind = "command"
command = "docker restart nats"
"#;
    let plan = plan(text);
    assert_eq!(plan.fleet.proxy, ProxyMode::InProcess);
    assert_eq!(
        herd_actions(&plan),
        [
            herd(
                Trigger::BrokerRestart {
                    signal: StopSignal::Kill,
                    downtime: Duration::from_secs(1),
                },
                120
            ),
            herd(
                Trigger::NetworkCut {
                    refuse_for: Duration::ZERO
                },
                120
            ),
            herd(Trigger::LameDuck, 120),
            herd(Trigger::ClientReconnect, 120),
            herd(
                Trigger::Command {
                    command: "docker restart nats".into(),
                    timeout: Duration::from_secs(60),
                },
                120
            ),
        ]
    );
    let labels: Vec<String> = plan.steps.iter().map(Step::label).collect();
    assert_eq!(
        labels,
        [
            "1:start",
            "2:broker_restart",
            "3:network_cut",
            "4:lame_duck",
            "5:client_reconnect",
            "6:command"
        ]
    );
}

#[test]
fn herd_steps_with_every_key_set() {
    let text = r#"[broker]
lame_duck_duration = "45s"
lame_duck_grace_period = "0s"

[fleet]
agents = 5
proxy = true

[[steps]]
kind = "start"

[[steps]]
kind = "broker_restart"
signal = "term"
downtime = "0s"
recover_timeout = "3m"

[[steps]]
kind = "network_cut"
refuse_for = "5s"
recover_timeout = "30s"

[[steps]]
kind = "lame_duck"
recover_timeout = "200s"

[[steps]]
kind = "client_reconnect"
recover_timeout = "10s"

[[steps]]
kind = "command"
command = "docker restart nats"
command_timeout = "2m"
recover_timeout = "1h"
"#;
    let plan = plan(text);
    assert_eq!(plan.broker.lame_duck_duration, Duration::from_secs(45));
    assert_eq!(plan.broker.lame_duck_grace_period, Duration::ZERO);
    assert_eq!(
        herd_actions(&plan),
        [
            herd(
                Trigger::BrokerRestart {
                    signal: StopSignal::Term,
                    downtime: Duration::ZERO,
                },
                180
            ),
            herd(
                Trigger::NetworkCut {
                    refuse_for: Duration::from_secs(5)
                },
                30
            ),
            herd(Trigger::LameDuck, 200),
            herd(Trigger::ClientReconnect, 10),
            herd(
                Trigger::Command {
                    command: "docker restart nats".into(),
                    timeout: Duration::from_secs(120),
                },
                3600
            ),
        ]
    );
}

#[test]
fn command_and_client_reconnect_run_against_an_external_broker() {
    let text = r#"[broker]
url = "nats://10.0.0.5:4222"

[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "command"
command = "ssh nats1 systemctl restart nats-server"

[[steps]]
kind = "client_reconnect"
"#;
    let plan = plan(text);
    assert_eq!(plan.steps.len(), 3);
}

#[test]
fn reconnect_backoff() {
    let fleet = |keys: &str| {
        plan(&format!(
            "[fleet]\nagents = 5\n{keys}\n\n[[steps]]\nkind = \"start\"\n"
        ))
        .fleet
        .reconnect
    };
    let exponential = |base: u64, cap: u64, jitter: f64| Backoff::Exponential {
        base: Duration::from_millis(base),
        cap: Duration::from_millis(cap),
        jitter,
    };
    assert_eq!(fleet(""), Backoff::AsyncNatsDefault);
    // Any one key set: the others take their defaults (100ms, 4s, 0).
    assert_eq!(
        fleet("reconnect_jitter = 0.25"),
        exponential(100, 4000, 0.25)
    );
    assert_eq!(fleet("reconnect_jitter = 0"), exponential(100, 4000, 0.0));
    assert_eq!(
        fleet("reconnect_base = \"1s\"\nreconnect_cap = \"30s\"\nreconnect_jitter = 0.5"),
        exponential(1000, 30_000, 0.5)
    );
    assert_eq!(
        fleet("reconnect_base = \"250ms\"\nreconnect_cap = \"250ms\""),
        exponential(250, 250, 0.0)
    );
    // A base past the default cap raises the cap to it.
    assert_eq!(
        fleet("reconnect_base = \"10s\""),
        exponential(10_000, 10_000, 0.0)
    );
}

#[test]
fn reconnect_problems() {
    let text = r#"[fleet]
agents = 5
reconnect_base = "2s"
reconnect_cap = "500ms"
reconnect_jitter = 1

[[steps]]
kind = "start"
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:4: fleet.reconnect_cap: must be at least reconnect_base (2s): the cap is the longest wait, got 500ms",
            "quick.toml:5: fleet.reconnect_jitter: must be a fraction in [0, 1), e.g. 0.25 for ±25 %, got 1",
        ]
    );
    // The default base counts too; a wrong base is not compared with.
    let text = "[fleet]\nagents = 5\nreconnect_cap = \"50ms\"\nreconnect_jitter = -0.1\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            "quick.toml:3: fleet.reconnect_cap: must be at least reconnect_base (100ms): the cap is the longest wait, got 50ms",
            "quick.toml:4: fleet.reconnect_jitter: must be a fraction in [0, 1), e.g. 0.25 for ±25 %, got -0.1",
        ]
    );
    let text = "[fleet]\nagents = 5\nreconnect_base = \"0s\"\nreconnect_cap = \"50ms\"\nreconnect_jitter = \"0.25\"\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            "quick.toml:3: fleet.reconnect_base: must be longer than 0s",
            r#"quick.toml:5: fleet.reconnect_jitter: must be a fraction in [0, 1), e.g. 0.25 for ±25 %, got string "0.25""#,
        ]
    );
}

#[test]
fn splay() {
    let fleet = |keys: &str| {
        plan(&format!(
            "[fleet]\nagents = 5\n{keys}\n\n[[steps]]\nkind = \"start\"\n"
        ))
        .fleet
        .splay
    };
    assert_eq!(fleet(""), None);
    assert_eq!(fleet("splay = \"0s\""), None);
    assert_eq!(
        fleet("splay = \"5s\""),
        Some(Splay {
            window: Duration::from_secs(5),
            placement: SplayPlacement::BeforeGets,
            on_start: false,
        })
    );
    assert_eq!(
        fleet("splay = \"5m\"\nsplay_placement = \"reopen_watches\"\nsplay_on_start = true"),
        Some(Splay {
            window: Duration::from_secs(300),
            placement: SplayPlacement::ReopenWatches,
            on_start: true,
        })
    );
    assert_eq!(
        fleet("splay = \"1500ms\"\nsplay_placement = \"reconnect_delay\""),
        Some(Splay {
            window: Duration::from_millis(1500),
            placement: SplayPlacement::ReconnectDelay,
            on_start: false,
        })
    );
    assert_eq!(
        fleet("splay = \"2s\"\nsplay_placement = \"before_gets\"")
            .unwrap()
            .placement,
        SplayPlacement::BeforeGets
    );
}

#[test]
fn splay_problems() {
    let text = r#"[fleet]
agents = 5
splay_placement = "reopen_watches"
splay_on_start = true

[[steps]]
kind = "start"
"#;
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:3: fleet.splay_placement: splay_placement only applies with splay > 0 (e.g. splay = "5s")"#,
            r#"quick.toml:4: fleet.splay_on_start: splay_on_start only applies with splay > 0 (e.g. splay = "5s")"#,
        ]
    );
    let text = "[fleet]\nagents = 5\nsplay = \"0s\"\nsplay_on_start = false\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:4: fleet.splay_on_start: splay_on_start only applies with splay > 0 (e.g. splay = "5s")"#
        ]
    );
    let text = r#"[fleet]
agents = 5
splay = "10m"
splay_placement = "after_gets"
splay_on_start = "yes"

[[steps]]
kind = "start"
"#;
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:3: fleet.splay: must be at most 5m, got 600s; the splay spreads a fleet's re-sync over a few seconds ("0s" is off)"#,
            r#"quick.toml:4: fleet.splay_placement: unknown splay_placement "after_gets"; use one of before_gets, reopen_watches, reconnect_delay"#,
            r#"quick.toml:5: fleet.splay_on_start: expected true or false, got string "yes""#,
        ]
    );
}

#[test]
fn lame_duck_settings() {
    let text = r#"[broker]
url = "nats://127.0.0.1:4222"
lame_duck_duration = "30s"
lame_duck_grace_period = "1s"

[fleet]
agents = 5
proxy = "yes"

[[steps]]
kind = "start"
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:3: broker.lame_duck_duration: lame_duck_duration only applies to the embedded broker (no url)",
            "quick.toml:4: broker.lame_duck_grace_period: lame_duck_grace_period only applies to the embedded broker (no url)",
            r#"quick.toml:8: fleet.proxy: expected true (the proxy inside fleetsim's process, also "in_process"), "process" (the proxy as its own process, for bigger fleets) or false, got string "yes""#,
        ]
    );
    let text = "[broker]\nlame_duck_duration = \"5s\"\nlame_duck_grace_period = \"-1s\"\n\n[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n";
    assert_eq!(
        problems(text),
        [
            "quick.toml:2: broker.lame_duck_duration: must be at least 30s (nats-server refuses a shorter lame_duck_duration), got 5s",
            r#"quick.toml:3: broker.lame_duck_grace_period: bad duration "-1s"; use a number with a unit: 500ms, 10s, 2m, 1h"#,
        ]
    );
}

const NEEDS_PROXY: &str = "network_cut needs the fault proxy between agents and broker; set proxy = true (inside fleetsim's process) or proxy = \"process\" (its own process) in [fleet]";

#[test]
fn proxy_is_off_in_process_or_its_own_process() {
    let with = |value: &str| MINIMAL.replace("agents = 5", &format!("agents = 5\nproxy = {value}"));
    assert_eq!(plan(MINIMAL).fleet.proxy, ProxyMode::Off);
    assert_eq!(plan(&with("false")).fleet.proxy, ProxyMode::Off);
    assert_eq!(plan(&with("true")).fleet.proxy, ProxyMode::InProcess);
    assert_eq!(
        plan(&with("\"in_process\"")).fleet.proxy,
        ProxyMode::InProcess
    );
    assert_eq!(plan(&with("\"process\"")).fleet.proxy, ProxyMode::Process);
    let expected = "expected true (the proxy inside fleetsim's process, also \"in_process\"), \"process\" (the proxy as its own process, for bigger fleets) or false";
    assert_eq!(
        problems(&with("\"processes\"")),
        [format!(
            "quick.toml:3: fleet.proxy: {expected}, got string \"processes\""
        )]
    );
    assert_eq!(
        problems(&with("1")),
        [format!("quick.toml:3: fleet.proxy: {expected}, got 1")]
    );
    // network_cut runs with the proxy in its own process too.
    let cut = format!(
        "{}\n[[steps]]\nkind = \"network_cut\"\nrefuse_for = \"2s\"\n",
        with("\"process\"")
    );
    assert_eq!(plan(&cut).steps.len(), 2);
    // A variant may switch the mode, checked at its own line.
    let ab = format!(
        "{cut}\n[[variants]]\nname = \"a\"\n[[variants]]\nname = \"b\"\nfleet = {{ proxy = \"elsewhere\" }}\n"
    );
    let found = problems(&ab);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("quick.toml:16: variants[2].fleet.proxy: expected true"),
        "{found:?}"
    );
}

#[test]
fn network_cut_needs_the_proxy() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "network_cut"
refuse_for = "5s"
"#;
    assert_eq!(
        problems(text),
        [format!("quick.toml:8: steps[2].kind: {NEEDS_PROXY}")]
    );
    let text = text.replace("agents = 5", "agents = 5\nproxy = false");
    assert_eq!(
        problems(&text),
        [format!("quick.toml:9: steps[2].kind: {NEEDS_PROXY}")]
    );
}

#[test]
fn broker_restart_and_lame_duck_need_the_embedded_broker() {
    let text = r#"[broker]
url = "nats://127.0.0.1:4222"

[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "broker_restart"

[[steps]]
kind = "lame_duck"
"#;
    let external = "needs the embedded broker, but [broker] url is set: fleetsim can only restart a broker it owns; for an external broker use kind = \"command\" (e.g. docker restart nats)";
    assert_eq!(
        problems(text),
        [
            format!("quick.toml:11: steps[2].kind: broker_restart {external}"),
            format!("quick.toml:14: steps[3].kind: lame_duck {external}"),
        ]
    );
    // An invalid url still asks for an external broker.
    let text = text.replace("nats://", "http://");
    assert_eq!(problems(&text).len(), 3);
}

#[test]
fn herd_step_before_start() {
    let text = r#"[fleet]
agents = 5
proxy = true

[[steps]]
kind = "client_reconnect"

[[steps]]
kind = "network_cut"

[[steps]]
kind = "start"
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:6: steps[1].kind: client_reconnect before any start step; put a step with kind = \"start\" first",
            "quick.toml:9: steps[2].kind: network_cut before any start step; put a step with kind = \"start\" first",
        ]
    );
}

#[test]
fn herd_step_problems() {
    let text = r#"[fleet]
agents = 5
proxy = true

[[steps]]
kind = "start"

[[steps]]
kind = "broker_restart"
signal = "hup"
refuse_for = "5s"
downtime = "-1s"

[[steps]]
kind = "command"
timeout = "5s"
recover_timeout = "0s"

[[steps]]
kind = "command"
command = "  "
command_timeout = "0s"

[[steps]]
kind = "hold"
duration = "1s"
recover_timeout = "10s"
signal = "kill"

[[steps]]
kind = "network_cut"
downtime = "1s"
command = "true"
"#;
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:10: steps[2].signal: unknown signal "hup"; use kill (SIGKILL: a crash) or term (SIGTERM: a graceful shutdown)"#,
            r#"quick.toml:11: steps[2].refuse_for: refuse_for only applies to kind = "network_cut""#,
            r#"quick.toml:12: steps[2].downtime: bad duration "-1s"; use a number with a unit: 500ms, 10s, 2m, 1h"#,
            r#"quick.toml:15: steps[3].command: required for kind = "command": the command line to run with sh -c, such as "docker restart nats""#,
            r#"quick.toml:16: steps[3].timeout: timeout only applies to kind = "wait_ready""#,
            "quick.toml:17: steps[3].recover_timeout: must be longer than 0s",
            r#"quick.toml:21: steps[4].command: must not be empty; the command line to run with sh -c, such as "docker restart nats""#,
            "quick.toml:22: steps[4].command_timeout: must be longer than 0s",
            "quick.toml:27: steps[5].recover_timeout: recover_timeout only applies to the herd kinds: broker_restart, network_cut, lame_duck, client_reconnect, command",
            r#"quick.toml:28: steps[5].signal: signal only applies to kind = "broker_restart""#,
            r#"quick.toml:32: steps[6].downtime: downtime only applies to kind = "broker_restart""#,
            r#"quick.toml:33: steps[6].command: command only applies to kind = "command""#,
        ]
    );
}

/// The actions of every step after the first (the `start`).
fn after_start(text: &str) -> Vec<StepAction> {
    plan(text).steps[1..]
        .iter()
        .map(|s| s.action.clone())
        .collect()
}

fn load(rate: f64, count: u64) -> WriteLoad {
    WriteLoad {
        rate,
        count,
        value_size: 64,
        drain_timeout: Duration::from_secs(10),
        background: false,
    }
}

#[test]
fn write_steps_with_their_defaults() {
    let mut text = String::from("[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n");
    let targets = [
        ("pc", WriteTarget::Pc),
        ("pc_each", WriteTarget::PcEach),
        ("group", WriteTarget::Group),
        ("global", WriteTarget::Global),
        ("jobs", WriteTarget::Jobs),
        ("schedules", WriteTarget::Schedules),
        ("freeze", WriteTarget::Freeze),
    ];
    for (name, _) in &targets {
        text.push_str(&format!(
            "\n[[steps]]\nkind = \"write\"\ntarget = \"{name}\"\n"
        ));
    }
    let expected: Vec<StepAction> = targets
        .into_iter()
        .map(|(_, target)| StepAction::Write {
            target,
            load: load(10.0, 10),
        })
        .collect();
    assert_eq!(after_start(&text), expected);
}

#[test]
fn write_steps_with_every_key_set() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "write"
target = "pcs"
agents = [0, 4, 4]
rate = 2.5
count = 7
value_size = 1024
drain_timeout = "30s"
background = true

[[steps]]
kind = "write"
target = "jobs"
rate = 50
duration = "1.5s"
value_size = 32

[[steps]]
kind = "write"
target = "pc"
rate = 0.1
duration = "30s"

[[steps]]
kind = "write"
target = "global"
rate = 3
duration = "500ms"
value_size = 1048576
"#;
    assert_eq!(
        after_start(text),
        [
            StepAction::Write {
                target: WriteTarget::Pcs {
                    agents: vec![0, 4, 4]
                },
                load: WriteLoad {
                    rate: 2.5,
                    count: 7,
                    value_size: 1024,
                    drain_timeout: Duration::from_secs(30),
                    background: true,
                },
            },
            // rate × duration
            StepAction::Write {
                target: WriteTarget::Jobs,
                load: WriteLoad {
                    value_size: 32,
                    ..load(50.0, 75)
                },
            },
            // 0.1 × 30 is 3.0000000000000004 in floating point: still 3 writes.
            StepAction::Write {
                target: WriteTarget::Pc,
                load: load(0.1, 3),
            },
            // ceil(3 × 0.5) = 2
            StepAction::Write {
                target: WriteTarget::Global,
                load: WriteLoad {
                    value_size: 1_048_576,
                    ..load(3.0, 2)
                },
            },
        ]
    );
}

#[test]
fn exec_steps() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "exec"
target = "all"

[[steps]]
kind = "exec"
target = "pc"
count = 3

[[steps]]
kind = "exec"
target = "group"
rate = 20
duration = "2s"
value_size = 128
drain_timeout = "1s"
background = true
"#;
    assert_eq!(
        after_start(text),
        [
            StepAction::Exec {
                target: ExecTarget::All,
                load: load(10.0, 10),
            },
            StepAction::Exec {
                target: ExecTarget::Pc,
                load: load(10.0, 3),
            },
            StepAction::Exec {
                target: ExecTarget::Group,
                load: WriteLoad {
                    rate: 20.0,
                    count: 40,
                    value_size: 128,
                    drain_timeout: Duration::from_secs(1),
                    background: true,
                },
            },
        ]
    );
}

#[test]
fn drop_consumer_steps() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "drop_consumer"
agent = 4
consumer = "jobs"

[[steps]]
kind = "drop_consumer"
agent = 0
consumer = "exec_replay"
"#;
    assert_eq!(
        after_start(text),
        [
            StepAction::DropConsumer {
                agent: 4,
                consumer: "jobs".to_string(),
            },
            StepAction::DropConsumer {
                agent: 0,
                consumer: "exec_replay".to_string(),
            },
        ]
    );
    // A consumer of a custom profile.
    let text = r#"[fleet]
agents = 2
profile = "tiny"

[profiles.tiny]
consumers = [{ name = "cfg", watch_all = { bucket = "agent_config" } }]

[[steps]]
kind = "start"

[[steps]]
kind = "drop_consumer"
agent = 1
consumer = "cfg"
"#;
    assert_eq!(
        after_start(text),
        [StepAction::DropConsumer {
            agent: 1,
            consumer: "cfg".to_string(),
        }]
    );
}

#[test]
fn write_step_problems() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "write"
target = "pc"
count = 10
duration = "5s"

[[steps]]
kind = "write"
target = "pcs"

[[steps]]
kind = "write"
target = "pcs"
agents = [1, 5, "2", -1]

[[steps]]
kind = "write"
target = "everyone"

[[steps]]
kind = "write"
target = "global"
agents = [1]

[[steps]]
kind = "write"
target = "pcs"
agents = []
rate = 0
value_size = 16
drain_timeout = "0s"

[[steps]]
kind = "write"
count = 0
value_size = 2000000
background = "yes"

[[steps]]
kind = "exec"
target = "pcs"
agents = [1]
rate = -2.5
duration = "0s"
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:11: steps[2].duration: count and duration are alternatives; give count (the number of writes) or duration (count = rate × duration), not both",
            r#"quick.toml:15: steps[3].agents: required with target = "pcs": the 0-based indexes of the agents to write to, such as [0, 3]"#,
            "quick.toml:20: steps[4].agents[2]: agent index 5 is out of range; fleet.agents is 5, so indexes run from 0 to 4",
            r#"quick.toml:20: steps[4].agents[3]: must be a 0-based agent index (a whole number), got string "2""#,
            "quick.toml:20: steps[4].agents[4]: must be a 0-based agent index (a whole number), got -1",
            r#"quick.toml:24: steps[5].target: unknown write target "everyone"; use one of pc, pc_each, pcs, group, global, jobs, schedules, freeze"#,
            r#"quick.toml:29: steps[6].agents: agents only applies to target = "pcs""#,
            "quick.toml:34: steps[7].agents: must not be empty; list the 0-based indexes of the agents to write to, such as [0, 3]",
            "quick.toml:35: steps[7].rate: must be a positive number (writes per second), got 0",
            "quick.toml:36: steps[7].value_size: must be a whole number of bytes from 32 to 1048576, got 16",
            "quick.toml:37: steps[7].drain_timeout: must be longer than 0s",
            r#"quick.toml:40: steps[8].target: required for kind = "write": one of pc, pc_each, pcs, group, global, jobs, schedules, freeze"#,
            "quick.toml:41: steps[8].count: must be a positive whole number (the number of writes), got 0",
            "quick.toml:42: steps[8].value_size: must be at most 1048576, got 2000000",
            r#"quick.toml:43: steps[8].background: expected true or false, got string "yes""#,
            r#"quick.toml:47: steps[9].target: unknown exec target "pcs"; use one of pc, group, all"#,
            r#"quick.toml:48: steps[9].agents: agents only applies to kind = "write""#,
            "quick.toml:49: steps[9].rate: must be a positive number (commands per second), got -2.5",
            "quick.toml:50: steps[9].duration: must be longer than 0s",
        ]
    );
}

#[test]
fn drop_consumer_problems() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "drop_consumer"
agent = 5
consumer = "agent_cfg"

[[steps]]
kind = "drop_consumer"
target = "pc"

[[steps]]
kind = "drop_consumer"
agent = "first"
consumer = 3
"#;
    assert_eq!(
        problems(text),
        [
            "quick.toml:9: steps[2].agent: agent index 5 is out of range; fleet.agents is 5, so indexes run from 0 to 4",
            r#"quick.toml:10: steps[2].consumer: unknown consumer "agent_cfg"; profile kanade has: agent_config, groups_config, groups_subs, schedules, jobs, freeze, exec_replay"#,
            r#"quick.toml:13: steps[3].agent: required for kind = "drop_consumer": the 0-based index of the agent whose consumer stops"#,
            r#"quick.toml:13: steps[3].consumer: required for kind = "drop_consumer": the name of a consumer of the profile; profile kanade has: agent_config, groups_config, groups_subs, schedules, jobs, freeze, exec_replay"#,
            r#"quick.toml:14: steps[3].target: target only applies to the kinds: write, exec"#,
            r#"quick.toml:18: steps[4].agent: must be a 0-based agent index (a whole number), got string "first""#,
            "quick.toml:19: steps[4].consumer: expected a string, got 3",
        ]
    );
    // An unknown profile is its own problem; its consumers are not guessed at.
    let text = r#"[fleet]
agents = 5
profile = "nope"

[[steps]]
kind = "start"

[[steps]]
kind = "drop_consumer"
agent = 1
consumer = "jobs"
"#;
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:3: fleet.profile: unknown profile "nope"; use kanade or legacy, or define [profiles.nope]"#
        ]
    );
}

#[test]
fn write_kinds_before_start_and_shared_keys() {
    let text = r#"[fleet]
agents = 5

[[steps]]
kind = "write"
target = "jobs"

[[steps]]
kind = "exec"
target = "all"

[[steps]]
kind = "drop_consumer"
agent = 0
consumer = "jobs"

[[steps]]
kind = "start"
duration = "5s"

[[steps]]
kind = "wait_ready"
rate = 5
count = 3

[[steps]]
kind = "hold"
duration = "1s"
rate = 5
"#;
    assert_eq!(
        problems(text),
        [
            r#"quick.toml:5: steps[1].kind: write before any start step; put a step with kind = "start" first"#,
            r#"quick.toml:9: steps[2].kind: exec before any start step; put a step with kind = "start" first"#,
            r#"quick.toml:13: steps[3].kind: drop_consumer before any start step; put a step with kind = "start" first"#,
            "quick.toml:19: steps[4].duration: duration only applies to the kinds: hold, write, exec",
            "quick.toml:23: steps[5].rate: rate only applies to the kinds: start, write, exec",
            "quick.toml:24: steps[5].count: count only applies to the kinds: write, exec",
            "quick.toml:29: steps[6].rate: rate only applies to the kinds: start, write, exec",
        ]
    );
    // Agent indexes are not checked against a fleet size that is itself wrong.
    let text = r#"[fleet]
agents = 0

[[steps]]
kind = "start"

[[steps]]
kind = "write"
target = "pcs"
agents = [7]
"#;
    assert_eq!(
        problems(text),
        ["quick.toml:2: fleet.agents: must be a positive whole number, got 0"]
    );
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

const AB: &str = r#"name = "ab"
repeat = 3

[fleet]
agents = 5
splay_placement_unused = 1

[[variants]]
name = "off"

[[variants]]
name = "on"
[variants.fleet]
splay = "5s"
profile = "legacy"

[[steps]]
kind = "start"
"#;

#[test]
fn variants_override_fleet_settings_and_keep_the_rest() {
    let text = AB.replace("splay_placement_unused = 1\n", "groups = 2\n");
    let ab = plan(&text);
    assert_eq!(ab.repeat, 3);
    let names: Vec<&str> = ab.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["off", "on"]);
    let (off, on) = (&ab.variants[0].plan, &ab.variants[1].plan);
    assert_eq!(off.fleet.splay, None);
    assert_eq!(off.profile.name, "kanade");
    assert_eq!(
        on.fleet.splay.as_ref().map(|s| s.window),
        Some(Duration::from_secs(5))
    );
    assert_eq!(on.profile.name, "legacy");
    // Not overridden: inherited from [fleet].
    assert_eq!((off.fleet.agents, on.fleet.groups), (5, 2));
    assert!(on.variants.is_empty() && on.steps.len() == 1);
}

#[test]
fn a_bad_value_in_a_variant_is_reported_at_its_own_line_once() {
    let text = AB
        .replace("splay = \"5s\"", "splay = \"5 parsecs\"\nagnets = 3")
        .replace("splay_placement_unused = 1\n", "");
    assert_eq!(
        problems(&text),
        [
            "quick.toml:13: variants[2].fleet.splay: bad duration \"5 parsecs\"; use a number with a unit: 500ms, 10s, 2m, 1h",
            "quick.toml:14: variants[2].fleet.agnets: unknown key; allowed: agents, groups, profile, catalog_entries, connect_timeout, request_timeout, setup_retries, reconnect_base, reconnect_cap, reconnect_jitter, splay, splay_placement, splay_on_start, proxy, read_buffer_capacity, exec_ack_wait",
        ]
    );
    // A mistake in the file itself is reported once, not once per variant.
    let text = AB.replace("splay_placement_unused", "agnets");
    assert_eq!(problems(&text).len(), 1, "{:?}", problems(&text));
}

#[test]
fn variant_names_must_be_present_distinct_and_plain_and_there_must_be_two() {
    let text = AB
        .replace("name = \"on\"", "name = \"off\"")
        .replace("splay_placement_unused = 1\n", "");
    assert_eq!(
        problems(&text),
        ["quick.toml:11: variants[2].name: variant name \"off\" is used twice; names must differ"]
    );
    let text = AB
        .replace("name = \"on\"", "name = \"on air\"")
        .replace("splay_placement_unused = 1\n", "");
    assert!(problems(&text)[0].contains("bad variant name \"on air\""));
    let one = "[fleet]\nagents = 5\n\n[[variants]]\nname = \"a\"\n\n[[steps]]\nkind = \"start\"\n";
    assert!(problems(one)[0].contains("needs at least two variants, got 1"));
    let huge = format!("repeat = 1000\n{MINIMAL}");
    assert_eq!(
        problems(&huge),
        ["quick.toml:1: repeat: must be at most 100, got 1000"]
    );
}

#[test]
fn repeat_without_variants_repeats_the_file_as_one_variant() {
    let text = format!("repeat = 3\n{MINIMAL}");
    let repeated = plan(&text);
    assert_eq!(repeated.repeat, 3);
    assert_eq!(repeated.variants.len(), 1);
    assert_eq!(repeated.variants[0].name, "default");
    assert!(plan(MINIMAL).variants.is_empty());
}

const GATED: &str = r#"[fleet]
agents = 5

[[steps]]
kind = "start"

[[steps]]
kind = "broker_restart"
"#;

#[test]
fn thresholds_are_parsed_with_their_lines_and_compare_settings() {
    let text = format!(
        "{GATED}\n[thresholds]\nchecks = [\n  \"ready.p99 < 5s\",\n  \"recovery[2:broker_restart].p100 < 30s\",\n  \"consumer_create.jobs.max <= 2s\",\n]\ntolerance = \"15%\"\ntolerances = {{ \"recovery.p99\" = \"25%\", \"consumer_create.*\" = \"50%\" }}\nfloor = \"10ms\"\ncompare = [\"ready\", \"recovery\"]\n"
    );
    let plan = plan(&text);
    let t = &plan.thresholds;
    let texts: Vec<(&str, usize)> = t.checks.iter().map(|c| (c.text.as_str(), c.line)).collect();
    assert_eq!(
        texts,
        [
            ("ready.p99 < 5s", 12),
            ("recovery[2:broker_restart].p100 < 30s", 13),
            ("consumer_create.jobs.max <= 2s", 14),
        ]
    );
    assert_eq!(t.baseline.tolerance, Some(0.15));
    assert_eq!(
        t.baseline.tolerances,
        [
            ("consumer_create.*".to_string(), 0.5),
            ("recovery.p99".to_string(), 0.25)
        ]
    );
    assert_eq!(t.baseline.floor_ms, Some(10.0));
    assert_eq!(t.baseline.metrics, ["ready", "recovery"]);
    assert!(plan.variants.is_empty());
}

#[test]
fn every_bad_threshold_is_reported_at_its_line() {
    let text = format!(
        "{GATED}\n[thresholds]\nchecks = [\n  \"ready.p99 < 5s\",\n  \"ready.p99 < 5\",\n  \"raedy.p99 < 5s\",\n  \"recovery[7].p100 < 30s\",\n  42,\n]\nready = [\"p99 < 5s\"]\ntolerance = \"10\"\ntolerances = {{ \"nope.p99\" = \"5%\" }}\ncompare = [\"ready.p98\"]\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 8, "{found:#?}");
    let expect = [
        "quick.toml:13: thresholds.checks[2]: ready.p99 is a latency: give the limit a unit",
        "quick.toml:14: thresholds.checks[3]: unknown metric \"raedy\"",
        "quick.toml:15: thresholds.checks[4]: no phase \"7\" in this scenario; use a label (0:setup, 1:start, 2:broker_restart)",
        "quick.toml:16: thresholds.checks[5]: expected a check string",
        "quick.toml:18: thresholds.ready: unknown key; allowed: checks, tolerance, tolerances, floor, compare",
        "quick.toml:19: thresholds.tolerance: bad percentage \"10\"",
        "quick.toml:20: thresholds.tolerances.\"nope.p99\": unknown metric \"nope\"",
        "quick.toml:21: thresholds.compare[1]: unknown metric \"ready.p98\"",
    ];
    for (problem, expected) in found.iter().zip(expect) {
        assert!(
            problem.starts_with(expected),
            "{problem}\n  expected {expected}"
        );
    }
}

#[test]
fn variants_get_the_files_checks_and_their_own() {
    let text = r#"repeat = 2

[fleet]
agents = 5

[[steps]]
kind = "start"

[thresholds]
checks = ["ready.p99 < 5s"]

[[variants]]
name = "a"
thresholds = ["consumer_create.jobs.p99 < 1s"]

[[variants]]
name = "b"
fleet = { profile = "legacy" }
"#;
    let plan = plan(text);
    assert_eq!(plan.thresholds.checks.len(), 1);
    let checks = |i: usize| -> Vec<&str> {
        plan.variants[i]
            .plan
            .thresholds
            .checks
            .iter()
            .map(|c| c.text.as_str())
            .collect()
    };
    assert_eq!(
        checks(0),
        ["ready.p99 < 5s", "consumer_create.jobs.p99 < 1s"]
    );
    assert_eq!(checks(1), ["ready.p99 < 5s"]);

    let bad = text.replace("consumer_create.jobs.p99", "consumer_create.nope.p99");
    let found = problems(&bad);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "quick.toml:14: variants[1].thresholds[1]: unknown metric \"consumer_create.nope\""
        ),
        "{found:?}"
    );
}

#[test]
fn repeat_without_variants_carries_the_checks() {
    let text = format!("repeat = 3\n{GATED}\n[thresholds]\nchecks = [\"recovery.p100 < 30s\"]\n");
    let plan = plan(&text);
    assert_eq!(plan.variants.len(), 1);
    assert_eq!(plan.variants[0].plan.thresholds, plan.thresholds);
}
