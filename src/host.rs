//! What the host allows and what this process has used: open-file limits and the
//! process's own CPU time and peak memory.
//!
//! Every agent holds one socket (three when proxied in-process), so a fleet of thousands
//! needs the open-files soft limit raised to the hard limit, and a fleet that cannot fit
//! must be refused before a single connection is made, with the limit and the fix.
//!
//! A proxied agent costs three descriptors: its own socket and the proxy's two (agent
//! side, broker side). With the proxy inside fleetsim's process all three count against
//! one limit; with the proxy as its own process (`fleetsim proxy`) fleetsim holds one per
//! agent and the proxy two, each process against its own limit.

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::plan::{Plan, ProxyMode};

/// Descriptors kept aside for the runtime, the control connection, files and the broker
/// monitor: a fleet must fit in the limit minus this.
pub const FD_RESERVE: u64 = 64;

/// A proxied agent in fleetsim's process when the proxy runs there too.
pub const FDS_IN_PROCESS_PROXY: u64 = 3;
/// A proxied agent in fleetsim's process when the proxy runs as its own process.
pub const FDS_RUNNER_WITH_PROXY_PROCESS: u64 = 1;
/// A proxied agent in the proxy's own process.
pub const FDS_PROXY_PROCESS: u64 = 2;

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
pub fn check_fd_budget(agents: usize, fds_per_agent: u64, limit: u64) -> Result<(), HostLimit> {
    let needed = agents as u64 * fds_per_agent + FD_RESERVE;
    if needed <= limit {
        return Ok(());
    }
    let fits = limit.saturating_sub(FD_RESERVE) / fds_per_agent.max(1);
    Err(HostLimit(format!(
        "{agents} agents need about {needed} open files ({fds_per_agent} per agent + {FD_RESERVE} reserved) \
         but this process may open {limit} (the hard limit of `ulimit -n`). \
         Run at most {fits} agents here, raise the hard limit (ulimit -Hn, or LimitNOFILE= in systemd), \
         or split the fleet over several processes or hosts"
    )))
}

/// The largest proxied fleet each proxy mode holds when every process may open `limit`
/// files (the proxy process inherits fleetsim's limit): `(in_process, process)`.
pub fn proxied_capacity(limit: u64) -> (u64, u64) {
    let usable = limit.saturating_sub(FD_RESERVE);
    let process = (usable / FDS_RUNNER_WITH_PROXY_PROCESS).min(usable / FDS_PROXY_PROCESS);
    (usable / FDS_IN_PROCESS_PROXY, process)
}

/// Checks that a fleet of `agents` proxied agents fits in `limit` open files per process,
/// with the proxy in fleetsim's process (`own_process` false) or in its own. The refusal
/// says how many agents each mode holds, and which one would run this fleet.
pub fn check_proxied_fd_budget(
    agents: usize,
    own_process: bool,
    limit: u64,
) -> Result<(), HostLimit> {
    let (in_process, process) = proxied_capacity(limit);
    let holds = if own_process { process } else { in_process };
    if agents as u64 <= holds {
        return Ok(());
    }
    let needed = if own_process {
        format!(
            "{agents} proxied agents need about {} open files in the proxy process \
             ({FDS_PROXY_PROCESS} per agent + {FD_RESERVE} reserved)",
            agents as u64 * FDS_PROXY_PROCESS + FD_RESERVE
        )
    } else {
        format!(
            "{agents} proxied agents need about {} open files in this process \
             ({FDS_IN_PROCESS_PROXY} per agent + {FD_RESERVE} reserved)",
            agents as u64 * FDS_IN_PROCESS_PROXY + FD_RESERVE
        )
    };
    let fix = if !own_process && agents as u64 <= process {
        "Set proxy = \"process\" in [fleet] to run this fleet".to_string()
    } else {
        format!("Run at most {holds} proxied agents here")
    };
    Err(HostLimit(format!(
        "{needed}, but a process may open {limit} (the hard limit of `ulimit -n`). \
         With this limit the proxy inside fleetsim's process (proxy = true: \
         {FDS_IN_PROCESS_PROXY} files per agent) holds at most {in_process} agents, and the \
         proxy as its own process (proxy = \"process\": {FDS_RUNNER_WITH_PROXY_PROCESS} per \
         agent in fleetsim, {FDS_PROXY_PROCESS} in the proxy) at most {process}. {fix}, \
         raise the hard limit (ulimit -Hn, or LimitNOFILE= in systemd), or split the fleet \
         over several hosts"
    )))
}

/// How many ports the kernel hands out for outgoing connections (`ip_local_port_range`);
/// `None` where it cannot be read.
pub fn ephemeral_ports() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (low, high) = (parts.next()??, parts.next()??);
    Some(high.saturating_sub(low) + 1)
}

/// Whether a broker URL points at this host's loopback (`127.x`, `localhost`, `[::1]`).
pub fn is_loopback_url(url: &str) -> bool {
    let host = crate::broker::url::host_port(url);
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

/// Over how many source addresses `agents` connections must spread so that each
/// address needs at most 90 % of the `ports` ephemeral ports (the rest is left to the
/// host). Toward loopback, up to 250 addresses (127.0.0.1 ... 127.0.0.250) can be
/// used; toward another host only one, so a fleet too big for it is an error.
pub fn source_addresses(
    agents: usize,
    ports: Option<u64>,
    loopback: bool,
) -> Result<u8, HostLimit> {
    let Some(ports) = ports else {
        return Ok(1);
    };
    let per_address = (ports * 9 / 10).max(1);
    let needed = (agents as u64).div_ceil(per_address).max(1);
    if needed == 1 {
        return Ok(1);
    }
    if !loopback {
        return Err(HostLimit(format!(
            "{agents} agents need {agents} ephemeral ports toward the broker, but this host has              {ports} (net.ipv4.ip_local_port_range), about {per_address} usable. Run at most              {per_address} agents per fleetsim host, or widen the range              (sysctl net.ipv4.ip_local_port_range=\"1024 65000\")"
        )));
    }
    u8::try_from(needed).ok().filter(|&n| n <= 250).ok_or_else(|| {
        HostLimit(format!("{agents} agents need more than 250 loopback source addresses of {per_address} ports each"))
    })
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

/// One socket per agent.
const FDS_PER_AGENT: u64 = 1;

/// The host cannot hold the fleet (open files, ports, the limit itself unreadable):
/// refused before anything connects, with the limit and the fix in the message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostLimit(pub String);

/// Raises the open-files limit and refuses, before any agent connects, a fleet that
/// cannot fit in it. Returns over how many loopback source addresses (127.0.0.1,
/// 127.0.0.2, ...) the agents spread their connections: one address has only the
/// ephemeral port range toward one broker port (~28k on Linux).
pub fn check_fleet_fits(plan: &Plan) -> Result<u8, HostLimit> {
    let (soft, hard) = raise_nofile_limit()
        .map_err(|e| HostLimit(format!("reading the open-files limit failed: {e}")))?;
    if soft < hard {
        warn!(
            soft,
            hard, "could not raise the open-files soft limit to the hard limit"
        );
    }
    match plan.fleet.proxy {
        ProxyMode::Off => check_fd_budget(plan.fleet.agents, FDS_PER_AGENT, soft),
        ProxyMode::InProcess => check_proxied_fd_budget(plan.fleet.agents, false, soft),
        // Checked here against this process's limit, which the child inherits; the child
        // reports the limit it raised to and is checked again when it starts.
        ProxyMode::Process => check_proxied_fd_budget(plan.fleet.agents, true, soft),
    }?;
    let loopback = plan.broker.url.as_deref().is_none_or(is_loopback_url);
    source_addresses(plan.fleet.agents, ephemeral_ports(), loopback)
}

#[cfg(test)]
mod tests {
    #[test]
    fn big_loopback_fleets_spread_over_source_addresses_and_remote_ones_are_refused() {
        use super::{is_loopback_url, source_addresses};
        // 28,232 ports (Linux's default range), 90 % usable per address.
        let ports = Some(28_232);
        assert_eq!(source_addresses(10_000, ports, true), Ok(1));
        assert_eq!(source_addresses(30_000, ports, true), Ok(2));
        assert_eq!(source_addresses(100_000, ports, true), Ok(4));
        assert_eq!(source_addresses(10_000, None, false), Ok(1));
        let err = source_addresses(30_000, ports, false).expect_err("remote");
        assert!(err.0.contains("ip_local_port_range"), "{err}");
        assert!(is_loopback_url("nats://127.0.0.1:4222"));
        assert!(is_loopback_url("nats://u:p@localhost:4222"));
        assert!(!is_loopback_url("nats://broker.example:4222"));
    }

    use super::*;

    #[test]
    fn a_fleet_larger_than_the_limit_is_refused_with_the_limit_and_the_fix() {
        assert!(check_fd_budget(1000, 1, 20_000).is_ok());
        let err = check_fd_budget(10_000, 3, 20_000).expect_err("30,000 descriptors do not fit");
        assert!(err.0.contains("20000"), "{err}");
        assert!(err.0.contains("at most 6645 agents"), "{err}");
        assert!(err.0.contains("ulimit -Hn"), "{err}");
    }

    #[test]
    fn a_proxied_fleet_too_big_for_its_mode_is_refused_naming_both_modes() {
        // 20,000 files, 64 reserved: 19,936 usable.
        assert_eq!(proxied_capacity(20_000), (6645, 9968));
        assert!(check_proxied_fd_budget(6645, false, 20_000).is_ok());
        assert!(check_proxied_fd_budget(9968, true, 20_000).is_ok());

        let err = check_proxied_fd_budget(8000, false, 20_000).expect_err("in-process");
        assert!(
            err.0
                .contains("need about 24064 open files in this process"),
            "{err}"
        );
        assert!(
            err.0
                .contains("proxy = true: 3 files per agent) holds at most 6645"),
            "{err}"
        );
        assert!(
            err.0.contains(
                "(proxy = \"process\": 1 per agent in fleetsim, 2 in the proxy) at most 9968"
            ),
            "{err}"
        );
        assert!(
            err.0
                .contains("Set proxy = \"process\" in [fleet] to run this fleet"),
            "{err}"
        );

        let err = check_proxied_fd_budget(12_000, false, 20_000).expect_err("fits neither");
        assert!(
            err.0.contains("Run at most 6645 proxied agents here"),
            "{err}"
        );
        let err = check_proxied_fd_budget(12_000, true, 20_000).expect_err("process");
        assert!(
            err.0
                .contains("need about 24064 open files in the proxy process"),
            "{err}"
        );
        assert!(err.0.contains("holds at most 6645 agents"), "{err}");
        assert!(
            err.0.contains("Run at most 9968 proxied agents here"),
            "{err}"
        );
        assert!(err.0.contains("ulimit -Hn"), "{err}");
    }

    #[test]
    fn usage_reports_some_cpu_and_memory() {
        let u = process_usage();
        assert!(u.max_rss_kib > 0);
    }
}
