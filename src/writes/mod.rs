//! Write fan-out: paced writes, what each agent received, and the reconciliation that
//! says what was missed, duplicated or replayed.
//!
//! This file holds what the sender and the agents share: the write values and who each
//! write is for. [`step`] runs a `write`/`exec` step (`run_step`, its [`WriteRecord`]);
//! [`ledger`] keeps what agents received, one ledger per write job.
//!
//! Every write's value is `w:<id>:<intended send time, unix µs>:` padded to the value
//! size. The sender paces writes by their *intended* time (`start + i / rate`, see
//! [`crate::fleet::pacing`]) and never
//! waits for one write's ack before the next is due, so a slow broker shows up as latency
//! instead of as fewer writes (no coordinated omission). Agents record the delivery
//! latency from the intended time, and whether the write was meant for them: a
//! `pcs.<other>` entry reaching a `watch_all` is an *unintended* delivery, the cost of
//! the fan-out seed 000 describes.
//!
//! At the end of the step (after the drain timeout) every agent's expected writes are
//! compared with what it received: missed, duplicates, and stale replays (an older
//! write delivered again after a newer one on the same key, the `watch()` replay of
//! nats-facts §0.3). Nothing is dropped silently: each count is reported per agent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

mod ledger;
mod step;

/// The results' tests build a write record by hand.
#[cfg(test)]
pub(crate) use ledger::KindFanout;
pub use ledger::{AgentReconciliation, Ledger, Ledgers, Reconciliation};
pub use step::{Target, WriteRecord, WriteSteps, run_step};

/// The delivery kinds latency and fan-out are reported by (metric `delivery.<kind>`).
pub const KINDS: [&str; 10] = [
    "pc",
    "group",
    "global",
    "jobs",
    "schedules",
    "freeze",
    "exec_pc",
    "exec_group",
    "exec_all",
    "key",
];

pub fn kind_index(kind: &str) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The value of write `id` intended at `intended`, padded to `size` bytes.
pub fn write_value(id: u64, intended: SystemTime, size: usize) -> Bytes {
    let us = intended
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let mut v = format!("w:{id}:{us}:").into_bytes();
    if v.len() < size {
        v.resize(size, b'.');
    }
    Bytes::from(v)
}

/// (id, intended send time) of a write value.
pub fn parse_write(value: &[u8]) -> Option<(u64, SystemTime)> {
    let rest = value.strip_prefix(b"w:")?;
    let mut parts = rest.splitn(3, |b| *b == b':');
    let id = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let us: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    Some((id, UNIX_EPOCH + Duration::from_micros(us)))
}

/// Which delivery kind a KV entry is, and whether agent `pc` of `group` needs it.
///
/// A bucket that is not one of kanade's is a `target = "key"` write's (kind `key`): the
/// agent needs the entry unless a `.`- or `/`-separated token of its key names another
/// agent (`pc-…`) or another group (`g-…`), the ids `{pc}` and `{group}` render to. So a
/// watch on `settings-files/{pc}` needs all it sees, and a whole-bucket watch of
/// per-agent keys sees the other agents' writes as unintended.
pub fn classify_kv(bucket: &str, key: &str, pc: &str, group: &str) -> (usize, bool) {
    match bucket {
        "agent_config" => {
            if let Some(target) = key.strip_prefix("pcs.") {
                (kind_index("pc"), target == pc)
            } else if let Some(target) = key.strip_prefix("groups.") {
                (kind_index("group"), target == group)
            } else {
                (kind_index("global"), true)
            }
        }
        "jobs" => (kind_index("jobs"), true),
        "schedules" => (kind_index("schedules"), true),
        "fleet_config" => (kind_index("freeze"), true),
        _ => {
            let mut tokens = key.split(['.', '/']);
            let other = tokens
                .any(|t| (t.starts_with("pc-") && t != pc) || (t.starts_with("g-") && t != group));
            (kind_index("key"), !other)
        }
    }
}

/// Which delivery kind an EXEC command is, and whether agent `pc` of `group` needs it.
pub fn classify_exec(subject: &str, pc: &str, group: &str) -> (usize, bool) {
    if let Some(target) = subject.strip_prefix("commands.pc.") {
        (kind_index("exec_pc"), target == pc)
    } else if let Some(target) = subject.strip_prefix("commands.group.") {
        (kind_index("exec_group"), target == group)
    } else {
        (kind_index("exec_all"), true)
    }
}

/// Who a write is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    Agent(usize),
    Group(usize),
    All,
}

/// One write as sent.
#[derive(Debug, Clone)]
pub struct SentWrite {
    pub id: u64,
    pub kind: usize,
    pub recipients: Recipients,
    pub acked: bool,
    /// The KV key it wrote (a hash of its subject) and how many values of a key its
    /// bucket keeps (`history`); `None` for an `exec` command, a stream message no later
    /// one replaces.
    pub key: Option<(u64, u64)>,
}

/// The key a KV write's subject names, as [`SentWrite::key`] holds it.
pub fn key_of(subject: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    subject.hash(&mut h);
    h.finish()
}

/// One write as an agent saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: u64,
    pub intended: SystemTime,
    pub kind: usize,
    pub for_me: bool,
    /// The key (KV) or subject (EXEC) it arrived on: replays are judged per key.
    pub key: String,
    /// JetStream redelivered it (EXEC: `delivered > 1`).
    pub redelivered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_values_round_trip_and_pad() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let v = write_value(42, t, 64);
        assert_eq!(v.len(), 64);
        assert_eq!(parse_write(&v), Some((42, t)));
        assert_eq!(parse_write(b"probe:1"), None);
    }

    #[test]
    fn a_pcs_write_is_only_for_its_agent() {
        assert_eq!(
            classify_kv("agent_config", "pcs.pc-00001", "pc-00001", "g-001"),
            (0, true)
        );
        assert_eq!(
            classify_kv("agent_config", "pcs.pc-00002", "pc-00001", "g-001"),
            (0, false)
        );
        assert!(classify_kv("agent_config", "global", "pc-00001", "g-001").1);
        assert!(!classify_exec("commands.group.g-002", "pc-00001", "g-001").1);
    }

    #[test]
    fn a_key_write_is_for_the_agent_or_group_its_key_names() {
        let key = kind_index("key");
        let me = |k: &str| classify_kv("settings-files", k, "pc-00001", "g-001");
        assert_eq!(me("pc-00001"), (key, true));
        assert_eq!(me("pc-00002"), (key, false));
        assert_eq!(me("groups/g-002"), (key, false));
        assert_eq!(me("g-001.top"), (key, true));
        assert_eq!(me("fleet"), (key, true));
        assert_eq!(
            classify_kv("fleet_config", "freeze", "pc-00001", "g-001").0,
            kind_index("freeze")
        );
    }
}
