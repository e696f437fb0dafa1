//! The receiving side (`petrel run --incoming`): accept one connection,
//! check the header against this VM (format, version, vCPUs, memory),
//! zero RAM, take memory frames until the state and `Complete`, apply the
//! state and answer `Ack`. Every refusal is sent back as a `Nack` with its
//! reason, so the source resumes its guest and says why.

use kvm_ioctls::VcpuFd;
use tracing::info;

use super::format::Header;
use super::url::Conn;
use super::{error_chain, memory, transport, MigrationError, MigrationUrl, VmSnapshot};
use crate::pci_setup::PciSetup;
use crate::vm::Vm;

/// Receives a VM into `vm` (built from the same spec, vCPUs not running).
pub fn receive(
    url: &MigrationUrl,
    vm: &Vm,
    pci: &PciSetup,
    vcpus: &[VcpuFd],
) -> Result<(), MigrationError> {
    info!(url = ?url, "waiting for the migration source");
    let mut conn = url.accept()?;
    info!("migration source connected");
    let r = take(&mut conn, vm, pci, vcpus);
    match &r {
        Ok(()) => transport::send(&mut conn, transport::ACK, &[])?,
        // A broken connection cannot carry the reason; the rest can.
        Err(MigrationError::Io(_)) => {}
        Err(e) => {
            let _ = transport::send(&mut conn, transport::NACK, &[error_chain(e).as_bytes()]);
        }
    }
    r
}

fn take(conn: &mut Conn, vm: &Vm, pci: &PciSetup, vcpus: &[VcpuFd]) -> Result<(), MigrationError> {
    let (tag, body) = transport::recv(conn)?;
    if tag != transport::HEADER {
        return Err(MigrationError::Protocol(format!(
            "expected the header, got frame {tag}"
        )));
    }
    let header = Header::from_json(&body)?;
    header.check_fits(&Header::of(&header.name, vm, vcpus.len()))?;
    crate::memory::zero_guest_memory(&vm.mem)?;
    transport::send(conn, transport::ACK, &[])?;
    let mut state = None;
    let mut bytes = 0u64;
    loop {
        let (tag, body) = transport::recv(conn)?;
        match tag {
            transport::MEMORY => {
                let (gpa, data) = transport::memory_frame(&body)?;
                memory::write(&vm.mem, gpa, data)?;
                bytes += data.len() as u64;
            }
            transport::STATE => state = Some(VmSnapshot::from_json(&body)?),
            transport::COMPLETE => break,
            other => {
                return Err(MigrationError::Protocol(format!(
                    "unexpected frame {other}"
                )))
            }
        }
    }
    let state = state.ok_or_else(|| MigrationError::Protocol("no state before Complete".into()))?;
    state.apply(vm, pci, vcpus)?;
    info!(memory_bytes = bytes, "migration received");
    Ok(())
}
