//! `steps.rs`: every step kind with its defaults and with every key set. Invalid steps:
//! `tests/scenarios/invalid/steps`.

use std::time::Duration;

use super::*;
use crate::plan::{
    CutMode, ExecTarget, FaultTarget, ProxyMode, StartPacing, Step, StepAction, StopSignal,
    Trigger, WriteLoad, WriteRetry, WriteTarget,
};

#[test]
fn rate_mode() {
    let text = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\nmode = \"rate\"\nrate = 200\n";
    assert_eq!(
        plan(text).steps[0].action,
        StepAction::Start {
            pacing: StartPacing::Rate { per_second: 200 }
        }
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
                    refuse_for: Duration::ZERO,
                    mode: CutMode::Reset,
                    target: FaultTarget::All,
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
                    refuse_for: Duration::from_secs(5),
                    mode: CutMode::Reset,
                    target: FaultTarget::All,
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
        retry: WriteRetry::Never,
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
fn key_write_steps_name_a_bucket_of_the_profile_and_a_key_template() {
    let text = r#"[fleet]
agents = 5
profile = "zester"

[[steps]]
kind = "start"

[[steps]]
kind = "write"
target = "key"
bucket = "settings-files"
key = "{pc}"
value_size = 5120
count = 5
"#;
    assert_eq!(
        after_start(text),
        [StepAction::Write {
            target: WriteTarget::Key {
                bucket: "settings-files".into(),
                key: key("{pc}"),
            },
            load: WriteLoad {
                value_size: 5120,
                ..load(10.0, 5)
            },
        }]
    );
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
retry = "until_acked"

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
                    retry: WriteRetry::UntilAcked,
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
                    retry: WriteRetry::Never,
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
