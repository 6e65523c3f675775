//! `chat-server` refuses a nick with `: ` or `, ` in it whatever the space after the mark is:
//! a tab, a no-break space, a thin or an ideographic space show on a terminal as a space does,
//! and would make `NICK: LINE`, or the welcome's list of who is here, just as ambiguous.

use net_tests::harness::{LineClient, Process};

const CHAT: &str = env!("CARGO_BIN_EXE_chat-server");

/// Each nick that a space of another kind after `:` or `,` would let pass for another member,
/// or for two, is refused as `bob: I quit` and `carol, dave` are; the room never shows it.
#[test]
fn a_nick_with_a_separator_and_any_kind_of_space_is_refused() {
    let mut server = Process::start(CHAT, ["127.0.0.1", "0"]);
    let port = server.listening_port();
    let mut alice = LineClient::connect(port);
    alice.expect("Your name?");
    alice.send("alice");
    alice.expect("* Welcome, alice. Nobody else is here yet.");

    let mut mallory = LineClient::connect(port);
    mallory.expect("Your name?");
    for nick in [
        // `bob:\tI quit` saying `ok` shows as `bob:    I quit: ok`.
        "bob:\tI quit",
        // In the welcome's list, `carol,\u{a0}dave` shows exactly as two members.
        "carol,\u{a0}dave",
        "bob:\u{a0}I quit",
        "carol,\u{2009}dave",
        "carol,\u{3000}dave",
        "carol,\u{202f}dave",
        "carol,\tdave",
    ] {
        mallory.send(nick);
        assert_eq!(
            mallory.line().as_deref(),
            Some("* A name cannot contain \": \" or \", \"."),
            "{nick:?} was not refused"
        );
        mallory.expect("Your name?");
    }
    // A space of any kind elsewhere, and either mark alone, are fine.
    mallory.send("m:a,l\u{a0}x");
    mallory.expect("* Welcome, m:a,l\u{a0}x. Here: alice");
    alice.expect("* m:a,l\u{a0}x joined");
}
