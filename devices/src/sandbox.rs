//! The hook that confines worker threads. The devices crate knows nothing
//! of seccomp or capabilities: the VMM installs one function, once, and
//! every [`crate::Worker`] calls it on its own thread after its setup
//! (pinned, event loop built, fds registered) and before its first event.
//! Without a hook (unit tests, benchmarks) workers run unconfined.

use std::io;
use std::sync::OnceLock;

/// Which kind of worker a thread is, for its allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// A virtio-net queue pair worker (`<nic>-q<i>`).
    VirtioNetQueue,
    /// An e1000 receive worker (`<nic>-rx`).
    E1000Rx,
}

/// Confines the calling worker thread; an error stops the worker's start.
pub type WorkerSandbox = fn(WorkerKind) -> io::Result<()>;

static HOOK: OnceLock<WorkerSandbox> = OnceLock::new();

/// Installs the hook (the first call wins).
pub fn set_worker_sandbox(hook: WorkerSandbox) {
    let _ = HOOK.set(hook);
}

/// Runs the hook on the calling thread, if one is installed.
pub(crate) fn confine(kind: WorkerKind) -> io::Result<()> {
    match HOOK.get() {
        Some(hook) => hook(kind),
        None => Ok(()),
    }
}
