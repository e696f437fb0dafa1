//! Guest bytes go through third-party decoders (dhcproto), and a bug in
//! one must not take the VMM down: [`contain`] runs a decoder under
//! `catch_unwind` and marks the thread while it does, so the VMM's panic
//! hook (which makes every other panic fatal) can tell a contained panic
//! from a real one ([`active`]). The fuzzer found one: dhcproto 0.15's
//! DHCPv6 decoder subtracts an option's fixed part from its declared
//! length without checking (`VendorClass`, `StatusCode`, …), which
//! overflows on a short option.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether the calling thread is inside [`contain`].
pub fn active() -> bool {
    DEPTH.with(Cell::get) > 0
}

/// Runs `f`; `None` if it panicked (the panic is contained).
pub fn contain<T>(f: impl FnOnce() -> T) -> Option<T> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contained_panic_is_marked_and_returns_none() {
        assert!(!active());
        let seen = contain(|| {
            assert!(active());
            7
        });
        assert_eq!(seen, Some(7));
        #[allow(clippy::panic, reason = "the panic being contained")]
        let r: Option<()> = contain(|| panic!("decoder bug"));
        assert_eq!(r, None);
        assert!(!active());
    }
}
