//! Bringing the API up with the [`crate::Vmm`]: the listeners start while
//! the VM is built (so the socket exists before the guest runs; requests
//! for the VMM wait in the channel), and the request channel's receiver
//! joins the control loop once the vCPUs run.

use std::sync::Arc;

use devices::PauseGate;

use super::{
    request_channel, vm_config, ActionExecutor, ApiContext, ApiError, ApiOptions, ApiReceiver,
    ApiServer, ApiSubscriber, StateJobs,
};
use crate::control::Control;
use crate::exit::ExitSignal;
use crate::host::HostPlan;
use crate::lifecycle::Lifecycle;
use crate::metrics::{MetricLabels, VcpuExits};
use crate::pci_setup::PciSetup;
use crate::plan::VmPlan;
use crate::vcpu::Vcpus;

/// What the control loop takes over in [`ApiSetup::serve`].
struct Pending {
    receiver: ApiReceiver,
    gate: PauseGate,
    exit: Arc<ExitSignal>,
    jobs: StateJobs,
}

/// The running listeners. Fields drop in order: an unserved receiver
/// first (a waiting request then gets 503), then the listener threads.
#[derive(Default)]
pub struct ApiSetup {
    pending: Option<Pending>,
    servers: Vec<ApiServer>,
}

/// The VM-side inputs of [`ApiSetup::start`].
pub struct ApiInputs<'a> {
    pub plan: &'a VmPlan,
    pub host: &'a HostPlan,
    pub pci: &'a PciSetup,
    pub exits: Arc<VcpuExits>,
    pub gate: PauseGate,
    pub exit: Arc<ExitSignal>,
    pub jobs: StateJobs,
}

impl ApiSetup {
    /// Starts what `opts` asks for; nothing when it asks for nothing.
    pub fn start(opts: &ApiOptions, vm: ApiInputs<'_>) -> Result<Self, ApiError> {
        if !opts.enabled() {
            return Ok(Self::default());
        }
        let (sender, receiver) = request_channel().map_err(ApiError::Channel)?;
        let ctx = ApiContext {
            sender,
            config: vm_config(vm.plan, vm.host),
            memory_bytes: vm.plan.memory_bytes,
            nics: vm.pci.nic_stats.clone(),
            exits: vm.exits,
            paused: vm.gate.clone(),
            labels: MetricLabels {
                name: vm.plan.name.clone(),
                namespace: opts.namespace.clone().unwrap_or_default(),
            },
        };
        let servers = super::start(opts, ctx)?;
        Ok(Self {
            pending: Some(Pending {
                receiver,
                gate: vm.gate,
                exit: vm.exit,
                jobs: vm.jobs,
            }),
            servers,
        })
    }

    /// Whether any listener runs.
    pub fn is_serving(&self) -> bool {
        !self.servers.is_empty()
    }

    /// Hands the request channel to the control loop, with an executor
    /// over the running `vcpus`.
    pub fn serve(&mut self, control: &mut Control, vcpus: &Vcpus, lifecycle: Lifecycle) {
        if let Some(p) = self.pending.take() {
            let executor = ActionExecutor::new(vcpus.pauser(), p.gate, p.exit, lifecycle, p.jobs);
            control.serve_api(ApiSubscriber::new(p.receiver, executor));
        }
    }
}
