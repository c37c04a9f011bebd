//! What Linux's `/proc` tells of a process (`None` once it is gone).

use std::fs;

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB (or
/// any field whose value is one number).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let (_, rest) = status.split_once(&format!("\n{field}:"))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Threads (`Threads:` of `/proc/<pid>/status`).
pub fn thread_count(pid: u32) -> Option<u64> {
    status_kib(pid, "Threads")
}

/// Open file descriptors.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Resets the kernel's peak-RSS mark (`VmHWM`), so that the next read gives
/// the peak of one phase exactly; whether it could (root, Linux 4.0+).
pub fn reset_peak(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time in seconds: the sum of the threads' run times from
/// `/proc/<pid>/task/*/schedstat` (nanoseconds; the relay's threads live as
/// long as it does), else utime + stime from `/proc/<pid>/stat` (ticks of
/// 1/100 s, the Linux USER_HZ, too coarse for short phases).
pub fn cpu_time(pid: u32) -> f64 {
    let run_time = |task: fs::DirEntry| -> Option<u64> {
        let schedstat = fs::read_to_string(task.path().join("schedstat")).ok()?;
        schedstat.split_whitespace().next()?.parse().ok()
    };
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok();
    if let Some(ns) = tasks.and_then(|t| t.map(|task| run_time(task.ok()?)).sum::<Option<u64>>()) {
        return ns as f64 / 1e9;
    }
    // utime and stime are fields 14 and 15, the 12th and 13th after the
    // command name, which is in parentheses and may hold spaces.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks = after_name.split_whitespace().skip(11).take(2);
    ticks.filter_map(|t| t.parse::<u64>().ok()).sum::<u64>() as f64 / 100.0
}

/// User and system CPU time in clock ticks (1/100 s) from
/// `/proc/<pid>/stat`: the whole process, threads that have ended included
/// (what an outsider sees: `cpu_time`'s schedstat sum misses threads that
/// came and went between two reads).
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some((user, system))
}

/// Whether every thread of `pid` has a tracer (`strace -p` has attached).
pub fn traced(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let tracer = status.lines().find_map(|l| l.strip_prefix("TracerPid:"));
        tracer.is_some_and(|t| t.trim() != "0")
    })
}
