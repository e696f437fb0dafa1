//! Guest RAM: anonymous mappings laid out by `arch`, registered as KVM
//! memory slots. This is the only place that hands host pointers to KVM.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot map {bytes} bytes of guest RAM")]
    Map {
        bytes: u64,
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("KVM refused memory slot {slot} at {gpa:#x} ({size:#x} bytes)")]
    Slot {
        slot: u32,
        gpa: u64,
        size: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
}

pub fn create_guest_memory(mem_bytes: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let ranges = arch::ram_regions(mem_bytes);
    GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Map {
        bytes: mem_bytes,
        source,
    })
}

pub fn register_with_kvm(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let gpa = region.start_addr().0;
        let size = region.len();
        let region_desc = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the host range comes from a live mmap owned by `mem`, whose
        // regions outlive the VM: `Vm` keeps `mem` and drops it after `VmFd`.
        unsafe { vm.set_user_memory_region(region_desc) }.map_err(|source| MemoryError::Slot {
            slot,
            gpa,
            size,
            source,
        })?;
    }
    Ok(())
}

/// Zeroes guest RAM for a VM reset: the anonymous private mappings drop
/// their pages and read back as zeros (KVM's MMU notifier follows).
pub fn zero_guest_memory(mem: &GuestMemoryMmap) -> std::io::Result<()> {
    for region in mem.iter() {
        // SAFETY: the range is exactly one live anonymous private mapping
        // owned by `mem`; MADV_DONTNEED only replaces its pages with zero
        // pages and invalidates nothing Rust holds references into (guest
        // memory is only ever accessed through vm-memory's volatile copies).
        let rc = unsafe {
            libc::madvise(
                region.as_ptr().cast(),
                region.len() as usize,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
