//! Write fan-out results: deliveries per write by kind (`writes.csv`) and every agent's
//! expected vs received writes (`reconcile.csv`).

use std::io::Write;

use super::rows::{Fixed3, ReconcileRow, WritesRow};
use super::write_csv;
use crate::provision::pc_id;
use crate::writes::WriteRecord;

pub const WRITES_COLUMNS: [&str; 15] = [
    "step",
    "kind",
    "writes",
    "acked",
    "retries",
    "delivered",
    "unintended",
    "fanout_intended",
    "fanout_total",
    "missed",
    "superseded",
    "duplicates",
    "stale_replays",
    "redelivered",
    "drained",
];

pub const RECONCILE_COLUMNS: [&str; 10] = [
    "step",
    "pc",
    "expected",
    "received",
    "missed",
    "superseded",
    "duplicates",
    "stale_replays",
    "redelivered",
    "unintended",
];

/// `writes.csv`: per write step and kind, deliveries per acknowledged write (intended
/// only, and with the unintended ones), and the step's reconciliation totals.
pub fn write_fanout<W: Write>(records: &[WriteRecord], out: W) -> csv::Result<W> {
    let rows = records.iter().flat_map(|w| {
        let r = &w.reconciliation;
        let sum = |f: fn(&crate::writes::AgentReconciliation) -> u64| -> u64 {
            r.per_agent.iter().map(f).sum()
        };
        let (missed, superseded, dups, stale, redelivered) = (
            sum(|a| a.missed),
            sum(|a| a.superseded),
            sum(|a| a.duplicates),
            sum(|a| a.stale_replays),
            sum(|a| a.redelivered),
        );
        r.by_kind.iter().map(move |k| WritesRow {
            step: w.label.clone(),
            kind: k.kind.to_string(),
            writes: k.writes,
            acked: k.acked,
            retries: w.retries,
            delivered: k.delivered,
            unintended: k.unintended,
            fanout_intended: Fixed3(k.intended_ratio()),
            fanout_total: Fixed3(k.total_ratio()),
            missed,
            superseded,
            duplicates: dups,
            stale_replays: stale,
            redelivered,
            drained: w.drained,
        })
    });
    write_csv(out, &WRITES_COLUMNS, rows)
}

/// `reconcile.csv`: one row per write step and agent that expected a write or got one.
pub fn write_reconcile<W: Write>(records: &[WriteRecord], out: W) -> csv::Result<W> {
    let rows = records.iter().flat_map(|w| {
        w.reconciliation
            .per_agent
            .iter()
            .filter(|a| a.expected > 0 || a.unintended > 0 || a.duplicates > 0)
            .map(|a| ReconcileRow {
                step: w.label.clone(),
                pc: pc_id(a.agent),
                expected: a.expected,
                received: a.received,
                missed: a.missed,
                superseded: a.superseded,
                duplicates: a.duplicates,
                stale_replays: a.stale_replays,
                redelivered: a.redelivered,
                unintended: a.unintended,
            })
    });
    write_csv(out, &RECONCILE_COLUMNS, rows)
}
