//! `chat-server` end to end: nicks, lines to everyone but the sender, joins and leaves, the
//! line limit, a client that stops reading (dropped, never stalling the others), and graceful
//! shutdown.

use std::io::Write;
use std::sync::mpsc;

use net_tests::HANG_LIMIT;
use net_tests::harness::{LineClient, Process};

const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");

fn start() -> (Process, u16) {
    start_with(&[])
}

/// `chat-server 127.0.0.1 0 EXTRA...` and its port.
fn start_with(extra: &[&str]) -> (Process, u16) {
    let mut args = vec!["127.0.0.1", "0"];
    args.extend_from_slice(extra);
    let mut server = Process::start(CHAT, args);
    let port = server.listening_port();
    (server, port)
}

/// A client that has given its nick and read its welcome.
fn join(port: u16, nick: &str, welcome: &str) -> LineClient {
    let mut client = LineClient::connect(port);
    client.expect("Your name?");
    client.send(nick);
    client.expect(welcome);
    client
}

#[test]
fn three_clients_chat() {
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let mut carol = join(port, "carol", "* Welcome, carol. Here: alice, bob");
    alice.expect("* carol joined");
    bob.expect("* carol joined");

    // A taken or empty name is refused and asked again.
    let mut late = LineClient::connect(port);
    late.expect("Your name?");
    late.send("alice");
    late.expect("* alice is taken.");
    late.expect("Your name?");
    late.send("  ");
    late.expect("* A name cannot be empty.");
    late.expect("Your name?");
    drop(late);

    alice.send("hello");
    bob.expect("alice: hello");
    carol.expect("alice: hello");
    bob.send("hi alice");
    carol.expect("bob: hi alice");
    // Alice's next line is Bob's: her own line did not come back to her.
    alice.expect("bob: hi alice");
    // Exactly the line limit goes through.
    let longest = format!("{}!", "x".repeat(8191));
    carol.send(&longest);
    alice.expect(&format!("carol: {longest}"));
    bob.expect(&format!("carol: {longest}"));

    carol.shutdown_write();
    carol.expect_end();
    alice.expect("* carol left");
    bob.expect("* carol left");

    // One byte over the limit: that client is told and leaves; the others are not disturbed.
    bob.send(&"y".repeat(8193));
    bob.expect("* Line too long (limit 8192 bytes), goodbye.");
    bob.expect_end();
    alice.expect("* bob left");
    let mut dave = join(port, "dave", "* Welcome, dave. Here: alice");
    alice.expect("* dave joined");
    dave.send("anyone?");
    alice.expect("dave: anyone?");
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_never_stalls_the_others() {
    const LINES: usize = 4000;
    const BATCH: usize = 100;
    let (mut server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    // Carol joins, then never reads again.
    let mut carol = join(port, "carol", "* Welcome, carol. Here: alice, bob");
    alice.expect("* carol joined");
    bob.expect("* carol joined");

    // Bob reads everything in a thread and reports each line's number as it arrives; Alice
    // sends batches of long lines and waits for Bob after each one, so Bob is never more than
    // a batch behind while Carol falls further and further behind.
    let (progress, progressed) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut saw_carol_leave = false;
        let mut next = 0;
        while next < LINES || !saw_carol_leave {
            let line = bob.line().expect("bob's connection stays open");
            if line == "* carol left" {
                saw_carol_leave = true;
                continue;
            }
            let (number, _) = line
                .strip_prefix("alice: ")
                .and_then(|rest| rest.split_once(' '))
                .unwrap_or_else(|| panic!("unexpected line for bob: {line:.80}"));
            assert_eq!(number.parse::<usize>().unwrap(), next, "bob lost a line");
            next += 1;
            progress.send(next).unwrap();
        }
        bob
    });
    let padding = "z".repeat(1000);
    let mut batch = String::new();
    for start in (0..LINES).step_by(BATCH) {
        batch.clear();
        for n in start..start + BATCH {
            batch.push_str(&format!("{n} {padding}\n"));
        }
        alice.stream().write_all(batch.as_bytes()).unwrap();
        loop {
            let got = progressed
                .recv_timeout(HANG_LIMIT)
                .expect("bob keeps receiving");
            if got == start + BATCH {
                break;
            }
        }
    }
    let mut bob = reader.join().expect("bob got every line, in order");
    alice.expect("* carol left");
    server.stdout_line_where("carol dropped", |l| {
        l.starts_with("Dropped carol (127.0.0.1:") && l.ends_with("too far behind")
    });

    // Carol's connection was reset: what she had buffered, then the end.
    let received = carol.lines_until_end();
    assert!(received < LINES, "carol got everything: {received}");

    // The room goes on.
    alice.send("still here");
    bob.expect("alice: still here");
}

/// One paste of many short lines (more than a member's queue holds) reaches every member that
/// reads: the sender goes at its readers' pace instead of overrunning their queues, so nobody
/// who keeps reading is dropped for it.
#[test]
fn a_burst_of_lines_reaches_members_that_read_and_drops_nobody() {
    const LINES: usize = 2000;
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let burst: String = (0..LINES).map(|n| format!("line {n}\n")).collect();
    alice.stream().write_all(burst.as_bytes()).unwrap();
    for n in 0..LINES {
        bob.expect(&format!("alice: line {n}"));
    }
    bob.send("all here");
    alice.expect("bob: all here");
}

/// Two members pasting at the same moment reach a member that reads them both, and each
/// other: every waiting paster is let go when a reader has made room, and the lines they then
/// say together never overrun its queue, so nobody who keeps reading is dropped for it.
#[test]
fn two_pastes_at_once_reach_members_that_read_and_drop_nobody() {
    const LINES: usize = 4000;
    let (_server, port) = start();
    let mut carol = join(port, "carol", "* Welcome, carol. Nobody else is here yet.");
    let mut alice = join(port, "alice", "* Welcome, alice. Here: carol");
    carol.expect("* alice joined");
    let bob = join(port, "bob", "* Welcome, bob. Here: alice, carol");
    carol.expect("* bob joined");
    alice.expect("* bob joined");

    // Reads until it has every line of each paster's paste (in order), and returns the client.
    fn read_pastes(mut client: LineClient, from: &[&str]) -> LineClient {
        let mut next = vec![0; from.len()];
        while next.iter().any(|&n| n < LINES) {
            let line = client.line().expect("the connection stays open");
            let (nick, number) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("unexpected line: {line:.80}"));
            let who = from.iter().position(|f| *f == nick).expect("a paster");
            assert_eq!(number.parse::<usize>().unwrap(), next[who], "{line}");
            next[who] += 1;
        }
        client
    }
    let paste: String = (0..LINES).map(|n| format!("{n}\n")).collect();
    let (mut alice, mut bob, mut carol) = std::thread::scope(|scope| {
        for client in [&alice, &bob] {
            let mut stream = client.stream().try_clone().unwrap();
            let paste = &paste;
            scope.spawn(move || stream.write_all(paste.as_bytes()).unwrap());
        }
        let alice = scope.spawn(|| read_pastes(alice, &["bob"]));
        let bob = scope.spawn(|| read_pastes(bob, &["alice"]));
        let carol = scope.spawn(|| read_pastes(carol, &["alice", "bob"]));
        (
            alice.join().expect("alice got bob's paste"),
            bob.join().expect("bob got alice's paste"),
            carol.join().expect("carol got both pastes"),
        )
    });
    carol.send("all here");
    alice.expect("carol: all here");
    bob.expect("carol: all here");
}

/// Clients that ask for the same nick at the same moment: exactly one gets it, the others are
/// told it is taken (the check and the join are one step).
#[test]
fn one_nick_goes_to_one_client_however_close_the_race() {
    const ROUNDS: usize = 40;
    const RACERS: usize = 4;
    let (_server, port) = start();
    for round in 0..ROUNDS {
        let nick = format!("n{round}");
        let mut racers: Vec<LineClient> = (0..RACERS)
            .map(|_| {
                let mut client = LineClient::connect(port);
                client.expect("Your name?");
                client
            })
            .collect();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(RACERS));
        let answers: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = racers
                .iter_mut()
                .map(|client| {
                    let (barrier, nick) = (std::sync::Arc::clone(&barrier), nick.clone());
                    scope.spawn(move || {
                        barrier.wait();
                        client.send(&nick);
                        client.line().expect("an answer")
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let welcomed = answers
            .iter()
            .filter(|a| a.starts_with("* Welcome"))
            .count();
        let taken = answers
            .iter()
            .filter(|a| *a == &format!("* {nick} is taken."))
            .count();
        assert_eq!(
            (welcomed, taken),
            (1, RACERS - 1),
            "round {round}: {answers:?}"
        );
    }
}

#[test]
fn sigterm_says_goodbye_to_every_member_and_stops() {
    let (mut server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    // One that has not given a name yet is told too.
    let mut anonymous = LineClient::connect(port);
    anonymous.expect("Your name?");
    server.stdout_line_where("bob joined", |l| l.ends_with("joined as bob"));

    server.signal("TERM");
    for client in [&mut alice, &mut bob, &mut anonymous] {
        client.expect("Server is shutting down");
        client.expect_end();
    }
    server.stdout_line_where("shutting down", |l| l == "Shutting down (3 open)");
    drop((alice, bob, anonymous));
    let finished = server.finish();
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    let (last, before) = finished.stdout.split_last().unwrap();
    assert_eq!(last, "Server stopped");
    let mut left = before.to_vec();
    left.sort();
    assert_eq!(left, ["alice left", "bob left"]);
}

/// A line over the limit where the nick is expected gets the notice a member's over-long line
/// gets, then the end of the connection (not a reset that destroys the notice); the room is
/// not disturbed.
#[test]
fn an_over_long_line_for_a_nick_is_told_then_ends_that_connection() {
    let (mut server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut long = LineClient::connect(port);
    long.expect("Your name?");
    long.send(&"n".repeat(100_000));
    long.expect("* Line too long (limit 8192 bytes), goodbye.");
    long.expect_end();
    server.stdout_line_where("the connection's end", |l| {
        l.ends_with("ended: line longer than the limit of 8192 bytes")
    });
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    bob.send("hi");
    alice.expect("bob: hi");
}

/// A member's over-long line gets the notice as its last line, even while another member
/// talks without a pause: nothing the room says is queued for it after its goodbye (the notice
/// and the leave are one turn of the room), and the others see it leave.
#[test]
fn the_goodbye_for_an_over_long_line_is_the_last_line_even_in_a_busy_room() {
    const LINES: usize = 3000;
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let mut carol = join(port, "carol", "* Welcome, carol. Here: alice, bob");
    alice.expect("* carol joined");
    bob.expect("* carol joined");
    // Bob reads Alice's paste as it comes, so that she keeps talking.
    let reader = std::thread::spawn(move || {
        let mut carol_left = false;
        for n in 0..LINES {
            let line = next_line_but_left(&mut bob, "carol", &mut carol_left).unwrap();
            assert_eq!(line, format!("alice: line {n}"));
        }
        (bob, carol_left)
    });
    let burst: String = (0..LINES).map(|n| format!("line {n}\n")).collect();
    let mut writer = alice.stream().try_clone().unwrap();
    let pasting = std::thread::spawn(move || writer.write_all(burst.as_bytes()).unwrap());
    // Carol reads Alice's lines for a while, then says a line over the limit.
    carol.expect("alice: line 0");
    carol.send(&"y".repeat(8193));
    loop {
        let line = carol.line().expect("the notice before the end");
        if line == "* Line too long (limit 8192 bytes), goodbye." {
            break;
        }
        assert!(line.starts_with("alice: line "), "{line}");
    }
    carol.expect_end();
    pasting.join().unwrap();
    let (mut bob, carol_left) = reader.join().unwrap();
    if !carol_left {
        bob.expect("* carol left");
    }
}

/// A nick with a separator of the room's lines in it is refused: with it, `NICK: LINE` (or the
/// welcome's list of who is here) would no longer tell who said what, and one member could
/// put words in another's mouth.
#[test]
fn a_nick_with_a_separator_in_it_is_refused() {
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let mut mallory = LineClient::connect(port);
    mallory.expect("Your name?");
    // As a member, its `ok` would reach alice as `bob: I quit: ok`.
    mallory.send("bob: I quit");
    mallory.expect("* A name cannot contain \": \" or \", \".");
    mallory.expect("Your name?");
    // In the welcome's list, it would pass for two members.
    mallory.send("carol, dave");
    mallory.expect("* A name cannot contain \": \" or \", \".");
    mallory.expect("Your name?");
    // Either character alone is fine.
    mallory.send("m:a,l");
    mallory.expect("* Welcome, m:a,l. Here: alice, bob");
    alice.expect("* m:a,l joined");
    mallory.send("ok");
    alice.expect("m:a,l: ok");
    bob.expect("* m:a,l joined");
    bob.expect("m:a,l: ok");
}

/// The next line of `client` other than `* NICK left`; `left` notes that one when it comes.
fn next_line_but_left(client: &mut LineClient, nick: &str, left: &mut bool) -> Option<String> {
    loop {
        let line = client.line();
        if line.as_deref() == Some(&format!("* {nick} left")) {
            *left = true;
        } else {
            return line;
        }
    }
}

/// With `--idle-timeout 1`, a client that never gives its nick and a member that never says
/// anything are closed (the room sees the member leave), while members that talk are served.
#[test]
fn silent_clients_are_closed_before_and_after_their_nick_while_talkers_stay() {
    let (mut server, port) = start_with(&["--idle-timeout", "1"]);
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let mut lurker = join(port, "lurker", "* Welcome, lurker. Here: alice, bob");
    let lurker_address = lurker.local_addr().to_string();
    alice.expect("* lurker joined");
    bob.expect("* lurker joined");
    let mut nameless = LineClient::connect(port);
    nameless.expect("Your name?");
    let nameless_address = nameless.local_addr().to_string();

    // Alice and Bob talk every 300 ms for 2.1 s: more than the idle timeout in all, never
    // that long silent (the pace is the behaviour here).
    let started = std::time::Instant::now();
    let (mut alice_saw, mut bob_saw) = (false, false);
    for i in 0..7 {
        alice.send(&format!("round {i}"));
        assert_eq!(
            next_line_but_left(&mut bob, "lurker", &mut bob_saw),
            Some(format!("alice: round {i}"))
        );
        bob.send(&format!("ack {i}"));
        assert_eq!(
            next_line_but_left(&mut alice, "lurker", &mut alice_saw),
            Some(format!("bob: ack {i}"))
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(started.elapsed() > std::time::Duration::from_secs(2));

    // The silent two were closed, and the server said why.
    nameless.expect_end();
    let heard = lurker.lines_until_end();
    assert!(heard >= 1, "the lurker heard the others until its end");
    let mut ends = Vec::new();
    for _ in 0..2 {
        ends.push(server.stdout_line_where("a silent client's end", |l| {
            l.starts_with("Connection with ") && l.contains(" ended")
        }));
    }
    ends.sort();
    let mut expected = [
        format!("Connection with {nameless_address} ended: timed out"),
        format!("Connection with {lurker_address} ended: timed out"),
    ];
    expected.sort();
    assert_eq!(ends, expected);
    if !alice_saw {
        alice.expect("* lurker left");
    }
    if !bob_saw {
        bob.expect("* lurker left");
    }
    alice.send("still here");
    bob.expect("alice: still here");
}

/// A client dropped for falling behind is cut off in the middle of whatever the server was
/// writing to it. The end it sees must not pass for a clean one: what it had received, then a
/// reset; never a line cut short followed by an orderly end of stream, which a client (this
/// project's `sockets-client` among them) takes for the server's last line.
#[test]
fn a_dropped_client_never_sees_a_cut_line_as_a_clean_end() {
    use std::io::Read;

    const MAX_LINES: usize = 20_000;
    const BATCH: usize = 100;
    let (mut server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    // Carol joins on a bare stream (no read-ahead buffer of our own), then never reads again.
    let mut carol = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    carol.set_read_timeout(Some(HANG_LIMIT)).unwrap();
    let mut greeting = Vec::new();
    let mut byte = [0; 1];
    while greeting.iter().filter(|&&b| b == b'\n').count() < 1 {
        carol.read_exact(&mut byte).unwrap();
        greeting.push(byte[0]);
    }
    assert_eq!(greeting, b"Your name?\n");
    carol.write_all(b"carol\n").unwrap();
    let welcome = b"* Welcome, carol. Here: alice, bob\n";
    let mut got = vec![0; welcome.len()];
    carol.read_exact(&mut got).unwrap();
    assert_eq!(got, welcome);
    alice.expect("* carol joined");
    bob.expect("* carol joined");

    // Bob reads everything (in a thread, reporting his progress); Alice sends batches of lines
    // of an odd length, waiting for Bob after each, until Bob sees Carol dropped.
    let (progress, progressed) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut count = 0;
        loop {
            let line = bob.line().expect("bob's connection stays open");
            if line == "* carol left" {
                let _ = progress.send(None);
                return;
            }
            count += 1;
            if count % BATCH == 0 {
                let _ = progress.send(Some(count));
            }
        }
    });
    let padding = "z".repeat(997);
    let mut sent = 0;
    'sending: while sent < MAX_LINES {
        let batch: String = (sent..sent + BATCH)
            .map(|n| format!("{n} {padding}\n"))
            .collect();
        alice.stream().write_all(batch.as_bytes()).unwrap();
        sent += BATCH;
        loop {
            match progressed
                .recv_timeout(HANG_LIMIT)
                .expect("bob keeps receiving")
            {
                None => break 'sending,
                Some(count) if count == sent => break,
                Some(_) => {}
            }
        }
    }
    reader.join().expect("bob read until carol left");
    server.stdout_line_where("carol dropped", |l| l.starts_with("Dropped carol ("));

    // What Carol gets: the lines she had not read, then the end.
    let mut received = Vec::new();
    let end = loop {
        let mut chunk = [0; 64 * 1024];
        match carol.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(e),
        }
    };
    match end {
        Ok(()) => assert!(
            received.ends_with(b"\n"),
            "a clean end after a cut line: {:?}",
            String::from_utf8_lossy(&received[received.len().saturating_sub(40)..])
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// A line that is not UTF-8 is not said to the room: with each bad byte replaced by U+FFFD
/// (3 bytes), a line within the limit would reach the others (and wait in their queues) at up
/// to three times the limit. Its sender is told and stays; a nick that is not UTF-8 is refused
/// and asked again.
#[test]
fn a_line_that_is_not_utf8_is_refused_and_its_sender_stays() {
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let mut bad = vec![0xFF; 8192];
    bad.extend_from_slice(b"\nok\n");
    bob.stream().write_all(&bad).unwrap();
    let next = alice.line().unwrap();
    assert_eq!(next, "bob: ok", "a line of {} bytes", next.len());
    bob.expect("* Line not sent: it is not UTF-8.");

    let mut carol = LineClient::connect(port);
    carol.expect("Your name?");
    carol.stream().write_all(b"caf\xE9\n").unwrap();
    carol.expect("* A name must be UTF-8.");
    carol.expect("Your name?");
    carol.send("carol");
    carol.expect("* Welcome, carol. Here: alice, bob");
}

/// Many clients joining at the same moment, then many leaving at the same moment, with small
/// queues (`--queue-lines 4`, far fewer lines than the notices each member gets): every member
/// that keeps reading hears every join and every leave and is never dropped for it. Notices
/// wait for room in every queue as a speaker's lines do, instead of overrunning the queues of
/// members that read.
#[test]
fn many_joins_and_leaves_at_once_drop_nobody_who_reads() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Barrier};

    const CLIENTS: usize = 40;
    const LEAVERS: usize = CLIENTS / 2;
    let (_server, port) = start_with(&["--queue-lines", "4"]);
    let nicks: Vec<String> = (0..CLIENTS).map(|n| format!("m{n:02}")).collect();
    let clients: Vec<LineClient> = nicks
        .iter()
        .map(|_| {
            let mut client = LineClient::connect(port);
            client.expect("Your name?");
            client
        })
        .collect();

    // Every client gives its nick at once, then reads until it knows of every other member
    // (from its welcome's list, then from `* NICK joined`).
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<LineClient> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .into_iter()
            .zip(&nicks)
            .map(|(mut client, nick)| {
                let (barrier, nicks) = (Arc::clone(&barrier), &nicks);
                scope.spawn(move || {
                    barrier.wait();
                    client.send(nick);
                    let welcome = client.line().expect("a welcome");
                    let here = welcome
                        .strip_prefix(&format!("* Welcome, {nick}. "))
                        .unwrap_or_else(|| panic!("{nick}: not a welcome: {welcome}"));
                    let mut known: BTreeSet<String> = match here.strip_prefix("Here: ") {
                        Some(list) => list.split(", ").map(str::to_owned).collect(),
                        None => BTreeSet::new(),
                    };
                    while known.len() < CLIENTS - 1 {
                        let line = client
                            .line()
                            .unwrap_or_else(|| panic!("{nick} was dropped, knowing {known:?}"));
                        let joined = line
                            .strip_prefix("* ")
                            .and_then(|l| l.strip_suffix(" joined"))
                            .unwrap_or_else(|| panic!("{nick}: unexpected line: {line}"));
                        assert!(known.insert(joined.to_owned()), "{nick}: twice: {line}");
                    }
                    assert!(!known.contains(nick) && known.iter().all(|k| nicks.contains(k)));
                    client
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("every member heard every join"))
            .collect()
    });

    // Half of them leave at once; every other member hears each of them leave.
    let mut leavers = clients;
    let stayers = leavers.split_off(LEAVERS);
    let (leaving, staying) = nicks.split_at(LEAVERS);
    let mut stayers: Vec<LineClient> = std::thread::scope(|scope| {
        let barrier = Arc::new(Barrier::new(LEAVERS));
        for client in &leavers {
            let barrier = Arc::clone(&barrier);
            scope.spawn(move || {
                barrier.wait();
                client.shutdown_write();
            });
        }
        let handles: Vec<_> = stayers
            .into_iter()
            .zip(staying)
            .map(|(mut client, nick)| {
                scope.spawn(move || {
                    let mut left = BTreeSet::new();
                    while left.len() < LEAVERS {
                        let line = client
                            .line()
                            .unwrap_or_else(|| panic!("{nick} was dropped, having heard {left:?}"));
                        let who = line
                            .strip_prefix("* ")
                            .and_then(|l| l.strip_suffix(" left"))
                            .unwrap_or_else(|| panic!("{nick}: unexpected line: {line}"));
                        assert!(leaving.iter().any(|l| l == who), "{nick}: {line}");
                        assert!(left.insert(who.to_owned()), "{nick}: twice: {line}");
                    }
                    client
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("every member heard every leave"))
            .collect()
    });

    // The members that stayed are all still here.
    stayers[0].send("still here");
    for client in &mut stayers[1..] {
        client.expect(&format!("{}: still here", staying[0]));
    }
}

/// A line or a nick with a control character in it (other than a tab) is refused, as a line
/// that is not UTF-8 is: with a bare CR, a backspace or an ESC sequence, one member could make
/// another's terminal show what nobody said (`* bob left` over its own line, a line in another
/// member's name, a cleared screen). Its sender is told and stays; a nick is asked again. A tab
/// is ordinary text.
#[test]
fn a_line_or_nick_with_control_characters_is_refused_and_its_sender_stays() {
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let forgeries: [&[u8]; 6] = [
        // On a terminal: `* bob left`, written over `bob: `.
        b"x\r* bob left\n",
        // Backspaces over `bob: `, then another member's words.
        b"\x08\x08\x08\x08\x08alice: I quit\n",
        // Clears the screen.
        b"\x1b[2J\x1b[H\n",
        // DEL, and a C1 control (U+009B, a CSI to some terminals) in UTF-8.
        b"a\x7fb\n",
        "a\u{9b}2Jb\n".as_bytes(),
        // A NUL.
        b"a\x00b\n",
    ];
    for forgery in forgeries {
        bob.stream().write_all(forgery).unwrap();
    }
    bob.send("tab\tok");
    // None of the forgeries reached alice: her next line is the one with a tab.
    let next = alice.line().unwrap();
    assert_eq!(next, "bob: tab\tok", "alice got {next:?}");
    for _ in forgeries {
        bob.expect("* Line not sent: it has control characters.");
    }
    // A CRLF ending is a line ending, not a control character in the line.
    bob.stream().write_all(b"crlf ok\r\n").unwrap();
    alice.expect("bob: crlf ok");

    let mut carol = LineClient::connect(port);
    carol.expect("Your name?");
    carol.stream().write_all(b"bob\x1b[8m\n").unwrap();
    carol.expect("* A name cannot contain control characters.");
    carol.expect("Your name?");
    carol.stream().write_all(b"x\rbob\n").unwrap();
    carol.expect("* A name cannot contain control characters.");
    carol.expect("Your name?");
    carol.send("carol");
    carol.expect("* Welcome, carol. Here: alice, bob");
    alice.expect("* carol joined");
}

/// A line or a nick with a Unicode line or paragraph separator or a bidi control in it is
/// refused as one with a control character is: a log viewer or terminal that breaks the line at
/// U+2028 would show `* alice left` on a line of its own, and a right-to-left override (U+202E)
/// or isolate (U+2067) reorders what follows it on the others' screens (a nick with one turns
/// the welcome's list of who is here around). Its sender is told and stays; a nick is asked
/// again.
#[test]
fn a_line_or_nick_with_line_separators_or_bidi_controls_is_refused() {
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut bob = join(port, "bob", "* Welcome, bob. Here: alice");
    alice.expect("* bob joined");
    let forgeries = [
        "hi\u{2028}* alice left\n",
        "hi\u{2029}* alice left\n",
        "\u{202e}tfel ecila *\n",
        "a\u{2067}b\u{2069}\n",
        "a\u{85}b\n",
    ];
    for forgery in forgeries {
        bob.stream().write_all(forgery.as_bytes()).unwrap();
    }
    bob.send("plain \u{5d0}\u{200f} 1\u{200e}\u{61c} ok");
    // None of the forgeries reached alice: her next line is the plain one (Hebrew is text, and
    // so are the direction marks right-to-left writers use, which reorder no line).
    let next = alice.line().unwrap();
    assert_eq!(
        next, "bob: plain \u{5d0}\u{200f} 1\u{200e}\u{61c} ok",
        "alice got {next:?}"
    );
    for _ in forgeries {
        bob.expect("* Line not sent: it has control characters.");
    }

    let mut carol = LineClient::connect(port);
    carol.expect("Your name?");
    carol
        .stream()
        .write_all("\u{202e}carol\n".as_bytes())
        .unwrap();
    carol.expect("* A name cannot contain control characters.");
    carol.expect("Your name?");
    carol
        .stream()
        .write_all("car\u{2028}ol\n".as_bytes())
        .unwrap();
    carol.expect("* A name cannot contain control characters.");
    carol.expect("Your name?");
    carol.send("carol");
    carol.expect("* Welcome, carol. Here: alice, bob");
    alice.expect("* carol joined");
}

/// A nick that starts with `*`, the mark of the server's notices, is refused: as `* bob left`,
/// its empty line would reach the others as `* bob left: `, the server's notice that bob left
/// but for a colon. A `*` further on is fine.
#[test]
fn a_nick_that_starts_like_a_notice_is_refused() {
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut mallory = LineClient::connect(port);
    mallory.expect("Your name?");
    for nick in ["* bob left", "*bob", "  * bob"] {
        mallory.send(nick);
        mallory.expect("* A name cannot start with \"*\".");
        mallory.expect("Your name?");
    }
    mallory.send("m*");
    mallory.expect("* Welcome, m*. Here: alice");
    alice.expect("* m* joined");
}

/// A nick with an invisible formatting character in it (a zero-width space or joiner, a
/// direction mark, a byte order mark, a soft hyphen, a Hangul filler, a variation selector: the
/// Default_Ignorable_Code_Point set) is refused and asked again: around or inside a member's
/// name it would display exactly like that name, and let one client pass for another. A line
/// with one is said as before.
#[test]
fn names_with_invisible_characters_are_refused() {
    let (_server, port) = start();
    let mut alice = join(port, "alice", "* Welcome, alice. Nobody else is here yet.");
    let mut mallory = LineClient::connect(port);
    mallory.expect("Your name?");
    let look_alikes = [
        "alice\u{200e}",
        "\u{2060}alice",
        "\u{feff}alice",
        "\u{61c}alice",
        "ali\u{200f}ce",
        "x\u{200b}y",
        "al\u{ad}ice",
        "alice\u{34f}",
        "alice\u{3164}",
        "alice\u{fe0f}",
        "alice\u{e0041}",
        "alice\u{1d173}",
    ];
    for nick in look_alikes {
        mallory.send(nick);
        mallory.expect("* A name cannot contain invisible characters.");
        mallory.expect("Your name?");
    }
    mallory.send("mallory");
    mallory.expect("* Welcome, mallory. Here: alice");
    alice.expect("* mallory joined");
    // Only names: a line with a zero-width space in it is said as it was sent.
    mallory.send("zero\u{200b}width");
    alice.expect("mallory: zero\u{200b}width");
}
