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
/// the first Ctrl-C or SIGTERM ([`interrupted`]): the `shutdown` the library's entry
/// points take.
///
/// Three environment variables change the runtime for benchmarks of fleetsim's own cost
/// (scripts/bench-levers.sh; results/bench/levers.md says what each measured). They change
/// nothing the broker sees, only how fleetsim's process schedules its agents:
/// `FLEETSIM_RUNTIME` (`multi_thread`, the default, or `current_thread`),
/// `FLEETSIM_WORKER_THREADS` (the multi-thread runtime's workers; tokio's default is one
/// per core) and `FLEETSIM_GLOBAL_QUEUE_INTERVAL` (a whole number, or `auto` for tokio's
/// own tuning; default 1, see below). A bad value is an error, not a silent default.
pub fn runtime() -> std::io::Result<(Runtime, impl Future<Output = ()>)> {
    let tuning = RuntimeTuning::from_env(|name| std::env::var(name).ok())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let runtime = tuning.builder().enable_all().build()?;
    Ok((runtime, interrupted()))
}

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM: a CI runner cancelling a job, a
/// container stopping and `kill` send SIGTERM, and a run must stop its broker and proxy
/// and write what it measured then too, not leave an orphaned nats-server behind. A signal
/// that cannot be listened for never resolves.
async fn interrupted() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The runtime's flavour and tuning (see [`runtime`]).
#[derive(Debug, PartialEq, Eq)]
struct RuntimeTuning {
    current_thread: bool,
    workers: Option<usize>,
    /// `None`: tokio's own (self-tuning) interval.
    global_queue_interval: Option<u32>,
}

impl RuntimeTuning {
    /// Reads the `FLEETSIM_*` runtime variables through `var`.
    fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let current_thread = match var("FLEETSIM_RUNTIME").as_deref() {
            None | Some("multi_thread") => false,
            Some("current_thread") => true,
            Some(other) => {
                return Err(format!(
                    "FLEETSIM_RUNTIME={other:?}: expected multi_thread or current_thread"
                ));
            }
        };
        let workers = match var("FLEETSIM_WORKER_THREADS") {
            None => None,
            Some(n) => match n.parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "FLEETSIM_WORKER_THREADS={n:?}: expected a positive whole number"
                    ));
                }
            },
        };
        // The global queue first: an all-at-once start wakes every agent into it, and
        // their first connect attempts should all run before the first ones' handshakes
        // (which the workers' local queues hold) continue: the herd fires sharply
        // (`fire_skew`, src/fleet/mod.rs StartGate).
        let global_queue_interval = match var("FLEETSIM_GLOBAL_QUEUE_INTERVAL").as_deref() {
            None => Some(1),
            Some("auto") => None,
            Some(n) => match n.parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "FLEETSIM_GLOBAL_QUEUE_INTERVAL={n:?}: expected a positive whole number or auto"
                    ));
                }
            },
        };
        Ok(RuntimeTuning {
            current_thread,
            workers,
            global_queue_interval,
        })
    }

    fn builder(&self) -> tokio::runtime::Builder {
        let mut builder = if self.current_thread {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        };
        if let Some(n) = self.workers.filter(|_| !self.current_thread) {
            builder.worker_threads(n);
        }
        if let Some(n) = self.global_queue_interval {
            builder.global_queue_interval(n);
        }
        builder
    }
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

#[cfg(test)]
mod tests {
    use super::RuntimeTuning;

    fn tuning(vars: &[(&str, &str)]) -> Result<RuntimeTuning, String> {
        RuntimeTuning::from_env(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        })
    }

    #[test]
    fn runtime_defaults_to_multi_thread_with_the_global_queue_first() {
        let t = tuning(&[]).expect("no variables");
        assert_eq!(
            t,
            RuntimeTuning {
                current_thread: false,
                workers: None,
                global_queue_interval: Some(1),
            }
        );
    }

    #[test]
    fn runtime_variables_are_read() {
        let t = tuning(&[
            ("FLEETSIM_RUNTIME", "current_thread"),
            ("FLEETSIM_WORKER_THREADS", "3"),
            ("FLEETSIM_GLOBAL_QUEUE_INTERVAL", "auto"),
        ])
        .expect("valid");
        assert!(t.current_thread);
        assert_eq!(t.workers, Some(3));
        assert_eq!(t.global_queue_interval, None);
        let t = tuning(&[("FLEETSIM_GLOBAL_QUEUE_INTERVAL", "31")]).expect("valid");
        assert_eq!(t.global_queue_interval, Some(31));
    }

    #[test]
    fn bad_runtime_variables_are_errors() {
        for (name, value) in [
            ("FLEETSIM_RUNTIME", "multi"),
            ("FLEETSIM_WORKER_THREADS", "0"),
            ("FLEETSIM_WORKER_THREADS", "two"),
            ("FLEETSIM_GLOBAL_QUEUE_INTERVAL", "0"),
        ] {
            let err = tuning(&[(name, value)]).expect_err(name);
            assert!(err.contains(name), "{err}");
        }
    }
}
