//! The vmm crate's top-level error: one variant per stage of a run, so the
//! CLI can map it to an exit code in one place.

use std::path::PathBuf;

use crate::{plan, spec};

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("cannot load the VM spec")]
    Spec(#[from] spec::SpecError),
    #[error("cannot load the VM spec")]
    SpecInput(#[from] crate::spec_input::SpecInputError),
    /// The list is the message itself (not a source), so it prints once.
    #[error("the VM spec is invalid:\n{0}")]
    Plan(plan::PlanErrors),
    #[error("the pod does not fit the VM spec:\n{0}")]
    Host(crate::host::HostErrors),
    #[error("no kernel to boot: give one with --kernel FILE or in the spec (KubeVirt spec.domain.firmware.kernelBoot.container.kernelPath, Virtink spec.instance.kernel)")]
    NoKernel,
    #[error("cannot open {what} {path}")]
    OpenFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the kernel")]
    Kernel(#[from] crate::loader::LoaderError),
    #[error("cannot set up the VM")]
    Vm(#[from] crate::vm::VmError),
    #[error("cannot set up vCPU {id}")]
    Vcpu {
        id: u8,
        #[source]
        source: crate::vcpu::VcpuError,
    },
    #[error("cannot open the console output {path}")]
    Console {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot block the stop signals or open their signalfd")]
    Signals(#[source] std::io::Error),
    #[error("cannot create the exit eventfd")]
    ExitEvent(#[source] std::io::Error),
    #[error("cannot put the PCI host bridge on the bus")]
    Pci(#[source] devices::BusError),
    #[error("cannot set up a NIC")]
    Attach(#[from] crate::attach::AttachError),
    #[error("cannot write the MP table")]
    MpTable(#[source] arch::MpTableError),
    #[error("cannot start the API")]
    Api(#[from] crate::api::ApiError),
    #[error("cannot create the device pause gate")]
    PauseGate(#[source] std::io::Error),
    #[error("cannot sandbox petrel")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("cannot write the ACPI tables")]
    Acpi(#[source] arch::AcpiError),
    #[error("cannot reset the VM for a reboot")]
    Reset(#[from] crate::reset::ResetError),
    #[error("pod network state")]
    NetState(#[from] crate::net_state::NetStateError),
    #[error("cannot prepare the pod network")]
    NetSetup(#[from] crate::pod_net::PodNetError),
    #[error("cannot remove the pod network plumbing:\n{}", .0.join("\n"))]
    NetTeardown(Vec<String>),
    #[error("control loop failed")]
    Control(#[from] crate::control::ControlError),
}

impl From<plan::PlanErrors> for VmmError {
    fn from(e: plan::PlanErrors) -> Self {
        VmmError::Plan(e)
    }
}

impl VmmError {
    /// The error as field errors (path, value, what to do), for
    /// `--output json`: plan and host errors as they are, schema issues
    /// with their paths, anything else as one message with its causes.
    pub fn field_errors(&self) -> Vec<plan::FieldError> {
        match self {
            VmmError::Plan(e) | VmmError::Host(e) => e.0.clone(),
            VmmError::Spec(spec::SpecError::Schema { issues, .. }) => issues
                .iter()
                .map(|i| plan::FieldError::new(&i.path, "", &i.message))
                .collect(),
            other => {
                let mut msg = other.to_string();
                let mut src = std::error::Error::source(other);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                vec![plan::FieldError::new("", "", msg)]
            }
        }
    }

    /// Exit code for the CLI: 2 for input the user must fix, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmmError::Spec(_) | VmmError::Plan(_) | VmmError::Host(_) | VmmError::NoKernel => 2,
            VmmError::SpecInput(_) => 2,
            VmmError::OpenFile { .. } => 2,
            VmmError::NetState(e) => e.exit_code(),
            _ => 1,
        }
    }
}
