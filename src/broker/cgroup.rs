//! The embedded broker's CPU quota (`[broker] cpu_quota`): a cgroup of its own, with CFS
//! bandwidth control capping the CPU time its process gets per 100 ms period.
//!
//! One cgroup per [`super::EmbeddedBroker`] (`fleetsim-broker-<pid>-<n>`), made at broker
//! start at the top of the cpu hierarchy this process sees (`/proc/self/mountinfo`): the
//! cgroup v1 hierarchy with the `cpu` controller if one is mounted (then v2 cannot have
//! it), else the cgroup v2 unified hierarchy with `cpu` enabled for its children. The
//! server joins it between fork and exec (it writes `0`, itself, into `cgroup.procs`),
//! so the quota holds from its first instruction and for every restart. The cgroup is
//! removed when the [`BrokerCgroup`] is dropped, once the process in it is gone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::BrokerError;
use crate::plan::CpuQuota;

/// The CFS period: the quota is CPU time per this much wall time. 100 ms is the kernel's
/// default, short enough that a throttled broker stalls for tens of ms, not seconds.
pub const PERIOD_US: u64 = 100_000;

/// How long a dropped broker's cgroup is retried while its killed process finishes
/// exiting (the kernel refuses to remove a cgroup with a task in it).
const REMOVE_WITHIN: Duration = Duration::from_secs(5);

/// Numbers the cgroups of one fleetsim process (an A/B run starts several brokers).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Which cgroup interface the cpu controller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// `cpu.cfs_period_us` and `cpu.cfs_quota_us`.
    V1,
    /// `cpu.max` = `"QUOTA PERIOD"`.
    V2,
}

/// A cgroup with a CPU quota, removed on drop.
#[derive(Debug)]
pub struct BrokerCgroup {
    dir: PathBuf,
    version: CgroupVersion,
    /// `<dir>/cgroup.procs`, made before any fork: the child may not allocate.
    procs: CString,
}

impl BrokerCgroup {
    /// Makes a new cgroup whose processes get at most `quota` of one CPU.
    pub fn create(quota: CpuQuota) -> Result<Self, BrokerError> {
        let problem = |problem: String| BrokerError::CpuQuota {
            quota: quota.to_string(),
            problem,
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| problem(format!("cannot read /proc/self/mountinfo: {e}")))?;
        let (base, version) = cpu_hierarchy(&mountinfo).ok_or_else(|| {
            problem(
                "no cgroup hierarchy with the cpu controller is mounted here (looked for a \
                 cgroup v1 mount with cpu, then cgroup2, in /proc/self/mountinfo); run where \
                 cgroups are mounted, or drop cpu_quota"
                    .to_string(),
            )
        })?;
        Self::create_in(&base, version, quota)
    }

    /// [`BrokerCgroup::create`] under `base`, a hierarchy of `version`.
    fn create_in(
        base: &Path,
        version: CgroupVersion,
        quota: CpuQuota,
    ) -> Result<Self, BrokerError> {
        let problem = |problem: String| BrokerError::CpuQuota {
            quota: quota.to_string(),
            problem,
        };
        if version == CgroupVersion::V2 {
            enable_cpu_controller(base).map_err(problem)?;
        }
        remove_abandoned(base);
        let name = format!(
            "fleetsim-broker-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = base.join(name);
        std::fs::create_dir(&dir).map_err(|e| {
            problem(format!(
                "cannot create the broker's cgroup {}: {e}; {}",
                dir.display(),
                WHAT_TO_DO
            ))
        })?;
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            .map_err(|e| problem(format!("cgroup path {}: {e}", dir.display())))?;
        let cgroup = BrokerCgroup {
            dir,
            version,
            procs,
        };
        // From here a failure drops `cgroup`, which removes the directory again.
        let quota_us = quota.quota_us(PERIOD_US);
        let writes: Vec<(&str, String)> = match version {
            CgroupVersion::V1 => vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota_us.to_string()),
            ],
            CgroupVersion::V2 => vec![("cpu.max", format!("{quota_us} {PERIOD_US}"))],
        };
        for (file, value) in writes {
            let path = cgroup.dir.join(file);
            std::fs::write(&path, &value).map_err(|e| {
                problem(format!(
                    "cannot write {value:?} to {}: {e}; {WHAT_TO_DO}",
                    path.display()
                ))
            })?;
        }
        Ok(cgroup)
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Makes the process `command` starts join this cgroup before it execs: every thread
    /// it starts is in it, and so under the quota, from the first.
    pub fn join_on_spawn(&self, command: &mut Command) {
        let procs = self.procs.clone();
        let join = move || {
            // SAFETY: open, write and close on a path and a buffer this closure owns;
            // nothing is allocated and no lock is taken between fork and exec.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(error);
                }
            }
            Ok(())
        };
        // SAFETY: the closure makes async-signal-safe system calls only (see above).
        unsafe { command.pre_exec(join) };
    }
}

impl Drop for BrokerCgroup {
    /// Removes the cgroup; a process that was just killed may still be leaving it, so
    /// `EBUSY` is retried for a few seconds. A cgroup that stays is reported, not fatal.
    fn drop(&mut self) {
        let started = Instant::now();
        loop {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && started.elapsed() < REMOVE_WITHIN =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot remove the broker's cgroup {}: {e}; remove it with rmdir",
                        self.dir.display()
                    );
                    return;
                }
            }
        }
    }
}

/// Removes the cgroups of fleetsim processes that are gone (killed before they could
/// remove their own). Only an empty cgroup can be removed, so one whose nats-server is
/// still running stays.
fn remove_abandoned(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("fleetsim-broker-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

const WHAT_TO_DO: &str = "cpu_quota needs a cgroup fleetsim can create and move the broker \
                          into: run as root, or delegate a writable cgroup with the cpu \
                          controller to this user, or drop cpu_quota";

/// The directory new cgroups go in and its interface: the mount point of the cgroup v1
/// hierarchy with the `cpu` controller (its super options name `cpu`), else of the
/// cgroup v2 hierarchy. A v1 `cpu` mount wins: a controller bound to v1 is absent in v2.
pub fn cpu_hierarchy(mountinfo: &str) -> Option<(PathBuf, CgroupVersion)> {
    let mut v2 = None;
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = before.split(' ').nth(4) else {
            continue;
        };
        let mount_point = PathBuf::from(unescape(mount_point));
        let mut after = after.split(' ');
        let fstype = after.next().unwrap_or("");
        let super_options = after.nth(1).unwrap_or("");
        match fstype {
            "cgroup" if super_options.split(',').any(|o| o == "cpu") => {
                return Some((mount_point, CgroupVersion::V1));
            }
            "cgroup2" if v2.is_none() => v2 = Some(mount_point),
            _ => {}
        }
    }
    v2.map(|dir| (dir, CgroupVersion::V2))
}

/// mountinfo writes a space, tab, newline or backslash in a path as `\ooo` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = bytes.get(i + 1..i + 4)
            && let Some(byte) = std::str::from_utf8(octal)
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(byte);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// cgroup v2: a child gets the cpu controller only if its parent's `cgroup.subtree_control`
/// enables it; turned on here when the hierarchy has it but it is off.
fn enable_cpu_controller(base: &Path) -> Result<(), String> {
    let has_cpu = |file: &str| {
        std::fs::read_to_string(base.join(file))
            .map(|text| text.split_whitespace().any(|c| c == "cpu"))
    };
    let controllers = base.join("cgroup.controllers");
    match has_cpu("cgroup.controllers") {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "the cgroup v2 hierarchy at {} has no cpu controller ({} does not list \
                 cpu); {WHAT_TO_DO}",
                base.display(),
                controllers.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", controllers.display())),
    }
    if has_cpu("cgroup.subtree_control").unwrap_or(false) {
        return Ok(());
    }
    let control = base.join("cgroup.subtree_control");
    std::fs::write(&control, "+cpu").map_err(|e| {
        format!(
            "cannot enable the cpu controller for child cgroups (writing +cpu to {}): {e}; \
             {WHAT_TO_DO}",
            control.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_hierarchy_is_found_in_mountinfo() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                      33 31 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n";
        assert_eq!(
            cpu_hierarchy(hybrid),
            Some((
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                CgroupVersion::V1
            ))
        );
        let unified =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cpu_hierarchy(unified),
            Some((PathBuf::from("/sys/fs/cgroup"), CgroupVersion::V2))
        );
        let cpuset_only = "33 31 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n";
        assert_eq!(cpu_hierarchy(cpuset_only), None);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    /// The files each version is given, on a stand-in hierarchy (a plain directory: the
    /// real ones are the integration test's, as root).
    #[test]
    fn each_version_gets_its_quota_files() {
        let quota = CpuQuota::from_hundredths_of_percent(2_000).expect("20%");
        let base = tempfile::tempdir().expect("tempdir");
        let v1 = BrokerCgroup::create_in(base.path(), CgroupVersion::V1, quota).expect("v1");
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).expect(file);
        assert_eq!(read(v1.dir(), "cpu.cfs_period_us"), "100000");
        assert_eq!(read(v1.dir(), "cpu.cfs_quota_us"), "20000");
        assert!(v1.procs.to_str().expect("utf-8").ends_with("/cgroup.procs"));
        std::fs::write(
            base.path().join("cgroup.controllers"),
            "cpuset cpu io memory\n",
        )
        .expect("write");
        std::fs::write(base.path().join("cgroup.subtree_control"), "").expect("write");
        let v2 = BrokerCgroup::create_in(base.path(), CgroupVersion::V2, quota).expect("v2");
        assert_eq!(read(v2.dir(), "cpu.max"), "20000 100000");
        assert_eq!(read(base.path(), "cgroup.subtree_control"), "+cpu");
        std::fs::write(base.path().join("cgroup.controllers"), "cpuset io\n").expect("write");
        let Err(e) = BrokerCgroup::create_in(base.path(), CgroupVersion::V2, quota) else {
            panic!("a hierarchy without cpu made a cgroup");
        };
        assert!(e.to_string().contains("has no cpu controller"), "{e}");
        // A real cgroup's files go with its rmdir; a plain directory's do not.
        for cgroup in [v1, v2] {
            for file in std::fs::read_dir(cgroup.dir()).expect("dir") {
                std::fs::remove_file(file.expect("file").path()).expect("remove");
            }
            let dir = cgroup.dir().to_path_buf();
            drop(cgroup);
            assert!(!dir.exists());
        }
    }
}
