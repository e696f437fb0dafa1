//! What goes into guest memory before the first instruction, kept so a VM
//! reset can write it again: the MP table (ACPI-less guests), the ACPI
//! tables, the kernel, initramfs and command line.
//!
//! At start-up the kernel and initramfs are read on a `loader` thread
//! ([`Preload`]) while the main thread creates the VM, its devices and
//! vCPUs: reading ~11 MB into fresh guest RAM is mostly page faults, and
//! KVM's VM and irqchip set-up is mostly kernel time, so the two overlap.

use std::path::PathBuf;
use std::thread::JoinHandle;

use vm_memory::GuestMemoryMmap;

use crate::error::VmmError;
use crate::loader::{self, BootEntry, BootProtocol, LoadedImage, LoaderError};
use crate::vm::Vm;

#[derive(Debug, Clone)]
pub(crate) struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub protocol: BootProtocol,
    pub vcpus: u8,
    pub pci_intx: Vec<arch::PciIntx>,
}

impl GuestImage {
    /// Writes the boot structures and the kernel; returns vCPU 0's entry.
    pub fn load(&self, vm: &Vm) -> Result<BootEntry, VmmError> {
        self.write_tables(vm)?;
        Ok(loader::load(
            &vm.mem,
            vm.mem_bytes,
            &self.kernel,
            self.initrd.as_deref(),
            &self.cmdline,
            self.protocol,
        )?)
    }

    /// The MP table and ACPI tables (below 1 MiB, apart from the kernel).
    fn write_tables(&self, vm: &Vm) -> Result<(), VmmError> {
        arch::setup_mptable(&vm.mem, self.vcpus, &self.pci_intx).map_err(VmmError::MpTable)?;
        crate::acpi::write_tables(&vm.mem, self.vcpus, &self.pci_intx).map_err(VmmError::Acpi)?;
        Ok(())
    }
}

/// The kernel and initramfs being read into guest RAM on the `loader`
/// thread. The thread only opens and reads the two files and writes guest
/// memory, and it is joined ([`Preload::finish`]) before the main thread
/// installs its seccomp filter, so it needs no thread class of its own.
/// If start-up fails before the join, the thread finishes detached: its
/// clone of `GuestMemoryMmap` keeps the mapping alive until it is done.
pub(crate) struct Preload(JoinHandle<Result<LoadedImage, LoaderError>>);

impl Preload {
    /// Starts reading `kernel` and `initrd` into `mem`.
    pub fn start(
        mem: GuestMemoryMmap,
        mem_bytes: u64,
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        protocol: BootProtocol,
    ) -> Result<Self, LoaderError> {
        std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                let loaded =
                    loader::load_files(&mem, mem_bytes, &kernel, initrd.as_deref(), protocol);
                tracing::info!(
                    load_us = start.elapsed().as_micros() as u64,
                    "kernel and initramfs read"
                );
                loaded
            })
            .map(Self)
            .map_err(LoaderError::Spawn)
    }

    /// Waits for the files, then writes the tables, the command line and
    /// the boot structures; returns vCPU 0's entry.
    pub fn finish(self, image: &GuestImage, vm: &Vm) -> Result<BootEntry, VmmError> {
        let loaded = self.0.join().map_err(|_| LoaderError::Panicked)??;
        image.write_tables(vm)?;
        Ok(loader::write_boot_info(
            &vm.mem,
            vm.mem_bytes,
            &loaded,
            &image.cmdline,
        )?)
    }
}
