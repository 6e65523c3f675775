//! A line-based chat room: every line one client sends reaches every other client.
//!
//! ```text
//! cargo run -p examples --bin chat-server -- [HOST] [PORT]    # default 127.0.0.1 9004
//!     [--grace SECS]           # how long shutdown waits for open connections (default 10)
//!     [--idle-timeout SECS]    # close a client silent this long (default 300)
//!     [--queue-lines N]        # lines that may wait for a client (default 256, at least 2)
//! ```
//!
//! Each client is asked `Your name?`; its first line is its nick. Every later line `L` (up to
//! 8192 bytes) reaches every other client as `NICK: L`; joins and leaves are announced to the
//! others as `* NICK joined` and `* NICK left`. A newcomer is told who is here
//! (`* Welcome, NICK. Here: alice, bob`), the list going on in lines `* Also here: ...` so that
//! none passes 8192 bytes however crowded the room (a client that reads lines of a bounded
//! length, as `sockets-client` does, can join any room). A nick that is empty, taken, longer than
//! [`NICK_LIMIT`] bytes, not UTF-8, has a control character other than a tab (or a separator
//! or bidi control, as for a line below), has an invisible formatting character (a
//! zero-width space, a direction mark, a byte order mark: see [`is_invisible`]; with one,
//! `alice` plus a mark would show exactly as `alice`), starts with `*`
//! (the mark of the server's notices: `* bob left` saying an empty line would show as
//! `* bob left: `), or contains `": "` or `", "` (which would make `NICK: L`, or the welcome's
//! list of who is here, ambiguous; with a space of any kind after the mark, a tab or a
//! no-break space as well) is refused, and the name asked again. A line that is not
//! UTF-8 is not said: its sender is told `* Line not sent: it is not UTF-8.` and stays
//! (replacing each bad byte by U+FFFD, 3 bytes, would let a line within the limit reach the
//! others at up to three times it). Nor is a line with a control character other than a tab (a
//! bare CR, a backspace, an ESC sequence: with them one member could make the others' terminals
//! show what nobody said, such as `* bob left`), a Unicode line or paragraph separator (U+2028,
//! U+2029) or a bidi control (U+202A to U+202E, U+2066 to U+2069, which reorder what follows
//! them): its sender is told `* Line not sent: it has control characters.` and stays. A nick
//! with one of these is refused the same way.
//!
//! A slow client never stalls the others for long: lines for a client wait in a queue of its
//! own (`--queue-lines` lines, [`QUEUE_LINES`] by default; the kernel holds at most about
//! [`SEND_BUFFER`] bytes more). A client that sends faster than the others read (one paste of
//! many lines) is slowed to their pace: before each of its lines it waits, at most
//! [`QUEUE_WAIT`], until every queue has room for half its lines (clients that say lines at
//! the same moment take turns at this, so that together they never overrun a queue that had
//! room for each). The news of a join or a leave waits for that room the same way, on the
//! same turns, so that however many clients come or go at once, a member that reads is never
//! overrun by the news. A client that does not make that room in time is dropped, which the
//! others see as `* NICK left`; its connection is reset, so that the line it was in the middle
//! of receiving never passes for a complete last line.
//!
//! A client that sends nothing (or takes nothing the server writes) for `--idle-timeout`
//! seconds is closed (the listener's `socket_timeout`), whether it has given its nick or not:
//! a member that only listens for that long leaves too, and the others see `* NICK left`. The
//! server reports it as `Connection with CLIENT ended: timed out`.
//!
//! On SIGINT or SIGTERM it shuts down as `sockets-server` does: `Shutting down (N open)`, the
//! listener closed at once, each client sent `Server is shutting down` after the line being
//! written, at most the grace period of waiting, `Server stopped`, exit status 0.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::shutdown::{SHUTDOWN_LINE, Signals, serve_until_signal};
use net_io::{ByteReadChannel, ByteWriteChannel};
use net_sockets::{SelectorManager, ShutdownSignal, Socket, a_socket};
use tokio::sync::mpsc;

/// The longest line a client may send, in bytes.
const LINE_LIMIT: usize = examples::LINE_LIMIT;

/// The longest nick, in bytes.
const NICK_LIMIT: usize = 32;

/// How many lines may wait for a client before it counts as too slow and is dropped, unless
/// `--queue-lines` says otherwise. The room a sender waits for in every other client's queue
/// before it says a line is half of it.
const QUEUE_LINES: u32 = 256;

/// The most `--queue-lines` may be (far more than a chat needs; the queue is only allocated as
/// it fills).
const MAX_QUEUE_LINES: u32 = 1 << 20;

/// How long a sender waits for that room; a client that does not make it in this time is
/// dropped.
const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The kernel send buffer asked for on every connection, so that what a client that stopped
/// reading can hold in the kernel is bounded too (Linux doubles the number it is given).
const SEND_BUFFER: usize = 64 * 1024;

/// How long a client that must leave (line too long) is drained before its socket closes.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// A chat room: every line one client sends reaches the others.
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Address to listen on: a name or an IP address (IPv6: ::1 or [::1]), or HOST:PORT
    /// (127.0.0.1:9004, [::1]:9004).
    #[arg(default_value = "127.0.0.1", value_parser = examples::address::host)]
    host: examples::address::HostArg,
    /// Port to listen on (0: any free port) [default: 9004]
    #[arg(value_parser = examples::address::port)]
    port: Option<u16>,
    /// On SIGINT/SIGTERM, wait at most this many seconds for open connections to finish.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = examples::cli::seconds)]
    grace: Duration,
    /// Close a connection that sends nothing (or takes nothing we write) for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = examples::cli::at_least_one_second)]
    idle_timeout: Duration,
    /// How many lines may wait for a client before it counts as too slow and is dropped (a
    /// sender waits for room for half of them in every queue before it says a line).
    #[arg(long, value_name = "N", default_value_t = QUEUE_LINES, value_parser = clap::value_parser!(u32).range(2..=i64::from(MAX_QUEUE_LINES)))]
    queue_lines: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    let (host, port) = examples::address::endpoint::<Args>(&args.host, args.port, Some(9004));
    examples::run("chat-server", serve(args, host, port)).await
}

async fn serve(
    Args {
        grace,
        idle_timeout,
        queue_lines,
        ..
    }: Args,
    host: String,
    port: u16,
) -> anyhow::Result<()> {
    let selector = SelectorManager::new();
    // `socket_timeout`, inherited by every accepted socket: a read (the nick, a member's next
    // line) or a write that makes no progress for this long fails, and the client is closed.
    let server = a_socket(&selector)
        .tcp()
        .socket_timeout(idle_timeout)
        .send_buffer_size(SEND_BUFFER)
        .bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen at {}", examples::join_host_port(&host, port)))?;
    let signals = Signals::install().context("cannot catch SIGINT and SIGTERM")?;
    examples::say!("Chat server is listening at {}", server.local_address());
    // At most `MAX_QUEUE_LINES`: a `usize` on every platform this builds for.
    let room = Arc::new(Room::new(queue_lines as usize));
    serve_until_signal(&server, signals, grace, |socket| {
        examples::say!("Accepted {}", socket.remote_address());
        chat(socket, Arc::clone(&room))
    })
    .await?;
    selector.close();
    Ok(())
}

/// The members of the room, each with the queue of lines waiting to be written to it.
#[derive(Debug)]
struct Room {
    members: Mutex<HashMap<u64, Member>>,
    /// How many lines each member's queue holds.
    queue_lines: usize,
    /// The room a speaker waits for in every other queue: half of `queue_lines` (at least 1).
    headroom: usize,
    /// How long it waits for that room: [`QUEUE_WAIT`].
    queue_wait: Duration,
    next_id: AtomicU64,
    /// The room's turn: held by whoever queues something for the others (a member's line, a
    /// join, a leave), from the wait for room to the queueing (see [`Room::speak`]).
    speaking: tokio::sync::Mutex<()>,
}

/// A member's id, the queue of lines for it, and the nicks of those who were here before it.
type Joined = (u64, mpsc::Receiver<Arc<str>>, Vec<Arc<str>>);

#[derive(Debug)]
struct Member {
    nick: Arc<str>,
    queue: mpsc::Sender<Arc<str>>,
    /// To drop the member when it falls behind: closing fails its pending read and write.
    socket: Arc<Socket>,
}

impl Room {
    /// An empty room whose members' queues hold `queue_lines` lines each (at least 2).
    fn new(queue_lines: usize) -> Room {
        Room {
            members: Mutex::default(),
            queue_lines,
            headroom: (queue_lines / 2).max(1),
            queue_wait: QUEUE_WAIT,
            next_id: AtomicU64::default(),
            speaking: tokio::sync::Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member and announces it to the others, unless a member goes by `nick` already;
    /// returns its id, the queue of lines for it, and the nicks of those already here. On the
    /// room's turn (see [`speak`](Self::speak)), as every change of who is here is: two clients
    /// asking for the same nick at once cannot both get it, and the news waits for room in
    /// every queue as a line does.
    async fn join(&self, nick: &Arc<str>, socket: &Arc<Socket>) -> Option<Joined> {
        let _turn = self.speaking.lock().await;
        let taken = |members: &HashMap<u64, Member>| members.values().any(|m| m.nick == *nick);
        if taken(&self.lock()) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.make_room(id).await;
        let mut members = self.lock();
        // Only leaves (and drops) came between: the nick is still free.
        debug_assert!(!taken(&members));
        let (queue, lines) = mpsc::channel(self.queue_lines);
        let mut present: Vec<Arc<str>> = members.values().map(|m| Arc::clone(&m.nick)).collect();
        present.sort();
        Self::broadcast(&mut members, id, format!("* {nick} joined\n"));
        let member = Member {
            nick: Arc::clone(nick),
            queue,
            socket: Arc::clone(socket),
        };
        members.insert(id, member);
        Some((id, lines, present))
    }

    /// Waits, at most [`QUEUE_WAIT`] at a time, until every member but `from` has room for
    /// half its queue; drops those that do not make it in time, and says that they left (each
    /// such news waiting for room the same way). So a client that sends faster than the others
    /// read goes at their pace, one that does not read is dropped, and news of joins and
    /// leaves, however many at once, never overruns the queue of a member that reads. Called on
    /// the room's turn (see [`speak`](Self::speak)): nothing else is queued meanwhile, so the
    /// room is still there when the caller queues its one line.
    async fn make_room(&self, from: u64) {
        loop {
            let mut news = self.wait_for_room(from).await;
            if news.is_empty() {
                return;
            }
            // Each round drops at least one member: the loop ends.
            while let Some((gone, line)) = news.pop() {
                news.extend(self.wait_for_room(gone).await);
                Self::spread(&mut self.lock(), vec![(gone, line)]);
            }
        }
    }

    /// One wait of [`make_room`](Self::make_room): at most [`QUEUE_WAIT`], for room for half
    /// its queue in every member but `from`; drops those that do not make it in time and
    /// returns the news that they left, for the caller to say.
    async fn wait_for_room(&self, from: u64) -> Vec<(u64, Arc<str>)> {
        let crowded: Vec<(u64, mpsc::Sender<Arc<str>>)> = self
            .lock()
            .iter()
            .filter(|(id, member)| **id != from && member.queue.capacity() < self.headroom)
            .map(|(id, member)| (*id, member.queue.clone()))
            .collect();
        let mut left = Vec::new();
        if crowded.is_empty() {
            return left;
        }
        let deadline = tokio::time::Instant::now() + self.queue_wait;
        let mut behind = Vec::new();
        for (id, queue) in crowded {
            // The slots are given back at once: only the room was waited for. (A queue that
            // closed meanwhile belongs to a member that is leaving by itself.)
            if tokio::time::timeout_at(deadline, queue.reserve_many(self.headroom))
                .await
                .is_err()
            {
                behind.push(id);
            }
        }
        let mut members = self.lock();
        for id in behind {
            Self::drop_behind(&mut members, id, &mut left);
        }
        left
    }

    /// Says `line` for member `from`, on the room's turn: [`make_room`](Self::make_room), then
    /// [`say`](Self::say). One member at a time waits for room and queues its line (and so do
    /// joins and leaves), so that room waited for is not taken by the line of another member
    /// before this one is queued (when a reader makes room, every waiting speaker finds it;
    /// queueing all their lines at once would overrun that reader's queue and drop it);
    /// returns whether `from` was still a member. Nothing when it was not: a line it will not
    /// say makes nobody wait or leave.
    async fn speak(&self, from: u64, line: String) -> bool {
        let _turn = self.speaking.lock().await;
        if !self.lock().contains_key(&from) {
            return false;
        }
        self.make_room(from).await;
        self.say(from, line)
    }

    /// Sends `line` to every member but `from`, if `from` is still a member; returns whether it
    /// was. (A member the room dropped may still have lines it read before its socket closed:
    /// the others were told it left, so it must not be heard again.)
    fn say(&self, from: u64, line: String) -> bool {
        let mut members = self.lock();
        if !members.contains_key(&from) {
            return false;
        }
        Self::broadcast(&mut members, from, line);
        true
    }

    /// Queues `line` for member `id` alone, if it is still here and its queue has room (else
    /// the line is not sent); on the room's turn, so as not to take room another is queueing in.
    async fn tell(&self, id: u64, line: String) {
        let _turn = self.speaking.lock().await;
        if let Some(member) = self.lock().get(&id) {
            let _ = member.queue.try_send(Arc::from(line));
        }
    }

    /// Removes member `id` (if the room has not dropped it already) and announces that it
    /// left, on the room's turn (the news waits for room as a line does).
    async fn leave(&self, id: u64) {
        self.leave_with(id, None).await;
    }

    /// As [`leave`](Self::leave), with `farewell` queued for member `id` as its last line (if
    /// its queue has room, as [`tell`](Self::tell) does): on the same turn as the leave, so
    /// that no other member's line is queued after it.
    async fn leave_with(&self, id: u64, farewell: Option<String>) {
        let _turn = self.speaking.lock().await;
        let Some(member) = self.lock().remove(&id) else {
            return;
        };
        if let Some(farewell) = farewell {
            let _ = member.queue.try_send(Arc::from(farewell));
        }
        examples::say!("{} left", member.nick);
        self.make_room(id).await;
        Self::broadcast(&mut self.lock(), id, format!("* {} left\n", member.nick));
    }

    /// Queues `line` for every member but `from`, without ever waiting: a member whose queue
    /// is full is dropped (its socket closed) and the others are told it left, which may drop
    /// more. (Called after [`make_room`](Self::make_room), on the room's turn, no queue is
    /// full.)
    fn broadcast(members: &mut HashMap<u64, Member>, from: u64, line: String) {
        Self::spread(members, vec![(from, Arc::from(line))]);
    }

    /// Queues each `(from, line)` for every member but `from`, as [`broadcast`](Self::broadcast)
    /// does.
    fn spread(members: &mut HashMap<u64, Member>, mut pending: Vec<(u64, Arc<str>)>) {
        while let Some((from, line)) = pending.pop() {
            let mut behind = Vec::new();
            for (&id, member) in members.iter() {
                if id == from {
                    continue;
                }
                match member.queue.try_send(Arc::clone(&line)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => behind.push(id),
                    // Its writer has ended: the member is leaving by itself.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            for id in behind {
                Self::drop_behind(members, id, &mut pending);
            }
        }
    }

    /// Drops member `id`, which fell too far behind (its connection reset), and adds the news that
    /// it left to `left`, for the others.
    fn drop_behind(members: &mut HashMap<u64, Member>, id: u64, left: &mut Vec<(u64, Arc<str>)>) {
        if let Some(member) = members.remove(&id) {
            examples::say!(
                "Dropped {} ({}): too far behind",
                member.nick,
                member.socket.remote_address()
            );
            // A reset, not FIN: the close cuts whatever line was being written to it, and a
            // cut line followed by an orderly end would pass for the server's last line.
            // (Best effort: a socket closed meanwhile needs nothing.)
            let _ = member
                .socket
                .with_sock_ref(|socket| socket.set_linger(Some(Duration::ZERO)));
            member.socket.close();
            left.push((id, Arc::from(format!("* {} left\n", member.nick))));
        }
    }
}

/// One client: its nick, then its lines to the room and the room's lines to it, until it
/// leaves, falls behind, or the server shuts down.
async fn chat(mut socket: Socket, room: Arc<Room>) {
    let remote = socket.remote_address();
    let stop = socket.shutdown_signal();
    let channels = socket
        .open_read_channel()
        .and_then(|input| Ok((input, socket.open_write_channel(false)?)));
    let (mut input, mut output) = match channels {
        Ok(channels) => channels,
        Err(e) => {
            examples::say!("Connection with {remote} ended: {e}");
            return;
        }
    };
    let socket = Arc::new(socket);
    let (nick, (id, lines, present)) =
        match ask_nick(&mut input, &mut output, &room, &socket, &stop).await {
            Ok(Some(joined)) => joined,
            Ok(None) => {
                let told =
                    stop.is_requested() && output.write_string_utf8(SHUTDOWN_LINE).await.is_ok();
                finish(&socket, &mut input, &mut output, told).await;
                return;
            }
            Err(e @ net_io::Error::TooLongLine { limit }) => {
                // Told as a member's over-long line is, and drained so that the notice is not
                // destroyed by a reset.
                examples::say!("Connection with {remote} ended: {e}");
                let notice = format!("* Line too long (limit {limit} bytes), goodbye.\n");
                let _ = output.write_string_utf8(&notice).await;
                finish(&socket, &mut input, &mut output, false).await;
                return;
            }
            Err(e) => {
                examples::say!("Connection with {remote} ended: {e}");
                socket.close();
                return;
            }
        };
    examples::say!("{remote} joined as {nick}");
    let welcome = welcome(&nick, &present);
    let writing = async {
        let written = write_lines(&mut output, welcome, lines, stop.clone()).await;
        if written.is_err() {
            // The client cannot be written to: end its reading too.
            socket.close();
        }
        written
    };
    let reading = read_lines(&mut input, &room, id, &nick, stop.clone());
    let (written, read) = tokio::join!(writing, reading);
    // Whichever side ended first, the member is gone now (a no-op if the room dropped it).
    room.leave(id).await;
    match (written, read) {
        (Ok(told), Ok(())) => finish(&socket, &mut input, &mut output, told).await,
        // Told, and the write side closed: drain a moment so the notice is not reset away.
        (Ok(told), Err(e @ net_io::Error::TooLongLine { .. })) => {
            examples::say!("Connection with {remote} ended: {e}");
            finish(&socket, &mut input, &mut output, told).await;
        }
        (Err(e), _) | (_, Err(e)) => {
            // A member the room dropped was closed on purpose and reported then.
            if !socket.is_closed() {
                examples::say!("Connection with {remote} ended: {e}");
            }
            socket.close();
        }
    }
}

/// The welcome for `nick`: `* Welcome, NICK. Nobody else is here yet.`, or `* Welcome, NICK.
/// Here: ` and the nicks of those `present`, joined by `, `, the list going on in lines
/// `* Also here: ...` so that no line passes [`LINE_LIMIT`] bytes: a client that reads lines
/// of a bounded length (`sockets-client` takes 64 KiB) can join a room however crowded.
fn welcome(nick: &str, present: &[Arc<str>]) -> String {
    if present.is_empty() {
        return format!("* Welcome, {nick}. Nobody else is here yet.\n");
    }
    let mut welcome = String::new();
    let mut line = format!("* Welcome, {nick}. Here: ");
    let mut listed = 0;
    for name in present {
        // A nick (at most NICK_LIMIT bytes) always fits on a line that lists none yet.
        if listed > 0 && line.len() + ", ".len() + name.len() > LINE_LIMIT {
            welcome.push_str(&line);
            welcome.push('\n');
            line = "* Also here: ".to_owned();
            listed = 0;
        }
        if listed > 0 {
            line.push_str(", ");
        }
        line.push_str(name);
        listed += 1;
    }
    welcome.push_str(&line);
    welcome.push('\n');
    welcome
}

/// Asks for a nick until the client gives a usable one, and joins the room with it; `None`
/// when it leaves first or the server shuts down.
async fn ask_nick(
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
    room: &Room,
    socket: &Arc<Socket>,
    stop: &ShutdownSignal,
) -> net_io::Result<Option<(Arc<str>, Joined)>> {
    // Made once and pinned: it registers its wake-up once, not on every pass.
    let stopped = stop.requested();
    tokio::pin!(stopped);
    loop {
        output.write_string_utf8("Your name?\n").await?;
        output.flush().await?;
        let line = tokio::select! {
            biased;
            line = read_raw_line(input) => line?,
            () = &mut stopped => return Ok(None),
        };
        let Some(line) = line else { return Ok(None) };
        let Ok(nick) = std::str::from_utf8(&line) else {
            output
                .write_string_utf8("* A name must be UTF-8.\n")
                .await?;
            continue;
        };
        let nick = nick.trim();
        let problem = if nick.is_empty() {
            "* A name cannot be empty.\n".to_owned()
        } else if nick.len() > NICK_LIMIT {
            format!("* A name has at most {NICK_LIMIT} bytes.\n")
        } else if has_control(nick) {
            "* A name cannot contain control characters.\n".to_owned()
        } else if nick.chars().any(is_invisible) {
            // Around or inside a member's name it would show as that name: `alice` followed
            // by a left-to-right mark could speak as alice.
            "* A name cannot contain invisible characters.\n".to_owned()
        } else if nick.starts_with('*') {
            // The mark of the server's notices: `* bob left` saying an empty line would
            // reach the others as `* bob left: `.
            "* A name cannot start with \"*\".\n".to_owned()
        } else if has_separator(nick) {
            // Either would make `NICK: L`, or the welcome's list of who is here, ambiguous.
            "* A name cannot contain \": \" or \", \".\n".to_owned()
        } else {
            let nick: Arc<str> = Arc::from(nick);
            match room.join(&nick, socket).await {
                Some(joined) => return Ok(Some((nick, joined))),
                None => format!("* {nick} is taken.\n"),
            }
        };
        output.write_string_utf8(&problem).await?;
    }
}

/// Writes the welcome, then the room's lines as they come, flushing when none waits; ends when
/// the member leaves the room (its queue closes) or the server shuts down. Returns whether the
/// client was told of the shutdown (and the write side closed).
async fn write_lines(
    output: &mut ByteWriteChannel,
    welcome: String,
    mut lines: mpsc::Receiver<Arc<str>>,
    stop: ShutdownSignal,
) -> net_io::Result<bool> {
    output.write_string_utf8(&welcome).await?;
    output.flush().await?;
    let stopped = stop.requested();
    tokio::pin!(stopped);
    loop {
        // A line is only taken from the queue when it is written whole: the shutdown waits
        // for the line being written.
        let line = tokio::select! {
            biased;
            () = &mut stopped => {
                output.write_string_utf8(SHUTDOWN_LINE).await?;
                output.flush_and_close().await?;
                return Ok(true);
            }
            line = lines.recv() => line,
        };
        let Some(line) = line else {
            output.flush_and_close().await?;
            return Ok(false);
        };
        output.write_string_utf8(&line).await?;
        if lines.is_empty() {
            output.flush().await?;
        }
    }
}

/// Sends the client's lines to the room until it closes its side or the server shuts down;
/// then leaves the room (which ends [`write_lines`]).
async fn read_lines(
    input: &mut ByteReadChannel,
    room: &Room,
    id: u64,
    nick: &str,
    stop: ShutdownSignal,
) -> net_io::Result<()> {
    let stopped = stop.requested();
    tokio::pin!(stopped);
    loop {
        let line = tokio::select! {
            biased;
            () = &mut stopped => return Ok(()),
            line = read_raw_line(input) => line,
        };
        match line {
            Ok(Some(line)) => {
                let Ok(line) = std::str::from_utf8(&line) else {
                    room.tell(id, "* Line not sent: it is not UTF-8.\n".to_owned())
                        .await;
                    continue;
                };
                if has_control(line) {
                    let notice = "* Line not sent: it has control characters.\n";
                    room.tell(id, notice.to_owned()).await;
                    continue;
                }
                if !room.speak(id, format!("{nick}: {line}\n")).await {
                    // Dropped by the room (its socket closed): what it had sent is not said.
                    return Ok(());
                }
            }
            Ok(None) => {
                room.leave(id).await;
                return Ok(());
            }
            Err(e) => {
                let notice = match e {
                    net_io::Error::TooLongLine { limit } => {
                        Some(format!("* Line too long (limit {limit} bytes), goodbye.\n"))
                    }
                    _ => None,
                };
                // Leaving closes the queue: what is queued for this client is still written,
                // the notice last.
                room.leave_with(id, notice).await;
                return Err(e);
            }
        }
    }
}

/// Whether `nick` has a separator of the room's lines in it: `:` or `,` followed by a space of
/// any kind (Unicode's White_Space: a tab, a no-break space, a thin or an ideographic space
/// show as a space does), which would make `NICK: L`, or the welcome's list of who is here,
/// ambiguous (`carol,` and a no-break space before `dave` would pass for two members).
fn has_separator(nick: &str) -> bool {
    let mut chars = nick.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, ':' | ',') && chars.peek().is_some_and(|next| next.is_whitespace()) {
            return true;
        }
    }
    false
}

/// Whether `text` has a character that [`PeerText`](net_io::PeerText) escapes, other than a
/// tab and the direction marks: a control character (C0, DEL or C1), a line or paragraph
/// separator (U+2028, U+2029) or a bidi control (U+202A to U+202E, U+2066 to U+2069). A bare
/// CR, a backspace or an escape sequence would let a member rewrite what the others' terminals
/// show (`* bob left` over its own line, words in another member's name); a separator starts a
/// line of its own where a terminal or log viewer breaks lines on it; a bidi control reorders
/// what follows it (a right-to-left override in a nick turns the welcome's list of who is here
/// around). The direction marks (U+200E, U+200F, U+061C) stay in a line: writers of
/// right-to-left scripts use them, and they reorder only the digits and punctuation next to
/// them (a nick may not have them: see [`is_invisible`]).
fn has_control(text: &str) -> bool {
    text.chars().any(|c| {
        net_io::PeerText::escapes(c) && !matches!(c, '\t' | '\u{200e}' | '\u{200f}' | '\u{61c}')
    })
}

/// Whether `c` is an invisible formatting character, which a nick may not contain: around or
/// inside a member's name it displays as nothing, so `alice` with a zero-width space, a
/// direction mark or a byte order mark added would show exactly as `alice`.
///
/// The list is Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt,
/// Unicode 15.1/16.0: what a renderer draws as nothing when it has no glyph for it, and which
/// includes the bidi controls and marks U+061C, U+200E, U+200F, U+202A to U+202E and U+2066 to
/// U+2069), plus the interlinear annotation characters U+FFF9 to U+FFFB, format characters
/// that are invisible as well. Look-alike letters of other scripts (Cyrillic `а` for Latin `a`)
/// are not caught.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                       // soft hyphen
        | '\u{034F}'                     // combining grapheme joiner
        | '\u{061C}'                     // Arabic letter mark
        | '\u{115F}'..='\u{1160}'        // Hangul choseong and jungseong fillers
        | '\u{17B4}'..='\u{17B5}'        // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'        // Mongolian variation selectors, vowel separator
        | '\u{200B}'..='\u{200F}'        // zero-width space, (non-)joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}'        // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'        // word joiner, invisible operators, bidi isolates
        | '\u{3164}'                     // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'        // variation selectors
        | '\u{FEFF}'                     // zero-width no-break space (byte order mark)
        | '\u{FFA0}'                     // halfwidth Hangul filler
        | '\u{FFF0}'..='\u{FFFB}'        // reserved, interlinear annotation
        | '\u{1BCA0}'..='\u{1BCA3}'      // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}'      // musical symbol format controls
        | '\u{E0000}'..='\u{E0FFF}'      // tags, variation selectors 17 to 256, reserved
    )
}

/// Reads one line as `read_line(LINE_LIMIT, LineEnding::Default)` does (LF or CRLF ends it; at
/// most [`LINE_LIMIT`] bytes before its ending, else [`TooLongLine`](net_io::Error::TooLongLine);
/// a last line without an ending is a line), but as the bytes received: decoding is the
/// caller's, so that invalid UTF-8 never becomes a longer line of U+FFFD.
///
/// # Cancel safety
///
/// Cancel safe: nothing of the line is consumed until it is all there.
async fn read_raw_line(
    input: &mut ByteReadChannel,
) -> net_io::Result<Option<impl std::ops::Deref<Target = [u8]> + use<>>> {
    let too_long = || net_io::Error::TooLongLine { limit: LINE_LIMIT };
    // One byte more than the limit, for the CR of a CRLF.
    match input.read_until(b"\n", LINE_LIMIT + 1).await {
        Ok(Some(line)) => {
            let content = line.strip_suffix(b"\r").map_or(line.len(), <[u8]>::len);
            if content > LINE_LIMIT {
                return Err(too_long());
            }
            Ok(Some(line.slice(..content)))
        }
        Ok(None) => Ok(None),
        // The stream ended after a last line without an ending: it is all buffered.
        Err(net_io::Error::UnexpectedEof { .. }) => {
            let line = input.read_remaining(LINE_LIMIT + 1).await?;
            if line.len() > LINE_LIMIT {
                return Err(too_long());
            }
            Ok(Some(line))
        }
        Err(net_io::Error::TooLongLine { .. }) => Err(too_long()),
        Err(e) => Err(e),
    }
}

/// Ends a connection whose write side is closed (or is closed here): reads until the client
/// leaves, so that unread input does not turn the close into a reset. After a shutdown notice
/// the grace period bounds the wait; otherwise [`DRAIN_TIME`] does.
async fn finish(
    socket: &Socket,
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
    shutting_down: bool,
) {
    let _ = output.flush_and_close().await;
    let drain = async { while input.discard(u64::MAX).await.is_ok_and(|n| n > 0) {} };
    if shutting_down {
        drain.await;
    } else {
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    socket.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member the room dropped (too far behind) while lines of its paste were still in its
    /// read buffer — its reader waiting in `make_room` between them — says none of them (the
    /// others were told it left, and a member that left never speaks again), and they make
    /// nobody wait or leave.
    #[tokio::test]
    async fn a_dropped_member_says_nothing_of_what_it_had_buffered() {
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let address = server.local_address().as_inet().unwrap().socket_addr();
        let mut sockets = Vec::new();
        for _ in 0..3 {
            let client = a_socket(&selector).tcp().connect(address).await.unwrap();
            let mut accepted = server.accept().await.unwrap();
            let input = accepted.open_read_channel().unwrap();
            sockets.push((client, Arc::new(accepted), Some(input)));
        }
        let stop = sockets[0].1.shutdown_signal();
        let room = Room::new(QUEUE_LINES as usize);
        let (w, mut watcher, _) = room.join(&Arc::from("w"), &sockets[0].1).await.unwrap();
        let (x, _x_lines, _) = room.join(&Arc::from("x"), &sockets[1].1).await.unwrap();
        let (_, _s_lines, _) = room.join(&Arc::from("s"), &sockets[2].1).await.unwrap();
        assert_eq!(&*watcher.recv().await.unwrap(), "* x joined\n");
        assert_eq!(&*watcher.recv().await.unwrap(), "* s joined\n");

        // x pasted two lines; its reader has them, and waits (in `make_room`) before saying them.
        let mut paste = sockets[1].0.open_write_channel(true).unwrap();
        paste.write_string_utf8("one\ntwo\n").await.unwrap();
        let mut buffered = sockets[1].2.take().unwrap();
        assert!(buffered.await_content(8).await.unwrap());

        // The room drops x, as a broadcast or another member's `make_room` does.
        {
            let mut members = room.lock();
            let mut left = Vec::new();
            Room::drop_behind(&mut members, x, &mut left);
            Room::spread(&mut members, left);
        }
        assert_eq!(&*watcher.recv().await.unwrap(), "* x left\n");
        // s reads slowly: its queue has less room than a speaker waits for.
        for _ in 0..=room.queue_lines - room.headroom {
            assert!(room.say(w, "w: hi\n".to_owned()));
        }

        // x's reader goes on with the lines it had already read from its socket (which the
        // drop closed).
        let _ = read_lines(&mut buffered, &room, x, "x", stop).await;
        room.leave(x).await;
        let mut heard = Vec::new();
        while let Ok(line) = watcher.try_recv() {
            heard.push(line);
        }
        assert!(heard.is_empty(), "a member that left was heard: {heard:?}");
        // Nor did its lines make the room wait for s, or drop it.
        assert_eq!(room.lock().len(), 2);
        selector.close();
    }

    /// A member that stops reading is still dropped when news, not lines, fills its queue:
    /// the next join waits for room at most the room's wait, drops it (the others hear it
    /// leave, before the join), and goes on.
    #[tokio::test]
    async fn news_of_joins_drops_a_member_that_stopped_reading_and_goes_on() {
        let selector = SelectorManager::new();
        let server = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let address = server.local_address().as_inet().unwrap().socket_addr();
        let mut sockets = Vec::new();
        for _ in 0..8 {
            let client = a_socket(&selector).tcp().connect(address).await.unwrap();
            sockets.push((client, Arc::new(server.accept().await.unwrap())));
        }
        let room = Room {
            queue_wait: Duration::from_millis(100),
            ..Room::new(4)
        };
        let (_, mut watcher, _) = room.join(&Arc::from("w"), &sockets[0].1).await.unwrap();
        // s never reads its queue again.
        let (s, _s_lines, _) = room.join(&Arc::from("s"), &sockets[1].1).await.unwrap();
        // Its queue holds 4 lines; a join waits for room for 2: j0, j1 and j2 are queued, j3
        // waits.
        let mut heard = vec![watcher.recv().await.unwrap()];
        for n in 0..6 {
            let nick = Arc::from(format!("j{n}"));
            let started = tokio::time::Instant::now();
            let joined =
                tokio::time::timeout(Duration::from_secs(5), room.join(&nick, &sockets[2 + n].1));
            assert!(
                joined
                    .await
                    .expect("a join waits at most the room's wait")
                    .is_some()
            );
            assert!(started.elapsed() < Duration::from_secs(2));
            while let Ok(line) = watcher.try_recv() {
                heard.push(line);
            }
        }
        let heard: Vec<&str> = heard.iter().map(|l| &**l).collect();
        assert_eq!(
            heard,
            [
                "* s joined\n",
                "* j0 joined\n",
                "* j1 joined\n",
                "* j2 joined\n",
                "* s left\n",
                "* j3 joined\n",
                "* j4 joined\n",
                "* j5 joined\n",
            ]
        );
        assert!(!room.lock().contains_key(&s));
        assert!(sockets[1].1.is_closed());
        selector.close();
    }
}
