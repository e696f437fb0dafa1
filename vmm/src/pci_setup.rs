//! The PCI side of the machine: the root bus (with the 0xcf8 config ports
//! on the port-I/O bus), the BAR windows, the INTx lines handed out and the
//! VFIO state of passed-through devices. Devices are placed here by the
//! attach modules; they drop with it (their workers join then).

use std::sync::{Arc, Mutex};

use devices::pci::{BarAllocator, PciBarRegion, PciBus, PciDevice};
use devices::Bus;

use crate::attach::AttachError;
use crate::intx::{KvmIntx, INTX_FIRST_GSI, INTX_LAST_GSI};
use crate::vm::Vm;

/// Port-I/O window for I/O BARs (above the legacy ISA ports).
pub(crate) const PCI_IO_START: u64 = 0xc000;
pub(crate) const PCI_IO_SIZE: u64 = 0x4000;

pub struct PciSetup {
    pub bus: Arc<Mutex<PciBus>>,
    pub(crate) alloc: BarAllocator,
    pub(crate) io_alloc: BarAllocator,
    pub(crate) next_intx_gsi: u32,
    /// INTx lines whose resample events the control loop serves.
    pub intx: Vec<Arc<KvmIntx>>,
    /// MP table entries for those lines.
    pub mp_intx: Vec<arch::PciIntx>,
    /// VFIO container and BAR mappings of passed-through devices.
    pub(crate) vfio: crate::vfio::VfioState,
    /// Counters of the emulated NICs, for the API and metrics.
    pub nic_stats: Vec<crate::metrics::NicSource>,
    /// The VM's device pause gate, given to each emulated NIC.
    pub pause: Option<devices::PauseGate>,
    /// The NICs (virtio-net, e1000) to announce after a restore or migration.
    pub announce: Vec<crate::migration::Announcer>,
}

impl PciSetup {
    pub fn new(pio: &mut Bus) -> Result<Self, devices::BusError> {
        let bus = Arc::new(Mutex::new(PciBus::new()));
        pio.insert(
            Arc::new(Mutex::new(devices::pci::PciConfigIo::new(bus.clone()))),
            devices::pci::PCI_CONFIG_IO_BASE,
            devices::pci::PCI_CONFIG_IO_LEN,
        )?;
        Ok(Self {
            bus,
            alloc: BarAllocator::new(
                arch::layout::PCI_MMIO32_START,
                arch::layout::PCI_MMIO32_SIZE,
            ),
            io_alloc: BarAllocator::new(PCI_IO_START, PCI_IO_SIZE),
            next_intx_gsi: INTX_FIRST_GSI,
            intx: Vec::new(),
            mp_intx: Vec::new(),
            vfio: crate::vfio::VfioState::default(),
            nic_stats: Vec::new(),
            pause: None,
            announce: Vec::new(),
        })
    }

    /// A memory BAR of `size` (aligned to its size) in the 32-bit window.
    pub(crate) fn mmio_bar(&mut self, name: &str, size: u64) -> Result<u64, AttachError> {
        self.alloc
            .allocate(size, size)
            .ok_or_else(|| AttachError::NoBarSpace {
                nic: name.to_string(),
            })
    }

    /// An I/O BAR of `size` in the port window.
    pub(crate) fn io_bar(&mut self, name: &str, size: u64) -> Result<u64, AttachError> {
        self.io_alloc
            .allocate(size, size)
            .ok_or_else(|| AttachError::NoBarSpace {
                nic: name.to_string(),
            })
    }

    /// The next free IOAPIC pin for a device's INTx line.
    pub(crate) fn take_intx_gsi(&mut self, name: &str) -> Result<u32, AttachError> {
        if self.next_intx_gsi > INTX_LAST_GSI {
            return Err(AttachError::NoIntx {
                nic: name.to_string(),
                count: INTX_LAST_GSI - INTX_FIRST_GSI + 1,
            });
        }
        let gsi = self.next_intx_gsi;
        self.next_intx_gsi += 1;
        Ok(gsi)
    }

    /// The pin the next INTx device would get, if any is left.
    pub(crate) fn peek_intx_gsi(&self) -> Option<u32> {
        (self.next_intx_gsi <= INTX_LAST_GSI).then_some(self.next_intx_gsi)
    }

    /// Adds `dev` at `slot` and maps its BARs: memory BARs on the MMIO
    /// bus, I/O BARs on the port-I/O bus.
    pub(crate) fn place(
        &mut self,
        vm: &mut Vm,
        name: &str,
        slot: u8,
        dev: Arc<Mutex<dyn PciDevice>>,
    ) -> Result<(), AttachError> {
        let bus_error = |e: devices::BusError| AttachError::Bus {
            nic: name.to_string(),
            source: Box::new(e),
        };
        self.bus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_device(slot, dev.clone())
            .map_err(|e| AttachError::Bus {
                nic: name.to_string(),
                source: Box::new(e),
            })?;
        for (bar, region) in PciBarRegion::for_device(&dev) {
            let region = Arc::new(Mutex::new(region));
            let bus = if bar.is_mmio() {
                &mut vm.mmio
            } else {
                &mut vm.pio
            };
            bus.insert(region, bar.addr, bar.size).map_err(bus_error)?;
        }
        Ok(())
    }
}
