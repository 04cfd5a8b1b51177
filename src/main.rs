//! The `fleetsim` command line: a thin shell over the library.
//!
//! Exit codes: 0 the run passed; 1 the run failed (agents not ready, agents failed, run
//! interrupted, a threshold failed; `compare`: a regression); 2 bad input (scenario,
//! arguments, unreadable or incomparable runs); 3 broker or environment error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fleetsim::gate::compare as baseline;
use fleetsim::gate::{self, GateOutcome};
use fleetsim::plan::{Plan, StepAction, Trigger};
use fleetsim::run::RunOptions;
use fleetsim::{junit, scenario, thresholds};

#[derive(Parser)]
#[command(
    name = "fleetsim",
    version,
    about = "Simulate fleets of NATS JetStream agents and measure the broker under herds"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and write its results under results/ (or --out).
    Run {
        /// Scenario file (TOML).
        file: PathBuf,
        /// Override the scenario's fleet.agents.
        #[arg(long)]
        agents: Option<usize>,
        /// Drive an external broker at this URL instead of starting an embedded one.
        #[arg(long)]
        server: Option<String>,
        /// Monitoring URL (http://host:8222) of the external broker.
        #[arg(long, requires = "server")]
        monitor: Option<String>,
        /// Directory the run directory is created in (default: results).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the scenario's broker_restart and lame_duck triggers with this command
        /// (run with sh -c) for a broker fleetsim does not own, e.g. "docker restart nats".
        #[arg(long, requires = "server", value_name = "COMMAND")]
        herd_command: Option<String>,
        /// Also write the outcome as JUnit XML: a test case per run and per threshold.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Print the outcome as JSON on stdout (status, thresholds, key latencies); the
        /// table goes to stderr with the logs.
        #[arg(long)]
        json: bool,
    },
    /// Compare a run with a baseline run: p50 and p99 of every metric as ratios; exit 1
    /// when one regressed beyond the tolerance.
    Compare {
        /// Run directory (an A/B one too), or its summary.csv or compare.csv.
        run: PathBuf,
        /// Baseline run directory, or its summary.csv or compare.csv.
        #[arg(long, value_name = "DIR")]
        baseline: PathBuf,
        /// Allowed regression, e.g. 10% [default: the scenario's [thresholds]
        /// tolerance, else 10%].
        #[arg(long, value_parser = parse_percent)]
        tolerance: Option<f64>,
        /// Figures below this on both sides are not compared [default: the scenario's
        /// floor, else 5ms].
        #[arg(long, value_parser = parse_floor)]
        floor: Option<f64>,
        /// Scenario whose [thresholds] give the tolerances [default: the one kept in the
        /// run's manifest.json].
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// Also write JUnit XML: a test case per compared figure.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Print the comparison as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// List every compared figure, not only those that moved.
        #[arg(long)]
        all: bool,
    },
    /// Run a scenario at several fleet sizes, each on a fresh broker: sweep.csv, the
    /// knee (the smallest size that does not pass) and a sizing table (sizing.md).
    Sweep {
        /// Scenario file (TOML); its fleet.agents is replaced by each size.
        file: PathBuf,
        /// Fleet sizes: a comma-separated list (500,1000,2000) or a doubling range
        /// (500..4000 runs 500, 1000, 2000, 4000).
        #[arg(long, value_parser = parse_sizes)]
        agents: Sizes,
        /// Drive an external broker at this URL (its state is reset between sizes).
        #[arg(long)]
        server: Option<String>,
        /// Monitoring URL (http://host:8222) of the external broker.
        #[arg(long, requires = "server")]
        monitor: Option<String>,
        /// Directory the sweep directory is created in (default: results).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Stop at the first size that does not pass instead of measuring the rest.
        #[arg(long)]
        stop_at_knee: bool,
    },
    /// (Re)write report.html and charts/*.svg of a finished run directory (single or A/B).
    Report {
        /// The run directory (holds manifest.json).
        dir: PathBuf,
    },
    /// Run the fault proxy as its own process, in front of a broker: agents connect to
    /// --listen, a line-based control connection on --control cuts them (see README).
    /// Prints one "fleetsim-proxy ready ..." line with the bound addresses when it accepts.
    Proxy {
        /// Where agents connect, e.g. 127.0.0.1:4223 (port 0: a free port).
        #[arg(long, value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// The broker to forward to, HOST:PORT (e.g. 127.0.0.1:4222).
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_upstream)]
        upstream: String,
        /// Where the control connection connects: a loopback address, e.g.
        /// 127.0.0.1:4299 (port 0: a free port).
        #[arg(long, value_name = "ADDR", value_parser = parse_control)]
        control: std::net::SocketAddr,
        /// Exit when stdin closes (set by `fleetsim run`, which holds it).
        #[arg(long, hide = true)]
        exit_on_stdin_close: bool,
    },
    /// Check a scenario file without running it; reports every problem with its line.
    Validate {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEETSIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Proxy {
            listen,
            upstream,
            control,
            exit_on_stdin_close,
        } => proxy(fleetsim::proxy_process::ServeOptions {
            listen,
            upstream,
            control,
            exit_on_stdin_close,
        }),
        Command::Report { dir } => match fleetsim::report::write_report(&dir) {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: {e}\nfleetsim report needs a finished run directory (one with manifest.json)"
                );
                ExitCode::from(2)
            }
        },
        Command::Run {
            file,
            agents,
            server,
            monitor,
            out,
            herd_command,
            junit,
            json,
        } => run(
            file,
            Overrides {
                agents,
                server,
                monitor,
                herd_command,
            },
            out,
            Report { junit, json },
        ),
        Command::Compare {
            run,
            baseline,
            tolerance,
            floor,
            scenario,
            junit,
            json,
            all,
        } => compare(
            &run,
            &baseline,
            tolerance,
            floor,
            scenario.as_deref(),
            Report { junit, json },
            all,
        ),
        Command::Sweep {
            file,
            agents,
            server,
            monitor,
            out,
            stop_at_knee,
        } => sweep(file, agents.0, server, monitor, out, stop_at_knee),
    }
}

/// Fleet sizes of `sweep --agents`.
#[derive(Clone, Debug)]
struct Sizes(Vec<usize>);

fn parse_sizes(text: &str) -> Result<Sizes, String> {
    let number = |s: &str| -> Result<usize, String> {
        match s.trim().replace('_', "").parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{s:?} is not a fleet size; use positive whole numbers: 500,1000,2000 or 500..4000"
            )),
        }
    };
    if let Some((from, to)) = text.split_once("..") {
        let (from, to) = (number(from)?, number(to)?);
        if from > to {
            return Err(format!(
                "range {text:?} runs backwards; write the smaller size first"
            ));
        }
        let mut sizes = Vec::new();
        let mut n = from;
        while n < to {
            sizes.push(n);
            n = n.saturating_mul(2);
        }
        sizes.push(to);
        return Ok(Sizes(sizes));
    }
    text.split(',')
        .map(number)
        .collect::<Result<_, _>>()
        .map(Sizes)
}

fn sweep(
    file: PathBuf,
    sizes: Vec<usize>,
    server: Option<String>,
    monitor: Option<String>,
    out: Option<PathBuf>,
    stop_at_knee: bool,
) -> ExitCode {
    let mut plan = match scenario::parse_file(&file) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !plan.variants.is_empty() {
        eprintln!(
            "{}: a sweep runs one scenario at several sizes; this file has [[variants]] \
             (or repeat): sweep each variant from its own file",
            file.display()
        );
        return ExitCode::from(2);
    }
    if let Some(&smallest) = sizes.iter().min()
        && let Some((step, index)) = plan.agent_index_beyond(smallest)
    {
        eprintln!(
            "{}: step {step} names agent {index}, but the sweep's smallest fleet is {smallest} agents",
            file.display()
        );
        return ExitCode::from(2);
    }
    if let Some(url) = server {
        plan.broker.url = Some(url);
        plan.broker.monitor_url = monitor;
        plan.broker.reset = true;
    }
    if plan.broker.url.is_some() {
        plan.broker.system_url = system_url_from_env();
    }
    let options = RunOptions {
        scenario_text: std::fs::read_to_string(&file).unwrap_or_default(),
        scenario_path: Some(file),
        results_base: out.unwrap_or_else(fleetsim::run::default_results_base),
        run_dir: None,
        proxy_program: None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match runtime.block_on(fleetsim::sweep::sweep(
        plan,
        &sizes,
        options,
        stop_at_knee,
        ctrl_c,
    )) {
        Ok(report) => {
            println!("{}", report.summary);
            println!("results: {}", report.dir.display());
            // A knee is a finding, not a failure: the sweep did its job. Exit 1 only
            // when not a single size passed.
            if report.rows.iter().any(|r| r.status == "ok") {
                ExitCode::SUCCESS
            } else {
                eprintln!("sweep failed: no fleet size passed");
                ExitCode::from(1)
            }
        }
        // Stopped before the first size was measured (1), or the environment (3).
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `--upstream`: `host:port` with a port in 1..=65535.
fn parse_upstream(text: &str) -> Result<String, String> {
    if text.contains("://") {
        return Err(format!(
            "{text:?} is a URL; give the broker as HOST:PORT, e.g. 127.0.0.1:4222"
        ));
    }
    let port_ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port_ok(port) => Ok(text.to_string()),
        _ => Err(format!(
            "{text:?} is not HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:4222"
        )),
    }
}

/// `--control`: a loopback socket address; the control port takes unauthenticated
/// commands, so it is not offered to other hosts.
fn parse_control(text: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:4299"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{text} is not a loopback address; the control port takes unauthenticated \
             commands, so bind it to 127.0.0.1 (or [::1])"
        ));
    }
    Ok(addr)
}

/// `fleetsim proxy`: serves until `quit`, Ctrl-C or (for a child) stdin closing.
/// Exit 0 when it stopped, 3 when it could not bind.
fn proxy(options: fleetsim::proxy_process::ServeOptions) -> ExitCode {
    use std::io::Write;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let ready = |ready: &fleetsim::proxy_process::Ready| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", ready.line());
        let _ = stdout.flush();
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let served = runtime.block_on(fleetsim::proxy_process::serve(options, ready, ctrl_c));
    // Connections still open are simply closed with the process.
    runtime.shutdown_background();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(3)
        }
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut bad = false;
    for file in files {
        match scenario::parse_file(file) {
            Ok(plan) => {
                let variants = if plan.variants.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
                    format!(
                        "; variants {} x repeat {} = {} runs",
                        names.join(", "),
                        plan.repeat,
                        names.len() * plan.repeat
                    )
                };
                let checks = match plan.thresholds.checks.len() {
                    0 => String::new(),
                    n => format!(", {n} threshold checks"),
                };
                println!(
                    "{}: ok ({} agents, profile {}, {} steps{checks}{variants})",
                    file.display(),
                    plan.fleet.agents,
                    plan.profile.name,
                    plan.steps.len()
                )
            }
            Err(e) => {
                eprintln!("{e}");
                bad = true;
            }
        }
    }
    if bad {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Command-line changes to the scenario's plan.
struct Overrides {
    agents: Option<usize>,
    server: Option<String>,
    monitor: Option<String>,
    herd_command: Option<String>,
}

/// Where the outcome goes besides the text on stdout.
struct Report {
    junit: Option<PathBuf>,
    json: bool,
}

impl Report {
    /// Writes the JUnit file if asked; a file that cannot be written is an environment
    /// error (exit 3), reported but not hiding the run's own outcome.
    fn write_junit(&self, name: &str, suites: &[junit::Suite]) -> bool {
        let Some(path) = &self.junit else {
            return true;
        };
        match junit::write(path, name, suites) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("error: cannot write JUnit file {}: {e}", path.display());
                false
            }
        }
    }

    /// A run that never reached results: JUnit and JSON say why, then `code`.
    fn fail_early(&self, scenario: &str, code: u8, message: &str) -> ExitCode {
        eprintln!("{message}");
        self.write_junit("fleetsim", &gate::error_suites(scenario, message));
        if self.json {
            let value = serde_json::json!({
                "scenario": scenario,
                "status": "error",
                "passed": false,
                "exit_code": code,
                "error": message,
            });
            println!("{value:#}");
        }
        ExitCode::from(code)
    }
}

/// Applies the command line to the plan; an error is bad input (exit 2).
fn apply(plan: &mut Plan, file: &Path, o: Overrides) -> Result<(), String> {
    if let Some(n) = o.agents {
        if n == 0 {
            return Err("--agents must be a positive whole number, got 0".to_string());
        }
        plan.fleet.agents = n;
        for variant in &mut plan.variants {
            variant.plan.fleet.agents = n;
        }
        if let Some((step, index)) = plan.agent_index_beyond(n) {
            return Err(format!(
                "{}: step {step} names agent {index}, but --agents {n} makes a fleet of \
                 agents 0 to {}; raise --agents or change the step",
                file.display(),
                n - 1
            ));
        }
    }
    if let Some(command) = &o.herd_command {
        if command.trim().is_empty() {
            return Err("--herd-command must not be empty".to_string());
        }
        replace_herd_triggers(plan, command);
        for variant in &mut plan.variants {
            replace_herd_triggers(&mut variant.plan, command);
        }
    }
    if let Some(url) = o.server {
        if let Some(step) = plan.steps.iter().find(|s| needs_embedded(&s.action)) {
            return Err(format!(
                "{}: step {} restarts the embedded broker, which --server replaces; pass \
                 --herd-command \"<command that restarts your broker>\" (e.g. \"docker restart nats\")",
                file.display(),
                step.label()
            ));
        }
        for variant in &mut plan.variants {
            variant.plan.broker.url = Some(url.clone());
            variant.plan.broker.monitor_url = o.monitor.clone();
        }
        plan.broker.url = Some(url);
        plan.broker.monitor_url = o.monitor;
    }
    // An external broker, from --server or the file's [broker] url: its system user.
    let system_url = system_url_from_env();
    for broker in std::iter::once(&mut plan.broker)
        .chain(plan.variants.iter_mut().map(|v| &mut v.plan.broker))
    {
        if broker.url.is_some() {
            broker.system_url = system_url.clone();
        }
    }
    Ok(())
}

/// `$FLEETSIM_SYSTEM_URL`: a system-account user of an external broker, so the run can
/// count the API queue's LIMIT_REACHED advisories. An environment variable, not a flag
/// or a scenario key: it holds a password, which must not show in `ps` or a file.
fn system_url_from_env() -> Option<String> {
    std::env::var("FLEETSIM_SYSTEM_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

fn needs_embedded(action: &StepAction) -> bool {
    matches!(
        action,
        StepAction::Herd {
            trigger: Trigger::BrokerRestart { .. } | Trigger::LameDuck,
            ..
        }
    )
}

/// `--herd-command`: every broker_restart and lame_duck step runs the command instead
/// (its phase label becomes `<n>:command`).
fn replace_herd_triggers(plan: &mut Plan, command: &str) {
    for step in &mut plan.steps {
        if let StepAction::Herd { trigger, .. } = &mut step.action
            && matches!(trigger, Trigger::BrokerRestart { .. } | Trigger::LameDuck)
        {
            *trigger = Trigger::Command {
                command: command.to_string(),
                timeout: Duration::from_secs(60),
            };
        }
    }
}

fn run(file: PathBuf, overrides: Overrides, out: Option<PathBuf>, report: Report) -> ExitCode {
    let stem = file.file_stem().map_or_else(
        || "scenario".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let mut plan = match scenario::parse_file(&file) {
        Ok(plan) => plan,
        Err(e) => return report.fail_early(&stem, 2, &e.to_string()),
    };
    let name = plan.name.clone();
    if let Err(message) = apply(&mut plan, &file, overrides) {
        return report.fail_early(&name, 2, &message);
    }
    let scenario_text = std::fs::read_to_string(&file).unwrap_or_default();
    let options = RunOptions {
        scenario_path: Some(file),
        scenario_text,
        results_base: out.unwrap_or_else(fleetsim::run::default_results_base),
        run_dir: None,
        proxy_program: None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report.fail_early(&name, 3, &format!("cannot start the async runtime: {e}"));
        }
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let outcome = if plan.variants.is_empty() {
        runtime
            .block_on(fleetsim::run::run(plan, options, ctrl_c))
            .map(|r| GateOutcome::from_run(&name, r))
    } else {
        runtime
            .block_on(fleetsim::ab::run_ab(plan, options, ctrl_c))
            .map(|r| GateOutcome::from_ab(&name, r))
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        // Interrupted before anything was measured (1); broker, provisioning, host
        // limits, results directory: the environment, not the run (3).
        Err(e) => return report.fail_early(&name, e.exit_code(), &format!("error: {e:#}")),
    };
    let text = format!("{}\nresults: {}", outcome.summary, outcome.dir.display());
    if report.json {
        eprintln!("{text}");
        match serde_json::to_string_pretty(&outcome) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("error: cannot render the outcome as JSON: {e}"),
        }
    } else {
        println!("{text}");
    }
    for reason in &outcome.reasons {
        eprintln!("run failed: {reason}");
    }
    for failure in outcome.failures() {
        eprintln!("threshold failed: {failure}");
    }
    if !report.write_junit("fleetsim", &outcome.junit_suites()) {
        return ExitCode::from(3);
    }
    ExitCode::from(outcome.exit_code)
}

fn parse_percent(text: &str) -> Result<f64, String> {
    thresholds::parse_percent(text)
}

fn parse_floor(text: &str) -> Result<f64, String> {
    scenario::parse_duration(text).map(|d| d.as_secs_f64() * 1000.0)
}

fn compare(
    run: &Path,
    base: &Path,
    tolerance: Option<f64>,
    floor: Option<f64>,
    scenario_file: Option<&Path>,
    report: Report,
    all: bool,
) -> ExitCode {
    let loaded = baseline::load(run).and_then(|r| {
        let b = baseline::load(base)?;
        baseline::comparable(&r, &b)?;
        Ok((r, b))
    });
    let (now, before) = match loaded {
        Ok(sides) => sides,
        Err(e) => return report.fail_early("compare", 2, &e.to_string()),
    };
    // Per-metric tolerances: the scenario named on the command line, else the one the
    // run kept in its manifest.
    let plan = match scenario_file {
        Some(file) => match scenario::parse_file(file) {
            Ok(plan) => Some(plan),
            Err(e) => return report.fail_early("compare", 2, &e.to_string()),
        },
        None => now.scenario_text.as_deref().and_then(|text| {
            scenario::parse_str(text, "manifest.json scenario")
                .map_err(|e| {
                    eprintln!("warning: the run's scenario does not parse, its [thresholds] tolerances are not used:\n{e}")
                })
                .ok()
        }),
    };
    let settings = baseline::Settings::resolve(
        plan.as_ref().map(|p| &p.thresholds.baseline),
        tolerance,
        floor,
    );
    let comparison = baseline::compare(&now, &before, &settings);
    let text = format!(
        "{}(run: {}; baseline: {})",
        baseline::render(&comparison, all),
        now.kind,
        before.kind
    );
    if report.json {
        eprintln!("{text}");
        let value = serde_json::json!({
            "passed": comparison.regressed() == 0,
            "exit_code": if comparison.regressed() == 0 { 0 } else { 1 },
            "comparison": comparison,
        });
        println!("{value:#}");
    } else {
        println!("{text}");
    }
    if !report.write_junit("fleetsim compare", &[baseline::junit_suite(&comparison)]) {
        return ExitCode::from(3);
    }
    if comparison.regressed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
