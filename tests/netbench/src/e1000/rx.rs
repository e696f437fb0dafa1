//! e1000 RX: the driver's descriptor ring over 2 KiB buffers and the
//! benchmark loop that injects frames and cleans the ring NAPI-style.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use devices::e1000::regs as e1k;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::regs::{BenchIntx, E1kRegs};
use super::{
    e1k_desc, E1K_RDT_EVERY, E1K_RING, E1K_RX_BUF, E1K_RX_BUF_OFF, E1K_RX_RING_OFF, E1K_TX_BUF_OFF,
};
use crate::case::RxSetup;
use crate::injector::Injector;
use crate::stats::{Ctl, Stats};
use crate::sys::wait_readable;
use crate::window::Window;

/// RX side of the e1000 driver: `E1K_RING` descriptors over 2 KiB buffers;
/// cleaned descriptors get their status cleared and are handed back by
/// writing RDT every `E1K_RDT_EVERY` buffers (and before going idle).
pub struct E1kRx {
    pub mem: GuestMemoryMmap,
    pub ring: u64,
    pub next_to_clean: u32,
    pub to_refill: u32,
    /// Bytes of the frame being assembled (frames may span buffers).
    pub acc: u64,
    pub frames: u64,
    pub bytes: u64,
}

impl E1kRx {
    pub fn new(mem: &GuestMemoryMmap, base: u64) -> Self {
        let ring = base + E1K_RX_RING_OFF;
        assert!(E1K_RX_BUF_OFF + u64::from(E1K_RING) * E1K_RX_BUF <= E1K_TX_BUF_OFF);
        for i in 0..u64::from(E1K_RING) {
            let buf = base + E1K_RX_BUF_OFF + i * E1K_RX_BUF;
            mem.write_slice(&e1k_desc(buf, 0, 0), GuestAddress(ring + 16 * i))
                .unwrap();
        }
        Self {
            mem: mem.clone(),
            ring,
            next_to_clean: 0,
            to_refill: 0,
            acc: 0,
            frames: 0,
            bytes: 0,
        }
    }

    /// Cleans descriptors with DD; returns how many.
    pub fn reap(&mut self) -> u32 {
        let mut n = 0;
        loop {
            let wb = self.ring + 16 * u64::from(self.next_to_clean) + 8;
            let sta: u8 = self
                .mem
                .load(GuestAddress(wb + 4), Ordering::Acquire)
                .unwrap();
            if sta & e1k::rxd::STA_DD == 0 {
                break;
            }
            let len: u16 = self.mem.read_obj(GuestAddress(wb)).unwrap();
            self.acc += u64::from(u16::from_le(len));
            if sta & e1k::rxd::STA_EOP != 0 {
                // Linux strips the FCS (RCTL.SECRC is left clear).
                self.bytes += self.acc.saturating_sub(4);
                self.frames += 1;
                self.acc = 0;
            }
            self.mem.write_slice(&[0u8; 8], GuestAddress(wb)).unwrap();
            self.next_to_clean = (self.next_to_clean + 1) % E1K_RING;
            self.to_refill += 1;
            n += 1;
        }
        n
    }

    /// Hands cleaned descriptors back (RDT one behind next_to_clean).
    pub fn refill(&mut self, regs: &mut E1kRegs) {
        if self.to_refill > 0 {
            regs.w(e1k::RDT, (self.next_to_clean + E1K_RING - 1) % E1K_RING);
            self.to_refill = 0;
        }
    }
}

/// e1000 RX: the benchmark thread injects (closed loop) and cleans the
/// ring NAPI-style: poll while there is work, then unmask and sleep on the
/// interrupt; on wake, ICR read and IMC as Linux's ISR does.
pub fn e1000_rx(
    mut regs: E1kRegs,
    mut drv: E1kRx,
    intx: Arc<BenchIntx>,
    rx: RxSetup,
    stats: Arc<Stats>,
    ctl: Arc<Ctl>,
) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    let mut win = Window::new(rx.window);
    let (mut waits, mut stalls) = (0u64, 0u64);
    // Start in polling mode (interrupts masked).
    regs.isr();
    ctl.start.wait();
    while !ctl.stopped() {
        let sent = inj.send(win.room(drv.frames)).expect("inject");
        win.injected += sent as u64;
        let reaped = drv.reap();
        if drv.to_refill >= E1K_RDT_EVERY {
            drv.refill(&mut regs);
        }
        if sent == 0 && reaped == 0 {
            drv.refill(&mut regs);
            regs.irq_enable();
            wait_readable(intx.fd.as_raw_fd(), 2);
            let _ = intx.fd.read();
            regs.isr();
            waits += 1;
        }
        stalls += u64::from(win.check(drv.frames));
        stats.set(drv.frames, drv.bytes);
        stats.kicks.store(regs.mmio, Ordering::Relaxed);
        stats.waits.store(waits, Ordering::Relaxed);
        stats.stalls.store(stalls, Ordering::Relaxed);
    }
    stats.dev_drops.store(regs.drops(), Ordering::Relaxed);
}
