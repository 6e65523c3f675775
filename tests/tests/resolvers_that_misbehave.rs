//! Host names resolved as real resolvers behave: each test runs in a network and mount namespace
//! of its own (skipped, saying why, where one cannot be made) whose `/etc/resolv.conf` sends
//! queries to a tiny DNS server the test runs on `127.0.0.1:53` (`options timeout:1
//! attempts:1`: glibc gives up after a second), and whose `/etc/nsswitch.conf` reads `hosts:
//! files dns`. That server answers by the name's first label: NXDOMAIN, SERVFAIL, an empty
//! answer, a truncated one, never, late, or with many addresses. Connects, binds and UDP
//! sockets to such names fail with typed errors, bounded by `connect_timeout` where one is set;
//! a name's many addresses are raced in the resolver's order, paced as documented; odd host
//! strings (a trailing dot, upper case, an internationalized name, over-long labels, a port or
//! brackets inside the host) fail typed or work, never panic; and TLS verifies a name with a
//! trailing dot or in upper case against a certificate for `localhost`.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::harness::{rerun_self_in_own_netns_with_resolver, run_if_child, status};
use net_tests::pki::Pki;
use net_tests::{HANG_LIMIT, within};
use net_tls::TlsExt;

const CHILD: &str = "NET_TESTS_RESOLVER_CHILD";

/// The hosts file of each namespace: `localhost` only.
const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n";

/// Queries go to the test's DNS server; glibc waits one second for an answer, once.
const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";

/// A fixed port (the namespace is the test's own).
const PORT: u16 = 5000;

/// How many addresses `many.test` and `holes.test` have.
const MANY: u8 = 20;

/// The names the server was asked for, with the query type (1: A, 28: AAAA), as received.
#[derive(Clone, Default)]
struct Queries(Arc<Mutex<Vec<(String, u16)>>>);

impl Queries {
    fn push(&self, name: String, qtype: u16) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, qtype));
    }

    /// Whether `name` was asked for.
    fn asked(&self, name: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(n, _)| n == name)
    }
}

/// Starts the DNS server on `127.0.0.1:53` of the child's namespace, on a thread of its own
/// (it serves at most 10,000 queries, and ends with the child process). It answers by the
/// first label of the name asked for:
///
/// - `nx`: NXDOMAIN; `servfail`: SERVFAIL; `nodata`: no error, no address; `trunc`: the
///   truncation bit, no address (glibc then asks over TCP, where nobody listens);
/// - `silent…`: never;
/// - `slow`: `127.0.0.1`, after 300 ms;
/// - `many`: `127.0.0.1` to `127.0.0.20`; `holes`: `127.0.1.1` to `127.0.1.20`;
/// - anything else: `127.0.0.1` (no IPv6 address).
fn start_dns() -> Queries {
    let socket = UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53 in the namespace");
    socket
        .set_read_timeout(Some(HANG_LIMIT * 3))
        .expect("a read timeout");
    let queries = Queries::default();
    let seen = queries.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        for _ in 0..10_000 {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            let Some((name, qtype, end)) = question(&buf[..n]) else {
                continue;
            };
            seen.push(name.clone(), qtype);
            let first = name.split('.').next().unwrap_or("").to_ascii_lowercase();
            let v4 = |ips: &mut dyn Iterator<Item = Ipv4Addr>| -> Vec<IpAddr> {
                if qtype == 1 {
                    ips.map(IpAddr::V4).collect()
                } else {
                    Vec::new()
                }
            };
            let query = &buf[..end];
            let answer = match first.as_str() {
                "nx" => reply(query, 3, false, &[]),
                "servfail" => reply(query, 2, false, &[]),
                "nodata" => reply(query, 0, false, &[]),
                "trunc" => reply(query, 0, true, &[]),
                f if f.starts_with("silent") => continue,
                "slow" => {
                    let late = reply(
                        query,
                        0,
                        false,
                        &v4(&mut std::iter::once(Ipv4Addr::LOCALHOST)),
                    );
                    let socket = socket.try_clone().expect("a clone of the server's socket");
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(300));
                        let _ = socket.send_to(&late, from);
                    });
                    continue;
                }
                "many" => reply(
                    query,
                    0,
                    false,
                    &v4(&mut (1..=MANY).map(|i| Ipv4Addr::new(127, 0, 0, i))),
                ),
                "holes" => reply(
                    query,
                    0,
                    false,
                    &v4(&mut (1..=MANY).map(|i| Ipv4Addr::new(127, 0, 1, i))),
                ),
                _ => reply(
                    query,
                    0,
                    false,
                    &v4(&mut std::iter::once(Ipv4Addr::LOCALHOST)),
                ),
            };
            let _ = socket.send_to(&answer, from);
        }
    });
    queries
}

/// The name (labels joined by dots, each byte as received: UTF-8 read lossily), the type and
/// the end of the question of a DNS query.
fn question(query: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

/// An answer to `query` (header and question) with `rcode`, the truncation bit `tc` and
/// `addresses`.
fn reply(query: &[u8], rcode: u8, tc: bool, addresses: &[IpAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD, AA; RA and the code.
    out.push(0x80 | (query[2] & 0x79) | 0x04 | if tc { 0x02 } else { 0 });
    out.push(0x80 | rcode);
    let count = u16::try_from(addresses.len()).expect("a few addresses");
    for n in [1, count, 0, 0] {
        out.extend_from_slice(&u16::to_be_bytes(n));
    }
    out.extend_from_slice(&query[12..]);
    for address in addresses {
        // The name is the question's (a pointer to offset 12), class IN, a minute to live.
        out.extend_from_slice(&[0xc0, 12]);
        let (qtype, data) = match address {
            IpAddr::V4(a) => (1u16, a.octets().to_vec()),
            IpAddr::V6(a) => (28, a.octets().to_vec()),
        };
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// The resolver's UDP sockets in this namespace, one per lookup under way (`/proc/net/udp`
/// lists the namespace's sockets): glibc's, connected to the DNS server (the server's own is
/// not connected); musl's, which sends with `sendto` and connects none, are those besides the
/// server's (no test here makes another UDP socket while it counts).
fn lookups_under_way() -> usize {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (local, remote) = (fields.next(), fields.next());
            if cfg!(target_env = "musl") {
                local != Some("0100007F:0035")
            } else {
                remote == Some("0100007F:0035")
            }
        })
        .count()
}

/// Waits until no lookup is under way (bounded by `within`).
async fn no_lookup_left() {
    within(async {
        while lookups_under_way() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Asserts that `e` is `Error::Resolve` for `host` whose source's message holds `reason`.
fn assert_resolve(e: &Error, host: &str, reason: &str, what: &str) {
    match e {
        Error::Resolve {
            host: h, source, ..
        } => {
            assert_eq!(h, host, "{what}");
            assert_eq!(e.kind(), ErrorKind::NotFound, "{what}");
            assert_eq!(
                e.to_string(),
                format!("could not resolve host {host:?}"),
                "{what}"
            );
            let from = std::error::Error::source(e).expect("a source").to_string();
            assert_eq!(from, source.to_string(), "{what}");
            assert!(from.contains(reason), "{what}: {from:?} lacks {reason:?}");
        }
        other => panic!("{what}: expected Error::Resolve, got {other:?}"),
    }
}

/// Asserts that `e` is `Error::Io` of kind `kind`.
fn assert_io(e: &Error, kind: ErrorKind, what: &str) {
    assert!(
        matches!(e, Error::Io(io) if io.kind() == kind),
        "{what}: expected {kind:?}, got {e:?}"
    );
}

/// Runs the child test `child` in its namespace, with the DNS server's configuration.
fn run(child: &str, marker: &str) {
    if let Some(output) =
        rerun_self_in_own_netns_with_resolver(child, CHILD, HOSTS, RESOLV_CONF, marker)
    {
        // Shown with `--nocapture`.
        print!("{output}");
    }
}

/// The C library's message for a name that does not exist (NXDOMAIN, `EAI_NONAME`): glibc's,
/// or musl's.
const NO_NAME: &str = if cfg!(target_env = "musl") {
    "Name does not resolve"
} else {
    "Name or service not known"
};
/// The C library's message for a server's failure, or no answer (`EAI_AGAIN`).
const TRY_AGAIN: &str = if cfg!(target_env = "musl") {
    "Try again"
} else {
    "Temporary failure in name resolution"
};
/// The C library's message for a name without an address (glibc: `EAI_NODATA`).
const NO_ADDRESS: &str = if cfg!(target_env = "musl") {
    "Name has no usable address"
} else {
    "No address associated with hostname"
};

/// A resolver that never answers. With `connect_timeout` (100 ms) the connect ends with
/// `Error::Timeout` before glibc gives up (it would then be `Error::Resolve`), and the lookup
/// runs on without it (its query's socket open) until glibc's own timeout; without one, TCP and
/// UDP connects end with `Error::Resolve` ("Temporary failure in name resolution") when glibc
/// gives up, and no lookup is left. A connect future dropped during the lookup leaves it
/// running: on a selector of the caller's runtime (`SelectorManager::new`), dropping that
/// runtime waits for it (tokio waits for its blocking threads), while a selector of its own
/// runtime (`builder`) is dropped at once, the lookup running on until glibc gives up.
#[test]
fn a_resolver_that_never_answers() {
    run(
        "a_resolver_that_never_answers_child",
        "silence as documented",
    );
}

#[test]
fn a_resolver_that_never_answers_child() {
    run_if_child(CHILD, async {
        let dns = start_dns();
        let selector = SelectorManager::new();
        let e = within(
            a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_millis(100))
                .connect(("silent-a.test", PORT)),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert!(matches!(e, Error::Timeout), "{e:?}");
        // The lookup runs on: its query reaches the server (on a loaded machine perhaps only
        // after the connect ended), its socket still open.
        within(async {
            while !dns.asked("silent-a.test") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            lookups_under_way() >= 1,
            "the lookup ended with the connect"
        );

        let tcp = a_socket(&selector).tcp().connect(("silent-b.test", PORT));
        let udp = a_socket(&selector).udp().connect(("silent-c.test", PORT));
        let (tcp, udp) = within(async { tokio::join!(tcp, udp) }).await;
        assert_resolve(
            &tcp.map(|_| ()).unwrap_err(),
            "silent-b.test",
            TRY_AGAIN,
            "TCP",
        );
        assert_resolve(
            &udp.map(|_| ()).unwrap_err(),
            "silent-c.test",
            TRY_AGAIN,
            "UDP",
        );
        // Each lookup ended as glibc gave up (the first, started earlier, too).
        no_lookup_left().await;

        // Dropped during the lookup, on a selector of a runtime that is then dropped.
        let asked = dns.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let selector = SelectorManager::new();
                let connect = a_socket(&selector).tcp().connect(("silent-d.test", PORT));
                let seen = async {
                    while !asked.asked("silent-d.test") {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                };
                tokio::select! {
                    r = connect => panic!("the connect ended: {:?}", r.map(|_| ())),
                    () = within(seen) => {}
                }
            });
            assert_eq!(lookups_under_way(), 1, "the lookup runs on");
            drop(runtime);
            assert_eq!(lookups_under_way(), 0, "the runtime's drop waited for it");
        })
        .await
        .unwrap();

        // Dropped during the lookup, on a selector of its own runtime, then dropped.
        let own = SelectorManager::builder().build().unwrap();
        let connect = a_socket(&own).tcp().connect(("silent-e.test", PORT));
        let seen = async {
            while !dns.asked("silent-e.test") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            r = connect => panic!("the connect ended: {:?}", r.map(|_| ())),
            () = within(seen) => {}
        }
        own.close();
        drop(own);
        assert_eq!(lookups_under_way(), 1, "the lookup runs on");
        no_lookup_left().await;
        println!("silence as documented");
    });
}

/// A name the server says does not exist (NXDOMAIN), one it failed on (SERVFAIL, which glibc
/// reports as temporary), one without an address, and one whose answer is truncated (glibc
/// asks again over TCP, where nobody listens): a TCP connect and bind, a UDP bind, connect and
/// `connect_from` (either name) fail with `Error::Resolve` naming the host, kind `NotFound`,
/// whose source carries the C library's message (glibc's; musl's in a musl build): the one way
/// to tell a name that does not exist from a failure worth retrying (std gives every resolver
/// error the same uncategorized kind). A
/// slow answer (300 ms) within glibc's timeout is an answer.
#[test]
fn names_that_fail_to_resolve() {
    run("names_that_fail_to_resolve_child", "failures as documented");
}

#[test]
fn names_that_fail_to_resolve_child() {
    run_if_child(CHILD, async {
        let dns = start_dns();
        let selector = SelectorManager::new();
        for (host, reason) in [
            ("nx.test", NO_NAME),
            ("servfail.test", TRY_AGAIN),
            ("nodata.test", NO_ADDRESS),
            ("trunc.test", TRY_AGAIN),
        ] {
            let tcp = a_socket(&selector).tcp();
            let udp = a_socket(&selector).udp();
            let e = within(tcp.clone().connect((host, PORT)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_resolve(&e, host, reason, "TCP connect");
            let e = within(tcp.bind((host, 0))).await.map(|_| ()).unwrap_err();
            assert_resolve(&e, host, reason, "TCP bind");
            let e = within(udp.clone().bind((host, 0)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_resolve(&e, host, reason, "UDP bind");
            let e = within(udp.clone().connect((host, PORT)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_resolve(&e, host, reason, "UDP connect");
            let e = within(udp.clone().connect_from((host, PORT), ("127.0.0.1", 0)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_resolve(&e, host, reason, "UDP connect_from, the remote");
            let e = within(udp.connect_from(("127.0.0.1", PORT), (host, 0)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_resolve(&e, host, reason, "UDP connect_from, the local");
            assert!(dns.asked(host), "{host} was not asked for");
        }
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", PORT))
            .await
            .unwrap();
        let socket = within(a_socket(&selector).tcp().connect(("slow.test", PORT)))
            .await
            .unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        assert_eq!(accepted.remote_address(), socket.local_address());
        println!("failures as documented");
    });
}

/// Collects the addresses of net-sockets' `connect attempt` events, in order, each with when
/// it came (set it as a thread's default subscriber, on a current-thread runtime, to see that
/// thread's attempts).
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<(String, Instant)>>>);

impl Attempts {
    fn taken(&self) -> Vec<String> {
        self.taken_at().into_iter().map(|(a, _)| a).collect()
    }

    fn taken_at(&self) -> Vec<(String, Instant)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl tracing::Subscriber for Attempts {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target().starts_with("net_sockets")
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        #[derive(Default)]
        struct Fields {
            attempt: bool,
            address: Option<String>,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.attempt = format!("{value:?}") == "connect attempt",
                    "address" => self.address = Some(format!("{value:?}")),
                    _ => {}
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (true, Some(address)) = (fields.attempt, fields.address) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((address, Instant::now()));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A name with 20 addresses (all IPv4: nothing to interleave) is tried in the resolver's
/// order, each refused attempt starting the next at once: only the last listens, and is
/// connected to; with none listening, every address is tried once and the error is the last
/// one's, `ConnectionRefused`. Twenty addresses that never answer (a `tc` filter drops their
/// packets): a new attempt starts each 250 ms at most (no two less than 250 ms apart), in the
/// same order, until `connect_timeout` (1 s), which bounds them all together, ends the
/// connect with `Error::Timeout` and closes every attempt under way.
#[test]
fn a_name_with_many_addresses() {
    run(
        "a_name_with_many_addresses_child",
        "many addresses as documented",
    );
}

#[test]
fn a_name_with_many_addresses_child() {
    run_if_child(CHILD, async {
        let _dns = start_dns();
        let attempts = Attempts::default();
        let _default = tracing::subscriber::set_default(attempts.clone());
        let selector = SelectorManager::new();
        let order: Vec<SocketAddr> = tokio::task::spawn_blocking(|| {
            ("many.test", PORT).to_socket_addrs().unwrap().collect()
        })
        .await
        .unwrap();
        let mut sorted = order.clone();
        sorted.sort();
        let all: Vec<SocketAddr> = (1..=MANY)
            .map(|i| SocketAddr::from(([127, 0, 0, i], PORT)))
            .collect();
        assert_eq!(sorted, all, "the resolver's answer");
        let expected: Vec<String> = order.iter().map(ToString::to_string).collect();
        let last = *order.last().unwrap();

        let listener = a_socket(&selector).tcp().bind(last).await.unwrap();
        let socket = within(a_socket(&selector).tcp().connect(("many.test", PORT)))
            .await
            .unwrap();
        assert_eq!(socket.remote_address(), last.into());
        assert_eq!(attempts.taken(), expected, "the attempts");
        drop(socket);
        listener.close();

        let e = within(a_socket(&selector).tcp().connect(("many.test", PORT)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_io(&e, ErrorKind::ConnectionRefused, "nobody listening");
        assert_eq!(attempts.taken(), expected, "the attempts");

        // Every packet to 127.0.1.0/24 dropped (sent on to a veth whose other end is down):
        // SYNs go unanswered.
        let dropped = [
            "link add vanish0 type veth peer name vanish1",
            "-tc qdisc add dev lo ingress",
            "-tc filter add dev lo parent ffff: protocol ip prio 1 u32 match ip dst \
             127.0.1.0/24 action mirred egress redirect dev vanish0",
        ]
        .iter()
        .all(|args| {
            let (program, args) = match args.strip_prefix("-tc ") {
                Some(args) => ("tc", args),
                None => ("ip", *args),
            };
            status(std::process::Command::new(program).args(args.split_whitespace()))
                .is_ok_and(|s| s.success())
        });
        if !dropped {
            net_tests::harness::skipped(
                "addresses that never answer: no veth pair or tc u32 filter here",
            );
            println!("many addresses as documented");
            return;
        }
        let order: Vec<String> = tokio::task::spawn_blocking(|| {
            ("holes.test", PORT)
                .to_socket_addrs()
                .unwrap()
                .map(|a| a.to_string())
                .collect()
        })
        .await
        .unwrap();
        let started = Instant::now();
        let e = within(
            a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_secs(1))
                .connect(("holes.test", PORT)),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(e, Error::Timeout), "{e:?}");
        let tried_at = attempts.taken_at();
        for pair in tried_at.windows(2) {
            let gap = pair[1].1 - pair[0].1;
            assert!(
                gap >= Duration::from_millis(250),
                "{gap:?} between attempts"
            );
        }
        let tried: Vec<String> = tried_at.into_iter().map(|(a, _)| a).collect();
        // At least two: the lookup and the first attempt took less than 750 ms.
        assert!(tried.len() >= 2, "{tried:?}");
        let paced = 1 + usize::try_from(elapsed.as_millis() / 250).unwrap();
        assert!(tried.len() <= paced, "{tried:?} in {elapsed:?}");
        assert_eq!(tried, order[..tried.len()], "the attempts");
        // The attempts under way were dropped with their descriptors: no SYN is sent again.
        let tcp = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let syn_sent = tcp
            .lines()
            .skip(1)
            .filter(|line| line.split_whitespace().nth(3) == Some("02"))
            .count();
        assert_eq!(syn_sent, 0, "attempts left connecting:\n{tcp}");
        println!("many addresses as documented");
    });
}

/// Host strings as users write them: upper case (`LOCALHOST`, from the hosts file, as glibc
/// compares names without regard to case) and a trailing dot (`localhost.`, which glibc 2.36
/// does not find in the hosts file: it asks DNS, here answered with `127.0.0.1`) connect; an
/// internationalized name (`bücher.example`) fails with `Error::Resolve` ("Name or service
/// not known") without a query (glibc refuses a name that is not ASCII; its IDNA form,
/// `xn--bcher-kva.example`, resolves); so do a label over 63 bytes, a name over 253, a host
/// with a port (`"localhost:80"` as the host of `(host, port)`) or in brackets
/// (`"[localhost]"`), none of them asked for; a NUL byte fails with a source of kind
/// `InvalidInput`; `"[::1]"` is the IPv6 loopback. No panic, and binds fail alike. Built with
/// musl, whose resolver compares names in the hosts file as they are and checks fewer names
/// before asking DNS, `LOCALHOST`, `bücher.example` (as UTF-8), `"localhost:80"` and
/// `"[localhost]"` are asked of DNS, and only the over-long names are refused unasked.
#[test]
fn host_strings_as_users_write_them() {
    run(
        "host_strings_as_users_write_them_child",
        "host strings as documented",
    );
}

#[test]
fn host_strings_as_users_write_them_child() {
    run_if_child(CHILD, async {
        let dns = start_dns();
        let selector = SelectorManager::new();
        let v4 = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", PORT))
            .await
            .unwrap();
        let v6 = a_socket(&selector).tcp().bind(("::1", PORT)).await.unwrap();
        for (host, listener) in [
            ("LOCALHOST", None),
            ("localhost.", Some(&v4)),
            ("LocalHost.", Some(&v4)),
            ("xn--bcher-kva.example", Some(&v4)),
            ("[::1]", Some(&v6)),
        ] {
            let socket = within(a_socket(&selector).tcp().connect((host, PORT)))
                .await
                .unwrap_or_else(|e| panic!("{host}: {e:?}"));
            let accepted = within(async {
                tokio::select! {
                    a = v4.accept() => a,
                    a = v6.accept() => a,
                }
            })
            .await
            .unwrap();
            assert_eq!(accepted.remote_address(), socket.local_address(), "{host}");
            if let Some(listener) = listener {
                assert_eq!(socket.remote_address(), listener.local_address(), "{host}");
            }
        }
        // glibc finds names in the hosts file without regard to case; musl compares them as
        // they are, and asks DNS (here answered with `127.0.0.1`).
        assert_eq!(
            dns.asked("LOCALHOST"),
            cfg!(target_env = "musl"),
            "the hosts file answers LOCALHOST with glibc only"
        );
        assert!(dns.asked("localhost"), "glibc asks DNS for localhost.");
        assert!(dns.asked("xn--bcher-kva.example"));

        let long_name = format!("{}test", "abcdefghi.".repeat(26));
        let long_label = "a".repeat(64);
        // musl asks DNS for a name that is not ASCII (as UTF-8), and for one with a port or in
        // brackets, which glibc refuses; both refuse the over-long ones.
        let refused = if cfg!(target_env = "musl") {
            vec![long_label.as_str(), long_name.as_str()]
        } else {
            vec![
                "bücher.example",
                long_label.as_str(),
                long_name.as_str(),
                "localhost:80",
                "[localhost]",
            ]
        };
        for host in refused {
            let e = within(a_socket(&selector).tcp().connect((host, PORT)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_resolve(&e, host, NO_NAME, "connect");
            let e = within(a_socket(&selector).tcp().bind((host, 0)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_resolve(&e, host, NO_NAME, "bind");
            let e = within(a_socket(&selector).udp().connect((host, PORT)))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_resolve(&e, host, NO_NAME, "UDP connect");
        }
        let asked = dns.0.lock().unwrap().clone();
        for (name, _) in &asked {
            assert!(
                !name.contains("example") || name == "xn--bcher-kva.example",
                "{name} was asked for"
            );
            assert!(
                name.len() <= 253 && !name.contains(':') && !name.contains('['),
                "{name} was asked for"
            );
        }
        let e = within(a_socket(&selector).tcp().connect(("a\0b", PORT)))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(&e, Error::Resolve { host, source, .. }
                if host == "a\0b" && source.kind() == ErrorKind::InvalidInput),
            "{e:?}"
        );
        println!("host strings as documented");
    });
}

/// TLS to a name with a trailing dot or in upper case, against a certificate for `localhost`:
/// the handshake succeeds (rustls matches the name without regard to case or to the trailing
/// dot), the server sees the name by SNI in lower case and without its dot, and the client's
/// `server_name` is the name as given, in its case, without the trailing dot.
#[test]
fn tls_to_names_with_a_dot_or_in_upper_case() {
    run(
        "tls_to_names_with_a_dot_or_in_upper_case_child",
        "tls names as documented",
    );
}

#[test]
fn tls_to_names_with_a_dot_or_in_upper_case_child() {
    run_if_child(CHILD, async {
        let _dns = start_dns();
        let selector = SelectorManager::new();
        let pki = Pki::with_server_names(&["localhost"]);
        let server_config = pki.server_config().build().unwrap();
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", PORT))
            .await
            .unwrap();
        for host in ["localhost.", "LOCALHOST", "LocalHost."] {
            let client = async {
                let socket = a_socket(&selector).tcp().connect((host, PORT)).await?;
                socket.tls(pki.client_config().build().unwrap()).await
            };
            let server = async {
                let accepted = listener.accept().await.unwrap();
                accepted.tls_server(&server_config).await
            };
            let (client, server) = within(async { tokio::join!(client, server) }).await;
            let client = client.unwrap_or_else(|e| panic!("{host}: {e:?}"));
            let server = server.unwrap_or_else(|e| panic!("{host}: {e:?}"));
            let given = host.strip_suffix('.').unwrap_or(host);
            assert_eq!(client.server_name(), Some(given), "{host}");
            assert_eq!(server.server_name(), Some("localhost"), "{host}");
        }
        println!("tls names as documented");
    });
}
