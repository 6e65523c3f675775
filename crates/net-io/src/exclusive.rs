//! A transport reached only through `&mut`, so that the channel holding it is `Sync`.

use std::sync::{Mutex, PoisonError};

/// A boxed transport behind a [`Mutex`] that is never locked.
///
/// A channel reaches its transport only through `&mut self` ([`get`]: `Mutex::get_mut`, which
/// takes no lock and does no atomic read-modify-write), so a shared `&ByteReadChannel` gives no
/// access to it. The `Mutex` is what makes the channel `Sync` (a `Mutex<T>` is `Sync` when `T`
/// is `Send`) without asking the user's transport to be `Sync` and without `unsafe`.
pub(crate) type Exclusive<T> = Box<Mutex<T>>;

/// The transport, from `&mut` its box.
#[inline(always)]
pub(crate) fn get<T: ?Sized>(transport: &mut Mutex<T>) -> &mut T {
    // Never locked, so never poisoned.
    transport.get_mut().unwrap_or_else(PoisonError::into_inner)
}
