//! The binary's own modules: the command line ([`args`]), one function per command
//! ([`commands`]), and what they share: the async runtime with its Ctrl-C future and the
//! `--junit`/`--json` outputs. A run's error carries its own exit code
//! ([`fleetsim::run::RunError::exit_code`]).

pub mod args;
pub mod commands;

use std::future::Future;

use fleetsim::{gate, junit};
use tokio::runtime::Runtime;

use args::OutputFlags;

/// The multi-thread runtime every async command runs on, and a future that resolves on
/// the first Ctrl-C (never, if the signal cannot be listened for): the `shutdown` the
/// library's entry points take.
pub fn runtime() -> std::io::Result<(Runtime, impl Future<Output = ()>)> {
    // The global queue first: an all-at-once start wakes every agent into it, and their
    // first connect attempts should all run before the first ones' handshakes (which
    // the workers' local queues hold) continue: the herd fires sharply (`fire_skew`,
    // src/fleet/mod.rs StartGate).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .global_queue_interval(1)
        .enable_all()
        .build()?;
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    Ok((runtime, ctrl_c))
}

impl OutputFlags {
    /// Writes the JUnit file if asked; a file that cannot be written is an environment
    /// error (exit 3), reported but not hiding the run's own outcome.
    pub fn write_junit(&self, name: &str, suites: &[junit::Suite]) -> bool {
        let Some(path) = &self.junit else {
            return true;
        };
        match junit::write(path, name, suites) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("error: cannot write JUnit file {}: {e}", path.display());
                false
            }
        }
    }

    /// Prints `text` (the outcome as a person reads it) and `json` (as a CI job does):
    /// with `--json` the JSON goes to stdout and the text to stderr.
    pub fn print(&self, text: &str, json: impl FnOnce() -> serde_json::Result<String>) {
        if self.json {
            eprintln!("{text}");
            match json() {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("error: cannot render the outcome as JSON: {e}"),
            }
        } else {
            println!("{text}");
        }
    }

    /// A command that never reached its outcome: the message on stderr, and JUnit and
    /// JSON saying why; returns `code`.
    pub fn fail_early(&self, scenario: &str, code: u8, message: &str) -> u8 {
        eprintln!("{message}");
        self.write_junit("fleetsim", &gate::error_suites(scenario, message));
        if self.json {
            let value = serde_json::json!({
                "scenario": scenario,
                "status": "error",
                "passed": false,
                "exit_code": code,
                "error": message,
            });
            println!("{value:#}");
        }
        code
    }
}
