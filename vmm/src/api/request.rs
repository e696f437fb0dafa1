//! The request channel from the API thread into the VMM: an
//! [`ApiRequest`] (a [`VmmAction`] plus the sender of its one reply) goes
//! over an mpsc channel and an eventfd wakes the control loop, whose
//! subscriber ([`super::ApiSubscriber`]) drains the channel and executes
//! each action. The API thread blocks on the reply; if the VMM is gone
//! (the receiver dropped with the request in it) the reply channel closes
//! and the API answers 503.

use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

/// What the API asks the VMM to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmmAction {
    /// `GET vm.info`: the VM's state.
    Info,
    /// `PUT vm.pause`: park every vCPU and stop the queue workers.
    Pause,
    /// `PUT vm.resume`: continue where the pause stopped.
    Resume,
    /// `PUT vm.reboot`: reset the VM in-process (the lifecycle half of
    /// issue 14 implements it).
    Reboot,
    /// `PUT vm.power-button`: ACPI power button (lifecycle half).
    PowerButton,
    /// `PUT vm.shutdown`: stop the VM; petrel then exits 0.
    ShutdownVm,
    /// `PUT vmm.shutdown`: stop the VM and exit 0.
    ShutdownVmm,
    /// `PUT vm.snapshot {"destination_url": "file:///dir"}` (paused VM).
    Snapshot,
    /// `PUT vm.restore {"source_url": "file:///dir"}` (`--incoming`).
    Restore,
    /// `PUT vm.send-migration {"destination_url": "unix:PATH"}`.
    SendMigration,
    /// `PUT vm.receive-migration {"receiver_url": "unix:PATH"}`
    /// (`--incoming`).
    ReceiveMigration,
}

impl VmmAction {
    /// The API path's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            VmmAction::Info => "vm.info",
            VmmAction::Pause => "vm.pause",
            VmmAction::Resume => "vm.resume",
            VmmAction::Reboot => "vm.reboot",
            VmmAction::PowerButton => "vm.power-button",
            VmmAction::ShutdownVm => "vm.shutdown",
            VmmAction::ShutdownVmm => "vmm.shutdown",
            VmmAction::Snapshot => "vm.snapshot",
            VmmAction::Restore => "vm.restore",
            VmmAction::SendMigration => "vm.send-migration",
            VmmAction::ReceiveMigration => "vm.receive-migration",
        }
    }

    /// The JSON field carrying the URL, for the actions that take one.
    pub fn url_field(self) -> Option<&'static str> {
        match self {
            VmmAction::Snapshot | VmmAction::SendMigration => Some("destination_url"),
            VmmAction::Restore => Some("source_url"),
            VmmAction::ReceiveMigration => Some("receiver_url"),
            _ => None,
        }
    }
}

/// The VM's state as Cloud Hypervisor names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VmState {
    Created,
    Running,
    Shutdown,
    Paused,
}

/// A successful action's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmmData {
    /// Done; nothing to return (HTTP 204).
    Empty,
    /// The VM's state (for `vm.info`).
    State(VmState),
}

/// Why the VMM refused or failed an action; mapped to HTTP statuses in
/// [`super::routes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// Cloud Hypervisor's 405: the action does not apply in this state.
    #[error("{action} is not allowed while the VM is {state:?}")]
    InvalidState {
        action: &'static str,
        state: VmState,
    },
    /// Not implemented yet (HTTP 501).
    #[error("{action} is not supported yet")]
    NotSupported { action: &'static str },
    /// The VMM tried and failed (HTTP 500).
    #[error("{action} failed: {reason}")]
    Failed {
        action: &'static str,
        reason: String,
    },
}

/// One action and where its reply goes.
#[derive(Debug)]
pub struct ApiRequest {
    pub action: VmmAction,
    /// The URL of a snapshot or migration action.
    pub url: Option<String>,
    pub reply: mpsc::Sender<Result<VmmData, ActionError>>,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the VMM is shutting down")]
    Gone,
    #[error("the VMM did not answer in time")]
    Timeout,
    #[error("cannot wake the control loop")]
    Wake(#[source] std::io::Error),
}

/// How long the API waits for the control loop (a pause waits up to 2 s
/// for the vCPUs).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Snapshots and migrations answer when they are done.
const STATE_JOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// The API thread's end.
#[derive(Debug)]
pub struct ApiSender {
    tx: mpsc::Sender<ApiRequest>,
    wake: EventFd,
}

/// The control loop's end.
#[derive(Debug)]
pub struct ApiReceiver {
    pub(super) rx: mpsc::Receiver<ApiRequest>,
    pub(super) wake: EventFd,
}

/// A connected pair.
pub fn request_channel() -> std::io::Result<(ApiSender, ApiReceiver)> {
    let wake = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?;
    let (tx, rx) = mpsc::channel();
    let sender = ApiSender {
        tx,
        wake: wake.try_clone()?,
    };
    Ok((sender, ApiReceiver { rx, wake }))
}

impl ApiSender {
    /// Sends `action` and waits for its reply.
    pub fn call(&self, action: VmmAction) -> Result<Result<VmmData, ActionError>, RequestError> {
        self.call_with(action, None)
    }

    /// Sends `action` with its URL argument and waits for its reply.
    pub fn call_with(
        &self,
        action: VmmAction,
        url: Option<String>,
    ) -> Result<Result<VmmData, ActionError>, RequestError> {
        let timeout = if url.is_some() {
            STATE_JOB_TIMEOUT
        } else {
            REPLY_TIMEOUT
        };
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(ApiRequest { action, url, reply })
            .map_err(|_| RequestError::Gone)?;
        self.wake.write(1).map_err(RequestError::Wake)?;
        answer.recv_timeout(timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => RequestError::Timeout,
            mpsc::RecvTimeoutError::Disconnected => RequestError::Gone,
        })
    }
}
