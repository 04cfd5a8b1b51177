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

use crate::plan::LinkShape;

/// The most bytes one direction of one connection holds read but not yet written: the
/// proxy stops reading that direction until some are written. 4 MiB is 160 MB/s at a
/// latency of 25 ms, far beyond what one agent's connection carries.
pub const MAX_IN_FLIGHT: usize = 4 << 20;
/// The most one read takes at once.
const CHUNK: usize = 64 << 10;

/// Forwards between `client` and `server` until both directions have ended (or either
/// fails), shaped as `link` says.
pub(super) async fn forward(
    client: &mut TcpStream,
    server: &mut TcpStream,
    link: LinkShape,
) -> std::io::Result<()> {
    match link.latency {
        None => tokio::io::copy_bidirectional(client, server)
            .await
            .map(drop),
        Some(latency) => {
            let (client_read, client_write) = client.split();
            let (server_read, server_write) = server.split();
            tokio::try_join!(
                delay_line(client_read, server_write, latency),
                delay_line(server_read, client_write, latency),
            )
            .map(drop)
        }
    }
}

/// One direction of a delayed link: copies `from` into `to`, each chunk `latency` after
/// it was read, and shuts `to` down a latency after `from` ended.
pub async fn delay_line<R, W>(mut from: R, mut to: W, latency: Duration) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
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
        let line = tokio::spawn(delay_line(from, to, latency));
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
