//! [`Buffer`]: a read channel's received bytes, consumed by moving an offset.

use std::ops::Deref;

use bytes::{Buf, BytesMut};

/// The bytes a read channel received and its reader has not consumed yet, as a slice
/// (`Deref<Target = [u8]>`).
///
/// Consuming moves an offset; the `BytesMut` under it is advanced past the consumed bytes
/// ("settled") only when it is handed out as a `BytesMut` (to grow, to read into, to a
/// decoder, to split off) — once per transport read rather than once per item. A line
/// protocol's server consumes many short items per read, and advancing a `BytesMut` costs
/// several times what moving an offset does.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    bytes: BytesMut,
    /// How many bytes at the front of `bytes` are consumed; never past `bytes.len()`.
    start: usize,
}

impl Buffer {
    /// Consumes the first `n` bytes (`n` at most [`len`](slice::len)).
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start >= self.bytes.len() {
            // Emptied: the next transport read has the whole allocation again, with nothing
            // for `reserve` to move back later.
            self.clear();
        }
    }

    /// Consumes everything.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
    }

    /// The unconsumed bytes as a `BytesMut` (settled: the consumed ones are dropped from it).
    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut BytesMut {
        if self.start > 0 {
            self.settle();
        }
        &mut self.bytes
    }

    /// Drops the consumed bytes from the front of `bytes`.
    #[inline(never)]
    fn settle(&mut self) {
        self.bytes.advance(self.start);
        self.start = 0;
    }

    /// Room for more bytes after those received, without moving or allocating.
    #[inline]
    pub(crate) fn spare(&self) -> usize {
        self.bytes.capacity() - self.bytes.len()
    }

    /// The bytes' capacity, counted from the first byte not yet settled (0: no allocation).
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

impl From<BytesMut> for Buffer {
    fn from(bytes: BytesMut) -> Self {
        Buffer { bytes, start: 0 }
    }
}

impl Deref for Buffer {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_moves_the_view_and_settling_keeps_it() {
        let mut buf = Buffer::from(BytesMut::from(&b"one\ntwo\nthree"[..]));
        buf.consume(4);
        assert_eq!(&buf[..], b"two\nthree");
        buf.consume(4);
        assert_eq!(&buf[..], b"three");
        // Handed out as a BytesMut: exactly the unconsumed bytes, which stay the view.
        assert_eq!(&buf.bytes_mut()[..], b"three");
        buf.bytes_mut().extend_from_slice(b"!\n");
        assert_eq!(&buf[..], b"three!\n");
        buf.consume(7);
        assert!(buf.is_empty());
        assert_eq!(buf.start, 0);
    }

    #[test]
    fn emptied_buffer_keeps_its_whole_allocation() {
        let mut buf = Buffer::from(BytesMut::with_capacity(64));
        buf.bytes_mut().extend_from_slice(&[7; 40]);
        let spare = buf.spare();
        // The room after the bytes received: capacity less length.
        assert_eq!(spare, 64 - 40);
        buf.consume(10);
        assert_eq!(buf.spare(), spare);
        assert_eq!(buf.capacity(), 64);
        buf.consume(30);
        assert_eq!(buf.spare(), 64);
    }
}
