//! The e1000 driver's register access and interrupt line: BAR 0 reads and
//! writes (counted, each an MMIO exit for a real guest), the ISR and NAPI
//! steps, bring-up, and a fake INTA# line.

use std::sync::atomic::{AtomicU64, Ordering};

use devices::e1000::{regs as e1k, E1000Counters, E1000};
use devices::pci::{IntxLine, PciDevice};
use vmm_sys_util::eventfd::EventFd;

use super::{E1kModeration, E1K_IMS, E1K_RING, E1K_RX_RING_OFF, E1K_TX_RING_OFF};

/// A fake INTA# line: counts assertions and writes an eventfd the driver
/// thread sleeps on (what an irqfd would do for a real guest).
pub struct BenchIntx {
    pub asserts: AtomicU64,
    pub fd: EventFd,
}

impl IntxLine for BenchIntx {
    fn set_level(&self, asserted: bool) {
        if asserted {
            self.asserts.fetch_add(1, Ordering::Relaxed);
            let _ = self.fd.write(1);
        }
    }
}

/// The guest driver's register access: BAR0 dword reads and writes,
/// counted (each one is an MMIO exit for a real guest).
pub struct E1kRegs {
    pub dev: E1000,
    pub mmio: u64,
}

impl E1kRegs {
    pub fn w(&mut self, reg: u64, v: u32) {
        self.dev.bar_write(0, reg, &v.to_le_bytes());
        self.mmio += 1;
    }

    pub fn r(&mut self, reg: u64) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(0, reg, &mut b);
        self.mmio += 1;
        u32::from_le_bytes(b)
    }

    /// Linux's e1000_intr + NAPI entry: read ICR (clears it), mask all.
    pub fn isr(&mut self) {
        self.r(e1k::ICR);
        self.w(e1k::IMC, !0);
    }

    /// Linux's NAPI completion: unmask.
    pub fn irq_enable(&mut self) {
        self.w(e1k::IMS, E1K_IMS);
    }

    /// Device-side drops and errors so far.
    pub fn drops(&self) -> u64 {
        let c: E1000Counters = self.dev.counters();
        c.tx_dropped
            + c.tx_ring_errors
            + c.rx_filtered
            + c.rx_dropped
            + c.rx_ring_errors
            + c.backend_errors
    }
}

/// Brings the device up as Linux's e1000 driver would (rings, TCTL,
/// interrupt moderation, RCTL with BAM and 2 KiB buffers, IMS).
pub fn e1k_setup(regs: &mut E1kRegs, base: u64, moderation: E1kModeration) {
    let on = u32::from(moderation.on());
    regs.w(e1k::TIDV, 8 * on);
    regs.w(e1k::TADV, 32 * on);
    regs.w(e1k::TDBAL, (base + E1K_TX_RING_OFF) as u32);
    regs.w(e1k::TDBAH, ((base + E1K_TX_RING_OFF) >> 32) as u32);
    regs.w(e1k::TDLEN, E1K_RING * 16);
    regs.w(e1k::TDH, 0);
    regs.w(e1k::TDT, 0);
    regs.w(e1k::TCTL, e1k::tctl::EN | e1k::tctl::PSP);
    regs.w(e1k::RDBAL, (base + E1K_RX_RING_OFF) as u32);
    regs.w(e1k::RDBAH, ((base + E1K_RX_RING_OFF) >> 32) as u32);
    regs.w(e1k::RDLEN, E1K_RING * 16);
    regs.w(e1k::RDH, 0);
    regs.w(e1k::RDT, E1K_RING - 1);
    regs.w(e1k::RDTR, 0);
    regs.w(e1k::RADV, 8 * on);
    regs.w(e1k::ITR, moderation.itr());
    regs.w(e1k::RCTL, e1k::rctl::EN | e1k::rctl::BAM);
    regs.irq_enable();
}
