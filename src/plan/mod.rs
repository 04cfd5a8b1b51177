//! The validated, fully resolved form of a scenario: what the runner executes.
//!
//! A scenario file is parsed and checked by [`crate::scenario`]; the result is a [`Plan`].
//! Everything here is plain data with defaults already applied, so the runner, the fleet
//! and the results writer never re-check input. Command-line overrides (`--agents`,
//! `--server`, `--herd-command`) are applied to a `Plan`, not to the file, by
//! [`Overrides::apply`], which checks them against the plan as the parser checks a file.

mod hits;
mod overrides;
mod profile;

use std::time::Duration;

use serde::Serialize;

pub use hits::{AgentSet, FaultTarget, Hits};
pub use overrides::{OverrideError, Overrides, system_url_from_env};
pub use profile::*;

/// A scenario ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Scenario name (from the file's `name`, or its file stem).
    pub name: String,
    /// Free text from the file's `description`.
    pub description: String,
    /// Seed for every random choice a run makes (jitter, write targets).
    pub seed: u64,
    pub broker: BrokerPlan,
    pub fleet: FleetPlan,
    /// The profile the fleet runs, resolved from `fleet.profile`.
    pub profile: Profile,
    pub steps: Vec<Step>,
    /// A/B variants from `[[variants]]`, each a complete plan (the file with the
    /// variant's overrides applied); empty for a plain run.
    pub variants: Vec<Variant>,
    /// How many times each variant runs (`repeat`), interleaved A B A B ...
    pub repeat: usize,
    /// `[thresholds]`: checks evaluated when the run ends, and the settings of
    /// `fleetsim compare`. A variant's plan has the file's checks and its own.
    pub thresholds: crate::thresholds::Thresholds,
    /// `[gate]`: how `fleetsim gate` judges a candidate run against this plan's.
    pub gate: crate::gate::same_runner::GateSettings,
    /// `[observe]`: which of fleetsim's observers run beside the fleet.
    pub observe: Observe,
}

/// `[observe]`: the observers a run keeps beside the fleet, each on by default. They
/// cost fleetsim CPU and (the API tap, the broker sampler) the broker a little; turning
/// one off loses what it measures (`docs/measurements.md`), so this is for measuring
/// their cost, or for a run that needs every cycle for its agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observe {
    /// The subscription to the broker's JetStream API advisories (`timeseries.csv` API
    /// columns, `api_limit_reached`).
    pub api_tap: bool,
    /// The broker's monitoring endpoints sampled every second (`broker.csv`, the CPU
    /// figures of `counts.csv`).
    pub broker: bool,
    /// The 100 ms time series (`timeseries.csv`, the report's charts).
    pub timeseries: bool,
    /// The progress line on stderr.
    pub progress: bool,
}

impl Default for Observe {
    fn default() -> Self {
        Observe {
            api_tap: true,
            broker: true,
            timeseries: true,
            progress: true,
        }
    }
}

/// One named side of an A/B run.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    /// The scenario with this variant's overrides; its own `variants` is empty.
    pub plan: Plan,
}

/// Where the broker comes from and the limits an embedded broker runs with.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerPlan {
    /// `None`: fleetsim starts and owns its own nats-server (the embedded broker).
    pub url: Option<String>,
    /// Monitoring base URL (`http://host:8222`) of an external broker, if known.
    pub monitor_url: Option<String>,
    /// Embedded broker's `max_connections`.
    pub max_connections: u64,
    /// Embedded broker's `jetstream.request_queue_limit` (JetStream API queue length).
    pub request_queue_limit: u64,
    /// Embedded broker's `jetstream.limits.default_max_consumers` (-1 = unlimited;
    /// nats-server 2.15 itself defaults to 1000 per stream).
    pub default_max_consumers: i64,
    /// Delete and recreate the buckets and the EXEC stream before seeding.
    pub reset: bool,
    /// Record every JetStream API request of the run into `api.csv` (see
    /// `broker::audit`): off by default, it costs the broker a stored message per request.
    pub record_api: bool,
    /// Embedded broker's `lame_duck_duration`: how long a `lame_duck` step's server takes
    /// to close its clients (nats-server's default is 2 m and its minimum 30 s; ours is
    /// the minimum so a scenario's herd fits in a test).
    #[serde(with = "duration_str")]
    pub lame_duck_duration: Duration,
    /// Embedded broker's `lame_duck_grace_period`: the wait before it starts closing.
    #[serde(with = "duration_str")]
    pub lame_duck_grace_period: Duration,
    /// Embedded broker's keepalive and slow-consumer settings; nats-server's defaults
    /// where unset.
    #[serde(flatten)]
    pub keepalive: ServerKeepalive,
    /// A system-account user's URL (`nats://user:password@host:port`) on an external
    /// broker, from `$FLEETSIM_SYSTEM_URL`: the API queue's LIMIT_REACHED advisory is
    /// published in the system account only. Never in a file: it holds credentials.
    #[serde(skip)]
    pub system_url: Option<String>,
    /// Embedded broker: TLS on its client port, with a CA and server certificate made
    /// at run time (for 127.0.0.1 and localhost) that every fleetsim connection trusts.
    pub tls: bool,
    /// External broker: a CA certificate (PEM) to trust beside the system's, and TLS
    /// required of every connection. A path, never key material.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Embedded broker: how clients authenticate. The secrets are made per broker at
    /// run time and only the mode is recorded; an external broker's credentials come
    /// from its URL.
    pub auth: AuthMode,
    /// Embedded broker: the CPUs its process may run on (`[broker] cpus`), so a run can
    /// give the broker less CPU than the machine has (capacity planning, or a known
    /// slowdown for the CI gate's self-test). `None`: wherever the OS schedules it.
    pub cpus: Option<CpuList>,
    /// Embedded broker: the share of one CPU its process may use (`[broker] cpu_quota`),
    /// enforced by the kernel's CFS bandwidth control through a cgroup fleetsim makes
    /// for it. Unlike `cpus` it slows the broker by a chosen fraction, not by whole
    /// cores, which is what a known slowdown for the CI gate's self-test needs.
    /// Recorded as the share (`0.5` for `"50%"`). `None`: no limit.
    pub cpu_quota: Option<CpuQuota>,
    /// Embedded broker: the nats-server binary to run (`[broker] server`), instead of
    /// the one found at `$NATS_SERVER_BIN`, `.tools/bin` or `$PATH`; an A/B variant can
    /// so compare two server versions. A path as written (relative to the working
    /// directory); the manifest's broker version is that binary's.
    pub server: Option<std::path::PathBuf>,
}

/// A share of one CPU (`[broker] cpu_quota`), in hundredths of a percent so it is
/// exact and comparable: `"50%"` is 5000, half a core; `"150%"` one and a half. Written
/// back as the percentage, recorded as the share (`0.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota(u32);

impl CpuQuota {
    /// Hundredths of a percent of one CPU in one percent.
    pub const PER_PERCENT: u32 = 100;

    /// `None` for no CPU at all: a process that may never run is not a slower broker.
    pub fn from_hundredths_of_percent(n: u32) -> Option<CpuQuota> {
        (n > 0).then_some(CpuQuota(n))
    }

    /// The share of one CPU: 0.5 for `"50%"`.
    pub fn share(self) -> f64 {
        f64::from(self.0) / f64::from(100 * Self::PER_PERCENT)
    }

    /// The CPU time per `period_us` of wall time this share allows, in microseconds
    /// (what `cpu.cfs_quota_us` and `cpu.max` take).
    pub fn quota_us(self, period_us: u64) -> u64 {
        period_us * u64::from(self.0) / u64::from(100 * Self::PER_PERCENT)
    }
}

impl std::fmt::Display for CpuQuota {
    /// As written in a scenario: `50%`, `12.5%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, part) = (self.0 / Self::PER_PERCENT, self.0 % Self::PER_PERCENT);
        if part == 0 {
            write!(f, "{whole}%")
        } else {
            let part = format!("{part:02}");
            write!(f, "{whole}.{}%", part.trim_end_matches('0'))
        }
    }
}

impl Serialize for CpuQuota {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.share())
    }
}

/// A set of CPU numbers (`[broker] cpus`), written and recorded as Linux writes them in
/// `/proc/<pid>/status` `Cpus_allowed_list` and `taskset -c` takes them: `0`, `0-1`,
/// `0,2-3`. Sorted, without repeats, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// `None` for an empty set: a process cannot run on no CPU.
    pub fn new(mut cpus: Vec<usize>) -> Option<CpuList> {
        cpus.sort_unstable();
        cpus.dedup();
        (!cpus.is_empty()).then_some(CpuList(cpus))
    }

    /// The CPU numbers, ascending.
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }
}

impl std::fmt::Display for CpuList {
    /// Ranges of consecutive CPUs as `a-b`, joined by commas: `0-1,3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if start != self.0[0] {
                f.write_str(",")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl Serialize for CpuList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How the embedded broker's clients authenticate ([`BrokerPlan::auth`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No credentials: clients land in the fleet's account (`no_auth_user`).
    #[default]
    None,
    /// One shared token, as the kanade agent connects.
    Token,
    /// A user and password.
    User,
    /// An nkey: the client signs the server's nonce with its seed.
    Nkey,
}

/// The simulated fleet: how many agents, how they are grouped, how they connect.
#[derive(Debug, Clone, Serialize)]
pub struct FleetPlan {
    pub agents: usize,
    /// Number of groups; agent `i` belongs to group `i % groups`.
    pub groups: usize,
    /// Name of the profile (built-in `kanade`/`legacy`, or one from `[profiles.*]`).
    pub profile: String,
    /// Entries seeded into each shared catalog (`schedules`, `jobs`).
    pub catalog_entries: usize,
    /// async-nats `connection_timeout`.
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// async-nats `request_timeout`: how long a JetStream API call waits for its reply.
    #[serde(with = "duration_str")]
    pub request_timeout: Duration,
    /// async-nats `ping_interval`: how often the client pings the server (its default
    /// 60 s). A `[fleet]` key, else the profile's `[client]`, else 60 s.
    #[serde(with = "duration_str")]
    pub ping_interval: Duration,
    /// How many times an agent retries a failed setup call (consumer create, get)
    /// before it gives up and ends `failed`. Waits follow the real agent's `nats_retry`:
    /// 1 s doubling, ±25 % jitter.
    pub setup_retries: u32,
    /// The delay before each reconnect attempt.
    pub reconnect: Backoff,
    /// async-nats `max_reconnects`: consecutive reconnect attempts before the client gives
    /// up and closes; the agent then ends `failed` ("gave up reconnecting"). `None`
    /// (async-nats' default, what the real agent ships): it never gives up.
    pub max_reconnects: Option<usize>,
    /// The startup splay; `None` (the default) is no splay, as the real agent ships.
    pub splay: Option<Splay>,
    /// Whether agents connect through fleetsim's fault proxy (needed by `network_cut`
    /// and by `link`), and where it runs.
    pub proxy: ProxyMode,
    /// What the fault proxy does to the bytes it forwards (`[fleet] link_latency`):
    /// nothing by default. Needs `proxy`.
    pub link: LinkShape,
    /// async-nats `read_buffer_capacity` of each agent's connection, in bytes. A client
    /// buffer the broker never sees (async-nats grows it for a bigger message), so the
    /// default is smaller than async-nats' 65535: at 64 KiB it was the largest part of an
    /// agent's memory. Set 65535 to match the shipped agent byte for byte.
    pub read_buffer_capacity: u16,
    /// `ack_wait` of the agents' durable EXEC consumer; `None` leaves it to the server
    /// (30 s), as the real agent does. A command the broker handed to a connection that
    /// died is redelivered only after it, so it bounds how late such a command arrives.
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub exec_ack_wait: Option<Duration>,
    /// The async-nats version the agents run: the profile's `[client] async_nats`
    /// (`kanade`, `legacy`: 0.50, the real agent's) unless `[fleet] async_nats` says.
    pub async_nats: AsyncNats,
}

/// Where the fault proxy between the agents and the broker runs, if anywhere.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// `proxy = false` (the default): agents connect to the broker directly.
    #[default]
    Off,
    /// `proxy = true` (or `"in_process"`): the proxy runs inside fleetsim's own process,
    /// 3 open files per agent there.
    InProcess,
    /// `proxy = "process"`: fleetsim starts `fleetsim proxy` as a child process, 1 open
    /// file per agent in fleetsim and 2 in the proxy, each process with its own limit.
    Process,
}

impl ProxyMode {
    /// Agents connect through a proxy, wherever it runs.
    pub fn is_on(self) -> bool {
        self != ProxyMode::Off
    }
}

/// How the fault proxy shapes each agent's link to the broker, in both directions: the
/// same for every connection, applied to what it forwards (a cut is separate). One
/// struct rather than a bare latency, so later shapes (jitter, a bandwidth cap) travel
/// the same way to both kinds of proxy. The default forwards bytes untouched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkShape {
    /// `[fleet] link_latency`: every chunk the proxy reads waits this long before it is
    /// written on, in each direction, without limiting throughput and in order; a
    /// request/reply round trip through the proxy takes twice this more. `None`: none.
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub latency: Option<Duration>,
    /// `[fleet] link_jitter`: each chunk waits a further uniform random part of this,
    /// from 0 to the jitter (toxiproxy's latency toxic adds ± its jitter around the
    /// latency instead). A TCP stream keeps its order, so a chunk
    /// never overtakes the one before it: jitter bunches chunks, it does not reorder.
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub jitter: Option<Duration>,
    /// `[fleet] link_bandwidth`: bytes per second each direction of each connection
    /// carries (toxiproxy's bandwidth toxic); what comes faster queues in the proxy (up
    /// to its in-flight limit, then the sender's TCP window fills).
    pub bandwidth: Option<u64>,
    /// `[fleet] link_stall_every` / `link_stall_for`: every connection stops forwarding
    /// in both directions for `for` once every `every`, at a phase of its own, then
    /// delivers what waited (a Wi-Fi roam, a congested uplink).
    pub stall: Option<Stall>,
}

/// A link's periodic stall (see [`LinkShape::stall`]).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Stall {
    #[serde(with = "duration_str")]
    pub every: Duration,
    #[serde(with = "duration_str", rename = "for")]
    pub stall_for: Duration,
}

impl LinkShape {
    /// Bytes pass as they come: the proxy can copy them straight through.
    pub fn is_plain(&self) -> bool {
        self.latency.is_none()
            && self.jitter.is_none()
            && self.bandwidth.is_none()
            && self.stall.is_none()
    }
}

/// Delay before a reconnect attempt.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Backoff {
    /// async-nats' own default: attempt 1 at 0 ms, then 2, 4, 8 … ms capped at 4 s, no
    /// jitter. What the real agent ships.
    AsyncNatsDefault,
    /// Attempt n waits `min(base * 2^(n-1), cap)`, times a uniform factor in
    /// `[1 - jitter, 1 + jitter]` (the real agent's `nats_retry` uses 0.25).
    Exponential {
        #[serde(with = "duration_str")]
        base: Duration,
        #[serde(with = "duration_str")]
        cap: Duration,
        jitter: f64,
    },
    /// The Go client's model (nats.go `ReconnectWait`, `ReconnectJitter`): every
    /// reconnect attempt, the first after a disconnect included, waits `wait` plus a
    /// uniform random part of `jitter` (nats.go with one server in its pool; its
    /// defaults: 2 s and 100 ms, 1 s with TLS).
    Fixed {
        #[serde(with = "duration_str")]
        wait: Duration,
        #[serde(with = "duration_str")]
        jitter: Duration,
    },
}

/// The startup splay: a per-agent delay `fnv1a64(pc_id) mod window` before the first
/// sync after a Disconnected → Connected transition (see [`crate::splay`] (`fleet::splay`)).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Splay {
    #[serde(with = "duration_str")]
    pub window: Duration,
    pub placement: SplayPlacement,
    /// Also delay the cold start's first sync (off by default: the splay is for reconnects).
    pub on_start: bool,
}

/// Where the splay delay sits; this decides whether it smears the consumer-create burst.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SplayPlacement {
    /// Before the re-sync `get`s only. The watches stay polled, so async-nats recreates
    /// their consumers at once: the create burst is not moved (nats-facts §1a).
    BeforeGets,
    /// Close the watches on Disconnected and reopen them (new consumers) after the delay,
    /// then sync: the honest form of "before the watches are polled again".
    ReopenWatches,
    /// Added to the first reconnect attempt's delay (`reconnect_delay_callback`): the
    /// connection itself comes back later.
    ReconnectDelay,
}

impl SplayPlacement {
    pub fn name(self) -> &'static str {
        match self {
            SplayPlacement::BeforeGets => "before_gets",
            SplayPlacement::ReopenWatches => "reopen_watches",
            SplayPlacement::ReconnectDelay => "reconnect_delay",
        }
    }
}

/// One step of a scenario's timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    /// 1-based position in the file, used in results (`phase` column) and logs.
    pub index: usize,
    pub action: StepAction,
}

impl Step {
    /// Short label for results: `"<index>:<kind>"`, e.g. `"1:start"`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.index, self.action.kind())
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepAction {
    /// Bring the fleet's agents up.
    Start { pacing: StartPacing },
    /// Wait until every started agent is ready or failed; past the timeout the run fails.
    WaitReady {
        #[serde(with = "duration_str")]
        timeout: Duration,
    },
    /// Keep the fleet up (consumers polled) for a while.
    Hold {
        #[serde(with = "duration_str")]
        duration: Duration,
    },
    /// Writes into the KV buckets at a fixed rate; every agent that should see a write
    /// records its delivery latency from the write's *intended* send time.
    Write {
        target: WriteTarget,
        load: WriteLoad,
    },
    /// Publishes commands into the EXEC stream at a fixed rate.
    Exec { target: ExecTarget, load: WriteLoad },
    /// Fault injection: agent `agent` stops polling (drops) its consumer `consumer`, so
    /// writes it should receive are missed and the reconciliation must say so.
    DropConsumer { agent: usize, consumer: String },
    /// Single agents lose the network at random for `duration`: `percent_per_min` of the
    /// fleet per minute, each for `downtime` (see `churn`).
    Churn {
        #[serde(with = "duration_str")]
        duration: Duration,
        percent_per_min: f64,
        #[serde(with = "duration_str")]
        downtime: Duration,
        mode: ChurnMode,
    },
    /// A herd trigger, then probes until every agent's consumers deliver again (or
    /// `recover_timeout` passes: the agents not recovered are counted and listed).
    Herd {
        trigger: Trigger,
        #[serde(with = "duration_str")]
        recover_timeout: Duration,
    },
}

/// What makes the whole fleet reconnect at once.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    /// Stop the embedded broker and start it again on the same ports and store dir.
    BrokerRestart {
        signal: StopSignal,
        #[serde(with = "duration_str")]
        downtime: Duration,
    },
    /// The fault proxy cuts the `target` agents' connections at one instant: `reset`
    /// drops them (and refuses new ones for `refuse_for`), `blackhole` keeps them open
    /// and forwards nothing for a downtime (see [`CutMode`]).
    NetworkCut {
        #[serde(with = "duration_str")]
        refuse_for: Duration,
        mode: CutMode,
        target: FaultTarget,
    },
    /// `nats-server --signal ldm=<pid>` to the embedded broker; once it has exited it is
    /// started again on the same ports and store dir.
    LameDuck,
    /// Every agent calls `force_reconnect()` at the same instant.
    ClientReconnect,
    /// An external command (`docker restart nats`) for a broker fleetsim does not own.
    Command {
        command: String,
        #[serde(with = "duration_str")]
        timeout: Duration,
    },
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::BrokerRestart { .. } => "broker_restart",
            Trigger::NetworkCut { .. } => "network_cut",
            Trigger::LameDuck => "lame_duck",
            Trigger::ClientReconnect => "client_reconnect",
            Trigger::Command { .. } => "command",
        }
    }
}

/// The embedded broker's settings that decide when it drops a client it no longer hears
/// from (`ping_interval`, `ping_max`) or cannot write to (`write_deadline`,
/// `max_pending`), and the largest message it takes (`max_payload`). `None`: the
/// server's default (2 m, 2, 10 s, 64 MiB, 1 MiB in nats-server 2.15).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServerKeepalive {
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub ping_interval: Option<Duration>,
    pub ping_max: Option<u32>,
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub write_deadline: Option<Duration>,
    pub max_pending: Option<u64>,
    pub max_payload: Option<u64>,
}

/// How a `network_cut` cuts.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum CutMode {
    /// Every hit connection is closed at once: the agents learn of it in microseconds
    /// (a switch port that drops, a server host that resets).
    Reset,
    /// Every hit connection stays open and the proxy forwards nothing either way for
    /// `downtime` (a VPN that drops, a NAT entry that expires): each side finds out only
    /// through its own keepalive. Then the link resumes, or is reset (`after`).
    Blackhole {
        #[serde(with = "duration_str")]
        downtime: Duration,
        after: AfterBlackhole,
        /// Both directions, or only the broker's writes to the agent.
        held: Held,
    },
}

/// What a blackhole holds of the connections it hits.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    /// Both directions: a silent network cut (`mode = "blackhole"`).
    #[default]
    Both,
    /// Only what the broker sends the agent (`mode = "stop_reading"`): the agent stops
    /// reading its socket (a hung process, a laptop asleep while its TCP stays up) and
    /// the broker's writes pile up until its `write_deadline` or `max_pending` calls it a
    /// slow consumer; what the agent sends still arrives.
    ToAgent,
}

/// What ends a blackhole.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AfterBlackhole {
    /// The held connections carry on; what was sent meanwhile arrives late, as TCP
    /// retransmits it after a real outage.
    Resume,
    /// The held connections are closed as the network comes back.
    Reset,
}

/// How `broker_restart` stops the server.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopSignal {
    /// SIGTERM: a graceful shutdown (JetStream stops first while clients stay connected).
    Term,
    /// SIGKILL: a crash.
    Kill,
}

/// Which key a `write` step writes.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum WriteTarget {
    /// `agent_config/pcs.<pc>` of a random agent per write (intended for that one agent).
    Pc,
    /// `pcs.<pc>` of every agent in turn (agent i gets write i mod N).
    PcEach,
    /// `pcs.<pc>` of the listed agents (0-based indexes), in turn.
    Pcs { agents: Vec<usize> },
    /// `agent_config/groups.<g>` of a random group (intended for its members).
    Group,
    /// `agent_config/global` (every agent).
    Global,
    /// A random key of the `jobs` catalog (every agent).
    Jobs,
    /// A random key of the `schedules` catalog (every agent).
    Schedules,
    /// `fleet_config/freeze` (every agent).
    Freeze,
    /// `key` (a template) of the profile's bucket `bucket`, for a profile whose buckets
    /// are not kanade's: with `{pc}` each agent's key in turn (agent i gets write i mod
    /// N), with `{group}` each group's in turn (its members), without placeholders the one
    /// key (every agent). Zester's settings push (`settings-files/<peel>`) is one write
    /// per peel.
    Key { bucket: String, key: KeyTemplate },
}

impl WriteTarget {
    pub fn name(&self) -> &'static str {
        match self {
            WriteTarget::Pc => "pc",
            WriteTarget::PcEach => "pc_each",
            WriteTarget::Pcs { .. } => "pcs",
            WriteTarget::Group => "group",
            WriteTarget::Global => "global",
            WriteTarget::Jobs => "jobs",
            WriteTarget::Schedules => "schedules",
            WriteTarget::Freeze => "freeze",
            WriteTarget::Key { .. } => "key",
        }
    }
}

/// Which subject an `exec` step publishes on.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecTarget {
    /// `commands.pc.<pc>` of a random agent.
    Pc,
    /// `commands.group.<g>` of a random group.
    Group,
    /// `commands.all`.
    All,
}

impl ExecTarget {
    pub fn name(self) -> &'static str {
        match self {
            ExecTarget::Pc => "exec_pc",
            ExecTarget::Group => "exec_group",
            ExecTarget::All => "exec_all",
        }
    }
}

/// How much a `write` or `exec` step sends and how fast.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct WriteLoad {
    /// Writes per second; write i is *intended* at `start + i / rate`.
    pub rate: f64,
    /// Number of writes (`count`, or `rate × duration` when the file gives a duration).
    pub count: u64,
    /// Bytes per value (at least what the write id and intended time need).
    pub value_size: usize,
    /// How long after the last write agents get to deliver before reconciling.
    #[serde(with = "duration_str")]
    pub drain_timeout: Duration,
    /// Run the writes alongside the following steps (e.g. across a `network_cut`) instead
    /// of waiting for them; they are reconciled before the run ends. TOML key
    /// `background`, default false.
    pub background: bool,
    /// What the sender does when the broker does not acknowledge a write (TOML key
    /// `retry`): give up at once (the default, and a write left unacknowledged fails the
    /// run), or publish it again until acknowledged, as a backend would.
    pub retry: WriteRetry,
}

/// `retry` of a `write` or `exec` step.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WriteRetry {
    /// One publish per write: an unacknowledged write fails the run.
    #[default]
    Never,
    /// Publish again after a failed or missing ack (waits of 100 ms doubling to 2 s)
    /// until acknowledged or until the drain timeout has passed since the write's
    /// intended time. Latency is still measured from the intended time; what stayed
    /// unacknowledged is counted (`writes.csv`) and left to `[thresholds]`
    /// (`writes.unacked`), not a failed run by itself.
    UntilAcked,
}

impl StepAction {
    pub fn kind(&self) -> &'static str {
        match self {
            StepAction::Write { .. } => "write",
            StepAction::Exec { .. } => "exec",
            StepAction::DropConsumer { .. } => "drop_consumer",
            StepAction::Start { .. } => "start",
            StepAction::WaitReady { .. } => "wait_ready",
            StepAction::Hold { .. } => "hold",
            StepAction::Herd { trigger, .. } => trigger.kind(),
            StepAction::Churn { .. } => "churn",
        }
    }
}

/// How a churn flap takes an agent off the network.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChurnMode {
    /// Its connection is dropped; it reconnects once the downtime is over.
    Reset,
    /// Its connection is held silent for the downtime, then carries on.
    Blackhole,
}

/// How a `start` step releases agents.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum StartPacing {
    /// Every agent at the same instant: the morning power-on wave.
    AllAtOnce,
    /// A fixed number of agents per second (intended-time pacing, `fleet/pacing.rs`).
    Rate { per_second: u32 },
    /// Evenly over a duration.
    Spread {
        #[serde(with = "duration_str")]
        over: Duration,
    },
}

/// Durations in results and manifests are written the way scenarios write them ("1.5s").
pub mod duration_str {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{d:?}"))
    }

    pub fn serialize_opt<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serialize(d, s),
            None => s.serialize_none(),
        }
    }
}
