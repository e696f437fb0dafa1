//! The 82540EM PCI function: configuration space, the BAR0 register file,
//! the BAR1 IOADDR/IODATA window, and transmit on the vCPU thread.

use std::sync::{Arc, Mutex, MutexGuard};

use net::{FrameBackend, Offloads};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::eeprom::Eeprom;
use super::phy::Phy;
use super::regs::{self, ctrl, eerd, icr, rah, status, tctl};
use super::tx::{TxOut, TxRing, TxState, TxStats, DESC_LEN};
use super::worker::{RxHandler, RxWorker};
use super::{
    E1000Counters, E1000Error, BAR0_SIZE, BAR1_SIZE, E1000_DEVICE_ID, E1000_REVISION,
    E1000_SUBSYSTEM_ID, INTEL_VENDOR_ID,
};
use crate::pci::{
    extract_bytes, merge_dword, Bar, BarKind, IntxLine, PciConfiguration, PciDevice, PciIds,
};

const NUM_WORDS: usize = (regs::MMIO_SIZE / 4) as usize;
/// Unknown-register accesses logged before going quiet.
const UNKNOWN_LOG_LIMIT: u64 = 16;

/// What a register write asks of the caller once the lock is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    None,
    /// Wake the rx worker (RDT or RCTL changed).
    KickRx,
    /// Run the transmit ring (TDT or TCTL changed).
    Tx,
    /// CTRL.RST: the registers are back to defaults.
    Reset,
}

/// The register file and everything else the vCPU thread and the rx
/// worker share, behind one mutex.
pub(crate) struct Regs {
    mac: Vec<u32>,
    phy: Phy,
    eeprom: Eeprom,
    mac_addr: [u8; 6],
    /// LSC was raised for the driver's first IMS write with LSC.
    lsc_sent: bool,
    /// Last level given to the INTx line.
    level: bool,
    /// Bumped whenever the driver reprograms the receive ring (RDBAL,
    /// RDBAH, RDLEN, RDH, CTRL.RST), so that the rx worker, which writes a
    /// frame without the lock, does not publish an RDH for another ring.
    pub rx_ring_gen: u64,
    pub counters: E1000Counters,
}

impl Regs {
    pub(super) fn new(mac_addr: [u8; 6]) -> Self {
        let mut regs = Self {
            mac: vec![0; NUM_WORDS],
            phy: Phy::default(),
            eeprom: Eeprom::new(mac_addr, E1000_DEVICE_ID),
            mac_addr,
            lsc_sent: false,
            level: false,
            rx_ring_gen: 0,
            counters: E1000Counters::default(),
        };
        regs.load_defaults();
        regs
    }

    fn load_defaults(&mut self) {
        self.mac.fill(0);
        self.set(regs::CTRL, ctrl::DEFAULT);
        self.set(regs::EERD, eerd::DONE);
        self.set(regs::PBA, 0x0010_0030);
        self.set(regs::LEDCTL, 0x0000_0602);
        self.set(regs::VET, 0x8100);
        let m = self.mac_addr;
        self.set(regs::RA, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.set(
            regs::RA + 4,
            u32::from(u16::from_le_bytes([m[4], m[5]])) | rah::AV,
        );
        self.phy = Phy::default();
        self.eeprom.reset_interface();
        self.lsc_sent = false;
        self.rx_ring_gen = self.rx_ring_gen.wrapping_add(1);
    }

    /// CTRL.RST: everything but the EEPROM contents and the counters.
    fn reset(&mut self, irq: &dyn IntxLine) {
        self.load_defaults();
        self.update_irq(irq, false);
    }

    pub fn get(&self, offset: u64) -> u32 {
        self.mac.get((offset / 4) as usize).copied().unwrap_or(0)
    }

    pub fn set(&mut self, offset: u64, value: u32) {
        if let Some(r) = self.mac.get_mut((offset / 4) as usize) {
            *r = value;
        }
    }

    /// Adds to a 32-bit statistics register (they saturate).
    pub fn add_stat(&mut self, offset: u64, n: u32) {
        let v = self.get(offset).saturating_add(n);
        self.set(offset, v);
    }

    /// Adds to a 64-bit statistics register pair (low dword at `offset`).
    pub fn add_stat64(&mut self, offset: u64, n: u64) {
        let old = u64::from(self.get(offset + 4)) << 32 | u64::from(self.get(offset));
        let v = old.saturating_add(n);
        self.set(offset, v as u32);
        self.set(offset + 4, (v >> 32) as u32);
    }

    /// Sets interrupt causes; the caller then calls [`Self::update_irq`].
    pub fn set_cause(&mut self, cause: u32) {
        let v = self.get(regs::ICR) | cause;
        self.set(regs::ICR, v);
    }

    /// Drives the INTx line from ICR & IMS. `poke` re-asserts an already
    /// asserted line (new causes or a mask change while pending).
    pub fn update_irq(&mut self, irq: &dyn IntxLine, poke: bool) {
        let level = self.get(regs::ICR) & self.get(regs::IMS) != 0;
        if level && (poke || !self.level) {
            irq.set_level(true);
        } else if !level && self.level {
            irq.set_level(false);
        }
        self.level = level;
    }

    fn unknown(&mut self, offset: u64, write: Option<u32>) {
        self.counters.unknown_reg_accesses += 1;
        let n = self.counters.unknown_reg_accesses;
        if n <= UNKNOWN_LOG_LIMIT {
            tracing::debug!(
                offset = format_args!("{offset:#x}"),
                write = ?write,
                occurrences = n,
                "e1000: access to an unimplemented register"
            );
        }
    }

    /// Registers that are plain storage.
    fn is_storage(offset: u64) -> bool {
        const SINGLES: [u64; 35] = [
            regs::CTRL_EXT,
            regs::FLA,
            regs::FCAL,
            regs::FCAH,
            regs::FCT,
            regs::VET,
            regs::ITR,
            regs::FCTTV,
            regs::TXCW,
            regs::RXCW,
            regs::TIPG,
            regs::AIT,
            regs::LEDCTL,
            regs::PBA,
            regs::FCRTL,
            regs::FCRTH,
            regs::RDBAH,
            regs::RDTR,
            regs::RXDCTL,
            regs::RADV,
            regs::RSRPD,
            regs::TXDMAC,
            regs::TDBAH,
            regs::TIDV,
            regs::TXDCTL,
            regs::TADV,
            regs::TSPMT,
            regs::RXCSUM,
            regs::WUC,
            regs::WUFC,
            regs::WUS,
            regs::MANC,
            regs::IPAV,
            regs::WUPL,
            regs::EERD,
        ];
        const RANGES: [(u64, u64); 8] = [
            (regs::MTA, regs::MTA_LEN),
            (regs::VFTA, regs::VFTA_LEN),
            (regs::IP4AT, 0x20),
            (regs::IP6AT, 0x10),
            (regs::WUPM, 0x80),
            (regs::FFLT, 0x40),
            (regs::FFMT, 0x400),
            (regs::FFVT, 0x400),
        ];
        SINGLES.contains(&offset)
            || RANGES
                .iter()
                .any(|&(start, len)| (start..start + len).contains(&offset))
    }

    /// A guest read of the dword at `offset` (4-byte aligned).
    pub(crate) fn read(&mut self, offset: u64, irq: &dyn IntxLine) -> u32 {
        match offset {
            regs::ICR => {
                let v = self.get(regs::ICR);
                self.set(regs::ICR, 0);
                self.update_irq(irq, false);
                v
            }
            regs::STATUS => status::VALUE,
            regs::EECD => self.eeprom.read_eecd(),
            regs::ICS | regs::IMC => 0,
            regs::CTRL
            | regs::MDIC
            | regs::IMS
            | regs::RCTL
            | regs::TCTL
            | regs::RDBAL
            | regs::RDLEN
            | regs::RDH
            | regs::RDT
            | regs::TDBAL
            | regs::TDLEN
            | regs::TDH
            | regs::TDT => self.get(offset),
            o if (regs::STATS_START..regs::STATS_END).contains(&o) => {
                let v = self.get(o);
                self.set(o, 0);
                v
            }
            o if (regs::RA..regs::RA + regs::RA_LEN).contains(&o) => self.get(o),
            o if Self::is_storage(o) => self.get(o),
            o => {
                self.unknown(o, None);
                0
            }
        }
    }

    /// A guest write of the dword at `offset` (4-byte aligned).
    pub(crate) fn write(&mut self, offset: u64, value: u32, irq: &dyn IntxLine) -> Action {
        if matches!(offset, regs::RDBAL | regs::RDBAH | regs::RDLEN | regs::RDH) {
            self.rx_ring_gen = self.rx_ring_gen.wrapping_add(1);
        }
        match offset {
            regs::CTRL => {
                if value & ctrl::RST != 0 {
                    self.reset(irq);
                    return Action::Reset;
                }
                self.set(regs::CTRL, value);
            }
            regs::STATUS => {}
            regs::EECD => self.eeprom.write_eecd(value),
            regs::EERD => {
                if value & eerd::START != 0 {
                    let addr = (value >> eerd::ADDR_SHIFT) & 0xff;
                    let data = self.eeprom.word(addr as usize).unwrap_or(0xffff);
                    self.set(
                        regs::EERD,
                        u32::from(data) << eerd::DATA_SHIFT | addr << eerd::ADDR_SHIFT | eerd::DONE,
                    );
                }
            }
            regs::MDIC => {
                let v = self.phy.mdic(value);
                self.set(regs::MDIC, v);
                self.set_cause(icr::MDAC);
                self.update_irq(irq, true);
            }
            regs::ICR => {
                let v = self.get(regs::ICR) & !value;
                self.set(regs::ICR, v);
                self.update_irq(irq, false);
            }
            regs::ICS => {
                self.set_cause(value & icr::ALL);
                self.update_irq(irq, true);
            }
            regs::IMS => {
                let v = self.get(regs::IMS) | (value & icr::ALL);
                self.set(regs::IMS, v);
                if value & icr::LSC != 0 && !self.lsc_sent {
                    // The link is up from the start: tell the driver once
                    // it listens.
                    self.lsc_sent = true;
                    self.set_cause(icr::LSC);
                }
                self.update_irq(irq, true);
            }
            regs::IMC => {
                let v = self.get(regs::IMS) & !value;
                self.set(regs::IMS, v);
                self.update_irq(irq, false);
            }
            regs::RCTL => {
                self.set(regs::RCTL, value);
                return Action::KickRx;
            }
            regs::TCTL => {
                self.set(regs::TCTL, value);
                return if value & tctl::EN != 0 {
                    Action::Tx
                } else {
                    Action::None
                };
            }
            regs::RDBAL | regs::TDBAL => self.set(offset, value & !0xf),
            regs::RDLEN | regs::TDLEN => self.set(offset, value & 0x000f_ff80),
            regs::RDH | regs::TDH => self.set(offset, value & 0xffff),
            regs::RDT => {
                self.set(regs::RDT, value & 0xffff);
                return Action::KickRx;
            }
            regs::TDT => {
                self.set(regs::TDT, value & 0xffff);
                return Action::Tx;
            }
            o if (regs::STATS_START..regs::STATS_END).contains(&o) => {}
            o if (regs::RA..regs::RA + regs::RA_LEN).contains(&o) => {
                let v = if o % 8 == 4 {
                    value & (rah::AV | rah::AS_MASK | 0xffff)
                } else {
                    value
                };
                self.set(o, v);
            }
            o if Self::is_storage(o) => self.set(o, value),
            o => self.unknown(o, Some(value)),
        }
        Action::None
    }
}

/// State shared with the rx worker.
pub(crate) struct Shared {
    regs: Mutex<Regs>,
    pub irq: Arc<dyn IntxLine>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An Intel 82540EM (e1000) network function.
///
/// Transmit runs on the vCPU thread that writes TDT (or enables TCTL),
/// inside [`PciDevice::bar_write`]: descriptors are processed there, frames
/// written to the backend, DD written back and TXDW raised before the MMIO
/// exit completes. Receive runs on the "{id}-rx" worker thread started by
/// [`E1000::new`] and stopped when the device is dropped.
pub struct E1000 {
    id: String,
    config: PciConfiguration,
    bar0_addr: u64,
    bar1_addr: u64,
    shared: Arc<Shared>,
    backend: Arc<Mutex<Box<dyn FrameBackend>>>,
    mem: GuestMemoryMmap,
    tx: TxState,
    /// IOADDR of the I/O window.
    io_addr: u32,
    rx_kick: EventFd,
    worker: Option<RxWorker>,
}

impl E1000 {
    /// Creates the device and starts its rx worker. `bar0_addr` is a
    /// [`BAR0_SIZE`]-aligned address below 4 GiB in the PCI MMIO window;
    /// `bar1_addr` a [`BAR1_SIZE`]-aligned port in the PCI I/O window
    /// (e.g. 0xc000). `irq` is the function's INTA# line.
    pub fn new(
        id: String,
        mac: [u8; 6],
        mut backend: Box<dyn FrameBackend>,
        mem: GuestMemoryMmap,
        irq: Arc<dyn IntxLine>,
        bar0_addr: u64,
        bar1_addr: u64,
    ) -> Result<E1000, E1000Error> {
        let mut config = PciConfiguration::new(PciIds {
            vendor_id: INTEL_VENDOR_ID,
            device_id: E1000_DEVICE_ID,
            revision: E1000_REVISION,
            class_code: 0x02_00_00,
            subsystem_vendor_id: INTEL_VENDOR_ID,
            subsystem_id: E1000_SUBSYSTEM_ID,
        });
        config.add_bar(Bar {
            index: 0,
            addr: bar0_addr,
            size: BAR0_SIZE,
            kind: BarKind::Mmio32,
        })?;
        config.add_bar(Bar {
            index: 1,
            addr: bar1_addr,
            size: BAR1_SIZE,
            kind: BarKind::Io,
        })?;
        config.set_interrupt_pin(1);
        // Frames must arrive complete and checksummed: the e1000 has no
        // way to hand partial checksums or GSO frames to the driver.
        backend
            .set_offloads(Offloads::NONE)
            .map_err(E1000Error::Offloads)?;
        let backend: Arc<Mutex<Box<dyn FrameBackend>>> = Arc::new(Mutex::new(backend));
        let shared = Arc::new(Shared {
            regs: Mutex::new(Regs::new(mac)),
            irq,
        });
        let rx_kick = EventFd::new(EFD_NONBLOCK).map_err(E1000Error::EventFd)?;
        let handler = RxHandler::new(
            id.clone(),
            shared.clone(),
            backend.clone(),
            mem.clone(),
            rx_kick.try_clone().map_err(E1000Error::EventFd)?,
        )
        .map_err(E1000Error::EventFd)?;
        let worker = RxWorker::spawn(format!("{id}-rx"), handler).map_err(E1000Error::Spawn)?;
        Ok(E1000 {
            id,
            config,
            bar0_addr,
            bar1_addr,
            shared,
            backend,
            mem,
            tx: TxState::new(),
            io_addr: 0,
            rx_kick,
            worker: Some(worker),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Guest physical address of BAR0 (the register file).
    pub fn bar0_addr(&self) -> u64 {
        self.bar0_addr
    }

    /// Port of BAR1 (the IOADDR/IODATA window).
    pub fn bar1_addr(&self) -> u64 {
        self.bar1_addr
    }

    /// Device counters (not the guest-visible statistics registers).
    pub fn counters(&self) -> E1000Counters {
        self.shared.lock().counters
    }

    /// Stops the rx worker (also done on drop). Receive stops for good.
    pub fn stop(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }

    /// A guest read of the register at `offset` (dword-aligned).
    fn reg_read(&mut self, offset: u64) -> u32 {
        let irq = self.shared.irq.clone();
        self.shared.lock().read(offset & !3, irq.as_ref())
    }

    /// A guest write of the register at `offset` (dword-aligned).
    fn reg_write(&mut self, offset: u64, value: u32) {
        let irq = self.shared.irq.clone();
        let action = self.shared.lock().write(offset & !3, value, irq.as_ref());
        match action {
            Action::None => {}
            Action::KickRx => self.kick_rx(),
            Action::Tx => self.run_tx(),
            Action::Reset => {
                self.tx.reset();
                self.kick_rx();
            }
        }
    }

    fn kick_rx(&self) {
        if let Err(e) = self.rx_kick.write(1) {
            tracing::warn!(id = %self.id, error = %e, "e1000: cannot wake the rx worker");
        }
    }

    /// Processes the transmit ring from TDH to TDT.
    fn run_tx(&mut self) {
        let irq = self.shared.irq.clone();
        let (ring, vlan_tpid) = {
            let regs = self.shared.lock();
            if regs.get(regs::TCTL) & tctl::EN == 0 {
                return;
            }
            let ring = TxRing {
                base: u64::from(regs.get(regs::TDBAH)) << 32 | u64::from(regs.get(regs::TDBAL)),
                len: regs.get(regs::TDLEN) / DESC_LEN as u32,
                head: regs.get(regs::TDH),
                tail: regs.get(regs::TDT),
            };
            let vlan = (regs.get(regs::CTRL) & ctrl::VME != 0).then(|| regs.get(regs::VET) as u16);
            (ring, vlan)
        };
        if ring.head == ring.tail {
            return;
        }
        let mut stats = TxStats::default();
        let outcome = {
            let mut backend = self.backend.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = TxOut {
                backend: backend.as_mut(),
                vlan_tpid,
                stats: &mut stats,
            };
            self.tx.process(&self.mem, ring, &mut out)
        };
        let mut regs = self.shared.lock();
        regs.set(regs::TDH, outcome.head);
        let frames = u32::try_from(stats.frames).unwrap_or(u32::MAX);
        regs.add_stat(regs::GPTC, frames);
        regs.add_stat(regs::TPT, frames);
        let fcs_bytes = stats.bytes.saturating_add(4 * stats.frames);
        regs.add_stat64(regs::GOTCL, fcs_bytes);
        regs.add_stat64(regs::TOTL, fcs_bytes);
        regs.add_stat(regs::MPTC, stats.multicast as u32);
        regs.add_stat(regs::BPTC, stats.broadcast as u32);
        regs.add_stat(regs::TSCTC, stats.tso_contexts as u32);
        for (i, &n) in stats.sizes.iter().enumerate() {
            regs.add_stat(regs::PTC64 + 4 * i as u64, n as u32);
        }
        let c = &mut regs.counters;
        c.tx_frames += stats.frames;
        c.tx_bytes += stats.bytes;
        c.tx_dropped += stats.dropped;
        c.tx_ring_errors += stats.ring_errors;
        c.backend_errors += stats.backend_errors;
        let mut cause = 0;
        if outcome.wrote_back {
            cause |= icr::TXDW;
        }
        if outcome.head == ring.tail {
            cause |= icr::TXQE;
        }
        if cause != 0 {
            regs.set_cause(cause);
            regs.update_irq(irq.as_ref(), true);
        }
    }

    fn io_read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset & !3 {
            0 => self.io_addr,
            4 => self.reg_read(u64::from(self.io_addr) % regs::MMIO_SIZE),
            _ => 0,
        };
        extract_bytes(u64::from(value), 4, offset & 3, data);
    }

    fn io_write(&mut self, offset: u64, data: &[u8]) {
        match offset & !3 {
            0 => {
                if let Some(v) = merge_dword(self.io_addr, offset & 3, data) {
                    self.io_addr = v & 0x1_fffc;
                }
            }
            4 => {
                if let Some(v) = merge_dword(0, offset & 3, data) {
                    self.reg_write(u64::from(self.io_addr) % regs::MMIO_SIZE, v);
                }
            }
            _ => {}
        }
    }

    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= regs::MMIO_SIZE {
            data.fill(0xff);
            return;
        }
        match data.len() {
            8 if offset & 7 == 0 => {
                let lo = self.reg_read(offset);
                let hi = self.reg_read(offset + 4);
                data.copy_from_slice(&(u64::from(hi) << 32 | u64::from(lo)).to_le_bytes());
            }
            1 | 2 | 4 if (offset % 4) as usize + data.len() <= 4 => {
                let v = self.reg_read(offset & !3);
                extract_bytes(u64::from(v), 4, offset & 3, data);
            }
            _ => data.fill(0xff),
        }
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        if offset >= regs::MMIO_SIZE {
            return;
        }
        match data.len() {
            8 if offset & 7 == 0 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(data);
                let v = u64::from_le_bytes(b);
                self.reg_write(offset, v as u32);
                self.reg_write(offset + 4, (v >> 32) as u32);
            }
            // Narrow writes land in their byte lanes with the others zero
            // (no read-modify-write: reads have side effects).
            1 | 2 | 4 => {
                if let Some(v) = merge_dword(0, offset & 3, data) {
                    self.reg_write(offset & !3, v);
                }
            }
            _ => {}
        }
    }
}

impl Drop for E1000 {
    fn drop(&mut self) {
        self.stop();
    }
}

impl PciDevice for E1000 {
    fn config_read(&mut self, reg: usize) -> u32 {
        self.config.read_reg(reg)
    }

    fn config_write(&mut self, reg: usize, offset: u64, data: &[u8]) {
        self.config.write_reg(reg, offset, data);
    }

    fn bars(&self) -> Vec<Bar> {
        self.config.bars()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            0 => self.mmio_read(offset, data),
            1 => self.io_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            0 => self.mmio_write(offset, data),
            1 => self.io_write(offset, data),
            _ => {}
        }
    }
}
