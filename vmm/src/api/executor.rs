//! The control-loop side of the API: [`ApiSubscriber`] watches the request
//! channel's eventfd and runs each action through [`ActionExecutor`] on the
//! control thread, which owns the VM's state.
//!
//! `vm.reboot` and `vm.power-button` arrive as [`VmmAction::Reboot`] and
//! [`VmmAction::PowerButton`] and reach [`ActionExecutor::lifecycle`],
//! which presses the ACPI power button or asks for the in-process reset
//! through the VM's [`Lifecycle`] handle.

use std::sync::mpsc::TryRecvError;
use std::sync::Arc;

use devices::PauseGate;
use event_manager::{EventOps, Events, MutEventSubscriber};
use tracing::{info, warn};
use vmm_sys_util::epoll::EventSet;

use super::request::{ActionError, ApiReceiver, VmState, VmmAction, VmmData};
use super::state::{step, Step};
use crate::exit::{ExitReason, ExitSignal};
use crate::lifecycle::Lifecycle;
use crate::vcpu_pause::VcpuPauser;

/// Executes actions; the VM's state lives here.
pub struct ActionExecutor {
    state: VmState,
    vcpus: VcpuPauser,
    devices: PauseGate,
    exit: Arc<ExitSignal>,
    lifecycle: Lifecycle,
}

impl ActionExecutor {
    /// For a VM whose vCPUs run.
    pub fn new(
        vcpus: VcpuPauser,
        devices: PauseGate,
        exit: Arc<ExitSignal>,
        lifecycle: Lifecycle,
    ) -> Self {
        Self {
            state: VmState::Running,
            vcpus,
            devices,
            exit,
            lifecycle,
        }
    }

    pub fn execute(&mut self, action: VmmAction) -> Result<VmmData, ActionError> {
        match step(self.state, action)? {
            Step::Report => return Ok(VmmData::State(self.state)),
            Step::Pause => self.pause()?,
            Step::Resume => self.resume()?,
            Step::Shutdown => {
                info!(action = action.name(), "shutdown requested through the API");
                self.exit.request(ExitReason::ApiShutdown);
                self.state = VmState::Shutdown;
            }
            Step::Lifecycle => self.lifecycle(action)?,
        }
        Ok(VmmData::Empty)
    }

    /// vCPUs first, so no new kick reaches a worker; then the workers.
    fn pause(&mut self) -> Result<(), ActionError> {
        if !self.vcpus.pause() {
            return Err(ActionError::Failed {
                action: "vm.pause",
                reason: "a vCPU did not leave KVM_RUN in time".into(),
            });
        }
        self.devices.pause();
        self.state = VmState::Paused;
        info!("VM paused");
        Ok(())
    }

    /// Workers first, so the vCPUs find their queues served.
    fn resume(&mut self) -> Result<(), ActionError> {
        self.devices.resume().map_err(|e| ActionError::Failed {
            action: "vm.resume",
            reason: format!("cannot wake the queue workers: {e}"),
        })?;
        self.vcpus.resume();
        self.state = VmState::Running;
        info!("VM resumed");
        Ok(())
    }

    /// `vm.reboot` (a paused VM is resumed first, so its vCPUs can be
    /// stopped and reset) and `vm.power-button`.
    fn lifecycle(&mut self, action: VmmAction) -> Result<(), ActionError> {
        match action {
            VmmAction::Reboot => {
                if self.state == VmState::Paused {
                    self.resume()?;
                }
                info!("reboot requested through the API");
                self.lifecycle.reboot();
                Ok(())
            }
            VmmAction::PowerButton => {
                info!("power button pressed through the API");
                self.lifecycle
                    .power_button()
                    .map_err(|e| ActionError::Failed {
                        action: action.name(),
                        reason: e.to_string(),
                    })
            }
            other => Err(ActionError::NotSupported {
                action: other.name(),
            }),
        }
    }
}

/// The control loop's subscriber for the request channel.
pub struct ApiSubscriber {
    receiver: ApiReceiver,
    executor: ActionExecutor,
}

impl ApiSubscriber {
    pub fn new(receiver: ApiReceiver, executor: ActionExecutor) -> Self {
        Self { receiver, executor }
    }
}

impl MutEventSubscriber for ApiSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.receiver.wake, EventSet::IN)) {
            warn!(error = ?e, "cannot watch the API request channel");
        }
    }

    fn process(&mut self, _events: Events, ops: &mut EventOps) {
        let _ = self.receiver.wake.read();
        loop {
            match self.receiver.rx.try_recv() {
                Ok(req) => {
                    let result = self.executor.execute(req.action);
                    // The API thread may have given up waiting.
                    let _ = req.reply.send(result);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = ops.remove(Events::new(&self.receiver.wake, EventSet::IN));
                    break;
                }
            }
        }
    }
}
