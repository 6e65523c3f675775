//! A selector with a runtime of its own (`SelectorManager::builder().worker_threads(2)`) whose
//! TLS connections are driven by tasks of another, multi-thread runtime: both ends' read and
//! write channels in four tasks on the test's workers, while a plain thread closes one socket
//! or the whole selector at a random moment. Every read and write ends (with a clean end, an
//! I/O error carrying `Closed` / `SelectorClosed` / the peer's reset or truncation, or
//! `ClosedForWrite`), none waits for ever, and no socket is left behind once the selector is
//! closed.

use std::sync::Arc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::rng::{Rng, seeds};
use net_tests::within;

/// How long a channel's task may take to end once the socket or the selector is closed: far
/// longer than it takes.
const END_WAIT: Duration = Duration::from_secs(15);

/// The errors a channel may end with when its socket, its peer or its selector closes.
fn an_end(e: &net_io::Error) -> bool {
    matches!(e, net_io::Error::Io(_) | net_io::Error::ClosedForWrite)
}

async fn round(seed: u64, pki: &net_tests::pki::Pki) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let selector = SelectorManager::builder()
        .worker_threads(2)
        .build()
        .unwrap();
    let listener = net_tests::loopback::tcp_listener(&selector).await;
    let (mut ours, mut theirs) = net_tests::tls::pair_of(&selector, &listener, pki).await;
    let mut tasks = Vec::new();
    for socket in [&mut ours, &mut theirs] {
        let mut input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(rng.below(2) == 0).unwrap();
        tasks.push(tokio::spawn(async move {
            loop {
                match input.read_line(100, LineEnding::Default).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(e) if an_end(&e) => return Ok(()),
                    Err(e) => return Err(format!("a read failed with {e:?}")),
                }
            }
        }));
        // Writes until the close ends them (the join below bounds the wait).
        tasks.push(tokio::spawn(async move {
            for k in 0u64.. {
                let written = async {
                    output.write_string_utf8(&format!("line {k}\n")).await?;
                    if k % 3 == 0 {
                        output.flush().await?;
                    }
                    Ok::<_, net_io::Error>(())
                }
                .await;
                match written {
                    Ok(()) => {}
                    Err(e) if an_end(&e) => return Ok(()),
                    Err(e) => return Err(format!("a write failed with {e:?}")),
                }
            }
            Ok(())
        }));
    }
    let ours = Arc::new(ours);
    let delay = Duration::from_micros(rng.below(5000));
    let close_selector = rng.below(2) == 0;
    let closer = std::thread::spawn({
        let (ours, selector) = (Arc::clone(&ours), selector.clone());
        move || {
            std::thread::sleep(delay);
            if close_selector {
                selector.close();
            } else {
                ours.close();
            }
        }
    });
    for task in tasks {
        match tokio::time::timeout(END_WAIT, task).await {
            Err(_) => {
                return Err(format!(
                    "a channel's task went on {END_WAIT:?} after the close (of the selector: \
                     {close_selector})"
                ));
            }
            Ok(ended) => ended.unwrap()?,
        }
    }
    closer.join().unwrap();
    drop((ours, theirs, listener));
    selector.close();
    Ok(())
}

/// `OWN_RUNTIME_MT_ROUNDS` rounds (40 unless set), from `OWN_RUNTIME_MT_SEED` on.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn tls_channels_on_another_runtimes_threads_end_when_a_socket_or_the_selector_closes() {
    let pki = net_tests::pki::Pki::generate();
    let before = net_tests::probe::socket_count();
    for seed in seeds("OWN_RUNTIME_MT", 40) {
        if let Err(e) = round(seed, &pki).await {
            panic!("seed {seed}: {e}");
        }
    }
    within(async {
        while net_tests::probe::socket_count() > before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
