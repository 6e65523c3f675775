//! Measurements of this process, from `/proc/self` (Linux): open descriptors, CPU time, resident
//! memory; and running out of descriptors on purpose.

use std::fs::File;
use std::io;

/// The number of open descriptors of this process, from `/proc/self/fd`.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
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
        let stat = String::from_utf8_lossy(&buf[..n]).into_owned();
        let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 of proc_pid_stat(5) are utime and stime; `after_name` starts at
        // field 3.
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
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
