//! How the embedded broker's process runs: `[broker] cpus` pins it (every start of it,
//! restarts included) and `[broker] server` chooses its binary, whose version the
//! manifest then records; a `server` that cannot run is an error naming it; `[broker]
//! cpu_quota` puts it (and its restarts) in a cgroup with that CFS quota.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetsim::broker::cgroup::CgroupVersion;
use fleetsim::broker::embedded::{
    EmbeddedBroker, EmbeddedLaunch, EmbeddedOptions, EmbeddedSecurity, find_binary,
};
use fleetsim::run::{RunErrorKind, RunOptions};

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        max_connections: 1000,
        request_queue_limit: 10_000,
        default_max_consumers: -1,
        lame_duck_duration: Duration::from_secs(30),
        lame_duck_grace_period: Duration::from_secs(1),
        keepalive: Default::default(),
    }
}

/// `Cpus_allowed_list` of every thread of process `pid`, as the kernel reports it.
/// The error of a launch that must fail before the broker runs; `what` names the broker
/// in the panic if it started.
async fn launch_error(how: EmbeddedLaunch, what: &str) -> String {
    match EmbeddedBroker::launch(options(), EmbeddedSecurity::default(), how).await {
        Ok(_) => panic!("{what} started"),
        Err(e) => e.to_string(),
    }
}

fn cpus_allowed(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    tasks
        .map(|task| {
            let status = std::fs::read_to_string(task.expect("task").path().join("status"))
                .expect("a thread's status");
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .expect("Cpus_allowed_list")
                .trim()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpus_pins_every_thread_of_the_broker_and_survives_a_restart() {
    let cpus = fleetsim::scenario::parse_str(
        "[broker]\ncpus = \"0\"\n[fleet]\nagents = 1\n[[steps]]\nkind = \"start\"\n",
        "cpus.toml",
    )
    .expect("valid")
    .broker
    .cpus;
    let how = EmbeddedLaunch {
        binary: None,
        cpus,
        cpu_quota: None,
    };
    let mut broker = EmbeddedBroker::launch(options(), EmbeddedSecurity::default(), how)
        .await
        .expect("a pinned broker starts");
    assert_eq!(broker.cpus().map(ToString::to_string).as_deref(), Some("0"));
    let pid = broker.pid().expect("running");
    let threads = cpus_allowed(pid);
    assert!(threads.len() > 1, "a Go server runs several threads");
    assert!(threads.iter().all(|c| c == "0"), "{threads:?}");

    broker.stop(true).await.expect("stops");
    broker.start_again().await.expect("starts again");
    let again = broker.pid().expect("running again");
    assert_ne!(again, pid, "a new process");
    let threads = cpus_allowed(again);
    assert!(
        threads.iter().all(|c| c == "0"),
        "after the restart: {threads:?}"
    );
}

#[tokio::test]
async fn a_cpu_fleetsim_may_not_use_is_an_error_naming_it() {
    let cpus = fleetsim::plan::CpuList::new(vec![0, 1023]);
    let how = EmbeddedLaunch {
        binary: None,
        cpus,
        cpu_quota: None,
    };
    let message = launch_error(how, "a broker pinned to CPU 1023").await;
    assert!(
        message.starts_with(
            "[broker] cpus = \"0,1023\": CPU 1023 not among those fleetsim may use here"
        ),
        "{message}"
    );
}

/// A stand-in for another nats-server release: a script that reports its own version
/// and runs the real server for everything else.
fn other_release(dir: &Path) -> PathBuf {
    let real = find_binary().expect("nats-server for tests (NATS_SERVER_BIN)");
    let path = dir.join("nats-server-other");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo \"nats-server: v2.99.0-other\"; exit 0; fi\nexec {:?} \"$@\"\n",
        real.display().to_string()
    );
    std::fs::write(&path, script).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// `[broker] server` runs that binary, and the manifest's broker version is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_runs_the_binary_named_and_the_manifest_says_its_version() {
    let work = tempfile::tempdir().expect("tempdir");
    let server = other_release(work.path());
    let scenario = format!(
        "[broker]\nserver = {:?}\n\n[fleet]\nagents = 2\n\n[[steps]]\nkind = \"start\"\n\n\
         [[steps]]\nkind = \"wait_ready\"\ntimeout = \"60s\"\n",
        server.display().to_string()
    );
    let report = common::run_scenario(&scenario, &work.path().join("out")).await;
    assert_eq!(
        report.status,
        fleetsim::results::RunStatus::Ok,
        "{:?}",
        report.reasons
    );
    let manifest = common::manifest(&report.dir);
    let broker = manifest.broker.expect("the broker came up");
    assert_eq!(broker.version.as_deref(), Some("2.99.0-other"));
    assert_eq!(
        manifest.settings["broker"]["server"],
        server.display().to_string()
    );
}

/// A `server` that is missing, or not executable, stops the run before anything starts
/// (exit 3, as for a missing nats-server), naming the path and what is wrong.
#[tokio::test]
async fn a_server_that_cannot_run_is_an_error_naming_it() {
    let work = tempfile::tempdir().expect("tempdir");
    let not_executable = work.path().join("nats-server-plain");
    std::fs::write(&not_executable, "not a program").expect("file");
    let missing = work.path().join("no-such-nats-server");
    for (path, problem) in [
        (&missing, "No such file or directory"),
        (&not_executable, "not executable (chmod +x it)"),
    ] {
        let scenario = format!(
            "[broker]\nserver = {:?}\n\n[fleet]\nagents = 1\n\n[[steps]]\nkind = \"start\"\n",
            path.display().to_string()
        );
        let plan = fleetsim::scenario::parse_str(&scenario, "server.toml").expect("valid");
        let options = RunOptions {
            scenario_path: None,
            scenario_text: scenario.clone(),
            results_base: work.path().join("out"),
            run_dir: None,
            proxy_program: None,
        };
        let e = fleetsim::run::run(plan, options, std::future::pending())
            .await
            .expect_err("the run cannot start its broker");
        assert_eq!(e.kind(), RunErrorKind::Environment);
        let message = e.to_string();
        let expected = format!("[broker] server {}: ", path.display());
        assert!(
            message.starts_with(&expected) && message.contains(problem),
            "{message}"
        );
    }
}

/// The cgroup line of process `pid` (`/proc/<pid>/cgroup`) for the cpu controller (v1)
/// or the unified hierarchy (v2).
fn cpu_cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroups");
    text.lines()
        .find(|l| {
            let controllers = l.split(':').nth(1).unwrap_or("");
            controllers.split(',').any(|c| c == "cpu")
        })
        .or_else(|| text.lines().find(|l| l.starts_with("0::")))
        .expect("a cpu cgroup line")
        .to_string()
}

/// Where fleetsim makes its cgroups on this machine.
fn mountinfo_cpu_hierarchy() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    fleetsim::broker::cgroup::cpu_hierarchy(&mountinfo)
        .expect("a cgroup hierarchy with cpu")
        .0
}

/// `cpu_quota` puts every start of the server into a cgroup of its own with that CFS
/// quota, and the cgroup goes with the broker. Root only: elsewhere fleetsim cannot make
/// the cgroup (and says so, an error this test does not cover), so it skips, loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_quota_puts_the_broker_in_a_cgroup_with_that_quota_until_it_is_dropped() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED cpu_quota_puts_the_broker_in_a_cgroup...: not root, so no cgroup can be \
             made for the broker; run the test as root to cover cpu_quota"
        );
        return;
    }
    let cpu_quota = fleetsim::scenario::parse_str(
        "[broker]\ncpu_quota = \"20%\"\n[fleet]\nagents = 1\n[[steps]]\nkind = \"start\"\n",
        "quota.toml",
    )
    .expect("valid")
    .broker
    .cpu_quota;
    // The cgroup of a fleetsim that was killed before it could remove it: a pid that
    // has exited. Found (and removed) when the next cgroup is made.
    let gone = std::process::Command::new("true")
        .spawn()
        .and_then(|mut c| c.wait().map(|_| c.id()))
        .expect("a process that exits");
    let abandoned = mountinfo_cpu_hierarchy().join(format!("fleetsim-broker-{gone}-0"));
    std::fs::create_dir(&abandoned).expect("an abandoned cgroup (as root)");
    let how = EmbeddedLaunch {
        binary: None,
        cpus: None,
        cpu_quota,
    };
    let mut broker = EmbeddedBroker::launch(options(), EmbeddedSecurity::default(), how)
        .await
        .expect("a broker with a CPU quota starts (as root)");
    let cgroup = broker.cgroup().expect("a cgroup");
    let dir = cgroup.dir().to_path_buf();
    let name = dir
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .to_string();
    assert!(name.starts_with("fleetsim-broker-"), "{name}");
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .expect(file)
            .trim()
            .to_string()
    };
    match cgroup.version() {
        CgroupVersion::V1 => {
            assert_eq!(read("cpu.cfs_period_us"), "100000");
            assert_eq!(read("cpu.cfs_quota_us"), "20000");
        }
        CgroupVersion::V2 => assert_eq!(read("cpu.max"), "20000 100000"),
    }
    assert!(!abandoned.exists(), "{} stayed", abandoned.display());
    assert_eq!(dir.parent(), abandoned.parent());
    let pid = broker.pid().expect("running");
    let line = cpu_cgroup_of(pid);
    assert!(line.ends_with(&format!("/{name}")), "{line}");
    assert!(read("cgroup.procs").lines().any(|p| p == pid.to_string()));

    broker.stop(true).await.expect("stops");
    broker.start_again().await.expect("starts again");
    let again = broker.pid().expect("running again");
    assert_ne!(again, pid, "a new process");
    let line = cpu_cgroup_of(again);
    assert!(
        line.ends_with(&format!("/{name}")),
        "after the restart: {line}"
    );

    drop(broker);
    assert!(!dir.exists(), "{} left behind", dir.display());

    // A whole run: the manifest records the share, and the run leaves no cgroup behind
    // (this is the only test that makes one, so none of this process's may remain).
    let work = tempfile::tempdir().expect("tempdir");
    let scenario = "[broker]\ncpu_quota = \"50%\"\n\n[fleet]\nagents = 2\n\n[[steps]]\n\
                    kind = \"start\"\n\n[[steps]]\nkind = \"wait_ready\"\ntimeout = \"60s\"\n";
    let report = common::run_scenario(scenario, &work.path().join("out")).await;
    assert_eq!(
        report.status,
        fleetsim::results::RunStatus::Ok,
        "{:?}",
        report.reasons
    );
    let manifest = common::manifest(&report.dir);
    assert_eq!(manifest.settings["broker"]["cpu_quota"], 0.5);
    let ours = format!("fleetsim-broker-{}-", std::process::id());
    let hierarchy = dir.parent().expect("the hierarchy");
    let left: Vec<String> = std::fs::read_dir(hierarchy)
        .expect("the cgroup hierarchy")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&ours))
        .collect();
    assert!(
        left.is_empty(),
        "cgroups left in {}: {left:?}",
        hierarchy.display()
    );
}

/// A quota above every CPU the broker may run on is an environment error naming it.
#[tokio::test]
async fn a_cpu_quota_above_the_cpus_it_may_use_is_an_error_naming_it() {
    let how = EmbeddedLaunch {
        binary: None,
        cpus: None,
        cpu_quota: fleetsim::plan::CpuQuota::from_hundredths_of_percent(102_400 * 100),
    };
    let message = launch_error(how, "a broker with a quota of 1024 CPUs").await;
    assert!(
        message.starts_with(
            "[broker] cpu_quota = \"102400%\": more than the CPUs fleetsim may use here"
        ),
        "{message}"
    );
}
