//! Resetting the VM in place (guest reboot with `--on-guest-reset restart`,
//! or [`crate::Lifecycle::reboot`]). KVM cannot destroy vCPUs, so their
//! power-on state — registers, special registers and local APIC as KVM
//! created them — is captured before the first run and written back, with
//! the BSP runnable and the APs waiting for INIT/SIPI. The in-kernel PICs,
//! IOAPIC and PIT go back to their captured state, every PCI device is
//! reset (workers stop, backends stay), RAM is zeroed and the boot image
//! written again. The pod networks — taps, bindings, MACs, DHCP servers —
//! belong to the control loop and are not touched.

use kvm_bindings::{
    kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_pit_state2, kvm_regs, kvm_sregs,
    kvm_vcpu_events, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED,
};
use kvm_ioctls::{VcpuFd, VmFd};
use tracing::info;

use crate::boot::GuestImage;
use crate::error::VmmError;
use crate::pci_setup::PciSetup;
use crate::vm::Vm;

/// What a guest reset (reboot) does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnGuestReset {
    /// End the run (exit 0): the pod's restart policy decides.
    #[default]
    Exit,
    /// Reset the VM in place and boot again, networking kept.
    Restart,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("{op} failed")]
    Kvm {
        op: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot zero guest memory")]
    Memory(#[source] std::io::Error),
    #[error("no power-on state was captured for vCPU {0}")]
    NoVcpuState(u8),
}

fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> ResetError {
    move |source| ResetError::Kvm { op, source }
}

const CHIPS: [u32; 3] = [
    KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQCHIP_IOAPIC,
];

/// One vCPU as KVM created it.
struct VcpuPowerOn {
    regs: kvm_regs,
    sregs: kvm_sregs,
    lapic: kvm_lapic_state,
}

/// The VM's power-on state, captured before the first KVM_RUN.
pub(crate) struct PowerOnState {
    irqchips: Vec<kvm_irqchip>,
    pit: kvm_pit_state2,
    vcpus: Vec<VcpuPowerOn>,
}

impl PowerOnState {
    /// Captures the irqchip and PIT; vCPUs are added with
    /// [`Self::capture_vcpu`] as they are created, before configuring.
    pub fn capture_vm(vm: &VmFd) -> Result<Self, ResetError> {
        let mut irqchips = Vec::with_capacity(CHIPS.len());
        for chip_id in CHIPS {
            let mut chip = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            vm.get_irqchip(&mut chip).map_err(kvm("KVM_GET_IRQCHIP"))?;
            irqchips.push(chip);
        }
        let pit = vm.get_pit2().map_err(kvm("KVM_GET_PIT2"))?;
        Ok(Self {
            irqchips,
            pit,
            vcpus: Vec::new(),
        })
    }

    pub fn capture_vcpu(&mut self, fd: &VcpuFd) -> Result<(), ResetError> {
        self.vcpus.push(VcpuPowerOn {
            regs: fd.get_regs().map_err(kvm("KVM_GET_REGS"))?,
            sregs: fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
            lapic: fd.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
        });
        Ok(())
    }

    fn restore_vm(&self, vm: &VmFd) -> Result<(), ResetError> {
        for chip in &self.irqchips {
            vm.set_irqchip(chip).map_err(kvm("KVM_SET_IRQCHIP"))?;
        }
        vm.set_pit2(&self.pit).map_err(kvm("KVM_SET_PIT2"))
    }

    fn restore_vcpu(&self, id: u8, fd: &VcpuFd) -> Result<(), ResetError> {
        let s = self
            .vcpus
            .get(usize::from(id))
            .ok_or(ResetError::NoVcpuState(id))?;
        fd.set_regs(&s.regs).map_err(kvm("KVM_SET_REGS"))?;
        fd.set_sregs(&s.sregs).map_err(kvm("KVM_SET_SREGS"))?;
        fd.set_lapic(&s.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
        // No pending exception, interrupt or NMI from the old run.
        fd.set_vcpu_events(&kvm_vcpu_events::default())
            .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
        let mp_state = if id == 0 {
            KVM_MP_STATE_RUNNABLE
        } else {
            KVM_MP_STATE_UNINITIALIZED
        };
        fd.set_mp_state(kvm_mp_state { mp_state })
            .map_err(kvm("KVM_SET_MP_STATE"))
    }

    /// Resets the whole machine for a new boot (the vCPU threads are
    /// stopped); the vCPUs are configured again as for the first boot.
    pub fn reset(
        &self,
        vm: &Vm,
        pci: &PciSetup,
        vcpus: &[VcpuFd],
        image: &GuestImage,
    ) -> Result<(), VmmError> {
        // Devices first, so no worker writes guest memory after it is zeroed.
        pci.bus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reset_devices();
        self.restore_vm(&vm.fd)?;
        crate::memory::zero_guest_memory(&vm.mem).map_err(ResetError::Memory)?;
        let entry = image.load(vm)?;
        for (id, fd) in (0u8..).zip(vcpus) {
            self.restore_vcpu(id, fd)?;
            let boot = (id == 0).then_some(&entry);
            crate::vcpu::configure_boot_state(fd, &vm.mem, boot)
                .map_err(|source| VmmError::Vcpu { id, source })?;
        }
        info!(vcpus = vcpus.len(), "VM reset: booting again");
        Ok(())
    }
}
