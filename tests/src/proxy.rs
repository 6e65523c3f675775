//! PROXY protocol headers written by hand, for the tests of a listener that reads them.

/// A v2 header: the signature, the version-and-command byte, the family-and-transport byte,
/// the length of `body`, then `body` (the address block and any TLVs).
pub fn v2(version_command: u8, family_transport: u8, body: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(version_command);
    header.push(family_transport);
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(body);
    header
}

/// The v2 `AF_INET` address block of 192.0.2.7:4242 -> 127.0.0.1:9002.
pub fn inet_block() -> Vec<u8> {
    let mut block = vec![192, 0, 2, 7, 127, 0, 0, 1];
    block.extend_from_slice(&4242u16.to_be_bytes());
    block.extend_from_slice(&9002u16.to_be_bytes());
    block
}
