//! Memory and CPU of the servers under test, read from `/proc`.

/// Linux reports CPU time in ticks of `USER_HZ`, 100 on every architecture
/// the kernel exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Resident memory, bytes.
    pub(crate) rss: u64,
    /// User + system CPU time so far, seconds.
    pub(crate) cpu: f64,
}

/// Reads `/proc/<pid>`; `None` when the process is gone or unreadable.
pub(crate) fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Sample {
        rss: rss_kib * 1024,
        cpu: cpu_seconds(&stat)?,
    })
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // After the name: state is field 3, so utime (14) and stime (15) are 11 and 12 on.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_past_a_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 10";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn reads_this_process() {
        let me = sample(std::process::id()).expect("own /proc entry");
        assert!(me.rss > 0);
    }
}
