//! Transport security as fleets run it: the embedded broker with TLS (a CA and server
//! certificate made at run time) and token, user or nkey authentication; agents that reach
//! ready over it and recover from a restart herd; a wrong token that is a clear
//! environment error; TLS through the fault proxy; and generated secrets that reach no
//! output and no file of the run directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    LinesWithin, assert_secret_nowhere, manifest, num, only_dir_in, read_csv, run_against,
    run_scenario, step_row, text, wait_within,
};
use fleetsim::broker::embedded::{EmbeddedBroker, EmbeddedOptions, EmbeddedSecurity};
use fleetsim::plan::AuthMode;
use fleetsim::results::RunStatus;

const FLEET: &str = r#"
[fleet]
agents = 12
groups = 2
catalog_entries = 2
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "60s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_fleet_with_nkeys_gets_ready_and_recovers_from_a_restart_herd() {
    let out = tempfile::tempdir().expect("tempdir");
    let scenario = format!(
        "name = \"tls-herd\"\n[broker]\ntls = true\nauth = \"nkey\"\n{FLEET}\
         [[steps]]\nkind = \"broker_restart\"\nsignal = \"kill\"\ndowntime = \"500ms\"\n\
         recover_timeout = \"60s\"\n"
    );
    let report = run_scenario(&scenario, out.path()).await;
    assert_eq!(report.status, RunStatus::Ok, "{:?}", report.reasons);
    let dir = only_dir_in(out.path());
    let steps = read_csv(&dir, "steps.csv");
    assert_eq!(num(step_row(&steps, "2:wait_ready"), "agents_ready"), 12);
    // Every agent came back over TLS, with its nkey, after the crash.
    let recovery = read_csv(&dir, "recovery.csv");
    assert_eq!(num(&recovery[0], "recovered"), 12, "{recovery:?}");
    assert_eq!(num(&recovery[0], "not_recovered"), 0, "{recovery:?}");
    // The manifest says how the fleet connected, never with what.
    let m = manifest(&dir);
    let broker = m.broker.expect("broker in the manifest");
    assert!(broker.url.starts_with("tls://127.0.0.1:"), "{}", broker.url);
    assert_eq!(m.settings["broker"]["tls"], true);
    assert_eq!(m.settings["broker"]["auth"], "nkey");
    // The fleet's system-account listener connected over TLS too.
    assert!(broker.api_limit_reached_counted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_auth_mode_lets_the_fleet_in() {
    for auth in ["none", "token", "user", "nkey"] {
        let out = tempfile::tempdir().expect("tempdir");
        let scenario = format!("name = \"auth-{auth}\"\n[broker]\nauth = \"{auth}\"\n{FLEET}");
        let report = run_scenario(&scenario, out.path()).await;
        assert_eq!(report.status, RunStatus::Ok, "{auth}: {:?}", report.reasons);
        let dir = only_dir_in(out.path());
        let steps = read_csv(&dir, "steps.csv");
        assert_eq!(
            num(step_row(&steps, "2:wait_ready"), "agents_ready"),
            12,
            "{auth}"
        );
        let m = manifest(&dir);
        assert_eq!(m.settings["broker"]["auth"], auth);
        assert_eq!(m.settings["broker"]["tls"], false);
        // A token-authenticated nats-server has no accounts, so no system-account user
        // to hear the API queue's advisory: the manifest says it was not counted.
        let counted = m.broker.expect("broker").api_limit_reached_counted;
        assert_eq!(counted, auth != "token", "{auth}");
    }
}

/// The generated secret, read from the embedded broker's config file in `tmp` (the run's
/// TMPDIR) while the run is going on: fleetsim never shows it.
fn secret_in_config(tmp: &Path, auth: &str) -> String {
    let dir = std::fs::read_dir(tmp)
        .expect("TMPDIR")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("fleetsim-broker-"))
        })
        .expect("the embedded broker's temp dir");
    let config = std::fs::read_to_string(dir.join("nats-server.conf")).expect("config");
    let marker = match auth {
        "token" => "token: \"",
        _ => "user: \"fleet\", password: \"",
    };
    let start = config.find(marker).expect("secret in the config") + marker.len();
    let len = config[start..].find('"').expect("closing quote");
    config[start..start + len].to_string()
}

#[test]
fn generated_secrets_reach_no_output_and_no_file() {
    for auth in ["token", "user"] {
        let work = tempfile::tempdir().expect("tempdir");
        let tmp = work.path().join("tmp");
        std::fs::create_dir(&tmp).expect("tmp");
        let scenario = format!(
            "name = \"secret-{auth}\"\n[broker]\ntls = true\nauth = \"{auth}\"\n{FLEET}\
             [[steps]]\nkind = \"broker_restart\"\nsignal = \"kill\"\ndowntime = \"500ms\"\n\
             recover_timeout = \"60s\"\n"
        );
        std::fs::write(work.path().join("s.toml"), scenario).expect("scenario");
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
            .args(["run", "s.toml", "--out", "out"])
            // async-nats logs what it dials at debug level.
            .env("FLEETSIM_LOG", "debug")
            .env("TMPDIR", &tmp)
            .current_dir(work.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fleetsim runs");
        let stdout = LinesWithin::new(child.stdout.take().expect("stdout"));
        let stderr = LinesWithin::new(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut printed = String::new();
        let mut secret = None;
        while let Some(line) = stderr.next_before(deadline, "fleetsim's log") {
            // The broker is up (and its config written) once the first step begins.
            if secret.is_none() && line.contains("step begins") {
                secret = Some(secret_in_config(&tmp, auth));
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        while let Some(line) = stdout.next_before(deadline, "fleetsim's output") {
            printed.push_str(&line);
            printed.push('\n');
        }
        let status = wait_within(&mut child, Duration::from_secs(30), "fleetsim");
        assert_eq!(status.code(), Some(0), "{auth}: {printed}");
        let secret = secret.expect("a step began");
        assert!(secret.len() >= 32, "{auth}: a generated secret");
        assert_secret_nowhere(&secret, &printed, &work.path().join("out"));
        let dir = only_dir_in(&work.path().join("out"));
        let recovery = read_csv(&dir, "recovery.csv");
        assert_eq!(num(&recovery[0], "recovered"), 12, "{auth}: {recovery:?}");
    }
}

/// A TLS broker demanding a token, started by the test, as an external broker would be.
async fn token_broker() -> (EmbeddedBroker, String, PathBuf) {
    let broker = EmbeddedBroker::start_secured(
        EmbeddedOptions {
            max_connections: 1000,
            request_queue_limit: 10_000,
            default_max_consumers: -1,
            lame_duck_duration: Duration::from_secs(30),
            lame_duck_grace_period: Duration::from_secs(1),
            keepalive: Default::default(),
        },
        EmbeddedSecurity {
            tls: true,
            auth: AuthMode::Token,
        },
    )
    .await
    .expect("broker starts");
    let credentials = broker.credentials();
    let fleetsim::broker::Auth::Token(token) = credentials.auth else {
        panic!("a token broker has a token");
    };
    let ca = credentials.tls_ca.expect("a TLS broker has a CA");
    (broker, token, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_an_environment_error_that_names_the_cause() {
    let (broker, token, ca) = token_broker().await;
    let work = tempfile::tempdir().expect("tempdir");
    let port = broker.url().rsplit(':').next().expect("port").to_string();
    let scenario = format!(
        "name = \"wrong-token\"\n[broker]\ntls_ca = {:?}\n{FLEET}",
        ca.display().to_string()
    );
    std::fs::write(work.path().join("s.toml"), scenario).expect("scenario");
    let url = format!("tls://n0t-the-t0ken@127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["run", "s.toml", "--out", "out", "--server", &url])
        .env("FLEETSIM_LOG", "debug")
        .current_dir(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleetsim runs");
    // Not a hang: the run ends by itself.
    let status = wait_within(&mut child, Duration::from_secs(60), "fleetsim");
    let output = child.wait_with_output().expect("output");
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(status.code(), Some(3), "{printed}");
    assert!(
        printed.to_lowercase().contains("authorization violation"),
        "says why: {printed}"
    );
    assert!(!printed.contains("panicked"), "{printed}");
    assert_secret_nowhere("n0t-the-t0ken", &printed, work.path());
    assert_secret_nowhere(&token, &printed, work.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_token_pass_through_the_fault_proxy() {
    let (broker, token, ca) = token_broker().await;
    // The proxy relays bytes, in fleetsim's process or as its own: the agents dial its
    // plain URL, the broker's INFO asks for TLS, and the handshake runs end to end with
    // the broker's certificate.
    for proxy in ["true", "\"process\""] {
        let out = tempfile::tempdir().expect("tempdir");
        let scenario = format!(
            "name = \"tls-proxy\"\n[broker]\ntls_ca = {:?}\n{}\
             [[steps]]\nkind = \"network_cut\"\nrefuse_for = \"500ms\"\nrecover_timeout = \"60s\"\n",
            ca.display().to_string(),
            FLEET.replace(
                "[fleet]\n",
                &format!("[fleet]\nproxy = {proxy}\nexec_ack_wait = \"2s\"\n")
            ),
        );
        let url = broker.url().replace("tls://", &format!("tls://{token}@"));
        let report = run_against(&scenario, url, Some(broker.monitor_url()), out.path()).await;
        assert_eq!(
            report.status,
            RunStatus::Ok,
            "{proxy}: {:?}",
            report.reasons
        );
        let dir = only_dir_in(out.path());
        let recovery = read_csv(&dir, "recovery.csv");
        assert_eq!(recovery[0]["step"], "3:network_cut");
        assert_eq!(num(&recovery[0], "recovered"), 12, "{proxy}: {recovery:?}");
        assert_secret_nowhere(&token, "", out.path());
    }
}
