use super::*;

#[test]
fn the_ready_line_round_trips_and_junk_is_refused() {
    let ready = Ready {
        listen: "127.0.0.1:41001".parse().expect("addr"),
        control: "127.0.0.1:41002".parse().expect("addr"),
        upstream: "broker.example:4222".to_string(),
        nofile: 20_000,
    };
    assert_eq!(
        ready.line(),
        "fleetsim-proxy ready listen=127.0.0.1:41001 control=127.0.0.1:41002 upstream=broker.example:4222 nofile=20000"
    );
    assert_eq!(Ready::parse(&ready.line()), Ok(ready));
    assert!(Ready::parse("hello").is_err());
    assert!(Ready::parse("fleetsim-proxy ready listen=x control=y").is_err());
}

#[test]
fn control_commands_parse_and_mistakes_say_what_is_accepted() {
    assert_eq!(
        parse_command("cut 2000"),
        Ok(Some(ControlCommand::Cut {
            refuse_for: Duration::from_secs(2),
            hits: Hits::All,
        }))
    );
    assert_eq!(
        parse_command("  cut 0 "),
        Ok(Some(ControlCommand::Cut {
            refuse_for: Duration::ZERO,
            hits: Hits::All,
        }))
    );
    assert_eq!(
        parse_command("cut 0 0-2,7"),
        Ok(Some(ControlCommand::Cut {
            refuse_for: Duration::ZERO,
            hits: "0-2,7".parse().expect("agents"),
        }))
    );
    assert_eq!(
        parse_command("blackhole 0 all"),
        Ok(Some(ControlCommand::Blackhole {
            hole: 0,
            hits: Hits::All,
            held: Held::Both,
        }))
    );
    assert_eq!(
        parse_command("stop_reading 5 3-4"),
        Ok(Some(ControlCommand::Blackhole {
            hole: 5,
            hits: "3-4".parse().expect("agents"),
            held: Held::ToAgent,
        }))
    );
    assert_eq!(
        parse_command("resume 4"),
        Ok(Some(ControlCommand::Resume { hole: 4 }))
    );
    let err = parse_command("resume").expect_err("no id");
    assert!(err.contains("unknown command"), "{err}");
    let err = parse_command("blackhole 1 3-x").expect_err("bad agents");
    assert!(err.contains("use all or ranges"), "{err}");
    assert_eq!(parse_command("stats"), Ok(Some(ControlCommand::Stats)));
    assert_eq!(parse_command("quit"), Ok(Some(ControlCommand::Quit)));
    assert_eq!(parse_command("   "), Ok(None));
    let err = parse_command("cut 2s").expect_err("unit");
    assert!(err.contains("whole milliseconds"), "{err}");
    let err = parse_command("cut").expect_err("no refusal");
    assert!(err.contains("cut <refuse_ms>"), "{err}");
    let err = parse_command("restart").expect_err("unknown");
    assert_eq!(
        err,
        "unknown command \"restart\"; use cut <refuse_ms> [<agents>|all], blackhole <id> \
         [<agents>|all], stop_reading <id> [<agents>|all], resume <id>, stats, quit"
    );
    assert!(parse_command("stats now").is_err());
}

#[test]
fn upstream_is_the_host_and_port_of_the_broker_url() {
    assert_eq!(upstream_of("nats://127.0.0.1:4222"), "127.0.0.1:4222");
    assert_eq!(upstream_of("nats://u:p@broker:5222"), "broker:5222");
    assert_eq!(upstream_of("tls://broker"), "broker:4222");
    assert_eq!(upstream_of("nats://a:1,nats://b:2"), "a:1");
    assert_eq!(upstream_of("nats://[::1]:4222"), "[::1]:4222");
    assert_eq!(upstream_of("nats://[::1]"), "[::1]:4222");
}

/// The control protocol end to end, in-process: serve on free ports, cut through
/// the control connection, stats, quit.
#[tokio::test]
async fn control_connection_cuts_reports_and_quits() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    // Holds accepted upstream connections open.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = upstream.accept().await {
            held.push(s);
        }
    });
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream: upstream_addr.to_string(),
        control: "127.0.0.1:0".parse().expect("addr"),
        exit_on_stdin_close: false,
        link: LinkShape::default(),
    };
    let server = tokio::spawn(serve(
        options,
        move |r| {
            let _ = ready_tx.send(r.clone());
        },
        std::future::pending(),
    ));
    let ready = tokio::time::timeout(Duration::from_secs(5), ready_rx)
        .await
        .expect("ready within 5 s")
        .expect("ready");
    let mut agent = tokio::net::TcpStream::connect(ready.listen)
        .await
        .expect("agent connects");
    let connect = |addr: SocketAddr| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("control");
        let (r, writer) = stream.into_split();
        Control {
            lines: BufReader::new(r).lines(),
            writer,
        }
    };
    let mut control = connect(ready.control).await;
    // A second control connection, served while the first waits out a cut.
    let mut observer = connect(ready.control).await;
    let within = Duration::from_secs(5);
    // The agent's connection is forwarded once the proxy reached the upstream.
    let forwarded = async {
        loop {
            control.send("stats").await.expect("send");
            let stats = control.receive(within).await.expect("stats");
            if stats.contains("live=1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(within, forwarded)
        .await
        .expect("the agent's connection forwarded within 5 s");
    control.send("frobnicate").await.expect("send");
    let err = control.receive(within).await.expect("reply");
    assert!(err.starts_with("err unknown command"), "{err}");

    // `cut <ms>` replies once every connection is closed, and again once the
    // listener is open again; in between it is closed, as the other connection's
    // stats say. Whether they land inside the refusal depends on this machine's
    // speed: the refusal doubles until they do (FaultProxy's own tests pin that a
    // closed listener refuses connects, without a clock).
    let mut refuse_ms = 250;
    let mut seen_closed = false;
    for cut in 0.. {
        control
            .send(&format!("cut {refuse_ms}"))
            .await
            .expect("send");
        let dropped = if cut == 0 { 1 } else { 0 };
        assert_eq!(
            control.receive(within).await.expect("reply"),
            format!("ok dropped={dropped}")
        );
        if cut == 0 {
            // The agent's connection is closed by the time the cut is reported.
            let mut rest = Vec::new();
            let read = tokio::io::AsyncReadExt::read_to_end(&mut agent, &mut rest);
            let _ = tokio::time::timeout(within, read)
                .await
                .expect("the agent's connection closed");
        }
        observer.send("stats").await.expect("send");
        let during = observer.receive(within).await.expect("stats");
        assert_eq!(
            control
                .receive(within + Duration::from_millis(refuse_ms))
                .await
                .expect("reply"),
            "ok accepting"
        );
        if during.ends_with("accepting=false") {
            seen_closed = true;
            break;
        }
        assert!(during.ends_with("accepting=true"), "{during}");
        if refuse_ms >= 16_000 {
            break;
        }
        refuse_ms *= 2;
    }
    assert!(
        seen_closed,
        "no stats during a cut of up to {refuse_ms} ms saw the listener closed"
    );
    observer.send("stats").await.expect("send");
    let after = observer.receive(within).await.expect("stats");
    assert!(
        after.ends_with("dropped=1 live=0 accepting=true"),
        "{after}"
    );
    tokio::net::TcpStream::connect(ready.listen)
        .await
        .expect("accepts after the refusal");

    control.send("quit").await.expect("send");
    assert_eq!(control.receive(within).await.expect("reply"), "ok bye");
    tokio::time::timeout(within, server)
        .await
        .expect("the proxy stops within 5 s of quit")
        .expect("joined")
        .expect("served");
}

/// The child gets the run's link as flags it parses back to the same shape, to the
/// nanosecond; a plain link adds none.
#[test]
fn link_args_carry_the_latency_exactly() {
    assert!(link_args(&LinkShape::default()).is_empty());
    let latency = Duration::new(1, 500_001);
    let args = link_args(&LinkShape {
        latency: Some(latency),
        ..LinkShape::default()
    });
    assert_eq!(args, ["--link-latency", "1.000500001s"]);
    assert_eq!(crate::scenario::parse_duration(&args[1]), Ok(latency));
}

#[test]
fn link_args_carry_every_shape_back_to_the_same_values() {
    let link = LinkShape {
        latency: Some(Duration::from_millis(40)),
        jitter: Some(Duration::from_millis(20)),
        bandwidth: Some(250_000),
        stall: Some(crate::plan::Stall {
            every: Duration::from_secs(60),
            stall_for: Duration::from_secs(2),
        }),
    };
    let args = link_args(&link);
    let value = |flag: &str| {
        let at = args.iter().position(|a| a == flag).expect(flag);
        args[at + 1].clone()
    };
    let d = |flag: &str| crate::scenario::parse_duration(&value(flag)).expect(flag);
    assert_eq!(Some(d("--link-jitter")), link.jitter);
    assert_eq!(
        crate::scenario::parse_bandwidth(&value("--link-bandwidth")),
        Ok(250_000)
    );
    assert_eq!(d("--link-stall-every"), Duration::from_secs(60));
    assert_eq!(d("--link-stall-for"), Duration::from_secs(2));
}
