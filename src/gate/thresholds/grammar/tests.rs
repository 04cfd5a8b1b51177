use super::*;

fn known() -> Known {
    Known {
        consumers: vec!["agent_config".to_string(), "jobs".to_string()],
        phases: [
            "0:setup",
            "1:start",
            "2:wait_ready",
            "3:write",
            "4:broker_restart",
        ]
        .map(String::from)
        .to_vec(),
    }
}

fn parse(text: &str) -> Check {
    parse_check(text, &known()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn problem(text: &str) -> String {
    match parse_check(text, &known()) {
        Ok(c) => panic!("{text} parsed: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn latency_checks_take_durations_in_ms() {
    let c = parse("ready.p99 < 5s");
    assert_eq!(
        c.source,
        Source::Latency {
            metric: "ready".into(),
            stat: "p99".into()
        }
    );
    assert_eq!((c.op, c.limit, c.phase.as_deref()), (Op::Lt, 5000.0, None));
    assert_eq!(parse("delivery.pc.p50<=250ms").limit, 250.0);
    assert_eq!(parse("fleet.all_ready.max <= 1.5m").limit, 90_000.0);
    assert_eq!(
        parse("consumer_create.jobs[1:start].p999 < 2 s").limit,
        2000.0
    );
    assert_eq!(parse("ready.count >= 300").unit(), Unit::Count);
    let c = parse("consumer_create.jobs[start].max < 1h");
    assert_eq!(c.phase.as_deref(), Some("start"));
    assert_eq!(c.limit, 3_600_000.0);
}

#[test]
fn recovery_percentiles_come_from_recovery_csv_and_the_rest_from_summary() {
    assert_eq!(
        parse("recovery.p100 < 30s").source,
        Source::Recovery { pct: 100 }
    );
    assert_eq!(
        parse("recovery[4].p99 < 30s").source,
        Source::Recovery { pct: 99 }
    );
    assert_eq!(
        parse("recovery.max < 30s").source,
        Source::Latency {
            metric: "recovery".into(),
            stat: "max".into()
        }
    );
}

#[test]
fn counts_ratios_and_families() {
    assert_eq!(
        parse("errors.total == 0").source,
        Source::Errors {
            kind: "total".into(),
            code: None
        }
    );
    assert_eq!(
        parse("errors[broker_restart].jetstream_10026 == 0").source,
        Source::Errors {
            kind: "jetstream".into(),
            code: Some(10026)
        }
    );
    let c = parse("fanout.pc.ratio <= 100%");
    assert_eq!((c.unit(), c.limit), (Unit::Ratio, 1.0));
    assert_eq!(parse("fanout.jobs.intended >= 0.99").limit, 0.99);
    assert_eq!(parse("fanout.pc.unintended == 0").unit(), Unit::Count);
    assert_eq!(parse("writes.missed == 0").op, Op::Eq);
    assert_eq!(parse("broker.api_errors != 5").op, Op::Ne);
    assert_eq!(
        parse("broker[1:start].api_errors == 0").phase.as_deref(),
        Some("1:start")
    );
    assert_eq!(parse("agents.failed > 0").op, Op::Gt);
}

#[test]
fn malformed_checks_say_what_is_wrong() {
    let cases = [
        ("ready.p99 5s", "no comparison"),
        ("ready.p99 = 5s", "no comparison"),
        ("ready < 5s", "names no stat"),
        ("< 5s", "nothing before"),
        ("ready.p99 <", "no limit"),
        ("ready.p99 < 5", "give the limit a unit"),
        ("ready.p99 < 5 parsecs", "unknown unit"),
        ("ready.p99 < -5s", "bad limit"),
        ("ready.p99 < fast", "bad limit"),
        ("ready.p98 < 5s", "unknown stat \"p98\""),
        ("ready.p100 < 5s", "p100 is recovery's only"),
        ("raedy.p99 < 5s", "unknown metric \"raedy\""),
        (
            "consumer_create.nope.p99 < 5s",
            "consumer of the fleet's profile: agent_config, jobs",
        ),
        ("delivery.nope.p99 < 5s", "a write kind"),
        ("errors.total == 0s", "is a count"),
        ("errors.timeouts == 0", "unknown errors field"),
        ("errors.jetstream_x == 0", "error code"),
        ("fanout.nope.ratio <= 1", "unknown write kind"),
        ("fanout.pc.ratio <= 1s", "is a ratio"),
        ("fanout.pc.rate <= 1", "unknown fanout field"),
        ("writes.lost == 0", "unknown writes field"),
        ("broker.cpu < 5", "unknown broker field"),
        ("agents[1].failed == 0", "drop [1]"),
        ("ready[9].p99 < 5s", "no phase \"9\""),
        ("ready[].p99 < 5s", "empty []"),
        ("ready[1.p99 < 5s", "unclosed ["),
        ("ready[1]p99 < 5s", "expected .<stat>"),
        ("ready:1.p99 < 5s", "in brackets"),
        ("ready.p99 (x) < 5s", "unexpected ' '"),
    ];
    for (text, expected) in cases {
        let e = problem(text);
        assert!(e.contains(expected), "{text}: {e}");
    }
}

#[test]
fn operators_compare_with_a_tolerance_for_decimal_text() {
    assert!(Op::Lt.holds(4.999, 5.0));
    assert!(!Op::Lt.holds(5.0, 5.0));
    assert!(Op::Le.holds(5.0, 5.0));
    assert!(Op::Eq.holds(0.1 + 0.2, 0.3));
    assert!(Op::Ne.holds(1.0, 0.0));
    assert!(Op::Ge.holds(1.0, 1.0));
    assert!(!Op::Gt.holds(1.0, 1.0));
    assert!(!Op::Lt.holds(f64::INFINITY, 30_000.0));
}

#[test]
fn phase_selectors() {
    assert!(phase_matches("4:broker_restart", "4:broker_restart"));
    assert!(phase_matches("4", "4:broker_restart"));
    assert!(phase_matches("broker_restart", "4:broker_restart"));
    assert!(!phase_matches("broker", "4:broker_restart"));
    assert!(!phase_matches("14", "4:broker_restart"));
}

#[test]
fn percentages() {
    assert_eq!(parse_percent("10%"), Ok(0.1));
    assert_eq!(parse_percent(" 25.5 % "), Ok(0.255));
    assert!(parse_percent("10").is_err());
    assert!(parse_percent("-5%").is_err());
}

#[test]
fn counts_take_a_figure_with_dots_and_the_run_phase() {
    let c = parse("count[4:broker_restart].api.consumer_create_per_agent <= 7");
    assert_eq!(
        c.source,
        Source::Count {
            figure: "api.consumer_create_per_agent".to_string()
        }
    );
    assert_eq!(c.phase.as_deref(), Some("4:broker_restart"));
    assert_eq!((c.unit(), c.limit), (Unit::Count, 7.0));
    let c = parse("count.consumers.long_lived_per_agent == 7");
    assert_eq!(c.phase, None);
    assert_eq!(
        parse("count[run].reconnects_per_agent <= 1")
            .phase
            .as_deref(),
        Some("run")
    );
    parse("count[start].deliveries.pc_per_write == 1");
    parse("count[start].api.consumer_durable_create_per_agent == 0");
    assert!(problem("count[start].consumers.per_agent == 7").contains("unknown count"));
    assert!(problem("count[start].deliveries.nope_per_write == 1").contains("write kind"));
    assert!(problem("count[start] == 1").contains("expected .<figure>"));
    assert!(problem("count[9:hold].api.total_per_agent < 1").contains("no phase"));
    assert!(problem("count[start].api.total_per_agent < 1s").contains("plain number"));
}
