//! A TCP fault proxy between the agents and the broker, for network-cut herds.
//!
//! Agents connect to the proxy; the proxy forwards bytes to the broker. A *cut* drops the
//! proxied connections it hits at one instant (as a network event that hits every PC at
//! once would), and the proxy can then *refuse* new connections for a while: its listener
//! is closed, so connects fail with "connection refused" until it is bound again on the
//! same port. A *blackhole* keeps the connections it hits open and forwards nothing
//! either way until it lifts: no reset reaches either side, which find out only through
//! their keepalives. A fault hits every connection or only some agents' ([`Hits`], the
//! agent read from each connection's CONNECT, see [`crate::proxy::fault`]). Because it
//! is plain TCP it works the same against an external broker (except that a blackholed
//! agent's new connection still completes its TCP handshake with the proxy: its NATS
//! handshake is what times out). What it does to the bytes it forwards (a latency) is
//! the link's [`LinkShape`], see [`crate::proxy::link`].
//!
//! Cost: each proxied agent holds two sockets in the proxy on top of its own one, so in the
//! same process a proxied agent costs three file descriptors. `fleetsim proxy` (see
//! [`crate::proxy::process`]) runs this same proxy in a process of its own, so the two
//! proxy sockets count against that process's open-files limit instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, MutexGuard, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::debug;

use super::fault::{Faults, Gate, Hole};
use crate::plan::{Held, Hits, LinkShape};

/// A running proxy. Dropping it stops accepting and drops every connection.
pub struct FaultProxy {
    listen: SocketAddr,
    upstream: String,
    link: LinkShape,
    shared: Arc<Shared>,
    /// The accept loop; `None` while refusing. Held by a cut from start to end, so cuts
    /// do not overlap.
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    /// The cut counter (a connection hit by a cut ends) and the blackhole in force.
    faults: watch::Sender<Faults>,
    /// The current generation's liveness channel: every connection holds a clone of
    /// its generation's sender, so a cut knows its connections are all closed when the
    /// receiver sees the last sender go (the "all done" half of mini-redis' shutdown).
    generation: std::sync::Mutex<Generation>,
    accepted: AtomicU64,
    dropped: AtomicU64,
    live: AtomicU64,
    accepting: AtomicBool,
}

struct Generation {
    number: u64,
    alive: mpsc::Sender<()>,
    all_gone: mpsc::Receiver<()>,
}

impl Generation {
    fn new(number: u64) -> Generation {
        let (alive, all_gone) = mpsc::channel(1);
        Generation {
            number,
            alive,
            all_gone,
        }
    }
}

/// A cut in progress: every connection of before it is closed and, if it refuses, the
/// listener too. [`Cut::end`] accepts again.
pub struct Cut<'a> {
    proxy: &'a FaultProxy,
    acceptor: MutexGuard<'a, Option<JoinHandle<()>>>,
    /// Connections this cut dropped.
    pub dropped: u64,
}

impl Cut<'_> {
    /// Accepts again on the same address, if the cut closed the listener.
    pub fn end(mut self) -> std::io::Result<()> {
        if self.acceptor.is_none() {
            let listener = bind(self.proxy.listen)?;
            *self.acceptor = Some(self.proxy.spawn_acceptor(listener));
            self.proxy.shared.accepting.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl FaultProxy {
    /// Listens on `listen` (port 0 for a free one) and forwards to `upstream`
    /// (`host:port`), every connection shaped as `link` says.
    pub async fn start(
        listen: SocketAddr,
        upstream: &str,
        link: LinkShape,
    ) -> std::io::Result<FaultProxy> {
        let (faults, _) = watch::channel(Faults::default());
        let shared = Arc::new(Shared {
            faults,
            generation: std::sync::Mutex::new(Generation::new(0)),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            live: AtomicU64::new(0),
            accepting: AtomicBool::new(true),
        });
        let listener = bind(listen)?;
        let listen = listener.local_addr()?;
        let proxy = FaultProxy {
            listen,
            upstream: upstream.to_string(),
            link,
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

    /// Where the proxy forwards to (`host:port`).
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// What the proxy does to the bytes it forwards.
    pub fn link(&self) -> LinkShape {
        self.link
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections dropped by cuts so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn live(&self) -> u64 {
        self.shared.live.load(Ordering::Relaxed)
    }

    /// Whether the listener is open (false during a cut's refusal).
    pub fn accepting(&self) -> bool {
        self.shared.accepting.load(Ordering::Relaxed)
    }

    /// Drops every proxied connection `hits` names now. With a non-zero `refuse_for`,
    /// new connections are refused for that long (the listener is closed), then accepted
    /// again. Returns how many connections the cut dropped.
    pub async fn cut(&self, refuse_for: Duration, hits: &Hits) -> std::io::Result<u64> {
        let cut = self.begin_cut(!refuse_for.is_zero(), hits).await;
        let dropped = cut.dropped;
        if !refuse_for.is_zero() {
            tokio::time::sleep(refuse_for).await;
        }
        cut.end()?;
        Ok(dropped)
    }

    /// The first half of a cut: closes the listener if `refuse`, drops every connection
    /// `hits` names and returns once all of them are closed (the agents see their
    /// connections reset). The cut lasts until [`Cut::end`]; another cut waits for it.
    pub async fn begin_cut(&self, refuse: bool, hits: &Hits) -> Cut<'_> {
        let mut acceptor = self.acceptor.lock().await;
        if refuse && let Some(task) = acceptor.take() {
            task.abort();
            let _ = task.await;
            self.shared.accepting.store(false, Ordering::Relaxed);
        }
        let dropped_before = self.dropped();
        let mut old = {
            let mut generation = self.shared.generation.lock().expect("not poisoned");
            let next = Generation::new(generation.number + 1);
            // Bumped under the same lock the acceptor reads the generation under: a
            // connection is either in the old generation (and sees this bump) or in the
            // new one. One the cut does not hit moves to the new generation.
            self.shared.faults.send_modify(|f| {
                f.cut = next.number;
                f.cut_hits = hits.clone();
            });
            std::mem::replace(&mut *generation, next)
        };
        drop(old.alive);
        // `None` once every connection of the old generation has ended or moved on.
        let _ = old.all_gone.recv().await;
        Cut {
            proxy: self,
            acceptor,
            dropped: self.dropped() - dropped_before,
        }
    }

    /// Holds every connection `hits` names (and any new one it names) from now until
    /// [`FaultProxy::resume`] of the same `hole`: nothing is forwarded either way,
    /// nothing is closed. A hole already open under that id is replaced.
    pub fn blackhole(&self, hole: u64, hits: &Hits, held: Held) {
        self.shared.faults.send_modify(|f| {
            f.holes.retain(|h| h.id != hole);
            f.holes.push(Hole {
                id: hole,
                hits: hits.clone(),
                held,
            });
        });
    }

    /// Lifts blackhole `hole`: the connections no other hole holds forward again, what
    /// waited first.
    pub fn resume(&self, hole: u64) {
        self.shared
            .faults
            .send_modify(|f| f.holes.retain(|h| h.id != hole));
    }

    /// Blackholes in force.
    pub fn holes(&self) -> usize {
        self.shared.faults.borrow().holes.len()
    }

    fn spawn_acceptor(&self, listener: tokio::net::TcpListener) -> JoinHandle<()> {
        let shared = self.shared.clone();
        let upstream = self.upstream.clone();
        let link = self.link;
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                let (number, alive) = {
                    let generation = shared.generation.lock().expect("not poisoned");
                    (generation.number, generation.alive.clone())
                };
                let shared = shared.clone();
                let upstream = upstream.clone();
                tokio::spawn(forward(client, upstream, link, shared, number, alive));
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
        self.shared.faults.send_modify(|f| {
            f.cut += 1;
            f.cut_hits = Hits::All;
            f.holes.clear();
        });
    }
}

/// Forwards one agent connection until it ends or a cut that hits it; `alive` tells the
/// cut when this connection is closed (or has moved to the next generation, spared).
async fn forward(
    mut client: TcpStream,
    upstream: String,
    link: LinkShape,
    shared: Arc<Shared>,
    generation: u64,
    alive: mpsc::Sender<()>,
) {
    shared.live.fetch_add(1, Ordering::Relaxed);
    let gate = Gate::new(shared.faults.subscribe());
    let cut_now = hit_by_a_cut(gate.clone(), shared.clone(), generation, alive);
    tokio::pin!(cut_now);
    // A hit connection's `alive` sender, kept until it is closed: the cut counts the
    // drops once every sender is gone.
    let mut hit = None;
    let server = tokio::select! {
        server = TcpStream::connect(&upstream) => server.map_err(|e| {
            debug!(%upstream, error = %e, "proxy: upstream refused");
        }).ok(),
        alive = &mut cut_now => {
            hit = Some(alive);
            None
        }
    };
    if let Some(mut server) = server {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        tokio::select! {
            _ = super::link::forward(&mut client, &mut server, link, gate) => {}
            alive = &mut cut_now => hit = Some(alive),
        }
    }
    if hit.is_some() {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
    // Dropping both streams closes them: the agent sees its connection reset. Then
    // `hit` (and `cut_now`, holding a spared connection's sender) go.
    drop(client);
    shared.live.fetch_sub(1, Ordering::Relaxed);
    drop(hit);
}

/// Resolves when a cut hits this connection (or the proxy is gone), handing back its
/// generation's `alive` sender for the caller to drop once it has counted the drop. A
/// cut that spares it moves the sender to the cut's new generation, so the cut does not
/// wait for it.
async fn hit_by_a_cut(
    gate: Gate,
    shared: Arc<Shared>,
    generation: u64,
    mut alive: mpsc::Sender<()>,
) -> mpsc::Sender<()> {
    let mut faults = gate.faults();
    let mut seen = generation;
    loop {
        let hit = {
            let f = faults.borrow_and_update();
            (f.cut != seen).then(|| (f.cut, f.cut_hits.hits(gate.agent())))
        };
        match hit {
            Some((_, true)) => return alive,
            Some((cut, false)) => {
                // The cutter swapped the generation under this lock before it let go.
                seen = cut;
                alive = shared
                    .generation
                    .lock()
                    .expect("not poisoned")
                    .alive
                    .clone();
            }
            None => {
                if faults.changed().await.is_err() {
                    return alive;
                }
            }
        }
    }
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

    /// Within 5 s, or the test fails saying what it waited for.
    async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .unwrap_or_else(|_| panic!("{what}: not within 5 s"))
    }

    #[tokio::test]
    async fn a_cut_drops_connections_and_refuses_new_ones_until_it_ends() {
        let upstream = echo_server().await;
        let listen = "127.0.0.1:0".parse().expect("addr");
        let proxy = FaultProxy::start(listen, &upstream.to_string(), LinkShape::default())
            .await
            .expect("proxy");
        let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
        conn.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"ping");

        // The cut's two halves, with no clock between them: while it lasts, the
        // listener is closed.
        let cut = within("the cut's first half", proxy.begin_cut(true, &Hits::All)).await;
        assert_eq!(cut.dropped, 1, "the cut dropped one connection");
        assert!(!proxy.accepting());
        // The established connection has ended (an end of stream, or a reset).
        let mut rest = Vec::new();
        let _ = within("the dropped connection's end", conn.read_to_end(&mut rest)).await;
        let refused = TcpStream::connect(proxy.addr())
            .await
            .expect_err("a connect during the cut");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            proxy.accepted(),
            1,
            "the refused connect was never accepted"
        );
        cut.end().expect("listens again");
        assert!(proxy.accepting());
        assert_eq!(proxy.dropped(), 1);

        // After the outage the same address accepts again.
        let mut again = TcpStream::connect(proxy.addr())
            .await
            .expect("accepts after outage");
        again.write_all(b"pong").await.expect("write");
        again.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"pong");

        // A timed cut is the same two halves with the refusal slept between them: it
        // returns what it dropped once the listener is open again.
        let dropped = within(
            "a 50 ms cut",
            proxy.cut(Duration::from_millis(50), &Hits::All),
        )
        .await;
        assert_eq!(dropped.expect("cut"), 1);
        assert!(proxy.accepting());
        assert_eq!(proxy.dropped(), 2);
        TcpStream::connect(proxy.addr())
            .await
            .expect("accepts after the timed cut");
    }

    /// A cut that hits one agent drops only its connection (read from its CONNECT) and
    /// returns without waiting for the spared one, which keeps forwarding; a blackhole
    /// of that agent then holds its new connection while the other still echoes.
    #[tokio::test]
    async fn a_partial_cut_drops_only_the_agents_it_hits() {
        let upstream = echo_server().await;
        let listen = "127.0.0.1:0".parse().expect("addr");
        let proxy = FaultProxy::start(listen, &upstream.to_string(), LinkShape::default())
            .await
            .expect("proxy");
        let addr = proxy.addr();
        let connect = |agent: usize| async move {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            let line = format!("CONNECT {{\"name\":\"pc-{agent:05}\"}}\r\n");
            round_trip(&mut conn, line.as_bytes()).await;
            conn
        };
        let (mut hit, mut spared) = (connect(1).await, connect(2).await);
        let only_1 = Hits::Agents(crate::plan::AgentSet::from_indices([1]));
        let cut = within("a cut of agent 1", proxy.begin_cut(false, &only_1)).await;
        assert_eq!(cut.dropped, 1);
        cut.end().expect("still listening");
        let mut rest = Vec::new();
        let _ = within("the hit connection's end", hit.read_to_end(&mut rest)).await;
        round_trip(&mut spared, b"still here").await;
        assert_eq!(proxy.live(), 1);

        let mut again = connect(1).await;
        proxy.blackhole(3, &only_1, Held::Both);
        assert_eq!(proxy.holes(), 1);
        again.write_all(b"held").await.expect("write");
        round_trip(&mut spared, b"spared").await;
        proxy.resume(3);
        assert_eq!(proxy.holes(), 0);
        let mut buf = [0u8; 4];
        within("the held echo", again.read_exact(&mut buf))
            .await
            .expect("echo");
        assert_eq!(&buf, b"held");
    }

    /// A one-way hole (`stop_reading`) lets what the agent sends reach the broker and
    /// holds what the broker sends back until it lifts.
    #[tokio::test]
    async fn a_one_way_hole_lets_the_agent_talk_and_holds_the_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let upstream = listener.local_addr().expect("addr");
        let (heard_tx, heard) = tokio::sync::oneshot::channel::<Vec<u8>>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut line = vec![0u8; 29];
            s.read_exact(&mut line).await.expect("the CONNECT line");
            s.write_all(b"+OK\r\n").await.expect("answer the CONNECT");
            let mut asked = [0u8; 4];
            s.read_exact(&mut asked).await.expect("the agent's bytes");
            let _ = heard_tx.send(asked.to_vec());
            s.write_all(b"pong").await.expect("answer");
            // Held open until the test ends.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let listen = "127.0.0.1:0".parse().expect("addr");
        let proxy = FaultProxy::start(listen, &upstream.to_string(), LinkShape::default())
            .await
            .expect("proxy");
        let mut agent = TcpStream::connect(proxy.addr()).await.expect("connect");
        agent
            .write_all(b"CONNECT {\"name\":\"pc-00004\"}\r\n")
            .await
            .expect("connect line");
        let mut ok = [0u8; 5];
        within("the CONNECT's answer", agent.read_exact(&mut ok))
            .await
            .expect("+OK");
        proxy.blackhole(9, &Hits::All, Held::ToAgent);
        agent.write_all(b"ping").await.expect("write");
        let asked = within("the broker hearing the agent", heard)
            .await
            .expect("heard");
        assert_eq!(asked, b"ping");
        let mut answer = [0u8; 4];
        let early =
            tokio::time::timeout(Duration::from_millis(200), agent.read_exact(&mut answer)).await;
        assert!(early.is_err(), "the broker's answer came through the hole");
        proxy.resume(9);
        within("the held answer", agent.read_exact(&mut answer))
            .await
            .expect("answer");
        assert_eq!(&answer, b"pong");
    }

    /// One echo round trip of `message` on `conn`, and how long it took.
    async fn round_trip(conn: &mut TcpStream, message: &[u8]) -> Duration {
        let sent = tokio::time::Instant::now();
        conn.write_all(message).await.expect("write");
        let mut buf = vec![0u8; message.len()];
        within("the echo", conn.read_exact(&mut buf))
            .await
            .expect("echo");
        assert_eq!(buf, message);
        sent.elapsed()
    }

    /// With a link latency each direction waits it out: a round trip through the proxy
    /// takes at least twice the latency (a lower bound only: the machine adds its own).
    /// A cut still drops the delayed connections and refuses new ones until it ends.
    #[tokio::test]
    async fn a_link_latency_delays_both_directions_and_cuts_still_work() {
        let latency = Duration::from_millis(30);
        let upstream = echo_server().await;
        let link = LinkShape {
            latency: Some(latency),
            ..LinkShape::default()
        };
        let listen = "127.0.0.1:0".parse().expect("addr");
        let proxy = FaultProxy::start(listen, &upstream.to_string(), link)
            .await
            .expect("proxy");
        assert_eq!(proxy.link(), link);
        let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
        for message in [&b"ping"[..], &[7u8; 100_000][..]] {
            let took = round_trip(&mut conn, message).await;
            assert!(
                took >= 2 * latency,
                "a round trip of {} bytes took {took:?}, less than twice the latency",
                message.len()
            );
        }

        let cut = within("the cut's first half", proxy.begin_cut(true, &Hits::All)).await;
        assert_eq!(cut.dropped, 1, "the cut dropped the delayed connection");
        let mut rest = Vec::new();
        let _ = within("the dropped connection's end", conn.read_to_end(&mut rest)).await;
        let refused = TcpStream::connect(proxy.addr())
            .await
            .expect_err("a connect during the cut");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        cut.end().expect("listens again");

        let mut again = TcpStream::connect(proxy.addr())
            .await
            .expect("accepts after the cut");
        let took = round_trip(&mut again, b"pong").await;
        assert!(took >= 2 * latency, "after the cut: {took:?}");
    }
}
