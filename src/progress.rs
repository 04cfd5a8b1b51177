//! Where a long run is, for the person (or CI log) watching it.
//!
//! On a terminal: one live line (indicatif) with the current step, elapsed time and the
//! agents ready / recovering / starting / failed, redrawn 5 times a second. Elsewhere
//! (CI): a plain log line every 5 s, so a log file is not flooded with redraws.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::fleet::Roster;
use crate::step::StepInfo;

const TERMINAL_EVERY: Duration = Duration::from_millis(200);
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The progress reporter of one run; stops when dropped or finished.
pub struct Progress {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Progress {
    pub fn start(roster: Arc<Roster>, mut step: watch::Receiver<StepInfo>) -> Progress {
        let (stop, mut stopped) = watch::channel(false);
        let terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let bar = terminal.then(|| {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            });
            let mut step_began = Instant::now();
            loop {
                let label = step.borrow_and_update().label();
                let c = roster.counts();
                let line = format!(
                    "step {label} {:.1}s | ready {} | recovering {} | starting {} | failed {} | connected {}",
                    step_began.elapsed().as_secs_f64(),
                    c.ready,
                    c.recovering,
                    c.connecting + c.opening + c.syncing,
                    c.failed,
                    roster.connected(),
                );
                match &bar {
                    Some(bar) => bar.set_message(line),
                    None => info!("{line}"),
                }
                let wait = if terminal { TERMINAL_EVERY } else { LOG_EVERY };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    changed = step.changed() => {
                        if changed.is_err() { break; }
                        step_began = Instant::now();
                    }
                    _ = stopped.changed() => break,
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Progress { stop, task }
    }

    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
