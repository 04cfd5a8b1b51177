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

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio::time::Instant;

use super::fault::{Gate, Identify};
use crate::plan::LinkShape;

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
    match link.latency {
        None => tokio::try_join!(
            pipe(client_read, server_write, upstream),
            pipe(server_read, client_write, downstream),
        )
        .map(drop),
        Some(latency) => tokio::try_join!(
            delay_line(client_read, server_write, latency, upstream),
            delay_line(server_read, client_write, latency, downstream),
        )
        .map(drop),
    }
}

/// One direction's view of its connection: the gate, and (client to server only) the
/// search for the agent's name.
pub struct Direction {
    gate: Gate,
    identify: Option<Identify>,
}

impl Direction {
    /// Client to server: reads the agent's name from its CONNECT.
    pub fn upstream(gate: Gate) -> Direction {
        Direction {
            gate,
            identify: Some(Identify::default()),
        }
    }

    pub fn downstream(gate: Gate) -> Direction {
        Direction {
            gate,
            identify: None,
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
        direction.gate.open().await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            direction.gate.open().await;
            return to.shutdown().await;
        }
        direction.read(&buf[..n]);
        // A read that completed as a blackhole began waits it out.
        direction.gate.open().await;
        to.write_all(&buf[..n]).await?;
    }
}

/// One direction of a delayed link: copies `from` into `to`, each chunk `latency` after
/// it was read, and shuts `to` down a latency after `from` ended. A closed gate holds
/// the writer (the reader stops at [`MAX_IN_FLIGHT`]).
pub async fn delay_line<R, W>(
    mut from: R,
    mut to: W,
    latency: Duration,
    mut direction: Direction,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut gate = direction.gate.clone();
    // Bytes, not chunks, are what the budget counts: many small messages in flight
    // cost little, one big one is held back only past MAX_IN_FLIGHT.
    let budget = Semaphore::new(MAX_IN_FLIGHT);
    // Unbounded in chunks, bounded in bytes by the permits the chunks carry.
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Option<Bytes>, SemaphorePermit)>();
    let read = async {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(CHUNK);
            let n = from.read_buf(&mut buf).await?;
            let at = Instant::now() + latency;
            let chunk = (n > 0).then(|| buf.split().freeze());
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
            gate.open().await;
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
        let line = tokio::spawn(delay_line(from, to, latency, direction));
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
}
