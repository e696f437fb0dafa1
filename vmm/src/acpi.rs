//! ACPI in the VM: the PM register (S5 → [`ExitReason::GuestShutdown`],
//! the reset value → [`ExitReason::GuestReset`]) and the GED power button
//! on the buses, and the tables (`arch::acpi`) in guest memory.

use std::sync::{Arc, Mutex};

use devices::acpi::{AcpiPm, PmEvents, PowerButton, ACPI_PM_LEN, ACPI_PM_PORT, GED_GSI};
use devices::legacy::EventFdTrigger;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::exit::{ExitReason, ExitSignal};
use crate::pci_setup::{PCI_IO_SIZE, PCI_IO_START};
use crate::vm::{Vm, VmError};

/// Turns the guest's PM register writes into exit reasons.
struct ExitPm(Arc<ExitSignal>);

impl PmEvents for ExitPm {
    fn shutdown(&self) {
        self.0.request(ExitReason::GuestShutdown);
    }

    fn reset(&self) {
        self.0.request(ExitReason::GuestReset);
    }
}

/// Puts the PM register on the port bus and wires the power button's GED
/// interrupt (an irqfd on [`GED_GSI`]).
pub fn add_devices(vm: &mut Vm, exit: &Arc<ExitSignal>) -> Result<Arc<PowerButton>, VmError> {
    let pm = AcpiPm::new(Box::new(ExitPm(exit.clone())));
    vm.pio
        .insert(Arc::new(Mutex::new(pm)), ACPI_PM_PORT, ACPI_PM_LEN)?;
    let evt = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VmError::EventFd)?;
    vm.fd
        .register_irqfd(&evt, GED_GSI)
        .map_err(|source| VmError::Kvm {
            op: "KVM_IRQFD (GED)",
            source,
        })?;
    Ok(Arc::new(PowerButton::new(EventFdTrigger::new(evt))))
}

/// Writes the ACPI tables for `vcpus` and the PCI INTx routes.
pub fn write_tables(
    mem: &GuestMemoryMmap,
    vcpus: u8,
    pci_intx: &[arch::PciIntx],
) -> Result<GuestAddress, arch::AcpiError> {
    let cfg = arch::AcpiConfig {
        num_cpus: vcpus,
        pci_intx,
        pm_port: ACPI_PM_PORT as u16,
        ged_gsi: GED_GSI,
        pci_io: (PCI_IO_START as u16, PCI_IO_SIZE as u16),
        pci_mmio: (
            arch::layout::PCI_MMIO32_START as u32,
            arch::layout::PCI_MMIO32_SIZE as u32,
        ),
    };
    arch::setup_acpi(mem, &cfg)
}
