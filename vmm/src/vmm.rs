//! The `Vmm`: one VM built from its two plans (vmm-reference's
//! `TryFrom<Config> for Vmm` + `run()`). Building it sets up everything —
//! KVM VM, guest RAM, legacy devices, the pod networks, the NICs on the PCI
//! bus, the MP table, the kernel and configured vCPUs — without running the
//! guest; `run` starts the vCPUs and serves the control loop until the VM
//! ends.
//!
//! Teardown order is the field order of [`Vmm`], so it holds on every exit
//! path, a failed build included (its locals drop in the reverse order they
//! were made): the vCPUs stop first, then the devices (their queue workers
//! join) and the VM with its memory, and only then are the pod networks —
//! tap, bridge, nftables table, DHCP servers — torn down.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuFd;
use tracing::info;
use vm_memory::GuestMemoryMmap;

use crate::api::{ApiInputs, ApiOptions, ApiSetup};
use crate::boot::{GuestImage, Preload};
use crate::console::{self, ConsoleOutput, ConsoleTarget, ConsoleWatch, RawStdin};
use crate::console_socket::ConsoleSocket;
use crate::console_writer::ConsoleWriter;
use crate::control::{Control, GracefulStop};
use crate::error::VmmError;
use crate::exit::{ExitReason, ExitSignal};
use crate::host::HostPlan;
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::loader::{BootEntry, BootProtocol};
use crate::migration::JobSlot;
use crate::pci_setup::PciSetup;
use crate::plan::VmPlan;
use crate::reset::{OnGuestReset, PowerOnState};
use crate::sandbox;
use crate::seccomp::{SeccompMode, ThreadClass};
use crate::signals::StopSignals;
use crate::vcpu::{self, VcpuShared, Vcpus};
use crate::vm::Vm;

mod state_job;

/// How to run, beyond what the plans say.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub console: ConsoleTarget,
    pub boot_protocol: BootProtocol,
    /// Pin vCPU i (and NIC queue pair i's worker) to the i-th allowed host
    /// CPU; otherwise both float over the process's CPU set.
    pub pin_vcpus: bool,
    /// When the process started, for the boot-time log lines.
    pub start: Option<Instant>,
    /// Devices a program embedding the vmm library adds beside the spec's
    /// NICs (the petrel CLI adds none).
    pub extra_pci: Vec<Arc<dyn ExtraPci>>,
    /// The control API and metrics listeners.
    pub api: ApiOptions,
    /// What a guest reboot does: end the run (default) or boot again.
    pub on_guest_reset: OnGuestReset,
    /// The threads' seccomp filters (`--seccomp`, default enforce).
    pub seccomp: SeccompMode,
    /// Cap on a `--console FILE`'s growth (`None`: no cap).
    pub console_file_cap: Option<u64>,
}

/// A PCI device added by the embedding program, after the spec's NICs and
/// before the guest starts (e.g. with [`crate::attach::attach_passthrough`]).
pub trait ExtraPci: Send + Sync + std::fmt::Debug {
    fn attach(&self, vm: &mut Vm, pci: &mut PciSetup) -> Result<(), crate::attach::AttachError>;
}

/// Everything a [`Vmm`] is built from.
#[derive(Debug, Clone)]
pub struct VmmConfig {
    pub plan: VmPlan,
    pub host: HostPlan,
    pub opts: RunOptions,
}

/// A VM, built and ready to run. Fields drop in order: see the module docs.
pub struct Vmm {
    /// The vCPU threads, once running; stopped and joined first.
    vcpus: Vcpus,
    /// Configured vCPUs waiting for [`Vmm::run`].
    vcpu_fds: Vec<VcpuFd>,
    /// Host CPU of each vCPU when pinned.
    vcpu_cpus: Vec<usize>,
    /// The PCI bus with the NICs.
    pci: PciSetup,
    /// KVM VM, guest memory, the buses the devices are mapped on.
    vm: Vm,
    /// The console writer thread: after the serial port (in `vm`), so the
    /// guest's last output is written before it stops.
    _console_writer: ConsoleWriter,
    /// The control loop, which owns the pod networks' services: dropped
    /// last, once nothing uses their taps.
    control: Control,
    watch: ConsoleWatch,
    /// The power-on state and boot image a VM reset writes back.
    power_on: PowerOnState,
    image: GuestImage,
    on_guest_reset: OnGuestReset,
    lifecycle: Lifecycle,
    /// Snapshot and migration requests from the API ([`crate::migration`]).
    jobs: JobSlot,
    /// `--incoming`: wait for a restore or a migration instead of booting.
    incoming: bool,
    name: String,
    num_vcpus: usize,
    /// NIC workers write guest memory behind KVM's dirty log.
    has_nics: bool,
    /// Set once a guest runs (SIGTERM presses its power button then).
    booted: Arc<std::sync::atomic::AtomicBool>,
    /// The API listeners: they answer until the very end.
    api: ApiSetup,
}

impl TryFrom<VmmConfig> for Vmm {
    type Error = VmmError;

    fn try_from(cfg: VmmConfig) -> Result<Self, VmmError> {
        let VmmConfig { plan, host, opts } = cfg;
        let start = opts.start.unwrap_or_else(Instant::now);
        let (signals, filters) = prepare_process(&opts)?;
        let kernel = boot_files(&plan)?;
        // Overlaps the KVM set-up; a failed build joins it and undoes it.
        let pod_setup = crate::attach::PodSetup::start(&plan, &host)?;
        let mut phases = StartPhases::new(start);

        let watch = ConsoleWatch::default();
        let (out, console_socket, console_writer) = open_console(&opts)?;
        let exit = Arc::new(ExitSignal::new().map_err(VmmError::ExitEvent)?);
        crate::panic_hook::install(&exit);
        // Made before the VM, so a failed build drops it after the devices.
        let mut pod = crate::attach::NicServices::default();
        let (mem, preload) = preload(&plan, &kernel, opts.boot_protocol)?;
        let mut vm = Vm::new(
            mem,
            plan.memory_bytes,
            plan.vcpus,
            Box::new(ConsoleOutput::new(out, watch.clone())),
            exit.eventfd(),
        )?;
        phases.mark("vm_memory");
        let vcpu_cpus = vcpu_cpus(&plan, opts.pin_vcpus);
        let (mut pci, gate) = pci_setup(&mut vm)?;
        crate::attach::attach_nics(
            &mut vm, &mut pci, &mut pod, pod_setup, &plan, &host, &vcpu_cpus,
        )?;
        phases.mark("nics");
        for dev in &opts.extra_pci {
            dev.attach(&mut vm, &mut pci)?;
        }
        let button = crate::acpi::add_devices(&mut vm, &exit)?;
        let image = guest_image(&plan, kernel, opts.boot_protocol, &pci);
        let (vcpu_fds, power_on) = vcpus_and_kernel(&vm, &plan, preload, &image, &mut phases)?;
        let intx = pci.intx.clone();
        let shared = vcpu_shared(&vm, &exit, start, plan.vcpus);
        let (stop, booted) = graceful_stop(&plan, &button, opts.api.incoming)?;
        let mut control = Control::new(exit.clone(), signals, stop, intx, pod)?;
        if let Some(socket) = console_socket {
            watch_console_socket(&mut control, socket, &vm);
        }
        let jobs = state_jobs(&plan, &opts);
        let api = ApiInputs {
            plan: &plan,
            host: &host,
            pci: &pci,
            exits: shared.exits.clone(),
            gate,
            exit: exit.clone(),
            jobs: jobs.clone(),
        };
        let api = ApiSetup::start(&opts.api, api)?;
        phases.finish("control_api");
        filters.wait();
        Ok(Vmm {
            vcpus: Vcpus::new(shared),
            vcpu_fds,
            vcpu_cpus,
            pci,
            vm,
            _console_writer: console_writer,
            lifecycle: Lifecycle::new(exit, button),
            control,
            watch,
            power_on,
            image,
            on_guest_reset: opts.on_guest_reset,
            jobs: jobs.slot,
            incoming: opts.api.incoming,
            name: plan.name.clone(),
            num_vcpus: usize::from(plan.vcpus),
            has_nics: !plan.nics.is_empty(),
            booted,
            api,
        })
    }
}

/// What the process sets before guest RAM and before any thread exists:
/// hardening (no core dump may ever hold guest RAM), the blocked stop
/// signals every thread inherits, the vCPU kick handler; and the seccomp
/// programs start compiling.
fn prepare_process(
    opts: &RunOptions,
) -> Result<(StopSignals, crate::seccomp::Precompile), VmmError> {
    sandbox::harden_process(opts.seccomp)?;
    let signals = StopSignals::block_and_open().map_err(VmmError::Signals)?;
    vcpu::install_kick_handler().map_err(|source| VmmError::Vcpu { id: 0, source })?;
    Ok((signals, crate::seccomp::Precompile::start(opts.seccomp)))
}

/// Where start-up time goes, logged once the VM is built ("start-up
/// phases", microseconds since the process started, each phase's own
/// time); the vCPUs log "first KVM_RUN" with `since_start_us` later.
struct StartPhases {
    start: Instant,
    last: Duration,
    marks: Vec<(&'static str, u64)>,
}

impl StartPhases {
    fn new(start: Instant) -> Self {
        let last = start.elapsed();
        Self {
            start,
            last,
            marks: vec![("process_and_spec", last.as_micros() as u64)],
        }
    }

    fn mark(&mut self, phase: &'static str) {
        let now = self.start.elapsed();
        self.marks
            .push((phase, (now - self.last).as_micros() as u64));
        self.last = now;
    }

    /// Marks the last phase and logs them all.
    fn finish(&mut self, phase: &'static str) {
        self.mark(phase);
        self.log();
    }

    fn log(&self) {
        let phases: Vec<String> = self
            .marks
            .iter()
            .map(|(p, us)| format!("{p}={us}"))
            .collect();
        info!(
            since_start_us = self.last.as_micros() as u64,
            phases_us = %phases.join(" "),
            "start-up phases"
        );
    }
}

/// The guest console per `--console`: its output, socket and writer.
type OpenedConsole = (
    Box<dyn Write + Send>,
    Option<crate::console_socket::ConsoleSocket>,
    ConsoleWriter,
);

fn open_console(opts: &RunOptions) -> Result<OpenedConsole, VmmError> {
    let console::Opened {
        out,
        socket,
        writer,
    } = console::open(&opts.console, opts.console_file_cap)
        .map_err(|(path, source)| VmmError::Console { path, source })?;
    Ok((out, socket, writer))
}

/// How the API hands snapshots and migrations to the run loop.
fn state_jobs(plan: &VmPlan, opts: &RunOptions) -> crate::api::StateJobs {
    crate::api::StateJobs {
        slot: JobSlot::default(),
        refusal: crate::migration::refusal(plan, opts.extra_pci.len()),
        incoming: opts.api.incoming,
    }
}

/// What every vCPU thread shares with the control thread.
fn vcpu_shared(vm: &Vm, exit: &Arc<ExitSignal>, start: Instant, vcpus: u8) -> Arc<VcpuShared> {
    Arc::new(VcpuShared {
        pio: vm.pio.clone(),
        mmio: vm.mmio.clone(),
        stop: Default::default(),
        exit: exit.clone(),
        start,
        park: Default::default(),
        exits: Arc::new(crate::metrics::VcpuExits::new(vcpus)),
    })
}

/// The boot image a start (and every VM reset) writes into guest memory.
fn guest_image(
    plan: &VmPlan,
    kernel: PathBuf,
    protocol: BootProtocol,
    pci: &PciSetup,
) -> GuestImage {
    GuestImage {
        kernel,
        initrd: plan.boot.initrd.clone(),
        cmdline: plan.boot.cmdline.clone(),
        protocol,
        vcpus: plan.vcpus,
        pci_intx: pci.mp_intx.clone(),
    }
}

/// The kernel to boot; it and the initramfs must be readable.
fn boot_files(plan: &VmPlan) -> Result<PathBuf, VmmError> {
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
    Ok(kernel)
}

/// The PCI host bridge, with the gate that pauses device workers.
fn pci_setup(vm: &mut Vm) -> Result<(PciSetup, devices::PauseGate), VmmError> {
    let mut pci = PciSetup::new(&mut vm.pio).map_err(VmmError::Pci)?;
    let gate = devices::PauseGate::new().map_err(VmmError::PauseGate)?;
    pci.pause = Some(gate.clone());
    Ok((pci, gate))
}

/// `--console socket`: the control loop serves it, wired to COM1.
fn watch_console_socket(control: &mut Control, mut socket: ConsoleSocket, vm: &Vm) {
    socket.set_serial(vm.serial.clone());
    control.watch_console_socket(socket);
}

/// SIGTERM's power-button press and grace period, and the flag saying a
/// guest runs (not yet for an incoming VM).
fn graceful_stop(
    plan: &VmPlan,
    button: &Arc<devices::acpi::PowerButton>,
    incoming: bool,
) -> Result<(GracefulStop, Arc<std::sync::atomic::AtomicBool>), VmmError> {
    let grace = Duration::from_secs(plan.termination_grace_seconds);
    let stop = GracefulStop::new(button.clone(), grace).map_err(VmmError::Signals)?;
    let booted = stop.booted();
    booted.store(!incoming, std::sync::atomic::Ordering::Release);
    Ok((stop, booted))
}

/// The vCPUs (and their power-on state), then, once the loader thread is
/// done, the boot structures and vCPU 0's entry.
fn vcpus_and_kernel(
    vm: &Vm,
    plan: &VmPlan,
    preload: Preload,
    image: &GuestImage,
    phases: &mut StartPhases,
) -> Result<(Vec<VcpuFd>, PowerOnState), VmmError> {
    let mut power_on = PowerOnState::capture_vm(&vm.fd)?;
    let vcpu_fds = create_vcpus(vm, plan, &mut power_on)?;
    phases.mark("vcpus");
    // What is left of the kernel load once the VM is built.
    let entry = preload.finish(image, vm)?;
    set_boot_entry(vm, &vcpu_fds, &entry)?;
    phases.mark("kernel_load");
    info!(
        vcpus = plan.vcpus,
        memory_mib = plan.memory_bytes >> 20,
        entry = format_args!("{:#x}", entry.entry.0),
        mode = ?entry.mode,
        "VM set up"
    );
    Ok((vcpu_fds, power_on))
}

/// Guest RAM, with the kernel and initramfs already being read into it
/// while the caller creates the VM around it.
fn preload(
    plan: &VmPlan,
    kernel: &std::path::Path,
    protocol: BootProtocol,
) -> Result<(GuestMemoryMmap, Preload), VmmError> {
    let mem = crate::memory::create_guest_memory(plan.memory_bytes)
        .map_err(crate::vm::VmError::Memory)?;
    let preload = Preload::start(
        mem.clone(),
        plan.memory_bytes,
        kernel.to_path_buf(),
        plan.boot.initrd.clone(),
        protocol,
    )?;
    Ok((mem, preload))
}

/// vCPU 0's entry registers, once the kernel is in place.
fn set_boot_entry(vm: &Vm, vcpus: &[VcpuFd], entry: &BootEntry) -> Result<(), VmmError> {
    match vcpus.first() {
        Some(boot) => {
            vcpu::set_entry(boot, &vm.mem, entry).map_err(|source| VmmError::Vcpu { id: 0, source })
        }
        None => Ok(()),
    }
}

/// Host CPU of vCPU i, when vCPUs are pinned.
fn vcpu_cpus(plan: &VmPlan, pin: bool) -> Vec<usize> {
    let allowed = if pin {
        crate::affinity::allowed_cpus().unwrap_or_default()
    } else {
        Vec::new()
    };
    (0..usize::from(plan.vcpus))
        .filter_map(|i| crate::affinity::cpu_for_vcpu(&allowed, i))
        .collect()
}

fn create_vcpus(
    vm: &Vm,
    plan: &VmPlan,
    power_on: &mut PowerOnState,
) -> Result<Vec<VcpuFd>, VmmError> {
    let mut fds = Vec::with_capacity(usize::from(plan.vcpus));
    for id in 0..plan.vcpus {
        let err = |source| VmmError::Vcpu { id, source };
        let fd = vm
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|e| err(vcpu::VcpuError::CreateVcpu(e)))?;
        power_on.capture_vcpu(&fd)?;
        vcpu::configure(&fd, &vm.mem, id, plan.vcpus, &vm.supported_cpuid, None).map_err(err)?;
        fds.push(fd);
    }
    Ok(fds)
}

impl Vmm {
    /// Runs the guest until it resets or powers off, a vCPU fails, or a
    /// stop signal arrives; then tears everything down, in order.
    pub fn run(mut self) -> Result<ExitReason, VmmError> {
        self.api
            .serve(&mut self.control, &self.vcpus, self.lifecycle.clone());
        let raw = RawStdin::enter();
        if raw.is_some() {
            self.control.watch_stdin(self.vm.serial.clone());
        }
        // Set up: from here on the control thread is confined, and the
        // vCPU threads it starts inherit its filter under their own.
        sandbox::cloexec_inherited();
        sandbox::enter(ThreadClass::Control)?;
        // An incoming VM boots only through a restore or a migration.
        let mut start = !self.incoming;
        if self.incoming {
            info!("waiting for vm.receive-migration or vm.restore");
        }
        let outcome = loop {
            let started = if start { self.start_vcpus() } else { Ok(()) };
            start = true;
            let outcome = started.and_then(|()| self.control.run().map_err(VmmError::from));
            if let Ok(ExitReason::StateJob) = outcome {
                match self.state_job() {
                    Ok(true) => break Ok(ExitReason::MigratedOut),
                    Ok(false) => {
                        // The job left the vCPUs as they must run on.
                        self.control.rearm();
                        start = false;
                        continue;
                    }
                    Err(e) => break Err(e),
                }
            }
            let fds = self.vcpus.stop();
            match outcome {
                Ok(reason) if self.restarts_on(&reason) => {
                    info!(%reason, "resetting the VM");
                    if let Err(e) = self.power_on.reset(&self.vm, &self.pci, &fds, &self.image) {
                        break Err(e);
                    }
                    self.vcpu_fds = fds;
                    self.control.rearm();
                }
                other => break other,
            }
        };
        drop(raw);
        let panic_line = self.watch.panic_line();
        // Devices (their workers), the VM, then the pod networks.
        drop(self);
        let _ = std::io::stdout().flush();
        Ok(match (outcome?, panic_line) {
            (ExitReason::GuestReset, Some(line)) => ExitReason::GuestPanic(line),
            (r, _) => r,
        })
    }

    /// Whether the run goes on after `reason` with a VM reset.
    fn restarts_on(&self, reason: &ExitReason) -> bool {
        match reason {
            ExitReason::RebootRequested => true,
            // A panic's reset ends the run (exit 1), whatever the policy.
            ExitReason::GuestReset => {
                self.on_guest_reset == OnGuestReset::Restart && self.watch.panic_line().is_none()
            }
            _ => false,
        }
    }

    /// A handle for the power button and reboot, usable from any thread
    /// while [`Vmm::run`] runs (the control API holds one).
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.clone()
    }

    /// Presses the ACPI power button (see [`Lifecycle::power_button`]).
    pub fn power_button(&self) -> Result<(), LifecycleError> {
        self.lifecycle.power_button()
    }

    /// Resets the VM in place and boots again (see [`Lifecycle::reboot`]).
    pub fn reboot(&self) {
        self.lifecycle.reboot();
    }

    /// The PCI side: bus, devices, INTx lines.
    pub fn pci(&self) -> &PciSetup {
        &self.pci
    }

    fn start_vcpus(&mut self) -> Result<(), VmmError> {
        for (id, fd) in (0u8..).zip(std::mem::take(&mut self.vcpu_fds)) {
            let cpu = self.vcpu_cpus.get(usize::from(id)).copied();
            self.vcpus
                .start(fd, id, cpu)
                .map_err(|source| VmmError::Vcpu { id, source })?;
        }
        Ok(())
    }
}
