//! The command line as clap reads it: the first stage of the input (ripgrep's low
//! args). Values are only parsed here (numbers, sizes, addresses); checking them against
//! the scenario is [`fleetsim::plan::Overrides::apply`]'s job, once the file is a plan.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fleetsim::plan::{LinkShape, Overrides, Stall};
use fleetsim::{scenario, thresholds};

#[derive(Parser)]
#[command(
    name = "fleetsim",
    version,
    about = "Simulate fleets of NATS JetStream agents and measure the broker under herds"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a scenario and write its results under results/ (or --out).
    Run(RunArgs),
    /// Compare a run with a baseline run: p50 and p99 of every metric as ratios; exit 1
    /// when one regressed beyond the tolerance.
    Compare(CompareArgs),
    /// Same-runner A/B gate: run a reference and a candidate interleaved, repeated, on
    /// this machine, and judge the candidate: exit 0 pass, 1 fail (an exact count
    /// changed, or a figure worse beyond its effect size with 95 % confidence), 4
    /// inconclusive (need more repeats).
    Gate(GateArgs),
    /// Run a scenario at several fleet sizes, each on a fresh broker: sweep.csv, the
    /// knee (the smallest size that does not pass) and a sizing table (sizing.md).
    Sweep(SweepArgs),
    /// (Re)write report.html and charts/*.svg of a finished run directory (single or A/B).
    Report {
        /// The run directory (holds manifest.json).
        dir: PathBuf,
    },
    /// Run the fault proxy as its own process, in front of a broker: agents connect to
    /// --listen, a line-based control connection on --control cuts them (see README).
    /// Prints one "fleetsim-proxy ready ..." line with the bound addresses when it accepts.
    Proxy(ProxyArgs),
    /// Check a scenario file without running it; reports every problem with its line.
    Validate {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,
    /// Override the scenario's fleet.agents.
    #[arg(long)]
    pub agents: Option<usize>,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory the run directory is created in (default: results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputFlags,
}

impl RunArgs {
    /// What the command line changes in the scenario's plan.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            agents: self.agents,
            ..self.broker.overrides()
        }
    }
}

#[derive(Args)]
pub struct GateArgs {
    /// The reference scenario (TOML); its `[gate]` table says how to judge.
    pub file: PathBuf,
    /// The candidate scenario: the same steps with what changed (a profile, a broker
    /// setting, the agents' async-nats). Default: the reference's file again, an A/A run
    /// that should pass (or a candidate made by the flags below).
    #[arg(long, value_name = "FILE")]
    pub candidate: Option<PathBuf>,
    /// The nats-server binary of the reference's embedded broker (overrides its
    /// `[broker] server`): with --candidate-server, a nats-server upgrade gated.
    #[arg(long, value_name = "PATH")]
    pub reference_server: Option<PathBuf>,
    /// The nats-server binary of the candidate's embedded broker.
    #[arg(long, value_name = "PATH")]
    pub candidate_server: Option<PathBuf>,
    /// Runs per side (overrides `[gate] repeat`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub repeat: Option<u16>,
    /// Judge the gate directory DIR again with FILE's `[gate]` settings, without
    /// running anything (after changing an effect size or the figures).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["candidate", "reference_server", "candidate_server", "repeat"])]
    pub judge: Option<PathBuf>,
    /// Override fleet.agents on both sides.
    #[arg(long)]
    pub agents: Option<usize>,
    /// Exit 0 instead of 4 when the verdict is inconclusive.
    #[arg(long)]
    pub allow_inconclusive: bool,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory the run directory is created in (default: results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputFlags,
}

impl GateArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            agents: self.agents,
            ..self.broker.overrides()
        }
    }
}

/// `--server`, `--monitor` and `--herd-command`, shared by `run` and `sweep`.
#[derive(Args)]
pub struct BrokerArgs {
    /// Drive an external broker at this URL instead of starting an embedded one (a
    /// sweep resets its state between sizes).
    #[arg(long)]
    pub server: Option<String>,
    /// Monitoring URL (http://host:8222) of the external broker.
    #[arg(long, requires = "server")]
    pub monitor: Option<String>,
    /// Replace the scenario's broker_restart and lame_duck triggers with this command
    /// (run with sh -c) for a broker fleetsim does not own, e.g. "docker restart nats".
    #[arg(long, requires = "server", value_name = "COMMAND")]
    pub herd_command: Option<String>,
}

impl BrokerArgs {
    /// The broker overrides, with `$FLEETSIM_SYSTEM_URL` for an external broker.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            server: self.server.clone(),
            monitor: self.monitor.clone(),
            herd_command: self.herd_command.clone(),
            system_url: fleetsim::plan::system_url_from_env(),
            ..Overrides::default()
        }
    }
}

/// Where an outcome goes besides the text on stdout: `--junit` and `--json`.
#[derive(Args)]
pub struct OutputFlags {
    /// Also write the outcome as JUnit XML: a test case per run and per threshold, or
    /// per compared figure.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print the outcome as JSON on stdout (a run: status, thresholds, key latencies;
    /// compare: every figure); the text goes to stderr with the logs.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Run directory (an A/B one too), or its summary.csv or compare.csv.
    pub run: PathBuf,
    /// Baseline run directory, or its summary.csv or compare.csv.
    #[arg(long, value_name = "DIR")]
    pub baseline: PathBuf,
    /// Allowed regression, e.g. 10% [default: the scenario's [thresholds]
    /// tolerance, else 10%].
    #[arg(long, value_parser = thresholds::parse_percent)]
    pub tolerance: Option<f64>,
    /// Figures below this on both sides are not compared [default: the scenario's
    /// floor, else 5ms].
    #[arg(long, value_parser = parse_floor)]
    pub floor: Option<f64>,
    /// Scenario whose [thresholds] give the tolerances [default: the one kept in the
    /// run's manifest.json].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputFlags,
    /// List every compared figure, not only those that moved.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args)]
pub struct SweepArgs {
    /// Scenario file (TOML); its fleet.agents is replaced by each size.
    pub file: PathBuf,
    /// Fleet sizes: a comma-separated list (500,1000,2000) or a doubling range
    /// (500..4000 runs 500, 1000, 2000, 4000).
    #[arg(long, value_parser = parse_sizes)]
    pub agents: Sizes,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory the sweep directory is created in (default: results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop at the first size that does not pass instead of measuring the rest.
    #[arg(long)]
    pub stop_at_knee: bool,
}

#[derive(Args)]
pub struct ProxyArgs {
    /// Where agents connect, e.g. 127.0.0.1:4223 (port 0: a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The broker to forward to, HOST:PORT (e.g. 127.0.0.1:4222).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_upstream)]
    pub upstream: String,
    /// Where the control connection connects: a loopback address, e.g.
    /// 127.0.0.1:4299 (port 0: a free port).
    #[arg(long, value_name = "ADDR", value_parser = parse_control)]
    pub control: SocketAddr,
    /// Exit when stdin closes (set by `fleetsim run`, which holds it).
    #[arg(long, hide = true)]
    pub exit_on_stdin_close: bool,
    /// Delay every chunk forwarded, in each direction, by this much (e.g. 25ms): the
    /// scenario's `[fleet] link_latency`. Throughput is not limited.
    #[arg(long, value_name = "DURATION", value_parser = scenario::parse_duration)]
    pub link_latency: Option<Duration>,
    /// Delay each chunk further by a random part of this (`[fleet] link_jitter`).
    #[arg(long, value_name = "DURATION", value_parser = scenario::parse_duration)]
    pub link_jitter: Option<Duration>,
    /// Cap each direction of each connection at this rate, e.g. 1Mbit/s
    /// (`[fleet] link_bandwidth`).
    #[arg(long, value_name = "RATE", value_parser = scenario::parse_bandwidth)]
    pub link_bandwidth: Option<u64>,
    /// Stall every connection once per this period (`[fleet] link_stall_every`), for
    /// `--link-stall-for`.
    #[arg(long, value_name = "DURATION", value_parser = scenario::parse_duration, requires = "link_stall_for")]
    pub link_stall_every: Option<Duration>,
    #[arg(long, value_name = "DURATION", value_parser = scenario::parse_duration, requires = "link_stall_every")]
    pub link_stall_for: Option<Duration>,
}

impl ProxyArgs {
    /// What the proxy does to the bytes it forwards, or why the flags cannot shape a
    /// link (a stall that does not end before its period does).
    pub fn link(&self) -> Result<LinkShape, String> {
        let stall = match self.link_stall_every.zip(self.link_stall_for) {
            Some((every, stall_for)) if stall_for >= every || every.is_zero() => {
                return Err(format!(
                    "--link-stall-for ({stall_for:?}) must be shorter than a non-zero \
                     --link-stall-every ({every:?}): a link stalled for its whole period \
                     never forwards"
                ));
            }
            other => other.map(|(every, stall_for)| Stall { every, stall_for }),
        };
        Ok(LinkShape {
            latency: self.link_latency.filter(|d| !d.is_zero()),
            jitter: self.link_jitter.filter(|d| !d.is_zero()),
            bandwidth: self.link_bandwidth,
            stall,
        })
    }
}

/// Fleet sizes of `sweep --agents`, in the order written.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizes(pub Vec<usize>);

// The value parsers below are leaf parsing helpers: clap shows their `String` as the
// argument's error.

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

fn parse_floor(text: &str) -> Result<f64, String> {
    scenario::parse_duration(text).map(|d| d.as_secs_f64() * 1000.0)
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
fn parse_control(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_a_list_or_a_doubling_range() {
        assert_eq!(
            parse_sizes("500,1_000, 2000"),
            Ok(Sizes(vec![500, 1000, 2000]))
        );
        assert_eq!(
            parse_sizes("500..3000"),
            Ok(Sizes(vec![500, 1000, 2000, 3000]))
        );
        assert_eq!(parse_sizes("7..7"), Ok(Sizes(vec![7])));
        assert!(parse_sizes("4000..500").unwrap_err().contains("backwards"));
        assert!(parse_sizes("0,5").unwrap_err().contains("not a fleet size"));
    }

    #[test]
    fn upstream_is_host_and_port_and_control_is_loopback() {
        assert!(parse_upstream("127.0.0.1:4222").is_ok());
        assert!(
            parse_upstream("nats://h:4222")
                .unwrap_err()
                .contains("is a URL")
        );
        assert!(parse_upstream("h:0").is_err() && parse_upstream(":4222").is_err());
        assert!(parse_control("127.0.0.1:0").is_ok());
        assert!(
            parse_control("0.0.0.0:4299")
                .unwrap_err()
                .contains("loopback")
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
