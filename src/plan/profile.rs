//! What one simulated agent does, as data: a [`Profile`].
//!
//! A profile says *what happens when*, the way the real agent's source does it:
//!
//! - the **cold start** ([`Profile::cold_start`]): after the connection, a list of
//!   [`Task`]s that run concurrently (the real agent spawns one tokio task per
//!   responsibility), each an ordered list of [`Call`]s;
//! - the **reconnect** ([`Profile::on_reconnect`]): the tasks that run on every
//!   Disconnected → Connected transition. async-nats recreates the ordered watches by
//!   itself and re-sends the core subscriptions; these tasks are only what the agent's own
//!   code adds (for kanade: the schedules walk its agent_groups watch's replay triggers);
//! - the long-lived **consumers** ([`Profile::consumers`]), opened by `open` calls;
//! - **periodic publishes** ([`Profile::publishes`]): heartbeats, perf samples, events;
//! - the **buckets and streams** the agents expect on the broker, which provisioning
//!   creates and seeds;
//! - the **connection options** the agent ships with ([`ClientOptions`]); `[fleet]` keys
//!   override them for a run.
//!
//! The simple form of a profile (only `[[consumers]]` and `[[sync]]`, what fleetsim had
//! before tasks) is read into this shape: one cold-start task that opens every consumer
//! in order and then does the sync, and one reconnect task that does the sync again.

use std::time::Duration;

use serde::Serialize;

use super::{Backoff, duration_str};

/// What one agent opens, reads and sends, and when.
///
/// Profiles are data, not code: the built-ins are TOML in `src/profiles/` parsed by the
/// same code as a scenario's `[profiles.<name>]` tables.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Profile {
    pub name: String,
    /// The long-lived consumers, in declaration order (a consumer's index is its *slot*:
    /// metrics `consumer_create.<name>`, herd probes, `drop_consumer`). Each is opened
    /// by exactly one `open` call of the cold start.
    pub consumers: Vec<ConsumerSpec>,
    /// Run concurrently after the first connection; the agent is `ready` when all have
    /// finished. A task with `blocking` is finished before the tasks after it start.
    pub cold_start: Vec<Task>,
    /// Run concurrently after every reconnect (after the splay, where the scenario puts
    /// one); the agent is `ready` again when all have finished.
    pub on_reconnect: Vec<Task>,
    /// Run for every command an agent's core subscriptions receive (a message on a
    /// `commands.` subject that is not a herd probe), concurrently with everything else:
    /// what the real agent's command loop does per command.
    pub on_command: Vec<Call>,
    /// Periodic publishes, started when the cold start starts and kept up until the run
    /// ends (also while disconnected: async-nats buffers them, as for the real agent).
    pub publishes: Vec<PublishSpec>,
    /// Buckets provisioning creates and seeds. A profile that declares none gets the
    /// kanade set ([`kanade_buckets`]), so older custom profiles keep working.
    pub buckets: Vec<BucketSpec>,
    /// Streams provisioning creates besides `EXEC` (which it always creates: the `exec`
    /// step and the `exec_replay` consumer use it). For acked publishes.
    pub streams: Vec<StreamSpec>,
    /// The agent's connection options as shipped; `[fleet]` keys override each.
    pub client: ClientOptions,
}

/// One read of the simple form's `[[sync]]`; it becomes a [`Call`] of both tasks.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SyncOp {
    Get {
        bucket: String,
        keys: Vec<KeyTemplate>,
    },
    Walk {
        bucket: String,
    },
}

impl SyncOp {
    /// The call it is in a task.
    pub fn call(&self) -> Call {
        match self {
            SyncOp::Get { bucket, keys } => Call::Get {
                bucket: bucket.clone(),
                keys: keys.clone(),
            },
            SyncOp::Walk { bucket } => Call::Walk {
                bucket: bucket.clone(),
            },
        }
    }
}

impl Profile {
    /// A profile in the simple form: one cold-start task that opens every consumer in
    /// order and then does the sync, one reconnect task that does the sync again, the
    /// kanade buckets, no publishes, no client options of its own.
    pub fn simple(name: &str, consumers: Vec<ConsumerSpec>, sync: Vec<SyncOp>) -> Profile {
        let reads: Vec<Call> = sync.iter().map(SyncOp::call).collect();
        let opens = (0..consumers.len()).map(|slot| Call::Open { slot });
        let task = |name: &str, calls: Vec<Call>| Task {
            name: name.to_string(),
            blocking: false,
            calls,
        };
        Profile {
            name: name.to_string(),
            cold_start: vec![task("setup", opens.chain(reads.iter().cloned()).collect())],
            on_reconnect: if reads.is_empty() {
                Vec::new()
            } else {
                vec![task("resync", reads)]
            },
            consumers,
            on_command: Vec::new(),
            publishes: Vec::new(),
            buckets: kanade_buckets(),
            streams: Vec::new(),
            client: ClientOptions::default(),
        }
    }
}

/// One long-lived consumer an agent holds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsumerSpec {
    /// Label used in metrics (`consumer_create.<name>`), unique within a profile.
    pub name: String,
    pub kind: ConsumerKind,
}

/// The async-nats call that opens a consumer.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConsumerKind {
    /// `kv.watch(key)`: one ordered push consumer on one key (template).
    Watch { bucket: String, key: KeyTemplate },
    /// `kv.watch_many(keys)`: one ordered push consumer with several filter subjects.
    WatchMany {
        bucket: String,
        keys: Vec<KeyTemplate>,
    },
    /// `kv.watch_all()`: one ordered push consumer on the whole bucket.
    WatchAll { bucket: String },
    /// The durable pull consumer `agent_replay_<pc>` on stream `EXEC`, filter subjects
    /// `commands.all`, `commands.pc.<pc>`, `commands.group.<g>`; explicit ack,
    /// deliver last-per-subject; created with create-or-update.
    ExecReplay,
}

impl ConsumerKind {
    /// The bucket a watch reads; `None` for the EXEC consumer.
    pub fn bucket(&self) -> Option<&str> {
        match self {
            ConsumerKind::Watch { bucket, .. }
            | ConsumerKind::WatchMany { bucket, .. }
            | ConsumerKind::WatchAll { bucket } => Some(bucket),
            ConsumerKind::ExecReplay => None,
        }
    }
}

/// One concurrent unit of an agent's work: what one tokio task of the real agent does.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Task {
    /// Label in metrics (`cold_start.<name>`, `on_reconnect.<name>`) and errors; unique
    /// within its list.
    pub name: String,
    /// The tasks after this one start only when it has finished (the real agent awaits
    /// it before spawning them).
    pub blocking: bool,
    pub calls: Vec<Call>,
}

/// One broker call (or a synchronisation between an agent's tasks), in a task's order.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Call {
    /// `js.get_key_value(bucket)`: one `STREAM.INFO KV_<bucket>`. Every `bind` is sent,
    /// as the real agent binds again in each task; a call on a bucket its task has not
    /// bound yet binds it first.
    Bind { bucket: String },
    /// `js.get_stream(stream)`: one `STREAM.INFO <stream>`.
    StreamInfo { stream: String },
    /// A direct `get` of each key (template), in order.
    Get {
        bucket: String,
        keys: Vec<KeyTemplate>,
    },
    /// `keys()` then a `get` per key: a walk of the whole bucket. `keys()` opens a
    /// short-lived ordered consumer that the server reaps ~30 s after it is dropped.
    Walk { bucket: String },
    /// Opens consumer `slot` of [`Profile::consumers`] (its polling starts at once).
    Open { slot: usize },
    /// A core subscription (subject template) held for the agent's life; async-nats
    /// re-sends it on every reconnect.
    Subscribe { subject: KeyTemplate },
    /// `client.flush()`: waits until the server has processed what was sent.
    Flush,
    /// Wakes every `wait` on this name in the same agent (e.g. the groups task sending
    /// the membership the scheduler's groups-change task waits for).
    Signal { name: String },
    /// Waits until a task of this agent has signalled `name` since the phase began.
    Wait { name: String },
    /// One publish of `size` bytes on `subject` (template): a JetStream publish that
    /// waits for the stream's ack when `ack`, else a core publish.
    Publish {
        subject: KeyTemplate,
        size: usize,
        ack: bool,
    },
    /// Reconnect only: waits until consumer `slot` delivers again, which a recreated
    /// ordered watch does only if it never delivered before the disconnect (async-nats
    /// then replays with `deliver_policy = all`; otherwise it resumes after the last
    /// delivered message and nothing is replayed). If the consumer had delivered, or
    /// nothing comes `within`, the rest of the task is skipped: the trigger never came.
    WaitDelivery {
        slot: usize,
        #[serde(with = "duration_str")]
        within: Duration,
    },
}

/// A publish an agent repeats for as long as it runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PublishSpec {
    /// Label in metrics and results, unique within the profile.
    pub name: String,
    /// Subject template (`{pc}`, `{group}`).
    pub subject: KeyTemplate,
    /// Time between two publishes of one agent.
    #[serde(with = "duration_str")]
    pub every: Duration,
    /// Each interval is `every` times a uniform factor in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
    /// Payload bytes.
    pub size: usize,
    /// A JetStream publish that waits for the stream's ack (a stream of
    /// [`Profile::streams`] must hold the subject), or a core publish.
    pub ack: bool,
    /// The first publish at the start (the real agent's tokio `interval` fires at once),
    /// or one period after it.
    pub at_start: bool,
}

/// A KV bucket the profile's agents use, and how provisioning creates and seeds it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BucketSpec {
    pub name: String,
    pub history: i64,
    /// Per-entry age limit (`max_age`); `None` keeps entries for ever.
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub ttl: Option<Duration>,
    /// Keys put at provisioning, templates: one with `{pc}` is put once per agent, with
    /// `{group}` once per group, with `{n}` once per catalog entry (`catalog_entries`,
    /// `{n}` = 0000, 0001, …), and one without placeholders once.
    pub seed: Vec<KeyTemplate>,
    /// Bytes of each seeded value (at least the few bytes of `{"seed":0}`).
    pub value_size: usize,
}

/// A stream provisioning creates (besides `EXEC`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    /// `max_age`; `None` keeps messages until `max_bytes`.
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub max_age: Option<Duration>,
}

/// The connection options an agent ships with. `None` leaves the option to `[fleet]`'s
/// default; a `[fleet]` key given in the scenario always wins.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ClientOptions {
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub connect_timeout: Option<Duration>,
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub request_timeout: Option<Duration>,
    pub read_buffer_capacity: Option<u16>,
    /// async-nats `ping_interval` (its default 60 s).
    #[serde(serialize_with = "duration_str::serialize_opt")]
    pub ping_interval: Option<Duration>,
    pub reconnect: Option<Backoff>,
    /// The async-nats version the agents run (`async_nats = "0.50"`).
    pub async_nats: Option<AsyncNats>,
}

/// The async-nats version a fleet's agents run. fleetsim links both; they differ in
/// what an ordered watch's recreation asks the broker for after a reconnect
/// (docs/fidelity.md, "The library question"): 0.50 one `CONSUMER.CREATE` per attempt,
/// 0.51 a `CONSUMER.DELETE` and a `CONSUMER.CREATE`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub enum AsyncNats {
    /// 0.50, what the real kanade agent's newest lockfile resolves.
    #[serde(rename = "0.50")]
    V0_50,
    /// 0.51, fleetsim's own client.
    #[default]
    #[serde(rename = "0.51")]
    V0_51,
}

impl AsyncNats {
    pub const ALL: [(&'static str, AsyncNats); 2] =
        [("0.50", AsyncNats::V0_50), ("0.51", AsyncNats::V0_51)];

    pub fn name(self) -> &'static str {
        match self {
            AsyncNats::V0_50 => "0.50",
            AsyncNats::V0_51 => "0.51",
        }
    }
}

/// A key with placeholders: `{pc}` (the agent's id) and `{group}` (its group's id).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct KeyTemplate(pub String);

impl KeyTemplate {
    /// The key for one agent.
    pub fn render(&self, pc: &str, group: &str) -> String {
        self.0.replace("{pc}", pc).replace("{group}", group)
    }
}

/// Bucket names of the kanade agent (its bootstrap), the default of a profile that
/// declares no `[[buckets]]`.
pub const BUCKETS: [&str; 5] = [
    "agent_config",
    "agent_groups",
    "schedules",
    "jobs",
    "fleet_config",
];

/// The kanade buckets as kanade's bootstrap creates them and fleetsim seeds them:
/// `agent_config` (`global`, `groups.<g>`, `pcs.<pc>`), `agent_groups` (`<pc>`),
/// the catalogs `schedules` and `jobs` (`catalog_entries` each), all with 5 revisions,
/// and `fleet_config` (`freeze`) with one.
pub fn kanade_buckets() -> Vec<BucketSpec> {
    let spec = |name: &str, history: i64, seed: &[&str]| BucketSpec {
        name: name.to_string(),
        history,
        ttl: None,
        seed: seed.iter().map(|k| KeyTemplate(k.to_string())).collect(),
        value_size: 0,
    };
    vec![
        spec("agent_config", 5, &["global", "groups.{group}", "pcs.{pc}"]),
        spec("agent_groups", 5, &["{pc}"]),
        spec("schedules", 5, &["sched-{n}"]),
        spec("jobs", 5, &["job-{n}"]),
        spec("fleet_config", 1, &["freeze"]),
    ]
}
