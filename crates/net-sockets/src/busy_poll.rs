//! Busy polling ([`SelectorManager::with_busy_poll`](crate::SelectorManager::with_busy_poll)):
//! while a read has begun waiting within the last `window`, one task of the selector's runtime
//! keeps yielding, so that a worker polls the I/O driver without blocking instead of sleeping
//! in `epoll_wait`, and input that arrives then is taken at once, without the wake-up of a
//! sleeping thread.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The spinner sleeps until a read begins waiting.
const DORMANT: u8 = 0;
/// The spinner polls; no read began waiting since it last looked.
const SPINNING: u8 = 1;
/// A read began waiting since the spinner last looked (or woke it).
const KICKED: u8 = 2;

/// A selector's busy polling: how long it lasts, and the spinner's state.
#[derive(Debug)]
pub(crate) struct BusyPoll {
    window: Duration,
    state: AtomicU8,
    wake: Notify,
}

impl BusyPoll {
    pub(crate) fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            state: AtomicU8::new(DORMANT),
            wake: Notify::new(),
        }
    }

    /// A read began waiting for input: poll for the next `window`. A load of a line that
    /// stays shared while the spinner runs and sees reads begin waiting: it is written once per
    /// look of the spinner, not once per read.
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
    pub(crate) async fn spin(&self) {
        loop {
            self.wake.notified().await;
            let mut until = Instant::now() + self.window;
            loop {
                // The worker polls the I/O driver before it runs this task again.
                tokio::task::yield_now().await;
                // And the thread lets any other thread runnable on its core go first: polling
                // takes a core no one else wants, not one a busy process needs.
                std::thread::yield_now();
                if self.state.load(Ordering::Relaxed) == KICKED {
                    self.state.store(SPINNING, Ordering::Relaxed);
                    until = Instant::now() + self.window;
                } else if Instant::now() >= until
                    && self
                        .state
                        .compare_exchange(SPINNING, DORMANT, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    break;
                }
            }
        }
    }

    /// Whether the spinner sleeps (for tests).
    #[cfg(test)]
    pub(crate) fn is_dormant(&self) -> bool {
        self.state.load(Ordering::Acquire) == DORMANT
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spinner_sleeps_until_kicked_and_again_once_its_window_passes_without_a_kick() {
        let busy = Arc::new(BusyPoll::new(Duration::from_millis(20)));
        let spinner = tokio::spawn({
            let busy = busy.clone();
            async move { busy.spin().await }
        });
        assert!(busy.is_dormant());
        busy.kick();
        assert!(!busy.is_dormant(), "a kick wakes the spinner");
        assert!(
            until(|| busy.is_dormant()).await,
            "the spinner went back to sleep"
        );
        // Kicked again, it wakes again (the permit of a kick that came before it waited).
        busy.kick();
        assert!(!busy.is_dormant());
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
        assert!(busy.is_dormant());
        let mut input = socket.open_read_channel().unwrap();
        for round in 0..3 {
            let read = tokio::spawn(async move {
                let mut ping = [0; 4];
                input.read_fully(&mut ping).await.map(|()| (input, ping))
            });
            assert!(
                until(|| !busy.is_dormant()).await,
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
        assert!(until(|| !busy.is_dormant()).await, "no polling");
        assert!(until(|| busy.is_dormant()).await, "still polling");
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let crate::SocketAddress::Inet(to) = address else {
            panic!("{address:?}")
        };
        sender.send_to(b"ping", to.socket_addr()).await.unwrap();
        assert_eq!(&receiving.await.unwrap().unwrap().packet[..], b"ping");
        selector.close();
    }

    #[tokio::test]
    async fn a_zero_window_is_no_busy_polling() {
        let selector = crate::SelectorManager::with_busy_poll(Duration::ZERO);
        assert!(selector.busy_poll().is_none());
        assert!(crate::SelectorManager::new().busy_poll().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kicks_within_the_window_keep_the_spinner_polling() {
        let busy = Arc::new(BusyPoll::new(Duration::from_secs(2)));
        let spinner = tokio::spawn({
            let busy = busy.clone();
            async move { busy.spin().await }
        });
        busy.kick();
        let start = Instant::now();
        // Kicks every 20 ms for 300 ms: never a window without one.
        while start.elapsed() < Duration::from_millis(300) {
            assert!(!busy.is_dormant(), "asleep {:?} in", start.elapsed());
            busy.kick();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(until(|| busy.is_dormant()).await);
        spinner.abort();
    }
}
