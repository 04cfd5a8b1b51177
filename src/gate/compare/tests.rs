use super::*;

const SUMMARY: &str = "phase,metric,unit,count,min,p50,p90,p99,p999,max,mean\n\
    1:start,connect,ms,20,1.0,2.000,3.0,4.000,4.0,4.0,2.0\n\
    1:start,ready,ms,20,400.0,480.000,490.0,500.000,500.0,500.0,470.0\n\
    4:broker_restart,recovery,ms,20,9000.0,9200.000,9300.0,9300.000,9300.0,9300.0,9250.0\n";

fn figures(text: &str) -> (tempfile::TempDir, Figures) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("summary.csv"), text).expect("write");
    let f = load(dir.path()).expect("load");
    (dir, f)
}

fn settings() -> Settings {
    Settings::resolve(None, None, None)
}

#[test]
fn an_identical_run_passes_and_a_doubled_metric_regresses() {
    let (_a, base) = figures(SUMMARY);
    let c = compare(&base, &base, &settings());
    assert_eq!(c.regressed(), 0);
    // connect is below the 5 ms floor on both sides.
    assert_eq!(c.count(Verdict::BelowFloor), 2);
    assert_eq!(c.count(Verdict::Ok), 4);

    let doubled = SUMMARY.replace(
        "1:start,ready,ms,20,400.0,480.000,490.0,500.000",
        "1:start,ready,ms,20,400.0,960.000,490.0,1000.000",
    );
    let (_b, now) = figures(&doubled);
    let c = compare(&now, &base, &settings());
    let regressed: Vec<String> = c
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Regressed)
        .map(Compared::path)
        .collect();
    assert_eq!(regressed, ["ready[1:start].p50", "ready[1:start].p99"]);
    let text = render(&c, false);
    assert!(text.contains("REGRESSED"), "{text}");
    assert!(text.contains("2.00x"), "{text}");
    assert!(text.contains("FAIL: 2 regressed"), "{text}");
    // The other way round it is an improvement, which never fails.
    let c = compare(&base, &now, &settings());
    assert_eq!(c.regressed(), 0);
    assert_eq!(c.count(Verdict::Improved), 2);
}

#[test]
fn tolerances_floor_and_metric_selection() {
    let scenario = BaselineSettings {
        tolerance: Some(0.2),
        tolerances: vec![
            ("ready".to_string(), 0.5),
            ("ready.p99".to_string(), 1.5),
            ("consumer_create.*".to_string(), 0.75),
        ],
        floor_ms: Some(10.0),
        metrics: vec!["ready".to_string()],
    };
    let s = Settings::resolve(Some(&scenario), None, None);
    assert_eq!(s.tolerance_for("ready", "p99"), 1.5);
    assert_eq!(s.tolerance_for("ready", "p50"), 0.5);
    assert_eq!(s.tolerance_for("consumer_create.jobs", "p50"), 0.75);
    assert_eq!(s.tolerance_for("recovery", "p50"), 0.2);
    let cli = Settings::resolve(Some(&scenario), Some(0.05), Some(1.0));
    assert_eq!((cli.tolerance, cli.floor_ms), (0.05, 1.0));
    assert_eq!(cli.tolerance_for("ready", "p99"), 1.5);

    let (_a, base) = figures(SUMMARY);
    let slower = SUMMARY.replace("9200.000", "18400.000");
    let (_b, now) = figures(&slower);
    let c = compare(&now, &base, &s);
    // Only the selected metric: its p50 and p99, and not the slower recovery.
    let compared: Vec<String> = c.rows.iter().map(Compared::path).collect();
    assert_eq!(compared, ["ready[1:start].p50", "ready[1:start].p99"]);
    assert_eq!(c.regressed(), 0);
}

#[test]
fn missing_and_new_metrics_are_listed_but_do_not_fail() {
    let (_a, base) = figures(SUMMARY);
    let other = SUMMARY.replace(",recovery,", ",resync,");
    let (_b, now) = figures(&other);
    let c = compare(&now, &base, &settings());
    assert_eq!(c.regressed(), 0);
    assert_eq!(c.count(Verdict::Missing), 2);
    assert_eq!(c.count(Verdict::New), 2);
    let suite = junit_suite(&c);
    assert_eq!(suite.cases.len(), c.rows.len());
}

#[test]
fn repeats_are_reduced_to_their_median_and_compare_csv_is_preferred() {
    let merged = "variant,repeat,phase,metric,unit,count,min,p50,p90,p99,p999,max,mean\n\
        default,1,1:start,ready,ms,20,1,100,1,200,1,1,1\n\
        default,2,1:start,ready,ms,20,1,300,1,900,1,1,1\n\
        default,3,1:start,ready,ms,20,1,110,1,210,1,1,1\n";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("summary.csv"), merged).expect("write");
    let f = load(dir.path()).expect("load");
    assert_eq!(f.kind, "summary.csv (median of 3 repeats)");
    assert_eq!((f.rows[0].p50, f.rows[0].p99), (110.0, 210.0));
    std::fs::write(
        dir.path().join("compare.csv"),
        "phase,metric,variant,runs,count,p50,p99,max,p50_ratio,p99_ratio,p50_diff_ci_low,p50_diff_ci_high,p99_diff_ci_low,p99_diff_ci_high,verdict\n\
         1:start,ready,default,3,60,120.0,250.0,900.0,,,,,,,\n",
    )
    .expect("write");
    let f = load(dir.path()).expect("load");
    assert!(f.kind.starts_with("compare.csv"), "{}", f.kind);
    assert_eq!((f.rows[0].p50, f.rows[0].p99), (120.0, 250.0));
    // A pooled A/B side matches a single run's rows when each has one variant.
    let (_s, single) = figures(SUMMARY);
    let c = compare(&f, &single, &settings());
    let ready: Vec<&Compared> = c.rows.iter().filter(|r| r.metric == "ready").collect();
    assert_eq!(ready.len(), 2);
    assert_eq!(ready[0].verdict, Verdict::Improved);
}

#[test]
fn unreadable_inputs_and_different_fleets_are_refused() {
    assert!(
        load(Path::new("/nonexistent/x"))
            .unwrap_err()
            .to_string()
            .contains("no such file")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(
        load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("not a fleetsim run directory")
    );
    std::fs::write(dir.path().join("summary.csv"), "a,b\n1,2\n").expect("write");
    assert!(
        load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("needs phase, metric")
    );
    let (_a, mut a) = figures(SUMMARY);
    let mut b = a.clone();
    a.agents = Some(30);
    b.agents = Some(300);
    assert!(
        comparable(&a, &b)
            .unwrap_err()
            .to_string()
            .contains("30 agents, the baseline 300")
    );
    b.agents = None;
    assert!(comparable(&a, &b).is_ok());
}

const COUNTS: &str = "phase,covers,figure,value,total,unit,exact\n\
    1:start,1:start 2:wait_ready,consumers.long_lived_per_agent,7.0,70,count/agent,true\n\
    1:start,1:start 2:wait_ready,api.total_per_agent,40.0,400,count/agent,true\n\
    1:start,1:start 2:wait_ready,api.consumer_create_per_agent,10.0,100,count/agent,true\n\
    1:start,1:start 2:wait_ready,msgs.in_per_agent,44.0,440,count/agent,false\n";

fn with_counts(counts: &str) -> (tempfile::TempDir, Figures) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("summary.csv"), SUMMARY).expect("write");
    std::fs::write(dir.path().join("counts.csv"), counts).expect("write");
    let f = load(dir.path()).expect("load");
    (dir, f)
}

#[test]
fn exact_counts_are_compared_with_zero_tolerance_whatever_the_latency_tolerance() {
    let (_a, base) = with_counts(COUNTS);
    let c = compare(&base, &base, &settings());
    assert_eq!((c.regressed(), c.counts.len()), (0, 3), "{c:#?}");
    assert!(render(&c, false).contains("exact counts (zero tolerance): 3 same, 0 changed"));

    // One more consumer per agent: two counts up, and a kind of request never made
    // before (0 in the baseline, whose audit lists the kinds that occurred).
    let more = COUNTS
        .replace("long_lived_per_agent,7.0,70", "long_lived_per_agent,8.0,80")
        .replace(
            "api.total_per_agent,40.0,400",
            "api.total_per_agent,41.0,410",
        )
        + "1:start,1:start 2:wait_ready,api.consumer_delete_per_agent,0.1,1,count/agent,true\n"
        + "1:start,1:start 2:wait_ready,msgs.out_per_agent,99.0,990,count/agent,false\n";
    let (_b, now) = with_counts(&more);
    let wide = Settings {
        tolerance: 10.0,
        ..settings()
    };
    let c = compare(&now, &base, &wide);
    let changed: Vec<(String, CountVerdict)> = c
        .counts
        .iter()
        .filter(|r| r.verdict.fails())
        .map(|r| (r.path(), r.verdict))
        .collect();
    assert_eq!(
        changed,
        [
            (
                "count[1:start].consumers.long_lived_per_agent".to_string(),
                CountVerdict::Regressed
            ),
            (
                "count[1:start].api.total_per_agent".to_string(),
                CountVerdict::Regressed
            ),
            (
                "count[1:start].api.consumer_delete_per_agent".to_string(),
                CountVerdict::Regressed
            ),
        ]
    );
    assert_eq!(c.count(Verdict::Regressed), 0, "the latencies did not move");
    let text = render(&c, false);
    assert!(
        text.contains("FAIL: 0 regressed, 3 exact counts changed"),
        "{text}"
    );
    assert!(text.contains("+1"), "{text}");

    // Fewer is a change too, and fails: record the baseline again if it is intended.
    let c = compare(&base, &now, &wide);
    assert_eq!(c.counts_changed(), 3);
    assert!(c.counts.iter().any(|r| r.verdict == CountVerdict::Lower));
    assert!(render(&c, false).contains("CHANGED (lower)"));

    // A side without counts.csv: said, not failed.
    let (_c, old) = figures(SUMMARY);
    let c = compare(&old, &base, &settings());
    assert_eq!(c.regressed(), 0);
    assert!(render(&c, false).contains("exact counts not compared: no counts.csv"));
}

#[test]
fn repeats_that_disagree_on_a_count_leave_it_uncompared() {
    let merged = "variant,repeat,phase,covers,figure,value,total,unit,exact\n\
        a,1,1:start,1:start,api.total_per_agent,40.0,400,count/agent,true\n\
        a,2,1:start,1:start,api.total_per_agent,40.0,400,count/agent,true\n\
        a,1,1:start,1:start,consumers.long_lived_per_agent,7.0,70,count/agent,true\n\
        a,2,1:start,1:start,consumers.long_lived_per_agent,7.1,71,count/agent,true\n";
    let (_d, f) = with_counts(merged);
    let counts = f.counts.expect("counts");
    assert_eq!(counts.len(), 2);
    assert!(counts[0].1.exact, "the repeats agree");
    assert!(!counts[1].1.exact, "the repeats disagree: {counts:?}");
}
