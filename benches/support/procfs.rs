//! What `/proc` says about another process: its CPU time (user plus system, every thread)
//! and its resident set.

use nix::unistd::{sysconf, SysconfVar};

fn ticks_per_second() -> f64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |ticks| ticks as f64)
}

fn page_bytes() -> u64 {
    sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |bytes| bytes as u64)
}

/// CPU seconds process `pid` has used so far, user and system, all threads.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|error| panic!("/proc/{pid}/stat is readable: {error}"));
    // The command name (field 2) may hold spaces: the fields after it follow its ')'.
    let after_name = &stat[stat.rfind(')').expect("/proc/PID/stat names the command") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().expect("utime is a number")
        + fields[12].parse::<u64>().expect("stime is a number");
    ticks as f64 / ticks_per_second()
}

/// Resident bytes of process `pid`.
pub fn resident_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .unwrap_or_else(|error| panic!("/proc/{pid}/statm is readable: {error}"));
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .expect("statm's second field is the resident pages");
    pages * page_bytes()
}
