//! Review (hy-soak): what outlives a test process. A program the test kit starts
//! ([`Process`], and so [`net_tests::harness::Haproxy`]) is killed when its `Process` is
//! dropped; a test binary ended by a signal (a CI runner's or supervisor's SIGTERM to its PID,
//! a SIGKILL) runs no destructor, and its example servers, `haproxy -db` and `openssl
//! s_server` kept running, reparented to init, holding their ports.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use net_tests::harness::Process;

/// Set in the copy of this test binary that starts a program and dies at once.
const PARENT_ENV: &str = "NET_TESTS_REVIEW_HY_SOAK_PARENT";

/// Whether `pid` is alive: listed, and not a zombie (`/proc/PID/stat`: "PID (COMM) STATE").
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
fn a_harness_process_dies_with_the_test_process() {
    if std::env::var_os(PARENT_ENV).is_some() {
        // The dying test process: start `sleep 30`, wait until it runs (the harness's set-up
        // is done), say its PID, and end without running a destructor, as a signal would.
        let sleep = Process::start("sleep", ["30"]);
        let comm = format!("/proc/{}/comm", sleep.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() != "sleep")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("CHILD {}", sleep.id());
        std::process::exit(0);
    }
    let mut parent = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "a_harness_process_dies_with_the_test_process",
            "--nocapture",
        ])
        .env(PARENT_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("rerun the test binary");
    let out = BufReader::new(parent.stdout.take().expect("stdout"));
    let pid: u32 = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("CHILD ")
                .map(|p| p.trim().parse().expect("pid"))
        })
        .expect("the parent printed its child's PID");
    assert!(parent.wait().expect("wait for the parent").success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = alive(pid);
    if survived {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(
        !survived,
        "the harness's child {pid} outlived the test process by 5 s"
    );
}
