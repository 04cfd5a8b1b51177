use super::*;
use crate::thresholds::grammar::{Known, parse_check};

fn known() -> Known {
    Known {
        consumers: vec!["jobs".to_string()],
        phases: [
            "0:setup",
            "1:start",
            "2:write",
            "3:broker_restart",
            "4:broker_restart",
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// A run directory with hand-written files.
fn run_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

fn eval(dir: &Path, check: &str) -> CheckOutcome {
    let check = parse_check(check, &known()).expect("valid check");
    evaluate(dir, &[check]).remove(0)
}

const SUMMARY: &str = "phase,metric,unit,count,min,p50,p90,p99,p999,max,mean\n\
    1:start,ready,ms,30,400.000,480.000,490.000,495.500,495.500,495.500,470.000\n\
    3:broker_restart,resync,ms,30,500.000,550.000,570.000,580.000,580.000,580.000,555.000\n\
    4:broker_restart,resync,ms,30,500.000,650.000,670.000,1680.000,1680.000,1680.000,655.000\n";
const RECOVERY: &str = "step,trigger,trigger_secs,agents,recovered,not_recovered,probe_writes,probe_writes_acked,first_probe_ack_secs,recovered_50_secs,recovered_90_secs,recovered_99_secs,recovered_100_secs,trigger_error\n\
    3:broker_restart,broker_restart,1.0,30,30,0,35,35,0.1,9.2,9.3,9.3,9.4,\n\
    4:broker_restart,broker_restart,20.0,30,29,1,35,35,0.1,9.2,9.3,,,\n";
const ERRORS: &str = "phase,operation,kind,code,count,example\n\
    1:start,consumer_create.jobs,jetstream,10026,3,max consumers\n\
    3:broker_restart,watch.jobs,other,,20,missed idle heartbeat\n\
    4:broker_restart,watch.jobs,timeout,,2,timed out\n";
const WRITES: &str = "step,kind,writes,acked,delivered,unintended,fanout_intended,fanout_total,missed,duplicates,stale_replays,redelivered,drained\n\
    2:write,pc,20,20,20,0,1.000,1.000,1,0,0,0,true\n\
    2:write,jobs,10,9,270,0,30.000,30.000,1,0,0,0,true\n";
const BROKER: &str = "t_secs,step,ok,error,healthz,connections,total_connections,slow_consumers,mem_bytes,cpu_percent,streams,consumers,api_total,api_errors,api_inflight\n\
    0.0,1:start,true,,ok,2,2,0,1,0,6,0,23,12,0\n\
    1.0,2:write,true,,ok,32,32,0,1,0,6,210,300,12,0\n\
    2.0,3:broker_restart,false,Connection refused (os error 111),,,,,,,,,,,\n\
    3.0,3:broker_restart,true,,ok,32,32,0,1,0,6,150,90,60,4\n\
    4.0,3:broker_restart,true,,ok,32,32,0,1,0,6,210,400,190,0\n";
const AGENTS: &str = "pc,group,state,reason,connects,last_splay_ms,last_resync_wait_ms\n\
    pc-1,g-1,ready,,2,,\npc-2,g-2,failed,timeout,1,,\npc-3,g-3,ready,,2,,\n";

fn full() -> tempfile::TempDir {
    run_dir(&[
        ("summary.csv", SUMMARY),
        ("recovery.csv", RECOVERY),
        ("errors.csv", ERRORS),
        ("writes.csv", WRITES),
        ("broker.csv", BROKER),
        ("agents.csv", AGENTS),
    ])
}

#[test]
fn latencies_pass_only_if_every_phase_passes() {
    let dir = full();
    let o = eval(dir.path(), "ready.p99 < 500ms");
    assert!(o.passed, "{o:?}");
    assert_eq!((o.value, o.phase.as_str()), (Some(495.5), "1:start"));
    let o = eval(dir.path(), "resync.p99 < 1s");
    assert!(!o.passed);
    assert_eq!(
        (o.value, o.phase.as_str()),
        (Some(1680.0), "4:broker_restart")
    );
    assert_eq!(o.note, "1 of 2 phases pass");
    let o = eval(dir.path(), "resync[3].p99 < 1s");
    assert!(o.passed, "{o:?}");
    // A lower bound reports the smallest value.
    let o = eval(dir.path(), "resync.p50 >= 500ms");
    assert!(o.passed);
    assert_eq!(o.value, Some(550.0));
    let o = eval(dir.path(), "ready.count == 30");
    assert!(o.passed);
}

#[test]
fn a_valid_metric_the_run_did_not_measure_fails() {
    let dir = full();
    let o = eval(dir.path(), "delivery.jobs.p99 < 1s");
    assert!(!o.passed);
    assert_eq!(o.value, None);
    assert_eq!(
        o.note,
        "not measured: no delivery.jobs latencies in summary.csv"
    );
    let empty = run_dir(&[("summary.csv", SUMMARY)]);
    for check in [
        "recovery.p100 < 30s",
        "fanout.pc.ratio <= 1",
        "writes.missed == 0",
        "broker.api_errors == 0",
        "agents.failed == 0",
        "errors.total == 0",
    ] {
        let o = eval(empty.path(), check);
        assert!(
            !o.passed && o.note.starts_with("not measured"),
            "{check}: {o:?}"
        );
    }
}

#[test]
fn recovery_never_reached_fails_any_upper_bound() {
    let dir = full();
    let o = eval(dir.path(), "recovery[3:broker_restart].p100 < 30s");
    assert!(o.passed);
    assert_eq!(o.value, Some(9400.0));
    let o = eval(dir.path(), "recovery.p100 < 1h");
    assert!(!o.passed);
    assert_eq!(o.phase, "4:broker_restart");
    assert!(o.value.is_some_and(f64::is_infinite));
    assert!(o.note.contains("never reached"), "{}", o.note);
    assert!(o.describe().contains("never"), "{}", o.describe());
    let o = eval(dir.path(), "recovery.p50 < 10s");
    assert!(o.passed);
}

#[test]
fn counts_are_summed() {
    let dir = full();
    assert_eq!(eval(dir.path(), "errors.total == 25").value, Some(25.0));
    assert!(eval(dir.path(), "errors.total == 25").passed);
    assert_eq!(eval(dir.path(), "errors.timeout == 0").value, Some(2.0));
    assert_eq!(
        eval(dir.path(), "errors.jetstream_10026 == 0").value,
        Some(3.0)
    );
    assert_eq!(
        eval(dir.path(), "errors.jetstream_10008 == 0").value,
        Some(0.0)
    );
    assert_eq!(
        eval(dir.path(), "errors[broker_restart].total == 0").value,
        Some(22.0)
    );
    assert_eq!(eval(dir.path(), "writes.missed == 0").value, Some(1.0));
    assert_eq!(eval(dir.path(), "writes.unacked == 0").value, Some(1.0));
    assert_eq!(eval(dir.path(), "agents.failed == 0").value, Some(1.0));
    assert_eq!(eval(dir.path(), "agents.ready == 2").value, Some(2.0));
    assert_eq!(eval(dir.path(), "agents.unrecovered == 0").value, Some(1.0));
}

#[test]
fn fanout_ratios_per_step() {
    let dir = full();
    let o = eval(dir.path(), "fanout.pc.ratio <= 1");
    assert!(o.passed);
    assert_eq!((o.value, o.phase.as_str()), (Some(1.0), "2:write"));
    let o = eval(dir.path(), "fanout.jobs.ratio <= 1");
    assert!(!o.passed);
    assert_eq!(o.value, Some(30.0));
    assert_eq!(
        eval(dir.path(), "fanout.jobs.unintended == 0").value,
        Some(0.0)
    );
}

#[test]
fn broker_counters_survive_a_restart_and_gauges_take_the_maximum() {
    let dir = full();
    // 12 -> 12 (start to write); the refused sample shows a restart, so the 60 after
    // it is all increase (although above 12); then 60 -> 190: 0 + 60 + 130.
    let o = eval(dir.path(), "broker.api_errors == 0");
    assert_eq!(o.value, Some(190.0));
    assert!(o.note.contains("1 broker restart"), "{}", o.note);
    assert_eq!(
        eval(dir.path(), "broker[2:write].api_errors == 0").value,
        Some(0.0)
    );
    assert_eq!(
        eval(dir.path(), "broker[broker_restart].api_total == 0").value,
        Some(400.0)
    );
    assert_eq!(
        eval(dir.path(), "broker.consumers < 1000").value,
        Some(210.0)
    );
    assert_eq!(
        eval(dir.path(), "broker.api_inflight < 1000").value,
        Some(4.0)
    );
}

#[test]
fn limit_reached_advisories_count_only_where_the_run_listened() {
    use crate::results::{
        FleetFigures, Manifest, ManifestBroker, ManifestHost, ManifestScenario, RunStatus,
        TIMESERIES_COLUMNS,
    };
    // Every column of timeseries.csv, `api_limit_reached` set.
    let timeseries = |rows: &[(&str, &str, &str)]| {
        let mut text = TIMESERIES_COLUMNS.join(",") + "\n";
        for (t, step, limit) in rows {
            let mut cells = vec!["0"; TIMESERIES_COLUMNS.len()];
            let at = |name| TIMESERIES_COLUMNS.iter().position(|c| *c == name).unwrap();
            cells[at("t_secs")] = t;
            cells[at("step")] = step;
            cells[at("api_limit_reached")] = limit;
            cells[at("step_marker")] = "";
            text += &(cells.join(",") + "\n");
        }
        text
    };
    let manifest = |counted: bool| {
        let m = Manifest {
            fleetsim_version: "0.1.0".to_string(),
            async_nats_version: "0.51".to_string(),
            scenario: ManifestScenario {
                name: "t".to_string(),
                path: None,
                text: String::new(),
            },
            settings: serde_json::Value::Null,
            seed: 1,
            broker: Some(ManifestBroker {
                kind: "external".to_string(),
                url: "nats://h:4222".to_string(),
                monitor_url: None,
                version: None,
                limits: Default::default(),
                api_limit_reached_counted: counted,
            }),
            host: ManifestHost {
                hostname: "h".to_string(),
                os: "linux".to_string(),
                cores: 1,
                memory_bytes: None,
            },
            started_at: String::new(),
            ended_at: String::new(),
            duration_secs: 1.0,
            status: RunStatus::Ok,
            reasons: Vec::new(),
            fleet: FleetFigures::default(),
            process: Default::default(),
            phases: Vec::new(),
            files: Vec::new(),
        };
        serde_json::to_string(&m).expect("json")
    };
    let listened_series = timeseries(&[
        ("0.1", "1:start", "0"),
        ("0.2", "1:start", "3"),
        ("0.3", "1:start", "2"),
        ("5.0", "3:broker_restart", "4"),
    ]);
    let listened = manifest(true);
    let dir = run_dir(&[
        ("timeseries.csv", &listened_series),
        ("manifest.json", &listened),
    ]);
    let o = eval(dir.path(), "broker.api_limit_reached == 0");
    assert_eq!((o.value, o.passed), (Some(9.0), false), "{o:?}");
    let o = eval(dir.path(), "broker[1:start].api_limit_reached <= 5");
    assert_eq!((o.value, o.passed), (Some(5.0), true), "{o:?}");

    // No system-account listener: a zero would be a guess, so the gate fails.
    let deaf = manifest(false);
    let dir = run_dir(&[
        ("timeseries.csv", &timeseries(&[("0.1", "1:start", "0")])),
        ("manifest.json", &deaf),
    ]);
    let o = eval(dir.path(), "broker.api_limit_reached == 0");
    assert!(!o.passed && o.value.is_none(), "{o:?}");
    assert!(o.note.contains("FLEETSIM_SYSTEM_URL"), "{}", o.note);
}

#[test]
fn a_malformed_file_fails_its_checks_naming_file_and_line() {
    let bad = SUMMARY.replace("495.500,495.500,495.500", "495.500,fast,495.500");
    let dir = run_dir(&[("summary.csv", &bad), ("errors.csv", ERRORS)]);
    let o = eval(dir.path(), "ready.p99 < 500ms");
    assert!(!o.passed && o.value.is_none(), "{o:?}");
    assert!(o.note.contains("summary.csv: line 2"), "{}", o.note);
    // A check reading another file is unaffected.
    assert!(eval(dir.path(), "errors.total == 25").passed);
}

#[test]
fn counts_are_read_per_phase_or_for_the_whole_run() {
    let counts = "phase,covers,figure,value,total,unit,exact\n\
        1:start,1:start 2:wait_ready,consumers.long_lived_per_agent,7.0,70,count/agent,true\n\
        1:start,1:start 2:wait_ready,api.total_per_agent,40.0,400,count/agent,true\n\
        3:broker_restart,3:broker_restart,consumers.long_lived_per_agent,8.0,80,count/agent,true\n\
        3:broker_restart,3:broker_restart,api.total_per_agent,12.0,120,count/agent,true\n\
        3:broker_restart,3:broker_restart,api.consumer_create_per_agent,7.0,70,count/agent,true\n\
        run,1:start 2:wait_ready 3:broker_restart,api.total_per_agent,52.0,520,count/agent,true\n";
    let dir = run_dir(&[("counts.csv", counts)]);
    let o = eval(
        dir.path(),
        "count[3:broker_restart].api.consumer_create_per_agent <= 7",
    );
    assert!(o.passed, "{o:?}");
    // No [phase]: the whole run's, when it has one ...
    let o = eval(dir.path(), "count.api.total_per_agent == 52");
    assert!(o.passed, "{o:?}");
    // ... else every phase's, each of which must hold.
    let o = eval(dir.path(), "count.consumers.long_lived_per_agent <= 7");
    assert!(!o.passed);
    assert_eq!((o.value, o.phase.as_str()), (Some(8.0), "3:broker_restart"));
    // A kind of request the audit did not see in a phase it recorded is 0 there.
    let o = eval(
        dir.path(),
        "count[start].api.consumer_delete_per_agent == 0",
    );
    assert!(o.passed, "{o:?}");
    let o = eval(dir.path(), "count[2:write].api.total_per_agent == 0");
    assert!(o.note.starts_with("not measured"), "{o:?}");
    let none = run_dir(&[]);
    let o = eval(none.path(), "count.api.total_per_agent == 0");
    assert!(!o.passed && o.note.contains("no counts.csv"), "{o:?}");
}
