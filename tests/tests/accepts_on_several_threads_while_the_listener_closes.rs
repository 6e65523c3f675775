//! Several tasks accept on one listener from the worker threads of a multi-thread runtime (two
//! in `accept`, one through `incoming()`) while clients connect and another thread closes the
//! listener (`ServerSocket::accept`: "each connection goes to one of them"; `close`: "pending
//! and later `accept` calls fail with `Closed`", connections not handed out are closed).
//! Plain, under `max_connections`, reading PROXY protocol headers (`Optional`), and over Unix
//! sockets: every `accept` ends with `Closed` (the stream ends), every client is either served
//! once or sees its connection end (never left waiting), the listener counts exactly the
//! connections it handed out, and no socket is left behind. Also with a graceful `shutdown`
//! from a task instead of the close: it reports every connection handed out as open when it
//! began, each closes at its signal, and none is cut.
//!
//! Each client sends a byte first: a client whose handshake completes in the very moment the
//! listener closes can be left established with no server side at all, Linux sending it no
//! reset (seen also with a `std` listener closed as tokio clients connected, nothing accepting:
//! 12 of 2,500 clients under load). Its byte draws the reset, so that its read ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use net_sockets::a_socket;
use net_sockets::{Error, ProxyProtocol, SelectorManager, ServerSocket, Socket, UnixSocketAddress};
use net_tests::loopback::next_item;
use net_tests::rng::{Rng, seeds};
use net_tests::{TempDir, within};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Clone, Copy, Debug)]
enum Mode {
    Plain,
    Capped,
    ProxyOptional,
    Unix,
    /// Plain, ended by a graceful shutdown (from a task) instead of the close: each connection
    /// handed out waits for its shutdown signal before it closes.
    Shutdown,
}

/// The grace period of [`Mode::Shutdown`]: a connection that missed its signal is cut at its end.
const GRACE: Duration = Duration::from_secs(8);

/// How long a client waits for its greeting or its end: far longer than any close takes.
const CLIENT_WAIT: Duration = Duration::from_secs(10);

async fn listener(selector: &SelectorManager, mode: Mode, dir: &TempDir) -> ServerSocket {
    let builder = a_socket(selector).tcp();
    let bound = match mode {
        Mode::Plain | Mode::Shutdown => builder.bind(("127.0.0.1", 0)).await,
        Mode::Capped => builder.max_connections(2).bind(("127.0.0.1", 0)).await,
        Mode::ProxyOptional => {
            builder
                .proxy_protocol(ProxyProtocol::Optional)
                .proxy_header_timeout(Duration::from_millis(200))
                .bind(("127.0.0.1", 0))
                .await
        }
        Mode::Unix => {
            builder
                .bind(UnixSocketAddress::new(dir.join("s.sock")))
                .await
        }
    };
    bound.expect("bind")
}

/// A client: sends a byte, then reads to the end. `Ok(true)` when it was greeted, `Ok(false)`
/// when its connection ended (or was refused) without a greeting.
async fn client(mode: Mode, address: String, dir: Arc<TempDir>) -> Result<bool, String> {
    let mut stream: Box<dyn Io> = match mode {
        Mode::Unix => match tokio::net::UnixStream::connect(dir.join("s.sock")).await {
            Ok(stream) => Box::new(stream),
            Err(_) => return Ok(false),
        },
        _ => match tokio::net::TcpStream::connect(&address).await {
            Ok(stream) => Box::new(stream),
            Err(_) => return Ok(false),
        },
    };
    let _ = stream.write_all(b"x").await;
    let mut got = Vec::new();
    match tokio::time::timeout(CLIENT_WAIT, stream.read_to_end(&mut got)).await {
        Err(_) => Err(format!(
            "a client waited {CLIENT_WAIT:?}, having read {got:?}"
        )),
        Ok(_) if got == b"hi\n" => Ok(true),
        Ok(_) if got.is_empty() => Ok(false),
        Ok(end) => Err(format!("a client read {got:?}, then {end:?}")),
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Reads the client's byte, greets it, and closes (in [`Mode::Shutdown`], at the signal).
async fn serve(mut socket: Socket, mode: Mode) {
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    let _ = input.discard_exact(1).await;
    let _ = output.write_fully(b"hi\n").await;
    if matches!(mode, Mode::Shutdown) {
        socket.shutdown_requested().await;
    }
    let _ = output.flush_and_close().await;
}

async fn round(seed: u64, mode: Mode) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let selector = SelectorManager::new();
    let dir = Arc::new(TempDir::new("accepts-mt"));
    let listener = Arc::new(listener(&selector, mode, &dir).await);
    let address = listener.local_address().to_string();
    let handed = Arc::new(AtomicUsize::new(0));
    // Two tasks call `accept`, a third takes the connections from an `incoming()` stream.
    let accepters: Vec<_> = (0..3)
        .map(|i| {
            let listener = Arc::clone(&listener);
            let handed = Arc::clone(&handed);
            tokio::spawn(async move {
                let mut incoming = (i == 0).then(|| listener.incoming());
                loop {
                    let next = match &mut incoming {
                        Some(incoming) => next_item(incoming).await.unwrap_or(Err(Error::Closed)),
                        None => listener.accept().await,
                    };
                    let socket = match next {
                        Ok(socket) => socket,
                        Err(Error::Closed) => return Ok(()),
                        Err(e) => return Err(format!("an accept failed with {e:?}")),
                    };
                    handed.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(socket, mode));
                }
            })
        })
        .collect();
    let clients = 4 + rng.below(8) as usize;
    // Closed from a thread of its own (shut down from a task), as the clients connect: at
    // once, or up to 1.5 ms later.
    let delay = Duration::from_micros(rng.below(1500));
    let closer = {
        let listener = Arc::clone(&listener);
        if matches!(mode, Mode::Shutdown) {
            Err(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                listener.shutdown(GRACE).await
            }))
        } else {
            Ok(std::thread::spawn(move || {
                std::thread::sleep(delay);
                listener.close();
            }))
        }
    };
    let client_tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(mode, address.clone(), Arc::clone(&dir))))
        .collect();
    let mut greeted = 0;
    for task in client_tasks {
        greeted += usize::from(within(task).await.unwrap()?);
    }
    for task in accepters {
        within(task).await.unwrap()?;
    }
    let handed = handed.load(Ordering::SeqCst);
    match closer {
        Ok(thread) => thread.join().unwrap(),
        // Every connection handed out was admitted before the shutdown began (an accept that
        // completes as it begins admits its connection before, or not at all), so it was open
        // then, was signalled, and closed at the signal, within the grace period.
        Err(task) => {
            let report = within(task).await.unwrap();
            if report.finished != handed || report.cut != 0 {
                return Err(format!("{report:?} after {handed} connections handed out"));
            }
        }
    }
    if handed != greeted {
        return Err(format!(
            "{handed} connections handed out, {greeted} clients greeted"
        ));
    }
    let stats = listener.stats();
    if stats.accepted != handed as u64 {
        return Err(format!("{stats:?} after {handed} connections handed out"));
    }
    within(async {
        while listener.stats().open != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    selector.close();
    Ok(())
}

/// `ACCEPTS_MT_ROUNDS` rounds of each mode (30 unless set), from `ACCEPTS_MT_SEED` on.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn accepts_on_three_threads_end_closed_and_each_connection_is_served_or_ended() {
    let before = net_tests::probe::socket_count();
    for mode in [
        Mode::Plain,
        Mode::Capped,
        Mode::ProxyOptional,
        Mode::Unix,
        Mode::Shutdown,
    ] {
        for seed in seeds("ACCEPTS_MT", 30) {
            if let Err(e) = round(seed, mode).await {
                panic!("seed {seed}, {mode:?}: {e}");
            }
        }
    }
    within(async {
        while net_tests::probe::socket_count() > before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
