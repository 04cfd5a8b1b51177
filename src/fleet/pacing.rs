//! Intended-time pacing, the one pacing strategy of the fleet's start and of writes.
//!
//! Item `i` of a stream paced at `rate` per second is due at `start + i / rate`
//! (oha's latency correction): the schedule is fixed before anything is sent, a release
//! that runs late does not push the ones after it back, and a latency is measured from
//! the *scheduled* instant, so a slow broker shows up as latency instead of as fewer
//! operations (no coordinated omission). Everything runs on tokio's clock, so
//! `tokio::time::pause()` drives it in tests.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

/// When item `i` of a stream paced at `rate` per second from `start` is due.
pub fn due(start: Instant, rate: f64, i: u64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate)
}

/// Calls `each(i)` for `i` in `0..count`, each at its intended time: the fleet's start
/// releasing agents (spawning one takes no time, so nothing is measured).
pub async fn release(start: Instant, rate: f64, count: u64, mut each: impl FnMut(u64)) {
    for i in 0..count {
        tokio::time::sleep_until(due(start, rate, i)).await;
        each(i);
    }
}

/// Sends `count` writes paced by intended time (`start + i / rate`) and returns, per
/// write, the time from its *intended* send time to its ack (`None`: not acked). A write
/// sent late (the sender or the runtime was busy) is charged its wait; sends overlap, so
/// one slow ack never delays the next write.
pub async fn paced<F, Fut>(start: Instant, rate: f64, count: u64, send: F) -> Vec<Option<Duration>>
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = bool>,
{
    let intended = |i: u64| due(start, rate, i);
    let mut results = vec![None; count as usize];
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0u64;
    while next < count || !in_flight.is_empty() {
        let due = (next < count).then(|| intended(next));
        tokio::select! {
            _ = async { tokio::time::sleep_until(due.expect("guarded")).await }, if due.is_some() => {
                let i = next;
                let at = intended(i);
                let send = send(i, at);
                in_flight.push(async move { (i, send.await.then(|| at.elapsed())) });
                next += 1;
            }
            Some((i, latency)) = in_flight.next(), if !in_flight.is_empty() => {
                results[i as usize] = latency;
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_delayed_send_is_charged_its_waiting_time() {
        // The sender starts 1 s behind schedule: writes 0..9 were due before it ran.
        let start = tokio::time::Instant::now() - Duration::from_secs(1);
        let latencies = paced(start, 10.0, 20, |_, _| async { true }).await;
        let ms: Vec<u128> = latencies
            .iter()
            .map(|l| l.expect("acked").as_millis())
            .collect();
        assert!(
            ms[0] >= 1000,
            "write 0 was due 1 s before it was sent: {ms:?}"
        );
        assert!(ms[5] >= 500, "{ms:?}");
        assert!(
            ms[15] < 10,
            "writes due after the sender caught up are on time: {ms:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_ack_does_not_delay_the_next_write() {
        let start = tokio::time::Instant::now();
        let latencies = paced(start, 10.0, 3, |i, _| async move {
            if i == 0 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            true
        })
        .await;
        assert!(latencies[0].expect("acked") >= Duration::from_secs(2));
        assert!(latencies[1].expect("acked") < Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn releases_are_spread_at_their_intended_times() {
        let start = Instant::now();
        let mut at = Vec::new();
        release(start, 4.0, 5, |_| at.push(start.elapsed().as_millis())).await;
        assert_eq!(at, [0, 250, 500, 750, 1000]);
    }
}
