//! What Linux's `/proc` tells of a process (`None` once it is gone).

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    value.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Open file descriptors.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Resets the kernel's peak-RSS mark (`VmHWM`), so that the next read gives
/// the peak of one phase exactly; whether it could (root, Linux 4.0+).
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time in seconds: the sum of the threads' run times from
/// `/proc/<pid>/task/*/schedstat` (nanoseconds; the relay's threads live as
/// long as it does), else utime + stime from `/proc/<pid>/stat` (ticks of
/// 1/100 s, the Linux USER_HZ, too coarse for short phases).
pub fn cpu_time(pid: u32) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let from_schedstat: Option<u64> = tasks.ok().and_then(|tasks| {
        tasks
            .map(|task| {
                let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
                text.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    });
    if let Some(ns) = from_schedstat {
        return ns as f64 / 1e9;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks = |i: usize| {
        rest.split_whitespace()
            .nth(i)
            .and_then(|f| f.parse::<u64>().ok())
    };
    (ticks(11).unwrap_or(0) + ticks(12).unwrap_or(0)) as f64 / 100.0
}
