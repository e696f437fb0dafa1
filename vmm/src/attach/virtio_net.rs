//! virtio-net behind the modern virtio-pci transport: MSI-X vectors as
//! irqfds, queue kicks as ioeventfds.

use std::sync::{Arc, Mutex};

use devices::pci::PciDevice;
use devices::virtio::net::Net;
use devices::virtio::transport::{VirtioPciDevice, BAR0_SIZE};
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use tracing::debug;

use super::{AttachError, Attaching};
use crate::backend::Opened;
use crate::msi::KvmMsiVectors;
use crate::pci_setup::PciSetup;
use crate::vm::Vm;

pub(super) fn attach(
    vm: &mut Vm,
    pci: &mut PciSetup,
    dev: Attaching<'_>,
    opened: Opened,
    cpus: &[usize],
) -> Result<(), AttachError> {
    let backends = opened.queues;
    // Taps take a frame written into them as one from the guest; passt's
    // socket has its own framing.
    if dev.nic.binding != crate::plan::Binding::Passt {
        if let Some(first) = backends.first() {
            match crate::migration::Announcer::new(dev.name(), dev.mac, first.as_ref()) {
                Ok(a) => pci.announce.push(a),
                Err(e) => {
                    tracing::warn!(nic = dev.name(), error = %e, "cannot keep a tap for announcements")
                }
            }
        }
    }
    let affinity: Vec<Option<Vec<usize>>> = (0..backends.len())
        .map(|i| (!cpus.is_empty()).then(|| vec![cpus[i % cpus.len()]]))
        .collect();
    let mut net = Net::new(
        dev.name().to_string(),
        dev.mac,
        opened.mtu,
        backends,
        affinity,
    )
    .map_err(dev.device_error())?;
    net.set_link_up(dev.nic.link_up);
    if let Some(gate) = &pci.pause {
        net.set_pause_gate(gate.clone());
    }
    pci.nic_stats
        .push(crate::metrics::NicSource::virtio(dev.name(), net.metrics()));
    let vectors = VirtioPciDevice::msix_vectors_needed(&net);
    let msix = KvmMsiVectors::new(vm.irq.clone(), vectors).map_err(|source| AttachError::Msi {
        nic: dev.name().to_string(),
        source,
    })?;
    let gsis = msix.gsis();
    let bar0 = pci.mmio_bar(dev.name(), BAR0_SIZE)?;
    let transport = VirtioPciDevice::new(
        dev.name().to_string(),
        Box::new(net),
        vm.mem.clone(),
        Arc::new(msix),
        bar0,
    )
    .map_err(dev.device_error())?;
    for (addr, evt) in transport.ioeventfds() {
        vm.fd
            .register_ioevent(evt, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|source| AttachError::IoEvent {
                nic: dev.name().to_string(),
                addr,
                source,
            })?;
    }
    let transport: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(transport));
    pci.place(vm, dev.name(), dev.nic.pci_address.device, transport)?;
    debug!(
        nic = dev.name(),
        queue_pairs = dev.nic.queue_pairs,
        bar0 = format_args!("{bar0:#x}"),
        msix_gsis = ?gsis,
        "virtio-net placed"
    );
    Ok(())
}
