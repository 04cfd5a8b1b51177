//! Unit tests of the run directory: the writers pin every schema, the reader reads
//! what they wrote.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::manifest::mem_total_bytes;
use super::rows::SummaryRow;
use super::*;
use crate::metrics::{ErrorSnapshot, HistogramSnapshot};
use crate::nats_failure::FailureKind;
use crate::plan::{
    BrokerPlan, ConsumerKind, ConsumerSpec, FleetPlan, Profile, StartPacing, Step, StepAction,
};

const SCENARIO: &str = r#"name = "herd test"
[broker]
url = "nats://alice:s3cret@broker:4222"
token = "tok-123"
"#;

fn plan() -> Plan {
    Plan {
        name: "herd test".to_string(),
        description: "see nats://bob:hunter2@docs:4222".to_string(),
        seed: 42,
        broker: BrokerPlan {
            url: Some("nats://alice:s3cret@broker:4222".to_string()),
            monitor_url: Some("http://broker:8222".to_string()),
            max_connections: 1000,
            request_queue_limit: 10_000,
            default_max_consumers: -1,
            reset: false,
            record_api: false,
            lame_duck_duration: Duration::from_secs(30),
            lame_duck_grace_period: Duration::from_secs(1),
            system_url: Some("nats://sys:sysp4ss@broker:4222".to_string()),
            tls: false,
            tls_ca: None,
            auth: Default::default(),
            cpus: None,
            cpu_quota: None,
            server: None,
            keepalive: Default::default(),
        },
        fleet: FleetPlan {
            agents: 2,
            groups: 1,
            profile: "kanade".to_string(),
            catalog_entries: 5,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(60),
            setup_retries: 3,
            reconnect: crate::plan::Backoff::AsyncNatsDefault,
            max_reconnects: None,
            splay: None,
            proxy: crate::plan::ProxyMode::Off,
            link: Default::default(),
            read_buffer_capacity: 8192,
            exec_ack_wait: None,
            async_nats: crate::plan::AsyncNats::V0_51,
        },
        profile: Profile::simple(
            "kanade",
            vec![ConsumerSpec {
                name: "exec_replay".to_string(),
                kind: ConsumerKind::ExecReplay,
            }],
            vec![],
        ),
        steps: vec![
            Step {
                index: 1,
                action: StepAction::Start {
                    pacing: StartPacing::AllAtOnce,
                },
            },
            Step {
                index: 2,
                action: StepAction::WaitReady {
                    timeout: Duration::from_secs(60),
                },
            },
        ],
        variants: Vec::new(),
        repeat: 1,
        thresholds: Default::default(),
        gate: Default::default(),
        observe: Default::default(),
    }
}

fn histogram(micros: impl IntoIterator<Item = u64>) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for v in micros {
        h.record(v).expect("record");
    }
    h
}

fn snapshot() -> Snapshot {
    Snapshot {
        histograms: vec![
            HistogramSnapshot {
                metric: "ready".to_string(),
                phase: 1,
                histogram: histogram((1..=100).map(|ms| ms * 1000)),
            },
            HistogramSnapshot {
                metric: "consumer_create.jobs".to_string(),
                phase: 1,
                histogram: histogram([250, 1500]),
            },
        ],
        errors: vec![ErrorSnapshot {
            phase: 1,
            operation: "consumer_create.jobs".to_string(),
            kind: FailureKind::JetStream(10026),
            count: 3,
            example: "maximum consumers limit reached, server nats://u:pw@h:4222".to_string(),
        }],
    }
}

fn record(plan: &Plan) -> RunRecord<'_> {
    let started_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    RunRecord {
        churns: Vec::new(),
        plan,
        scenario_path: Some(Path::new("scenarios/herd.toml")),
        scenario_text: SCENARIO,
        broker: Some(BrokerInfo {
            kind: "external",
            url: "nats://alice:s3cret@broker:4222".to_string(),
            monitor_url: Some("http://broker:8222".to_string()),
            version: Some("2.15.0".to_string()),
            limits: Default::default(),
            api_limit_reached_counted: false,
        }),
        started_at,
        ended_at: started_at + Duration::from_millis(12_345),
        outcome: RunOutcome {
            status: RunStatus::Failed,
            reasons: vec!["1 of 2 agents failed".to_string()],
        },
        phases: vec![
            "0:setup".to_string(),
            "1:start".to_string(),
            "2:wait_ready".to_string(),
        ],
        agents: vec![
            AgentFinal {
                pc: "pc-00000".to_string(),
                group: "g-000".to_string(),
                state: "ready".to_string(),
                reason: None,
                connects: 1,
                last_resync: None,
                core_received: 0,
                published: 0,
            },
            AgentFinal {
                pc: "pc-00001".to_string(),
                group: "g-000".to_string(),
                state: "failed".to_string(),
                reason: Some("consumer_create.jobs: error code 10026".to_string()),
                connects: 2,
                last_resync: Some((Duration::from_millis(1234), Duration::from_millis(1240))),
                core_received: 12,
                published: 3,
            },
        ],
        snapshot: snapshot(),
        fleet: FleetFigures {
            started: 2,
            ready: 1,
            failed: 1,
            unfinished: 0,
        },
        steps: vec![
            StepRecord {
                label: "1:start".to_string(),
                began_secs: 0.0,
                ended_secs: 0.5,
                agents_ready: 0,
                agents_failed: 0,
                broker: BrokerCounts::default(),
                broker_sampled: false,
            },
            StepRecord {
                label: "2:wait_ready".to_string(),
                began_secs: 0.5,
                ended_secs: 12.0,
                agents_ready: 1,
                agents_failed: 1,
                broker: BrokerCounts {
                    connections: 2,
                    consumers: 7,
                    consumers_long_lived: Some(7),
                    api_total: 40,
                    api_errors: 3,
                },
                broker_sampled: true,
            },
        ],
        process: ProcessUsage {
            cpu_user_secs: 1.5,
            cpu_system_secs: 0.5,
            max_rss_kib: 20_480,
        },
        timeseries: Vec::new(),
        herds: Vec::new(),
        writes: Vec::new(),
        broker_samples: Vec::new(),
        api: None,
    }
}

#[test]
fn summary_csv_columns_are_pinned() {
    let csv_bytes = write_summary(&snapshot(), &record(&plan()).phases, Vec::new()).expect("write");
    let text = String::from_utf8(csv_bytes).expect("utf-8");
    assert_eq!(
        text.lines().next(),
        Some("phase,metric,unit,count,min,p50,p90,p99,p999,max,mean"),
        "changing summary.csv's columns breaks every script and baseline that reads it"
    );
    let rows: Vec<SummaryRow> = read::parse_csv(text.as_bytes(), Path::new(SUMMARY_FILE))
        .expect("rows deserialize with deny_unknown_fields");
    assert_eq!(rows.len(), 2);
    let ready = &rows[0];
    assert_eq!(
        (
            ready.phase.as_str(),
            ready.metric.as_str(),
            ready.unit.as_str()
        ),
        ("1:start", "ready", "ms")
    );
    assert_eq!(ready.count, 100);
    // HdrHistogram reports the highest value equivalent to the recorded one at 3
    // significant digits (50 ms reads 50.015 ms): asked of the histogram itself.
    let h = histogram([1_000]);
    assert_eq!(
        (ready.min, ready.p50, ready.max),
        (
            Fixed3::ms_from_micros(h.lowest_equivalent(1_000)),
            Fixed3::ms_from_micros(h.highest_equivalent(50_000)),
            Fixed3::ms_from_micros(h.highest_equivalent(100_000))
        )
    );
    // Three decimals, written from integer µs.
    assert!(
        text.contains(
            "1:start,consumer_create.jobs,ms,2,0.250,0.250,1.500,1.500,1.500,1.500,0.875"
        ),
        "{text}"
    );
}

/// `R`'s file in `dir`, read with the typed reader and written again through the
/// same row type: byte for byte what the writer wrote. A column renamed, added, dropped
/// or moved on either side, or a figure written with other decimals, breaks this.
fn reads_back_as_written<R: CsvFile + std::fmt::Debug>(dir: &RunDir) -> Vec<R> {
    let rows: Vec<R> = dir
        .rows()
        .unwrap_or_else(|e| panic!("{} reads back: {e}", R::FILE));
    let again = write_csv(Vec::new(), R::COLUMNS, &rows).expect("rewrite");
    let written = std::fs::read_to_string(dir.path(R::FILE)).expect("file");
    assert_eq!(
        String::from_utf8(again).expect("utf-8"),
        written,
        "{} does not read back as written",
        R::FILE
    );
    assert!(!rows.is_empty(), "{} has rows to compare", R::FILE);
    rows
}

#[test]
fn every_file_reads_back_as_written() {
    use crate::results::rows::*;
    let out = tempfile::tempdir().expect("tempdir");
    let plan = plan();
    let mut record = record(&plan);
    record.herds = vec![HerdRecord {
        label: "3:broker_restart".to_string(),
        trigger: "broker_restart".to_string(),
        trigger_secs: 1.25,
        agents: 2,
        recovery_times: vec![Duration::from_millis(1500)],
        spared: 1,
        spared_times: vec![Duration::from_millis(20)],
        detected: 2,
        probe_writes: 4,
        probe_writes_acked: 3,
        first_probe_ack: Some(Duration::from_millis(700)),
        unrecovered: vec![Unrecovered {
            pc: "pc-00001".to_string(),
            state: "recovering".to_string(),
            connected: true,
        }],
        trigger_error: None,
    }];
    record.writes = vec![WriteRecord {
        label: "4:write".to_string(),
        target: "pc".to_string(),
        writes: 10,
        acked: 9,
        retries: 2,
        unacked_fails_run: true,
        drained: true,
        reconciliation: crate::writes::Reconciliation {
            per_agent: vec![crate::writes::AgentReconciliation {
                agent: 1,
                expected: 9,
                received: 8,
                missed: 1,
                superseded: 0,
                duplicates: 0,
                stale_replays: 0,
                redelivered: 2,
                unintended: 0,
            }],
            by_kind: vec![crate::writes::KindFanout {
                kind: "pc",
                writes: 10,
                acked: 9,
                delivered: 8,
                unintended: 0,
            }],
        },
    }];
    let sample = |t_secs: f64, step: &str| Sample {
        t_secs,
        step: step.to_string(),
        connected: 2,
        ready: 1,
        recovering: 1,
        starting: 0,
        failed: 0,
        herd_recovered: 1,
        creates_started: 3,
        creates_completed: 2,
        creates_in_flight: 1,
        api_consumer_create: 3,
        api_consumer_delete: 0,
        api_stream_info: 1,
        api_other: 0,
        consumers_created: 2,
        consumers_deleted: 0,
        api_limit_reached: 0,
        errors_timeout: 1,
        errors_no_responders: 0,
        errors_jetstream: 0,
        errors_connection_refused: 0,
        errors_other: 0,
        broker_in_msgs_per_sec: Some(30.0),
        broker_out_msgs_per_sec: Some(123.457),
        broker_in_bytes_per_sec: Some(2_560.0),
        broker_out_bytes_per_sec: Some(0.0),
        broker_interval_secs: Some(0.100_013),
        stale_connections: Some(0),
        double_held_consumers: None,
        step_marker: String::new(),
    };
    record.timeseries = vec![sample(0.1, "1:start"), sample(0.2, "1:start")];
    // The first row has no earlier reading to take a rate from: empty, not zero.
    record.timeseries[0].broker_in_msgs_per_sec = None;
    record.timeseries[0].broker_interval_secs = None;
    record.broker_samples = vec![
        BrokerSample {
            t_secs: 0.5,
            step: "1:start".to_string(),
            ok: true,
            healthz: "ok".to_string(),
            connections: Some(2),
            cpu_percent: Some(12.5),
            api_total: Some(40),
            in_msgs: Some(1_000),
            out_msgs: Some(2_000),
            in_bytes: Some(64_000),
            out_bytes: Some(128_123),
            interval_secs: Some(1.000_251),
            in_msgs_per_sec: Some(99.975),
            out_msgs_per_sec: Some(0.0),
            in_bytes_per_sec: Some(6_398.394),
            out_bytes_per_sec: Some(12_800.0),
            ..BrokerSample::default()
        },
        BrokerSample {
            t_secs: 0.75,
            step: "3:broker_restart".to_string(),
            ok: false,
            error: "Connection refused (os error 111)".to_string(),
            ..BrokerSample::default()
        },
    ];
    record.api = Some(vec![
        ApiRow {
            t_secs: Fixed3(0.25),
            phase: "1:start".to_string(),
            request: "CONSUMER.CREATE".to_string(),
            stream: "KV_jobs".to_string(),
            client: "pc-00000".to_string(),
            error: Some(10014),
            detail: "new $KV.jobs.>".to_string(),
        },
        ApiRow {
            t_secs: Fixed3(0.5),
            phase: "2:wait_ready".to_string(),
            request: "DIRECT.GET".to_string(),
            stream: "KV_jobs".to_string(),
            client: String::new(),
            error: None,
            detail: "$KV.jobs.fleetsim.probe".to_string(),
        },
    ]);
    write_run(out.path(), &record).expect("write run");
    let dir = RunDir::new(out.path());
    reads_back_as_written::<ApiRow>(&dir);
    let counts: Vec<CountRow> = reads_back_as_written(&dir);
    let count = |phase: &str, figure: &str| {
        counts
            .iter()
            .find(|c| c.phase == phase && c.figure == figure)
            .unwrap_or_else(|| panic!("{figure} in {phase}: {counts:#?}"))
    };
    // The start and its wait_ready are one phase; 2 agents.
    let long_lived = count("1:start", "consumers.long_lived_per_agent");
    assert_eq!(long_lived.covers, "1:start 2:wait_ready");
    assert_eq!((long_lived.value, long_lived.total), (3.5, Some(7)));
    assert!(long_lived.exact);
    let creates = count("1:start", "api.consumer_create_per_agent");
    assert_eq!((creates.value, creates.total), (0.5, Some(1)));
    assert_eq!(count("run", "api.errors_per_agent").value, 0.5);
    // A direct get of a herd's probe key is fleetsim's doing: apart, not exact.
    assert_eq!(count("1:start", "api.total_per_agent").total, Some(1));
    let probes = count("1:start", "api.probe_get_per_agent");
    assert_eq!((probes.total, probes.exact), (Some(1), false));
    assert_eq!(count("run", "reconnects_per_agent").total, Some(1));

    let summary: Vec<SummaryRow> = reads_back_as_written(&dir);
    let p50 = Fixed3::ms_from_micros(histogram([1_000]).highest_equivalent(50_000));
    assert_eq!(summary[0].stat("p50"), Some(p50.0));
    reads_back_as_written::<ErrorRow>(&dir);
    let agents: Vec<AgentRow> = reads_back_as_written(&dir);
    assert_eq!(agents[1].last_splay_ms, Some(Fixed3(1234.0)));
    reads_back_as_written::<StepRow>(&dir);
    let timeseries: Vec<TimeseriesRow> = reads_back_as_written(&dir);
    assert_eq!(timeseries[0].step_marker, "begin");
    assert_eq!(timeseries[0].broker_in_msgs_per_sec, None);
    assert_eq!(timeseries[1].broker_out_msgs_per_sec, Some(123.457));
    assert_eq!(timeseries[0].api_requests(), 4);
    let recovery: Vec<RecoveryRow> = reads_back_as_written(&dir);
    assert_eq!(recovery[0].recovered_secs(50), Some(Some(1.5)));
    assert_eq!(recovery[0].recovered_secs(100), Some(None));
    reads_back_as_written::<UnrecoveredRow>(&dir);
    let writes: Vec<WritesRow> = reads_back_as_written(&dir);
    assert_eq!(writes[0].fanout_intended, Fixed3(0.889));
    reads_back_as_written::<ReconcileRow>(&dir);
    let broker: Vec<BrokerRow> = reads_back_as_written(&dir);
    assert_eq!(broker[0].figure("cpu_percent"), Some(12.5));
    assert_eq!(broker[0].figure("out_bytes"), Some(128_123.0));
    assert_eq!(broker[0].figure("in_bytes_per_sec"), Some(6_398.394));
    assert_eq!(broker[1].figure("interval_secs"), None);

    let manifest = dir.manifest().expect("manifest reads back");
    assert_eq!(manifest.fleet, record.fleet);
    let Some(read::AnyManifest::Run(any)) = dir.any_manifest().expect("any manifest") else {
        panic!("a single run's manifest");
    };
    assert_eq!(*any, manifest);
    assert_eq!(
        serde_json::to_string_pretty(&manifest).expect("json") + "\n",
        std::fs::read_to_string(dir.path(MANIFEST_FILE)).expect("manifest"),
        "manifest.json reads back as written"
    );
    let listed: BTreeSet<&str> = manifest.files.iter().map(String::as_str).collect();
    for name in RUN_FILES {
        assert!(listed.contains(name), "{name} in {listed:?}");
    }
}

/// A run directory from before the bandwidth columns reads back with them empty (not
/// measured), not as an error: they are the last columns and all optional.
#[test]
fn an_older_run_reads_back_with_the_bandwidth_columns_empty() {
    use crate::results::rows::*;
    let out = tempfile::tempdir().expect("tempdir");
    let dir = RunDir::new(out.path());
    let old_broker = &BROKER_COLUMNS[..BROKER_COLUMNS.len() - 15];
    assert_eq!(old_broker.last(), Some(&"api_inflight"));
    std::fs::write(
        dir.path(BROKER_FILE),
        format!(
            "{}\n0.5,1:start,true,,ok,2,2,0,1000,1.5,2,14,40,0,0\n",
            old_broker.join(",")
        ),
    )
    .expect("write");
    let broker = dir.rows::<BrokerRow>().expect("an older broker.csv reads");
    assert_eq!(broker[0].api_total, Some(40));
    assert_eq!((broker[0].in_bytes, broker[0].interval_secs), (None, None));
    assert_eq!((broker[0].cpu_secs, broker[0].pid), (None, None));
    assert_eq!(broker[0].stale_connections, None);
    let old_series: Vec<&str> = TIMESERIES_COLUMNS
        .iter()
        .copied()
        .filter(|c| {
            !c.starts_with("broker_") && !["stale_connections", "double_held_consumers"].contains(c)
        })
        .collect();
    let mut cells = vec!["0"; old_series.len()];
    cells[1] = "1:start";
    *cells.last_mut().expect("step_marker") = "begin";
    std::fs::write(
        dir.path(TIMESERIES_FILE),
        format!("{}\n{}\n", old_series.join(","), cells.join(",")),
    )
    .expect("write");
    let series = dir
        .rows::<TimeseriesRow>()
        .expect("an older timeseries.csv reads");
    assert_eq!(series[0].broker_out_bytes_per_sec, None);
    assert_eq!(series[0].stale_connections, None);
}

#[test]
fn a_missing_or_malformed_file_is_an_error_naming_it() {
    use crate::results::rows::*;
    let out = tempfile::tempdir().expect("tempdir");
    let dir = RunDir::new(out.path());
    let missing = dir.rows::<SummaryRow>().expect_err("no summary.csv");
    assert!(matches!(missing, ReadError::Missing { .. }), "{missing}");
    assert!(missing.to_string().contains("summary.csv"), "{missing}");
    assert!(
        dir.rows_if_present::<RecoveryRow>()
            .expect("absent")
            .is_none()
    );
    assert!(dir.any_manifest().expect("absent").is_none());

    std::fs::write(
        dir.path(SUMMARY_FILE),
        "phase,metric,unit,count,min,p50,p90,p99,p999,max,mean\n\
         1:start,ready,ms,3,1.000,2.000,3.000,3.000,3.000,3.000,2.000\n\
         1:start,ready,ms,3,1.000,fast,3.000,3.000,3.000,3.000,2.000\n",
    )
    .expect("write");
    let e = dir.rows::<SummaryRow>().expect_err("malformed");
    assert!(
        matches!(e, ReadError::Malformed { line: 3, .. }),
        "line 3 holds the bad cell: {e}"
    );
    assert!(e.to_string().contains("summary.csv: line 3"), "{e}");

    // A column the reader does not know is drift, not something to ignore.
    std::fs::write(
        dir.path(ERRORS_FILE),
        "phase,operation,kind,code,count,example,extra\n",
    )
    .expect("write");
    std::fs::write(
        dir.path(ERRORS_FILE),
        "phase,operation,kind,code,count,example,extra\n1:start,op,timeout,,1,x,y\n",
    )
    .expect("write");
    let e = dir.rows::<ErrorRow>().expect_err("unknown column");
    assert!(e.to_string().contains("extra"), "{e}");

    std::fs::write(
        dir.path(MANIFEST_FILE),
        "{\n  \"status\": \"ok\",\n  \"nope\": 1\n}\n",
    )
    .expect("write");
    let e = dir.manifest().expect_err("not a manifest");
    assert!(matches!(e, ReadError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("manifest.json: line"), "{e}");
}

#[test]
fn merged_files_carry_variant_and_repeat() {
    use crate::results::rows::*;
    let out = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        out.path().join(SUMMARY_FILE),
        "variant,repeat,phase,metric,unit,count,min,p50,p90,p99,p999,max,mean\n\
         off,2,1:start,ready,ms,3,1.000,2.000,3.000,3.000,3.000,3.000,2.000\n",
    )
    .expect("write");
    let rows: Vec<Merged<SummaryRow>> = RunDir::new(out.path()).merged_rows().expect("merged");
    assert_eq!(rows[0].variant.as_deref(), Some("off"));
    assert_eq!(rows[0].repeat, Some(2));
    assert_eq!(rows[0].row.p50, Fixed3(2.0));
}

#[test]
fn errors_csv_is_written_even_when_nothing_failed() {
    let empty = write_errors(&Snapshot::default(), &[], Vec::new()).expect("write");
    assert_eq!(
        String::from_utf8(empty).expect("utf-8"),
        "phase,operation,kind,code,count,example\n"
    );
    let some = write_errors(&snapshot(), &record(&plan()).phases, Vec::new()).expect("write");
    let text = String::from_utf8(some).expect("utf-8");
    assert!(
        text.contains("1:start,consumer_create.jobs,jetstream,10026,3,"),
        "{text}"
    );
    assert!(!text.contains("pw@"), "{text}");
}

#[test]
fn a_run_directory_holds_every_file_and_a_pinned_manifest() {
    let out = tempfile::tempdir().expect("tempdir");
    let plan = plan();
    let record = record(&plan);
    let dir = create_run_dir(out.path(), &plan.name, record.started_at).expect("run dir");
    assert_eq!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("20231114T221320Z-herd_test")
    );
    write_run(&dir, &record).expect("write run");

    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).expect("manifest");
    let raw: serde_json::Value = serde_json::from_str(&text).expect("json");
    let keys: BTreeSet<&str> = raw
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "fleetsim_version",
        "async_nats_version",
        "scenario",
        "settings",
        "seed",
        "broker",
        "host",
        "started_at",
        "ended_at",
        "duration_secs",
        "status",
        "reasons",
        "fleet",
        "process",
        "phases",
        "files",
    ]
    .into_iter()
    .collect();
    assert_eq!(
        keys, expected,
        "manifest.json's top-level keys are a contract"
    );

    let manifest: Manifest =
        serde_json::from_str(&text).expect("manifest deserializes with deny_unknown_fields");
    assert_eq!(manifest.fleetsim_version, env!("CARGO_PKG_VERSION"));
    // Cargo.lock's version is checked against it by tests/core.rs.
    assert_eq!(manifest.async_nats_version, "0.51", "the agents' version");
    assert_eq!(manifest.scenario.name, "herd test");
    assert_eq!(
        manifest.scenario.path.as_deref(),
        Some("scenarios/herd.toml")
    );
    assert_eq!(manifest.seed, 42);
    assert_eq!(manifest.started_at, "2023-11-14T22:13:20.000Z");
    assert_eq!(manifest.ended_at, "2023-11-14T22:13:32.345Z");
    assert_eq!(manifest.duration_secs, 12.345);
    assert_eq!(manifest.status, RunStatus::Failed);
    assert_eq!(raw["status"], "failed");
    assert_eq!(manifest.reasons, ["1 of 2 agents failed"]);
    assert_eq!(manifest.fleet, record.fleet);
    assert_eq!(manifest.phases, record.phases);
    assert!(manifest.host.cores >= 1);
    assert_eq!(manifest.settings["fleet"]["agents"], 2);
    assert_eq!(manifest.settings["broker"]["url"], "nats://***@broker:4222");
    assert_eq!(
        manifest.broker.as_ref().expect("broker").url,
        "nats://***@broker:4222"
    );
    assert!(
        manifest.scenario.text.contains(r#"token = "***""#),
        "{}",
        manifest.scenario.text
    );

    // The files list is exactly what is in the directory.
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = manifest.files.iter().cloned().collect();
    assert_eq!(listed, on_disk);
    assert!(
        on_disk.contains("1-ready.hgrm") && on_disk.contains("1-consumer_create.jobs.hgrm"),
        "{on_disk:?}"
    );

    // No secret anywhere in the directory.
    for name in &on_disk {
        let content = std::fs::read_to_string(dir.join(name)).expect("file");
        for secret in ["s3cret", "tok-123", "hunter2", ":pw@", "alice", "sysp4ss"] {
            assert!(
                !content.contains(secret),
                "{secret} leaked into {name}:\n{content}"
            );
        }
    }

    let steps = std::fs::read_to_string(dir.join(STEPS_FILE)).expect("steps.csv");
    assert_eq!(
        steps.lines().collect::<Vec<_>>(),
        [
            STEPS_COLUMNS.join(",").as_str(),
            "1:start,0.000,0.500,0,0,,,,,",
            "2:wait_ready,0.500,12.000,1,1,2,7,7,40,3",
        ]
    );
    let agents = std::fs::read_to_string(dir.join(AGENTS_FILE)).expect("agents.csv");
    assert!(
        agents.starts_with(
            "pc,group,state,reason,connects,last_splay_ms,last_resync_wait_ms,core_received,published\n\
             pc-00000,g-000,ready,,1,,,0,0\n"
        ),
        "{agents}"
    );
    assert!(agents.contains(",2,1234.000,1240.000,12,3\n"), "{agents}");
}

#[test]
fn hgrm_file_ends_at_the_max_with_the_total_count() {
    let out = tempfile::tempdir().expect("tempdir");
    let plan = plan();
    let record = record(&plan);
    write_run(out.path(), &record).expect("write run");
    let text = std::fs::read_to_string(out.path().join("1-ready.hgrm")).expect("hgrm");
    let rows: Vec<&str> = text
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .collect();
    let last: Vec<&str> = rows.last().expect("rows").split_whitespace().collect();
    let max = record.snapshot.histograms[0].histogram.max();
    assert_eq!(
        last,
        [
            format!("{:.3}", max as f64 / 1000.0).as_str(),
            "1.000000000000",
            "100"
        ]
    );
    assert!(text.contains("Total count    =          100]"), "{text}");
}

#[test]
fn create_run_dir_never_overwrites() {
    let out = tempfile::tempdir().expect("tempdir");
    let base = out.path().join("nested/results");
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let first = create_run_dir(&base, "a/b c", now).expect("first");
    std::fs::write(first.join("marker"), "first run").expect("marker");
    let second = create_run_dir(&base, "a/b c", now).expect("second");
    let third = create_run_dir(&base, "a/b c", now).expect("third");
    assert_eq!(
        first.file_name().and_then(|n| n.to_str()),
        Some("20231114T221320Z-a_b_c")
    );
    assert_eq!(
        second.file_name().and_then(|n| n.to_str()),
        Some("20231114T221320Z-a_b_c-2")
    );
    assert_eq!(
        third.file_name().and_then(|n| n.to_str()),
        Some("20231114T221320Z-a_b_c-3")
    );
    assert_eq!(
        std::fs::read_to_string(first.join("marker")).expect("marker"),
        "first run"
    );
}

#[test]
fn summary_text_has_latencies_errors_and_status() {
    let plan = plan();
    let text = render_summary(&record(&plan));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("metric") && lines[0].ends_with("max ms"),
        "{text}"
    );
    let ready = lines
        .iter()
        .find(|l| l.starts_with("ready "))
        .expect("ready row");
    assert_eq!(
        ready.split_whitespace().collect::<Vec<_>>(),
        ["ready", "1:start", "100", "50.02", "99.01", "100.0"]
    );
    assert!(text.contains("errors: 3 (jetstream 10026: 3)"), "{text}");
    assert!(
        text.contains("agents: 2 started, 1 ready, 1 failed, 0 unfinished"),
        "{text}"
    );
    assert!(
        text.contains("status: failed after 12.3 s: 1 of 2 agents failed"),
        "{text}"
    );
}

#[test]
fn meminfo_total_is_read_in_bytes() {
    let meminfo = "MemTotal:       16318412 kB\nMemFree:         1000 kB\n";
    assert_eq!(mem_total_bytes(meminfo), Some(16_318_412 * 1024));
    assert_eq!(mem_total_bytes("nothing"), None);
}
