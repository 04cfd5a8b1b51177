//! Herd results: the 100 ms timeline, fleet recovery per herd step, and the agents that
//! did not recover (by id, with the state they were last seen in).

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use super::write_csv;
use crate::timeseries::Sample;

/// Column order of `timeseries.csv` (the fields of `timeseries::Sample`).
pub const TIMESERIES_COLUMNS: [&str; 24] = [
    "t_secs",
    "step",
    "connected",
    "ready",
    "recovering",
    "starting",
    "failed",
    "herd_recovered",
    "creates_started",
    "creates_completed",
    "creates_in_flight",
    "api_consumer_create",
    "api_consumer_delete",
    "api_stream_info",
    "api_other",
    "consumers_created",
    "consumers_deleted",
    "api_limit_reached",
    "errors_timeout",
    "errors_no_responders",
    "errors_jetstream",
    "errors_connection_refused",
    "errors_other",
    "step_marker",
];

/// Column order of `recovery.csv`.
pub const RECOVERY_COLUMNS: [&str; 14] = [
    "step",
    "trigger",
    "trigger_secs",
    "agents",
    "recovered",
    "not_recovered",
    "probe_writes",
    "probe_writes_acked",
    "first_probe_ack_secs",
    "recovered_50_secs",
    "recovered_90_secs",
    "recovered_99_secs",
    "recovered_100_secs",
    "trigger_error",
];

pub use crate::herd::{HerdRecord, Unrecovered};

/// `timeseries.csv`; `step_marker` is `begin` on the first sample of each step.
pub fn write_timeseries<W: Write>(samples: &[Sample], out: W) -> csv::Result<W> {
    let mut previous: Option<&str> = None;
    let rows: Vec<Sample> = samples
        .iter()
        .map(|s| {
            let mut row = s.clone();
            row.step_marker = if previous != Some(s.step.as_str()) {
                "begin"
            } else {
                ""
            };
            previous = Some(s.step.as_str());
            row
        })
        .collect();
    write_csv(out, &TIMESERIES_COLUMNS, rows)
}

#[derive(Serialize)]
struct RecoveryRow<'a> {
    step: &'a str,
    trigger: &'a str,
    trigger_secs: String,
    agents: usize,
    recovered: usize,
    not_recovered: usize,
    probe_writes: usize,
    probe_writes_acked: usize,
    first_probe_ack_secs: Option<String>,
    recovered_50_secs: Option<String>,
    recovered_90_secs: Option<String>,
    recovered_99_secs: Option<String>,
    recovered_100_secs: Option<String>,
    trigger_error: &'a str,
}

fn secs(d: Option<Duration>) -> Option<String> {
    d.map(|d| format!("{:.3}", d.as_secs_f64()))
}

/// `recovery.csv`: one row per herd step; a fraction never reached is left empty.
pub fn write_recovery<W: Write>(herds: &[HerdRecord], out: W) -> csv::Result<W> {
    let rows = herds.iter().map(|h| RecoveryRow {
        step: &h.label,
        trigger: &h.trigger,
        trigger_secs: format!("{:.3}", h.trigger_secs),
        agents: h.agents,
        recovered: h.recovery_times.len(),
        not_recovered: h.agents.saturating_sub(h.recovery_times.len()),
        probe_writes: h.probe_writes,
        probe_writes_acked: h.probe_writes_acked,
        first_probe_ack_secs: secs(h.first_probe_ack),
        recovered_50_secs: secs(h.time_to(0.5)),
        recovered_90_secs: secs(h.time_to(0.9)),
        recovered_99_secs: secs(h.time_to(0.99)),
        recovered_100_secs: secs(h.time_to(1.0)),
        trigger_error: h.trigger_error.as_deref().unwrap_or(""),
    });
    write_csv(out, &RECOVERY_COLUMNS, rows)
}

/// `unrecovered.csv`: every agent not recovered by its herd step's timeout.
pub fn write_unrecovered<W: Write>(herds: &[HerdRecord], out: W) -> csv::Result<W> {
    #[derive(Serialize)]
    struct Row<'a> {
        step: &'a str,
        pc: &'a str,
        state: &'a str,
        connected: bool,
    }
    let rows = herds.iter().flat_map(|h| {
        h.unrecovered.iter().map(|u| Row {
            step: &h.label,
            pc: &u.pc,
            state: &u.state,
            connected: u.connected,
        })
    });
    write_csv(out, &["step", "pc", "state", "connected"], rows)
}
