//! Figures about a process read from /proc: CPU time, peak RSS, bytes written to disk.

use std::fs;

/// A snapshot of one process's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSnapshot {
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
    /// Peak resident set size so far (VmHWM), bytes.
    pub peak_rss: u64,
    /// Bytes the process caused to be written to the storage layer.
    pub write_bytes: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Reads the counters of `pid`.
pub fn snapshot(pid: u32) -> anyhow::Result<ProcSnapshot> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let write_bytes = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(ProcSnapshot {
        cpu_secs: (utime + stime) / clock_ticks(),
        peak_rss: peak_kib * 1024,
        write_bytes,
    })
}

/// CPU seconds used by this process so far (user + system).
pub fn self_cpu_secs() -> f64 {
    snapshot(std::process::id())
        .map(|s| s.cpu_secs)
        .unwrap_or(0.0)
}

/// Bytes written to storage by this process's children that have exited and been waited
/// for (`ru_oublock` of `RUSAGE_CHILDREN`, in 512-byte units). Taken before and after a
/// collector's whole life, it includes what the collector flushed at shutdown.
pub fn waited_children_write_bytes() -> u64 {
    // SAFETY: getrusage writes into the struct we pass; zeroed is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc == 0 {
        usage.ru_oublock as u64 * 512
    } else {
        0
    }
}
