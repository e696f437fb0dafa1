//! Panics are fatal: a panic on any thread logs the thread's name and the
//! message and asks the control loop to stop the VM ([`ExitReason::ThreadPanicked`],
//! exit 1), so the normal teardown (vCPUs, workers, then the pod networks'
//! links and nft table) still runs; a panic on the control thread itself
//! unwinds through the `Vmm`'s drop, which tears down the same way, and
//! `main` turns it into exit 1.
//!
//! The hook writes one line and captures no backtrace: a backtrace would
//! open files a sandboxed thread may not.

use std::sync::{Arc, OnceLock};

use crate::exit::{ExitReason, ExitSignal};

static EXIT: OnceLock<Arc<ExitSignal>> = OnceLock::new();

/// Installs the hook (once per process); panics request `exit`.
pub fn install(exit: &Arc<ExitSignal>) {
    if EXIT.set(exit.clone()).is_err() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
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
