//! NICs from the plans onto the PCI bus, one module per device model, and
//! passthrough on its own. Each NIC's backend is opened first (by
//! `crate::backend`, as the host plan says), then its device is built,
//! given BARs and interrupts and placed at the plan's slot.

mod e1000;
mod passthrough;
mod pod_setup;
mod virtio_net;

use tracing::info;

use crate::backend::{self, BackendError};
use crate::host::{HostBackend, HostPlan};
use crate::irq::IrqError;
use crate::pci_setup::PciSetup;
use crate::plan::{NicModel, NicPlan, VmPlan};
use crate::vm::Vm;
use net::PodNetService;

pub use passthrough::attach_passthrough;
pub use pod_setup::PodSetup;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("interface {nic}: cannot open its backend")]
    Backend {
        nic: String,
        #[source]
        source: Box<BackendError>,
    },
    #[error("interface {nic}: the host plan has no entry for it")]
    NoHostPlan { nic: String },
    #[error("interface {nic}: model {model} is not emulated")]
    Model { nic: String, model: NicModel },
    #[error("interface {nic}: cannot create the device")]
    Device {
        nic: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("interface {nic}: its backend opened no queues")]
    NoQueues { nic: String },
    #[error("interface {nic}: no room for its BAR in the PCI window")]
    NoBarSpace { nic: String },
    #[error("interface {nic}: no free IOAPIC pin for INTx (petrel has {count})")]
    NoIntx { nic: String, count: u32 },
    #[error("interface {nic}: MSI-X vectors")]
    Msi {
        nic: String,
        #[source]
        source: IrqError,
    },
    #[error("interface {nic}: INTx line")]
    Intx {
        nic: String,
        #[source]
        source: IrqError,
    },
    #[error("interface {nic}: KVM_IOEVENTFD at {addr:#x} failed")]
    IoEvent {
        nic: String,
        addr: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("interface {nic}: passthrough of {addr}")]
    Vfio {
        nic: String,
        addr: String,
        #[source]
        source: crate::vfio::VfioAttachError,
    },
    #[error("cannot start the pod network set-up thread")]
    PodThread(#[source] std::io::Error),
    #[error("the pod network set-up thread panicked")]
    PodThreadPanicked,
    #[error("interface {nic}: cannot place it on the bus")]
    Bus {
        nic: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the NICs' backends need kept alive and served while the guest
/// runs: the pod bindings' services and the passt processes.
#[derive(Default)]
pub struct NicServices {
    pub pod: Vec<PodNetService>,
    pub passt: Vec<net::passt::Passt>,
}

/// Adds every NIC of the plan; `cpus[i]` is the host CPU of vCPU i when
/// vCPUs are pinned (queue pair i's worker follows it). Pod-bound NICs
/// take their backend from `pod_setup`, once its thread is done; the
/// others' backends are opened here. Pod bindings and passt processes are pushed
/// to `services`, which the caller keeps for as long as the guest runs.
pub fn attach_nics(
    vm: &mut Vm,
    pci: &mut PciSetup,
    services: &mut NicServices,
    pod_setup: PodSetup,
    plan: &VmPlan,
    host: &HostPlan,
    cpus: &[usize],
) -> Result<(), AttachError> {
    let mut pods = pod_setup.finish()?;
    for nic in &plan.nics {
        let h = host.nic(&nic.name).ok_or_else(|| AttachError::NoHostPlan {
            nic: nic.name.clone(),
        })?;
        if let HostBackend::Vfio {
            address,
            sysfs_path,
            ..
        } = &h.backend
        {
            passthrough::attach_vf(vm, pci, nic, address, sysfs_path)?;
            continue;
        }
        let mut opened = match pods.take(&nic.name) {
            Some(opened) => opened,
            None => backend::open(&plan.name, nic, h).map_err(|source| AttachError::Backend {
                nic: nic.name.clone(),
                source: Box::new(source),
            })?,
        };
        services.pod.extend(opened.pod.take());
        services.passt.extend(opened.passt.take());
        let dev = Attaching {
            nic,
            mac: h.guest_mac.0,
        };
        match nic.model {
            NicModel::VirtioNet => virtio_net::attach(vm, pci, dev, opened, cpus)?,
            NicModel::E1000 => e1000::attach(vm, pci, dev, opened)?,
            model => {
                return Err(AttachError::Model {
                    nic: nic.name.clone(),
                    model,
                })
            }
        }
        info!(nic = %nic.name, pci = %nic.pci_address, mac = %h.guest_mac, model = %nic.model, "NIC attached");
    }
    Ok(())
}

/// The NIC being attached and the MAC its guest side gets.
#[derive(Clone, Copy)]
struct Attaching<'a> {
    nic: &'a NicPlan,
    mac: [u8; 6],
}

impl Attaching<'_> {
    fn name(&self) -> &str {
        &self.nic.name
    }

    fn device_error<E: std::error::Error + Send + Sync + 'static>(
        &self,
    ) -> impl FnOnce(E) -> AttachError + '_ {
        move |e| AttachError::Device {
            nic: self.nic.name.clone(),
            source: Box::new(e),
        }
    }
}
