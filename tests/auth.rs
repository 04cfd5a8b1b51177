//! An external broker that demands credentials: the URL's `user:password@` reaches every
//! connection fleetsim makes (async-nats itself ignores a URL's userinfo), also through
//! the fault proxy, and the password reaches no output and no file.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{assert_secret_nowhere, num, only_dir_in, read_csv};

/// The password, with characters a URL must escape (`@` as `%40`, `/` as `%2F`).
const PASSWORD: &str = "s3cr@t/pw";
const PASSWORD_IN_URL: &str = "s3cr%40t%2Fpw";

/// A nats-server with JetStream and one user, on free loopback ports; killed on drop.
struct AuthBroker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl AuthBroker {
    fn start() -> AuthBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = fleetsim::broker::embedded::free_port().expect("port");
        let config = format!(
            "listen: 127.0.0.1:{port}\n\
             jetstream {{ store_dir: {:?} }}\n\
             authorization {{ user: agent, password: {PASSWORD:?} }}\n",
            dir.path().join("store")
        );
        std::fs::write(dir.path().join("auth.conf"), config).expect("config");
        let bin = fleetsim::broker::embedded::find_binary().expect("nats-server");
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.path().join("auth.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts");
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        AuthBroker {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, password: &str) -> String {
        format!("nats://agent:{password}@127.0.0.1:{}", self.port)
    }
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SCENARIO: &str = r#"
name = "auth-test"
[fleet]
agents = 10
groups = 2
catalog_entries = 2
proxy = true
# A command caught in the cut comes back after ack_wait: keep that wait short here.
exec_ack_wait = "2s"
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "30s"
[[steps]]
kind = "network_cut"
refuse_for = "500ms"
recover_timeout = "60s"
"#;

fn run(dir: &Path, url: &str) -> (Output, String) {
    std::fs::write(dir.join("auth.toml"), SCENARIO).expect("scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["run", "auth.toml", "--out", "out", "--server", url])
        // async-nats logs the address it dials at debug level: it must not hold the
        // password.
        .env("FLEETSIM_LOG", "debug")
        .current_dir(dir)
        .output()
        .expect("fleetsim runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, printed)
}

fn assert_no_password(dir: &Path, printed: &str) {
    for secret in [PASSWORD, PASSWORD_IN_URL] {
        assert_secret_nowhere(secret, printed, dir);
    }
}

#[test]
fn url_credentials_let_the_fleet_in_through_the_proxy_and_are_never_written() {
    let broker = AuthBroker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, printed) = run(dir.path(), &broker.url(PASSWORD_IN_URL));
    assert_eq!(out.status.code(), Some(0), "{printed}");
    let run_dir = only_dir_in(&dir.path().join("out"));
    // Every agent reconnected through the proxy, with the credentials, after the cut.
    let recovery = read_csv(&run_dir, "recovery.csv");
    assert_eq!(recovery.len(), 1, "{recovery:?}");
    assert_eq!(recovery[0]["step"], "3:network_cut");
    assert_eq!(num(&recovery[0], "recovered"), 10, "{recovery:?}");
    assert_eq!(num(&recovery[0], "not_recovered"), 0, "{recovery:?}");
    assert_no_password(dir.path(), &printed);
}

#[test]
fn a_wrong_password_is_an_environment_error_that_hides_the_password() {
    let broker = AuthBroker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, printed) = run(dir.path(), &broker.url("wrong%40pw"));
    assert_eq!(out.status.code(), Some(3), "{printed}");
    assert!(
        printed.to_lowercase().contains("authorization"),
        "says why: {printed}"
    );
    assert!(!printed.contains("wrong"), "{printed}");
    assert_no_password(dir.path(), &printed);
}
