//! Linux 64-bit boot protocol: the zero page (`struct boot_params`).

use linux_loader::loader::bootparam::{
    boot_e820_entry, boot_params, setup_header, E820_MAX_ENTRIES_ZEROPAGE,
};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemory};

use crate::e820::e820_entries;
use crate::error::{to_u32, BootError, Result};
use crate::initrd::InitrdInfo;
use crate::layout::{BOOT_PARAMS_START, KERNEL_START};

/// `setup_header.boot_flag` magic.
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `setup_header.header`: "HdrS".
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader` for a boot loader without an assigned ID.
pub const KERNEL_LOADER_OTHER: u8 = 0xff;
/// Alignment reported for a vmlinux that brings no setup header: the kernel
/// is loaded at 16 MiB, which satisfies any `CONFIG_PHYSICAL_ALIGN`.
pub const KERNEL_MIN_ALIGNMENT_BYTES: u32 = KERNEL_START as u32;

/// `boot_params` is a foreign type, so it cannot implement `ByteValued`
/// directly.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct ZeroPage(boot_params);

// SAFETY: boot_params is repr(C, packed) made only of integers and arrays of
// integer structs, so it has no padding; linux-loader asserts it is exactly
// 4096 bytes. Any bit pattern is a valid value. repr(transparent) keeps that
// layout for the wrapper.
unsafe impl ByteValued for ZeroPage {}

/// Writes the zero page for the 64-bit entry and returns its address (for
/// RSI).
///
/// `setup_header` is the header read from a bzImage; for a vmlinux pass
/// `None` and a minimal header is synthesised. Like Firecracker, loadflags
/// are left as the image provided them: the 64-bit entry ignores
/// `KEEP_SEGMENTS`/`LOADED_HIGH`, which only matter to the 16/32-bit paths.
/// `cmdline_len` is the command line length without its NUL.
pub fn configure_boot_params<M: GuestMemory + ?Sized>(
    mem: &M,
    cmdline_addr: GuestAddress,
    cmdline_len: usize,
    initrd: Option<InitrdInfo>,
    mem_bytes: u64,
    setup_header: Option<setup_header>,
) -> Result<GuestAddress> {
    let mut params = boot_params::default();
    let from_image = setup_header.is_some();
    let mut hdr = setup_header.unwrap_or_default();

    hdr.type_of_loader = KERNEL_LOADER_OTHER;
    hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    hdr.header = KERNEL_HDR_MAGIC;
    hdr.cmd_line_ptr = to_u32("command line address", cmdline_addr.0)?;
    hdr.cmdline_size = to_u32("command line length", cmdline_len as u64)?;
    if !from_image {
        hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    }

    if let Some(initrd) = initrd {
        // A bzImage states how high it can find its initrd; a vmlinux does
        // not, and initrd_load_addr already keeps below the universal limit.
        let end = initrd.addr.0 + initrd.size.saturating_sub(1);
        let max = u64::from(hdr.initrd_addr_max);
        if from_image && max != 0 && end > max {
            return Err(BootError::InitrdAboveKernelLimit { end, max });
        }
        hdr.ramdisk_image = to_u32("initrd address", initrd.addr.0)?;
        hdr.ramdisk_size = to_u32("initrd size", initrd.size)?;
    }
    params.hdr = hdr;

    let map = e820_entries(mem_bytes);
    if map.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(BootError::TooManyMemoryMapEntries {
            count: map.len(),
            max: E820_MAX_ENTRIES_ZEROPAGE,
        });
    }
    // Packed struct: build the array by value rather than borrowing fields.
    let mut table = params.e820_table;
    for (slot, e) in table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind.code(),
        };
    }
    params.e820_table = table;
    params.e820_entries = map.len() as u8;

    mem.write_obj(ZeroPage(params), GuestAddress(BOOT_PARAMS_START))
        .map_err(|source| BootError::GuestMemoryWrite {
            what: "boot_params",
            addr: BOOT_PARAMS_START,
            source,
        })?;
    Ok(GuestAddress(BOOT_PARAMS_START))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::CMDLINE_START;
    use vm_memory::GuestMemoryMmap;

    const MIB: u64 = 1 << 20;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 * MIB as usize)]).unwrap()
    }

    fn read(m: &GuestMemoryMmap, addr: GuestAddress) -> boot_params {
        m.read_obj::<ZeroPage>(addr).unwrap().0
    }

    #[test]
    fn vmlinux_zero_page() {
        let m = mem();
        let initrd = InitrdInfo {
            addr: GuestAddress(0x0700_0000),
            size: 0x4000,
        };
        let addr = configure_boot_params(
            &m,
            GuestAddress(CMDLINE_START),
            13,
            Some(initrd),
            128 * MIB,
            None,
        )
        .unwrap();
        assert_eq!(addr.0, BOOT_PARAMS_START);
        let p = read(&m, addr);
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, 0x5372_6448);
        assert_eq!(hdr.type_of_loader, 0xff);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ hdr.cmdline_size }, 13);
        assert_eq!({ hdr.kernel_alignment }, 0x0100_0000);
        assert_eq!({ hdr.ramdisk_image }, 0x0700_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x4000);
        assert_eq!(p.sentinel, 0);

        let expected = e820_entries(128 * MIB);
        assert_eq!(usize::from(p.e820_entries), expected.len());
        let table = p.e820_table;
        for (got, e) in table.iter().zip(&expected) {
            assert_eq!(
                ({ got.addr }, { got.size }, { got.r#type }),
                (e.addr, e.size, e.kind.code())
            );
        }
        assert_eq!({ table[0].r#type }, 1);
        assert_eq!({ table[1].r#type }, 2);
    }

    #[test]
    fn bzimage_header_is_kept_and_patched() {
        let m = mem();
        let hdr = setup_header {
            setup_sects: 27,
            version: 0x020f,
            loadflags: 0x01,
            kernel_alignment: 0x20_0000,
            initrd_addr_max: 0x7fff_ffff,
            ..Default::default()
        };
        let addr = configure_boot_params(
            &m,
            GuestAddress(CMDLINE_START),
            5,
            None,
            4096 * MIB,
            Some(hdr),
        )
        .unwrap();
        let p = read(&m, addr);
        let got = p.hdr;
        assert_eq!(got.setup_sects, 27);
        assert_eq!({ got.version }, 0x020f);
        assert_eq!(got.loadflags, 0x01);
        assert_eq!({ got.kernel_alignment }, 0x20_0000);
        assert_eq!({ got.boot_flag }, 0xaa55);
        assert_eq!({ got.ramdisk_image }, 0);
        assert_eq!(p.e820_entries, 4);
    }

    #[test]
    fn initrd_above_header_limit_rejected() {
        let m = mem();
        let hdr = setup_header {
            initrd_addr_max: 0x0fff_ffff,
            ..Default::default()
        };
        let initrd = InitrdInfo {
            addr: GuestAddress(0x3000_0000),
            size: 0x1000,
        };
        assert!(matches!(
            configure_boot_params(
                &m,
                GuestAddress(CMDLINE_START),
                1,
                Some(initrd),
                1024 * MIB,
                Some(hdr)
            ),
            Err(BootError::InitrdAboveKernelLimit { .. })
        ));
    }
}
