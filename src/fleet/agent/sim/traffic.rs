//! The traffic an agent sends on its own: the profile's periodic publishes (heartbeats,
//! perf samples, events), each on intended times so a slow publish does not shift the
//! ones after it.

use super::nats;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use nats::jetstream;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use super::Agent;
use crate::plan::PublishSpec;

/// The largest payload a publish may have (nats-server's default max_payload).
const MAX_PAYLOAD: usize = 1_048_576;
/// Payloads are slices of one zeroed buffer: no allocation per agent or publish.
static ZEROS: [u8; MAX_PAYLOAD] = [0; MAX_PAYLOAD];

/// `size` zero bytes, without allocating (capped at the largest payload).
pub(super) fn payload(size: usize) -> Bytes {
    Bytes::from_static(&ZEROS[..size.min(MAX_PAYLOAD)])
}

/// One publish done: which of the profile's publishes, and how long it took (the ack's
/// round trip for an acked publish, the hand-over to the client for a core one) or why
/// it failed.
pub(super) type Published = (usize, Result<Duration, String>);

impl Agent<'_> {
    /// Every periodic publish of the profile as one stream, started now.
    pub(super) fn publishes(
        &self,
        client: &nats::Client,
        js: &jetstream::Context,
    ) -> BoxStream<'static, Published> {
        let start = Instant::now();
        let streams = self
            .ctx
            .profile
            .publishes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let seed = self.ctx.seed ^ ((self.index as u64) << 8) ^ i as u64;
                publish_loop(
                    i,
                    spec,
                    spec.subject.render(&self.pc, &self.group),
                    client.clone(),
                    js.clone(),
                    seed,
                    start,
                )
            });
        streams.collect::<super::streams::Streams<_>>().boxed()
    }
}

struct LoopState {
    next_at: Instant,
    rng: rand::rngs::SmallRng,
}

fn publish_loop(
    slot: usize,
    spec: &PublishSpec,
    subject: String,
    client: nats::Client,
    js: jetstream::Context,
    seed: u64,
    start: Instant,
) -> BoxStream<'static, Published> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    // Only these are read per publish: the spec itself is not cloned each time.
    let (ack, every, jitter) = (spec.ack, spec.every, spec.jitter);
    let first = if spec.at_start {
        start
    } else {
        start + interval(every, jitter, &mut rng)
    };
    let payload = payload(spec.size);
    futures::stream::unfold(
        LoopState {
            next_at: first,
            rng,
        },
        move |mut state| {
            let (client, js, subject, payload) =
                (client.clone(), js.clone(), subject.clone(), payload.clone());
            async move {
                tokio::time::sleep_until(state.next_at).await;
                let began = std::time::Instant::now();
                let result = if ack {
                    match js.publish(subject, payload).await {
                        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                } else {
                    client
                        .publish(subject, payload)
                        .await
                        .map_err(|e| e.to_string())
                };
                state.next_at += interval(every, jitter, &mut state.rng);
                // Behind by more than a period (an acked publish waited out an outage):
                // go on from now rather than fire a burst of catch-up publishes.
                let now = Instant::now();
                if state.next_at < now {
                    state.next_at = now + interval(every, jitter, &mut state.rng);
                }
                Some(((slot, result.map(|()| began.elapsed())), state))
            }
        },
    )
    .boxed()
}

/// One period, jittered.
fn interval(every: Duration, jitter: f64, rng: &mut rand::rngs::SmallRng) -> Duration {
    if jitter <= 0.0 {
        return every;
    }
    let factor = 1.0 + jitter * (2.0 * rng.random::<f64>() - 1.0);
    every.mul_f64(factor.max(0.0))
}
