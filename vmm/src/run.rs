//! One VM run, from a resolved plan to the reason it ended.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::thread::JoinHandleExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use vmm_sys_util::terminal::Terminal;

use crate::console::{ConsoleOutput, ConsoleWatch};
use crate::error::VmmError;
use crate::exit::{ExitReason, ExitSignal};
use crate::loader::{self, BootProtocol};
use crate::nic::PciSetup;
use crate::plan::VmPlan;
use crate::signals::StopSignals;
use crate::vcpu::{self, VcpuShared};
use crate::vm::Vm;

/// Where the guest console goes.
#[derive(Debug, Clone, Default)]
pub enum ConsoleTarget {
    #[default]
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub console: ConsoleTarget,
    pub boot_protocol: BootProtocol,
    /// Pin vCPU i (and NIC queue pair i's worker) to the i-th allowed host
    /// CPU; otherwise both float over the process's CPU set.
    pub pin_vcpus: bool,
    /// Tap descriptors handed over by the parent process, per interface
    /// name: one per queue pair, used instead of opening the tap by name.
    pub tap_fds: Vec<(String, Vec<i32>)>,
    /// Downward-API directory (network-status) for SR-IOV NICs.
    pub pod_info: std::path::PathBuf,
    /// When the process started, for the boot-time log lines.
    pub start: Option<Instant>,
    /// Devices a program embedding the vmm library adds beside the spec's
    /// NICs (the petrel CLI adds none).
    pub extra_pci: Vec<Arc<dyn ExtraPci>>,
}

/// A PCI device added by the embedding program, after the spec's NICs and
/// before the guest starts (e.g. with [`PciSetup::attach_passthrough`]).
pub trait ExtraPci: Send + Sync + std::fmt::Debug {
    fn attach(&self, vm: &mut Vm, pci: &mut PciSetup) -> Result<(), crate::nic::NicError>;
}

/// Puts a terminal stdin into raw mode for the guest console and restores it
/// on every exit path.
struct RawStdin;

impl RawStdin {
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        match stdin.lock().set_raw_mode() {
            Ok(()) => Some(RawStdin),
            Err(e) => {
                warn!(error = %e, "cannot put the terminal in raw mode; console input disabled");
                None
            }
        }
    }
}

impl Drop for RawStdin {
    fn drop(&mut self) {
        if let Err(e) = std::io::stdin().lock().set_canon_mode() {
            warn!(error = %e, "cannot restore the terminal mode");
        }
    }
}

fn open_console(target: &ConsoleTarget) -> Result<Box<dyn Write + Send>, VmmError> {
    Ok(match target {
        ConsoleTarget::Stdout => Box::new(std::io::stdout()),
        ConsoleTarget::File(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| VmmError::Console {
                    path: path.clone(),
                    source,
                })?,
        ),
    })
}

/// Boots the plan's VM and blocks until it ends.
pub fn run(plan: &VmPlan, opts: &RunOptions) -> Result<ExitReason, VmmError> {
    let start = opts.start.unwrap_or_else(Instant::now);
    // Before any thread exists, so every thread inherits the blocked mask.
    let signals =
        StopSignals::block_and_open().map_err(|e| VmmError::Vm(crate::vm::VmError::EventFd(e)))?;
    vcpu::install_kick_handler().map_err(|source| VmmError::Vcpu { id: 0, source })?;

    let kernel = plan.boot.kernel.clone().ok_or(VmmError::NoKernel)?;
    for (what, path) in [
        ("kernel", Some(&kernel)),
        ("initramfs", plan.boot.initrd.as_ref()),
    ] {
        if let Some(p) = path {
            std::fs::metadata(p).map_err(|source| VmmError::OpenFile {
                what,
                path: p.clone(),
                source,
            })?;
        }
    }

    let watch = ConsoleWatch::default();
    let console = ConsoleOutput::new(open_console(&opts.console)?, watch.clone());
    let exit =
        Arc::new(ExitSignal::new().map_err(|e| VmmError::Vm(crate::vm::VmError::EventFd(e)))?);
    let mut vm = Vm::new(
        plan.memory_bytes,
        plan.vcpus,
        Box::new(console),
        exit.eventfd(),
    )?;
    let allowed = if opts.pin_vcpus {
        crate::affinity::allowed_cpus().unwrap_or_default()
    } else {
        Vec::new()
    };
    let vcpu_cpus: Vec<usize> = (0..usize::from(plan.vcpus))
        .filter_map(|i| crate::affinity::cpu_for_vcpu(&allowed, i))
        .collect();
    let mut pci = PciSetup::new(&mut vm.pio).map_err(|e| VmmError::Vm(e.into()))?;
    crate::nic::attach_nics(
        &mut vm,
        &mut pci,
        &plan.name,
        &plan.nics,
        &vcpu_cpus,
        &opts.tap_fds,
        &opts.pod_info,
    )?;
    for dev in &opts.extra_pci {
        dev.attach(&mut vm, &mut pci)?;
    }
    arch::setup_mptable(&vm.mem, plan.vcpus, &pci.mp_intx).map_err(VmmError::MpTable)?;
    let entry = loader::load(
        &vm.mem,
        vm.mem_bytes,
        &kernel,
        plan.boot.initrd.as_deref(),
        &plan.boot.cmdline,
        opts.boot_protocol,
    )?;
    info!(
        vcpus = plan.vcpus,
        memory_mib = plan.memory_bytes >> 20,
        entry = format_args!("{:#x}", entry.entry.0),
        mode = ?entry.mode,
        "VM set up"
    );

    let shared = Arc::new(VcpuShared {
        pio: vm.pio.clone(),
        mmio: vm.mmio.clone(),
        stop: Default::default(),
        exit: exit.clone(),
        start,
    });
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut setup = Ok(());
    for id in 0..plan.vcpus {
        let res = vm
            .fd
            .create_vcpu(u64::from(id))
            .map_err(vcpu::VcpuError::CreateVcpu)
            .and_then(|fd| {
                let boot = (id == 0).then_some(&entry);
                vcpu::configure(&fd, &vm.mem, id, plan.vcpus, &vm.supported_cpuid, boot)?;
                Ok(fd)
            })
            .and_then(|fd| {
                let cpu = vcpu_cpus.get(usize::from(id)).copied();
                vcpu::spawn(fd, id, cpu, shared.clone())
            });
        match res {
            Ok(t) => threads.push(t),
            Err(source) => {
                setup = Err(VmmError::Vcpu { id, source });
                break;
            }
        }
    }

    let raw = RawStdin::enter();
    let outcome = match setup {
        Ok(()) => crate::control::run(
            exit.clone(),
            signals,
            raw.as_ref().map(|_| vm.serial.clone()),
            pci.intx.clone(),
            std::mem::take(&mut pci.pod),
        )
        .map_err(VmmError::from),
        Err(e) => Err(e),
    };
    stop_vcpus(&shared, threads);
    drop(raw);
    // Devices stop their workers (and log their counters) before the VM's
    // memory goes away.
    drop(shared);
    drop(pci);
    drop(vm);
    let _ = std::io::stdout().flush();

    let reason = outcome?;
    Ok(match (reason, watch.panic_line()) {
        (ExitReason::GuestReset, Some(line)) => ExitReason::GuestPanic(line),
        (r, _) => r,
    })
}

/// Kicks every vCPU out of KVM_RUN until its thread ends. A kick can land
/// just before a thread enters KVM_RUN, so it is repeated.
fn stop_vcpus(shared: &VcpuShared, threads: Vec<JoinHandle<()>>) {
    shared.stop.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running: Vec<&JoinHandle<()>> = threads.iter().filter(|t| !t.is_finished()).collect();
        if running.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            warn!(
                count = running.len(),
                "vCPU threads did not stop; leaving them"
            );
            return;
        }
        for t in running {
            // SAFETY: the pthread_t belongs to a thread we spawned and have
            // not joined, so it is valid; the kick signal has a no-op handler.
            unsafe { libc::pthread_kill(t.as_pthread_t(), vcpu::kick_signal()) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for t in threads {
        if t.join().is_err() {
            warn!("a vCPU thread panicked");
        }
    }
}
