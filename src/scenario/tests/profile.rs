//! `profile/`: the built-in profiles and `[profiles.<name>]`. Invalid profiles:
//! `tests/scenarios/invalid/profile`.

use std::time::Duration;

use super::*;
use crate::plan::{Backoff, Call, ConsumerKind, SyncOp, Task, kanade_buckets};

fn builtin(name: &str) -> Profile {
    crate::scenario::profile::builtin(name)
        .unwrap()
        .unwrap_or_else(|problems| panic!("{name}: {}", render(&problems)))
}

/// The calls of every task of a list, flattened.
fn calls(tasks: &[Task]) -> Vec<&Call> {
    tasks.iter().flat_map(|t| &t.calls).collect()
}

/// Calls that send a `STREAM.INFO`: every `bind` and `stream_info`.
fn stream_infos(tasks: &[Task]) -> usize {
    calls(tasks)
        .into_iter()
        .filter(|c| matches!(c, Call::Bind { .. } | Call::StreamInfo { .. }))
        .count()
}

fn slot(profile: &Profile, name: &str) -> usize {
    profile
        .consumers
        .iter()
        .position(|c| c.name == name)
        .unwrap()
}

/// The problems of a scenario that must be rejected, as `line: key: message`.
fn problems(text: &str) -> Vec<String> {
    match parse_str(text, "p.toml") {
        Ok(_) => panic!("expected problems, the scenario parses"),
        Err(ScenarioError::Invalid(problems)) => problems
            .iter()
            .map(|p| p.to_string().trim_start_matches("p.toml:").to_string())
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

/// A scenario running profile `mine`, with `body` as its table's lines.
fn with_profile(body: &str) -> String {
    format!(
        "[fleet]\nagents = 2\nprofile = \"mine\"\n\n[[steps]]\nkind = \"start\"\n\n[profiles.mine]\n{body}"
    )
}

/// Asserts one problem contains `needle`.
fn assert_problem(text: &str, needle: &str) {
    let found = problems(text);
    assert!(
        found.iter().any(|p| p.contains(needle)),
        "no problem contains {needle:?}:\n{}",
        found.join("\n")
    );
}

#[test]
fn builtin_kanade_consumers_are_the_seven_each_opened_once() {
    let kanade = builtin("kanade");
    assert_eq!(kanade.name, "kanade");
    let own_keys = vec![key("global"), key("pcs.{pc}"), key("groups.{group}")];
    let names: Vec<&str> = kanade.consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "agent_config",
            "groups_config",
            "groups_subs",
            "schedules",
            "jobs",
            "freeze",
            "exec_replay"
        ]
    );
    assert_eq!(
        kanade.consumers[0].kind,
        ConsumerKind::WatchMany {
            bucket: "agent_config".into(),
            keys: own_keys,
        }
    );
    assert_eq!(kanade.consumers[6].kind, ConsumerKind::ExecReplay);
    for slot in 0..kanade.consumers.len() {
        let opens = calls(&kanade.cold_start)
            .into_iter()
            .filter(|c| **c == Call::Open { slot })
            .count();
        assert_eq!(opens, 1, "{}", kanade.consumers[slot].name);
    }
}

#[test]
fn builtin_kanade_cold_start_binds_15_plus_2g() {
    let kanade = builtin("kanade");
    let names: Vec<&str> = kanade.cold_start.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "main",
            "config_supervisor",
            "services",
            "groups",
            "command_replay",
            "local_scheduler",
            "groups_change",
            "freeze_watch",
            "command_loops"
        ]
    );
    // One group per agent: 15 + 2 × 1.
    assert_eq!(stream_infos(&kanade.cold_start), 17);
    // The two per group are the groups task's command_loop binds.
    let groups = &kanade.cold_start[3];
    assert!(groups.calls.contains(&Call::Subscribe {
        subject: key("commands.group.{group}")
    }));
    assert_eq!(stream_infos(std::slice::from_ref(groups)), 3);
    assert!(kanade.cold_start[0].blocking);
    assert!(kanade.cold_start[1..].iter().all(|t| !t.blocking));
    // jobs walked before schedules, then the groups-triggered schedules walk.
    let walks: Vec<&Call> = calls(&kanade.cold_start)
        .into_iter()
        .filter(|c| matches!(c, Call::Walk { .. }))
        .collect();
    let walk = |b: &str| Call::Walk { bucket: b.into() };
    assert_eq!(
        walks,
        [&walk("jobs"), &walk("schedules"), &walk("schedules")]
    );
}

#[test]
fn builtin_kanade_reconnect_walks_schedules_only_after_a_groups_replay() {
    let kanade = builtin("kanade");
    assert_eq!(kanade.on_reconnect.len(), 1);
    let reconnect = calls(&kanade.on_reconnect);
    assert!(
        !reconnect.iter().any(|c| matches!(c, Call::Get { .. })),
        "no get at a reconnect: no kanade code reacts to Connected"
    );
    assert_eq!(
        reconnect,
        [
            &Call::WaitDelivery {
                slot: slot(&kanade, "groups_subs"),
                within: Duration::from_secs(30),
            },
            &Call::Bind {
                bucket: "schedules".into()
            },
            &Call::Walk {
                bucket: "schedules".into()
            },
        ]
    );
}

#[test]
fn builtin_kanade_buckets_streams_publishes_client() {
    let kanade = builtin("kanade");
    let mut expected = kanade_buckets();
    for name in ["script_current", "script_status"] {
        expected.push(crate::plan::BucketSpec {
            name: name.into(),
            history: 1,
            ttl: None,
            seed: vec![crate::plan::KeyTemplate("script".into())],
            value_size: 0,
        });
    }
    assert_eq!(kanade.buckets, expected);
    let streams: Vec<&str> = kanade.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(streams, ["OBS_EVENTS", "RESULTS", "EVENTS"]);
    // Per command: the checks' two gets, then the started event and the result, acked.
    let kinds: Vec<&str> = kanade
        .on_command
        .iter()
        .map(|c| match c {
            Call::Get { .. } => "get",
            Call::Publish { ack: true, .. } => "acked publish",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["get", "get", "acked publish", "acked publish"]);
    let publishes: Vec<(&str, u64, bool, bool)> = kanade
        .publishes
        .iter()
        .map(|p| (p.name.as_str(), p.every.as_secs(), p.ack, p.at_start))
        .collect();
    assert_eq!(
        publishes,
        [
            ("heartbeat", 30, false, true),
            ("host_perf", 60, false, true),
            ("obs", 1728, true, true),
        ]
    );
    assert_eq!(
        kanade.client,
        crate::plan::ClientOptions {
            connect_timeout: Some(Duration::from_secs(5)),
            request_timeout: Some(Duration::from_secs(10)),
            read_buffer_capacity: Some(65535),
            ping_interval: Some(Duration::from_secs(60)),
            reconnect: Some(Backoff::AsyncNatsDefault),
            async_nats: Some(crate::plan::AsyncNats::V0_50),
        }
    );
}

#[test]
fn builtin_legacy_differs_only_in_agent_config() {
    let kanade = builtin("kanade");
    let legacy = builtin("legacy");
    assert_eq!(legacy.name, "legacy");
    assert_eq!(
        legacy.consumers[0].kind,
        ConsumerKind::WatchAll {
            bucket: "agent_config".into()
        }
    );
    assert_eq!(legacy.consumers[1..], kanade.consumers[1..]);
    let supervisor = &legacy.cold_start[1];
    assert_eq!(supervisor.name, "config_supervisor");
    assert_eq!(
        supervisor.calls[2],
        Call::Walk {
            bucket: "agent_config".into()
        }
    );
    let others = |p: &Profile| -> Vec<Task> {
        p.cold_start
            .iter()
            .filter(|t| t.name != "config_supervisor")
            .cloned()
            .collect()
    };
    assert_eq!(others(&legacy), others(&kanade));
    assert_eq!(legacy.on_reconnect, kanade.on_reconnect);
    assert_eq!(stream_infos(&legacy.cold_start), 17);
    assert_eq!(
        (
            &legacy.buckets,
            &legacy.streams,
            &legacy.publishes,
            &legacy.client
        ),
        (
            &kanade.buckets,
            &kanade.streams,
            &kanade.publishes,
            &kanade.client
        )
    );
    assert!(crate::scenario::profile::builtin("other").is_none());
}

#[test]
fn builtin_zester_pins_seed_001s_buckets_publishes_and_client() {
    let zester = builtin("zester");
    assert_eq!(zester.name, "zester");
    let day = 24 * 3600;
    let buckets: Vec<(&str, i64, Option<u64>)> = zester
        .buckets
        .iter()
        .map(|b| (b.name.as_str(), b.history, b.ttl.map(|t| t.as_secs())))
        .collect();
    // Seed 001's "KV Bucket Tuning" table, row by row.
    assert_eq!(
        buckets,
        [
            ("facts", 5, None),
            ("settings-files", 3, None),
            ("secrets", 3, None),
            ("basket", 1, None),
            ("jobs", 10, Some(7 * day)),
            ("job-returns", 1, Some(7 * day)),
            ("master-heartbeat", 1, Some(15)),
            ("enrollments", 10, None),
            ("enroll-challenges", 1, Some(300)),
            ("state-files", 3, None),
            ("update-manifests", 5, None),
            ("update-status", 1, Some(60)),
            ("update-rollouts", 10, None),
        ]
    );
    let sizes = |name: &str| {
        let b = zester.buckets.iter().find(|b| b.name == name).unwrap();
        (b.seed.clone(), b.value_size)
    };
    // The settings push's ~5 KB and the state apply's ~10 KB per peel.
    assert_eq!(sizes("settings-files"), (vec![key("{pc}")], 5120));
    assert_eq!(sizes("state-files"), (vec![key("{pc}")], 10240));
    // Facts are written by the peels' fact syncs, not seeded.
    assert_eq!(sizes("facts"), (Vec::new(), 0));
    assert_eq!(zester.streams.len(), 1);
    assert_eq!(zester.streams[0].name, "job-events");
    // Heartbeat ~100 B/s; fact sync ~2 KB every 5 minutes, an acked KV put.
    let publishes: Vec<(&str, &str, u64, usize, bool)> = zester
        .publishes
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.subject.0.as_str(),
                p.every.as_secs(),
                p.size,
                p.ack,
            )
        })
        .collect();
    assert_eq!(
        publishes,
        [
            ("heartbeat", "zester.heartbeat.{pc}", 1, 100, false),
            ("facts", "$KV.facts.{pc}", 300, 2048, true),
        ]
    );
    assert_eq!(zester.publishes[1].jitter, 0.2);
    // ReconnectWait 2 s with jitter, PingInterval 20 s; the rest [fleet]'s defaults.
    assert_eq!(
        zester.client,
        crate::plan::ClientOptions {
            ping_interval: Some(Duration::from_secs(20)),
            reconnect: Some(Backoff::Exponential {
                base: Duration::from_secs(2),
                cap: Duration::from_secs(2),
                jitter: 0.05,
            }),
            async_nats: Some(crate::plan::AsyncNats::V0_51),
            ..Default::default()
        }
    );
    // Four watches, each opened once; nothing of its own after a reconnect.
    let watched: Vec<(&str, Option<&str>)> = zester
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), c.kind.bucket()))
        .collect();
    assert_eq!(
        watched,
        [
            ("settings", Some("settings-files")),
            ("secrets", Some("secrets")),
            ("state", Some("state-files")),
            ("jobs", Some("jobs")),
        ]
    );
    for slot in 0..zester.consumers.len() {
        let opens = calls(&zester.cold_start)
            .into_iter()
            .filter(|c| **c == Call::Open { slot })
            .count();
        assert_eq!(opens, 1, "{}", zester.consumers[slot].name);
    }
    assert_eq!(stream_infos(&zester.cold_start), 6);
    assert!(zester.on_reconnect.is_empty());
}

#[test]
fn an_acked_publish_to_a_declared_buckets_kv_subject_needs_no_stream() {
    let body = r#"[[profiles.mine.buckets]]
name = "facts"
[[profiles.mine.publishes]]
name = "facts"
subject = "$KV.facts.{pc}"
every = "5m"
ack = true
"#;
    parse_str(&with_profile(body), "p.toml").unwrap();
    // Another bucket's subject is still not captured.
    let other = body.replace("$KV.facts.{pc}", "$KV.other.{pc}");
    assert_problem(
        &with_profile(&other),
        "no stream captures \"$KV.other.{pc}\"",
    );
}

#[test]
fn custom_profile_in_the_simple_form() {
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

#[test]
fn simple_form_takes_buckets_streams_publishes_and_client() {
    let plan = plan(&with_profile(
        r#"client = { ping_interval = "20s" }
buckets = [{ name = "cfg", history = 3, ttl = "1h", seed = ["{pc}", "e-{n}"], value_size = 100 }]
streams = [{ name = "EV", subjects = ["ev.>"], max_age = "2h" }]
consumers = [{ name = "c", watch = { bucket = "cfg", key = "{pc}" } }]
sync = [{ walk = { bucket = "cfg" } }]
publishes = [{ name = "ev", subject = "ev.{pc}", every = "5s", jitter = 0.5, size = 10, ack = true, first = "after_period" }]
"#,
    ));
    let p = &plan.profile;
    assert_eq!(p.cold_start.len(), 1);
    assert_eq!(
        p.buckets,
        [crate::plan::BucketSpec {
            name: "cfg".into(),
            history: 3,
            ttl: Some(Duration::from_secs(3600)),
            seed: vec![key("{pc}"), key("e-{n}")],
            value_size: 100,
        }]
    );
    assert_eq!(p.streams[0].max_age, Some(Duration::from_secs(7200)));
    assert_eq!(
        p.publishes[0],
        crate::plan::PublishSpec {
            name: "ev".into(),
            subject: key("ev.{pc}"),
            every: Duration::from_secs(5),
            jitter: 0.5,
            size: 10,
            ack: true,
            at_start: false,
        }
    );
    assert_eq!(plan.fleet.ping_interval, Duration::from_secs(20));
}

const TASKS: &str = r#"consumers = [
  { name = "cfg", watch = { bucket = "agent_config", key = "pcs.{pc}" } },
  { name = "replay", exec_replay = {} },
]

[[profiles.mine.cold_start]]
task = "a"
blocking = true
calls = [{ subscribe = "x.{pc}" }, { flush = true }]

[[profiles.mine.cold_start]]
task = "b"
calls = [
  { bind = "agent_config" },
  { get = { bucket = "agent_config", keys = ["pcs.{pc}"] } },
  { open = "cfg" },
  { signal = "ready" },
]

[[profiles.mine.cold_start]]
task = "c"
calls = [{ wait = "ready" }, { stream_info = "EXEC" }, { open = "replay" }, { walk = "jobs" }, { flush = {} }]

[[profiles.mine.on_reconnect]]
task = "r"
calls = [{ wait_delivery = "cfg" }, { walk = "agent_config" }]
"#;

#[test]
fn task_form_reads_every_call() {
    let plan = plan(&with_profile(TASKS));
    let p = &plan.profile;
    assert_eq!(p.buckets, kanade_buckets(), "none declared: the kanade set");
    assert_eq!(
        p.cold_start,
        [
            Task {
                name: "a".into(),
                blocking: true,
                calls: vec![
                    Call::Subscribe {
                        subject: key("x.{pc}")
                    },
                    Call::Flush
                ],
            },
            Task {
                name: "b".into(),
                blocking: false,
                calls: vec![
                    Call::Bind {
                        bucket: "agent_config".into()
                    },
                    Call::Get {
                        bucket: "agent_config".into(),
                        keys: vec![key("pcs.{pc}")]
                    },
                    Call::Open { slot: 0 },
                    Call::Signal {
                        name: "ready".into()
                    },
                ],
            },
            Task {
                name: "c".into(),
                blocking: false,
                calls: vec![
                    Call::Wait {
                        name: "ready".into()
                    },
                    Call::StreamInfo {
                        stream: "EXEC".into()
                    },
                    Call::Open { slot: 1 },
                    Call::Walk {
                        bucket: "jobs".into()
                    },
                    Call::Flush,
                ],
            },
        ]
    );
    assert_eq!(
        p.on_reconnect[0].calls,
        [
            Call::WaitDelivery {
                slot: 0,
                within: Duration::from_secs(30)
            },
            Call::Walk {
                bucket: "agent_config".into()
            },
        ]
    );
}

#[test]
fn sync_and_tasks_are_not_mixed() {
    let text = with_profile(&TASKS.replace(
        "consumers = [",
        "sync = [{ walk = { bucket = \"jobs\" } }]\nconsumers = [",
    ));
    assert_problem(
        &text,
        "use [[sync]] (the simple form) or [[cold_start]]/[[on_reconnect]] (tasks), not both",
    );
}

#[test]
fn every_consumer_is_opened_exactly_once_at_cold_start() {
    let never = with_profile(&TASKS.replace("{ open = \"replay\" }, ", ""));
    assert_problem(
        &never,
        "consumer \"replay\" is never opened; add { open = \"replay\" }",
    );
    let twice = with_profile(&TASKS.replace("{ flush = true }", "{ open = \"cfg\" }"));
    assert_problem(
        &twice,
        "consumer \"cfg\" is already opened by profiles.mine.cold_start[1].calls[2]",
    );
    let reconnect =
        with_profile(&TASKS.replace("{ walk = \"agent_config\" }", "{ open = \"cfg\" }"));
    assert_problem(
        &reconnect,
        "open in [[on_reconnect]]: async-nats recreates the watches",
    );
    let unknown = with_profile(&TASKS.replace("{ open = \"cfg\" }", "{ open = \"cgf\" }"));
    assert_problem(&unknown, "unknown consumer \"cgf\"; use one of cfg, replay");
}

#[test]
fn every_wait_has_a_signal_that_can_come() {
    let missing = with_profile(&TASKS.replace("{ signal = \"ready\" }", "{ signal = \"go\" }"));
    assert_problem(&missing, "no task of this list signals \"ready\"");
    // The only signal later in the waiting task: a deadlock.
    let later = with_profile(&TASKS.replace(
        "{ wait = \"ready\" }, { stream_info = \"EXEC\" }",
        "{ wait = \"go\" }, { signal = \"go\" }, { stream_info = \"EXEC\" }",
    ));
    assert_problem(
        &later,
        "waits for \"go\", which is signalled only after this wait",
    );
    // A blocking task waiting for a task that starts after it ends.
    let blocking = with_profile(&TASKS.replace("{ flush = true }", "{ wait = \"ready\" }"));
    assert_problem(
        &blocking,
        "waits for \"ready\", which is signalled only after this wait",
    );
}

#[test]
fn wait_delivery_only_on_reconnect_and_on_a_watch() {
    let cold = with_profile(&TASKS.replace("{ flush = {} }", "{ wait_delivery = \"cfg\" }"));
    assert_problem(&cold, "wait_delivery only applies in [[on_reconnect]]");
    let exec = with_profile(&TASKS.replace(
        "{ wait_delivery = \"cfg\" }",
        "{ wait_delivery = { consumer = \"replay\", within = \"5s\" } }",
    ));
    assert_problem(&exec, "consumer \"replay\" is the EXEC durable");
    let within = with_profile(&TASKS.replace(
        "{ wait_delivery = \"cfg\" }",
        "{ wait_delivery = { consumer = \"cfg\", within = \"5s\" } }",
    ));
    assert_eq!(
        plan(&within).profile.on_reconnect[0].calls[0],
        Call::WaitDelivery {
            slot: 0,
            within: Duration::from_secs(5)
        }
    );
}

#[test]
fn calls_name_declared_buckets_and_streams() {
    let bucket = with_profile(&TASKS.replace("{ walk = \"jobs\" }", "{ walk = \"jbos\" }"));
    assert_problem(&bucket, "unknown bucket \"jbos\"; allowed: agent_config");
    let stream = with_profile(&TASKS.replace("stream_info = \"EXEC\"", "stream_info = \"EVENTS\""));
    assert_problem(
        &stream,
        "unknown stream \"EVENTS\"; use one of EXEC or declare it with [[streams]]",
    );
    // Declared buckets replace the kanade set.
    let declared = with_profile(&format!(
        "buckets = [{{ name = \"agent_config\" }}]\n{TASKS}"
    ));
    assert_problem(
        &declared,
        "unknown bucket \"jobs\"; this profile's [[buckets]] are agent_config",
    );
}

#[test]
fn a_call_is_exactly_one_kind() {
    let two = with_profile(&TASKS.replace("{ flush = true }", "{ flush = true, bind = \"jobs\" }"));
    assert_problem(
        &two,
        "has bind and flush; use exactly one of bind, stream_info",
    );
    let none = with_profile(&TASKS.replace("{ flush = true }", "{ fetch = \"jobs\" }"));
    assert_problem(
        &none,
        "needs exactly one of bind, stream_info, get, walk, open",
    );
}

#[test]
fn task_names_are_unique_per_list() {
    let text = with_profile(&TASKS.replace("task = \"c\"", "task = \"b\""));
    assert_problem(
        &text,
        "duplicate task name \"b\"; cold_start[2] already uses it",
    );
    // The same name in the other list is fine.
    plan(&with_profile(
        &TASKS.replace("task = \"r\"", "task = \"a\""),
    ));
}

#[test]
fn cold_start_needs_tasks() {
    let empty = with_profile("consumers = []\ncold_start = []\n");
    assert_problem(&empty, "cold_start: needs at least one task");
    let reconnect_only = with_profile(
        "consumers = []\n[[profiles.mine.on_reconnect]]\ntask = \"r\"\ncalls = [{ walk = \"jobs\" }]\n",
    );
    assert_problem(&reconnect_only, "[[on_reconnect]] without [[cold_start]]");
}

#[test]
fn acked_publishes_need_a_stream_that_captures_them() {
    let publish = |subject: &str, streams: &str| {
        with_profile(&format!(
            "{streams}consumers = []\nsync = []\npublishes = [{{ name = \"p\", subject = \"{subject}\", every = \"1s\", ack = true }}]\n"
        ))
    };
    assert_problem(
        &publish("obs.{pc}", ""),
        "ack = true but no stream captures \"obs.{pc}\"",
    );
    // EXEC captures commands.>.
    plan(&publish("commands.pc.{pc}", ""));
    let obs = "streams = [{ name = \"OBS\", subjects = [\"obs.*\"] }]\n";
    plan(&publish("obs.{pc}", obs));
    // `*` is one token: obs.{pc}.x is not captured, and a literal does not match a placeholder.
    assert_problem(&publish("obs.{pc}.x", obs), "no stream captures");
    let literal = "streams = [{ name = \"OBS\", subjects = [\"obs.pc1\"] }]\n";
    assert_problem(&publish("obs.{pc}", literal), "no stream captures");
}

#[test]
fn subject_matching_follows_nats_wildcards() {
    use crate::scenario::profile::{covers, overlap};
    assert!(covers("obs.>", "obs.{pc}"));
    assert!(covers("obs.>", "obs.{pc}.a"));
    assert!(!covers("obs.>", "obs"));
    assert!(covers("a.*.c", "a.{group}.c"));
    assert!(!covers("a.b", "a.{pc}"));
    assert!(covers("a.b", "a.b"));
    assert!(overlap("commands.>", "commands.pc.*"));
    assert!(overlap("a.*", "*.b"));
    assert!(!overlap("a.*", "a.b.c"));
    assert!(!overlap("obs.>", "commands.>"));
}

#[test]
fn streams_are_checked() {
    let stream = |s: &str| with_profile(&format!("streams = [{s}]\nconsumers = []\nsync = []\n"));
    assert_problem(
        &stream("{ name = \"EXEC\", subjects = [\"x\"] }"),
        "EXEC is always created",
    );
    assert_problem(
        &stream("{ name = \"KV_x\", subjects = [\"x\"] }"),
        "KV_ and OBJ_",
    );
    assert_problem(
        &stream("{ name = \"S\", subjects = [\"commands.all\"] }"),
        "overlaps \"commands.>\" of stream EXEC",
    );
    assert_problem(
        &stream("{ name = \"S\", subjects = [] }"),
        "needs at least one subject",
    );
    assert_problem(&stream("{ name = \"S\" }"), "required: the subjects");
    assert_problem(
        &stream("{ name = \"S\", subjects = [\"a.>.b\"] }"),
        "\">\" must be the last token",
    );
}

#[test]
fn buckets_are_checked() {
    let bucket = |b: &str| with_profile(&format!("buckets = [{b}]\nconsumers = []\nsync = []\n"));
    assert_problem(
        &bucket("{ name = \"b\", history = 65 }"),
        "must be at most 64",
    );
    assert_problem(
        &bucket("{ name = \"b\", history = 0 }"),
        "must be a whole number from 1 to 64",
    );
    assert_problem(
        &bucket("{ name = \"b\", seed = [\"{host}\"] }"),
        "only {pc}, {group} and {n} are allowed",
    );
    assert_problem(
        &bucket("{ name = \"b\" }, { name = \"b\" }"),
        "duplicate bucket name \"b\"; buckets[1]",
    );
    assert_problem(&bucket("{ name = \"a b\" }"), "bucket names use letters");
    assert_problem(
        &bucket("{ name = \"b\", ttl = \"0s\" }"),
        "must be longer than 0s",
    );
}

#[test]
fn client_options_are_checked() {
    let client =
        |c: &str| with_profile(&format!("client = {{ {c} }}\nconsumers = []\nsync = []\n"));
    assert_problem(&client("read_buffer_capacity = 100"), "from 512 to 65535");
    assert_problem(
        &client("reconnect = \"fast\""),
        "expected \"async_nats_default\" or a table",
    );
    assert_problem(
        &client("reconnect = { base = \"1s\", cap = \"10ms\" }"),
        "must be at least base",
    );
    assert_problem(
        &client("colour = 1"),
        "unknown key; allowed: connect_timeout",
    );
    let plan = plan(&client("reconnect = { base = \"1s\" }"));
    assert_eq!(
        plan.fleet.reconnect,
        Backoff::Exponential {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(4),
            jitter: 0.0
        }
    );
}

#[test]
fn fleet_keys_override_the_profile_client() {
    // kanade ships async-nats' defaults.
    let shipped = plan(MINIMAL).fleet;
    assert_eq!(shipped.connect_timeout, Duration::from_secs(5));
    assert_eq!(shipped.read_buffer_capacity, 65535);
    assert_eq!(shipped.ping_interval, Duration::from_secs(60));
    assert_eq!(shipped.reconnect, Backoff::AsyncNatsDefault);
    let given = plan(
        "[fleet]\nagents = 5\nconnect_timeout = \"2s\"\nread_buffer_capacity = 8192\nping_interval = \"15s\"\nreconnect_jitter = 0.5\n\n[[steps]]\nkind = \"start\"\n",
    )
    .fleet;
    assert_eq!(given.connect_timeout, Duration::from_secs(2));
    assert_eq!(given.request_timeout, Duration::from_secs(10));
    assert_eq!(given.read_buffer_capacity, 8192);
    assert_eq!(given.ping_interval, Duration::from_secs(15));
    assert!(matches!(given.reconnect, Backoff::Exponential { jitter, .. } if jitter == 0.5));
    // A profile without [client]: fleetsim's defaults.
    let simple = plan(&with_profile("consumers = []\nsync = []\n")).fleet;
    assert_eq!(simple.connect_timeout, Duration::from_secs(10));
    assert_eq!(simple.read_buffer_capacity, 8192);
    assert_eq!(simple.ping_interval, Duration::from_secs(60));
}

#[test]
fn variants_override_the_profile_client_too() {
    let text = "[fleet]\nagents = 5\n\n[[steps]]\nkind = \"start\"\n\n[[variants]]\nname = \"a\"\n\n[[variants]]\nname = \"b\"\nfleet = { read_buffer_capacity = 4096, ping_interval = \"5s\" }\n";
    let plan = plan(text);
    assert_eq!(plan.variants[0].plan.fleet.read_buffer_capacity, 65535);
    assert_eq!(plan.variants[1].plan.fleet.read_buffer_capacity, 4096);
    assert_eq!(
        plan.variants[1].plan.fleet.ping_interval,
        Duration::from_secs(5)
    );
}

#[test]
fn writes_need_the_bucket_of_their_target() {
    let text = |target: &str| {
        format!(
            "[fleet]\nagents = 2\nprofile = \"mine\"\n\n[profiles.mine]\nbuckets = [{{ name = \"jobs\" }}]\nconsumers = []\nsync = []\n\n[[steps]]\nkind = \"start\"\n\n[[steps]]\nkind = \"write\"\ntarget = \"{target}\"\n"
        )
    };
    assert_problem(
        &text("pc"),
        "steps[2].target: profile mine has no bucket agent_config, which target = \"pc\" writes to",
    );
    assert_problem(&text("freeze"), "no bucket fleet_config");
    plan(&text("jobs"));
}
