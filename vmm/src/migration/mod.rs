//! Snapshots (`vm.snapshot` / `vm.restore`, to a directory) and live
//! migration (`vm.send-migration` / `vm.receive-migration`, over a UNIX or
//! TCP socket), on one piece of state code: guest memory, every vCPU's
//! KVM state, the in-kernel irqchip, PIT and clock, and the devices.
//!
//! The API's executor cannot do the work itself (the vCPU fds live on the
//! vCPU threads), so it parks the request in the [`JobSlot`] and ends the
//! control loop's run with [`crate::exit::ExitReason::StateJob`]; the
//! [`crate::Vmm`] run loop then does the job with the vCPU threads stopped
//! (or, for pre-copy, still running), answers the request and goes on.
//! See docs/migration.md for what this host's KVM allows.

mod announce;
mod format;
mod memory;
#[cfg(test)]
mod probe;
mod receive;
mod refuse;
mod send;
mod snapshot;
mod transport;
mod url;
mod vcpu_state;
mod vm_state;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

pub use announce::{announce_guests, Announcer};
pub use format::{DeviceStates, VmSnapshot, FORMAT, VERSION};
pub use receive::receive;
pub use refuse::refusal;
pub use send::{send, SendOutcome, Sender};
pub use snapshot::{restore_dir, snapshot_dir};
pub use url::{file_dir, MigrationUrl};
pub use vcpu_state::VcpuState;
pub use vm_state::KvmVmState;

use crate::api::{ActionError, VmState, VmmData};

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("{op} failed")]
    Kvm {
        op: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot build an MSR list")]
    MsrList,
    #[error("vCPU {vcpu}: KVM_SET_MSRS refused MSR {refused:#x}")]
    MsrRefused { vcpu: usize, refused: u32 },
    #[error(
        "vCPU {0}: the saved CPUID differs from this VM's (another host CPU or petrel version)"
    )]
    CpuidMismatch(usize),
    #[error("the state was saved as {found:?} version {version}; this petrel reads {FORMAT:?} version {VERSION}")]
    Version { found: String, version: u64 },
    #[error("the saved VM does not fit this one: {0}")]
    Mismatch(String),
    #[error("the saved state is invalid: {0}")]
    Invalid(String),
    #[error("{what} {path}")]
    File {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("guest memory access at {0:#x} failed")]
    GuestMemory(u64),
    #[error("migration connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("state encoding: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the peer refused: {0}")]
    Refused(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("bad URL {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("cannot pause the VM: {0}")]
    Pause(String),
    #[error("a stop signal arrived while waiting for the migration source")]
    Stopped,
    #[error("this VM cannot be saved or migrated: {0}")]
    Unsupported(String),
}

/// What a state job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// `vm.snapshot {"destination_url": "file:///dir"}` (VM paused).
    Snapshot(std::path::PathBuf),
    /// `vm.restore {"source_url": "file:///dir"}` (VM not booted).
    Restore(std::path::PathBuf),
    /// `vm.send-migration {"destination_url": "unix:PATH"}`.
    Send(MigrationUrl),
    /// `vm.receive-migration {"receiver_url": "unix:PATH"}`.
    Receive(MigrationUrl),
}

/// One request waiting for the run loop.
pub struct Job {
    pub kind: JobKind,
    pub reply: mpsc::Sender<Result<VmmData, ActionError>>,
    pub action: &'static str,
}

impl Job {
    /// Answers the API request (it may have given up waiting).
    pub fn finish(self, result: Result<(), MigrationError>) {
        let r = result.map(|()| VmmData::Empty).map_err(|e| {
            tracing::warn!(action = self.action, error = %error_chain(&e), "state job failed");
            ActionError::Failed {
                action: self.action,
                reason: error_chain(&e),
            }
        });
        let _ = self.reply.send(r);
    }
}

/// `e` and its sources, for the API's error text.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[derive(Default)]
struct Slot {
    job: Option<Job>,
    state: Option<VmState>,
}

/// Where the API executor leaves a job for the run loop, and where the run
/// loop leaves the VM state the job left (the executor picks it up before
/// its next action).
#[derive(Clone, Default)]
pub struct JobSlot(Arc<Mutex<Slot>>);

impl JobSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn put(&self, job: Job) {
        self.lock().job = Some(job);
    }

    pub fn take(&self) -> Option<Job> {
        self.lock().job.take()
    }

    pub fn set_state(&self, state: VmState) {
        self.lock().state = Some(state);
    }

    pub fn take_state(&self) -> Option<VmState> {
        self.lock().state.take()
    }
}
