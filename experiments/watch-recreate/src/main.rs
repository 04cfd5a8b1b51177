//! watch-recreate: which JetStream API requests one KV watch makes across a
//! broker restart, with async-nats 0.48 and 0.50 (the versions kanade's stored
//! lockfiles resolve) and 0.51 (fleetsim's).
//!
//! For each version it starts a fresh nats-server (JetStream, temp store dir,
//! free loopback port), records every JetStream API request through the
//! server's API audit advisories (`$JS.EVENT.ADVISORY.API`, captured in a
//! file stream so nothing is lost while the control client itself is
//! reconnecting, and also subscribed to live as a cross-check), opens three
//! watches on three clients named `<version>/<case>`, restarts the broker on
//! the same port and store dir, writes a new value for each watched key, waits
//! until each watch delivers it, and prints the API requests each client made.
//!
//! Usage: watch-recreate <nats-server binary> [kill|term] [0.48|0.50|0.51|all] [outage seconds, default 1]
//!        watch-recreate <nats-server binary> probe   (which calls produce audit advisories at all)

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats_051 as control_nats;
use futures::StreamExt;

mod v048 {
    use async_nats_048 as nats;
    include!("case.rs");
}
mod v050 {
    use async_nats_050 as nats;
    include!("case.rs");
}
mod v051 {
    use async_nats_051 as nats;
    include!("case.rs");
}

/// Wall-clock seconds since midnight UTC (advisory timestamps use the same clock).
fn now_secs() -> f64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (d.as_secs() % 86_400) as f64 + d.subsec_nanos() as f64 / 1e9
}

fn hms(secs: f64) -> String {
    let whole = secs as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        whole / 3600,
        whole / 60 % 60,
        whole % 60,
        ((secs - whole as f64) * 1000.0) as u64
    )
}

/// Advisory timestamp "2026-12-01T15:10:01.123456789Z" → seconds since midnight.
fn rfc3339_secs(ts: &str) -> Option<f64> {
    let t = ts.split('T').nth(1)?.trim_end_matches('Z');
    let t = t.split(['+', '-']).next()?;
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<(f64, String, String)>>>);

impl Log {
    pub fn note(&self, tag: &str, text: &str) {
        let t = now_secs();
        eprintln!("{} [{tag}] {text}", hms(t));
        self.0
            .lock()
            .unwrap()
            .push((t, tag.to_string(), text.to_string()));
    }
}

#[derive(Clone, Default)]
pub struct Shared(Arc<(Mutex<HashSet<(String, String)>>, tokio::sync::Notify)>);

impl Shared {
    pub fn delivered(&self, tag: &str, value: &str) {
        self.0
             .0
            .lock()
            .unwrap()
            .insert((tag.to_string(), value.to_string()));
        self.0 .1.notify_waiters();
    }
    pub fn has(&self, tag: &str, value: &str) -> bool {
        self.0
             .0
            .lock()
            .unwrap()
            .contains(&(tag.to_string(), value.to_string()))
    }
    pub async fn wait_for(&self, tag: &str, value: &str, secs: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if self.has(tag, value) {
                return true;
            }
            let notified = self.0 .1.notified();
            if self.has(tag, value) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.has(tag, value);
            }
        }
    }
}

struct Server {
    bin: PathBuf,
    port: u16,
    store: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Server {
    fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.store.with_extension(format!("log{}", self.starts)))
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-n", "exp"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not listen in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self, mode: &str) {
        if let Some(mut child) = self.child.take() {
            if mode == "kill" {
                child.kill().ok();
            } else {
                Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .ok();
            }
            child.wait().ok();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn essentials(subject: &str, request: &str, response: &str) -> String {
    let mut out = subject.to_string();
    if let Ok(req) = serde_json::from_str::<serde_json::Value>(request) {
        if let Some(cfg) = req.get("config") {
            let mut bits = Vec::new();
            for key in [
                "name",
                "durable_name",
                "deliver_policy",
                "opt_start_seq",
                "filter_subject",
                "filter_subjects",
                "mem_storage",
                "inactive_threshold",
            ] {
                if let Some(v) = cfg.get(key) {
                    bits.push(format!("{key}={v}"));
                }
            }
            out.push_str(&format!(" {{{}}}", bits.join(", ")));
        }
    }
    if let Ok(resp) = serde_json::from_str::<serde_json::Value>(response) {
        if let Some(err) = resp.get("error") {
            out.push_str(&format!(
                " -> error {}/{} {}",
                err["code"],
                err["err_code"],
                err["description"].as_str().unwrap_or("")
            ));
        } else if let Some(name) = resp.get("name") {
            out.push_str(&format!(" -> ok, consumer {name}"));
        } else {
            out.push_str(" -> ok");
        }
    }
    out
}

async fn run_version(version: &str, bin: &Path, mode: &str, outage: u64, root: &Path) -> String {
    let store = root.join(format!("store-{version}"));
    let mut server = Server {
        bin: bin.to_path_buf(),
        port: free_port(),
        store,
        child: None,
        starts: 0,
    };
    server.start();
    let url = format!("nats://127.0.0.1:{}", server.port);
    let log = Log::default();
    let shared = Shared::default();

    // Control side (async-nats 0.51, name "control": its own requests are left out).
    let control = control_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .name("control")
        .connect(&url)
        .await
        .expect("control connect");
    let js = control_nats::jetstream::new(control.clone());
    js.create_stream(control_nats::jetstream::stream::Config {
        name: "AUDIT".into(),
        subjects: vec![
            "$JS.EVENT.ADVISORY.API".into(),
            "$JS.EVENT.ADVISORY.API.>".into(),
        ],
        storage: control_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("audit stream");
    let live_counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    for subject in ["$JS.EVENT.ADVISORY.API", "$JS.EVENT.ADVISORY.API.>"] {
        let mut sub = control
            .subscribe(subject)
            .await
            .expect("subscribe advisories");
        let counts = live_counts.clone();
        let pattern = subject.to_string();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let key = format!("{pattern} (message subject {})", msg.subject);
                *counts.lock().unwrap().entry(key).or_default() += 1;
            }
        });
    }
    let kv = js
        .create_key_value(control_nats::jetstream::kv::Config {
            bucket: "exp".into(),
            history: 5,
            ..Default::default()
        })
        .await
        .expect("bucket");
    for v in ["b0", "b1", "b2"] {
        kv.put("b", v.to_string().into()).await.expect("put b");
    }
    let put = {
        let kv = kv.clone();
        move |key: &'static str, value: &'static str| {
            let kv = kv.clone();
            async move {
                for _ in 0..60 {
                    if kv.put(key, value.to_string().into()).await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                panic!("put {key}={value} failed for 30 s");
            }
        }
    };

    let mut cases048 = None;
    let mut cases050 = None;
    let mut cases051 = None;
    match version {
        "0.48" => {
            cases048 = Some(v048::open(&url, version, log.clone(), shared.clone(), &put).await)
        }
        "0.50" => {
            cases050 = Some(v050::open(&url, version, log.clone(), shared.clone(), &put).await)
        }
        _ => cases051 = Some(v051::open(&url, version, log.clone(), shared.clone(), &put).await),
    }
    // Past one idle-heartbeat interval (5 s) for the watches above; then the
    // young watch, 1 s before the kill.
    tokio::time::sleep(Duration::from_secs(7)).await;
    if let Some(c) = cases048.as_mut() {
        c.open_young(&url, version, log.clone(), shared.clone())
            .await;
    }
    if let Some(c) = cases050.as_mut() {
        c.open_young(&url, version, log.clone(), shared.clone())
            .await;
    }
    if let Some(c) = cases051.as_mut() {
        c.open_young(&url, version, log.clone(), shared.clone())
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The restart: stop (SIGKILL or SIGTERM), `outage` s down, start on the same port and store.
    let t_kill = now_secs();
    log.note("broker", &format!("stopping ({mode})"));
    server.stop(mode);
    log.note("broker", "stopped");
    tokio::time::sleep(Duration::from_secs(outage)).await;
    server.start();
    log.note("broker", "listening again");

    // New values 3 s after the restart; the unpolled watch is polled again at 5 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    put("a", "a2").await;
    put("b", "b3").await;
    put("c", "c2").await;
    put("d", "d1").await;
    log.note("control", "put a=a2, b=b3, c=c2, d=d1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(c) = cases048.as_mut() {
        c.resume_unpolled(log.clone(), shared.clone());
    }
    if let Some(c) = cases050.as_mut() {
        c.resume_unpolled(log.clone(), shared.clone());
    }
    if let Some(c) = cases051.as_mut() {
        c.resume_unpolled(log.clone(), shared.clone());
    }
    let mut outcome = Vec::new();
    for (case, value) in [
        ("delivered", "a2"),
        ("never", "b3"),
        ("unpolled", "c2"),
        ("young", "d1"),
    ] {
        let tag = format!("{version}/{case}");
        let ok = shared.wait_for(&tag, value, 45).await;
        let when = log
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|(_, t, text)| *t == tag && text.contains(&format!("={value} ")))
            .map(|(t, _, _)| *t);
        outcome.push(match when {
            Some(t) if ok => format!(
                "{tag}: recreated, delivered {value} at kill+{:.2}s",
                t - t_kill
            ),
            _ => format!("{tag}: NOT recreated: {value} not delivered within 45 s"),
        });
        log.note(&tag, &outcome.last().unwrap().clone());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Read the captured advisories back, in the order the server published them.
    let mut audit = js.get_stream("AUDIT").await.expect("audit stream");
    let last = audit.info().await.expect("audit info").state.last_sequence;
    let mut by_client: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut total = 0;
    for seq in 1..=last {
        let Ok(msg) = audit.get_raw_message(seq).await else {
            continue;
        };
        total += 1;
        let adv: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
        let name = adv["client"]["name"].as_str().unwrap_or("").to_string();
        if !name.starts_with(version) {
            continue;
        }
        let ts = adv["timestamp"]
            .as_str()
            .and_then(rfc3339_secs)
            .unwrap_or(0.0);
        let phase = if ts < t_kill {
            "before".to_string()
        } else {
            format!("kill+{:.2}s", ts - t_kill)
        };
        let line = essentials(
            adv["subject"].as_str().unwrap_or("?"),
            adv["request"].as_str().unwrap_or(""),
            adv["response"].as_str().unwrap_or(""),
        );
        let name = format!(
            "{name} (lang {} ver {})",
            adv["client"]["lang"].as_str().unwrap_or("?"),
            adv["client"]["ver"].as_str().unwrap_or("?")
        );
        by_client
            .entry(name)
            .or_default()
            .push(format!("{phase:>12}  {line}"));
    }
    server.stop("term");

    let mut out = String::new();
    out.push_str(&format!(
        "== async-nats {version}, broker stopped by {mode}, down {outage} s ==\n"
    ));
    for (client, lines) in &by_client {
        out.push_str(&format!("-- client {client} --\n"));
        for l in lines {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out.push_str("-- outcome --\n");
    for o in &outcome {
        out.push_str(&format!("  {o}\n"));
    }
    out.push_str(&format!("-- timeline (kill at {}) --\n", hms(t_kill)));
    for (t, tag, text) in log.0.lock().unwrap().iter() {
        if text.contains("client error: nats: IO error") {
            continue;
        }
        if tag.starts_with(version) || tag == "broker" || tag == "control" {
            out.push_str(&format!("  {:>+8.2}s [{tag}] {text}\n", t - t_kill));
        }
    }
    out.push_str(&format!(
        "-- advisories: {total} captured in stream AUDIT; live subscription counts: {:?}\n\n",
        live_counts.lock().unwrap()
    ));
    out
}

/// Which client calls show up in the API audit advisories at all: a KV bind, a
/// direct get, `keys()`, a watch, a put (async-nats 0.51, one client, no restart).
async fn probe(bin: &Path, root: &Path) -> String {
    let mut server = Server {
        bin: bin.to_path_buf(),
        port: free_port(),
        store: root.join("store-probe"),
        child: None,
        starts: 0,
    };
    server.start();
    let url = format!("nats://127.0.0.1:{}", server.port);
    let control = control_nats::ConnectOptions::new()
        .name("control")
        .connect(&url)
        .await
        .expect("connect");
    let js = control_nats::jetstream::new(control.clone());
    js.create_stream(control_nats::jetstream::stream::Config {
        name: "AUDIT".into(),
        subjects: vec![
            "$JS.EVENT.ADVISORY.API".into(),
            "$JS.EVENT.ADVISORY.API.>".into(),
        ],
        ..Default::default()
    })
    .await
    .expect("audit stream");
    js.create_key_value(control_nats::jetstream::kv::Config {
        bucket: "exp".into(),
        history: 5,
        ..Default::default()
    })
    .await
    .expect("bucket");
    let agent = control_nats::ConnectOptions::new()
        .name("probe")
        .connect(&url)
        .await
        .expect("connect");
    let ajs = control_nats::jetstream::new(agent.clone());
    let mut steps: Vec<(String, f64)> = Vec::new();
    let mark =
        |steps: &mut Vec<(String, f64)>, what: &str| steps.push((what.to_string(), now_secs()));
    mark(&mut steps, "get_key_value(\"exp\")");
    let kv = ajs.get_key_value("exp").await.expect("bind");
    tokio::time::sleep(Duration::from_millis(200)).await;
    mark(&mut steps, "put(\"k\")");
    kv.put("k", "v1".into()).await.expect("put");
    tokio::time::sleep(Duration::from_millis(200)).await;
    mark(&mut steps, "get(\"k\")");
    kv.get("k").await.expect("get");
    tokio::time::sleep(Duration::from_millis(200)).await;
    mark(&mut steps, "keys()");
    let keys: Vec<String> = kv
        .keys()
        .await
        .expect("keys")
        .filter_map(|k| async { k.ok() })
        .collect()
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    mark(&mut steps, "watch(\"k\")");
    let _watch = kv.watch("k").await.expect("watch");
    tokio::time::sleep(Duration::from_millis(500)).await;
    mark(&mut steps, "end");
    let mut audit = js.get_stream("AUDIT").await.expect("audit");
    let last = audit.info().await.expect("info").state.last_sequence;
    let mut calls: Vec<(f64, String)> = Vec::new();
    for seq in 1..=last {
        let Ok(msg) = audit.get_raw_message(seq).await else {
            continue;
        };
        let adv: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
        if adv["client"]["name"].as_str() != Some("probe") {
            continue;
        }
        let ts = adv["timestamp"]
            .as_str()
            .and_then(rfc3339_secs)
            .unwrap_or(0.0);
        calls.push((ts, adv["subject"].as_str().unwrap_or("?").to_string()));
    }
    server.stop("term");
    let mut out = String::from(
        "== probe: which calls of one async-nats 0.51 client appear as API audit advisories ==\n",
    );
    for w in steps.windows(2) {
        let (what, from) = (&w[0].0, w[0].1);
        let to = w[1].1;
        let seen: Vec<&str> = calls
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, s)| s.as_str())
            .collect();
        out.push_str(&format!(
            "  {what:<22} -> {}\n",
            if seen.is_empty() {
                "(no advisory)".to_string()
            } else {
                seen.join(", ")
            }
        ));
    }
    out.push_str(&format!("  ({} keys listed)\n\n", keys.len()));
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin =
        PathBuf::from(args.get(1).expect(
            "usage: watch-recreate <nats-server> [kill|term] [0.48|0.50|0.51|all] [outage s]",
        ));
    let mode = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("kill")
        .to_string();
    let which = args.get(3).map(String::as_str).unwrap_or("all").to_string();
    let outage: u64 = args
        .get(4)
        .map(|s| s.parse().expect("outage seconds"))
        .unwrap_or(1);
    let root = std::env::temp_dir().join(format!("watch-recreate-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let versions: Vec<&str> = match which.as_str() {
        "all" => vec!["0.48", "0.50", "0.51"],
        "0.48" => vec!["0.48"],
        "0.50" => vec!["0.50"],
        "0.51" => vec!["0.51"],
        other => panic!("unknown version {other}: 0.48, 0.50, 0.51 or all"),
    };
    if mode == "probe" {
        print!("{}", probe(&bin, &root).await);
        std::fs::remove_dir_all(&root).ok();
        return;
    }
    for version in versions {
        let section = run_version(version, &bin, &mode, outage, &root).await;
        print!("{section}");
    }
    std::fs::remove_dir_all(&root).ok();
}
