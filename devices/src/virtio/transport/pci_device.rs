//! A virtio device behind a modern (virtio 1.x) PCI function.
//!
//! BAR0 is a 64-bit, non-prefetchable memory BAR of [`BAR0_SIZE`] bytes:
//!
//! | offset   | structure                                            |
//! |----------|------------------------------------------------------|
//! | 0x0000   | common configuration                                 |
//! | 0x1000   | ISR status (read clears)                             |
//! | 0x2000   | device-specific configuration                        |
//! | 0x3000   | notifications: queue `i` at 0x3000 + 4 * i           |
//! | 0x4000   | MSI-X table (at most 512 vectors)                    |
//! | 0x6000   | MSI-X pending-bit array                              |
//!
//! The capability list holds MSI-X, then the virtio vendor capabilities
//! (common, notify, ISR, device, PCI configuration access).

use std::io;
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::common_config::{CommonConfig, QueueSetup, COMMON_CONFIG_LEN};
use super::interrupt::VirtioPciInterrupt;

#[path = "state.rs"]
mod state;
use crate::pci::{
    cap_id, extract_bytes, merge_dword, Bar, BarKind, MsiVectors, MsixConfig, PciConfiguration,
    PciDevice, PciError, PciIds,
};
use crate::virtio::{
    status, QueueConfig, VirtioDevice, VirtioInterrupt, VirtioInterruptType, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};
pub use state::{QueueState, VirtioPciState};

/// Size of BAR0.
pub const BAR0_SIZE: u64 = 0x8000;
pub const COMMON_CONFIG_OFFSET: u64 = 0x0000;
pub const ISR_OFFSET: u64 = 0x1000;
pub const DEVICE_CONFIG_OFFSET: u64 = 0x2000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
pub const MSIX_PBA_OFFSET: u64 = 0x6000;
/// Bytes between the notify addresses of consecutive queues.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
const REGION_LEN: u64 = 0x1000;
const ISR_LEN: u64 = 1;
/// MSI-X table room in BAR0 (0x4000..0x6000).
pub const MAX_MSIX_VECTORS: u16 = 512;
/// Notify room in BAR0 (0x3000..0x4000).
pub const MAX_QUEUES: usize = (REGION_LEN / NOTIFY_OFF_MULTIPLIER as u64) as usize;

/// PCI vendor id of virtio devices.
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern device ids are 0x1040 + virtio device type.
pub const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
const VIRTIO_PCI_SUBSYSTEM_ID: u16 = 0x0040;

/// virtio_pci_cap.cfg_type values.
pub mod cfg_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
    pub const PCI: u8 = 5;
}
const VIRTIO_CAP_LEN: usize = 16;
const VIRTIO_NOTIFY_CAP_LEN: usize = 20;
const VIRTIO_PCI_CFG_CAP_LEN: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    #[error("{0} queues; a virtio-pci device takes 1..={MAX_QUEUES}")]
    QueueCount(usize),
    #[error("queue {index} maximum size {size} is not a power of two in 1..=32768")]
    QueueMaxSize { index: usize, size: u16 },
    #[error("{0} MSI-X vectors; a virtio-pci device takes 1..={MAX_MSIX_VECTORS}")]
    VectorCount(u16),
    #[error("virtio device type {0} has no PCI device id")]
    DeviceType(u32),
    #[error("cannot create a queue notification eventfd")]
    EventFd(#[source] io::Error),
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("MSI-X setup: {0}")]
    Msix(#[source] io::Error),
}

/// PCI class code for a virtio device type.
fn class_code(device_type: u32) -> u32 {
    match device_type {
        1 => 0x02_00_00, // network, Ethernet
        2 => 0x01_80_00, // mass storage, other
        3 => 0x07_80_00, // communication, other
        _ => 0xff_00_00, // unassigned class
    }
}

fn virtio_cap(cfg: u8, len: usize, bar: u8, offset: u64, length: u64) -> Vec<u8> {
    let mut c = vec![0u8; len];
    c[0] = cap_id::VENDOR;
    c[2] = len as u8;
    c[3] = cfg;
    c[4] = bar;
    c[8..12].copy_from_slice(&(offset as u32).to_le_bytes());
    c[12..16].copy_from_slice(&(length as u32).to_le_bytes());
    c
}

/// Adds the MSI-X capability and the virtio vendor capabilities (common,
/// notify for `queues` queues, ISR, device, PCI configuration access) to
/// `config`; returns the offsets of the MSI-X and PCI-access capabilities.
fn add_capabilities(
    config: &mut PciConfiguration,
    msix: &MsixConfig,
    queues: usize,
) -> Result<(usize, usize), VirtioPciError> {
    let msix_cap = config.add_capability(&msix.capability(
        0,
        MSIX_TABLE_OFFSET as u32,
        0,
        MSIX_PBA_OFFSET as u32,
    ))?;
    config.add_capability(&virtio_cap(
        cfg_type::COMMON,
        VIRTIO_CAP_LEN,
        0,
        COMMON_CONFIG_OFFSET,
        COMMON_CONFIG_LEN,
    ))?;
    let mut notify = virtio_cap(
        cfg_type::NOTIFY,
        VIRTIO_NOTIFY_CAP_LEN,
        0,
        NOTIFY_OFFSET,
        queues as u64 * u64::from(NOTIFY_OFF_MULTIPLIER),
    );
    notify[16..20].copy_from_slice(&NOTIFY_OFF_MULTIPLIER.to_le_bytes());
    config.add_capability(&notify)?;
    config.add_capability(&virtio_cap(
        cfg_type::ISR,
        VIRTIO_CAP_LEN,
        0,
        ISR_OFFSET,
        ISR_LEN,
    ))?;
    config.add_capability(&virtio_cap(
        cfg_type::DEVICE,
        VIRTIO_CAP_LEN,
        0,
        DEVICE_CONFIG_OFFSET,
        REGION_LEN,
    ))?;
    let pci_cfg_cap =
        config.add_capability(&virtio_cap(cfg_type::PCI, VIRTIO_PCI_CFG_CAP_LEN, 0, 0, 0))?;
    // The access window's bar, offset and length are the driver's.
    config.set_writable_bits((pci_cfg_cap + 4) / 4, 0xff);
    config.set_writable_bits((pci_cfg_cap + 8) / 4, u32::MAX);
    config.set_writable_bits((pci_cfg_cap + 12) / 4, u32::MAX);
    Ok((msix_cap, pci_cfg_cap))
}

/// A virtio device on the PCI bus (modern interface only, MSI-X only).
pub struct VirtioPciDevice {
    id: String,
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    config: PciConfiguration,
    msix: Arc<Mutex<MsixConfig>>,
    msix_cap: usize,
    pci_cfg_cap: usize,
    interrupt: Arc<VirtioPciInterrupt>,
    common: CommonConfig,
    kicks: Vec<EventFd>,
    bar0_addr: u64,
    activated: bool,
    /// Set by the transport (bad queue, activation failure); cleared by
    /// reset.
    needs_reset: bool,
    /// The device refused a reset; retried before the next activation.
    reset_pending: bool,
}

impl VirtioPciDevice {
    /// MSI-X vectors the VMM should allocate for `device`: one for
    /// configuration changes plus one per queue.
    pub fn msix_vectors_needed(device: &dyn VirtioDevice) -> u16 {
        let n = device.queue_max_sizes().len().saturating_add(1);
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    /// Wraps `device`. `msix` is the vector group the VMM allocated (see
    /// [`Self::msix_vectors_needed`]; fewer works with drivers that share
    /// vectors); `bar0_addr` is where BAR0 lives ([`BAR0_SIZE`] bytes,
    /// naturally aligned, from the PCI MMIO window).
    pub fn new(
        id: String,
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        msix: Arc<dyn MsiVectors>,
        bar0_addr: u64,
    ) -> Result<Self, VirtioPciError> {
        let max_sizes = device.queue_max_sizes().to_vec();
        if max_sizes.is_empty() || max_sizes.len() > MAX_QUEUES {
            return Err(VirtioPciError::QueueCount(max_sizes.len()));
        }
        for (index, &size) in max_sizes.iter().enumerate() {
            if Queue::new(size).is_err() {
                return Err(VirtioPciError::QueueMaxSize { index, size });
            }
        }
        let nvec = msix.len();
        if nvec == 0 || nvec > MAX_MSIX_VECTORS {
            return Err(VirtioPciError::VectorCount(nvec));
        }
        let device_type = device.device_type();
        let device_id = u16::try_from(device_type)
            .ok()
            .and_then(|t| VIRTIO_PCI_DEVICE_ID_BASE.checked_add(t))
            .ok_or(VirtioPciError::DeviceType(device_type))?;

        let mut config = PciConfiguration::new(PciIds {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id,
            revision: 1,
            class_code: class_code(device_type),
            subsystem_vendor_id: VIRTIO_PCI_VENDOR_ID,
            subsystem_id: VIRTIO_PCI_SUBSYSTEM_ID,
        });
        // No INTx: interrupt pin 0.
        config.add_bar(Bar {
            index: 0,
            addr: bar0_addr,
            size: BAR0_SIZE,
            kind: BarKind::Mmio64,
        })?;

        let msix_config = MsixConfig::new(msix.clone()).map_err(VirtioPciError::Msix)?;
        let (msix_cap, pci_cfg_cap) = add_capabilities(&mut config, &msix_config, max_sizes.len())?;

        let kicks = (0..max_sizes.len())
            .map(|_| EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC))
            .collect::<io::Result<Vec<_>>>()
            .map_err(VirtioPciError::EventFd)?;
        let msix_config = Arc::new(Mutex::new(msix_config));
        let interrupt = Arc::new(VirtioPciInterrupt::new(
            msix_config.clone(),
            msix,
            max_sizes.len(),
        ));
        Ok(Self {
            id,
            device,
            mem,
            config,
            msix: msix_config,
            msix_cap,
            pci_cfg_cap,
            interrupt,
            common: CommonConfig::new(&max_sizes),
            kicks,
            bar0_addr,
            activated: false,
            needs_reset: false,
            reset_pending: false,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The wrapped device model.
    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    /// True between a successful DRIVER_OK and the next reset.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// Guest physical address of BAR0.
    pub fn bar0_addr(&self) -> u64 {
        self.bar0_addr
    }

    /// Queue notification eventfds with their guest physical notify
    /// addresses, for KVM_IOEVENTFD (MMIO, no datamatch; Linux writes 16
    /// bits). Notifications that arrive as MMIO exits signal the same
    /// eventfds.
    pub fn ioeventfds(&self) -> Vec<(u64, &EventFd)> {
        self.kicks
            .iter()
            .enumerate()
            .map(|(i, fd)| (self.notify_addr(i), fd))
            .collect()
    }

    fn notify_addr(&self, queue: usize) -> u64 {
        self.bar0_addr + NOTIFY_OFFSET + queue as u64 * u64::from(NOTIFY_OFF_MULTIPLIER)
    }

    /// device_status as the driver reads it.
    fn status(&self) -> u8 {
        let device_broken = self.activated && self.device.needs_reset();
        if self.needs_reset || device_broken {
            self.common.status | status::DEVICE_NEEDS_RESET
        } else {
            self.common.status
        }
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.common.status;
        // DEVICE_NEEDS_RESET belongs to the device; bits are only set
        // until the next reset.
        let mut new = old | (value & !status::DEVICE_NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let offered = self.device.features();
            let wanted = self.common.driver_features;
            if wanted & !offered == 0 && wanted & VIRTIO_F_VERSION_1 != 0 {
                self.device.ack_features(wanted);
            } else {
                tracing::warn!(
                    id = %self.id,
                    offered = format_args!("{offered:#x}"),
                    wanted = format_args!("{wanted:#x}"),
                    "driver features refused"
                );
                new &= !status::FEATURES_OK;
            }
        }
        let start = new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0;
        if start && new & status::FEATURES_OK == 0 {
            tracing::warn!(id = %self.id, "DRIVER_OK without FEATURES_OK ignored");
            new &= !status::DRIVER_OK;
        }
        self.common.status = new;
        if start && new & status::DRIVER_OK != 0 {
            if let Err(e) = self.activate() {
                tracing::error!(id = %self.id, "virtio device activation failed: {e}");
                self.needs_reset = true;
                if let Err(e) = self.interrupt.trigger(VirtioInterruptType::Config) {
                    tracing::warn!(id = %self.id, "cannot signal DEVICE_NEEDS_RESET: {e}");
                }
            }
        }
    }

    fn build_queue(
        &self,
        index: usize,
        setup: &QueueSetup,
        event_idx: bool,
    ) -> Result<Queue, String> {
        let mut q = Queue::new(setup.max_size).map_err(|e| format!("{e}"))?;
        q.try_set_size(setup.size)
            .map_err(|e| format!("size {}: {e}", setup.size))?;
        q.try_set_desc_table_address(GuestAddress(setup.desc))
            .map_err(|e| format!("descriptor table {:#x}: {e}", setup.desc))?;
        q.try_set_avail_ring_address(GuestAddress(setup.driver))
            .map_err(|e| format!("available ring {:#x}: {e}", setup.driver))?;
        q.try_set_used_ring_address(GuestAddress(setup.device))
            .map_err(|e| format!("used ring {:#x}: {e}", setup.device))?;
        q.set_event_idx(event_idx);
        q.set_ready(true);
        if !q.is_valid(&self.mem) {
            return Err(format!("queue {index} rings are not inside guest RAM"));
        }
        Ok(q)
    }

    fn activate(&mut self) -> Result<(), crate::virtio::ActivateError> {
        use crate::virtio::ActivateError;
        if self.reset_pending {
            if !self.device.reset() {
                return Err(ActivateError::ResetRefused);
            }
            self.reset_pending = false;
        }
        let event_idx = self.common.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = Vec::new();
        for (i, setup) in self.common.queues.iter().enumerate() {
            if !setup.enabled {
                continue;
            }
            let index = i as u16;
            let queue = self
                .build_queue(i, setup, event_idx)
                .map_err(|reason| ActivateError::BadQueue { index, reason })?;
            let kick = self
                .kicks
                .get(i)
                .ok_or_else(|| ActivateError::BadQueue {
                    index,
                    reason: "no notification eventfd".into(),
                })?
                .try_clone()
                .map_err(ActivateError::EventFd)?;
            queues.push(QueueConfig { index, queue, kick });
        }
        let interrupt: Arc<dyn VirtioInterrupt> = self.interrupt.clone();
        self.device.activate(self.mem.clone(), interrupt, queues)?;
        self.activated = true;
        Ok(())
    }

    fn reset(&mut self) {
        if !self.device.reset() {
            // Linux polls device_status until it reads 0, so the status
            // must still clear; the next activation retries the reset and
            // fails with DEVICE_NEEDS_RESET if the device still refuses.
            tracing::warn!(id = %self.id, "virtio device refused to reset");
            self.reset_pending = true;
        }
        self.activated = false;
        self.needs_reset = false;
        self.common.reset();
        self.interrupt.reset();
        for k in &self.kicks {
            // Drain stale notifications (non-blocking: EAGAIN when empty).
            let _ = k.read();
        }
    }

    fn pci_cfg_window(&self) -> (u8, u64, usize) {
        let c = self.pci_cfg_cap;
        let dword = |off: usize| {
            u32::from_le_bytes([
                self.config.read_byte(off),
                self.config.read_byte(off + 1),
                self.config.read_byte(off + 2),
                self.config.read_byte(off + 3),
            ])
        };
        (
            self.config.read_byte(c + 4),
            u64::from(dword(c + 8)),
            dword(c + 12) as usize,
        )
    }

    /// VIRTIO_PCI_CAP_PCI_CFG read of pci_cfg_data: a BAR read through
    /// the configuration space window.
    fn pci_cfg_data_read(&mut self) -> u32 {
        let (bar, offset, len) = self.pci_cfg_window();
        if !matches!(len, 1 | 2 | 4) {
            return 0;
        }
        let mut b = [0u8; 4];
        self.bar_read(bar, offset, &mut b[..len]);
        u32::from_le_bytes(b)
    }

    fn pci_cfg_data_write(&mut self, offset: u64, data: &[u8]) {
        let data_off = self.pci_cfg_cap + 16;
        let old = self.config.read_reg(data_off / 4);
        let Some(new) = merge_dword(old, offset, data) else {
            return;
        };
        self.config.write_raw(data_off, &new.to_le_bytes());
        let (bar, offset, len) = self.pci_cfg_window();
        if matches!(len, 1 | 2 | 4) {
            self.bar_write(bar, offset, &new.to_le_bytes()[..len]);
        }
    }

    fn in_region(offset: u64, len: usize, base: u64, region_len: u64) -> Option<u64> {
        let off = offset.checked_sub(base)?;
        (off.checked_add(len as u64)? <= region_len).then_some(off)
    }
}

impl PciDevice for VirtioPciDevice {
    fn save_state(&self) -> Option<crate::pci::PciDeviceState> {
        Some(crate::pci::PciDeviceState::Virtio(
            VirtioPciDevice::save_state(self),
        ))
    }

    fn restore_state(&mut self, state: &crate::pci::PciDeviceState) -> Result<(), String> {
        match state {
            crate::pci::PciDeviceState::Virtio(s) => VirtioPciDevice::restore_state(self, s),
            _ => Err(format!(
                "{}: the saved state is not a virtio-pci function's",
                self.id
            )),
        }
    }

    fn announce(&mut self) -> bool {
        self.device.announce()
    }

    fn machine_reset(&mut self) {
        // What a guest write of status 0 does: the workers stop and hand
        // their backends back.
        self.reset();
    }

    fn config_read(&mut self, reg: usize) -> u32 {
        if reg == (self.pci_cfg_cap + 16) / 4 {
            return self.pci_cfg_data_read();
        }
        let value = self.config.read_reg(reg);
        self.msix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_cap_reg(self.msix_cap, reg, value)
    }

    fn config_write(&mut self, reg: usize, offset: u64, data: &[u8]) {
        let handled = self
            .msix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_cap_reg(self.msix_cap, reg, offset, data);
        if handled {
            return;
        }
        if reg == (self.pci_cfg_cap + 16) / 4 {
            self.pci_cfg_data_write(offset, data);
            return;
        }
        self.config.write_reg(reg, offset, data);
    }

    fn bars(&self) -> Vec<Bar> {
        self.config.bars()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != 0 || data.is_empty() || data.len() > 8 {
            return;
        }
        let len = data.len();
        if let Some(off) = Self::in_region(offset, len, COMMON_CONFIG_OFFSET, REGION_LEN) {
            let features = self.device.features();
            let status = self.status();
            let v = self
                .common
                .read(off, len, features, status, &self.interrupt);
            extract_bytes(v, 8, 0, data);
        } else if let Some(off) = Self::in_region(offset, len, ISR_OFFSET, REGION_LEN) {
            if off == 0 {
                data[0] = self.interrupt.take_isr();
            }
        } else if let Some(off) = Self::in_region(offset, len, DEVICE_CONFIG_OFFSET, REGION_LEN) {
            self.device.read_config(off, data);
        } else if Self::in_region(offset, len, NOTIFY_OFFSET, REGION_LEN).is_some() {
            // Write-only; reads as zero.
        } else {
            let msix = self.msix.lock().unwrap_or_else(|e| e.into_inner());
            let (table_len, pba_len) = (msix.table_len(), msix.pba_len());
            if let Some(off) = Self::in_region(offset, len, MSIX_TABLE_OFFSET, table_len) {
                msix.read_table(off, data);
            } else if let Some(off) = Self::in_region(offset, len, MSIX_PBA_OFFSET, pba_len) {
                msix.read_pba(off, data);
            }
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar != 0 || data.is_empty() || data.len() > 8 {
            return;
        }
        let len = data.len();
        if let Some(off) = Self::in_region(offset, len, COMMON_CONFIG_OFFSET, REGION_LEN) {
            if let Some(s) = self.common.write(off, data, &self.interrupt) {
                self.write_status(s);
            }
        } else if Self::in_region(offset, len, ISR_OFFSET, REGION_LEN).is_some() {
            // Read-only.
        } else if let Some(off) = Self::in_region(offset, len, DEVICE_CONFIG_OFFSET, REGION_LEN) {
            self.device.write_config(off, data);
        } else if let Some(off) = Self::in_region(offset, len, NOTIFY_OFFSET, REGION_LEN) {
            let q = off / u64::from(NOTIFY_OFF_MULTIPLIER);
            let kick = usize::try_from(q).ok().and_then(|q| self.kicks.get(q));
            match kick {
                Some(fd) if off % u64::from(NOTIFY_OFF_MULTIPLIER) == 0 => {
                    if let Err(e) = fd.write(1) {
                        tracing::warn!(id = %self.id, queue = q, "cannot signal queue: {e}");
                    }
                }
                _ => tracing::debug!(id = %self.id, off, "stray queue notification"),
            }
        } else {
            let mut msix = self.msix.lock().unwrap_or_else(|e| e.into_inner());
            let (table_len, pba_len) = (msix.table_len(), msix.pba_len());
            if let Some(off) = Self::in_region(offset, len, MSIX_TABLE_OFFSET, table_len) {
                msix.write_table(off, data);
            } else if let Some(off) = Self::in_region(offset, len, MSIX_PBA_OFFSET, pba_len) {
                msix.write_pba(off, data);
            }
        }
    }
}
