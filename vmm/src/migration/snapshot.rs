//! `vm.snapshot` / `vm.restore` to a directory: `state.json` (the
//! [`VmSnapshot`] document) and `memory.bin`, guest RAM at file offset =
//! guest-physical address, written sparse (all-zero pages are holes).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use kvm_ioctls::VcpuFd;
use tracing::info;

use super::{memory, MigrationError, VmSnapshot};
use crate::pci_setup::PciSetup;
use crate::vm::Vm;

const STATE_FILE: &str = "state.json";
const MEMORY_FILE: &str = "memory.bin";

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MigrationError {
    let path = path.to_path_buf();
    move |source| MigrationError::File { what, path, source }
}

/// Saves the VM (vCPU threads stopped) into `dir`, created if missing.
pub fn snapshot_dir(
    dir: &Path,
    name: &str,
    vm: &Vm,
    pci: &PciSetup,
    vcpus: &[VcpuFd],
) -> Result<(), MigrationError> {
    std::fs::create_dir_all(dir).map_err(file_err("cannot create", dir))?;
    let state = VmSnapshot::capture(name, vm, pci, vcpus)?;
    let mem_path = dir.join(MEMORY_FILE);
    let file = File::create(&mem_path).map_err(file_err("cannot create", &mem_path))?;
    let ranges = memory::all_ranges(&vm.mem);
    let end = ranges.iter().map(|r| r.0 + r.1).max().unwrap_or(0);
    file.set_len(end)
        .map_err(file_err("cannot size", &mem_path))?;
    let mut bytes = 0u64;
    memory::for_each_chunk(&vm.mem, &ranges, true, |gpa, data| {
        bytes += data.len() as u64;
        file.write_all_at(data, gpa)
            .map_err(file_err("cannot write", &mem_path))
    })?;
    file.sync_all()
        .map_err(file_err("cannot sync", &mem_path))?;
    let state_path = dir.join(STATE_FILE);
    std::fs::write(&state_path, state.to_json()?).map_err(file_err("cannot write", &state_path))?;
    info!(dir = %dir.display(), memory_written = bytes, "snapshot saved");
    Ok(())
}

/// Restores the VM saved in `dir` into `vm` (built from the same spec,
/// vCPUs not running): the state is checked before memory is touched.
pub fn restore_dir(
    dir: &Path,
    vm: &Vm,
    pci: &PciSetup,
    vcpus: &[VcpuFd],
) -> Result<(), MigrationError> {
    let state_path = dir.join(STATE_FILE);
    let doc = std::fs::read(&state_path).map_err(file_err("cannot read", &state_path))?;
    let state = VmSnapshot::from_json(&doc)?;
    state.header.check_fits(&super::format::Header::of(
        &state.header.name,
        vm,
        vcpus.len(),
    ))?;
    let mem_path = dir.join(MEMORY_FILE);
    let file = File::open(&mem_path).map_err(file_err("cannot open", &mem_path))?;
    crate::memory::zero_guest_memory(&vm.mem).map_err(file_err("cannot zero RAM for", dir))?;
    let mut buf = vec![0u8; 1 << 20];
    for (start, len) in memory::all_ranges(&vm.mem) {
        let mut gpa = start;
        while gpa < start + len {
            let n = (start + len - gpa).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], gpa)
                .map_err(file_err("cannot read", &mem_path))?;
            if !memory::is_zero(&buf[..n]) {
                memory::write(&vm.mem, gpa, &buf[..n])?;
            }
            gpa += n as u64;
        }
    }
    state.apply(vm, pci, vcpus)?;
    info!(dir = %dir.display(), "snapshot restored");
    Ok(())
}
