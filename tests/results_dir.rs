//! A results directory that cannot be written stops the run before anything runs: the
//! run directory is claimed before the broker starts, so nothing is measured and lost.

use std::process::Command;

/// `--out` under a regular file cannot be created, not even by root: exit 3 with the
/// path in the message, and no broker started, no agent connected.
#[test]
fn an_unwritable_results_directory_exits_3_before_the_broker_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let scenario = tmp.path().join("small.toml");
    std::fs::write(
        &scenario,
        "name = \"unwritable\"\n[fleet]\nagents = 3\n[[steps]]\nkind = \"start\"\n\
         [[steps]]\nkind = \"wait_ready\"\ntimeout = \"30s\"\n",
    )
    .expect("scenario");
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "not a directory").expect("file");
    let out = file.join("sub");
    let output = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        // At info level the run logs "run starting" once the broker is up.
        .env("FLEETSIM_LOG", "info")
        .output()
        .expect("fleetsim runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("writing results failed"), "{stderr}");
    assert!(stderr.contains(&out.display().to_string()), "{stderr}");
    for later in ["run starting", "provisioned", "step begins"] {
        assert!(
            !stderr.contains(later),
            "the run went as far as {later:?}:\n{stderr}"
        );
    }
    assert!(!out.exists());
}
