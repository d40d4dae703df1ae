//! CPU time of the whole machine, from `/proc/stat`: with two cores shared
//! by the broker, the clients, the database and whatever else runs, the
//! other processes' share says how far a run's figures can be trusted.

use std::io;

/// Clock ticks per second of the times in `/proc/stat` (`USER_HZ`).
const USER_HZ: f64 = 100.0;

/// CPU seconds spent busy by all cores since boot: user, nice, system,
/// irq, softirq and steal time (not idle or iowait).
pub(crate) fn busy_seconds() -> io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat has no cpu line"))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map_while(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum();
    Ok(busy as f64 / USER_HZ)
}

/// The load averages over 1, 5 and 15 minutes, as `/proc/loadavg` gives
/// them.
pub(crate) fn load_average() -> io::Result<String> {
    let loadavg = std::fs::read_to_string("/proc/loadavg")?;
    Ok(loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_has_been_busy() {
        assert!(busy_seconds().unwrap() > 0.0);
        assert_eq!(load_average().unwrap().split(' ').count(), 3);
    }
}
