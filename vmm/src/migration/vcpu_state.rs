//! One vCPU's architectural state as KVM holds it, read and written while
//! the vCPU is out of KVM_RUN (its thread stopped). Restore order:
//! registers, special registers, xsave, XCRs, debug registers, LAPIC, then
//! the MSRs (QEMU's reason: the TSC-deadline timer must be written after
//! the LAPIC, or the guest's next timer interrupt never comes), MP state
//! and pending events last.

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs,
    kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

use super::MigrationError;

fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> MigrationError {
    move |source| MigrationError::Kvm { op, source }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    /// What KVM_GET_CPUID2 returns: checked equal on restore, never set.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub msrs: Vec<kvm_msr_entry>,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub mp_state: kvm_mp_state,
    pub events: kvm_vcpu_events,
}

/// Reads every MSR of `index` that this vCPU returns (one at a time: a
/// batch stops at the first MSR KVM refuses).
fn read_msrs(vcpu: &VcpuFd, index: &[u32]) -> Result<Vec<kvm_msr_entry>, MigrationError> {
    let mut out = Vec::with_capacity(index.len());
    for &i in index {
        let entry = kvm_msr_entry {
            index: i,
            ..Default::default()
        };
        let mut one = Msrs::from_entries(&[entry]).map_err(|_| MigrationError::MsrList)?;
        if vcpu.get_msrs(&mut one).map_err(kvm("KVM_GET_MSRS"))? == 1 {
            out.extend_from_slice(one.as_slice());
        }
    }
    Ok(out)
}

/// The vCPU's CPUID as KVM applies it.
pub fn cpuid(vcpu: &VcpuFd) -> Result<Vec<kvm_cpuid_entry2>, MigrationError> {
    let c = vcpu
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("KVM_GET_CPUID2"))?;
    Ok(c.as_slice().to_vec())
}

impl VcpuState {
    /// Captures `vcpu`; `msr_index` is KVM_GET_MSR_INDEX_LIST.
    pub fn capture(vcpu: &VcpuFd, msr_index: &[u32]) -> Result<Self, MigrationError> {
        Ok(Self {
            cpuid: cpuid(vcpu)?,
            msrs: read_msrs(vcpu, msr_index)?,
            regs: vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?,
            sregs: vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
            xsave: vcpu.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?,
            xcrs: vcpu.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?,
            debugregs: vcpu.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?,
            lapic: vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
            mp_state: vcpu.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?,
            events: vcpu.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?,
        })
    }

    /// Writes the state into `vcpu` (vCPU `id`), whose CPUID must be the
    /// one saved: a guest moved to a CPU with other features could fault.
    pub fn restore(&self, vcpu: &VcpuFd, id: usize) -> Result<(), MigrationError> {
        if cpuid(vcpu)? != self.cpuid {
            return Err(MigrationError::CpuidMismatch(id));
        }
        vcpu.set_regs(&self.regs).map_err(kvm("KVM_SET_REGS"))?;
        vcpu.set_sregs(&self.sregs).map_err(kvm("KVM_SET_SREGS"))?;
        // SAFETY: the buffer is a whole kvm_xsave as KVM_GET_XSAVE returned
        // it (4096 bytes); KVM_CAP_XSAVE2 reports 4096 on the hosts petrel
        // saves on, so nothing beyond the legacy buffer is dropped.
        unsafe { vcpu.set_xsave(&self.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
        vcpu.set_xcrs(&self.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
        vcpu.set_debug_regs(&self.debugregs)
            .map_err(kvm("KVM_SET_DEBUGREGS"))?;
        vcpu.set_lapic(&self.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
        // After the LAPIC (as QEMU does): KVM_SET_LAPIC clears the TSC
        // deadline, and IA32_TSC_DEADLINE is only taken in deadline mode.
        let msrs = Msrs::from_entries(&self.msrs).map_err(|_| MigrationError::MsrList)?;
        let set = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if set != self.msrs.len() {
            let refused = self.msrs.get(set).map_or(0, |m| m.index);
            return Err(MigrationError::MsrRefused { vcpu: id, refused });
        }
        vcpu.set_mp_state(self.mp_state)
            .map_err(kvm("KVM_SET_MP_STATE"))?;
        vcpu.set_vcpu_events(&self.events)
            .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
        Ok(())
    }
}
