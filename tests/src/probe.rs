//! Measurements of this process, from `/proc/self` (Linux): open descriptors, CPU time, resident
//! memory; and running out of descriptors on purpose. Also the CPU time of another process (a
//! child server) or of a thread, from its `stat` file.

use std::fs::File;
use std::io;

/// The number of open descriptors of this process, from `/proc/self/fd`.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// The sockets this process holds, from `/proc/self/fd`: only sockets, so that another test's
/// runtime (its epoll and event descriptors, made whenever that test starts) does not count as
/// a leak of the one counting; and each socket once, however many descriptors it has, so that
/// neither does its signal driver's: with tokio's `signal` feature (on when the workspace is
/// built as a whole: the examples use it), each runtime with I/O holds a copy (a `dup`) of one
/// process-wide socket, made with the first runtime.
pub fn socket_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Opens resources with `open` until this process has no descriptor left, and returns them
/// (dropping them frees the descriptors again). Panics if `open` fails with anything but
/// `EMFILE`.
///
/// Run it in a child process with a low limit (see
/// [`harness::rerun_self_with_fd_limit`](crate::harness::rerun_self_with_fd_limit)): other
/// tests of the same process would fail while the descriptors are gone.
pub fn exhaust_descriptors<T>(mut open: impl FnMut() -> io::Result<T>) -> Vec<T> {
    let mut held = Vec::new();
    loop {
        match open() {
            Ok(resource) => held.push(resource),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e:?}");
                return held;
            }
        }
    }
}

/// This process's CPU time, read through `/proc/self/stat` opened once up front: a process out
/// of descriptors cannot open it when it matters.
#[derive(Debug)]
pub struct CpuClock(File);

impl CpuClock {
    /// Opens `/proc/self/stat`.
    pub fn open() -> CpuClock {
        CpuClock(File::open("/proc/self/stat").expect("open /proc/self/stat"))
    }

    /// CPU time (user + system) so far, in clock ticks (usually 100 a second).
    pub fn ticks(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; 4096];
        let n = self.0.read_at(&mut buf, 0).expect("read /proc/self/stat");
        stat_ticks(&String::from_utf8_lossy(&buf[..n])).expect("CPU times in /proc/self/stat")
    }
}

/// One clock tick of the CPU times in `/proc/*/stat` (`getconf CLK_TCK` is 100 on Linux).
pub const CLOCK_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// The CPU time (user + system) in a `stat` file of `/proc` (a process's or a thread's,
/// proc_pid_stat(5)), in clock ticks; `None` when `stat` is not such a line.
pub fn stat_ticks(stat: &str) -> Option<u64> {
    stat_times(stat).map(|(user, system)| user + system)
}

/// The user and the system CPU time, apart, in a `stat` file of `/proc`, in clock ticks: what
/// the process's own code ran, and what the kernel ran for it (its system calls, and the
/// network stack's work they did); `None` when `stat` is not such a line.
pub fn stat_times(stat: &str) -> Option<(u64, u64)> {
    // After the command's closing parenthesis (the command may hold spaces and parentheses):
    // fields 3 on; utime and stime are fields 14 and 15.
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The CPU time (user + system, all threads) process `pid` has spent so far, from
/// `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let ticks = stat_ticks(&stat).expect("CPU times in /proc/PID/stat");
    CLOCK_TICK * u32::try_from(ticks).expect("CPU time in range")
}

/// The kernel's `TCP_INFO` of the TCP socket `fd` (tcp(7)): its counters of segments, bytes
/// not yet sent, probes and more.
///
/// # Errors
///
/// `getsockopt`'s, for a descriptor that is no TCP socket.
#[allow(unsafe_code)]
pub fn tcp_info(fd: std::os::fd::RawFd) -> std::io::Result<libc::tcp_info> {
    // SAFETY: an all-zero `tcp_info` is valid (integers only).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is valid and writable for `len` bytes, which `len` says.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(info)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`, ...).
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The resident set size now (`VmRSS`), in KiB.
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS")
}

/// The peak resident set size (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM")
}

/// Resets this process's peak resident set size (`VmHWM`) to its current size; false when the
/// kernel does not allow it (then `VmHWM` keeps the older peak, which only makes a growth check
/// stricter).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_adds_utime_and_stime_after_a_command_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0 123";
        assert_eq!(stat_ticks(stat), Some(22));
        assert_eq!(stat_times(stat), Some((17, 5)));
        assert_eq!(stat_ticks("4242 (short) S 1"), None);
        assert_eq!(stat_ticks("no command here"), None);
    }

    /// The spin is measured on this thread's own CPU clock, not the wall clock: on a loaded
    /// machine 30 ms of wall time could hold less than a tick of CPU time (CI failed so).
    #[test]
    fn this_process_has_spent_cpu_time() {
        let thread_cpu = || {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid, writable timespec.
            #[allow(unsafe_code)]
            let done = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
            assert_eq!(done, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
            std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
        };
        let wall = std::time::Instant::now();
        let start = thread_cpu();
        while thread_cpu() - start < 5 * CLOCK_TICK {
            assert!(
                wall.elapsed() < std::time::Duration::from_secs(60),
                "no CPU time in 60 s"
            );
        }
        assert!(process_cpu(std::process::id()) >= CLOCK_TICK);
    }
}
