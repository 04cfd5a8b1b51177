//! `report.html` of a real run (a small fleet through a broker crash), rendered by
//! headless Chromium: the page must show the timeline, broker and percentile charts as
//! drawn SVG, and screenshot to a real PNG.
//!
//! Chromium comes from `$CHROMIUM_BIN` or `PATH` (`scripts/provision-chromium.sh`
//! installs it). Without it the rendering part is skipped, loudly, on a developer's
//! machine; it is a failure where the check is required: `FLEETSIM_REQUIRE_CHROMIUM=1`
//! (`scripts/test.sh` sets it when it provides Chromium) or in CI (`CI` set, as GitHub
//! Actions, GitLab CI and most others do), where a skip would pass unseen.

mod common;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::run_scenario;
use fleetsim::results::RunStatus;

const SCENARIO: &str = r#"
name = "report-test"
[fleet]
agents = 20
groups = 3
catalog_entries = 5
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "broker_restart"
signal = "kill"
downtime = "1s"
recover_timeout = "90s"
[[steps]]
kind = "hold"
duration = "1s"
"#;

/// Chromium must never hang the suite.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// Without the background-networking flags Chromium waits on a network it cannot reach.
const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];

/// Why a missing Chromium must fail the test, if it must: `FLEETSIM_REQUIRE_CHROMIUM=1`,
/// or `CI` set to anything but empty, `0` or `false`.
fn chromium_required() -> Option<&'static str> {
    let set = |name| {
        std::env::var(name)
            .ok()
            .filter(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
    };
    if std::env::var("FLEETSIM_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
        Some("FLEETSIM_REQUIRE_CHROMIUM=1")
    } else if set("CI").is_some() {
        Some("CI is set")
    } else {
        None
    }
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("CHROMIUM_BIN").map(PathBuf::from) {
        if bin.is_file() {
            return Some(bin);
        }
        eprintln!(
            "CHROMIUM_BIN={} is not a file; looking on PATH",
            bin.display()
        );
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|bin| bin.is_file())
}

/// Runs Chromium with `args` (stdout to `stdout`), killing its process group after
/// [`CHROMIUM_TIMEOUT`]; panics with its stderr when it fails.
fn chromium(bin: &Path, args: &[String], stdout: &Path) {
    let profile = tempfile::tempdir().expect("profile dir");
    let stderr = profile.path().join("stderr.log");
    let mut child = Command::new(bin)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Its helper processes too (the group is Chromium's own, led by the child).
    // SAFETY: kill(2) on the process group this test created; no memory is involved.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("chromium {args:?} exited with {s}:\n{log}"),
        None => panic!("chromium {args:?} did not finish in {CHROMIUM_TIMEOUT:?}:\n{log}"),
    }
}

/// The text of the `<svg id="chart-{id}...` element whose id starts with `id`.
fn svg<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<svg id=\"chart-{id}"))
        .unwrap_or_else(|| panic!("no chart {id} in the rendered DOM"));
    let end = dom[start..].find("</svg>").expect("closed svg");
    &dom[start..start + end]
}

/// Polylines with at least 3 points: data, not axes, ticks, markers or legend marks.
fn data_lines(svg: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| {
            let points = p.split("points=\"").nth(1).unwrap_or("");
            let points = points.split('"').next().unwrap_or("");
            points.split_whitespace().count() >= 3
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_of_a_broker_crash_renders_in_chromium() {
    // Before the run: a required render without Chromium fails at once.
    let found = find_chromium();
    if let (None, Some(why)) = (&found, chromium_required()) {
        panic!(
            "chromium not found (CHROMIUM_BIN, PATH) and {why}: report.html must be rendered \
             (scripts/provision-chromium.sh installs it)"
        );
    }
    let out = tempfile::tempdir().expect("tempdir");
    let report = run_scenario(SCENARIO, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let html_path = fleetsim::report::write_report(&report.dir).expect("report written");
    assert_eq!(html_path, report.dir.join("report.html"));
    for chart in [
        "fleet",
        "broker",
        "api",
        "latency-1-ready",
        "latency-3-recovery",
    ] {
        let svg = report.dir.join("charts").join(format!("{chart}.svg"));
        assert!(svg.is_file(), "{} missing", svg.display());
    }
    let html = std::fs::read_to_string(&html_path).expect("read report");
    assert!(
        html.contains("<p class=\"fleet-run\">Fleet run: 20 agents.</p>"),
        "the fleet actually run"
    );
    // kanade: 7 long-lived consumers per agent, and 3 catalog walks at cold start
    // (jobs, schedules, schedules again) whose keys() consumers linger.
    assert!(
        html.contains("7 long-lived consumers per agent (7 × 20 agents = 140, the dotted line)")
            && html.contains("reaches up to 10 per agent"),
        "the broker chart's note"
    );
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing fetched"
    );

    let Some(bin) = found else {
        eprintln!(
            "\n*** SKIPPED: chromium not found (set CHROMIUM_BIN or run scripts/provision-chromium.sh); report.html was not rendered ***\n"
        );
        return;
    };
    let url = format!("file://{}", html_path.display());

    let dom_path = out.path().join("dom.html");
    chromium(&bin, &["--dump-dom".into(), url.clone()], &dom_path);
    let dom = std::fs::read_to_string(&dom_path).expect("read dom");
    let fleet = svg(&dom, "fleet");
    assert!(
        data_lines(fleet) >= 4,
        "connected, ready, recovering, failed"
    );
    assert!(
        fleet.contains("3:broker_restart"),
        "step boundaries are labelled"
    );
    let broker = svg(&dom, "broker");
    assert!(data_lines(broker) >= 1, "consumers on the broker");
    assert!(
        broker.contains("long-lived: 7 per agent"),
        "the level's legend"
    );
    assert!(broker.contains("no sample"), "the crash is a marked gap");
    assert!(data_lines(svg(&dom, "api")) >= 1);
    for latency in ["latency-1-ready", "latency-3-recovery"] {
        assert!(data_lines(svg(&dom, latency)) >= 1, "{latency}");
    }
    assert!(dom.contains("<td class=\"num\">20</td>"), "tables rendered");

    let png = out.path().join("report.png");
    chromium(
        &bin,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,3000".into(),
            url,
        ],
        &out.path().join("screenshot.log"),
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 20_000,
        "a page with content: {} bytes",
        bytes.len()
    );
}
