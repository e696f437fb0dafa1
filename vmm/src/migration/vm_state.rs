//! The VM-wide in-kernel state: the two PICs and the IOAPIC, the PIT and
//! the kvmclock.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::MigrationError;

fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> MigrationError {
    move |source| MigrationError::Kvm { op, source }
}

const CHIPS: [u32; 3] = [
    KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQCHIP_IOAPIC,
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KvmVmState {
    /// PIC master, PIC slave, IOAPIC.
    pub irqchips: Vec<kvm_irqchip>,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

impl KvmVmState {
    pub fn capture(vm: &VmFd) -> Result<Self, MigrationError> {
        let mut irqchips = Vec::with_capacity(CHIPS.len());
        for chip_id in CHIPS {
            let mut chip = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            vm.get_irqchip(&mut chip).map_err(kvm("KVM_GET_IRQCHIP"))?;
            irqchips.push(chip);
        }
        Ok(Self {
            irqchips,
            pit: vm.get_pit2().map_err(kvm("KVM_GET_PIT2"))?,
            clock: vm.get_clock().map_err(kvm("KVM_GET_CLOCK"))?,
        })
    }

    /// Writes the state back. The clock is set to the saved value without
    /// KVM_CLOCK_REALTIME, so the guest's kvmclock does not jump over the
    /// time the VM spent stopped (its wall clock does, through NTP or not).
    pub fn restore(&self, vm: &VmFd) -> Result<(), MigrationError> {
        if self.irqchips.len() != CHIPS.len() {
            return Err(MigrationError::Invalid(format!(
                "{} irqchips saved, expected {}",
                self.irqchips.len(),
                CHIPS.len()
            )));
        }
        for chip in &self.irqchips {
            vm.set_irqchip(chip).map_err(kvm("KVM_SET_IRQCHIP"))?;
        }
        vm.set_pit2(&self.pit).map_err(kvm("KVM_SET_PIT2"))?;
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            ..Default::default()
        };
        vm.set_clock(&clock).map_err(kvm("KVM_SET_CLOCK"))?;
        Ok(())
    }
}
