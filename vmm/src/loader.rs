//! Puts the kernel, initramfs and command line into guest memory and decides
//! the entry protocol: PVH when the ELF carries the Xen PVH note (32-bit
//! entry, what this host's guests boot fastest with), the 64-bit Linux boot
//! protocol otherwise (ELF entry or bzImage).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use arch::{EntryMode, InitrdInfo};

/// How to enter the kernel; `Auto` prefers PVH when the image offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BootProtocol {
    #[default]
    Auto,
    Pvh,
    Linux64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither an ELF vmlinux nor a bzImage")]
    UnknownFormat { path: String },
    #[error("cannot load ELF kernel {path}")]
    Elf {
        path: String,
        #[source]
        source: linux_loader::loader::Error,
    },
    #[error("cannot load bzImage {path}")]
    BzImage {
        path: String,
        #[source]
        source: linux_loader::loader::Error,
    },
    #[error("{path} has no PVH entry note; boot it with --boot-protocol linux64 (or auto)")]
    NoPvhEntry { path: String },
    #[error("a bzImage can only be booted with the 64-bit Linux boot protocol")]
    BzImagePvh,
    #[error("initramfs {path} does not fit in guest memory")]
    InitrdPlacement {
        path: String,
        #[source]
        source: arch::BootError,
    },
    #[error("cannot write the initramfs into guest memory at {addr:#x}")]
    InitrdWrite {
        addr: u64,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    #[error("cannot start the kernel loader thread")]
    Spawn(#[source] std::io::Error),
    #[error("the kernel loader thread panicked")]
    Panicked,
    #[error("cannot set up boot structures")]
    Boot(#[from] arch::BootError),
}

/// Where and how vCPU 0 starts.
#[derive(Debug, Clone, Copy)]
pub struct BootEntry {
    pub entry: GuestAddress,
    pub mode: EntryMode,
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoaderError + '_ {
    move |source| LoaderError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// The kernel and initramfs as they landed in guest memory: what the boot
/// structures need to know about them.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The PVH entry, when the ELF has the note and the protocol allows it.
    pvh_entry: Option<GuestAddress>,
    /// The 64-bit entry for the Linux boot protocol.
    linux64_entry: GuestAddress,
    setup_header: Option<linux_loader::loader::bootparam::setup_header>,
    initrd: Option<InitrdInfo>,
}

/// Loads everything and writes the boot structures (PVH start info or
/// boot_params); returns the entry for vCPU 0.
pub fn load(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    protocol: BootProtocol,
) -> Result<BootEntry, LoaderError> {
    let image = load_files(mem, mem_bytes, kernel, initrd, protocol)?;
    write_boot_info(mem, mem_bytes, &image, cmdline)
}

/// Reads the kernel's loadable segments and the initramfs straight from
/// their files into guest RAM. Touches nothing below 1 MiB, so it may run
/// while the boot structures there are written ([`crate::boot::Preload`]).
pub fn load_files(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    kernel: &Path,
    initrd: Option<&Path>,
    protocol: BootProtocol,
) -> Result<LoadedImage, LoaderError> {
    let initrd = match initrd {
        Some(p) => Some(load_initrd(mem, mem_bytes, p)?),
        None => None,
    };
    let mut image = load_kernel(mem, kernel, protocol)?;
    image.initrd = initrd;
    Ok(image)
}

fn load_kernel(
    mem: &GuestMemoryMmap,
    kernel: &Path,
    protocol: BootProtocol,
) -> Result<LoadedImage, LoaderError> {
    let kpath = kernel.display().to_string();
    let mut kfile = File::open(kernel).map_err(read_err(kernel))?;
    let mut magic = [0u8; 4];
    kfile.read_exact(&mut magic).map_err(read_err(kernel))?;
    let mut hdr = [0u8; 4];
    kfile
        .seek(SeekFrom::Start(0x202))
        .and_then(|_| kfile.read_exact(&mut hdr))
        .map_err(read_err(kernel))?;
    let himem = Some(GuestAddress(arch::layout::HIMEM_START));

    if &magic == b"\x7fELF" {
        let res = Elf::load(mem, None, &mut kfile, himem).map_err(|source| LoaderError::Elf {
            path: kpath.clone(),
            source,
        })?;
        let pvh = match res.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(addr) => Some(addr),
            _ => None,
        };
        let pvh_entry = match (protocol, pvh) {
            (BootProtocol::Linux64, _) => None,
            (BootProtocol::Pvh, None) => return Err(LoaderError::NoPvhEntry { path: kpath }),
            (_, p) => p,
        };
        return Ok(LoadedImage {
            pvh_entry,
            linux64_entry: res.kernel_load,
            setup_header: res.setup_header,
            initrd: None,
        });
    }
    if &hdr == b"HdrS" {
        if protocol == BootProtocol::Pvh {
            return Err(LoaderError::BzImagePvh);
        }
        let res =
            BzImage::load(mem, None, &mut kfile, himem).map_err(|source| LoaderError::BzImage {
                path: kpath.clone(),
                source,
            })?;
        // The 64-bit entry of a bzImage's protected-mode part is 0x200 in.
        return Ok(LoadedImage {
            pvh_entry: None,
            linux64_entry: GuestAddress(res.kernel_load.0 + 0x200),
            setup_header: res.setup_header,
            initrd: None,
        });
    }
    Err(LoaderError::UnknownFormat { path: kpath })
}

/// Writes the command line and the PVH start info or the zero page for a
/// loaded image; returns the entry for vCPU 0.
pub fn write_boot_info(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    image: &LoadedImage,
    cmdline: &str,
) -> Result<BootEntry, LoaderError> {
    let cmdline_addr = arch::write_cmdline(mem, cmdline)?;
    if let Some(entry) = image.pvh_entry {
        let start_info = arch::configure_pvh(mem, cmdline_addr, image.initrd, mem_bytes)?;
        return Ok(BootEntry {
            entry,
            mode: EntryMode::Pvh { start_info },
        });
    }
    let boot_params = arch::configure_boot_params(
        mem,
        cmdline_addr,
        cmdline.len(),
        image.initrd,
        mem_bytes,
        image.setup_header,
    )?;
    Ok(BootEntry {
        entry: image.linux64_entry,
        mode: EntryMode::Linux64 { boot_params },
    })
}

fn load_initrd(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    path: &Path,
) -> Result<InitrdInfo, LoaderError> {
    let mut f = File::open(path).map_err(read_err(path))?;
    let size = f.metadata().map_err(read_err(path))?.len();
    let addr =
        arch::initrd_load_addr(mem_bytes, size).map_err(|source| LoaderError::InitrdPlacement {
            path: path.display().to_string(),
            source,
        })?;
    // Straight from the file into guest RAM: no heap copy of the image
    // (start-up time, and no RSS the size of the initramfs).
    mem.read_exact_volatile_from(addr, &mut f, size as usize)
        .map_err(|source| LoaderError::InitrdWrite {
            addr: addr.0,
            source,
        })?;
    Ok(InitrdInfo { addr, size })
}
