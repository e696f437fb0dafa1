//! e1000 (82540EM): one queue, INTx through a level-triggered irqfd with a
//! resample eventfd, announced in the MP table.

use std::sync::{Arc, Mutex};

use devices::e1000::E1000;
use devices::pci::PciDevice;
use tracing::debug;

use super::{AttachError, Attaching};
use crate::backend::Opened;
use crate::intx::KvmIntx;
use crate::pci_setup::PciSetup;
use crate::vm::Vm;

pub(super) fn attach(
    vm: &mut Vm,
    pci: &mut PciSetup,
    dev: Attaching<'_>,
    opened: Opened,
) -> Result<(), AttachError> {
    // The plan gives e1000 one queue pair.
    let backend = opened
        .queues
        .into_iter()
        .next()
        .ok_or_else(|| AttachError::NoQueues {
            nic: dev.name().to_string(),
        })?;
    // The e1000 driver has no announce feature: after a move, petrel's
    // RARP on the tap is the only announcement (passt has no tap).
    if dev.nic.binding != crate::plan::Binding::Passt {
        match crate::migration::Announcer::new(dev.name(), dev.mac, backend.as_ref()) {
            Ok(a) => pci.announce.push(a),
            Err(e) => {
                tracing::warn!(nic = dev.name(), error = %e, "cannot keep a tap for announcements")
            }
        }
    }
    let gsi = pci.take_intx_gsi(dev.name())?;
    let intx = KvmIntx::new(&vm.irq, gsi).map_err(|source| AttachError::Intx {
        nic: dev.name().to_string(),
        source,
    })?;
    let bar0 = pci.mmio_bar(dev.name(), devices::e1000::BAR0_SIZE)?;
    let bar1 = pci.io_bar(dev.name(), devices::e1000::BAR1_SIZE)?;
    let mut e1000 = E1000::new(
        dev.name().to_string(),
        dev.mac,
        backend,
        vm.mem.clone(),
        intx.clone(),
        bar0,
        bar1,
    )
    .map_err(dev.device_error())?;
    e1000.set_link_up(dev.nic.link_up);
    if let Some(gate) = &pci.pause {
        e1000.set_pause_gate(gate.clone());
    }
    pci.nic_stats.push(crate::metrics::NicSource::e1000(
        dev.name(),
        e1000.counter_source(),
    ));
    // Interrupt line register = the IOAPIC pin, as firmware would leave it.
    e1000.config_write(15, 0, &[gsi as u8]);
    // Construction spawns nothing; the receive worker starts here, once the
    // device is complete.
    e1000.activate().map_err(dev.device_error())?;
    let e1000: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(e1000));
    let slot = dev.nic.pci_address.device;
    pci.place(vm, dev.name(), slot, e1000)?;
    pci.mp_intx.push(arch::PciIntx {
        device: slot,
        pin: 0,
        gsi: gsi as u8,
    });
    pci.intx.push(intx);
    debug!(
        nic = dev.name(),
        bar0 = format_args!("{bar0:#x}"),
        io = format_args!("{bar1:#x}"),
        gsi,
        "e1000 placed"
    );
    Ok(())
}
