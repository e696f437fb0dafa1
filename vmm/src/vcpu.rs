//! vCPU setup and the KVM_RUN loop. Each vCPU runs on its own thread
//! (`vcpu0`, `vcpu1`, ...) and dispatches port and MMIO exits to the buses.

use std::cell::Cell;
use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Instant;

use devices::Bus;
use kvm_bindings::{CpuId, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};
use tracing::{debug, info, warn};
use vm_memory::GuestMemoryMmap;

use crate::exit::{ExitReason, ExitSignal};
use crate::loader::BootEntry;
use crate::metrics::VcpuExits;
use crate::vcpu_pause::{VcpuPark, VcpuPauser};

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
    /// Pause flag and parking place (see [`crate::vcpu_pause`]).
    pub park: VcpuPark,
    /// Exit counts per vCPU, for the metrics.
    pub exits: Arc<VcpuExits>,
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
    configure_boot_state(vcpu, mem, boot)
}

/// Everything [`configure`] does but CPUID: what a VM reset writes again
/// (KVM refuses a CPUID change after the first KVM_RUN, and the CPUID
/// stays what it was).
pub fn configure_boot_state(
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    boot: Option<&BootEntry>,
) -> Result<(), VcpuError> {
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
    match boot {
        Some(boot) => set_entry(vcpu, mem, boot),
        None => Ok(()),
    }
}

/// The boot vCPU's entry registers (and the page tables and GDT they
/// point at): set last, once the kernel is loaded.
pub fn set_entry(vcpu: &VcpuFd, mem: &GuestMemoryMmap, boot: &BootEntry) -> Result<(), VcpuError> {
    let mut sregs = vcpu.get_sregs().map_err(VcpuError::Regs)?;
    arch::boot_sregs(mem, &mut sregs, &boot.mode)?;
    vcpu.set_sregs(&sregs).map_err(VcpuError::Regs)?;
    vcpu.set_regs(&arch::boot_regs(boot.entry, &boot.mode))
        .map_err(VcpuError::Regs)
}

/// The signal that kicks a vCPU thread out of KVM_RUN (EINTR).
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

thread_local! {
    /// This vCPU thread's `kvm_run.immediate_exit` byte, for the kick
    /// handler; null outside the run loop. Const-initialised and without a
    /// destructor, so the signal handler may touch it.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// Sets `immediate_exit` on the interrupted vCPU (Firecracker's kick): a
/// kick that lands between the stop check and KVM_RUN then makes KVM_RUN
/// return EINTR at once instead of being lost, so one kick is enough.
extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let p = IMMEDIATE_EXIT.with(Cell::get);
    if !p.is_null() {
        // SAFETY: the pointer is this thread's own kvm_run mapping, set by
        // run_loop and cleared before the VcpuFd (and its mapping) drops; a
        // volatile byte store is async-signal-safe.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

pub fn install_kick_handler() -> Result<(), VcpuError> {
    static ONCE: Once = Once::new();
    let mut res = Ok(());
    ONCE.call_once(|| {
        res = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .map_err(VcpuError::KickSignal);
    });
    res
}

/// The running vCPU threads. Stopping sets the shared stop flag and kicks
/// each thread once; dropping stops and joins them.
pub struct Vcpus {
    threads: Vec<JoinHandle<VcpuFd>>,
    /// The running threads' ids, for the pauser's kicks: only threads not
    /// joined yet are listed.
    ids: Arc<Mutex<Vec<libc::pthread_t>>>,
    shared: Arc<VcpuShared>,
}

impl Vcpus {
    pub fn new(shared: Arc<VcpuShared>) -> Self {
        Vcpus {
            threads: Vec::new(),
            ids: Arc::default(),
            shared,
        }
    }

    /// Configures vCPU `id` and starts its thread.
    pub fn start(
        &mut self,
        vcpu: VcpuFd,
        id: u8,
        host_cpu: Option<usize>,
    ) -> Result<(), VcpuError> {
        let t = spawn(vcpu, id, host_cpu, self.shared.clone())?;
        lock(&self.ids).push(t.as_pthread_t());
        self.threads.push(t);
        Ok(())
    }

    /// Pauses and resumes these vCPUs from the control thread; it follows
    /// the running threads across VM resets.
    pub fn pauser(&self) -> VcpuPauser {
        VcpuPauser::new(self.shared.clone(), self.ids.clone())
    }

    /// Stops every vCPU and joins its thread; returns the vCPU fds in start
    /// order (KVM cannot destroy a vCPU, so a VM reset reuses them) and
    /// clears the stop flag for the next start.
    pub fn stop(&mut self) -> Vec<VcpuFd> {
        self.shared.stop.store(true, Ordering::Release);
        // Parked (paused) vCPUs see the stop flag once woken.
        self.shared.park.wake_all();
        for t in &self.threads {
            if !t.is_finished() {
                // SAFETY: the pthread_t belongs to a thread spawned here and
                // not joined yet, so it is valid; the handler only sets
                // immediate_exit.
                unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
            }
        }
        // No kick may reach a thread once it is joined.
        lock(&self.ids).clear();
        let count = self.threads.len();
        let mut fds = Vec::with_capacity(count);
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(fd) => fds.push(fd),
                Err(_) => warn!("a vCPU thread panicked"),
            }
        }
        if count > 0 {
            info!(count, "vCPUs stopped");
        }
        self.shared.stop.store(false, Ordering::Release);
        fds
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Vcpus {
    fn drop(&mut self) {
        drop(self.stop());
    }
}

fn spawn(
    mut vcpu: VcpuFd,
    id: u8,
    host_cpu: Option<usize>,
    shared: Arc<VcpuShared>,
) -> Result<JoinHandle<VcpuFd>, VcpuError> {
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
            if let Err(e) = crate::sandbox::enter(crate::seccomp::ThreadClass::Vcpu) {
                shared.exit.request(ExitReason::VcpuFailed {
                    vcpu: id,
                    error: format!("cannot sandbox the vCPU thread: {}", error_chain(&e)),
                });
                return vcpu;
            }
            // A kick that stopped an earlier run may have left it set.
            vcpu.set_kvm_immediate_exit(0);
            IMMEDIATE_EXIT.with(|c| c.set(&mut vcpu.get_kvm_run().immediate_exit));
            let reason = run_loop(&mut vcpu, id, &shared);
            IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
            debug!(reason = ?reason, "vCPU thread exits");
            if let Some(r) = reason {
                shared.exit.request(r);
            }
            vcpu
        })
        .map_err(VcpuError::Spawn)
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// What the run loop does after one KVM_RUN.
enum Step {
    Continue,
    Stop(ExitReason),
    /// KVM_EXIT_INTERNAL_ERROR: the details are in kvm_run.
    InternalError,
    /// A kick (EINTR): clear immediate_exit and check the stop flag.
    Kicked,
}

fn run_loop(vcpu: &mut VcpuFd, id: u8, shared: &VcpuShared) -> Option<ExitReason> {
    let mut first = true;
    let mut unknown_exits = 0u64;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return None;
        }
        if shared.park.should_park() {
            shared.park.park(id, &shared.stop);
            continue;
        }
        if first {
            info!(
                since_start_us = shared.start.elapsed().as_micros() as u64,
                "first KVM_RUN"
            );
            first = false;
        }
        let step = match vcpu.run() {
            Ok(exit) => {
                shared.exits.count(id, &exit);
                on_exit(exit, id, shared, &mut unknown_exits)
            }
            Err(e) => on_error(&e, id),
        };
        match step {
            Step::Continue => {}
            Step::Stop(reason) => return Some(reason),
            Step::InternalError => return Some(internal_error(vcpu, id)),
            // The loop's stop check decides; clearing the flag the kick
            // handler set lets the next KVM_RUN enter the guest.
            Step::Kicked => vcpu.set_kvm_immediate_exit(0),
        }
    }
}

/// Dispatches port and MMIO exits to the buses; other exits end the run.
fn on_exit(exit: VcpuExit<'_>, id: u8, shared: &VcpuShared, unknown_exits: &mut u64) -> Step {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !shared.pio.read(u64::from(port), data) {
                data.fill(0xff);
            }
        }
        VcpuExit::IoOut(port, data) => {
            shared.pio.write(u64::from(port), data);
        }
        VcpuExit::MmioRead(addr, data) => {
            if !shared.mmio.read(addr, data) {
                data.fill(0xff);
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            shared.mmio.write(addr, data);
        }
        VcpuExit::Hlt => {
            // With the in-kernel LAPIC, HLT blocks in KVM; reaching here
            // means interrupts are off for good.
            debug!("HLT exit");
            return Step::Stop(ExitReason::VcpuFailed {
                vcpu: id,
                error: "the guest halted with interrupts disabled".into(),
            });
        }
        VcpuExit::Shutdown => return Step::Stop(ExitReason::TripleFault { vcpu: id }),
        VcpuExit::SystemEvent(kind, _) => {
            info!(kind, "system event");
            return Step::Stop(ExitReason::GuestReset);
        }
        VcpuExit::InternalError => return Step::InternalError,
        VcpuExit::FailEntry(reason, _cpu) => {
            return Step::Stop(ExitReason::FailEntry { vcpu: id, reason })
        }
        VcpuExit::Intr => {}
        other => {
            *unknown_exits += 1;
            if devices::should_log(*unknown_exits) {
                warn!(exit = ?other, count = *unknown_exits, "unhandled vCPU exit");
            }
            if *unknown_exits > 1000 {
                return Step::Stop(ExitReason::VcpuFailed {
                    vcpu: id,
                    error: format!("too many unhandled exits, last {other:?}"),
                });
            }
        }
    }
    Step::Continue
}

fn on_error(e: &kvm_ioctls::Error, id: u8) -> Step {
    match e.errno() {
        libc::EINTR => Step::Kicked,
        // Seen once per SMP boot on this host.
        libc::EAGAIN => Step::Continue,
        _ => Step::Stop(ExitReason::VcpuFailed {
            vcpu: id,
            error: format!("KVM_RUN failed: {e}"),
        }),
    }
}

fn internal_error(vcpu: &mut VcpuFd, id: u8) -> ExitReason {
    let run = vcpu.get_kvm_run();
    // SAFETY: KVM filled the `internal` member of the exit union, since
    // exit_reason is KVM_EXIT_INTERNAL_ERROR.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let n = (internal.ndata as usize).min(internal.data.len());
    ExitReason::InternalError {
        vcpu: id,
        suberror: internal.suberror,
        data: internal.data[..n].to_vec(),
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
