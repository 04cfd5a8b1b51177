//! The link the fault proxy shapes: what happens to the bytes of an agent connection on
//! their way through, as [`LinkShape`] says (a cut is the proxy's, not the link's).
//!
//! A latency is a delay line per direction: a reader takes whatever arrives, stamps it
//! with the instant it is due (read time + latency) and queues it; a writer sleeps until
//! each chunk is due, then writes it. Reading never waits for writing, so the link adds
//! delay without limiting throughput (a bandwidth-delay product of up to
//! [`MAX_IN_FLIGHT`] per direction), and chunks leave in the order they came. The end of
//! a stream is queued like a chunk: the far side sees it one latency later, after the
//! data before it. As `copy_bidirectional` does, an error in either direction ends both.
//!
//! The other shapes set each chunk's due instant on the same line ([`Schedule`]): a
//! jitter adds a random part of itself (never before the previous chunk: TCP keeps
//! order); a bandwidth cap sends a chunk only once the one before it has gone through at
//! that rate (and reads at most 10 ms of the rate at once, so a capped link trickles
//! instead of jumping a 64 KiB chunk at a time); a stall holds every chunk due inside
//! one of the connection's stall windows until the window ends.

use std::time::Duration;

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio::time::Instant;

use super::fault::{Gate, Identify};
use crate::plan::{LinkShape, Stall};

/// The most bytes one direction of one connection holds read but not yet written: the
/// proxy stops reading that direction until some are written. 4 MiB is 160 MB/s at a
/// latency of 25 ms, far beyond what one agent's connection carries.
pub const MAX_IN_FLIGHT: usize = 4 << 20;
/// The most one read takes at once.
const CHUNK: usize = 64 << 10;

/// Forwards between `client` and `server` until both directions have ended (or either
/// fails), shaped as `link` says and held while `gate` is closed (a blackhole). The
/// client-to-server direction tells the gate which agent the connection carries.
pub(super) async fn forward(
    client: &mut TcpStream,
    server: &mut TcpStream,
    link: LinkShape,
    gate: Gate,
) -> std::io::Result<()> {
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let upstream = Direction::upstream(gate.clone());
    let downstream = Direction::downstream(gate);
    if link.is_plain() {
        return tokio::try_join!(
            pipe(client_read, server_write, upstream),
            pipe(server_read, client_write, downstream),
        )
        .map(drop);
    }
    // Both directions of a connection stall together: one phase for the connection.
    let phase = link
        .stall
        .map(|s| s.every.mul_f64(rand::rng().random::<f64>()))
        .unwrap_or_default();
    let origin = Instant::now();
    tokio::try_join!(
        delay_line(
            client_read,
            server_write,
            Schedule::new(link, origin, phase),
            upstream
        ),
        delay_line(
            server_read,
            client_write,
            Schedule::new(link, origin, phase),
            downstream
        ),
    )
    .map(drop)
}

/// When each chunk of one direction is due, as the link's shape says.
pub struct Schedule {
    latency: Duration,
    jitter: Duration,
    bandwidth: Option<u64>,
    stall: Option<Stall>,
    /// The connection's stall windows begin at `origin + phase + k × every`.
    origin: Instant,
    phase: Duration,
    /// When the previous chunk finished going through the bandwidth cap, and when it
    /// was due: the next one is neither sent nor due before them.
    sent: Instant,
    last_due: Instant,
    rng: rand::rngs::SmallRng,
}

impl Schedule {
    pub fn new(link: LinkShape, origin: Instant, phase: Duration) -> Schedule {
        Schedule {
            latency: link.latency.unwrap_or_default(),
            jitter: link.jitter.unwrap_or_default(),
            bandwidth: link.bandwidth.filter(|b| *b > 0),
            stall: link.stall.filter(|s| !s.every.is_zero()),
            origin,
            phase,
            sent: origin,
            last_due: origin,
            rng: rand::rngs::SmallRng::from_rng(&mut rand::rng()),
        }
    }

    /// A line that only delays, by `latency` (the tests' delay line).
    #[cfg(test)]
    pub fn latency(latency: Duration) -> Schedule {
        let link = LinkShape {
            latency: Some(latency),
            ..LinkShape::default()
        };
        Schedule::new(link, Instant::now(), Duration::ZERO)
    }

    /// The most one read takes: 10 ms of a capped link's rate (at least 1 KiB), else
    /// [`CHUNK`].
    fn chunk(&self) -> usize {
        match self.bandwidth {
            Some(bw) => ((bw / 100) as usize).clamp(1 << 10, CHUNK),
            None => CHUNK,
        }
    }

    /// When a chunk of `len` bytes read at `read` is due on the far side.
    fn due(&mut self, read: Instant, len: usize) -> Instant {
        let mut at = read;
        if let Some(bw) = self.bandwidth {
            // Nothing goes through a stall, the cap's own queue included.
            let start = self.after_stall(self.sent.max(read));
            self.sent = start + Duration::from_secs_f64(len as f64 / bw as f64);
            at = self.sent;
        }
        at += self.latency;
        if !self.jitter.is_zero() {
            at += self.jitter.mul_f64(self.rng.random::<f64>());
        }
        at = self.after_stall(at.max(self.last_due));
        self.last_due = at;
        at
    }

    /// `at`, or the end of the stall window it falls in.
    fn after_stall(&self, at: Instant) -> Instant {
        let Some(stall) = self.stall else { return at };
        let first = self.origin + self.phase;
        if at < first {
            return at;
        }
        let into = at.duration_since(first);
        let k = (into.as_nanos() / stall.every.as_nanos()) as u32;
        let window = first + stall.every * k;
        if at < window + stall.stall_for {
            window + stall.stall_for
        } else {
            at
        }
    }
}

/// One direction's view of its connection: the gate, and (client to server only) the
/// search for the agent's name.
pub struct Direction {
    gate: Gate,
    identify: Option<Identify>,
    /// Broker to agent (what a one-way hole holds).
    to_agent: bool,
}

impl Direction {
    /// Client to server: reads the agent's name from its CONNECT.
    pub fn upstream(gate: Gate) -> Direction {
        Direction {
            gate,
            identify: Some(Identify::default()),
            to_agent: false,
        }
    }

    pub fn downstream(gate: Gate) -> Direction {
        Direction {
            gate,
            identify: None,
            to_agent: true,
        }
    }

    /// Notes bytes read, until the agent is known.
    fn read(&mut self, bytes: &[u8]) {
        if let Some(identify) = &mut self.identify
            && let Some(agent) = identify.feed(bytes)
        {
            if let Some(agent) = agent {
                self.gate.set_agent(agent);
            }
            self.identify = None;
        }
    }
}

/// The size of a plain direction's buffer, as `tokio::io::copy`'s.
const PIPE_BUFFER: usize = 8 << 10;

/// One direction of a plain link: copies `from` into `to` as it comes, holding while the
/// gate is closed: nothing is read then either, so the sender's socket buffers fill as
/// behind a real outage, and what it sent arrives once the gate opens.
async fn pipe<R, W>(mut from: R, mut to: W, mut direction: Direction) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; PIPE_BUFFER];
    loop {
        let to_agent = direction.to_agent;
        direction.gate.open(to_agent).await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            direction.gate.open(to_agent).await;
            return to.shutdown().await;
        }
        direction.read(&buf[..n]);
        // A read that completed as a blackhole began waits it out.
        direction.gate.open(to_agent).await;
        to.write_all(&buf[..n]).await?;
    }
}

/// One direction of a shaped link: copies `from` into `to`, each chunk when `schedule`
/// says it is due, and shuts `to` down once the chunks before the end have gone. A
/// closed gate holds the writer (the reader stops at [`MAX_IN_FLIGHT`]).
pub async fn delay_line<R, W>(
    mut from: R,
    mut to: W,
    mut schedule: Schedule,
    mut direction: Direction,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut gate = direction.gate.clone();
    let to_agent = direction.to_agent;
    // Bytes, not chunks, are what the budget counts: many small messages in flight
    // cost little, one big one is held back only past MAX_IN_FLIGHT.
    let budget = Semaphore::new(MAX_IN_FLIGHT);
    // Unbounded in chunks, bounded in bytes by the permits the chunks carry.
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Option<Bytes>, SemaphorePermit)>();
    let read = async {
        let mut buf = vec![0u8; schedule.chunk()];
        loop {
            let n = from.read(&mut buf).await?;
            let at = schedule.due(Instant::now(), n);
            // Copied out at its size: a queued chunk holds only its own bytes, which is
            // what the budget counts (a slice of a shared buffer would pin the buffer's
            // whole allocation for as long as the chunk waits, in a stall thousands of
            // them).
            let chunk = (n > 0).then(|| Bytes::copy_from_slice(&buf[..n]));
            if let Some(chunk) = &chunk {
                direction.read(chunk);
            }
            // `n` is at most CHUNK, well within u32; the semaphore is never closed.
            let permit = budget
                .acquire_many(n as u32)
                .await
                .expect("the budget is never closed");
            if queue.send((at, chunk, permit)).is_err() || n == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let write = async {
        while let Some((at, chunk, _permit)) = due.recv().await {
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            gate.open(to_agent).await;
            match chunk {
                Some(bytes) => to.write_all(&bytes).await?,
                None => {
                    to.shutdown().await?;
                    break;
                }
            }
        }
        Ok(())
    };
    tokio::try_join!(read, write).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Order and content survive the delay, and the end of the stream arrives after
    /// the last byte, no sooner than the latency.
    #[tokio::test]
    async fn a_delay_line_keeps_order_and_delays_each_chunk() {
        let (mut writer, from) = tokio::io::duplex(1 << 16);
        let (to, mut reader) = tokio::io::duplex(1 << 16);
        let latency = Duration::from_millis(30);
        let direction = Direction::downstream(Gate::always_open());
        let line = tokio::spawn(delay_line(from, to, Schedule::latency(latency), direction));
        let sent_at = Instant::now();
        for i in 0..100u8 {
            writer.write_all(&[i; 100]).await.expect("write");
        }
        drop(writer);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.expect("read");
        assert!(
            sent_at.elapsed() >= latency,
            "the stream ended after {:?}, within the latency",
            sent_at.elapsed()
        );
        let expected: Vec<u8> = (0..100u8).flat_map(|i| [i; 100]).collect();
        assert_eq!(got, expected);
        line.await.expect("joins").expect("ends cleanly");
    }

    fn shape(f: impl FnOnce(&mut LinkShape)) -> LinkShape {
        let mut link = LinkShape::default();
        f(&mut link);
        link
    }

    #[test]
    fn a_bandwidth_cap_sends_each_chunk_after_the_one_before_at_the_rate() {
        let origin = Instant::now();
        let link = shape(|l| l.bandwidth = Some(1000));
        let mut s = Schedule::new(link, origin, Duration::ZERO);
        assert_eq!(s.due(origin, 500), origin + Duration::from_millis(500));
        // Read at once, but queued behind the first.
        assert_eq!(s.due(origin, 500), origin + Duration::from_millis(1000));
        // An idle link sends at once again.
        let later = origin + Duration::from_secs(5);
        assert_eq!(s.due(later, 100), later + Duration::from_millis(100));
        assert_eq!(
            s.chunk(),
            1 << 10,
            "reads 10 ms of the rate, at least 1 KiB"
        );
    }

    #[test]
    fn jitter_adds_at_most_itself_and_never_reorders() {
        let origin = Instant::now();
        let (latency, jitter) = (Duration::from_millis(20), Duration::from_millis(50));
        let link = shape(|l| {
            l.latency = Some(latency);
            l.jitter = Some(jitter);
        });
        let mut s = Schedule::new(link, origin, Duration::ZERO);
        let mut last = origin;
        let mut spread = Duration::ZERO;
        for i in 0..200u64 {
            let read = origin + Duration::from_millis(i);
            let due = s.due(read, 10);
            assert!(due >= read + latency, "chunk {i} due before the latency");
            assert!(due >= last, "chunk {i} overtook the one before it");
            last = due;
            spread = spread.max(due - read - latency);
        }
        assert!(
            spread <= jitter,
            "a chunk waited {spread:?} past the latency"
        );
        assert!(spread > Duration::ZERO, "no jitter at all in 200 chunks");
    }

    #[test]
    fn a_chunk_due_inside_a_stall_waits_for_its_end() {
        let origin = Instant::now();
        let ms = Duration::from_millis;
        let link = shape(|l| {
            l.stall = Some(Stall {
                every: ms(10_000),
                stall_for: ms(2_000),
            })
        });
        let mut s = Schedule::new(link, origin, ms(1_000));
        assert_eq!(
            s.due(origin + ms(500), 1),
            origin + ms(500),
            "before the first window"
        );
        assert_eq!(
            s.due(origin + ms(1_500), 1),
            origin + ms(3_000),
            "inside the first"
        );
        assert_eq!(
            s.due(origin + ms(3_500), 1),
            origin + ms(3_500),
            "between windows"
        );
        assert_eq!(
            s.due(origin + ms(11_200), 1),
            origin + ms(13_000),
            "inside the second"
        );
    }
}
