//! CPU time of this process (`getrusage(RUSAGE_SELF)`: user + system of every thread) and of
//! another process by PID (`/proc/PID/stat` utime + stime, in clock ticks of
//! `sysconf(_SC_CLK_TCK)`), so a bench can print CPU time per message.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

/// User and system CPU time consumed so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: Duration,
    pub sys: Duration,
}

impl CpuTimes {
    pub fn total(&self) -> Duration {
        self.user + self.sys
    }

    /// What was consumed between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// This process's CPU time (all threads), microsecond resolution.
pub fn own() -> Result<CpuTimes> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` points to writable memory the size of a `rusage`; getrusage only writes it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    // SAFETY: getrusage succeeded, so it filled the struct (and it was zeroed before).
    let ru = unsafe { ru.assume_init() };
    Ok(CpuTimes {
        user: timeval(ru.ru_utime),
        sys: timeval(ru.ru_stime),
    })
}

/// Clock ticks per second of `/proc/PID/stat` times.
fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime and stime (fields 14 and 15, in clock ticks) of a `/proc/PID/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses: fields are counted
/// after its last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14, the 12th here.
    let mut f = rest.split_ascii_whitespace().skip(11);
    let utime = f.next()?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Another process's CPU time (clock-tick resolution, usually 10 ms).
pub fn of_pid(pid: u32) -> Result<CpuTimes> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let (u, s) = parse_stat(&text).ok_or_else(|| anyhow!("unexpected contents of {path}"))?;
    let hz = ticks_per_sec();
    let d =
        |t: u64| Duration::from_secs(t / hz) + Duration::from_nanos(t % hz * 1_000_000_000 / hz);
    Ok(CpuTimes {
        user: d(u),
        sys: d(s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "4242 (odd) name)) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 567 0 0 20 0 9 0";
        assert_eq!(parse_stat(line), Some((1234, 567)));
        assert_eq!(parse_stat("1 (x) S 1"), None);
        assert_eq!(parse_stat("no name"), None);
    }

    #[test]
    fn own_and_proc_self_read_and_grow() {
        let a = own().unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = own().unwrap();
        assert!(b.total() >= a.total());
        assert!(b.since(&a).total() <= b.total());
        // This process through /proc: at least as old as what getrusage said minus a tick.
        let p = of_pid(std::process::id()).unwrap();
        assert!(p.total() + Duration::from_millis(20) >= a.total());
    }
}
