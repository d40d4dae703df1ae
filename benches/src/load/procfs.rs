//! What Linux's `/proc` tells about a process: resident memory and the
//! open-file limit, and the ephemeral port range.

use std::io;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rss {
    /// `VmRSS`: every resident page.
    pub(crate) total_kib: u64,
    /// `RssAnon`: resident anonymous pages (the heap and stacks), which
    /// is where per-connection state lives.
    pub(crate) anon_kib: u64,
}

/// The resident memory of process `pid` (a number, or `self`), from
/// `/proc/<pid>/status`.
pub(crate) fn rss(pid: &str) -> io::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> io::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("/proc/{pid}/status has no {name} field"),
                )
            })
    };
    Ok(Rss { total_kib: field("VmRSS:")?, anon_kib: field("RssAnon:")? })
}

/// The soft limit on open files of process `pid` (a number, or `self`),
/// from `/proc/<pid>/limits`; `None` when unlimited or not found.
pub(crate) fn open_files_limit(pid: &str) -> io::Result<Option<u64>> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    Ok(limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok()))
}

/// How many ephemeral ports one source address has, from
/// `/proc/sys/net/ipv4/ip_local_port_range`; `None` when unknown.
pub(crate) fn ephemeral_ports() -> io::Result<Option<u64>> {
    let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return Ok(None);
    };
    let mut bounds = range.split_whitespace().map(str::parse::<u64>);
    Ok(match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) if high >= low => Some(high - low + 1),
        _ => None,
    })
}

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`
/// (`USER_HZ`, 100 on every mainstream Linux configuration).
const USER_HZ: f64 = 100.0;

/// CPU time (user and system) used so far by process `pid` (a number, or
/// `self`), in seconds, from `/proc/<pid>/stat`.
pub(crate) fn cpu_seconds(pid: &str) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // fields are counted after its closing parenthesis. utime and stime
    // are fields 14 and 15, so the 12th and 13th after it.
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat"));
    let rest = stat.rsplit_once(')').ok_or_else(invalid)?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let mut next =
        || -> io::Result<u64> { fields.next().and_then(|f| f.parse().ok()).ok_or_else(invalid) };
    let (user, system) = (next()?, next()?);
    Ok((user + system) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let rss = rss("self").unwrap();
        assert!(rss.total_kib > 0 && rss.anon_kib <= rss.total_kib);
        assert!(open_files_limit("self").is_ok());
        assert!(cpu_seconds("self").unwrap() >= 0.0);
    }
}
