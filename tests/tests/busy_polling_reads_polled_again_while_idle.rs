//! Busy polling and an idle socket whose reading task a timer beside the read in a `select!`
//! keeps waking: the read kept (pinned) across the turns, or begun again at every turn (the one
//! before dropped: the reads are cancel safe). The socket began waiting for input once:
//! `with_busy_poll`'s docs promise polling for `window` after that, and nothing once `window`
//! passed. (Before, every poll of a waiting stream read, and every receive begun again, counted
//! as a read beginning to wait, and a timer ticking more often than `window` kept a worker
//! polling for as long as the socket stayed idle: a core's worth of CPU.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::loopback::tcp_listener;

/// The busy-polling window: longer than the timer's period.
const WINDOW: Duration = Duration::from_millis(20);

/// How often the reading task is woken by its timer.
const TICK: Duration = Duration::from_millis(5);

/// How long the CPU is measured for, once the window passed.
const MEASURED: Duration = Duration::from_secs(1);

/// The CPU time (user and system) the threads named `name` of this process have used.
fn cpu_of_threads(name: &str) -> Duration {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
            continue;
        };
        ticks += net_tests::probe::stat_ticks(&stat).unwrap();
    }
    net_tests::probe::CLOCK_TICK * u32::try_from(ticks).unwrap()
}

/// Polls `read` (pinned once, kept across the turns) beside a timer ticking every [`TICK`],
/// until `stop` is notified; `read` must not complete (its socket stays idle).
async fn wait_beside_a_timer<F: Future>(read: F, stop: Arc<tokio::sync::Notify>) {
    let mut tick = tokio::time::interval(TICK);
    let mut read = std::pin::pin!(read);
    loop {
        tokio::select! {
            _ = &mut read => panic!("the idle socket's read completed"),
            _ = tick.tick() => {}
            () = stop.notified() => return,
        }
    }
}

/// The task that waits for input beside a timer, until told to stop.
struct Waiting(tokio::task::JoinHandle<()>);

/// The CPU the runtime's threads spend over [`MEASURED`] while the task `start` spawns waits
/// for input beside a timer (until `stop`), on a two-worker runtime whose threads are named
/// `name`.
fn cpu_while_waiting<S, F>(name: &str, start: S) -> Duration
where
    S: FnOnce(SelectorManager, Arc<tokio::sync::Notify>) -> F,
    F: Future<Output = Waiting>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::with_busy_poll(WINDOW);
        let stop = Arc::new(tokio::sync::Notify::new());
        let task = start(selector.clone(), stop.clone()).await;
        // The read began waiting; its window passes.
        tokio::time::sleep(WINDOW * 5).await;
        let before = cpu_of_threads(name);
        tokio::time::sleep(MEASURED).await;
        let spent = cpu_of_threads(name) - before;
        // A permit if the task is between two turns: it stops at its next.
        stop.notify_one();
        task.0.await.unwrap();
        selector.close();
        spent
    })
}

/// A stream read (a line, through the read channel) kept across the turns of a `select!` with
/// a timer, on a connection whose peer sends nothing: once the window passed, the runtime's
/// threads spend next to nothing. A poll that never stopped would cost about a second.
#[test]
fn a_stream_read_polled_again_by_its_tasks_timer_stops_the_polling_once_the_window_passes() {
    const THREAD: &str = "busy-repoll-tcp";
    let spent = cpu_while_waiting(THREAD, |selector, stop| async move {
        let listener = tcp_listener(&selector).await;
        let client = tokio::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap()))
            .await
            .unwrap();
        let mut socket = listener.accept().await.unwrap();
        let mut input = socket.open_read_channel().unwrap();
        Waiting(tokio::spawn(async move {
            wait_beside_a_timer(input.read_line(64, LineEnding::Default), stop).await;
            drop((socket, client));
        }))
    });
    assert!(
        spent < MEASURED / 4,
        "{spent:?} of CPU in {MEASURED:?} of an idle connection"
    );
}

/// The same for a datagram receive kept across the turns (pinned as its cancel safety allows):
/// it began waiting once.
#[test]
fn a_datagram_receive_polled_again_by_its_tasks_timer_stops_the_polling_once_the_window_passes() {
    const THREAD: &str = "busy-repoll-udp";
    let spent = cpu_while_waiting(THREAD, |selector, stop| async move {
        let socket = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        Waiting(tokio::spawn(async move {
            wait_beside_a_timer(socket.receive(), stop).await;
        }))
    });
    assert!(
        spent < MEASURED / 4,
        "{spent:?} of CPU in {MEASURED:?} of an idle socket"
    );
}

/// A stream read begun again at every turn of a `select!` loop with a timer (the one before
/// dropped while it waited: the read channel's reads are cancel safe) on a connection whose
/// peer sends nothing: the socket has been waiting for input since its window began, and no
/// read that begins after counts as new input to poll for.
#[test]
fn a_stream_read_begun_again_at_every_turn_of_a_timer_stops_the_polling_once_the_window_passes() {
    const THREAD: &str = "busy-again-tcp";
    let spent = cpu_while_waiting(THREAD, |selector, stop| async move {
        let listener = tcp_listener(&selector).await;
        let client = tokio::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap()))
            .await
            .unwrap();
        let mut socket = listener.accept().await.unwrap();
        let mut input = socket.open_read_channel().unwrap();
        Waiting(tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    _ = input.read_line(64, LineEnding::Default) => {
                        panic!("the idle connection's read completed")
                    }
                    _ = tick.tick() => {}
                    () = stop.notified() => break,
                }
            }
            drop((socket, client));
        }))
    });
    assert!(
        spent < MEASURED / 4,
        "{spent:?} of CPU in {MEASURED:?} of an idle connection"
    );
}

/// The same for a datagram receive begun again at every turn (`receive` is cancel safe), the
/// usual loop of a UDP server with a timer of its own (retransmissions, keep-alives).
#[test]
fn a_datagram_receive_begun_again_at_every_turn_of_a_timer_stops_the_polling_once_the_window_passes()
 {
    const THREAD: &str = "busy-again-udp";
    let spent = cpu_while_waiting(THREAD, |selector, stop| async move {
        let socket = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        Waiting(tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    _ = socket.receive() => panic!("the idle socket's receive completed"),
                    _ = tick.tick() => {}
                    () = stop.notified() => break,
                }
            }
        }))
    });
    assert!(
        spent < MEASURED / 4,
        "{spent:?} of CPU in {MEASURED:?} of an idle socket"
    );
}
