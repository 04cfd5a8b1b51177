//! The fault proxy as its own process: `fleetsim proxy` run by hand (ready line, control
//! protocol, exit codes), and the child `fleetsim run` starts with `proxy = "process"`,
//! which must be gone however the run ends.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{LinesWithin, Proc, TestThreads, text, wait_within};
use fleetsim::proxy::process::Ready;
use fleetsim::results::RunStatus;
use fleetsim::run::RunOptions;

/// How long a reply, a ready line or an exit may take before the test fails.
const WITHIN: Duration = Duration::from_secs(10);

fn fleetsim(args: &[&str]) -> Output {
    common::fleetsim(args, &common::project_root())
}

/// The ready line a `fleetsim proxy` child prints on stdout.
fn ready_line(child: &mut Child) -> Ready {
    let stdout = LinesWithin::new(child.stdout.take().expect("stdout is piped"));
    let line = stdout
        .next_before(Instant::now() + WITHIN, "fleetsim proxy's ready line")
        .expect("fleetsim proxy printed its ready line before it exited");
    Ready::parse(&line).unwrap_or_else(|e| panic!("{e}"))
}

/// `fleetsim proxy` on free ports in front of `upstream`, and its ready line.
fn start_proxy(upstream: &str) -> (Child, Ready) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .args(["--control", "127.0.0.1:0"])
        .env("FLEETSIM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("fleetsim proxy starts");
    let ready = ready_line(&mut child);
    (child, ready)
}

/// Reads `stream` to its end: the peer closed it (an end of stream or a reset); fails
/// if it is still open after [`WITHIN`].
fn assert_closed(mut stream: TcpStream, what: &str) {
    stream.set_read_timeout(Some(WITHIN)).expect("read timeout");
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ) => {}
        Err(e) => panic!("{what} still open after {WITHIN:?}: {e}"),
    }
}

/// The next connection `listener` accepts; fails naming `what` after [`WITHIN`].
fn accept_within(listener: &TcpListener, what: &str) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + WITHIN;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "{what}: not within {WITHIN:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// A line-at-a-time client of the control port.
struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Control {
    fn connect(ready: &Ready) -> Control {
        let stream = TcpStream::connect(ready.control).expect("control port");
        stream.set_read_timeout(Some(WITHIN)).expect("read timeout");
        Control {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.writer, "{command}").expect("send");
    }

    fn receive(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("no control reply within {WITHIN:?}: {e}"));
        line.trim_end().to_string()
    }
}

#[test]
fn proxy_by_hand_announces_its_ports_cuts_on_command_and_quits() {
    let broker = TcpListener::bind("127.0.0.1:0").expect("stand-in broker");
    let upstream = broker.local_addr().expect("addr").to_string();
    let (mut child, ready) = start_proxy(&upstream);
    assert_eq!(ready.upstream, upstream);
    assert!(ready.listen.ip().is_loopback() && ready.listen.port() != 0);
    assert!(ready.nofile > 0);

    let mut control = Control::connect(&ready);
    control.send("stats");
    assert_eq!(
        control.receive(),
        "ok accepted=0 dropped=0 live=0 accepting=true"
    );
    // An agent connects; once the stand-in broker accepts, the proxy is forwarding it.
    let agent = TcpStream::connect(ready.listen).expect("agent connects");
    let _upstream_side = accept_within(&broker, "the proxy reaching the stand-in broker");
    control.send("cut 0");
    assert_eq!(control.receive(), "ok dropped=1");
    // The agent's connection is closed by the time the cut is reported.
    assert_closed(agent, "the agent's connection after the cut");
    assert_eq!(control.receive(), "ok accepting");
    control.send("cut soon");
    assert!(
        control
            .receive()
            .starts_with("err cut takes the refusal in whole milliseconds")
    );
    control.send("stats");
    assert_eq!(
        control.receive(),
        "ok accepted=1 dropped=1 live=0 accepting=true"
    );
    // Holes, both ways and one way, are made and lifted by id.
    control.send("blackhole 1 0-2");
    assert_eq!(control.receive(), "ok blackhole");
    control.send("stop_reading 2 all");
    assert_eq!(control.receive(), "ok blackhole");
    control.send("resume 2");
    assert_eq!(control.receive(), "ok resumed");
    control.send("resume 1");
    assert_eq!(control.receive(), "ok resumed");
    control.send("quit");
    assert_eq!(control.receive(), "ok bye");
    assert!(wait_within(&mut child, WITHIN, "fleetsim proxy after quit").success());
}

#[test]
fn bad_proxy_arguments_exit_2_saying_what_is_wrong() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--listen", "nowhere", "--upstream", "127.0.0.1:4222"],
            "--listen",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "nats://127.0.0.1:4222",
            ],
            "is a URL; give the broker as HOST:PORT",
        ),
        (
            &["--listen", "127.0.0.1:0", "--upstream", "broker"],
            "is not HOST:PORT",
        ),
        (
            &["--listen", "127.0.0.1:0", "--upstream", "broker:0"],
            "port from 1 to 65535",
        ),
        (&["--listen", "127.0.0.1:0"], "--upstream"),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "127.0.0.1:4222",
                "--link-latency",
                "25",
            ],
            "bad duration \"25\"; use a number with a unit",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["proxy"];
        all.extend(args);
        if !args.contains(&"--control") {
            all.extend(["--control", "127.0.0.1:0"]);
        }
        let out = fleetsim(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(expected),
            "{all:?}: {}",
            text(&out.stderr)
        );
    }
    let out = fleetsim(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:4222",
        "--control",
        "0.0.0.0:4299",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a loopback address"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_port_in_use_exits_3_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let out = fleetsim(&[
        "proxy",
        "--listen",
        &port,
        "--upstream",
        "127.0.0.1:4222",
        "--control",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for agents on {port}")),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no ready line: {}",
        text(&out.stdout)
    );

    let out = fleetsim(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:4222",
        "--control",
        &port,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for control commands on {port}")),
        "{err}"
    );
}

#[test]
fn a_proxied_fleet_too_big_for_the_fd_limit_is_refused_naming_both_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in ["true", "\"process\""] {
        let file = dir.path().join("big.toml");
        std::fs::write(
            &file,
            format!("[fleet]\nagents = 100000000\nproxy = {mode}\n\n[[steps]]\nkind = \"start\"\n"),
        )
        .expect("write scenario");
        let out = fleetsim(&["run", file.to_str().expect("utf-8 path")]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("the proxy inside fleetsim's process (proxy = true: 3 files per agent) holds at most"),
            "{err}"
        );
        assert!(
            err.contains("the proxy as its own process (proxy = \"process\": 1 per agent in fleetsim, 2 in the proxy) at most"),
            "{err}"
        );
    }
}

const SMALL: &str = r#"
name = "proxy-child"
[fleet]
agents = 10
groups = 2
catalog_entries = 3
proxy = "process"
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
[[steps]]
kind = "hold"
duration = "10m"
"#;

#[test]
fn an_interrupted_run_still_stops_its_proxy_process() {
    // The proxy process is this test's own child: other tests of this binary start
    // fleetsim processes too when they run as threads of one process (`cargo test`).
    let (runtime, threads) = TestThreads::runtime();
    let out = tempfile::tempdir().expect("tempdir");
    let plan = fleetsim::scenario::parse_str(SMALL, "test.toml").expect("valid");
    let options = RunOptions {
        scenario_path: None,
        scenario_text: SMALL.to_string(),
        results_base: out.path().to_path_buf(),
        run_dir: None,
        proxy_program: Some(env!("CARGO_BIN_EXE_fleetsim").into()),
    };
    // Interrupted as soon as the proxy process is up (it starts before the steps), so
    // it is the run's epilogue that must stop it.
    let seen = std::sync::Mutex::new(None);
    let proxy_up = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(proxy) =
                threads.running_child("fleetsim", |a| a.first().is_some_and(|c| c == "proxy"))
            {
                *seen.lock().expect("lock") = Some(proxy);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no fleetsim proxy process of this run within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let report = runtime
        .block_on(fleetsim::run::run(plan, options, proxy_up))
        .expect("run reaches its results");
    assert_eq!(report.status, RunStatus::Partial);
    let proxy: Proc = seen
        .lock()
        .expect("lock")
        .take()
        .expect("the interrupt saw the proxy");
    assert_eq!(report.proxy_pid, Some(proxy.pid), "the run's proxy process");
    assert!(
        !proxy.running(),
        "proxy process {} outlived the run",
        proxy.pid
    );
}

/// The log without ANSI colour codes.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn ctrl_c_during_a_run_stops_the_proxy_process_too() {
    interrupt_a_run(libc::SIGINT, "Ctrl-C");
}

/// SIGTERM (a CI runner cancelling the job, `docker stop`, `kill`) is an interrupt too:
/// the run stops its proxy and broker and exits 1, leaving no process behind.
#[test]
fn sigterm_during_a_run_stops_it_as_ctrl_c_does() {
    interrupt_a_run(libc::SIGTERM, "SIGTERM");
}

/// Sends `signal` to a `fleetsim run` once its fleet is up; checks that it exits 1 and
/// stops its proxy process.
fn interrupt_a_run(signal: libc::c_int, name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("small.toml");
    std::fs::write(&file, SMALL).expect("write scenario");
    let mut run = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["run", file.to_str().expect("utf-8"), "--out"])
        .arg(dir.path())
        .env("FLEETSIM_LOG", "info,async_nats=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleetsim run starts");
    let log = LinesWithin::new(run.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut proxy_pid = None;
    // Until the hold step begins: the fleet is up and Ctrl-C is being listened for.
    while let Some(line) = log.next_before(deadline, "fleetsim run's log until 3:hold") {
        let line = plain(&line);
        if line.contains("fault proxy process started") {
            proxy_pid = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("pid="))
                .and_then(|p| p.parse::<u32>().ok());
        }
        if line.contains("step begins") && line.contains("3:hold") {
            break;
        }
    }
    let pid = proxy_pid.expect("the run logged its proxy process");
    let proxy = Proc::of(pid).filter(Proc::running);
    let proxy = proxy.expect("the proxy runs during the run");
    // SAFETY: sends `signal` to the child we started, by its pid.
    let sent = unsafe { libc::kill(run.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut rest = Vec::new();
    let after = format!("fleetsim run's log after {name}");
    while let Some(line) = log.next_before(deadline, &after) {
        rest.push(plain(&line));
    }
    let status = wait_within(&mut run, WITHIN, &after);
    assert_eq!(status.code(), Some(1), "interrupted: {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("fault proxy process stopped")),
        "{rest:?}"
    );
    assert!(!proxy.running(), "proxy process {pid} outlived fleetsim");
}

#[test]
fn a_child_proxy_exits_when_its_stdin_closes_as_when_fleetsim_dies() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:4222",
        ])
        .args(["--control", "127.0.0.1:0", "--exit-on-stdin-close"])
        .env("FLEETSIM_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("fleetsim proxy starts");
    ready_line(&mut child);
    // What a killed parent leaves behind: the write end of the child's stdin closes.
    drop(child.stdin.take());
    assert!(wait_within(&mut child, WITHIN, "fleetsim proxy after its stdin closed").success());
}

/// `[fleet] link_latency` with `proxy = "process"`: the child gets the latency on its
/// command line and delays both directions (a round trip takes at least twice it), and a
/// cut through its control port still drops connections and lets new ones in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_process_delays_both_directions_and_still_cuts() {
    use fleetsim::plan::LinkShape;
    use fleetsim::proxy::process::ProxyChild;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("echo server");
    let upstream = echo.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let latency = Duration::from_millis(30);
    let link = LinkShape {
        latency: Some(latency),
        ..LinkShape::default()
    };
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_fleetsim"));
    let child = ProxyChild::spawn(program, &upstream, link)
        .await
        .expect("fleetsim proxy starts");
    let round_trip = |mut conn: tokio::net::TcpStream| async move {
        let sent = Instant::now();
        conn.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        tokio::time::timeout(WITHIN, conn.read_exact(&mut buf))
            .await
            .expect("an echo within 10 s")
            .expect("echo");
        assert_eq!(&buf, b"ping");
        (sent.elapsed(), conn)
    };
    let conn = tokio::net::TcpStream::connect(child.ready().listen)
        .await
        .expect("connect");
    let (took, conn) = round_trip(conn).await;
    assert!(took >= 2 * latency, "a round trip took {took:?}");

    let dropped = child
        .cut(Duration::from_millis(50), &fleetsim::plan::Hits::All, || {})
        .await
        .expect("cut");
    assert_eq!(dropped, 1);
    let mut conn = conn;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WITHIN, conn.read_to_end(&mut rest))
        .await
        .expect("the cut connection ends");
    let again = tokio::net::TcpStream::connect(child.ready().listen)
        .await
        .expect("accepts after the cut");
    let (took, _) = round_trip(again).await;
    assert!(took >= 2 * latency, "after the cut: {took:?}");
    assert!(child.stop().await.expect("stops").success());
}
