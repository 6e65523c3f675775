//! `Error::InvalidAlpnProtocol` for a list that grows past `MAX_ALPN_LIST` names the protocol
//! where it did: its bytes shown once escaped (`\xff`, `\"`), as `<[u8]>::escape_ascii` shows
//! them, so the text names the very bytes given, not an escape of their escape.

use net_tls::{Error, MAX_ALPN_LIST, TlsConfig};

#[test]
fn the_protocol_that_overflows_the_alpn_list_is_shown_as_given() {
    let filler = vec![b'a'; 255];
    let fillers = MAX_ALPN_LIST / (1 + filler.len());
    let odd = b"x\xff\"y".to_vec();
    let mut names = vec![filler; fillers];
    names.push(odd.clone());
    let e = TlsConfig::builder()
        .alpn_protocols(&names)
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidAlpnProtocol { protocol, .. } if *protocol == odd),
        "{e:?}"
    );
    let shown = e.to_string();
    assert!(
        shown.ends_with(r#" at "x\xff\"y""#),
        "the name shown is not the name given, escaped once: {shown}"
    );
}
