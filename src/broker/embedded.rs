//! The embedded broker: a `nats-server` process fleetsim starts, configures and stops.
//!
//! It listens on loopback only, on free ports, with JetStream storing into a temp dir that
//! lives as long as the [`EmbeddedBroker`] (so a restart can come back on the same store).
//! The limits that matter for herds (`max_connections`, the JetStream API queue length and
//! the per-stream consumer cap) are written into a config file, because nats-server has no
//! command-line flags for them. The process is killed when the handle is dropped, so a
//! panic or an early return never leaves a server behind.
//!
//! Transport security ([`EmbeddedSecurity`]) is made per broker at start: with TLS, a CA and
//! a server certificate for 127.0.0.1 and localhost (rcgen, ECDSA P-256) written into the
//! temp dir; with authentication, a random token or password or a fresh user nkey. The
//! secrets live in memory and in the temp dir's config file only; fleetsim's connections
//! get them through [`EmbeddedBroker::credentials`].
//!
//! How the process itself runs ([`EmbeddedLaunch`]): which nats-server binary (the
//! scenario's `[broker] server`, else [`find_binary`]'s), and the CPUs it is pinned to
//! (`[broker] cpus`): `sched_setaffinity` in the child between fork and exec, so every
//! thread of the server and every restart of it stays on those CPUs, and the Go runtime
//! sizes `GOMAXPROCS` from them; and the share of one CPU it may use (`[broker]
//! cpu_quota`): a cgroup of its own with a CFS quota ([`BrokerCgroup`]) that the child
//! joins between fork and exec, kept across restarts and removed with the broker.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::cgroup::BrokerCgroup;
use super::cpu::BrokerProcess;

use super::url::{Auth, Credentials};
use super::{BrokerError, BrokerInfo, BrokerLimits, monitor};
use crate::plan::{AuthMode, CpuList, CpuQuota, ServerKeepalive};

/// How long a started server gets to report `/healthz` ok.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);
/// The system-account user fleetsim's advisory listener connects as.
const SYSTEM_USER: &str = "fleetsim-system";

/// 32 random hex digits.
fn random_password() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// The user the fleet's clients are in the FLEET account.
const FLEET_USER: &str = "fleet";
/// Files in the broker's temp dir, with `tls`.
const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "server-cert.pem";
const KEY_FILE: &str = "server-key.pem";

/// Makes a CA and a server certificate it signs, for the names the broker is dialled by
/// (127.0.0.1, and localhost), and writes both certificates and the server's key into
/// `dir`. ECDSA P-256 keys (rcgen's default, ring cannot make RSA ones): a server with an
/// RSA 2048 certificate spends more per handshake than this.
fn write_certificates(dir: &Path) -> Result<(), BrokerError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let secret = |e: rcgen::Error| BrokerError::Secrets(format!("a TLS certificate: {e}"));
    let ca_key = KeyPair::generate().map_err(secret)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(secret)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fleetsim embedded broker CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(secret)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().map_err(secret)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(secret)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "fleetsim embedded broker");
    let server_cert = params.signed_by(&server_key, &issuer).map_err(secret)?;
    for (name, pem) in [
        (CA_FILE, ca_cert.pem()),
        (CERT_FILE, server_cert.pem()),
        (KEY_FILE, server_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).map_err(BrokerError::Files)?;
    }
    Ok(())
}

/// How many sets of free ports a first start tries.
const PORT_TRIES: u32 = 3;

/// How long a stopping server gets after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// Limits the embedded broker is configured with.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub max_connections: u64,
    pub request_queue_limit: u64,
    pub default_max_consumers: i64,
    pub lame_duck_duration: Duration,
    pub lame_duck_grace_period: Duration,
    /// When the server drops a client it does not hear from or cannot write to.
    pub keepalive: ServerKeepalive,
}

/// How the embedded broker's clients connect: over TLS or plain TCP, and with which kind
/// of credentials. The default is plain and unauthenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddedSecurity {
    pub tls: bool,
    pub auth: AuthMode,
}

/// How the embedded broker's process is started, beside its config: which binary and
/// on which CPUs, with how much of them. The default is the binary [`find_binary`]
/// finds, on any CPU, unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbeddedLaunch {
    /// The nats-server binary to run (`[broker] server`); `None`: [`find_binary`]'s.
    pub binary: Option<PathBuf>,
    /// The CPUs the server may run on (`[broker] cpus`); `None`: wherever the OS puts it.
    pub cpus: Option<CpuList>,
    /// The share of one CPU the server may use (`[broker] cpu_quota`); `None`: no limit.
    pub cpu_quota: Option<CpuQuota>,
}

pub struct EmbeddedBroker {
    child: Option<Child>,
    /// The current process's pid, shared with the sampler that reads its CPU time.
    process: BrokerProcess,
    binary: PathBuf,
    /// Every start of the server is pinned to these CPUs.
    cpus: Option<CpuList>,
    /// Every start of the server joins this cgroup (`cpu_quota`); declared after
    /// `child` so it is removed after the process is gone.
    cgroup: Option<BrokerCgroup>,
    /// Holds the config, log and store; removed when the broker is dropped.
    dir: tempfile::TempDir,
    port: u16,
    http_port: u16,
    options: EmbeddedOptions,
    version: Option<String>,
    /// Password of the system-account user (random per broker, never logged): the
    /// API queue's LIMIT_REACHED advisory is published in the system account only.
    system_password: String,
    security: EmbeddedSecurity,
    /// What the fleet's clients present (made at start, never logged).
    client_auth: Auth,
    /// The fleet user's public nkey, for the config (`auth = "nkey"`).
    nkey_public: Option<String>,
}

impl EmbeddedBroker {
    /// Finds the binary, writes the config, starts the server and waits until it is healthy.
    pub async fn start(options: EmbeddedOptions) -> Result<Self, BrokerError> {
        Self::start_secured(options, EmbeddedSecurity::default()).await
    }

    /// [`EmbeddedBroker::start`] with TLS and authentication as `security` says.
    pub async fn start_secured(
        options: EmbeddedOptions,
        security: EmbeddedSecurity,
    ) -> Result<Self, BrokerError> {
        Self::launch(options, security, EmbeddedLaunch::default()).await
    }

    /// [`EmbeddedBroker::start_secured`] with the binary, CPUs and CPU quota `how`
    /// names, all checked before anything is written: a binary that is missing or not
    /// executable, a CPU this process may not use, or a quota above the CPUs the server
    /// may run on or without a cgroup to enforce it, is an error naming it.
    pub async fn launch(
        options: EmbeddedOptions,
        security: EmbeddedSecurity,
        how: EmbeddedLaunch,
    ) -> Result<Self, BrokerError> {
        let binary = match how.binary {
            Some(path) => chosen_binary(&path)?,
            None => find_binary().ok_or(BrokerError::BinaryNotFound)?,
        };
        if let Some(cpus) = &how.cpus {
            check_cpus(cpus)?;
        }
        let cgroup = match how.cpu_quota {
            Some(quota) => {
                check_quota(quota, how.cpus.as_ref())?;
                Some(BrokerCgroup::create(quota)?)
            }
            None => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("fleetsim-broker-")
            .tempdir()
            .map_err(BrokerError::Files)?;
        let port = free_port().map_err(BrokerError::Files)?;
        let http_port = free_port().map_err(BrokerError::Files)?;
        let version = server_version(&binary).await;
        if security.tls {
            write_certificates(dir.path())?;
        }
        let (client_auth, nkey_public) = match security.auth {
            AuthMode::None => (Auth::None, None),
            AuthMode::Token => (Auth::Token(random_password()), None),
            AuthMode::User => (
                Auth::UserPassword(FLEET_USER.to_string(), random_password()),
                None,
            ),
            AuthMode::Nkey => {
                let pair = nkeys::KeyPair::new_user();
                let seed = pair
                    .seed()
                    .map_err(|e| BrokerError::Secrets(format!("a user nkey: {e}")))?;
                (Auth::NKey(seed), Some(pair.public_key()))
            }
        };
        let mut broker = EmbeddedBroker {
            child: None,
            process: BrokerProcess::default(),
            binary,
            cpus: how.cpus,
            cgroup,
            dir,
            port,
            http_port,
            options,
            version,
            system_password: random_password(),
            security,
            client_auth,
            nkey_public,
        };
        // The ports were free when picked, but another process can take one before the
        // server binds it (a connection's ephemeral port, another broker's pick): then
        // the server exits at once saying so, and the start picks again.
        let mut tries = 1;
        loop {
            std::fs::write(broker.config_path(), broker.config_text())
                .map_err(BrokerError::Files)?;
            match broker.spawn_and_wait().await {
                Err(BrokerError::ExitedEarly { log_tail, .. })
                    if tries < PORT_TRIES && log_tail.contains("address already in use") =>
                {
                    tries += 1;
                    broker.port = free_port().map_err(BrokerError::Files)?;
                    broker.http_port = free_port().map_err(BrokerError::Files)?;
                }
                started => return started.map(|()| broker),
            }
        }
    }

    /// User and password of the system account, for fleetsim's own advisory listener.
    /// With `auth = "token"` the account has no user (see [`Self::has_system_user`]).
    pub fn system_user(&self) -> (&str, &str) {
        (SYSTEM_USER, &self.system_password)
    }

    /// nats-server refuses a token beside `accounts` ("Can not have a token and
    /// accounts"), so a token-authenticated broker runs without them: its system account
    /// has no user, and the API queue's LIMIT_REACHED advisory cannot be heard.
    pub fn has_system_user(&self) -> bool {
        self.security.auth != AuthMode::Token
    }

    pub fn security(&self) -> EmbeddedSecurity {
        self.security
    }

    /// What a client of the fleet's account presents and trusts: the generated secret
    /// and, with TLS, the broker's CA.
    pub fn credentials(&self) -> Credentials {
        self.credentials_with(self.client_auth.clone())
    }

    /// [`Self::credentials`] as the system-account user.
    pub fn system_credentials(&self) -> Credentials {
        self.credentials_with(Auth::UserPassword(
            SYSTEM_USER.to_string(),
            self.system_password.clone(),
        ))
    }

    fn credentials_with(&self, auth: Auth) -> Credentials {
        Credentials {
            auth,
            tls_ca: self.security.tls.then(|| self.ca_path()),
        }
    }

    /// The client URL agents connect to: `tls://` with TLS, so the manifest shows it.
    pub fn url(&self) -> String {
        let scheme = if self.security.tls { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate (PEM) that signed the server's, with `tls`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join(CA_FILE)
    }

    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The current process, for its CPU time (see [`BrokerProcess`]).
    pub fn process(&self) -> BrokerProcess {
        self.process.clone()
    }

    /// The running server's process id; `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// The nats-server binary this broker runs (and reports the version of).
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The CPUs every start of the server is pinned to, if any.
    pub fn cpus(&self) -> Option<&CpuList> {
        self.cpus.as_ref()
    }

    /// The cgroup every start of the server joins (`cpu_quota`), if any.
    pub fn cgroup(&self) -> Option<&BrokerCgroup> {
        self.cgroup.as_ref()
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    pub fn info(&self) -> BrokerInfo {
        BrokerInfo {
            kind: "embedded",
            url: self.url(),
            monitor_url: Some(self.monitor_url()),
            version: self.version.clone(),
            limits: BrokerLimits {
                max_connections: Some(self.options.max_connections),
                request_queue_limit: Some(self.options.request_queue_limit),
                default_max_consumers: Some(self.options.default_max_consumers),
            },
            api_limit_reached_counted: false,
        }
    }

    /// Stops the server: SIGTERM (or SIGKILL when `kill`), then waits for the process to
    /// exit; a server that ignores SIGTERM for a minute is killed.
    pub async fn stop(&mut self, kill: bool) -> Result<(), BrokerError> {
        // Whatever happens next, this process is no longer the broker's.
        self.process.set(None);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            let signal = if kill { libc::SIGKILL } else { libc::SIGTERM };
            // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
        match tokio::time::timeout(STOP_WITHIN, child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Ok(())
            }
        }
    }

    /// Starts the server again on the same ports, config and store dir, once the old
    /// process is gone and both its ports are free (a dying server's threads can hold
    /// the monitoring port for a while after the client port is closed).
    pub async fn start_again(&mut self) -> Result<(), BrokerError> {
        if self.child.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        while !(port_is_free(self.port) && port_is_free(self.http_port)) {
            if started.elapsed() > HEALTHY_WITHIN {
                return Err(BrokerError::NotHealthy {
                    secs: HEALTHY_WITHIN.as_secs(),
                    log_tail: format!(
                        "ports {} and {} still in use after the old server exited",
                        self.port, self.http_port
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.spawn_and_wait().await
    }

    /// Puts the server in lame-duck mode (`nats-server --signal ldm=<pid>`) and waits for
    /// it to close its clients and exit (`lame_duck_grace_period` + `lame_duck_duration`,
    /// plus the JetStream shutdown).
    pub async fn lame_duck(&mut self) -> Result<(), BrokerError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let output = Command::new(&self.binary)
            .arg("--signal")
            .arg(format!("ldm={pid}"))
            .output()
            .await
            .map_err(|source| BrokerError::Spawn {
                path: self.binary.display().to_string(),
                source,
            })?;
        if !output.status.success() {
            return Err(BrokerError::Signal(format!(
                "nats-server --signal ldm={pid} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let within =
            self.options.lame_duck_grace_period + self.options.lame_duck_duration + STOP_WITHIN;
        self.process.set(None);
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(within, child.wait()).await.is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        Ok(())
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.conf")
    }

    fn config_text(&self) -> String {
        let o = &self.options;
        let mut text = format!(
            "# written by fleetsim: the embedded broker under test\n\
             server_name: fleetsim\n\
             listen: 127.0.0.1:{port}\n\
             http: 127.0.0.1:{http}\n\
             max_connections: {maxc}\n\
             lame_duck_duration: \"{ldd}ms\"\n\
             lame_duck_grace_period: \"{ldg}ms\"\n\
             jetstream {{\n  store_dir: {store:?}\n  request_queue_limit: {rql}\n  \
             limits {{ default_max_consumers: {dmc} }}\n}}\n",
            port = self.port,
            http = self.http_port,
            maxc = o.max_connections,
            store = self.store_dir().display().to_string(),
            rql = o.request_queue_limit,
            dmc = o.default_max_consumers,
            ldd = o.lame_duck_duration.as_millis(),
            ldg = o.lame_duck_grace_period.as_millis(),
        );
        let k = &o.keepalive;
        let ms = |d: Duration| format!("\"{}ms\"", d.as_millis());
        for (key, value) in [
            ("ping_interval", k.ping_interval.map(ms)),
            ("ping_max", k.ping_max.map(|n| n.to_string())),
            ("write_deadline", k.write_deadline.map(ms)),
            ("max_pending", k.max_pending.map(|n| n.to_string())),
            ("max_payload", k.max_payload.map(|n| n.to_string())),
        ] {
            if let Some(value) = value {
                text.push_str(&format!("{key}: {value}\n"));
            }
        }
        if self.security.tls {
            let path = |name: &str| self.dir.path().join(name).display().to_string();
            text.push_str(&format!(
                "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
                path(CERT_FILE),
                path(KEY_FILE),
            ));
        }
        let fleet_user = match &self.client_auth {
            Auth::Token(token) => {
                // No accounts beside a token (see has_system_user): JetStream runs in
                // the global account.
                text.push_str(&format!("authorization {{ token: {token:?} }}\n"));
                return text;
            }
            Auth::UserPassword(user, password) => {
                format!("{{ user: {user:?}, password: {password:?} }}")
            }
            Auth::NKey(_) => format!(
                "{{ nkey: {:?} }}",
                self.nkey_public.as_deref().unwrap_or("")
            ),
            Auth::None => format!("{{ user: {FLEET_USER} }}"),
        };
        text.push_str(&format!(
            "# The fleet's clients land in FLEET; fleetsim listens to the system account's\n\
             # advisories as {sys_user}.\n\
             accounts {{\n  FLEET {{ jetstream: enabled, users: [{fleet_user}] }}\n  \
             SYS {{ users: [{{ user: {sys_user}, password: {sys_pass:?} }}] }}\n}}\n\
             system_account: SYS\n",
            sys_user = SYSTEM_USER,
            sys_pass = self.system_password,
        ));
        if self.client_auth == Auth::None {
            // Clients without credentials are this user.
            text.push_str(&format!("no_auth_user: {FLEET_USER}\n"));
        }
        text
    }

    async fn spawn_and_wait(&mut self) -> Result<(), BrokerError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(BrokerError::Files)?;
        let log_err = log.try_clone().map_err(BrokerError::Files)?;
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        if let Some(cpus) = &self.cpus {
            pin_to(&mut command, cpus);
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.join_on_spawn(&mut command);
        }
        let child = command.spawn().map_err(|source| BrokerError::Spawn {
            path: self.binary.display().to_string(),
            source,
        })?;
        self.process.set(child.id());
        self.child = Some(child);
        self.wait_healthy().await
    }

    /// Polls `/healthz` until the server says ok. Polling is the only way to learn when
    /// another process is ready; the process exiting meanwhile ends the wait at once.
    async fn wait_healthy(&mut self) -> Result<(), BrokerError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(BrokerError::ExitedEarly {
                    status: status.to_string(),
                    log_tail: log_tail(&self.log_path()),
                });
            }
            if let Ok(body) =
                monitor::get_json(&self.monitor_url(), "/healthz", Duration::from_secs(2)).await
                && body.get("status").and_then(|s| s.as_str()) == Some("ok")
            {
                return Ok(());
            }
            if started.elapsed() > HEALTHY_WITHIN {
                return Err(BrokerError::NotHealthy {
                    secs: HEALTHY_WITHIN.as_secs(),
                    log_tail: log_tail(&self.log_path()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            // The cgroup (dropped next) can only be removed once the process has left
            // it: reap the killed process here rather than leave that to tokio.
            if self.cgroup.is_some() {
                let started = Instant::now();
                while matches!(child.try_wait(), Ok(None)) && started.elapsed() < STOP_WITHIN {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// `$NATS_SERVER_BIN`, then `.tools/bin/nats-server` (in the working directory, beside
/// the fleetsim binary's project, or in the source tree it was built from), then `$PATH`.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for root in roots {
        let candidate = root.join(".tools/bin/nats-server");
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// `[broker] server`, checked: an executable file, as an absolute path (a bare name is
/// not looked up in `$PATH`, as `Command` would).
fn chosen_binary(path: &Path) -> Result<PathBuf, BrokerError> {
    use std::os::unix::fs::PermissionsExt;
    let problem = |problem: String| BrokerError::Server {
        path: path.display().to_string(),
        problem,
    };
    let metadata = std::fs::metadata(path).map_err(|e| problem(e.to_string()))?;
    if !metadata.is_file() {
        return Err(problem("not a file".to_string()));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(problem("not executable (chmod +x it)".to_string()));
    }
    std::path::absolute(path).map_err(|e| problem(e.to_string()))
}

/// The CPUs this process may run on (its own affinity), ascending.
fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it and is
    // given its exact size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let max = libc::CPU_SETSIZE as usize;
    // SAFETY: CPU_ISSET reads one bit of the set, cpu < CPU_SETSIZE.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Every CPU of `cpus` is one fleetsim itself may run on: the kernel would otherwise pin
/// the server to the ones that are, or refuse, and the run would not be the one asked for.
fn check_cpus(cpus: &CpuList) -> Result<(), BrokerError> {
    let allowed = allowed_cpus().map_err(|e| BrokerError::Cpus {
        cpus: cpus.to_string(),
        problem: format!("cannot read this process's CPUs: {e}"),
    })?;
    let missing: Vec<usize> = cpus
        .cpus()
        .iter()
        .copied()
        .filter(|cpu| !allowed.contains(cpu))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown = |list: Vec<usize>| CpuList::new(list).map_or_else(String::new, |l| l.to_string());
    Err(BrokerError::Cpus {
        cpus: cpus.to_string(),
        problem: format!(
            "CPU {} not among those fleetsim may use here ({})",
            shown(missing),
            shown(allowed)
        ),
    })
}

/// A quota no larger than the CPUs the server may run on (`cpus`, else this process's
/// own): more could never be used, and the run would not be the slowdown asked for.
fn check_quota(quota: CpuQuota, cpus: Option<&CpuList>) -> Result<(), BrokerError> {
    let problem = |problem: String| BrokerError::CpuQuota {
        quota: quota.to_string(),
        problem,
    };
    let (count, which) = match cpus {
        Some(cpus) => (cpus.cpus().len(), format!("cpus = \"{cpus}\"")),
        None => {
            let allowed = allowed_cpus()
                .map_err(|e| problem(format!("cannot read this process's CPUs: {e}")))?;
            let shown = CpuList::new(allowed.clone()).map_or_else(String::new, |l| l.to_string());
            (
                allowed.len(),
                format!("the CPUs fleetsim may use here ({shown})"),
            )
        }
    };
    if quota.share() > count as f64 {
        return Err(problem(format!(
            "more than {which} can give ({}% at most)",
            count * 100
        )));
    }
    Ok(())
}

/// Pins the process `command` starts to `cpus`: `sched_setaffinity` in the child before
/// it execs, inherited by every thread the server starts.
fn pin_to(command: &mut Command, cpus: &CpuList) {
    // SAFETY: a zeroed cpu_set_t is an empty set; every CPU of a CpuList is below
    // CPU_SETSIZE (the scenario refuses more), so CPU_SET stays inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.cpus() {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let pin = move || {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: one system call on the set owned by this closure.
        if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe system call; it allocates nothing and takes no lock.
    unsafe { command.pre_exec(pin) };
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Asks the OS for a free loopback port. Another process could take it before the server
/// binds it; the server then fails to start and says so in its log.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn server_version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().await.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with('v'))
        .map(|v| v.trim_start_matches('v').to_string())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
