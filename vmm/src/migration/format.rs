//! The saved VM: a self-describing JSON document (serde) with a format
//! name and version checked before anything else is read, so state from
//! another petrel fails cleanly instead of being misread. Guest memory
//! travels beside it (a file in a snapshot, page frames in a migration).

use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

use devices::legacy::{CmosState, SerialState};
use devices::pci::{PciDeviceState, MAX_SLOT};

use super::{KvmVmState, MigrationError, VcpuState};
use crate::pci_setup::PciSetup;
use crate::vm::Vm;

/// The format name in every saved state.
pub const FORMAT: &str = "petrel-vm-state";
/// Bumped whenever a saved type changes shape or meaning.
pub const VERSION: u32 = 1;

/// The devices' state: COM1, the CMOS, and every PCI function by slot
/// (what cannot be saved is refused first, [`super::refusal`]). The ACPI
/// PM register and the GED hold no state; the i8042 none that matters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStates {
    pub serial: SerialState,
    pub cmos: CmosState,
    pub pci: Vec<(u8, PciDeviceState)>,
}

/// What the target checks before taking any memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub name: String,
    pub memory_bytes: u64,
    pub vcpus: usize,
}

/// Everything but guest memory.
#[derive(Debug, Serialize, Deserialize)]
pub struct VmSnapshot {
    pub header: Header,
    pub vcpus: Vec<VcpuState>,
    pub kvm: KvmVmState,
    pub devices: DeviceStates,
}

fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Header {
    pub fn of(name: &str, vm: &Vm, vcpus: usize) -> Self {
        Self {
            format: FORMAT.to_string(),
            version: VERSION,
            name: name.to_string(),
            memory_bytes: vm.mem_bytes,
            vcpus,
        }
    }

    /// Whether a VM saved with `self` can be restored into `target`.
    pub fn check_fits(&self, target: &Header) -> Result<(), MigrationError> {
        if self.memory_bytes != target.memory_bytes || self.vcpus != target.vcpus {
            return Err(MigrationError::Mismatch(format!(
                "saved VM has {} vCPUs and {} MiB; this one {} vCPUs and {} MiB",
                self.vcpus,
                self.memory_bytes >> 20,
                target.vcpus,
                target.memory_bytes >> 20
            )));
        }
        Ok(())
    }

    /// Parses a header, checking the format and version first.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MigrationError> {
        let v: serde_json::Value = serde_json::from_slice(bytes)?;
        check_version(&v)?;
        Ok(serde_json::from_value(v)?)
    }
}

/// The state of every PCI function that has one (slot 0 is the host
/// bridge, which has none to move).
fn pci_states(pci: &PciSetup) -> Vec<(u8, PciDeviceState)> {
    let bus = lock(&pci.bus);
    (1..=MAX_SLOT)
        .filter_map(|slot| {
            let dev = bus.device(slot)?;
            let state = lock(dev).save_state()?;
            Some((slot, state))
        })
        .collect()
}

/// Refuses a document whose `format`/`version` (at the top or in its
/// `header`) are not this petrel's.
fn check_version(v: &serde_json::Value) -> Result<(), MigrationError> {
    let h = v.get("header").unwrap_or(v);
    let found = h.get("format").and_then(|f| f.as_str()).unwrap_or("");
    let version = h.get("version").and_then(|f| f.as_u64()).unwrap_or(0);
    if found != FORMAT || version != u64::from(VERSION) {
        return Err(MigrationError::Version {
            found: found.to_string(),
            version,
        });
    }
    Ok(())
}

impl VmSnapshot {
    /// Captures the VM; its vCPUs must be out of KVM_RUN (threads stopped).
    pub fn capture(
        name: &str,
        vm: &Vm,
        pci: &PciSetup,
        vcpus: &[VcpuFd],
    ) -> Result<Self, MigrationError> {
        let msr_index = vm
            .kvm
            .get_msr_index_list()
            .map_err(|source| MigrationError::Kvm {
                op: "KVM_GET_MSR_INDEX_LIST",
                source,
            })?;
        let vcpu_states = vcpus
            .iter()
            .map(|fd| VcpuState::capture(fd, msr_index.as_slice()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            header: Header::of(name, vm, vcpus.len()),
            vcpus: vcpu_states,
            kvm: KvmVmState::capture(&vm.fd)?,
            devices: DeviceStates {
                serial: lock(&vm.serial).state(),
                cmos: lock(&vm.cmos).state(),
                pci: pci_states(pci),
            },
        })
    }

    /// Writes the state into a VM built from the same spec whose vCPUs have
    /// not run (or are stopped). Memory must already be in place.
    pub fn apply(&self, vm: &Vm, pci: &PciSetup, vcpus: &[VcpuFd]) -> Result<(), MigrationError> {
        self.header
            .check_fits(&Header::of(&self.header.name, vm, vcpus.len()))?;
        if self.vcpus.len() != vcpus.len() {
            return Err(MigrationError::Invalid(format!(
                "{} vCPU states for {} vCPUs",
                self.vcpus.len(),
                vcpus.len()
            )));
        }
        self.kvm.restore(&vm.fd)?;
        for (id, (state, fd)) in self.vcpus.iter().zip(vcpus).enumerate() {
            state.restore(fd, id)?;
        }
        lock(&vm.serial)
            .restore(&self.devices.serial)
            .map_err(|e| MigrationError::Invalid(e.to_string()))?;
        lock(&vm.cmos)
            .restore(&self.devices.cmos)
            .map_err(MigrationError::Invalid)?;
        let bus = lock(&pci.bus);
        for (slot, state) in &self.devices.pci {
            let dev = bus.device(*slot).ok_or_else(|| {
                MigrationError::Mismatch(format!("no PCI device in slot {slot} here"))
            })?;
            lock(dev)
                .restore_state(state)
                .map_err(|e| MigrationError::Mismatch(format!("PCI slot {slot}: {e}")))?;
        }
        Ok(())
    }

    pub fn to_json(&self) -> Result<Vec<u8>, MigrationError> {
        Ok(serde_json::to_vec(self)?)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, MigrationError> {
        let v: serde_json::Value = serde_json::from_slice(bytes)?;
        check_version(&v)?;
        Ok(serde_json::from_value(v)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_version_is_refused_before_parsing() {
        let doc = serde_json::json!({"header": {"format": FORMAT, "version": VERSION + 1}});
        let e = VmSnapshot::from_json(doc.to_string().as_bytes()).unwrap_err();
        assert!(matches!(e, MigrationError::Version { .. }), "{e}");
        let doc = serde_json::json!({"format": "qemu", "version": VERSION});
        assert!(matches!(
            Header::from_json(doc.to_string().as_bytes()),
            Err(MigrationError::Version { .. })
        ));
        let h = Header {
            format: FORMAT.into(),
            version: VERSION,
            name: "a".into(),
            memory_bytes: 128 << 20,
            vcpus: 1,
        };
        let back = Header::from_json(&serde_json::to_vec(&h).unwrap()).unwrap();
        assert!(back.check_fits(&h).is_ok());
        let bigger = Header {
            memory_bytes: 256 << 20,
            ..h.clone()
        };
        assert!(matches!(
            back.check_fits(&bigger),
            Err(MigrationError::Mismatch(_))
        ));
    }
}
