//! What goes into guest memory before the first instruction, kept so a VM
//! reset can write it again: the MP table (ACPI-less guests), the ACPI
//! tables, the kernel, initramfs and command line.

use std::path::PathBuf;

use crate::error::VmmError;
use crate::loader::{self, BootEntry, BootProtocol};
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
        arch::setup_mptable(&vm.mem, self.vcpus, &self.pci_intx).map_err(VmmError::MpTable)?;
        crate::acpi::write_tables(&vm.mem, self.vcpus, &self.pci_intx).map_err(VmmError::Acpi)?;
        Ok(loader::load(
            &vm.mem,
            vm.mem_bytes,
            &self.kernel,
            self.initrd.as_deref(),
            &self.cmdline,
            self.protocol,
        )?)
    }
}
