//! Shared helpers for integration tests: run a scenario text against a real embedded
//! nats-server (fleetsim starts it on loopback with free ports and a temp store dir, and
//! stops it) and read the run directory back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fleetsim::results::rows::*;
use fleetsim::results::*;
use fleetsim::run::{RunOptions, RunReport};

/// Runs `scenario` (TOML text) to completion; results go under `out`.
pub async fn run_scenario(scenario: &str, out: &Path) -> RunReport {
    let plan =
        fleetsim::scenario::parse_str(scenario, "test.toml").expect("test scenario is valid");
    run_plan(plan, scenario, out).await
}

/// Runs `scenario` against a broker the test started itself (`url`, and its monitoring
/// endpoint when given), as `--server`/`--monitor` would.
pub async fn run_against(
    scenario: &str,
    url: String,
    monitor_url: Option<String>,
    out: &Path,
) -> RunReport {
    let mut plan =
        fleetsim::scenario::parse_str(scenario, "test.toml").expect("test scenario is valid");
    plan.broker.url = Some(url);
    plan.broker.monitor_url = monitor_url;
    run_plan(plan, scenario, out).await
}

async fn run_plan(plan: fleetsim::plan::Plan, scenario: &str, out: &Path) -> RunReport {
    let options = RunOptions {
        scenario_path: None,
        scenario_text: scenario.to_string(),
        results_base: out.to_path_buf(),
        run_dir: None,
        proxy_program: Some(env!("CARGO_BIN_EXE_fleetsim").into()),
    };
    fleetsim::run::run(plan, options, std::future::pending())
        .await
        .expect("run reaches its results")
}

/// Reads a CSV file of a run into rows of (header -> value).
///
/// The file is first read through the run directory's own reader as the writer's row
/// type (`deny_unknown_fields`), so a column added, renamed or dropped on either side
/// fails the test that reads it, even one that looks at a single cell.
pub fn read_csv(dir: &Path, name: &str) -> Vec<std::collections::HashMap<String, String>> {
    assert_typed(dir, name);
    let mut reader =
        csv::Reader::from_path(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let headers = reader.headers().expect("csv header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("csv row");
            headers
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Every row of `R`'s file in `dir`, typed (`deny_unknown_fields`); panics naming the
/// file and line otherwise.
pub fn rows<R: CsvFile>(dir: &Path) -> Vec<R> {
    RunDir::new(dir).rows().unwrap_or_else(|e| panic!("{e}"))
}

/// The rows of `R`'s file where an A/B run may have merged it (`variant,repeat` first).
pub fn merged_rows<R: CsvFile>(dir: &Path) -> Vec<Merged<R>> {
    RunDir::new(dir)
        .merged_rows()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A single run's `manifest.json`, typed (`deny_unknown_fields`).
pub fn manifest(dir: &Path) -> Manifest {
    RunDir::new(dir)
        .manifest()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Reads `dir/name` as the row type its writer uses, when it is a file of the run
/// directory; a file this list does not know is a test that needs a new entry.
fn assert_typed(dir: &Path, name: &str) {
    fn check<R: CsvFile>(dir: &Path) {
        merged_rows::<R>(dir);
    }
    match name {
        SUMMARY_FILE => check::<SummaryRow>(dir),
        ERRORS_FILE => check::<ErrorRow>(dir),
        AGENTS_FILE => check::<AgentRow>(dir),
        STEPS_FILE => check::<StepRow>(dir),
        TIMESERIES_FILE => check::<TimeseriesRow>(dir),
        RECOVERY_FILE => check::<RecoveryRow>(dir),
        UNRECOVERED_FILE => check::<UnrecoveredRow>(dir),
        WRITES_FILE => check::<WritesRow>(dir),
        RECONCILE_FILE => check::<ReconcileRow>(dir),
        BROKER_FILE => check::<BrokerRow>(dir),
        THRESHOLDS_FILE => check::<ThresholdRow>(dir),
        RUNS_FILE => check::<RunEntry>(dir),
        COMPARE_FILE => check::<fleetsim::ab_stats::CompareRow>(dir),
        SWEEP_FILE => check::<fleetsim::sweep::SweepRow>(dir),
        API_FILE => check::<ApiRow>(dir),
        COUNTS_FILE => check::<CountRow>(dir),
        other => panic!("{other}: not a file of a run directory (add its row type here)"),
    }
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub type Row = std::collections::HashMap<String, String>;

/// The `steps.csv` row of step `label` (e.g. `"2:wait_ready"`).
pub fn step_row<'a>(rows: &'a [Row], label: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["step"] == label)
        .unwrap_or_else(|| panic!("no row for step {label}"))
}

/// A numeric cell.
pub fn num(row: &Row, col: &str) -> u64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is not a number", row[col]))
}

/// A decimal cell.
pub fn float(row: &Row, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is not a number", row[col]))
}

/// The `summary.csv` row of `metric` in `phase`.
pub fn summary_row<'a>(rows: &'a [Row], metric: &str, phase: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["metric"] == metric && r["phase"] == phase)
        .unwrap_or_else(|| panic!("no summary row for {metric} in {phase}"))
}

/// The one directory a run (or sweep) wrote under `out`.
pub fn only_dir_in(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one directory under {}: {dirs:?}",
        out.display()
    );
    dirs.into_iter().next().expect("checked")
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// `secret` is in neither what the process printed nor any file under `dir`.
pub fn assert_secret_nowhere(secret: &str, printed: &str, dir: &Path) {
    assert!(
        !printed.contains(secret),
        "the secret was printed:\n{printed}"
    );
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the secret",
            file.display()
        );
    }
}

// Helpers for tests that run the binary or child processes.
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Runs the `fleetsim` binary with `args` in `cwd`, logging warnings only, to the end.
pub fn fleetsim(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(args)
        .current_dir(cwd)
        .env("FLEETSIM_LOG", "warn")
        .output()
        .expect("fleetsim binary runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for `child` to exit; kills it and fails naming `what` if it is still running
/// after `within`.
pub fn wait_within(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} (pid {}) still running after {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The lines of a child's output, read on a thread of their own, so a test waits for the
/// next one with a deadline instead of hanging on a child that went quiet.
pub struct LinesWithin {
    lines: mpsc::Receiver<String>,
}

impl LinesWithin {
    pub fn new(output: impl Read + Send + 'static) -> LinesWithin {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LinesWithin { lines }
    }

    /// The next line, `None` once the output ended; fails naming `what` when nothing
    /// comes before `deadline`.
    pub fn next_before(&self, deadline: Instant, what: &str) -> Option<String> {
        match self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no line before the deadline"),
        }
    }
}

/// A process, by pid and start time: once a pid is reaped it can be given to another
/// process (`pid_max` may be as low as 32768), so the pid alone does not say it is the
/// same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    start: u64,
}

impl Proc {
    /// The process `pid` as it is now, if there is one.
    pub fn of(pid: u32) -> Option<Proc> {
        let (_, start) = stat(pid)?;
        Some(Proc { pid, start })
    }

    /// Still running: neither gone nor a zombie (exited, not yet reaped), nor replaced
    /// by another process with the same pid.
    pub fn running(&self) -> bool {
        matches!(stat(self.pid), Some((state, start)) if state != 'Z' && start == self.start)
    }

    /// Waits until the process is no longer running; fails naming `what` after `within`.
    pub fn wait_gone(&self, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.running() {
            assert!(
                Instant::now() < deadline,
                "{what} (pid {}) still running after {within:?}",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// State and start time (clock ticks since boot) of process `pid`, from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so fields are
    // counted from the last `)`; starttime is field 22, the 20th after comm.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

/// The threads one test runs on: the test's own and those of the runtime it built with
/// [`TestThreads::runtime`]. Under plain `cargo test` the tests of one binary are
/// threads of one process, so a child of the process may be a sibling test's; a child
/// one of these threads forked is this test's (Linux lists children per thread, in
/// `/proc/self/task/<tid>/children`).
#[derive(Clone, Default)]
pub struct TestThreads(Arc<Mutex<BTreeSet<u32>>>);

impl TestThreads {
    /// A multi-thread runtime with 2 workers (as `#[tokio::test(flavor = "multi_thread",
    /// worker_threads = 2)]`) whose threads, and the calling one, are recorded.
    pub fn runtime() -> (tokio::runtime::Runtime, TestThreads) {
        let threads = TestThreads::default();
        threads.0.lock().expect("lock").insert(thread_id());
        let (started, stopped) = (threads.clone(), threads.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                started.0.lock().expect("lock").insert(thread_id());
            })
            .on_thread_stop(move || {
                stopped.0.lock().expect("lock").remove(&thread_id());
            })
            .build()
            .expect("tokio runtime");
        (runtime, threads)
    }

    /// A running child process of this test whose command name starts with `name` and
    /// whose arguments (`argv[1..]`) satisfy `args`.
    pub fn running_child(&self, name: &str, args: impl Fn(&[String]) -> bool) -> Option<Proc> {
        let tids: Vec<u32> = self.0.lock().expect("lock").iter().copied().collect();
        for tid in tids {
            let children = std::fs::read_to_string(format!("/proc/self/task/{tid}/children"))
                .unwrap_or_default();
            for pid in children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .split(|&b| b == 0)
                    .skip(1)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                if comm.starts_with(name)
                    && args(&argv)
                    && let Some(child) = Proc::of(pid).filter(Proc::running)
                {
                    return Some(child);
                }
            }
        }
        None
    }
}

/// The id of the calling thread (`/proc/thread-self` links to `<pid>/task/<tid>`).
fn thread_id() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .and_then(|t| t.to_str())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("thread id in {}", link.display()))
}

/// A nats-server the test owns (fleetsim's embedded broker with its usual limits), for
/// tests that read the broker before, during or after a run (`run_against`).
pub async fn own_broker() -> fleetsim::broker::embedded::EmbeddedBroker {
    use fleetsim::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
    EmbeddedBroker::start(EmbeddedOptions {
        max_connections: 65_536,
        request_queue_limit: 10_000,
        default_max_consumers: -1,
        lame_duck_duration: std::time::Duration::from_secs(30),
        lame_duck_grace_period: std::time::Duration::from_secs(1),
        keepalive: Default::default(),
    })
    .await
    .expect("a broker the test owns")
}

/// A subscription on the broker folding every message it receives into a `T`, until
/// [`Listener::finish`]: what reached the broker, seen from its side.
pub struct Listener<T> {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<T>,
}

impl<T: Send + 'static> Listener<T> {
    /// Subscribes `client` to `subject` and waits until the server has the subscription,
    /// so nothing published after this returns is missed.
    pub async fn start(
        client: &async_nats::Client,
        subject: &str,
        mut value: T,
        mut fold: impl FnMut(&mut T, async_nats::Message) + Send + 'static,
    ) -> Listener<T> {
        use futures::StreamExt;
        let mut messages = client
            .subscribe(subject.to_string())
            .await
            .expect("subscribe");
        client.flush().await.expect("subscribed before the run");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    m = messages.next() => match m {
                        Some(m) => fold(&mut value, m),
                        None => return value,
                    },
                    _ = &mut stopped => break,
                }
            }
            // What is already delivered, then the end of the subscription.
            messages.unsubscribe().await.expect("unsubscribe");
            while let Some(m) = messages.next().await {
                fold(&mut value, m);
            }
            value
        });
        Listener { stop, task }
    }

    /// Everything received until now (flush the client first to have it all).
    pub async fn finish(self) -> T {
        self.stop
            .send(())
            .expect("the subscription was still open (its connection did not close)");
        self.task.await.expect("listener")
    }
}

/// The built-in `kanade` profile as a scenario's `[profiles.eight]`, plus an eighth
/// consumer (one more watch, opened by the freeze watch task at cold start).
pub fn eight_consumers() -> String {
    let kanade = std::fs::read_to_string(project_root().join("src/profiles/kanade.toml"))
        .expect("kanade.toml");
    let mut profile = String::from("profile = \"eight\"\n[profiles.eight]\n");
    for line in kanade.lines() {
        let line = if let Some(name) = line.strip_prefix("[[") {
            format!("[[profiles.eight.{name}")
        } else if let Some(name) = line.strip_prefix('[').filter(|_| !line.contains('=')) {
            format!("[profiles.eight.{name}")
        } else {
            line.to_string()
        };
        profile.push_str(&line);
        profile.push('\n');
    }
    let opened = "  { open = \"freeze\" },\n";
    assert_eq!(
        profile.matches(opened).count(),
        1,
        "one freeze open to add to"
    );
    profile = profile.replace(opened, &format!("{opened}  {{ open = \"extra\" }},\n"));
    profile.push_str(
        "[[profiles.eight.consumers]]\nname = \"extra\"\nwatch = { bucket = \"fleet_config\", key = \"freeze\" }\n",
    );
    profile
}
