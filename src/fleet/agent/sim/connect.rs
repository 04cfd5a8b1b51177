//! How an agent connects: its connect options, the first connect (retried with the
//! fleet's backoff) and the delays between reconnect attempts, splay included.

use super::nats;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use tokio::sync::mpsc;

use super::{Agent, AgentEnv, ConnEvent};
use crate::fleet::Roster;
use crate::herd::Herd;
use crate::nats_failure::FailureKind;
use crate::plan::{Backoff, SplayPlacement};

impl Agent<'_> {
    /// Connects, retrying with the fleet's reconnect backoff until it succeeds or the run
    /// stops the agent (the real agent uses `retry_on_initial_connect`). The first
    /// attempt uses the options `prepared` before the release and records when it began
    /// (`connect_attempt_at`, `fire_skew`) just before async-nats is called.
    pub(super) async fn connect(
        &self,
        events: mpsc::UnboundedSender<ConnEvent>,
        prepared: nats::ConnectOptions,
        first: FirstAttempt,
    ) -> nats::Client {
        let mut attempts: usize = 0;
        let mut prepared = Some(prepared);
        let delays = ReconnectDelays::new(self.ctx, self.index, Duration::ZERO);
        loop {
            attempts += 1;
            // Asked even when it is zero (the first attempt): the jitter's random numbers
            // stay the same sequence.
            let wait = delays.delay(attempts);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let options = match prepared.take() {
                Some(options) => options,
                None => self.connect_options(events.clone()),
            };
            if attempts == 1 {
                first.record(self.ctx, self.index);
            }
            match options.connect(self.ctx.connection.url.as_str()).await {
                Ok(client) => return client,
                Err(e) => {
                    let message = e.to_string();
                    self.ctx.metrics.error(
                        self.index,
                        "connect",
                        FailureKind::classify(&e),
                        &message,
                    );
                }
            }
        }
    }

    pub(super) fn connect_options(
        &self,
        events: mpsc::UnboundedSender<ConnEvent>,
    ) -> nats::ConnectOptions {
        let roster = self.ctx.roster.clone();
        let herd = self.ctx.herd.clone();
        let index = self.index;
        let splay = match self.placement() {
            Some(SplayPlacement::ReconnectDelay) => self.splay(),
            _ => Duration::ZERO,
        };
        let delays = ReconnectDelays::new(self.ctx, index, splay);
        let mut options = self
            .ctx
            .connection
            .credentials
            .apply(nats::ConnectOptions::new());
        if self.ctx.connection.local_addresses > 1 {
            let octet = 1 + (index % usize::from(self.ctx.connection.local_addresses)) as u8;
            options = options.local_address(std::net::SocketAddr::from(([127, 0, 0, octet], 0)));
        }
        options
            .name(&self.pc)
            .connection_timeout(self.ctx.fleet.connect_timeout)
            .read_buffer_capacity(self.ctx.fleet.read_buffer_capacity)
            .request_timeout(Some(self.ctx.fleet.request_timeout))
            .ping_interval(self.ctx.fleet.ping_interval)
            .max_reconnects(self.ctx.fleet.max_reconnects)
            .reconnect_delay_callback(move |attempts| delays.delay(attempts))
            .event_callback(move |event| {
                let roster = roster.clone();
                let herd = herd.clone();
                let events = events.clone();
                async move {
                    // Trivial on purpose: async-nats drops events when a callback is slow.
                    match event {
                        nats::Event::Connected => {
                            roster.on_connected(index);
                            let _ = events.send(ConnEvent::Connected);
                        }
                        nats::Event::Disconnected => {
                            roster.on_disconnected(index);
                            herd.on_disconnected(index);
                            let _ = events.send(ConnEvent::Disconnected);
                        }
                        nats::Event::ClientError(nats::ClientError::MaxReconnects) => {
                            let _ = events.send(ConnEvent::GaveUp);
                        }
                        _ => {}
                    }
                }
            })
    }
}

/// The instant a start step meant an agent's first connect attempt for, and the step.
pub(super) struct FirstAttempt {
    pub phase: usize,
    pub intended: Instant,
}

impl FirstAttempt {
    /// The first attempt begins now: records when (`connect_attempt_at`, since the
    /// fleet was made) and how late (`fire_skew`).
    fn record(&self, ctx: &AgentEnv, index: usize) {
        let now = Instant::now();
        let metrics = &ctx.metrics;
        let since_epoch = now.saturating_duration_since(ctx.epoch);
        metrics.record_in(self.phase, index, ctx.ids.connect_attempt_at, since_epoch);
        let skew = now.saturating_duration_since(self.intended);
        metrics.record_in(self.phase, index, ctx.ids.fire_skew, skew);
    }
}

/// The delay before reconnect attempt `attempts` (1-based, as async-nats counts: the
/// counter goes up before each try and resets on success), for `backoff`; `unit` is a
/// uniform random number in [0, 1) for the jitter.
pub fn reconnect_delay(backoff: &Backoff, attempts: usize, unit: f64) -> Duration {
    let exp = |base: Duration, n: usize| base.saturating_mul(1u32 << n.min(30) as u32);
    match *backoff {
        // async-nats' reconnect_delay_callback_default.
        Backoff::AsyncNatsDefault => {
            if attempts <= 1 {
                Duration::ZERO
            } else {
                exp(Duration::from_millis(1), attempts - 1).min(Duration::from_secs(4))
            }
        }
        Backoff::Exponential { base, cap, jitter } => {
            let d = exp(base, attempts.max(1) - 1).min(cap);
            d.mul_f64((1.0 + jitter * (2.0 * unit - 1.0)).max(0.0))
        }
        // nats.go's doReconnect: it sleeps ReconnectWait + rand(ReconnectJitter) each
        // time it has tried every server of its pool, and before the first attempt when
        // the pool holds one server (`doSleep := i+1 >= len(nc.srvPool)`), as an agent's
        // does. (A client's very first dial is not a reconnect: `ReconnectDelays` sends
        // it at once.)
        Backoff::Fixed { wait, jitter } => wait + jitter.mul_f64(unit),
    }
}

/// One agent's reconnect delays: the fleet's backoff plus, with the `reconnect_delay`
/// splay, the splay counted from the first attempt after a disconnect. Attempts that
/// fail inside the splay (the broker still down) do not end it early: every attempt
/// waits at least until the splay is over, so agents stay spread however long the
/// outage. The first connection is not splayed (async-nats consults the same callback
/// for it): the splay belongs to reconnects, the cold start has `splay_on_start`.
struct ReconnectDelays {
    backoff: Backoff,
    splay: Duration,
    /// Whether the agent has been connected yet (its connect count in the roster).
    roster: Arc<Roster>,
    /// Where reconnect attempts are noted, for the herd's `fire_skew`.
    herd: Arc<Herd>,
    index: usize,
    splay_until: std::sync::Mutex<Option<Instant>>,
    /// Seeds the jitter: deterministic per run and agent.
    rng: std::sync::Mutex<rand::rngs::SmallRng>,
}

impl ReconnectDelays {
    fn new(ctx: &AgentEnv, index: usize, splay: Duration) -> Self {
        ReconnectDelays {
            backoff: ctx.fleet.reconnect,
            splay,
            roster: ctx.roster.clone(),
            herd: ctx.herd.clone(),
            index,
            splay_until: std::sync::Mutex::new(None),
            rng: std::sync::Mutex::new(rand::rngs::SmallRng::seed_from_u64(
                ctx.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64,
            )),
        }
    }

    fn delay(&self, attempts: usize) -> Duration {
        let unit = self.rng.lock().expect("rng lock").random::<f64>();
        let never_connected = self.roster.cell(self.index).connects() == 0;
        if never_connected && attempts <= 1 {
            // The first attempt of a connect: async-nats asks the callback before it
            // too, but a client's first connection goes at once (nats.go's ReconnectWait
            // and async-nats' default both wait nothing); the wait belongs to retries.
            return Duration::ZERO;
        }
        let backoff = reconnect_delay(&self.backoff, attempts, unit);
        if never_connected {
            return backoff;
        }
        let delay = if self.splay.is_zero() {
            backoff
        } else {
            let mut until = self.splay_until.lock().expect("splay lock");
            if attempts <= 1 || until.is_none() {
                *until = Some(Instant::now() + self.splay);
            }
            let left = until.map_or(Duration::ZERO, |u| {
                u.saturating_duration_since(Instant::now())
            });
            backoff.max(left)
        };
        // async-nats asks just before it sleeps `delay` and tries: that is when this
        // reconnect attempt begins.
        self.herd
            .reconnect_attempt(self.index, Instant::now() + delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reconnect_delay_matches_async_nats() {
        let ms: Vec<u128> = (1..16)
            .map(|a| reconnect_delay(&Backoff::AsyncNatsDefault, a, 0.5).as_millis())
            .collect();
        assert_eq!(&ms[..6], &[0, 2, 4, 8, 16, 32]);
        assert_eq!(ms[14], 4000);
    }

    #[test]
    fn exponential_backoff_doubles_to_the_cap_within_the_jitter() {
        let b = Backoff::Exponential {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            jitter: 0.25,
        };
        let at = |attempts, unit| reconnect_delay(&b, attempts, unit).as_millis();
        assert_eq!(at(1, 0.5), 100);
        assert_eq!(at(3, 0.5), 400);
        assert_eq!(at(10, 0.5), 1000, "capped");
        assert_eq!(at(1, 0.0), 75, "-25 %");
        assert_eq!(at(1, 1.0), 125, "+25 %");
    }

    #[test]
    fn fixed_wait_waits_before_every_attempt_with_up_to_the_jitter_added() {
        let b = Backoff::Fixed {
            wait: Duration::from_secs(2),
            jitter: Duration::from_millis(100),
        };
        let at = |attempts, unit| reconnect_delay(&b, attempts, unit).as_millis();
        assert_eq!(
            at(1, 0.0),
            2000,
            "nats.go sleeps before its first reconnect to its one server"
        );
        assert_eq!(at(2, 0.0), 2000);
        assert_eq!(at(2, 0.5), 2050);
        assert_eq!(
            at(30, 0.99),
            2099,
            "never more than wait + jitter, however many attempts"
        );
    }
}
