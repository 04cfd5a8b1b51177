//! What the host allows and what this process has used: open-file limits and the
//! process's own CPU time and peak memory.
//!
//! Every agent holds one socket (three when proxied in-process), so a fleet of thousands
//! needs the open-files soft limit raised to the hard limit, and a fleet that cannot fit
//! must be refused before a single connection is made, with the limit and the fix.

use serde::{Deserialize, Serialize};

/// Descriptors kept aside for the runtime, the control connection, files and the broker
/// monitor: a fleet must fit in the limit minus this.
pub const FD_RESERVE: u64 = 64;

/// Raises the open-files soft limit to the hard limit. Returns (soft, hard) after.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Checks that `agents` connections, `fds_per_agent` descriptors each, fit in `limit`.
pub fn check_fd_budget(agents: usize, fds_per_agent: u64, limit: u64) -> Result<(), String> {
    let needed = agents as u64 * fds_per_agent + FD_RESERVE;
    if needed <= limit {
        return Ok(());
    }
    let fits = limit.saturating_sub(FD_RESERVE) / fds_per_agent.max(1);
    Err(format!(
        "{agents} agents need about {needed} open files ({fds_per_agent} per agent + {FD_RESERVE} reserved) \
         but this process may open {limit} (the hard limit of `ulimit -n`). \
         Run at most {fits} agents here, raise the hard limit (ulimit -Hn, or LimitNOFILE= in systemd), \
         or split the fleet over several processes or hosts"
    ))
}

/// This process's own resource use so far (the embedded broker, a child, is not included).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcessUsage {
    pub cpu_user_secs: f64,
    pub cpu_system_secs: f64,
    /// Peak resident set size.
    pub max_rss_kib: u64,
}

pub fn process_usage() -> ProcessUsage {
    // SAFETY: getrusage fills a zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return ProcessUsage::default();
        }
        usage
    };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    ProcessUsage {
        cpu_user_secs: secs(usage.ru_utime),
        cpu_system_secs: secs(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_larger_than_the_limit_is_refused_with_the_limit_and_the_fix() {
        assert!(check_fd_budget(1000, 1, 20_000).is_ok());
        let err = check_fd_budget(10_000, 3, 20_000).expect_err("30,000 descriptors do not fit");
        assert!(err.contains("20000"), "{err}");
        assert!(err.contains("at most 6645 agents"), "{err}");
        assert!(err.contains("ulimit -Hn"), "{err}");
    }

    #[test]
    fn usage_reports_some_cpu_and_memory() {
        let u = process_usage();
        assert!(u.max_rss_kib > 0);
    }
}
