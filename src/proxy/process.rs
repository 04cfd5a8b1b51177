//! The fault proxy as a process of its own: `fleetsim proxy`, and the child a run starts.
//!
//! In fleetsim's own process a proxied agent costs three open files (its socket and the
//! proxy's two), so one process limit of 20,000 holds about 6,600 proxied agents. Run
//! as its own process, the same [`FaultProxy`] keeps its two sockets per agent against
//! its own limit, and fleetsim keeps one.
//!
//! The process is driven over a line-based TCP control connection on loopback (one
//! command per line, one reply line each, `ok ...` or `err ...`):
//!
//! ```text
//! cut <refuse_ms>  ->  ok dropped=<n>      every connection is closed, the listener too
//!                                          when refuse_ms > 0 (connects are refused)
//!                  ->  ok accepting        refuse_ms later: the listener is open again
//!                                          (or: err cannot listen again on ...)
//! stats            ->  ok accepted=<n> dropped=<n> live=<n> accepting=<true|false>
//! quit             ->  ok bye              then the process exits 0
//! ```
//!
//! When it accepts, the process prints one line on stdout, [`Ready::line`], with the
//! addresses it bound (port 0 picks a free port), so a parent can read them.
//!
//! The child side ([`ProxyChild`]) starts the current executable as `fleetsim proxy` on
//! free loopback ports, with the run's [`LinkShape`] as flags ([`link_args`]), reads that
//! line, and drives cuts through the control connection.
//! The child runs in its own process group (a Ctrl-C in the terminal reaches fleetsim,
//! which then stops the child itself) and exits when its stdin closes, so it does not
//! outlive a fleetsim that was killed.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, info, warn};

use crate::plan::{Held, Hits, LinkShape};
use crate::proxy::in_process::FaultProxy;

/// What `fleetsim proxy` is asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where agents connect (port 0: a free one).
    pub listen: SocketAddr,
    /// The broker, `host:port`.
    pub upstream: String,
    /// Where the control connection connects (loopback; port 0: a free one).
    pub control: SocketAddr,
    /// Exit when stdin closes: the parent that holds it is gone.
    pub exit_on_stdin_close: bool,
    /// What the proxy does to the bytes it forwards (`--link-latency`).
    pub link: LinkShape,
}

/// The command-line flags that give `fleetsim proxy` the shape `link` (none for a plain
/// link): `--link-latency`, in seconds with every nanosecond, as the scenario's
/// durations are written (`0.025000000s`).
pub fn link_args(link: &LinkShape) -> Vec<String> {
    let secs = |d: Duration| format!("{}.{:09}s", d.as_secs(), d.subsec_nanos());
    let mut args = Vec::new();
    let mut flag = |name: &str, value: String| {
        args.push(name.to_string());
        args.push(value);
    };
    if let Some(latency) = link.latency {
        flag("--link-latency", secs(latency));
    }
    if let Some(jitter) = link.jitter {
        flag("--link-jitter", secs(jitter));
    }
    if let Some(bandwidth) = link.bandwidth {
        flag("--link-bandwidth", format!("{bandwidth}B/s"));
    }
    if let Some(stall) = link.stall {
        flag("--link-stall-every", secs(stall.every));
        flag("--link-stall-for", secs(stall.stall_for));
    }
    args
}

/// Why `fleetsim proxy` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen for agents on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for control commands on {addr}: {source}")]
    Control {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The line `fleetsim proxy` prints on stdout once it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub listen: SocketAddr,
    pub control: SocketAddr,
    pub upstream: String,
    /// Its open-files soft limit after raising it to the hard limit.
    pub nofile: u64,
}

const READY_PREFIX: &str = "fleetsim-proxy ready";

impl Ready {
    /// `fleetsim-proxy ready listen=127.0.0.1:41001 control=127.0.0.1:41002 upstream=127.0.0.1:4222 nofile=20000`
    pub fn line(&self) -> String {
        format!(
            "{READY_PREFIX} listen={} control={} upstream={} nofile={}",
            self.listen, self.control, self.upstream, self.nofile
        )
    }

    pub fn parse(line: &str) -> Result<Ready, String> {
        let bad = || format!("not a fleetsim proxy ready line: {line:?}");
        let rest = line.trim().strip_prefix(READY_PREFIX).ok_or_else(bad)?;
        let field = |name: &str| -> Result<&str, String> {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(bad)
        };
        Ok(Ready {
            listen: field("listen")?.parse().map_err(|_| bad())?,
            control: field("control")?.parse().map_err(|_| bad())?,
            upstream: field("upstream")?.to_string(),
            nofile: field("nofile")?.parse().map_err(|_| bad())?,
        })
    }
}

/// A control command, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum ControlCommand {
    Cut { refuse_for: Duration, hits: Hits },
    Blackhole { hole: u64, hits: Hits, held: Held },
    Resume { hole: u64 },
    Stats,
    Quit,
}

const COMMANDS: &str = "cut <refuse_ms> [<agents>|all], blackhole <id> [<agents>|all], \
     stop_reading <id> [<agents>|all], resume <id>, stats, quit";

/// One line of the control protocol; `Ok(None)` for a blank line.
pub fn parse_command(line: &str) -> Result<Option<ControlCommand>, String> {
    let mut words = line.split_whitespace();
    let Some(word) = words.next() else {
        return Ok(None);
    };
    let hole_id = |text: &str| -> Result<u64, String> {
        text.parse()
            .map_err(|_| format!("a blackhole's id is a whole number, got {text:?}"))
    };
    let hits = |text: Option<&str>| -> Result<Hits, String> {
        match text {
            None => Ok(Hits::All),
            Some(text) => text
                .parse()
                .map_err(|e| format!("which agents: {e}; use all or ranges like 0-299,512")),
        }
    };
    let command = match (word, words.next(), words.next(), words.next()) {
        ("cut", Some(ms), agents, None) => match ms.parse::<u64>() {
            Ok(ms) => ControlCommand::Cut {
                refuse_for: Duration::from_millis(ms),
                hits: hits(agents)?,
            },
            Err(_) => {
                return Err(format!(
                    "cut takes the refusal in whole milliseconds (cut 2000), got {ms:?}"
                ));
            }
        },
        ("cut", None, _, _) => {
            return Err("cut takes the refusal in milliseconds: cut <refuse_ms> (0: none)".into());
        }
        ("blackhole", Some(hole), agents, None) => ControlCommand::Blackhole {
            hole: hole_id(hole)?,
            hits: hits(agents)?,
            held: Held::Both,
        },
        ("stop_reading", Some(hole), agents, None) => ControlCommand::Blackhole {
            hole: hole_id(hole)?,
            hits: hits(agents)?,
            held: Held::ToAgent,
        },
        ("resume", Some(hole), None, _) => ControlCommand::Resume {
            hole: hole_id(hole)?,
        },
        ("stats", None, _, _) => ControlCommand::Stats,
        ("quit", None, _, _) => ControlCommand::Quit,
        _ => return Err(format!("unknown command {:?}; use {COMMANDS}", line.trim())),
    };
    Ok(Some(command))
}

/// Runs the proxy until a `quit`, `shutdown`, or (with `exit_on_stdin_close`) the end of
/// stdin. `ready` is called once both listeners are bound.
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(&Ready),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let nofile = match crate::host::raise_nofile_limit() {
        Ok((soft, hard)) => {
            if soft < hard {
                warn!(
                    soft,
                    hard, "could not raise the open-files soft limit to the hard limit"
                );
            }
            soft
        }
        Err(e) => {
            warn!(error = %e, "reading the open-files limit failed");
            0
        }
    };
    let proxy = FaultProxy::start(options.listen, &options.upstream, options.link)
        .await
        .map_err(|source| ServeError::Listen {
            addr: options.listen,
            source,
        })?;
    let proxy = Arc::new(proxy);
    let control =
        TcpListener::bind(options.control)
            .await
            .map_err(|source| ServeError::Control {
                addr: options.control,
                source,
            })?;
    let control_addr = control.local_addr().map_err(|source| ServeError::Control {
        addr: options.control,
        source,
    })?;
    let (quit_tx, mut quit_rx) = mpsc::channel::<&'static str>(1);
    if options.exit_on_stdin_close {
        let quit = quit_tx.clone();
        // A plain thread: a tokio blocking read of stdin would hold the runtime open.
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
            let _ = quit.blocking_send("stdin closed");
        });
    }
    let announced = Ready {
        listen: proxy.addr(),
        control: control_addr,
        upstream: options.upstream.clone(),
        nofile,
    };
    info!(listen = %announced.listen, control = %announced.control, upstream = %announced.upstream, nofile, link = ?options.link, "fault proxy ready");
    ready(&announced);
    tokio::pin!(shutdown);
    let why = loop {
        tokio::select! {
            accepted = control.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(control_connection(stream, proxy.clone(), quit_tx.clone()));
                }
                Err(e) => warn!(error = %e, "control accept failed"),
            },
            why = quit_rx.recv() => break why.unwrap_or("quit"),
            () = &mut shutdown => break "shutdown",
        }
    };
    info!(
        why,
        accepted = proxy.accepted(),
        dropped = proxy.dropped(),
        live = proxy.live(),
        "fault proxy stops"
    );
    Ok(())
}

/// Serves one control connection, a command at a time.
async fn control_connection(
    stream: tokio::net::TcpStream,
    proxy: Arc<FaultProxy>,
    quit: mpsc::Sender<&'static str>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let command = match parse_command(&line) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(message) => {
                if reply(&mut writer, &format!("err {message}")).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let sent = match command {
            ControlCommand::Cut { refuse_for, hits } => {
                let cut = proxy.begin_cut(!refuse_for.is_zero(), &hits).await;
                info!(
                    dropped = cut.dropped,
                    refuse_ms = refuse_for.as_millis() as u64,
                    "cut"
                );
                let sent = reply(&mut writer, &format!("ok dropped={}", cut.dropped)).await;
                tokio::time::sleep(refuse_for).await;
                let answer = match cut.end() {
                    Ok(()) => "ok accepting".to_string(),
                    Err(e) => format!("err cannot listen again on {}: {e}", proxy.addr()),
                };
                match sent {
                    Ok(()) => reply(&mut writer, &answer).await,
                    Err(e) => Err(e),
                }
            }
            ControlCommand::Blackhole { hole, hits, held } => {
                proxy.blackhole(hole, &hits, held);
                debug!(hole, %hits, ?held, "blackhole");
                reply(&mut writer, "ok blackhole").await
            }
            ControlCommand::Resume { hole } => {
                proxy.resume(hole);
                debug!(hole, "blackhole lifted");
                reply(&mut writer, "ok resumed").await
            }
            ControlCommand::Stats => {
                let stats = format!(
                    "ok accepted={} dropped={} live={} accepting={}",
                    proxy.accepted(),
                    proxy.dropped(),
                    proxy.live(),
                    proxy.accepting()
                );
                reply(&mut writer, &stats).await
            }
            ControlCommand::Quit => {
                let _ = reply(&mut writer, "ok bye").await;
                let _ = quit.send("quit").await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

async fn reply(writer: &mut OwnedWriteHalf, line: &str) -> std::io::Result<()> {
    writer.write_all(format!("{line}\n").as_bytes()).await?;
    writer.flush().await
}

/// How long the child may take to print its ready line.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// What can go wrong starting or driving the proxy child.
#[derive(Debug, thiserror::Error)]
pub enum ProxyChildError {
    #[error("cannot start {program} proxy: {source}")]
    Start {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "fleetsim proxy (pid {pid}) exited ({status}) before it was ready; its error is in the log above"
    )]
    ExitedEarly { pid: u32, status: String },
    #[error("fleetsim proxy (pid {pid}) did not say it was ready within {within:?}")]
    NotReady { pid: u32, within: Duration },
    /// Its ready line did not parse (the reason).
    #[error("{0}")]
    ReadyLine(String),
    #[error("cannot connect to the fault proxy's control port {addr}: {source}")]
    ControlConnect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("fault proxy control connection: {0}")]
    Control(std::io::Error),
    #[error("fault proxy closed its control connection")]
    ControlClosed,
    #[error("fault proxy did not answer within {0:?}")]
    NoAnswer(Duration),
    #[error("fault proxy answered {command:?} with {reply:?}")]
    Unexpected { command: String, reply: String },
    #[error("fault proxy after the cut: {0}")]
    NotAccepting(String),
}
/// How long a control reply may take (a cut's second reply: plus the refusal).
const REPLY_WITHIN: Duration = Duration::from_secs(30);
/// How long the child may take to exit after `quit` before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// `fleetsim proxy` as a child of this process. Dropping it kills the child; [`stop`]
/// also waits for it.
///
/// [`stop`]: ProxyChild::stop
pub struct ProxyChild {
    child: Child,
    pid: u32,
    ready: Ready,
    control: Mutex<Control>,
    /// Held open: the child exits when it closes.
    _lifeline: Option<ChildStdin>,
    _stdout: Lines<BufReader<ChildStdout>>,
}

struct Control {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl ProxyChild {
    /// Starts `program proxy` on free loopback ports in front of `upstream` (`host:port`),
    /// shaping the link as `link` says, and connects to its control port.
    pub async fn spawn(
        program: &Path,
        upstream: &str,
        link: LinkShape,
    ) -> Result<ProxyChild, ProxyChildError> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .args(["--control", "127.0.0.1:0", "--exit-on-stdin-close"])
            .args(link_args(&link))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            // Its own process group: the terminal's Ctrl-C goes to fleetsim, which
            // stops the child after the fleet.
            .process_group(0);
        let mut child = command.spawn().map_err(|source| ProxyChildError::Start {
            program: program.display().to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let lifeline = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let line = match tokio::time::timeout(READY_WITHIN, stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None) | Err(_)) => {
                let status = child
                    .wait()
                    .await
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                return Err(ProxyChildError::ExitedEarly { pid, status });
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(ProxyChildError::NotReady {
                    pid,
                    within: READY_WITHIN,
                });
            }
        };
        let ready = match Ready::parse(&line) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = child.kill().await;
                return Err(ProxyChildError::ReadyLine(e));
            }
        };
        let stream = match tokio::net::TcpStream::connect(ready.control).await {
            Ok(stream) => stream,
            Err(e) => {
                let _ = child.kill().await;
                return Err(ProxyChildError::ControlConnect {
                    addr: ready.control,
                    source: e,
                });
            }
        };
        let (reader, writer) = stream.into_split();
        info!(pid, listen = %ready.listen, control = %ready.control, "fault proxy process started");
        Ok(ProxyChild {
            child,
            pid,
            ready,
            control: Mutex::new(Control {
                lines: BufReader::new(reader).lines(),
                writer,
            }),
            _lifeline: lifeline,
            _stdout: stdout,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the child announced.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The URL agents connect to.
    pub fn url(&self) -> String {
        format!("nats://{}", self.ready.listen)
    }

    /// Cuts every connection `hits` names and refuses new ones for `refuse_for`; returns
    /// once the proxy accepts again, with how many connections it dropped. `closed` is
    /// called once the child said every connection is closed, before the refusal.
    pub async fn cut(
        &self,
        refuse_for: Duration,
        hits: &Hits,
        closed: impl FnOnce(),
    ) -> Result<u64, ProxyChildError> {
        let mut control = self.control.lock().await;
        let command = format!("cut {} {hits}", refuse_for.as_millis());
        control.send(&command).await?;
        let first = control.receive(REPLY_WITHIN).await?;
        let dropped = first
            .strip_prefix("ok dropped=")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| ProxyChildError::Unexpected {
                command: command.clone(),
                reply: first.clone(),
            })?;
        info!(dropped, "fault proxy process cut every connection");
        closed();
        let second = control.receive(REPLY_WITHIN + refuse_for).await?;
        if second != "ok accepting" {
            return Err(ProxyChildError::NotAccepting(second));
        }
        Ok(dropped)
    }

    /// Holds every connection `hits` names until [`ProxyChild::resume`] of `hole`.
    pub async fn blackhole(
        &self,
        hole: u64,
        hits: &Hits,
        held: Held,
    ) -> Result<(), ProxyChildError> {
        let command = match held {
            Held::Both => "blackhole",
            Held::ToAgent => "stop_reading",
        };
        self.simple(&format!("{command} {hole} {hits}"), "ok blackhole")
            .await
    }

    /// Lifts blackhole `hole`.
    pub async fn resume(&self, hole: u64) -> Result<(), ProxyChildError> {
        self.simple(&format!("resume {hole}"), "ok resumed").await
    }

    /// Sends `command` and expects `expected` back.
    async fn simple(&self, command: &str, expected: &str) -> Result<(), ProxyChildError> {
        let mut control = self.control.lock().await;
        control.send(command).await?;
        let reply = control.receive(REPLY_WITHIN).await?;
        if reply != expected {
            return Err(ProxyChildError::Unexpected {
                command: command.to_string(),
                reply,
            });
        }
        Ok(())
    }

    /// The `stats` line (`accepted=... dropped=... live=... accepting=...`).
    pub async fn stats(&self) -> Result<String, ProxyChildError> {
        let mut control = self.control.lock().await;
        control.send("stats").await?;
        let line = control.receive(REPLY_WITHIN).await?;
        line.strip_prefix("ok ")
            .map(str::to_string)
            .ok_or_else(|| ProxyChildError::Unexpected {
                command: "stats".to_string(),
                reply: line.clone(),
            })
    }

    /// Asks the child to quit and waits for it; kills it if it does not exit in time.
    pub async fn stop(mut self) -> std::io::Result<ExitStatus> {
        let asked = {
            let mut control = self.control.lock().await;
            let asked = async {
                control.send("quit").await?;
                // A reply of an interrupted cut may come first.
                while control.receive(REPLY_WITHIN).await? != "ok bye" {}
                Ok::<(), ProxyChildError>(())
            };
            tokio::time::timeout(EXIT_WITHIN, asked).await
        };
        if matches!(asked, Ok(Ok(())))
            && let Ok(status) = tokio::time::timeout(EXIT_WITHIN, self.child.wait()).await
        {
            return status;
        }
        warn!(
            pid = self.pid,
            "fault proxy process did not quit: killing it"
        );
        self.child.kill().await?;
        self.child.wait().await
    }
}

impl Control {
    async fn send(&mut self, line: &str) -> Result<(), ProxyChildError> {
        reply(&mut self.writer, line)
            .await
            .map_err(ProxyChildError::Control)
    }

    async fn receive(&mut self, within: Duration) -> Result<String, ProxyChildError> {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err(ProxyChildError::ControlClosed),
            Ok(Err(e)) => Err(ProxyChildError::Control(e)),
            Err(_) => Err(ProxyChildError::NoAnswer(within)),
        }
    }
}

/// The `host:port` a broker URL points at, for the proxy's upstream:
/// `nats://user:pw@broker:4222` -> `broker:4222`; no port -> 4222; of several
/// comma-separated URLs, the first.
pub fn upstream_of(url: &str) -> String {
    let host_port = crate::broker::url::host_port(url);
    let has_port = match host_port.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((host, port)) => !port.is_empty() && !host.ends_with(':') && !port.ends_with(']'),
        None => false,
    };
    if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:4222")
    }
}

#[cfg(test)]
mod tests;
