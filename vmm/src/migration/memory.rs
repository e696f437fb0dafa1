//! Guest memory for snapshots and migration: KVM dirty logging on the RAM
//! slots (KVM_MEM_LOG_DIRTY_PAGES + KVM_GET_DIRTY_LOG, which this host
//! supports: docs/migration.md), and walking memory in chunks that skip
//! all-zero pages (the target zeroes its RAM first).

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::MigrationError;

pub const PAGE: u64 = 4096;
/// Pages per chunk read from guest memory at once.
const CHUNK_PAGES: u64 = 256;

/// A run of guest-physical pages: start and length in bytes.
pub type Range = (u64, u64);

/// Re-registers every RAM slot with dirty logging on or off (same slots,
/// addresses and host mappings as `crate::memory::register_with_kvm`).
pub fn set_dirty_logging(vm: &VmFd, mem: &GuestMemoryMmap, on: bool) -> Result<(), MigrationError> {
    for (slot, region) in mem.iter().enumerate() {
        let desc = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: if on { KVM_MEM_LOG_DIRTY_PAGES } else { 0 },
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the same live mapping owned by `mem` that the slot already
        // describes; only the flags change, and `mem` outlives the VM fd.
        unsafe { vm.set_user_memory_region(desc) }.map_err(|source| MigrationError::Kvm {
            op: "KVM_SET_USER_MEMORY_REGION (dirty logging)",
            source,
        })?;
    }
    Ok(())
}

/// Every RAM region.
pub fn all_ranges(mem: &GuestMemoryMmap) -> Vec<Range> {
    mem.iter().map(|r| (r.start_addr().0, r.len())).collect()
}

/// The page runs written since the last call (KVM_GET_DIRTY_LOG clears
/// the log it returns).
pub fn dirty_ranges(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<Vec<Range>, MigrationError> {
    let mut out: Vec<Range> = Vec::new();
    for (slot, region) in mem.iter().enumerate() {
        let base = region.start_addr().0;
        let bitmap = vm
            .get_dirty_log(slot as u32, region.len() as usize)
            .map_err(|source| MigrationError::Kvm {
                op: "KVM_GET_DIRTY_LOG",
                source,
            })?;
        for (w, word) in bitmap.iter().enumerate() {
            if *word == 0 {
                continue;
            }
            for bit in 0..64u64 {
                if word >> bit & 1 == 0 {
                    continue;
                }
                let gpa = base + (w as u64 * 64 + bit) * PAGE;
                match out.last_mut() {
                    Some((start, len)) if *start + *len == gpa => *len += PAGE,
                    _ => out.push((gpa, PAGE)),
                }
            }
        }
    }
    Ok(out)
}

pub fn total(ranges: &[Range]) -> u64 {
    ranges.iter().map(|r| r.1).sum()
}

/// Calls `f(gpa, bytes)` for the contents of `ranges`, in chunks; with
/// `skip_zero`, all-zero pages are left out (the receiver's RAM is zero).
pub fn for_each_chunk(
    mem: &GuestMemoryMmap,
    ranges: &[Range],
    skip_zero: bool,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), MigrationError>,
) -> Result<(), MigrationError> {
    let mut buf = vec![0u8; (CHUNK_PAGES * PAGE) as usize];
    for &(start, len) in ranges {
        let mut gpa = start;
        while gpa < start + len {
            let n = (start + len - gpa).min(CHUNK_PAGES * PAGE);
            let chunk = &mut buf[..n as usize];
            mem.read_slice(chunk, GuestAddress(gpa))
                .map_err(|_| MigrationError::GuestMemory(gpa))?;
            if skip_zero {
                for_nonzero_runs(chunk, |off, run| f(gpa + off, run))?;
            } else {
                f(gpa, chunk)?;
            }
            gpa += n;
        }
    }
    Ok(())
}

/// Compared against with `==` (memcmp), much faster than a byte loop.
static ZERO_PAGE: [u8; PAGE as usize] = [0; PAGE as usize];

/// Whether `b` is all zero bytes (page by page, with memcmp).
pub fn is_zero(b: &[u8]) -> bool {
    b.chunks(PAGE as usize).all(|p| p == &ZERO_PAGE[..p.len()])
}

/// Splits `chunk` into runs of pages that are not all zero.
fn for_nonzero_runs(
    chunk: &[u8],
    mut f: impl FnMut(u64, &[u8]) -> Result<(), MigrationError>,
) -> Result<(), MigrationError> {
    let mut run: Option<usize> = None;
    let pages = chunk.len().div_ceil(PAGE as usize);
    for p in 0..=pages {
        let page = chunk.get(p * PAGE as usize..((p + 1) * PAGE as usize).min(chunk.len()));
        let zero = page.is_none_or(|b| b == &ZERO_PAGE[..b.len()]);
        match (zero, run) {
            (false, None) => run = Some(p),
            (true, Some(s)) => {
                let end = (p * PAGE as usize).min(chunk.len());
                f((s as u64) * PAGE, &chunk[s * PAGE as usize..end])?;
                run = None;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes `data` at `gpa` (a receiver or restore), inside RAM only.
pub fn write(mem: &GuestMemoryMmap, gpa: u64, data: &[u8]) -> Result<(), MigrationError> {
    mem.write_slice(data, GuestAddress(gpa))
        .map_err(|_| MigrationError::GuestMemory(gpa))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_are_skipped() {
        let mut chunk = vec![0u8; 5 * PAGE as usize];
        chunk[PAGE as usize + 3] = 1;
        chunk[2 * PAGE as usize] = 2;
        chunk[4 * PAGE as usize + 9] = 3;
        let mut seen = Vec::new();
        for_nonzero_runs(&chunk, |off, run| {
            seen.push((off, run.len() as u64));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(PAGE, 2 * PAGE), (4 * PAGE, PAGE)]);
    }

    #[test]
    fn chunks_cover_guest_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        write(&mem, 0x1000, &[7; 10]).unwrap();
        write(&mem, 0x10_0000, &[9; 4096]).unwrap();
        let mut bytes = 0;
        for_each_chunk(&mem, &all_ranges(&mem), true, |gpa, b| {
            assert!(gpa == 0x1000 || gpa == 0x10_0000, "{gpa:#x}");
            bytes += b.len();
            Ok(())
        })
        .unwrap();
        assert_eq!(bytes, 8192);
        let mut all = 0;
        for_each_chunk(&mem, &all_ranges(&mem), false, |_, b| {
            all += b.len();
            Ok(())
        })
        .unwrap();
        assert_eq!(all, 2 << 20);
    }
}
