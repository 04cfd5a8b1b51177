//! The embedded broker's CPU time, read from `/proc/<pid>/stat`: what the gate's
//! capacity figure `broker.cpu_ms_per_agent` is made of.
//!
//! `/varz` has a `cpu` field, but it is a percentage averaged by nats-server over its own
//! window, not a counter: integrating it over samples would add the window's lag to
//! every phase boundary. The process's own utime + stime is a counter of everything the
//! broker's threads ran (Go's garbage collector included), so the CPU of a phase is the
//! counter's increase between the samples that bound it. Only an embedded broker has a
//! process fleetsim can read; an external one leaves the column empty.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The current nats-server process of an embedded broker: its pid, updated each time
/// the broker is (re)started, shared with the sampler that reads its CPU time.
#[derive(Debug, Clone, Default)]
pub struct BrokerProcess(Arc<AtomicU32>);

impl BrokerProcess {
    /// Records the pid of the process just spawned.
    pub(crate) fn set(&self, pid: Option<u32>) {
        self.0.store(pid.unwrap_or(0), Ordering::Relaxed);
    }

    /// The current process's pid and the CPU seconds (user + system, every thread) it
    /// has used since it started; `None` when there is none (stopped, between a kill
    /// and the restart). The pid tells a restart apart from a counter that only grew.
    pub fn cpu_secs(&self) -> Option<(u32, f64)> {
        let pid = self.0.load(Ordering::Relaxed);
        if pid == 0 {
            return None;
        }
        Some((pid, process_cpu_secs(pid)?))
    }
}

/// CPU seconds (user + system, every thread) process `pid` has used since it started.
/// Also read for fleetsim's own process: what the machinery costs beside the broker.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = stat_cpu_ticks(&stat)?;
    Some(ticks as f64 / clock_ticks_per_sec())
}

/// utime + stime (clock ticks) from a `/proc/<pid>/stat` line. The command name (field
/// 2) is in parentheses and may hold spaces, so fields are counted after the last `)`:
/// there, field 3 (state) is the first and utime, stime (fields 14, 15) the 12th and
/// 13th.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a ')' in it, as a process may choose.
        let line = "4242 (nats server) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 31 0 0 20 0 12 0 1234 0 0";
        assert_eq!(stat_cpu_ticks(line), Some(281));
        assert_eq!(stat_cpu_ticks("4242 (short"), None);
    }

    #[test]
    fn reads_this_process_cpu_time() {
        let me = BrokerProcess::default();
        assert_eq!(me.cpu_secs(), None, "no pid, no figure");
        me.set(Some(std::process::id()));
        // Burn a little CPU so the counter is past zero at any tick rate.
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(
            me.cpu_secs()
                .is_some_and(|(pid, s)| pid == std::process::id() && s > 0.0)
        );
    }
}
