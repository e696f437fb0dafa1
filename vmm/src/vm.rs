//! The KVM VM: in-kernel irqchip and PIT, guest RAM, and the legacy devices
//! on the port-I/O bus. Field order matters: vCPU threads are joined by the
//! runner before this is dropped, and `fd` drops before `mem` so no memory
//! slot outlives its mapping.

use std::sync::{Arc, Mutex};

use devices::legacy::{
    Cmos, EventFdTrigger, Serial, CMOS_BASE, CMOS_LEN, I8042, I8042_BASE, I8042_LEN,
    SERIAL_COM1_BASE, SERIAL_COM1_IRQ, SERIAL_PORT_LEN,
};
use devices::Bus;
use kvm_bindings::{kvm_pit_config, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::irq::{GsiRouting, IrqError};
use crate::memory::{self, MemoryError};

/// Where KVM keeps the TSS for real-mode emulation: three pages just below
/// the BIOS area, inside the MMIO gap.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm (petrel needs KVM and root or the kvm group)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    #[error("KVM API version {0} is not supported (need 12)")]
    ApiVersion(i32),
    #[error("KVM lacks the {0} capability")]
    MissingCap(&'static str),
    #[error("KVM_CREATE_VM failed")]
    CreateVm(#[source] kvm_ioctls::Error),
    #[error("{op} failed")]
    Kvm {
        op: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("guest memory")]
    Memory(#[from] MemoryError),
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
    #[error("cannot place a device on the bus")]
    Bus(#[from] devices::BusError),
    #[error("interrupt routing")]
    Irq(#[from] IrqError),
    #[error("cannot start the irqchip set-up thread")]
    Thread(#[source] std::io::Error),
    #[error("the irqchip set-up thread panicked")]
    IrqchipPanicked,
    #[error("{requested} vCPUs requested; this KVM allows at most {max}")]
    TooManyVcpus { requested: u8, max: usize },
}

/// The in-kernel PIC and IOAPIC, then the PIT: the guest's boot clock
/// event here (it cannot calibrate the TSC, and without ACPI there is no
/// HPET or PM timer).
fn create_irqchip_and_pit(fd: &VmFd) -> Result<(), VmError> {
    fd.create_irq_chip().map_err(kvm_op("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    fd.create_pit2(pit).map_err(kvm_op("KVM_CREATE_PIT2"))
}

fn kvm_op(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { op, source }
}

pub struct Vm {
    pub fd: Arc<VmFd>,
    pub irq: Arc<GsiRouting>,
    pub kvm: Kvm,
    pub mem: GuestMemoryMmap,
    pub mem_bytes: u64,
    pub pio: Bus,
    pub mmio: Bus,
    pub serial: Arc<Mutex<Serial>>,
    /// Kept for snapshots (its RAM and index register move with the VM).
    pub cmos: Arc<Mutex<Cmos>>,
    pub supported_cpuid: CpuId,
}

/// Opens /dev/kvm and checks the API version, the capabilities petrel
/// relies on and that it can run `num_vcpus` vCPUs.
fn open_kvm(num_vcpus: u8) -> Result<Kvm, VmError> {
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    let api = kvm.get_api_version();
    if api != 12 {
        return Err(VmError::ApiVersion(api));
    }
    for (cap, name) in [
        (kvm_ioctls::Cap::Irqchip, "IRQCHIP"),
        (kvm_ioctls::Cap::Pit2, "PIT2"),
        (kvm_ioctls::Cap::Irqfd, "IRQFD"),
        (kvm_ioctls::Cap::Ioeventfd, "IOEVENTFD"),
        (kvm_ioctls::Cap::ImmediateExit, "IMMEDIATE_EXIT"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(VmError::MissingCap(name));
        }
    }
    let max = kvm.get_max_vcpus();
    if usize::from(num_vcpus) > max {
        return Err(VmError::TooManyVcpus {
            requested: num_vcpus,
            max,
        });
    }
    Ok(kvm)
}

impl Vm {
    /// Creates the VM over `mem` (`mem_bytes` of RAM, from
    /// [`memory::create_guest_memory`]) and the legacy devices. The i8042
    /// reset line writes `reset_evt`; console bytes go to `console`.
    pub fn new(
        mem: GuestMemoryMmap,
        mem_bytes: u64,
        num_vcpus: u8,
        console: Box<dyn std::io::Write + Send>,
        reset_evt: &EventFd,
    ) -> Result<Self, VmError> {
        let kvm = open_kvm(num_vcpus)?;
        let supported_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_op("KVM_GET_SUPPORTED_CPUID"))?;
        let fd = kvm.create_vm().map_err(VmError::CreateVm)?;
        fd.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(kvm_op("KVM_SET_TSS_ADDR"))?;
        let fd = Arc::new(fd);
        // KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2 are the slowest steps here
        // (1–5 ms each on a busy host: SRCU grace periods, and the PIT's
        // kernel thread): they run on an `irqchip` thread, joined before
        // this returns (so before any seccomp filter), while the memory
        // slot is set.
        std::thread::scope(|s| {
            let chips = std::thread::Builder::new()
                .name("irqchip".into())
                .spawn_scoped(s, || create_irqchip_and_pit(&fd))
                .map_err(VmError::Thread)?;
            let slots = memory::register_with_kvm(&fd, &mem);
            chips.join().map_err(|_| VmError::IrqchipPanicked)??;
            slots.map_err(VmError::Memory)
        })?;
        let max_routes = kvm.check_extension_int(kvm_ioctls::Cap::IrqRouting).max(64) as usize;
        let irq = Arc::new(GsiRouting::new(fd.clone(), max_routes)?);

        let serial_evt = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VmError::EventFd)?;
        fd.register_irqfd(&serial_evt, SERIAL_COM1_IRQ)
            .map_err(kvm_op("KVM_IRQFD (COM1)"))?;
        let serial = Arc::new(Mutex::new(Serial::new(
            EventFdTrigger::new(serial_evt),
            console,
        )));
        let reset = reset_evt.try_clone().map_err(VmError::EventFd)?;
        let i8042 = Arc::new(Mutex::new(I8042::new(EventFdTrigger::new(reset))));

        let mut pio = Bus::new();
        pio.insert(serial.clone(), SERIAL_COM1_BASE, SERIAL_PORT_LEN)?;
        pio.insert(i8042, I8042_BASE, I8042_LEN)?;
        let cmos = Arc::new(Mutex::new(Cmos::new()));
        pio.insert(cmos.clone(), CMOS_BASE, CMOS_LEN)?;

        Ok(Self {
            fd,
            irq,
            kvm,
            mem,
            mem_bytes,
            pio,
            mmio: Bus::new(),
            serial,
            cmos,
            supported_cpuid,
        })
    }
}
