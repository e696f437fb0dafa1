//! Passthrough: SR-IOV VFs from the host plan, and any device speaking the
//! VFIO interface for programs embedding the vmm library.

use std::path::Path;
use std::sync::Arc;

use tracing::info;

use super::AttachError;
use crate::pci_setup::PciSetup;
use crate::plan::NicPlan;
use crate::vfio::{Attached, PciPlace};
use crate::vm::Vm;

/// Where a passthrough device's BARs and INTx go.
fn place_for(pci: &mut PciSetup) -> (PciPlace<'_>, &mut crate::vfio::VfioState) {
    let intx_gsi = pci.peek_intx_gsi();
    let place = PciPlace {
        mmio: &mut pci.alloc,
        io: &mut pci.io_alloc,
        intx_gsi,
    };
    (place, &mut pci.vfio)
}

/// Takes the INTx pin the device uses and puts it on the bus at `slot`.
fn finish(
    vm: &mut Vm,
    pci: &mut PciSetup,
    name: &str,
    slot: u8,
    attached: Attached,
) -> Result<(), AttachError> {
    if let Some(gsi) = attached.intx_gsi {
        pci.take_intx_gsi(name)?;
        pci.mp_intx.push(arch::PciIntx {
            device: slot,
            pin: attached.probe.intx_pin.saturating_sub(1),
            gsi: gsi as u8,
        });
    }
    pci.place(vm, name, slot, attached.device)
}

/// Passes the NIC's VF through: the guest drives it with its own driver
/// (the interface's `model` does not apply, as in KubeVirt).
pub(super) fn attach_vf(
    vm: &mut Vm,
    pci: &mut PciSetup,
    nic: &NicPlan,
    address: &str,
    sysfs_path: &Path,
) -> Result<(), AttachError> {
    let (place, vfio) = place_for(pci);
    let attached =
        crate::vfio::attach(vm, vfio, &nic.name, sysfs_path, place).map_err(|source| {
            AttachError::Vfio {
                nic: nic.name.clone(),
                addr: address.to_string(),
                source,
            }
        })?;
    if nic.mac_from_spec {
        // The VF's MAC is the PF's to set (`ip link set PF vf N mac`), which
        // the SR-IOV CNI does on the node from the same spec; the PF is not
        // in the pod.
        info!(nic = %nic.name, mac = %nic.mac, "the VF's MAC is set by the SR-IOV CNI, not petrel");
    }
    finish(vm, pci, &nic.name, nic.pci_address.device, attached)?;
    info!(nic = %nic.name, pci = %nic.pci_address, vf = address, "SR-IOV VF passed through");
    Ok(())
}

/// Passes a device that speaks the VFIO interface through at `slot`: for
/// programs embedding the vmm library (the petrel CLI passes VFs through
/// from the spec's sriov interfaces).
pub fn attach_passthrough(
    vm: &mut Vm,
    pci: &mut PciSetup,
    name: &str,
    slot: u8,
    ops: Arc<dyn devices::vfio::VfioOps>,
) -> Result<(), AttachError> {
    let (place, _) = place_for(pci);
    let attached =
        crate::vfio::attach_ops(vm, name, ops, place).map_err(|source| AttachError::Vfio {
            nic: name.to_string(),
            addr: format!("slot {slot}"),
            source,
        })?;
    finish(vm, pci, name, slot, attached)
}
