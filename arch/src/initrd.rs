//! Where the initrd goes.

use vm_memory::GuestAddress;

use crate::error::{BootError, Result};
use crate::layout::{INITRD_MAX_END, INITRD_MIN_START, MMIO_GAP_START, PAGE_SIZE};

/// A loaded initrd, as handed to the boot-structure builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdInfo {
    /// Guest-physical start.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub size: u64,
}

/// Page-aligned load address for an initrd of `initrd_size` bytes.
///
/// The initrd goes as high as possible so it stays clear of the kernel's
/// decompression and early allocations, but below the MMIO hole and below
/// 896 MiB (`INITRD_MAX_END`), which every kernel's `initrd_addr_max` allows
/// and which is covered by the 1 GiB boot identity map. It must start above
/// `INITRD_MIN_START` so it cannot overlap a kernel image loaded at 16 MiB.
pub fn initrd_load_addr(mem_bytes: u64, initrd_size: u64) -> Result<GuestAddress> {
    let max_end = mem_bytes.min(MMIO_GAP_START).min(INITRD_MAX_END);
    let too_big = || BootError::InitrdDoesNotFit {
        size: initrd_size,
        available: max_end.saturating_sub(INITRD_MIN_START),
        min_start: INITRD_MIN_START,
        max_end,
    };
    let start = max_end.checked_sub(initrd_size).ok_or_else(too_big)? & !(PAGE_SIZE - 1);
    if start < INITRD_MIN_START {
        return Err(too_big());
    }
    Ok(GuestAddress(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn placed_at_top_of_small_ram_aligned() {
        let a = initrd_load_addr(128 * MIB, 0x1234).unwrap();
        assert_eq!(a.0 % PAGE_SIZE, 0);
        assert!(a.0 + 0x1234 <= 128 * MIB);
        assert!(a.0 >= 128 * MIB - 0x2000);
    }

    #[test]
    fn capped_below_896m_for_large_ram() {
        let a = initrd_load_addr(4096 * MIB, 10 * MIB).unwrap();
        assert_eq!(a.0, INITRD_MAX_END - 10 * MIB);
    }

    #[test]
    fn too_big_rejected() {
        assert!(matches!(
            initrd_load_addr(64 * MIB, 40 * MIB),
            Err(BootError::InitrdDoesNotFit { size, .. }) if size == 40 * MIB
        ));
        assert!(initrd_load_addr(16 * MIB, 1).is_err());
        // Exactly fills the space between the kernel area and RAM top.
        assert_eq!(
            initrd_load_addr(64 * MIB, 32 * MIB).unwrap().0,
            INITRD_MIN_START
        );
    }
}
