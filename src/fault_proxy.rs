//! A TCP fault proxy between the agents and the broker, for network-cut herds.
//!
//! Agents connect to the proxy; the proxy forwards bytes to the broker. A *cut* drops every
//! proxied connection at one instant (as a network event that hits every PC at once
//! would), and the proxy can then *refuse* new connections for a while: its listener is
//! closed, so connects fail with "connection refused" until it is bound again on the same
//! port. Because it is plain TCP it works the same against an external broker.
//!
//! Cost: each proxied agent holds two sockets in the proxy on top of its own one, so in the
//! same process a proxied agent costs three file descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tracing::debug;

/// A running proxy. Dropping it stops accepting and drops every connection.
pub struct FaultProxy {
    listen: SocketAddr,
    upstream: String,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    /// Bumped by every cut; each connection task ends when it changes.
    cut: watch::Sender<u64>,
    accepted: AtomicU64,
    dropped: AtomicU64,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 for a free one) and forwards to `upstream` (`host:port`).
    pub async fn start(listen: SocketAddr, upstream: &str) -> std::io::Result<FaultProxy> {
        let (cut, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            cut,
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let listener = bind(listen)?;
        let listen = listener.local_addr()?;
        let proxy = FaultProxy {
            listen,
            upstream: upstream.to_string(),
            shared,
            acceptor: Mutex::new(None),
        };
        *proxy.acceptor.lock().await = Some(proxy.spawn_acceptor(listener));
        Ok(proxy)
    }

    /// The address agents connect to.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.listen)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections dropped by cuts so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Drops every proxied connection now. With a non-zero `refuse_for`, new connections
    /// are refused for that long (the listener is closed), then accepted again.
    pub async fn cut(&self, refuse_for: Duration) -> std::io::Result<()> {
        let mut acceptor = self.acceptor.lock().await;
        if !refuse_for.is_zero()
            && let Some(task) = acceptor.take()
        {
            task.abort();
            let _ = task.await;
        }
        self.shared.cut.send_modify(|generation| *generation += 1);
        if !refuse_for.is_zero() {
            tokio::time::sleep(refuse_for).await;
            *acceptor = Some(self.spawn_acceptor(bind(self.listen)?));
        }
        Ok(())
    }

    fn spawn_acceptor(&self, listener: tokio::net::TcpListener) -> JoinHandle<()> {
        let shared = self.shared.clone();
        let upstream = self.upstream.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                let upstream = upstream.clone();
                tokio::spawn(forward(client, upstream, shared));
            }
        })
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Ok(mut acceptor) = self.acceptor.try_lock()
            && let Some(task) = acceptor.take()
        {
            task.abort();
        }
        self.shared.cut.send_modify(|generation| *generation += 1);
    }
}

async fn forward(mut client: TcpStream, upstream: String, shared: Arc<Shared>) {
    let mut cut = shared.cut.subscribe();
    cut.mark_unchanged();
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        debug!(%upstream, "proxy: upstream refused");
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Dropping both streams closes them: the agent sees its connection reset.
}

/// Binds with SO_REUSEADDR so the same port can be bound again right after a refusal.
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_cut_drops_connections_and_refuses_new_ones_for_a_while() {
        let upstream = echo_server().await;
        let proxy = FaultProxy::start("127.0.0.1:0".parse().expect("addr"), &upstream.to_string())
            .await
            .expect("proxy");
        let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
        conn.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"ping");

        let cutting = {
            let proxy = &proxy;
            async move { proxy.cut(Duration::from_millis(300)).await }
        };
        let check = async {
            // The established connection ends.
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest).await;
            // While refusing, connects fail.
            assert!(
                TcpStream::connect(proxy.addr()).await.is_err(),
                "refused during the outage"
            );
        };
        let (cut, ()) = tokio::join!(cutting, check);
        cut.expect("cut");
        assert_eq!(proxy.dropped(), 1);
        // After the outage the same address accepts again.
        let mut again = TcpStream::connect(proxy.addr())
            .await
            .expect("accepts after outage");
        again.write_all(b"pong").await.expect("write");
        again.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"pong");
    }
}
