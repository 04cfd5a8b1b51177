//! The `fleetsim` binary as an operator (or a CI job) runs it: exit codes, what goes to
//! stderr, and that every shipped scenario validates.

mod common;

use common::{fleetsim, project_root, read_csv, text};

#[test]
fn every_shipped_scenario_passes_validate() {
    let root = project_root();
    let mut files: Vec<String> = std::fs::read_dir(root.join("scenarios"))
        .expect("scenarios/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "scenarios/ holds the examples: {files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = fleetsim(&args, &root);
    assert!(
        out.status.success(),
        "validate failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for f in &files {
        assert!(
            text(&out.stdout).contains(&format!("{f}: ok")),
            "{f} not reported ok"
        );
    }
}

#[test]
fn a_bad_scenario_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[fleet]\nagents = 10\nagnets = 3\n\n[[steps]]\nkind = \"start\"\n",
    )
    .expect("write scenario");
    let out = fleetsim(&["validate", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml:3"), "names file and line: {err}");
    assert!(err.contains("agnets"), "names the key: {err}");

    // `run` refuses the same file before starting anything.
    let out = fleetsim(&["run", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn agents_override_below_a_named_agent_index_exits_2_before_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pcs.toml"),
        "[fleet]\nagents = 10\n\n[[steps]]\nkind = \"start\"\n\n\
         [[steps]]\nkind = \"write\"\ntarget = \"pcs\"\nagents = [1, 8]\ncount = 1\n",
    )
    .expect("write scenario");
    let out = fleetsim(&["validate", "pcs.toml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = fleetsim(&["run", "pcs.toml", "--agents", "5"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("2:write") && err.contains("agent 8"), "{err}");
    assert!(
        !dir.path().join("results").exists(),
        "nothing ran, so no results were written"
    );
}

#[test]
fn a_fleet_beyond_the_open_files_limit_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("big.toml"),
        "[fleet]\nagents = 10\n\n[[steps]]\nkind = \"start\"\n",
    )
    .expect("write scenario");
    // Five million agents: one descriptor each is beyond any usual hard limit.
    let out = fleetsim(&["run", "big.toml", "--agents", "5000000"], dir.path());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("open files"), "names the limit: {err}");
    assert!(err.contains("Run at most"), "says what fits: {err}");
    assert!(err.contains("ulimit -Hn"), "says the fix: {err}");
    assert!(
        !err.contains("provisioned"),
        "refused before provisioning: {err}"
    );
}

#[test]
fn a_missing_scenario_file_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = fleetsim(&["validate", "nope.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope.toml"));
}

#[test]
fn a_run_whose_agents_fail_exits_1_and_still_writes_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A cap of 2 consumers per stream: agent_groups holds 2 per agent, so at most one
    // of the four agents can become ready.
    std::fs::write(
        dir.path().join("capped.toml"),
        r#"name = "capped"
[broker]
default_max_consumers = 2
[fleet]
agents = 4
setup_retries = 0
[[steps]]
kind = "start"
[[steps]]
kind = "wait_ready"
timeout = "30s"
"#,
    )
    .expect("write scenario");
    let out = fleetsim(&["run", "capped.toml", "--out", "out"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("agents failed"));
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .expect("results base created")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(runs.len(), 1, "one run directory: {runs:?}");
    let agents = read_csv(&runs[0], "agents.csv");
    assert_eq!(agents.len(), 4, "every agent has a row");
    assert!(agents.iter().any(|a| a["state"] == "failed"));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs[0].join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["status"], "failed");
    assert!(manifest["process"]["max_rss_kib"].as_u64().unwrap_or(0) > 0);
}

/// A loopback URL nothing listens on: a run against it fails to connect (exit 3).
fn closed_server() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("nats://127.0.0.1:{port}")
}

#[test]
fn run_and_sweep_refuse_a_broker_restart_against_server_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("restart.toml"),
        "[fleet]\nagents = 4\n\n[[steps]]\nkind = \"start\"\n\n[[steps]]\nkind = \"broker_restart\"\n",
    )
    .expect("write scenario");
    let server = closed_server();
    let run = ["run", "restart.toml", "--server", &server];
    let sweep = [
        "sweep",
        "restart.toml",
        "--agents",
        "2,4",
        "--server",
        &server,
    ];
    for args in [&run[..], &sweep[..]] {
        let out = fleetsim(args, dir.path());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("restart.toml: step 2:broker_restart restarts the embedded broker, which --server replaces"),
            "{args:?}: {err}"
        );
        assert!(err.contains("--herd-command"), "says the fix: {err}");
        assert!(
            !dir.path().join("results").exists(),
            "{args:?}: refused before anything ran"
        );
        // With the fix it names, both go on to the broker (which is not there: exit 3).
        let mut fixed = args.to_vec();
        fixed.extend(["--herd-command", "true", "--out", "out"]);
        let out = fleetsim(&fixed, dir.path());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{fixed:?}: {err}");
        assert!(err.contains("cannot connect"), "{fixed:?}: {err}");
    }
}

#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("tiny.toml"),
        "[fleet]\nagents = 2\n\n[[steps]]\nkind = \"start\"\n",
    )
    .expect("write scenario");
    // The run logs its start, then cannot connect.
    let server = closed_server();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["run", "tiny.toml", "--server", &server, "--out", "out"])
        .current_dir(dir.path())
        .env("FLEETSIM_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .expect("fleetsim binary runs");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(" INFO "), "a log line was written: {err}");
    assert!(
        !out.stderr.contains(&0x1b),
        "no ANSI escape in piped logs: {err:?}"
    );
}
