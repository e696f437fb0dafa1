//! SR-IOV VFs (any PCI function bound to vfio-pci) passed through to the
//! guest: the host side of `devices::vfio`. One VFIO container per VM,
//! shared by every passed-through device, with all guest RAM DMA-mapped;
//! the KVM VFIO pseudo-device so KVM knows about the groups (coherent DMA);
//! BAR parts mapped straight into the guest as KVM memory slots.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use devices::pci::PciDevice;
use devices::vfio::{
    IntxFds, IrqIndex, MmapArea, Probe, RegionInfo, VfioInterrupts, VfioOps, VfioPciDevice,
};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_bindings::{kvm_create_device, kvm_device_type_KVM_DEV_TYPE_VFIO};
use tracing::info;
use vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP;
use vfio_ioctls::{VfioContainer, VfioDevice, VfioDeviceFd, VfioRegionInfoCap};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::msi::KvmMsiVectors;
use crate::vm::Vm;

#[derive(Debug, thiserror::Error)]
pub enum VfioAttachError {
    #[error("cannot create the KVM VFIO device")]
    KvmDevice(#[source] kvm_ioctls::Error),
    #[error("cannot open the VFIO container /dev/vfio/vfio")]
    Container(#[source] vfio_ioctls::VfioError),
    #[error("cannot DMA-map guest memory for the device")]
    DmaMap(#[source] vfio_ioctls::VfioError),
    #[error("cannot open VFIO device {path}")]
    Open {
        path: String,
        #[source]
        source: vfio_ioctls::VfioError,
    },
    #[error("device {device}")]
    Model {
        device: String,
        #[source]
        source: devices::vfio::VfioError,
    },
    #[error("interrupts of {device}")]
    Irq {
        device: String,
        #[source]
        source: crate::irq::IrqError,
    },
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
    #[error("cannot map BAR {bar} of {path} ({size:#x} bytes at offset {offset:#x})")]
    Mmap {
        path: String,
        bar: u8,
        offset: u64,
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("KVM refused memory slot {slot} for a BAR at {gpa:#x}")]
    Slot {
        slot: u32,
        gpa: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// `VfioOps` over a host VFIO device.
struct HostVfio {
    device: VfioDevice,
}

fn io_err(e: vfio_ioctls::VfioError) -> std::io::Error {
    std::io::Error::other(e)
}

impl VfioOps for HostVfio {
    fn region(&self, index: u32) -> Option<RegionInfo> {
        let size = self.device.get_region_size(index);
        if size == 0 {
            return None;
        }
        let mmap = self.device.get_region_flags(index) & VFIO_REGION_INFO_FLAG_MMAP != 0;
        let sparse = self
            .device
            .get_region_caps(index)
            .into_iter()
            .find_map(|c| match c {
                VfioRegionInfoCap::SparseMmap(s) => {
                    Some(s.areas.iter().map(|a| (a.offset, a.size)).collect())
                }
                _ => None,
            });
        Some(RegionInfo { size, mmap, sparse })
    }

    fn read(&self, index: u32, offset: u64, data: &mut [u8]) {
        self.device.region_read(index, data, offset);
    }

    fn write(&self, index: u32, offset: u64, data: &[u8]) {
        self.device.region_write(index, data, offset);
    }

    fn irq_count(&self, index: IrqIndex) -> u32 {
        self.device
            .get_irq_info(index as u32)
            .map_or(0, |i| i.count)
    }

    fn enable_irq(&self, index: IrqIndex, fds: &[&EventFd]) -> std::io::Result<()> {
        self.device
            .enable_irq(index as u32, fds.to_vec())
            .map_err(io_err)
    }

    fn disable_irq(&self, index: IrqIndex) -> std::io::Result<()> {
        self.device.disable_irq(index as u32).map_err(io_err)
    }

    fn set_intx_unmask_fd(&self, fd: &EventFd) -> std::io::Result<()> {
        self.device
            .set_irq_resample_fd(IrqIndex::Intx as u32, vec![fd])
            .map_err(io_err)
    }

    fn reset(&self) -> std::io::Result<()> {
        self.device.reset();
        Ok(())
    }
}

/// A BAR part mapped from the device into petrel and into the guest.
struct BarMapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain device memory owned by this value; nothing
// else in petrel dereferences the pointer (only KVM maps it for the guest).
unsafe impl Send for BarMapping {}

impl Drop for BarMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned in `map_area`,
        // unmapped once, here.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// What keeps passthrough working until the VM ends: the container (its
/// DMA mappings and group handles) and the BAR mappings.
#[derive(Default)]
pub struct VfioState {
    container: Option<Arc<VfioContainer>>,
    /// One KVM memory slot each, numbered from [`FIRST_BAR_SLOT`].
    mappings: Vec<BarMapping>,
}

/// KVM memory slots for BAR mappings start well above guest RAM's.
const FIRST_BAR_SLOT: u32 = 64;

impl VfioState {
    fn container(&mut self, vm: &Vm) -> Result<Arc<VfioContainer>, VfioAttachError> {
        if let Some(c) = &self.container {
            return Ok(c.clone());
        }
        let mut dev = kvm_create_device {
            type_: kvm_device_type_KVM_DEV_TYPE_VFIO,
            fd: 0,
            flags: 0,
        };
        let kvm_dev = vm
            .fd
            .create_device(&mut dev)
            .map_err(VfioAttachError::KvmDevice)?;
        let handle = Arc::new(VfioDeviceFd::new_from_kvm(kvm_dev));
        let container =
            Arc::new(VfioContainer::new(Some(handle)).map_err(VfioAttachError::Container)?);
        self.container = Some(container.clone());
        Ok(container)
    }
}

/// Maps one BAR part of the device into petrel and gives it to the guest
/// as a KVM memory slot: guest accesses there go to the device without an
/// exit.
fn map_area(
    vm: &Vm,
    state: &mut VfioState,
    device: &VfioDevice,
    path: &str,
    area: &MmapArea,
) -> Result<(), VfioAttachError> {
    let err = |source| VfioAttachError::Mmap {
        path: path.to_string(),
        bar: area.bar,
        offset: area.offset,
        size: area.size,
        source,
    };
    let len =
        usize::try_from(area.size).map_err(|_| err(std::io::ErrorKind::InvalidInput.into()))?;
    let file_offset = device
        .get_region_offset(u32::from(area.bar))
        .checked_add(area.offset)
        .and_then(|o| libc::off_t::try_from(o).ok())
        .ok_or_else(|| err(std::io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: a fresh shared mapping of the device fd at an offset VFIO
    // reported for this region; the result is checked and owned by
    // `BarMapping`, which unmaps it.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            device.as_raw_fd(),
            file_offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(err(std::io::Error::last_os_error()));
    }
    let mapping = BarMapping { ptr, len };
    let slot = u32::try_from(state.mappings.len())
        .ok()
        .and_then(|n| n.checked_add(FIRST_BAR_SLOT))
        .ok_or_else(|| err(std::io::ErrorKind::OutOfMemory.into()))?;
    let region = kvm_userspace_memory_region {
        slot,
        flags: 0,
        guest_phys_addr: area.guest_addr,
        memory_size: area.size,
        userspace_addr: ptr as u64,
    };
    // SAFETY: the host range is the live mapping above, kept in `state`
    // for as long as the VM runs.
    unsafe { vm.fd.set_user_memory_region(region) }.map_err(|source| VfioAttachError::Slot {
        slot,
        gpa: area.guest_addr,
        source,
    })?;
    state.mappings.push(mapping);
    Ok(())
}

/// What `attach` needs from the PCI setup.
pub struct PciPlace<'a> {
    pub mmio: &'a mut devices::pci::BarAllocator,
    pub io: &'a mut devices::pci::BarAllocator,
    /// An IOAPIC pin for INTx, when one is free.
    pub intx_gsi: Option<u32>,
}

/// A device ready to go on the bus.
pub struct Attached {
    pub device: Arc<Mutex<dyn PciDevice>>,
    /// The INTx pin it uses (for the MP table), if any.
    pub intx_gsi: Option<u32>,
    pub probe: Probe,
    /// BAR parts the host side may map straight into the guest.
    pub mmap_areas: Vec<MmapArea>,
}

/// Opens the device at `sysfs` (bound to vfio-pci), DMA-maps guest memory,
/// then builds it with [`attach_ops`] and maps its BARs into the guest; the
/// caller puts it on the PCI bus.
pub fn attach(
    vm: &mut Vm,
    state: &mut VfioState,
    name: &str,
    sysfs: &Path,
    place: PciPlace<'_>,
) -> Result<Attached, VfioAttachError> {
    let path = sysfs.display().to_string();
    let first = state.container.is_none();
    let container = state.container(vm)?;
    let device = VfioDevice::new(sysfs, container.clone(), false).map_err(|source| {
        VfioAttachError::Open {
            path: path.clone(),
            source,
        }
    })?;
    if first {
        // The IOMMU backend is chosen when the first group joins, so guest
        // memory can only be mapped after the first device is open.
        // SAFETY: guest memory outlives the container: both live until the
        // VM ends, and `Vm` drops memory after the devices.
        unsafe { container.vfio_map_guest_memory(&vm.mem) }.map_err(VfioAttachError::DmaMap)?;
    }
    let host = Arc::new(HostVfio { device });
    let attached = attach_ops(vm, name, host.clone(), place)?;
    for area in &attached.mmap_areas {
        map_area(vm, state, &host.device, &path, area)?;
    }
    info!(device = %name, host = %path, "VFIO device opened");
    Ok(attached)
}

/// Builds the passthrough model over `ops` (a host VFIO device, or
/// anything that behaves like one): probes it, places its BARs, and wires
/// its MSI-X, MSI and INTx into KVM. The caller maps `mmap_areas` (if it
/// can) and puts the device on the PCI bus.
pub fn attach_ops(
    vm: &mut Vm,
    name: &str,
    ops: Arc<dyn VfioOps>,
    place: PciPlace<'_>,
) -> Result<Attached, VfioAttachError> {
    let model = |source| VfioAttachError::Model {
        device: name.to_string(),
        source,
    };
    let probe = Probe::read(&*ops).map_err(model)?;
    let bars = devices::vfio::place_bars(&probe, place.mmio, place.io).map_err(model)?;
    let irq = |source| VfioAttachError::Irq {
        device: name.to_string(),
        source,
    };
    let msix = match probe.msix {
        Some(m) => Some(
            Arc::new(KvmMsiVectors::new(vm.irq.clone(), m.table_size).map_err(irq)?)
                as Arc<dyn devices::pci::MsiVectors>,
        ),
        None => None,
    };
    let msi = match probe.msi {
        Some(m) => Some(Arc::new(
            KvmMsiVectors::new(vm.irq.clone(), u16::from(m.max_vectors)).map_err(irq)?,
        ) as Arc<dyn devices::pci::MsiVectors>),
        None => None,
    };
    let (intx, intx_gsi) = match (probe.intx_pin, place.intx_gsi) {
        (1..=4, Some(gsi)) => {
            let trigger =
                EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VfioAttachError::EventFd)?;
            let resample =
                EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(VfioAttachError::EventFd)?;
            vm.fd
                .register_irqfd_with_resample(&trigger, &resample, gsi)
                .map_err(|e| irq(crate::irq::IrqError::SetRouting(e)))?;
            (Some(IntxFds { trigger, resample }), Some(gsi))
        }
        _ => (None, None),
    };
    let dev = VfioPciDevice::new(
        name.to_string(),
        ops,
        probe.clone(),
        bars,
        VfioInterrupts { msix, msi, intx },
    )
    .map_err(model)?;
    let mmap_areas = dev.mmap_areas();
    info!(
        device = %name,
        vendor = format_args!("{:04x}", probe.vendor_id),
        id = format_args!("{:04x}", probe.device_id),
        bars = ?dev.bars(),
        msix = probe.msix.map_or(0, |m| m.table_size),
        msi = probe.msi.map_or(0, |m| m.max_vectors),
        intx_gsi,
        "VFIO device attached"
    );
    let device: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(dev));
    Ok(Attached {
        device,
        intx_gsi,
        probe,
        mmap_areas,
    })
}
