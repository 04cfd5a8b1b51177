//! Herd results: the 100 ms timeline, fleet recovery per herd step, and the agents that
//! did not recover (by id, with the state they were last seen in).

use std::io::Write;
use std::time::Duration;

use super::files::UNRECOVERED_COLUMNS;
use super::rows::{Fixed3, RecoveryRow, UnrecoveredRow};
use super::write_csv;
use crate::timeseries::Sample;

/// Column order of `timeseries.csv` (the fields of `timeseries::Sample`).
pub const TIMESERIES_COLUMNS: [&str; 31] = [
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
    "broker_in_msgs_per_sec",
    "broker_out_msgs_per_sec",
    "broker_in_bytes_per_sec",
    "broker_out_bytes_per_sec",
    "broker_interval_secs",
    "stale_connections",
    "double_held_consumers",
    "step_marker",
];

/// Column order of `recovery.csv`.
pub const RECOVERY_COLUMNS: [&str; 18] = [
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
    "detected",
    "spared",
    "spared_recovered",
    "spared_99_secs",
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
                "begin".to_string()
            } else {
                String::new()
            };
            previous = Some(s.step.as_str());
            row
        })
        .collect();
    write_csv(out, &TIMESERIES_COLUMNS, rows)
}

fn secs(d: Option<Duration>) -> Option<Fixed3> {
    d.map(|d| Fixed3(d.as_secs_f64()))
}

/// `recovery.csv`: one row per herd step; a fraction never reached is left empty.
pub fn write_recovery<W: Write>(herds: &[HerdRecord], out: W) -> csv::Result<W> {
    let rows = herds.iter().map(|h| RecoveryRow {
        step: h.label.clone(),
        trigger: h.trigger.clone(),
        trigger_secs: Fixed3(h.trigger_secs),
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
        trigger_error: h.trigger_error.clone().unwrap_or_default(),
        detected: Some(h.detected),
        spared: Some(h.spared),
        spared_recovered: Some(h.spared_times.len()),
        spared_99_secs: secs(h.spared_time_to(0.99)),
    });
    write_csv(out, &RECOVERY_COLUMNS, rows)
}

/// `unrecovered.csv`: every agent not recovered by its herd step's timeout.
pub fn write_unrecovered<W: Write>(herds: &[HerdRecord], out: W) -> csv::Result<W> {
    let rows = herds.iter().flat_map(|h| {
        h.unrecovered.iter().map(|u| UnrecoveredRow {
            step: h.label.clone(),
            pc: u.pc.clone(),
            state: u.state.clone(),
            connected: u.connected,
        })
    });
    write_csv(out, &UNRECOVERED_COLUMNS, rows)
}
