//! Running out of descriptors at accept: the accept loop backs off instead of failing or
//! spinning, and resumes when descriptors are free.
//!
//! The check runs in a child process (this test binary again) under `ulimit -n 64`, so that the
//! low limit touches nothing else.

use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::within;

const CHILD_ENV: &str = "NET_TESTS_EMFILE_CHILD";

#[test]
fn accept_survives_descriptor_exhaustion() {
    net_tests::run_child_with_fd_limit("emfile_child", CHILD_ENV, 64, "emfile child passed");
}

/// CPU time (user + system) of this process, in clock ticks, read from an already open
/// `/proc/self/stat` (no descriptor is free to open it when it matters).
fn cpu_ticks(stat: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let stat = String::from_utf8_lossy(&buf[..n]).into_owned();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `after_name` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn emfile_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        // Two connections wait in the backlog; their client descriptors exist already.
        let _a = a_socket(&selector)
            .tcp()
            .connect(listener.local_address())
            .await
            .unwrap();
        let _b = a_socket(&selector)
            .tcp()
            .connect(listener.local_address())
            .await
            .unwrap();
        let stat = std::fs::File::open("/proc/self/stat").unwrap();
        let mut filler = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(file) => filler.push(file),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(24), "{e:?}");
                    break;
                }
            }
        }
        let cpu_before = cpu_ticks(&stat);
        let mut accept = Box::pin(listener.accept());
        let early = tokio::time::timeout(Duration::from_millis(500), &mut accept).await;
        assert!(
            early.is_err(),
            "accept returned while out of descriptors: {early:?}"
        );
        let spent = cpu_ticks(&stat) - cpu_before;
        // A spinning loop burns the whole 500 ms (50 ticks at 100 Hz).
        assert!(
            spent < 15,
            "accept loop used {spent} ticks of CPU in 500 ms"
        );
        drop(filler);
        let first = within(accept).await.unwrap();
        let second = within(listener.accept()).await.unwrap();
        assert_ne!(first.remote_address(), second.remote_address());
        println!("emfile child passed");
    });
}
