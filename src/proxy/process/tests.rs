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
            refuse_for: Duration::from_secs(2)
        }))
    );
    assert_eq!(
        parse_command("  cut 0 "),
        Ok(Some(ControlCommand::Cut {
            refuse_for: Duration::ZERO
        }))
    );
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
        "unknown command \"restart\"; use cut <refuse_ms>, stats, quit"
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
    };
    let server = tokio::spawn(serve(
        options,
        move |r| {
            let _ = ready_tx.send(r.clone());
        },
        std::future::pending(),
    ));
    let ready = ready_rx.await.expect("ready");
    let mut agent = tokio::net::TcpStream::connect(ready.listen)
        .await
        .expect("agent connects");
    let stream = tokio::net::TcpStream::connect(ready.control)
        .await
        .expect("control");
    let (r, writer) = stream.into_split();
    let mut control = Control {
        lines: BufReader::new(r).lines(),
        writer,
    };
    let within = Duration::from_secs(5);
    // The agent's connection is forwarded once the proxy reached the upstream.
    loop {
        control.send("stats").await.expect("send");
        let stats = control.receive(within).await.expect("stats");
        if stats.contains("live=1") {
            break;
        }
        tokio::task::yield_now().await;
    }
    control.send("frobnicate").await.expect("send");
    let err = control.receive(within).await.expect("reply");
    assert!(err.starts_with("err unknown command"), "{err}");

    control.send("cut 200").await.expect("send");
    assert_eq!(
        control.receive(within).await.expect("reply"),
        "ok dropped=1"
    );
    // The cut is in effect: the agent's connection is closed, connects are refused.
    let mut rest = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut agent, &mut rest).await;
    assert!(tokio::net::TcpStream::connect(ready.listen).await.is_err());
    assert_eq!(
        control.receive(within).await.expect("reply"),
        "ok accepting"
    );
    tokio::net::TcpStream::connect(ready.listen)
        .await
        .expect("accepts after the refusal");

    control.send("quit").await.expect("send");
    assert_eq!(control.receive(within).await.expect("reply"), "ok bye");
    server.await.expect("joined").expect("served");
}
