//! The herd timeline: fleet and broker activity sampled every 100 ms on the run's clock.
//!
//! Two sources feed it. The agents' side: the roster's counts by state, the consumer
//! creates agents issue themselves, and error counts by kind. The broker's side: the
//! JetStream advisories the server publishes on `$JS.EVENT.ADVISORY.API` (one audit per
//! JetStream API request) and `$JS.EVENT.ADVISORY.CONSUMER.CREATED.>` / `DELETED.>` (one
//! per consumer), counted by subscriptions on the control connection. The advisories
//! are the one place async-nats' hidden consumer recreations show up, so they are what
//! "consumer creates per interval" is measured from.
//!
//! Why advisories and not a subscription to `$JS.API.>`: a subscriber on the API subjects
//! is a responder, so a request made while JetStream is down would time out instead of
//! failing with "no responders", and the herd under test would change. Advisories are
//! events, built and published only while someone listens on their subject: listening
//! costs the broker one audit message (the request and its response, as JSON) per API
//! request, and nothing for the advisories not listened to. What that costs, measured:
//! `scripts/bench-observers.sh` (docs/benchmarks.md).
//!
//! A third source, when the broker has a monitoring port: its traffic counters
//! (`/varz` messages and bytes in and out), read by a task of their own (every
//! [`INTERVAL`] while a step acts, every [`HOLD_TRAFFIC_INTERVAL`] in a hold: see
//! `TrafficPoll`) so a slow answer never delays the fleet's row. A row's rates are the
//! counters' difference since the reading the previous rate used, divided by the time
//! between the two answers on the run's monotonic clock (`broker_interval_secs`); a row
//! with no new reading since (between two readings of a hold, or the broker is slow or
//! away) has them empty, and the next one spans both intervals, so the rows'
//! `rate × broker_interval_secs` add up to the counters' whole difference.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::broker::monitor::{self, Traffic};
use crate::broker::sampler::Overlap;
use crate::fleet::Roster;
use crate::fleet::agent::CreateCounters;
use crate::herd::Herd;
use crate::metrics::Metrics;
use crate::step::StepInfo;

/// Sampling interval of `timeseries.csv`.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The advisories the tap counts, each subscribed to on its own so its counter is known
/// without reading the subject: the API audits (one per JetStream API request, sorted by
/// the request they audit) and the consumers created and deleted. Not
/// `$JS.EVENT.ADVISORY.>`: nats-server builds an advisory's JSON and sends it only while
/// someone listens on its subject, so a wildcard would have it publish advisories no
/// column counts (a NAK, a terminated message, a redelivery limit: per message).
pub const ADVISORY_SUBJECTS: [(&str, Advisory); 3] = [
    ("$JS.EVENT.ADVISORY.API", Advisory::Audit),
    (
        "$JS.EVENT.ADVISORY.CONSUMER.CREATED.>",
        Advisory::ConsumerCreated,
    ),
    (
        "$JS.EVENT.ADVISORY.CONSUMER.DELETED.>",
        Advisory::ConsumerDeleted,
    ),
];
/// The API queue overflow advisory (system account).
pub const API_LIMIT_REACHED: &str = "$JS.EVENT.ADVISORY.API.LIMIT_REACHED";

/// Which advisory a subscription of the tap receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advisory {
    /// `$JS.EVENT.ADVISORY.API`: an audit of one API request; its payload names it.
    Audit,
    ConsumerCreated,
    ConsumerDeleted,
    /// `$JS.EVENT.ADVISORY.API.LIMIT_REACHED`.
    LimitReached,
}

/// What the broker's advisories say happened, counted by kind.
#[derive(Default)]
pub struct ApiTap {
    pub consumer_create_requests: AtomicU64,
    pub consumer_delete_requests: AtomicU64,
    pub stream_info_requests: AtomicU64,
    pub other_requests: AtomicU64,
    pub consumers_created: AtomicU64,
    pub consumers_deleted: AtomicU64,
    /// `$JS.EVENT.ADVISORY.API.LIMIT_REACHED`: the API queue overflowed and dropped requests.
    pub api_limit_reached: AtomicU64,
}

impl ApiTap {
    /// Subscribes `client` to the advisories and counts them until the client closes.
    pub async fn start(
        client: &async_nats::Client,
    ) -> Result<Arc<ApiTap>, async_nats::SubscribeError> {
        let tap = Arc::new(ApiTap::default());
        // Every subscription first, so a failed one leaves no task behind.
        let mut subs = Vec::with_capacity(ADVISORY_SUBJECTS.len());
        for (subject, kind) in ADVISORY_SUBJECTS {
            subs.push((client.subscribe(subject).await?, kind));
        }
        for (sub, kind) in subs {
            tap.spawn_counter(sub, kind);
        }
        Ok(tap)
    }

    /// Counts every message of `sub` as `kind` until the subscription ends. A message is
    /// counted and dropped: nothing of it is kept or logged.
    fn spawn_counter(
        self: &Arc<Self>,
        mut sub: async_nats::Subscriber,
        kind: Advisory,
    ) -> JoinHandle<()> {
        let counts = self.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                counts.count(kind, &msg.payload);
            }
        })
    }

    /// Starts the tap on the control connection and, given a system-account
    /// connection, the `API.LIMIT_REACHED` listener. A tap that cannot subscribe leaves
    /// the API columns at 0, and the log says so; the listener's task ends when its
    /// handle is aborted.
    pub async fn listen(
        control: &async_nats::Client,
        system: Option<async_nats::Client>,
    ) -> (
        Option<Arc<ApiTap>>,
        Option<(async_nats::Client, JoinHandle<()>)>,
    ) {
        let tap = match ApiTap::start(control).await {
            Ok(tap) => tap,
            Err(e) => {
                warn!(error = %e, "cannot subscribe to JetStream advisories: API columns of timeseries.csv stay 0");
                return (None, None);
            }
        };
        let system = match system {
            Some(client) => match tap.listen_system(&client).await {
                Ok(listener) => Some((client, listener)),
                Err(e) => {
                    warn!(error = %e, "cannot subscribe to API.LIMIT_REACHED: api_limit_reached stays 0");
                    None
                }
            },
            None => None,
        };
        (Some(tap), system)
    }

    /// Also counts `API.LIMIT_REACHED`, which nats-server publishes in the *system*
    /// account only (unlike the audits and CREATED/DELETED, which go to the account that
    /// made the request): `client` must be connected as a system-account user. The task
    /// ends when the returned handle is aborted.
    pub async fn listen_system(
        self: &Arc<Self>,
        client: &async_nats::Client,
    ) -> Result<JoinHandle<()>, async_nats::SubscribeError> {
        let sub = client.subscribe(API_LIMIT_REACHED).await?;
        Ok(self.spawn_counter(sub, Advisory::LimitReached))
    }

    fn count(&self, kind: Advisory, payload: &[u8]) {
        let counter = match kind {
            Advisory::Audit => {
                // An audit of one API request; its JSON names the request subject.
                let request = api_request_subject(payload).unwrap_or_default();
                let api = request.strip_prefix(b"$JS.API.").unwrap_or(request);
                if api.starts_with(b"CONSUMER.CREATE.")
                    || api.starts_with(b"CONSUMER.DURABLE.CREATE.")
                {
                    &self.consumer_create_requests
                } else if api.starts_with(b"CONSUMER.DELETE.") {
                    &self.consumer_delete_requests
                } else if api.starts_with(b"STREAM.INFO.") {
                    &self.stream_info_requests
                } else {
                    &self.other_requests
                }
            }
            Advisory::ConsumerCreated => &self.consumers_created,
            Advisory::ConsumerDeleted => &self.consumers_deleted,
            Advisory::LimitReached => &self.api_limit_reached,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> [u64; 7] {
        [
            &self.consumer_create_requests,
            &self.consumer_delete_requests,
            &self.stream_info_requests,
            &self.other_requests,
            &self.consumers_created,
            &self.consumers_deleted,
            &self.api_limit_reached,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// The `"subject"` field of an API audit advisory, as the bytes between its quotes. This
/// runs once per API request of the fleet, so it reads the payload only up to that
/// field (it comes before the request and response the audit carries, most of its
/// bytes) and neither validates nor copies anything: the caller compares ASCII prefixes.
fn api_request_subject(payload: &[u8]) -> Option<&[u8]> {
    const FIELD: &[u8] = b"\"subject\":\"";
    let mut from = 0;
    let start = loop {
        let quote = from + payload[from..].iter().position(|&b| b == b'"')?;
        if payload[quote..].starts_with(FIELD) {
            break quote + FIELD.len();
        }
        from = quote + 1;
    };
    let len = payload[start..].iter().position(|&b| b == b'"')?;
    Some(&payload[start..start + len])
}

/// One row of `timeseries.csv`: a state snapshot plus what happened during the interval
/// that ended at `t_secs`. Also the row `timeseries.csv` is read back as
/// (`results::rows::TimeseriesRow`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Seconds since the first step began (the clock of `steps.csv`).
    pub t_secs: f64,
    /// The step running at that instant.
    pub step: String,
    pub connected: usize,
    pub ready: usize,
    pub recovering: usize,
    pub starting: usize,
    pub failed: usize,
    /// Agents recovered from the current herd (probes delivered on every consumer).
    pub herd_recovered: usize,
    pub creates_started: u64,
    pub creates_completed: u64,
    pub creates_in_flight: u64,
    pub api_consumer_create: u64,
    pub api_consumer_delete: u64,
    pub api_stream_info: u64,
    pub api_other: u64,
    pub consumers_created: u64,
    pub consumers_deleted: u64,
    pub api_limit_reached: u64,
    pub errors_timeout: u64,
    pub errors_no_responders: u64,
    pub errors_jetstream: u64,
    pub errors_connection_refused: u64,
    pub errors_other: u64,
    /// The broker's traffic per second (`/varz`, see `broker.csv`): messages and bytes
    /// (headers + payload) in and out. Empty without a monitoring port, and on a row
    /// with no new `/varz` answer since the last rate.
    pub broker_in_msgs_per_sec: Option<f64>,
    pub broker_out_msgs_per_sec: Option<f64>,
    pub broker_in_bytes_per_sec: Option<f64>,
    pub broker_out_bytes_per_sec: Option<f64>,
    /// The seconds those rates divide by: from the `/varz` answer the previous rate
    /// used to this one, on the run's monotonic clock, rounded to µs.
    pub broker_interval_secs: Option<f64>,
    /// The broker's last sample (`broker.csv`, every 250 ms in a herd step, every second
    /// otherwise): client connections it holds that no agent believes it has, and
    /// consumers above the fleet's footprint (see `BrokerSample`). Empty without a
    /// monitoring port or before the first sample.
    #[serde(default)]
    pub stale_connections: Option<u64>,
    #[serde(default)]
    pub double_held_consumers: Option<u64>,
    /// `begin` on the first sample of a step (set when written), else empty.
    pub step_marker: String,
}

impl Sample {
    /// JetStream API requests seen in this interval, by every kind.
    pub fn api_requests(&self) -> u64 {
        self.api_consumer_create + self.api_consumer_delete + self.api_stream_info + self.api_other
    }
}

/// A sampler running in the background; [`Sampler::finish`] stops it and returns the rows.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Samples every [`INTERVAL`] from `run_start` until finished. `step` names the step
    /// running (updated by the runner); `monitor`, the broker's monitoring URL, adds its
    /// traffic; `overlap`, the broker sampler's last figures, its stale connections and
    /// double-held consumers.
    pub fn start(
        fleet: FleetGauges,
        tap: Option<Arc<ApiTap>>,
        monitor: Option<String>,
        overlap: Option<watch::Receiver<Overlap>>,
        step: watch::Receiver<StepInfo>,
        run_start: Instant,
    ) -> Sampler {
        let ctx = fleet;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let traffic = monitor.map(|m| TrafficPoll::start(m, step.clone()));
            let mut rows = Vec::new();
            let mut ticker = tokio::time::interval_at(run_start.into(), INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut last = Totals::default();
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                let now = Totals::read(&ctx, tap.as_deref(), traffic.as_ref(), overlap.as_ref());
                rows.push(sample(&ctx, &step, run_start, &now, &last));
                last = now.keep_reading(last);
            }
            let now = Totals::read(&ctx, tap.as_deref(), traffic.as_ref(), overlap.as_ref());
            rows.push(sample(&ctx, &step, run_start, &now, &last));
            if let Some(poll) = traffic {
                poll.task.abort();
            }
            rows
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// The broker's traffic counters, read from `/varz` by a task of their own; `latest` is
/// the last answer and when it arrived.
///
/// Every [`INTERVAL`] while a step acts, every [`HOLD_TRAFFIC_INTERVAL`] during a hold, and
/// once as each step begins. Each reading is an HTTP request the broker answers with its
/// whole `/varz` (a few hundred microseconds of its CPU): ten a second through an idle
/// hold were the largest share of what the observers cost it. No chart reads these
/// columns (the report's bandwidth chart reads `broker.csv`), and a hold is idle by
/// design, so its rows' rates span a second; the rows between have them empty, as after
/// any gap, and `rate × broker_interval_secs` still adds up to the counters' difference.
struct TrafficPoll {
    latest: watch::Receiver<Option<(Instant, Traffic)>>,
    task: JoinHandle<()>,
}

/// How often a hold reads the broker's traffic counters (see `TrafficPoll`).
pub const HOLD_TRAFFIC_INTERVAL: Duration = Duration::from_secs(1);

impl TrafficPoll {
    fn start(monitor: String, mut step: watch::Receiver<StepInfo>) -> TrafficPoll {
        let (tx, latest) = watch::channel(None);
        let task = tokio::spawn(async move {
            loop {
                let wait = if step.borrow_and_update().kind == "hold" {
                    HOLD_TRAFFIC_INTERVAL
                } else {
                    INTERVAL
                };
                let next = tokio::time::Instant::now() + wait;
                // A broker that does not answer leaves the last reading: the rows
                // meanwhile have no rate, the next answer spans the gap.
                if let Ok(t) = monitor::traffic(&monitor, Duration::from_secs(1)).await {
                    let _ = tx.send(Some((Instant::now(), t)));
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    // A new step is read at once, so a short one still has its reading.
                    changed = step.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep_until(next).await;
                        }
                    }
                }
            }
        });
        TrafficPoll { latest, task }
    }
}

/// What the time series reads of the fleet.
pub struct FleetGauges {
    pub roster: Arc<Roster>,
    pub herd: Arc<Herd>,
    pub creates: Arc<CreateCounters>,
    pub metrics: Arc<Metrics>,
}

/// Cumulative counters at one instant.
#[derive(Default)]
struct Totals {
    creates_started: u64,
    creates_completed: u64,
    api: [u64; 7],
    errors: [u64; 5],
    /// The broker's latest traffic reading and when its answer arrived.
    traffic: Option<(Instant, Traffic)>,
    /// The broker sampler's last stale connections and double-held consumers.
    overlap: Overlap,
}

impl Totals {
    fn read(
        ctx: &FleetGauges,
        tap: Option<&ApiTap>,
        traffic: Option<&TrafficPoll>,
        overlap: Option<&watch::Receiver<Overlap>>,
    ) -> Totals {
        Totals {
            overlap: overlap.map(|o| *o.borrow()).unwrap_or_default(),
            creates_started: ctx.creates.started.load(Ordering::Relaxed),
            creates_completed: ctx.creates.completed.load(Ordering::Relaxed),
            api: tap.map(ApiTap::read).unwrap_or_default(),
            errors: ctx.metrics.errors_by_kind(),
            traffic: traffic.and_then(|t| t.latest.borrow().clone()),
        }
    }

    /// These totals as the next row's `last`; with no traffic reading yet (the broker
    /// has not answered), the previous one stays the base of the next rate.
    fn keep_reading(mut self, last: Totals) -> Totals {
        if self.traffic.is_none() {
            self.traffic = last.traffic;
        }
        self
    }

    /// The broker's rates since `last`'s reading; `None` with no new reading since.
    fn rates_since(&self, last: &Totals) -> Option<monitor::Rates> {
        let (at, now) = self.traffic.as_ref()?;
        let (then, earlier) = last.traffic.as_ref()?;
        if at <= then {
            return None;
        }
        now.rates_since(earlier, at.duration_since(*then).as_secs_f64())
    }
}

fn sample(
    ctx: &FleetGauges,
    step: &watch::Receiver<StepInfo>,
    run_start: Instant,
    now: &Totals,
    last: &Totals,
) -> Sample {
    let c = ctx.roster.counts();
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let api = |i: usize| d(now.api[i], last.api[i]);
    let err = |i: usize| d(now.errors[i], last.errors[i]);
    let rates = now.rates_since(last);
    Sample {
        t_secs: (run_start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        step: step.borrow().label(),
        connected: ctx.roster.connected(),
        ready: c.ready,
        recovering: c.recovering,
        starting: c.connecting + c.opening + c.syncing,
        failed: c.failed,
        herd_recovered: ctx.herd.recovered(),
        creates_started: d(now.creates_started, last.creates_started),
        creates_completed: d(now.creates_completed, last.creates_completed),
        creates_in_flight: d(now.creates_started, now.creates_completed),
        api_consumer_create: api(0),
        api_consumer_delete: api(1),
        api_stream_info: api(2),
        api_other: api(3),
        consumers_created: api(4),
        consumers_deleted: api(5),
        api_limit_reached: api(6),
        errors_timeout: err(0),
        errors_no_responders: err(1),
        errors_jetstream: err(2),
        errors_connection_refused: err(3),
        errors_other: err(4),
        broker_in_msgs_per_sec: rates.map(|r| r.in_msgs_per_sec),
        broker_out_msgs_per_sec: rates.map(|r| r.out_msgs_per_sec),
        broker_in_bytes_per_sec: rates.map(|r| r.in_bytes_per_sec),
        broker_out_bytes_per_sec: rates.map(|r| r.out_bytes_per_sec),
        broker_interval_secs: rates.map(|r| r.interval_secs),
        stale_connections: now.overlap.stale_connections,
        double_held_consumers: now.overlap.double_held_consumers,
        step_marker: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audits_are_counted_by_the_request_they_audit() {
        let tap = ApiTap::default();
        // As nats-server writes them: the client's details, then the subject, then the
        // request and the response, which may themselves name subjects.
        let audit = |s: &str| {
            format!(
                "{{\"type\":\"io.nats.jetstream.advisory.v1.api_audit\",\"client\":{{\"acc\":\"$G\",\"name\":\"pc-00001\"}},\"subject\":\"{s}\",\"request\":\"{{\\\"subject\\\":\\\"$JS.API.STREAM.INFO.x\\\"}}\",\"response\":\"{{}}\"}}"
            )
        };
        for subject in [
            "$JS.API.CONSUMER.CREATE.KV_jobs.abc.$KV.jobs.>",
            "$JS.API.CONSUMER.DURABLE.CREATE.EXEC.agent_replay_pc-00001",
            "$JS.API.CONSUMER.DELETE.KV_jobs.abc",
            "$JS.API.STREAM.INFO.KV_jobs",
            "$JS.API.INFO",
        ] {
            tap.count(Advisory::Audit, audit(subject).as_bytes());
        }
        // An audit without a subject field is still one request.
        tap.count(
            Advisory::Audit,
            b"{\"type\":\"io.nats.jetstream.advisory.v1.api_audit\"}",
        );
        tap.count(Advisory::ConsumerCreated, b"{}");
        tap.count(Advisory::LimitReached, b"{}");
        assert_eq!(tap.read(), [2, 1, 1, 2, 1, 0, 1]);
    }

    #[test]
    fn the_request_subject_is_read_up_to_its_closing_quote() {
        assert_eq!(
            api_request_subject(br#"{"id":"x","subject":"$JS.API.INFO","response":"{}"}"#),
            Some(&b"$JS.API.INFO"[..])
        );
        // A field whose name only ends in "subject" is not it.
        assert_eq!(
            api_request_subject(br#"{"no_subject":"a","subject":"b"}"#),
            Some(&b"b"[..])
        );
        assert_eq!(api_request_subject(br#"{"subject":"unterminated"#), None);
        assert_eq!(api_request_subject(b""), None);
    }

    #[test]
    fn the_tap_listens_only_to_the_advisories_it_counts() {
        for (subject, _) in ADVISORY_SUBJECTS {
            assert!(subject.starts_with("$JS.EVENT.ADVISORY."), "{subject}");
            assert_ne!(subject, "$JS.EVENT.ADVISORY.>");
        }
    }
}
