//! Busy polling ([`SelectorManager::with_busy_poll`](crate::SelectorManager::with_busy_poll)):
//! while a read has begun waiting within the last `window`, one task of the selector's runtime
//! keeps yielding, so that its worker polls the I/O driver without blocking instead of going
//! to sleep in `epoll_wait`, and input that arrives then is taken at once, without the wake-up
//! of a sleeping thread.
//!
//! tokio lets one thread at a time poll the driver: when an idle worker already sleeps in it,
//! the polling worker's turn finds it taken, and that input wakes the sleeper as it would
//! without busy polling. Measured on the machine of `BENCHMARKS.md`, where the polling still
//! catches most requests, a read's own task polling instead (no second task, so no second
//! worker woken) did better on a one-worker runtime and worse on two workers: the task
//! polling is kept.
//!
//! Where reads begin waiting between every two of its turns, the runtime is busy and its
//! workers find input ready whenever they poll: there the task rests (a 10 ms timer) instead
//! of polling, and looks again after.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The spinner sleeps until a read begins waiting.
const DORMANT: u8 = 0;
/// The spinner polls; no read began waiting since it last looked.
const SPINNING: u8 = 1;
/// A read began waiting since the spinner last looked (or woke it).
const KICKED: u8 = 2;

/// How many looks in a row that find a read begun waiting since the last tell the spinner the
/// runtime is busy: its workers had tasks to run between every two of its turns, so their
/// polls of the I/O driver found input ready anyway, and would have without it.
const BUSY_LOOKS: u32 = 4;

/// How long the spinner rests once it found the runtime busy (it polls again after, and rests
/// again as long as the runtime stays busy).
const REST: Duration = Duration::from_millis(10);

/// A selector's busy polling: how long it lasts, and the spinner's state.
#[derive(Debug)]
pub(crate) struct BusyPoll {
    window: Duration,
    state: AtomicU8,
    wake: Notify,
    /// How many times the spinner woke (for tests).
    #[cfg(test)]
    wakes: std::sync::atomic::AtomicU64,
    /// How many times the spinner rested (for tests).
    #[cfg(test)]
    rests: std::sync::atomic::AtomicU64,
}

impl BusyPoll {
    pub(crate) fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            state: AtomicU8::new(DORMANT),
            wake: Notify::new(),
            #[cfg(test)]
            wakes: std::sync::atomic::AtomicU64::new(0),
            #[cfg(test)]
            rests: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A read is pending: poll for the next `window`, unless the read is pending only because
    /// its task spent its cooperative budget (tokio wakes that task itself, input or not). A
    /// load of a line that stays shared while the spinner runs and sees reads begin waiting: it
    /// is written once per look of the spinner, not once per read.
    ///
    /// Returns whether the read was a cue (its task had budget left): the read waits for input.
    #[inline]
    pub(crate) fn kick_unless_budget_spent(&self) -> bool {
        if !tokio::task::coop::has_budget_remaining() {
            return false;
        }
        if self.state.load(Ordering::Relaxed) != KICKED {
            self.kick_slow();
        }
        true
    }

    /// A receive found nothing queued and its socket begins waiting: poll for the next
    /// `window`.
    #[inline]
    pub(crate) fn kick(&self) {
        if self.state.load(Ordering::Relaxed) != KICKED {
            self.kick_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn kick_slow(&self) {
        if self.state.swap(KICKED, Ordering::AcqRel) == DORMANT {
            // A permit if the spinner is not waiting yet: it cannot miss this kick.
            self.wake.notify_one();
        }
    }

    /// The spinner: sleeps until a read begins waiting, then yields (each yield lets the
    /// worker poll the I/O driver without blocking) until no read has begun waiting for
    /// `window`. Runs until dropped.
    ///
    /// While reads begin waiting between every two of its turns ([`BUSY_LOOKS`] in a row), the
    /// runtime is busy: a worker runs out of tasks only briefly, and its poll of the I/O driver
    /// then finds input ready, with or without the spinner. Polling more often would only add
    /// system calls (the polls, the yields) and take the core from other threads, so the
    /// spinner rests for [`REST`] (a timer; kicks meanwhile wake nothing) and looks again.
    pub(crate) async fn spin(&self) {
        loop {
            self.wake.notified().await;
            #[cfg(test)]
            self.wakes.fetch_add(1, Ordering::Relaxed);
            let mut until = self.until();
            let mut kicked_in_a_row = 0;
            loop {
                // tokio runs a task that yielded again once its worker has polled the I/O
                // driver without blocking (when no other thread holds it) and run the tasks
                // that were ready.
                tokio::task::yield_now().await;
                // And the thread offers its core to any other thread runnable there
                // (`sched_yield`, a hint to the kernel), so that polling takes less from a busy
                // process sharing the core.
                std::thread::yield_now();
                if self.state.load(Ordering::Relaxed) == KICKED {
                    self.state.store(SPINNING, Ordering::Relaxed);
                    kicked_in_a_row += 1;
                    if kicked_in_a_row == BUSY_LOOKS {
                        kicked_in_a_row = 0;
                        #[cfg(test)]
                        self.rests.fetch_add(1, Ordering::Relaxed);
                        // Not dormant meanwhile: kicks only mark the state, and the window
                        // counts from the first look after the rest.
                        tokio::time::sleep(REST).await;
                    }
                    until = self.until();
                } else {
                    kicked_in_a_row = 0;
                    if until.is_some_and(|until| Instant::now() >= until)
                        && self
                            .state
                            .compare_exchange(
                                SPINNING,
                                DORMANT,
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                    {
                        break;
                    }
                }
            }
        }
    }

    /// When polling ends unless a read begins waiting meanwhile: `window` from now, or never
    /// for a window beyond the clock's range (`Duration::MAX`).
    fn until(&self) -> Option<Instant> {
        Instant::now().checked_add(self.window)
    }

    /// Whether the spinner sleeps (for tests).
    #[cfg(test)]
    pub(crate) fn is_dormant(&self) -> bool {
        self.state.load(Ordering::Acquire) == DORMANT
    }

    /// How many times the spinner woke (for tests).
    #[cfg(test)]
    pub(crate) fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// How many times the spinner rested (for tests).
    #[cfg(test)]
    pub(crate) fn rests(&self) -> u64 {
        self.rests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Waits (bounded) until `done` holds.
    async fn until(done: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        false
    }

    /// The spinner of `busy`, as a task.
    fn spinner(busy: &Arc<BusyPoll>) -> tokio::task::JoinHandle<()> {
        let busy = busy.clone();
        tokio::spawn(async move { busy.spin().await })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spinner_sleeps_until_kicked_and_again_once_its_window_passes_without_a_kick() {
        let busy = Arc::new(BusyPoll::new(Duration::from_millis(20)));
        let spinner = spinner(&busy);
        tokio::task::yield_now().await;
        assert!(busy.is_dormant());
        assert_eq!(busy.wakes(), 0);
        for kick in 1..=2 {
            busy.kick();
            assert!(
                until(|| busy.wakes() == kick).await,
                "kick {kick}: not woken"
            );
            assert!(
                until(|| busy.is_dormant()).await,
                "kick {kick}: still polling"
            );
        }
        spinner.abort();
    }

    /// Kicks 10 ms apart for five windows of 100 ms: the spinner is never found asleep less than
    /// a window after a kick (it can sleep only a window after it saw the last one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kicks_within_the_window_keep_the_spinner_polling() {
        const WINDOW: Duration = Duration::from_millis(100);
        let busy = Arc::new(BusyPoll::new(WINDOW));
        let spinner = spinner(&busy);
        busy.kick();
        let mut kicked = Instant::now();
        let start = kicked;
        // Turns that overslept the window (a machine busy with other tests): the spinner may
        // sleep in each such gap, and the kick after it wake it again.
        let mut overslept = 0;
        while start.elapsed() < WINDOW * 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let dormant = busy.is_dormant();
            // A check that overslept the window proves nothing.
            if kicked.elapsed() < WINDOW {
                assert!(!dormant, "asleep {:?} after a kick", kicked.elapsed());
            }
            busy.kick();
            if kicked.elapsed() >= WINDOW {
                overslept += 1;
            }
            kicked = Instant::now();
        }
        assert!(
            (1..=1 + overslept).contains(&busy.wakes()),
            "one wake-up for all the kicks (and one more at most after each of the {overslept} \
             turns that overslept the window): {} wake-ups",
            busy.wakes()
        );
        assert!(until(|| busy.is_dormant()).await);
        spinner.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_begins_waiting_starts_the_selectors_polling_for_its_window() {
        use tokio::io::AsyncWriteExt;

        let selector = crate::SelectorManager::with_busy_poll(Duration::from_millis(50));
        let busy = selector.busy_poll().expect("busy polling");
        let server = crate::a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = server.port().unwrap();
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut socket = server.accept().await.unwrap();
        // Accepting is not reading.
        assert_eq!(busy.wakes(), 0);
        let mut input = socket.open_read_channel().unwrap();
        for round in 1..=3 {
            let read = tokio::spawn(async move {
                let mut ping = [0; 4];
                input.read_fully(&mut ping).await.map(|()| (input, ping))
            });
            assert!(
                until(|| busy.wakes() == round).await,
                "round {round}: no polling"
            );
            assert!(
                until(|| busy.is_dormant()).await,
                "round {round}: still polling"
            );
            client.write_all(b"ping").await.unwrap();
            let (back, ping) = read.await.unwrap().unwrap();
            assert_eq!(&ping, b"ping");
            input = back;
        }
        selector.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_datagram_receive_that_begins_waiting_starts_the_polling() {
        let selector = crate::SelectorManager::with_busy_poll(Duration::from_millis(50));
        let busy = selector.busy_poll().expect("busy polling");
        let socket = Arc::new(
            crate::a_socket(&selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
        let address = socket.local_address();
        let receiving = tokio::spawn({
            let socket = socket.clone();
            async move { socket.receive().await }
        });
        assert!(until(|| busy.wakes() == 1).await, "no polling");
        assert!(until(|| busy.is_dormant()).await, "still polling");
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let crate::SocketAddress::Inet(to) = address else {
            panic!("{address:?}")
        };
        sender.send_to(b"ping", to.socket_addr()).await.unwrap();
        assert_eq!(&receiving.await.unwrap().unwrap().packet[..], b"ping");
        selector.close();
    }

    /// A receive, and a stream read, that begin waiting on a socket that waits already (the one
    /// before dropped while it waited, as a `select!` loop with a timer drops it) are no new
    /// cue: the spinner stays asleep. Once input came, or something was sent, the next that
    /// waits is one again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_begun_again_while_its_socket_waits_is_no_new_cue() {
        use std::future::Future;
        use std::task::{Context, Waker};
        use tokio::io::AsyncWriteExt;

        /// Polls `future` once: whether it is pending.
        fn pending<F: Future>(future: F) -> bool {
            let mut future = std::pin::pin!(future);
            future
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        }

        let selector = crate::SelectorManager::with_busy_poll(Duration::from_millis(20));
        let busy = selector.busy_poll().expect("busy polling");
        let socket = crate::a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let crate::SocketAddress::Inet(to) = socket.local_address() else {
            panic!("not an IP socket")
        };
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let answer = crate::Datagram::new("ask", sender.local_addr().unwrap()).unwrap();
        for round in 1..=2 {
            assert!(pending(socket.receive()), "round {round}");
            assert!(!busy.is_dormant(), "round {round}: no cue");
            assert!(until(|| busy.is_dormant()).await, "round {round}");
            assert!(pending(socket.receive()), "round {round}");
            assert!(
                busy.is_dormant(),
                "round {round}: a receive begun again kicked"
            );
            // A datagram sent: its answer may come at once.
            socket.send(answer.clone()).await.unwrap();
            assert!(pending(socket.receive()), "round {round}");
            assert!(!busy.is_dormant(), "round {round}: no cue after a send");
            assert!(until(|| busy.is_dormant()).await, "round {round}");
            sender.send_to(b"ping", to.socket_addr()).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), socket.receive()).await;
            assert_eq!(&got.unwrap().unwrap().packet[..], b"ping");
        }

        let server = crate::a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", server.port().unwrap()))
            .await
            .unwrap();
        let mut accepted = server.accept().await.unwrap();
        let mut input = accepted.open_read_channel().unwrap();
        let mut output = accepted.open_write_channel(false).unwrap();
        let mut byte = [0; 1];
        for round in 1..=2 {
            assert!(until(|| busy.is_dormant()).await, "round {round}");
            assert!(pending(input.read_available(&mut byte)), "round {round}");
            assert!(!busy.is_dormant(), "round {round}: no cue");
            assert!(until(|| busy.is_dormant()).await, "round {round}");
            assert!(pending(input.read_available(&mut byte)), "round {round}");
            assert!(
                busy.is_dormant(),
                "round {round}: a read begun again kicked"
            );
            // Bytes sent: the answer may come at once.
            output.write_fully(b"a").await.unwrap();
            output.flush().await.unwrap();
            assert!(pending(input.read_available(&mut byte)), "round {round}");
            assert!(!busy.is_dormant(), "round {round}: no cue after a send");
            client.write_all(b"p").await.unwrap();
            let read =
                tokio::time::timeout(Duration::from_secs(10), input.read_available(&mut byte));
            assert_eq!(read.await.unwrap().unwrap(), 1);
        }
        selector.close();
    }

    /// Reads that begin waiting between every two of the spinner's looks (a busy runtime,
    /// here a thread kicking without pause) make it rest instead of polling; once they stop,
    /// it sleeps a window later, as it would without resting.
    ///
    /// The window (1 s) is far longer than a rest: only a kicker thread kept off its core for
    /// the whole window lets the spinner sleep meanwhile. (With a 20 ms window, a machine busy
    /// with other tests did that about one run in ten, and the spinner woke twice.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spinner_that_finds_a_read_begun_waiting_at_every_look_rests() {
        let busy = Arc::new(BusyPoll::new(Duration::from_secs(1)));
        let spinner = spinner(&busy);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let kicker = std::thread::spawn({
            let (busy, stop) = (busy.clone(), stop.clone());
            move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(20) {
                    busy.kick();
                    std::hint::spin_loop();
                }
            }
        });
        let rested = until(|| busy.rests() >= 2).await;
        stop.store(true, Ordering::Relaxed);
        kicker.join().unwrap();
        assert!(rested, "never rested: {} rests", busy.rests());
        assert!(until(|| busy.is_dormant()).await, "still polling");
        assert_eq!(
            busy.wakes(),
            1,
            "rests are no sleep: one wake-up for all the kicks"
        );
        spinner.abort();
    }

    /// A read begun waiting now and then is no busy runtime: the spinner rests only after
    /// [`BUSY_LOOKS`] looks in a row found one. Three kicks per wake-up (the one that wakes it
    /// included) can make at most three such looks, however they fall: it never rests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kicks_fewer_than_the_busy_looks_never_make_the_spinner_rest() {
        let busy = Arc::new(BusyPoll::new(Duration::from_millis(20)));
        let spinner = spinner(&busy);
        for round in 1..=3 {
            for _ in 0..3 {
                busy.kick();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            assert!(until(|| busy.is_dormant()).await, "round {round}");
            assert_eq!(busy.rests(), 0, "round {round}: rested");
        }
        assert!(busy.wakes() >= 3, "{} wake-ups", busy.wakes());
        spinner.abort();
    }

    /// A window too long for the clock (`Duration::MAX`, "always poll") polls for as long as
    /// kicks come: the spinner's deadline does not overflow (which panicked the selector's
    /// task, so that the selector closed as if its runtime had ended).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_window_too_long_for_the_clock_keeps_the_spinner_polling() {
        let busy = Arc::new(BusyPoll::new(Duration::MAX));
        let mut spinner = spinner(&busy);
        for kick in 1..=2 {
            busy.kick();
            assert!(until(|| busy.wakes() >= 1).await, "not woken");
            let ended = tokio::time::timeout(Duration::from_millis(50), &mut spinner).await;
            assert!(ended.is_err(), "kick {kick}: the spinner ended: {ended:?}");
            assert!(!busy.is_dormant());
        }
        spinner.abort();
    }

    #[tokio::test]
    async fn a_zero_window_is_no_busy_polling() {
        let selector = crate::SelectorManager::with_busy_poll(Duration::ZERO);
        assert!(selector.busy_poll().is_none());
        assert!(crate::SelectorManager::new().busy_poll().is_none());
    }
}
