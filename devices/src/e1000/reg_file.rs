//! The 82540EM register file: every register's storage, the read and
//! write side effects (ICR read-clear, IMS/IMC, EERD, MDIC, CTRL.RST) and
//! the INTx level, behind the one mutex the vCPU thread and the rx worker
//! share ([`Shared`]).

use std::sync::{Arc, Mutex, MutexGuard};

use super::deadline_timer::{now_ns, DeadlineTimer};
use super::eeprom::{Eeprom, EepromState};
use super::moderation::Moderation;
use super::phy::Phy;
use super::regs::{self, ctrl, eerd, icr, rah, rdtr, status, tctl};
use super::{E1000Counters, E1000_DEVICE_ID};
use crate::pci::IntxLine;
use crate::rate_limit::should_log;

const NUM_WORDS: usize = (regs::MMIO_SIZE / 4) as usize;

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
    /// False when the spec asks for the link down (KubeVirt `state: down`).
    link_up: bool,
    /// Last level given to the INTx line.
    level: bool,
    /// ITR and the delay timers (see `moderation.rs`).
    moderation: Moderation,
    /// Fires when `moderation` has something due; the worker watches it.
    timer: DeadlineTimer,
    /// Bumped whenever the driver reprograms the receive ring (RDBAL,
    /// RDBAH, RDLEN, RDH, CTRL.RST), so that the rx worker, which writes a
    /// frame without the lock, does not publish an RDH for another ring.
    pub rx_ring_gen: u64,
    pub counters: E1000Counters,
}

impl Regs {
    /// Sets the link state STATUS.LU and the PHY report.
    pub(super) fn set_link_up(&mut self, up: bool) {
        self.link_up = up;
        self.phy.set_link_up(up);
    }

    pub(super) fn new(mac_addr: [u8; 6], timer: DeadlineTimer) -> Self {
        let mut regs = Self {
            mac: vec![0; NUM_WORDS],
            phy: Phy::default(),
            eeprom: Eeprom::new(mac_addr, E1000_DEVICE_ID),
            mac_addr,
            lsc_sent: false,
            link_up: true,
            level: false,
            moderation: Moderation::default(),
            timer,
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
        self.phy.set_link_up(self.link_up);
        self.eeprom.reset_interface();
        self.lsc_sent = false;
        // Pending delays and a deferred assertion go with the causes; the
        // timer may still fire once, for nothing.
        self.moderation = Moderation::default();
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
    /// asserted line (new causes or a mask change while pending). Delayed
    /// causes that are due go into ICR first; an assertion inside the ITR
    /// interval waits for its end; the timer is armed for what is left.
    pub fn update_irq(&mut self, irq: &dyn IntxLine, poke: bool) {
        let expired = self.take_expired();
        self.drive_line(irq, poke || expired);
        self.rearm();
    }

    /// Sets the delayed causes that are due; whether there were any.
    fn take_expired(&mut self) -> bool {
        if !self.moderation.has_delays() {
            return false;
        }
        let cause = self.moderation.take_expired(now_ns());
        self.set_cause(cause);
        cause != 0
    }

    fn drive_line(&mut self, irq: &dyn IntxLine, poke: bool) {
        let level = self.get(regs::ICR) & self.get(regs::IMS) != 0;
        if !level {
            if self.level {
                irq.set_level(false);
            }
            self.level = false;
            self.moderation.cancel_deferred();
            return;
        }
        if self.level && !poke {
            return;
        }
        let itr = self.get(regs::ITR);
        if super::moderation::itr_interval_ns(itr) != 0 {
            let now = now_ns();
            if !self.moderation.may_assert(now, itr) {
                self.moderation.defer();
                return;
            }
            self.moderation.asserted(now);
        } else {
            self.moderation.cancel_deferred();
        }
        irq.set_level(true);
        self.level = true;
    }

    /// Arms the timer for whatever moderation has due next.
    fn rearm(&mut self) {
        let watch = if self.level { 0 } else { self.get(regs::IMS) };
        if let Some(deadline) = self.moderation.next_deadline(self.get(regs::ITR), watch) {
            self.timer.arm(deadline);
        }
    }

    /// The rx worker delivered frames: RXT0 now (RDTR = 0) or when the
    /// receive delay ends; the line follows (RXDMT0 may be set too).
    pub fn rx_delivered(&mut self, irq: &dyn IntxLine) {
        let rdtr = self.get(regs::RDTR);
        let now = if rdtr & rdtr::DELAY == 0 { 0 } else { now_ns() };
        let raise = self.moderation.rx_frames(now, rdtr, self.get(regs::RADV));
        if raise {
            self.set_cause(icr::RXT0);
        }
        self.update_irq(irq, raise);
    }

    /// A transmit pass wrote descriptors back, all with IDE (`delayed`)
    /// or not: whether TXDW is to be set now (else the transmit delay
    /// timer sets it). The caller updates the line.
    pub fn tx_written_back(&mut self, delayed: bool) -> bool {
        let tidv = self.get(regs::TIDV);
        let now = if delayed && tidv & rdtr::DELAY != 0 {
            now_ns()
        } else {
            0
        };
        let tadv = self.get(regs::TADV);
        let now_raise = self.moderation.tx_written_back(now, delayed, tidv, tadv);
        if !now_raise {
            self.rearm();
        }
        now_raise
    }

    /// The timer fired (on the worker): raises the delayed causes that are
    /// due and a deferred assertion whose interval ended, and arms the
    /// timer for what is left.
    pub fn on_timer(&mut self, irq: &dyn IntxLine) {
        self.timer.fired();
        let deferred = self.moderation.is_deferred();
        self.update_irq(irq, deferred);
    }

    /// The timer's fd, for the worker's event loop.
    pub fn timer_fd(&self) -> std::os::fd::RawFd {
        self.timer.raw_fd()
    }

    fn unknown(&mut self, offset: u64, write: Option<u32>) {
        self.counters.unknown_reg_accesses += 1;
        let n = self.counters.unknown_reg_accesses;
        if should_log(n) {
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
                // Delays that ran out count, timer or not.
                self.take_expired();
                let v = self.get(regs::ICR);
                self.set(regs::ICR, 0);
                self.update_irq(irq, false);
                v
            }
            regs::STATUS if self.link_up => status::VALUE,
            regs::STATUS => status::VALUE & !status::LU,
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

    /// EERD: a read of EEPROM word ADDR when START is set.
    fn eerd_write(&mut self, value: u32) {
        if value & eerd::START != 0 {
            let addr = (value >> eerd::ADDR_SHIFT) & 0xff;
            let data = self.eeprom.word(addr as usize).unwrap_or(0xffff);
            self.set(
                regs::EERD,
                u32::from(data) << eerd::DATA_SHIFT | addr << eerd::ADDR_SHIFT | eerd::DONE,
            );
        }
    }

    /// Writes of MDIC and the interrupt registers (ICR, ICS, IMS, IMC),
    /// which all end by updating the INTx line.
    fn write_interrupt_reg(&mut self, offset: u64, value: u32, irq: &dyn IntxLine) {
        match offset {
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
                if value & icr::LSC != 0 && !self.lsc_sent && self.link_up {
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
            _ => {}
        }
    }

    /// Writes of ITR and RDTR, which may raise what waits.
    fn write_moderation_reg(&mut self, offset: u64, value: u32, irq: &dyn IntxLine) {
        if offset == regs::ITR {
            self.set(regs::ITR, value);
            // A waiting assertion goes by the new interval.
            if self.moderation.is_deferred() {
                self.update_irq(irq, true);
            }
            return;
        }
        // RDTR.FPD (self-clearing): the pending RXT0 now.
        if value & rdtr::FPD != 0 && self.moderation.flush_rx() {
            self.set_cause(icr::RXT0);
            self.update_irq(irq, true);
        }
        self.set(regs::RDTR, value & !rdtr::FPD);
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
            regs::EERD => self.eerd_write(value),
            regs::MDIC | regs::ICR | regs::ICS | regs::IMS | regs::IMC => {
                self.write_interrupt_reg(offset, value, irq)
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
            regs::ITR | regs::RDTR => self.write_moderation_reg(offset, value, irq),
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
    pub fn new(mac: [u8; 6], irq: Arc<dyn IntxLine>) -> std::io::Result<Self> {
        Ok(Self {
            regs: Mutex::new(Regs::new(mac, DeadlineTimer::new()?)),
            irq,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The register file of a snapshot. The ring registers (RDBAL..RDT,
/// TDBAL..TDT) are in `regs`; counters and the link state are the
/// target's own (the link follows the target's spec).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct RegsSaved {
    /// (byte offset, value) of every non-zero register.
    regs: Vec<(u32, u32)>,
    phy: Vec<u16>,
    eeprom: EepromState,
    lsc_sent: bool,
}

impl Regs {
    /// The register file; causes moderation still delays are saved as
    /// set in ICR (the target raises them at once, see [`Self::restore`]).
    pub(super) fn save(&self) -> RegsSaved {
        let pending = self.moderation.pending_causes();
        RegsSaved {
            regs: self
                .mac
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let off = (i * 4) as u64;
                    (off, if off == regs::ICR { v | pending } else { v })
                })
                .filter(|&(_, v)| v != 0)
                .map(|(off, v)| (off as u32, v))
                .collect(),
            phy: self.phy.save(),
            eeprom: self.eeprom.save(),
            lsc_sent: self.lsc_sent,
        }
    }

    /// Puts a saved register file back and drives the INTx line from it.
    pub(super) fn restore(&mut self, s: &RegsSaved, irq: &dyn IntxLine) -> Result<(), String> {
        if let Some((off, _)) = s
            .regs
            .iter()
            .find(|(o, _)| u64::from(*o) >= regs::MMIO_SIZE || o % 4 != 0)
        {
            return Err(format!("saved register offset {off:#x} is out of range"));
        }
        self.phy.restore(&s.phy)?;
        self.eeprom.restore(&s.eeprom)?;
        self.mac.fill(0);
        for &(off, v) in &s.regs {
            self.set(u64::from(off), v);
        }
        let up = self.link_up;
        self.set_link_up(up);
        self.lsc_sent = s.lsc_sent;
        // The rx worker must not finish a frame for the ring it had before.
        self.rx_ring_gen = self.rx_ring_gen.wrapping_add(1);
        // No ITR interval runs yet: causes in ICR (those the source still
        // delayed among them) assert the line now.
        self.moderation = Moderation::default();
        self.level = false;
        self.update_irq(irq, true);
        Ok(())
    }
}
