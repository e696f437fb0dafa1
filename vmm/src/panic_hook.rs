//! Panics are fatal: a panic on any thread logs the thread's name and the
//! message and asks the control loop to stop the VM ([`ExitReason::ThreadPanicked`],
//! exit 1), so the normal teardown (vCPUs, workers, then the pod networks'
//! links and nft table) still runs; a panic on the control thread itself
//! unwinds through the `Vmm`'s drop, which tears down the same way, and
//! `main` turns it into exit 1.
//!
//! A panic inside [`net::contained::contain`] (a third-party decoder of
//! guest bytes, under `catch_unwind`) is the one exception: its caller
//! drops the message and the VM goes on (the fuzzer found such a decoder
//! panic; a guest must not be able to stop its VM with one datagram).
//!
//! The hook writes one line and captures no backtrace: a backtrace would
//! open files a sandboxed thread may not.

use std::sync::{Arc, OnceLock};

use crate::exit::{ExitReason, ExitSignal};

static EXIT: OnceLock<Arc<ExitSignal>> = OnceLock::new();

/// Whether a panic on the calling thread now stops the VM: every panic
/// but one inside [`net::contained::contain`] (a guest-input decoder run
/// under `catch_unwind`, whose caller handles it).
fn stops_the_vm() -> bool {
    !net::contained::active()
}

/// Installs the hook (once per process); panics request `exit`.
pub fn install(exit: &Arc<ExitSignal>) {
    if EXIT.set(exit.clone()).is_err() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        if !stops_the_vm() {
            // A guest-input decoder's bug, caught where it runs.
            tracing::debug!(panic = %info, "contained panic in a guest-input decoder");
            return;
        }
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("petrel: thread {thread} panicked: {msg}{at}; stopping the VM");
        if let Some(exit) = EXIT.get() {
            exit.request(ExitReason::ThreadPanicked { thread });
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzer regression: a DHCPv6 datagram that panics dhcproto must not
    /// stop the VM (the hook used to make every panic fatal).
    #[test]
    fn contained_decoder_panics_do_not_stop_the_vm() {
        assert!(stops_the_vm());
        assert_eq!(net::contained::contain(stops_the_vm), Some(false));
        assert!(stops_the_vm());
    }
}
