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

use super::request::{ActionError, ApiReceiver, ApiRequest, VmState, VmmAction, VmmData};
use super::state::{step, Step};
use crate::exit::{ExitReason, ExitSignal};
use crate::lifecycle::Lifecycle;
use crate::migration::{Job, JobKind, JobSlot, MigrationUrl};
use crate::vcpu_pause::VcpuPauser;

/// Executes actions; the VM's state lives here.
pub struct ActionExecutor {
    state: VmState,
    vcpus: VcpuPauser,
    devices: PauseGate,
    exit: Arc<ExitSignal>,
    lifecycle: Lifecycle,
    jobs: StateJobs,
}

/// How the executor hands snapshot and migration requests to the run loop.
#[derive(Clone, Default)]
pub struct StateJobs {
    pub slot: JobSlot,
    /// Why this VM cannot be saved or migrated ([`crate::migration::refusal`]).
    pub refusal: Option<String>,
    /// `--incoming`: the VM is Created (not booted) until a restore or a
    /// received migration.
    pub incoming: bool,
}

impl ActionExecutor {
    /// For a VM whose vCPUs run (or, `--incoming`, wait for a restore).
    pub fn new(
        vcpus: VcpuPauser,
        devices: PauseGate,
        exit: Arc<ExitSignal>,
        lifecycle: Lifecycle,
        jobs: StateJobs,
    ) -> Self {
        Self {
            state: if jobs.incoming {
                VmState::Created
            } else {
                VmState::Running
            },
            vcpus,
            devices,
            exit,
            lifecycle,
            jobs,
        }
    }

    /// Runs one request; a snapshot or migration is answered later by the
    /// run loop.
    pub fn handle(&mut self, req: ApiRequest) {
        if let Some(state) = self.jobs.slot.take_state() {
            self.state = state;
        }
        if req.action.url_field().is_none() {
            let result = self.execute(req.action);
            // The API thread may have given up waiting.
            let _ = req.reply.send(result);
            return;
        }
        match self.job_kind(req.action, req.url.as_deref().unwrap_or_default()) {
            Ok(kind) => {
                info!(action = req.action.name(), job = ?kind, "state job requested");
                self.jobs.slot.put(Job {
                    kind,
                    reply: req.reply,
                    action: req.action.name(),
                });
                self.exit.request(ExitReason::StateJob);
            }
            Err(e) => {
                let _ = req.reply.send(Err(e));
            }
        }
    }

    /// Checks a state job against the VM's state and what it holds.
    fn job_kind(&self, action: VmmAction, url: &str) -> Result<JobKind, ActionError> {
        step(self.state, action)?;
        let failed = |reason: String| ActionError::Failed {
            action: action.name(),
            reason,
        };
        if let (Some(why), VmmAction::Snapshot | VmmAction::SendMigration) =
            (&self.jobs.refusal, action)
        {
            return Err(failed(why.clone()));
        }
        let dir = || crate::migration::file_dir(url).map_err(|e| failed(e.to_string()));
        let sock = || MigrationUrl::parse(url).map_err(|e| failed(e.to_string()));
        Ok(match action {
            VmmAction::Snapshot => JobKind::Snapshot(dir()?),
            VmmAction::Restore => JobKind::Restore(dir()?),
            VmmAction::SendMigration => JobKind::Send(sock()?),
            _ => JobKind::Receive(sock()?),
        })
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
            Step::StateJob => {
                return Err(ActionError::Failed {
                    action: action.name(),
                    reason: "needs a URL".into(),
                })
            }
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
                Ok(req) => self.executor.handle(req),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = ops.remove(Events::new(&self.receiver.wake, EventSet::IN));
                    break;
                }
            }
        }
    }
}
