//! vCPU setup and the KVM_RUN loop. Each vCPU runs on its own thread
//! (`vcpu0`, `vcpu1`, ...) and dispatches port and MMIO exits to the buses.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Instant;

use devices::Bus;
use kvm_bindings::{CpuId, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};
use tracing::{debug, info, warn};
use vm_memory::GuestMemoryMmap;

use crate::exit::{ExitReason, ExitSignal};
use crate::loader::BootEntry;

#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("KVM_CREATE_VCPU failed")]
    CreateVcpu(#[source] kvm_ioctls::Error),
    #[error("KVM_SET_CPUID2 failed")]
    SetCpuid(#[source] kvm_ioctls::Error),
    #[error("cannot build the MSR list")]
    MsrList,
    #[error("KVM_SET_MSRS failed")]
    SetMsrs(#[source] kvm_ioctls::Error),
    #[error("KVM_SET_MSRS set {set} of {wanted} MSRs")]
    PartialMsrs { set: usize, wanted: usize },
    #[error("cannot get or set the local APIC")]
    Lapic(#[source] kvm_ioctls::Error),
    #[error("cannot set registers")]
    Regs(#[source] kvm_ioctls::Error),
    #[error("cannot set up boot segments and page tables")]
    Boot(#[from] arch::BootError),
    #[error("cannot spawn the vCPU thread")]
    Spawn(#[source] io::Error),
    #[error("cannot install the vCPU kick signal handler")]
    KickSignal(#[source] vmm_sys_util::errno::Error),
}

/// State every vCPU thread shares with the control thread.
pub struct VcpuShared {
    pub pio: Bus,
    pub mmio: Bus,
    pub stop: AtomicBool,
    pub exit: Arc<ExitSignal>,
    pub start: Instant,
}

/// Local APIC register offsets for LINT0/LINT1 and their delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(regs: &[std::os::raw::c_char], off: usize) -> u32 {
    let b: Vec<u8> = regs[off..off + 4].iter().map(|&c| c as u8).collect();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn set_lapic_reg(regs: &mut [std::os::raw::c_char], off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        regs[off + i] = *b as std::os::raw::c_char;
    }
}

fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// Per-vCPU state before the first KVM_RUN: CPUID with this vCPU's
/// topology, boot MSRs, LINT0 as ExtINT and LINT1 as NMI (what the MP
/// table's local interrupt entries promise), and for vCPU 0 the entry
/// registers. APs wait for INIT/SIPI in the in-kernel LAPIC.
pub fn configure(
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    id: u8,
    num_vcpus: u8,
    supported_cpuid: &CpuId,
    boot: Option<&BootEntry>,
) -> Result<(), VcpuError> {
    let mut cpuid = supported_cpuid.clone();
    arch::filter_cpuid(&mut cpuid, id, num_vcpus);
    vcpu.set_cpuid2(&cpuid).map_err(VcpuError::SetCpuid)?;

    let entries = arch::boot_msrs();
    let msrs = Msrs::from_entries(&entries).map_err(|_| VcpuError::MsrList)?;
    let set = vcpu.set_msrs(&msrs).map_err(VcpuError::SetMsrs)?;
    if set != entries.len() {
        return Err(VcpuError::PartialMsrs {
            set,
            wanted: entries.len(),
        });
    }

    let mut lapic = vcpu.get_lapic().map_err(VcpuError::Lapic)?;
    let lvt0 = lapic_reg(&lapic.regs, APIC_LVT0);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT0,
        with_delivery_mode(lvt0, APIC_MODE_EXTINT),
    );
    let lvt1 = lapic_reg(&lapic.regs, APIC_LVT1);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT1,
        with_delivery_mode(lvt1, APIC_MODE_NMI),
    );
    vcpu.set_lapic(&lapic).map_err(VcpuError::Lapic)?;

    vcpu.set_fpu(&arch::fpu_default())
        .map_err(VcpuError::Regs)?;
    if let Some(boot) = boot {
        let mut sregs = vcpu.get_sregs().map_err(VcpuError::Regs)?;
        arch::boot_sregs(mem, &mut sregs, &boot.mode)?;
        vcpu.set_sregs(&sregs).map_err(VcpuError::Regs)?;
        vcpu.set_regs(&arch::boot_regs(boot.entry, &boot.mode))
            .map_err(VcpuError::Regs)?;
    }
    Ok(())
}

/// The signal that kicks a vCPU thread out of KVM_RUN (EINTR).
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn noop_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

pub fn install_kick_handler() -> Result<(), VcpuError> {
    static ONCE: Once = Once::new();
    let mut res = Ok(());
    ONCE.call_once(|| {
        res = vmm_sys_util::signal::register_signal_handler(kick_signal(), noop_handler)
            .map_err(VcpuError::KickSignal);
    });
    res
}

pub fn spawn(
    mut vcpu: VcpuFd,
    id: u8,
    host_cpu: Option<usize>,
    shared: Arc<VcpuShared>,
) -> Result<JoinHandle<()>, VcpuError> {
    std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            let span = tracing::info_span!("vcpu", vcpu = id);
            let _enter = span.enter();
            if let Some(cpu) = host_cpu {
                match crate::affinity::pin_current_thread(cpu) {
                    Ok(()) => debug!(host_cpu = cpu, "pinned"),
                    Err(e) => warn!(host_cpu = cpu, error = %e, "cannot pin the vCPU thread"),
                }
            }
            let reason = run_loop(&mut vcpu, id, &shared);
            if let Some(r) = reason {
                shared.exit.request(r);
            }
        })
        .map_err(VcpuError::Spawn)
}

fn run_loop(vcpu: &mut VcpuFd, id: u8, shared: &VcpuShared) -> Option<ExitReason> {
    let mut first = true;
    let mut unknown_exits = 0u64;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return None;
        }
        if first {
            info!(
                since_start_us = shared.start.elapsed().as_micros() as u64,
                "first KVM_RUN"
            );
            first = false;
        }
        match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if !shared.pio.read(u64::from(port), data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                shared.pio.write(u64::from(port), data);
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !shared.mmio.read(addr, data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                shared.mmio.write(addr, data);
            }
            Ok(VcpuExit::Hlt) => {
                // With the in-kernel LAPIC, HLT blocks in KVM; reaching here
                // means interrupts are off for good.
                debug!("HLT exit");
                return Some(ExitReason::VcpuFailed {
                    vcpu: id,
                    error: "the guest halted with interrupts disabled".into(),
                });
            }
            Ok(VcpuExit::Shutdown) => return Some(ExitReason::TripleFault { vcpu: id }),
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                info!(kind, "system event");
                return Some(ExitReason::GuestReset);
            }
            Ok(VcpuExit::InternalError) => {
                let run = vcpu.get_kvm_run();
                // SAFETY: KVM filled the `internal` member of the exit union,
                // since exit_reason is KVM_EXIT_INTERNAL_ERROR.
                let internal = unsafe { run.__bindgen_anon_1.internal };
                let n = (internal.ndata as usize).min(internal.data.len());
                return Some(ExitReason::InternalError {
                    vcpu: id,
                    suberror: internal.suberror,
                    data: internal.data[..n].to_vec(),
                });
            }
            Ok(VcpuExit::FailEntry(reason, _cpu)) => {
                return Some(ExitReason::FailEntry { vcpu: id, reason })
            }
            Ok(VcpuExit::Intr) => {}
            Ok(other) => {
                unknown_exits += 1;
                if devices::should_log(unknown_exits) {
                    warn!(exit = ?other, count = unknown_exits, "unhandled vCPU exit");
                }
                if unknown_exits > 1000 {
                    return Some(ExitReason::VcpuFailed {
                        vcpu: id,
                        error: format!("too many unhandled exits, last {other:?}"),
                    });
                }
            }
            Err(e) => match e.errno() {
                libc::EINTR => {
                    vcpu.set_kvm_immediate_exit(0);
                }
                // Seen once per SMP boot on this host.
                libc::EAGAIN => {}
                _ => {
                    return Some(ExitReason::VcpuFailed {
                        vcpu: id,
                        error: format!("KVM_RUN failed: {e}"),
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_bits() {
        assert_eq!(
            with_delivery_mode(0x0001_0000, APIC_MODE_EXTINT),
            0x0001_0700
        );
        assert_eq!(with_delivery_mode(0x0000_07ff, APIC_MODE_NMI), 0x0000_04ff);
        let mut regs = [0 as std::os::raw::c_char; 1024];
        set_lapic_reg(&mut regs, APIC_LVT1, 0xdead_beef);
        assert_eq!(lapic_reg(&regs, APIC_LVT1), 0xdead_beef);
    }
}
