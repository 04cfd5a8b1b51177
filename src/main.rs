//! The `fleetsim` command line: a thin shell over the library.
//!
//! Exit codes: 0 the run passed; 1 the run failed (agents not ready, agents failed, run
//! interrupted); 2 bad input (scenario or arguments); 3 broker or environment error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleetsim::results::RunStatus;
use fleetsim::run::RunOptions;
use fleetsim::scenario;

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
        Command::Run {
            file,
            agents,
            server,
            monitor,
            out,
        } => run(file, agents, server, monitor, out),
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
    let options = RunOptions {
        scenario_text: std::fs::read_to_string(&file).unwrap_or_default(),
        scenario_path: Some(file),
        results_base: out.unwrap_or_else(fleetsim::run::default_results_base),
        run_dir: None,
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
        Err(e) => {
            eprintln!("error: {e:#}");
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
                println!(
                    "{}: ok ({} agents, profile {}, {} steps{variants})",
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

fn run(
    file: PathBuf,
    agents: Option<usize>,
    server: Option<String>,
    monitor: Option<String>,
    out: Option<PathBuf>,
) -> ExitCode {
    let mut plan = match scenario::parse_file(&file) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = agents {
        if n == 0 {
            eprintln!("--agents must be a positive whole number, got 0");
            return ExitCode::from(2);
        }
        plan.fleet.agents = n;
        for variant in &mut plan.variants {
            variant.plan.fleet.agents = n;
        }
        if let Some((step, index)) = plan.agent_index_beyond(n) {
            eprintln!(
                "{}: step {step} names agent {index}, but --agents {n} makes a fleet of \
                 agents 0 to {}; raise --agents or change the step",
                file.display(),
                n - 1
            );
            return ExitCode::from(2);
        }
    }
    if let Some(url) = server {
        for variant in &mut plan.variants {
            variant.plan.broker.url = Some(url.clone());
            variant.plan.broker.monitor_url = monitor.clone();
        }
        plan.broker.url = Some(url);
        plan.broker.monitor_url = monitor;
    }
    let scenario_text = std::fs::read_to_string(&file).unwrap_or_default();
    let options = RunOptions {
        scenario_path: Some(file),
        scenario_text,
        results_base: out.unwrap_or_else(fleetsim::run::default_results_base),
        run_dir: None,
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
    let outcome = if plan.variants.is_empty() {
        runtime
            .block_on(fleetsim::run::run(plan, options, ctrl_c))
            .map(|r| (r.summary, r.dir, r.status, r.reasons))
    } else {
        runtime
            .block_on(fleetsim::ab::run_ab(plan, options, ctrl_c))
            .map(|r| (r.summary, r.dir, r.status, r.reasons))
    };
    match outcome {
        Ok((summary, dir, status, reasons)) => {
            println!("{summary}");
            println!("results: {}", dir.display());
            match status {
                RunStatus::Ok => ExitCode::SUCCESS,
                RunStatus::Failed | RunStatus::Partial => {
                    for reason in &reasons {
                        eprintln!("run failed: {reason}");
                    }
                    ExitCode::from(1)
                }
            }
        }
        // Broker, provisioning, host limits, results directory: the environment, not the run.
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}
