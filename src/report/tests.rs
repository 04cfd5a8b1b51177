//! Reports of synthetic run directories: a single run, an A/B run, and broken or
//! partial ones (which must be errors naming the file, or notes, never panics).

use std::path::Path;

use super::*;

fn put(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// An hgrm of values 1..=n × scale ms (not exact HdrHistogram ticks; the reader needs
/// only the rows).
fn hgrm(n: u32, scale: f64) -> String {
    let mut text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n".to_string();
    for i in 1..=n {
        let p = f64::from(i - 1) / f64::from(n);
        text += &format!(
            "{:12.3} {p:.12} {i:10} {:14.2}\n",
            f64::from(i) * scale,
            1.0 / (1.0 - p)
        );
    }
    text += &format!(
        "{:12.3} 1.000000000000 {n:10}\n#[Mean    =        1.000, StdDeviation   =        0.000]\n",
        f64::from(n) * scale
    );
    text
}

/// A complete single-run directory: 3 agents, a start and a broker restart with a gap.
fn single_run(dir: &Path, name: &str, scale: f64) {
    let manifest = serde_json::json!({
        "scenario": {"name": name, "text": "name = \"x\"\n[fleet]\nagents = 3\n"},
        "settings": {
            "description": "a herd at 1,000 agents",
            "fleet": {"agents": 3, "profile": "kanade", "splay": null},
            "profile": {
                "name": "kanade",
                "consumers": [{}, {}, {}, {}, {}, {}, {}],
                "sync": [{"type": "get"}, {"type": "walk"}, {"type": "walk"}],
            },
        },
        "broker": {"kind": "embedded", "version": "2.15.1"},
        "status": "failed", "reasons": ["agent <pc-1> & co failed"],
        "started_at": "2026-01-01T00:00:00.000Z", "ended_at": "2026-01-01T00:00:03.000Z",
        "duration_secs": 3.0, "fleet": {"ready": 2, "failed": 1},
        "phases": ["0:setup", "1:start", "2:broker_restart"],
    });
    put(dir, "manifest.json", &manifest.to_string());
    let mut ts = "t_secs,step,connected,ready,recovering,failed,api_consumer_create,api_consumer_delete,api_stream_info,api_other,api_limit_reached,step_marker\n".to_string();
    for i in 0..30 {
        let (step, connected) = if i < 10 {
            ("1:start", 3)
        } else {
            ("2:broker_restart", if i < 15 { 0 } else { 3 })
        };
        let marker = if i == 0 || i == 10 { "begin" } else { "" };
        ts += &format!(
            "{:.3},{step},{connected},{connected},{},0,{},0,1,0,0,{marker}\n",
            f64::from(i) / 10.0,
            3 - connected,
            i % 7
        );
    }
    put(dir, "timeseries.csv", &ts);
    let mut broker =
        "t_secs,step,ok,error,healthz,connections,consumers,api_total,api_errors,api_inflight\n"
            .to_string();
    for i in 0..30 {
        let t = f64::from(i) / 10.0;
        broker += &if (11..14).contains(&i) {
            format!("{t},2:broker_restart,false,refused,,,,,,\n")
        } else {
            format!("{t},x,true,,ok,4,{},100,0,{}\n", 20 + i, i % 3)
        };
    }
    put(dir, "broker.csv", &broker);
    put(
        dir,
        "steps.csv",
        "step,began_secs,ended_secs\n1:start,0.000,1.000\n2:broker_restart,1.000,3.000\n",
    );
    put(
        dir,
        "summary.csv",
        "phase,metric,unit,count,min,p50,p90,p99,p999,max,mean\n1:start,ready,ms,3,1,2,3,3,3,3,2\n",
    );
    put(dir, "1-ready.hgrm", &hgrm(20, scale));
    put(dir, "2-recovery.hgrm", &hgrm(5, 100.0 * scale));
    put(dir, "1-kv_bind.hgrm", &hgrm(3, scale));
}

/// Changes a run directory's `manifest.json`.
fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut manifest);
    std::fs::write(path, manifest.to_string()).expect("write");
}

/// The text of the first `<{tag} ... id="{id}" ...>` element, up to its closing tag.
fn element<'a>(html: &'a str, tag: &str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id}"));
    let start = html[..at].rfind(&format!("<{tag}")).expect("opening tag");
    let end = html[start..]
        .find(&format!("</{tag}>"))
        .expect("closing tag");
    &html[start..start + end]
}

/// The `<svg id="chart-NAME"` element's text.
fn svg<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!("<svg id=\"chart-{name}\""))
        .unwrap_or_else(|| panic!("no chart {name}"));
    let end = html[start..].find("</svg>").expect("closed svg");
    &html[start..start + end]
}

/// Polylines with at least 3 points: data, not axes, ticks, markers or legend marks.
fn data_lines(svg: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| {
            let points = p.split("points=\"").nth(1).unwrap_or("");
            points
                .split('"')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .count()
                >= 3
        })
        .count()
}

#[test]
fn a_single_run_has_its_charts_and_tables_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    single_run(dir.path(), "herd <b>", 1.0);
    put(dir.path(), "charts/latency-9-gone.svg", "<svg/>");
    let path = write_report(dir.path()).expect("report");
    assert!(
        !dir.path().join("charts/latency-9-gone.svg").exists(),
        "stale chart"
    );
    let html = std::fs::read_to_string(&path).expect("read");
    assert!(html.contains("herd &lt;b&gt;") && !html.contains("herd <b>"));
    assert!(html.contains("agent &lt;pc-1&gt; &amp; co failed"));
    assert!(html.contains("class=\"status failed\""));
    for name in [
        "fleet",
        "broker",
        "api",
        "latency-1-ready",
        "latency-2-recovery",
    ] {
        assert!(data_lines(svg(&html, name)) >= 1, "{name}");
        assert!(
            dir.path().join(format!("charts/{name}.svg")).is_file(),
            "{name}"
        );
    }
    assert!(
        !html.contains("chart-latency-1-kv_bind"),
        "only key metrics are charted"
    );
    assert!(
        svg(&html, "fleet").contains("2:broker_restart"),
        "step labels"
    );
    assert!(
        svg(&html, "broker").contains("no sample"),
        "the gap is marked"
    );
    assert!(html.contains("<h3>summary.csv</h3>") && !html.contains("<h3>recovery.csv</h3>"));
    assert!(html.contains("<p class=\"fleet-run\">Fleet run: 3 agents.</p>"));
}

#[test]
fn the_description_stands_beside_the_fleet_actually_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    single_run(dir.path(), "herd", 1.0);
    // `--agents 3` over a file that says 1000 (and whose description says 1,000).
    edit_manifest(dir.path(), |m| {
        m["scenario"]["text"] = "name = \"x\"\n[fleet]\nagents = 1000\n".into();
    });
    let html = std::fs::read_to_string(write_report(dir.path()).expect("report")).expect("read");
    let description = html
        .find("<p class=\"description\">a herd at 1,000 agents</p>")
        .expect("description");
    let fleet = html
        .find(
            "<p class=\"fleet-run\">Fleet run: 3 agents (the scenario file&#39;s [fleet] sets \
             1,000; overridden for this run).</p>",
        )
        .expect("the fleet run, with the override");
    assert!(fleet > description, "beside the description");
    assert!(element(&html, "table", "facts").contains("<td>3 agents</td>"));
}

#[test]
fn the_broker_chart_tells_long_lived_consumers_from_transient_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    single_run(dir.path(), "herd", 1.0);
    let html = std::fs::read_to_string(write_report(dir.path()).expect("report")).expect("read");
    let broker = svg(&html, "broker");
    assert!(
        broker.contains("long-lived: 7 per agent"),
        "the level's legend"
    );
    // The level is drawn: a dotted path at 7 × 3 = 21 consumers, beside the data.
    assert!(data_lines(broker) >= 2, "consumers and API in flight");
    let note = element(&html, "p", "note-broker");
    assert!(
        note.contains("the kanade profile keeps 7 long-lived consumers per agent (7 × 3 agents = 21, the dotted line)"),
        "{note}"
    );
    assert!(
        note.contains("2 catalog walks (keys()) open an ordered consumer")
            && note.contains("up to 9 per agent"),
        "{note}"
    );
    assert!(
        html.find("id=\"note-broker\"") > html.find("id=\"chart-broker\""),
        "under its chart"
    );

    // A profile without walks has nothing transient to explain.
    edit_manifest(dir.path(), |m| {
        m["settings"]["profile"]["sync"] = serde_json::json!([{"type": "get"}]);
    });
    let html = std::fs::read_to_string(write_report(dir.path()).expect("report")).expect("read");
    assert!(element(&html, "p", "note-broker").contains("walks no catalog"));

    // A profile in tasks: the cold start's walks count, wherever they are.
    edit_manifest(dir.path(), |m| {
        m["settings"]["profile"]["cold_start"] = serde_json::json!([
            {"name": "a", "calls": [{"type": "walk", "bucket": "jobs"}, {"type": "bind"}]},
            {"name": "b", "calls": [{"type": "walk", "bucket": "schedules"}]},
        ]);
    });
    let html = std::fs::read_to_string(write_report(dir.path()).expect("report")).expect("read");
    assert!(
        element(&html, "p", "note-broker")
            .contains("2 catalog walks (keys()) open an ordered consumer"),
        "{html}"
    );
}

#[test]
fn an_ab_run_charts_each_variants_first_repeat_and_leads_with_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let top = dir.path();
    put(
        top,
        "manifest.json",
        r#"{"kind":"ab","scenario":"splay-ab","scenario_text":"repeat = 2","status":"ok","reasons":[],"variants":[]}"#,
    );
    // Listed out of order: the first repeat is the lowest `repeat`, not the first row.
    put(
        top,
        "runs.csv",
        "order,variant,repeat,status,dir,consumers_at_start,reasons\n\
         3,off,2,ok,runs/03-off-r2,0,\n1,off,1,ok,runs/01-off-r1,0,\n\
         2,on,1,ok,runs/02-on-r1,0,\n4,on,2,ok,runs/04-on-r2,0,\n",
    );
    for (sub, scale) in [
        ("01-off-r1", 1.0),
        ("02-on-r1", 2.0),
        ("03-off-r2", 50.0),
        ("04-on-r2", 50.0),
    ] {
        single_run(&top.join("runs").join(sub), "splay-ab", scale);
        if sub.contains("-on-") {
            edit_manifest(&top.join("runs").join(sub), |m| {
                m["settings"]["fleet"]["splay"] = serde_json::json!(
                    {"on_start": false, "placement": "reconnect_delay", "window": "5s"}
                );
            });
        }
    }
    put(
        top,
        "compare.csv",
        "phase,metric,variant,runs,count,p50,p99,max,p50_ratio,p99_ratio,p50_diff_ci_low,p50_diff_ci_high,p99_diff_ci_low,p99_diff_ci_high,verdict\n\
         2:broker_restart,recovery,off,2,10,1,2,2,,,,,,,\n\
         2:broker_restart,recovery,on,2,10,2,4,4,2,2,,,,,on is <slower> than off\n\
         2:broker_restart,ready,off,3,1200,10.5,1500.25,1600,,,,,,,\n\
         2:broker_restart,ready,on,3,1200,5.25,1081.43399999999997,1100,0.5,0.72083,-5.31,-5.1,-418.81600000000003,-12.3,on: ready p99 lower\n",
    );

    let runs = read::chart_runs(top).expect("runs");
    let dirs: Vec<_> = runs
        .iter()
        .map(|r| (r.variant.as_str(), r.dir.clone()))
        .collect();
    assert_eq!(
        dirs,
        [
            ("off", top.join("runs/01-off-r1")),
            ("on", top.join("runs/02-on-r1"))
        ]
    );

    let html = std::fs::read_to_string(write_report(top).expect("report")).expect("read");
    let verdict = html
        .find("on is &lt;slower&gt; than off")
        .expect("verdict shown");
    assert!(
        verdict < html.find("id=\"timeline\"").expect("timeline"),
        "verdicts first"
    );
    // The comparison reads as the rest of the page: units, rounded, no float noise.
    assert!(!html.contains("418.816000"), "raw floats");
    let compare = element(&html, "section", "compare");
    for expected in [
        "<th>p50 ÷ off</th>",
        "<th>p99 − off (95% CI)</th>",
        "<td class=\"num\">1.08 s</td>",
        "<td class=\"num\">×0.72</td>",
        "<td class=\"num\">\u{2212}418.8 ms … \u{2212}12.3 ms</td>",
        "<td class=\"num\">1,200</td>",
    ] {
        assert!(compare.contains(expected), "{expected} in {compare}");
    }
    let tables = element(&html, "section", "tables");
    assert!(
        tables.contains("<td class=\"num\">\u{2212}5.3 ms … \u{2212}5.1 ms</td>"),
        "compare.csv under Tables too"
    );
    // The splay in words, not the plan's JSON.
    let facts = element(&html, "table", "facts");
    assert!(
        facts.contains("<td>off</td><td>5s in the reconnect delay</td>"),
        "{facts}"
    );
    assert!(!facts.contains("on_start"), "{facts}");

    // Variants with the same fleet and profile: their consumers are explained once.
    let note = element(&html, "p", "note-broker");
    assert_eq!(
        note.matches("long-lived consumers per agent").count(),
        1,
        "{note}"
    );
    assert!(svg(&html, "broker").contains("on · long-lived: 7 per agent"));

    let fleet = svg(&html, "fleet");
    assert!(
        fleet.contains("off · ready") && fleet.contains("on · ready"),
        "a line per variant"
    );
    // One curve per variant, from repeat 1: the y axis stops well below repeat 2's 1000 ms.
    let ready = svg(&html, "latency-1-ready");
    assert_eq!(data_lines(ready), 2, "one curve per variant");
    assert!(
        ready.contains("\n40\n") && !ready.contains("\n1000\n"),
        "{ready}"
    );
}

#[test]
fn missing_optional_files_are_notes_and_bad_files_are_named_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        write_report(dir.path()),
        Err(ReportError::NotARun { .. })
    ));

    put(dir.path(), "manifest.json", r#"{"status":"partial"}"#);
    put(
        dir.path(),
        "broker.csv",
        "t_secs,step,ok,error,healthz,connections,consumers,api_total,api_errors,api_inflight\n",
    );
    let html = std::fs::read_to_string(write_report(dir.path()).expect("report")).expect("read");
    assert!(html.contains("no data (broker.csv") && html.contains("no data (timeseries.csv"));

    put(
        dir.path(),
        "timeseries.csv",
        "t_secs,step,connected\n0.1,1:start,3\n0.2,1:start,many\n",
    );
    let e = write_report(dir.path())
        .expect_err("bad number")
        .to_string();
    assert!(e.contains("timeseries.csv:3") && e.contains("many"), "{e}");

    std::fs::remove_file(dir.path().join("timeseries.csv")).expect("rm");
    put(
        dir.path(),
        "1-ready.hgrm",
        "Value Percentile\n\n1.0 0.5 1 2.0\ngarbage here\n",
    );
    let e = write_report(dir.path()).expect_err("bad hgrm").to_string();
    assert!(e.contains("1-ready.hgrm:4"), "{e}");

    put(dir.path(), "manifest.json", "{");
    let e = write_report(dir.path()).expect_err("bad json").to_string();
    assert!(e.contains("manifest.json"), "{e}");
}
