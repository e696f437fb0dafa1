//! e1000 TX: the driver's descriptor ring (legacy descriptors, or a TSO
//! context and 4 KiB data descriptors) and the benchmark loop over it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use devices::e1000::regs as e1k;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::regs::{BenchIntx, E1kRegs};
use super::{e1k_desc, E1K_MAX_TXD_DATA, E1K_RING, E1K_TX_BATCH, E1K_TX_BUF_OFF, E1K_TX_RING_OFF};
use crate::frames::{
    build_frame, csum_add, csum_fold, Size, GUEST_IP, GUEST_MAC, L4_HDRS, PEER_IP, PEER_MAC,
    TSO_MSS,
};
use crate::stats::{Ctl, Stats};
use crate::virtio::PAIR_MEM;

/// The e1000 frame a Linux guest hands the device: for TSO, IP total
/// length and checksum zeroed and the TCP checksum field holding the
/// pseudo-header sum without length (e1000_tso); otherwise complete.
pub fn e1k_frame(size: Size, sport: u16) -> Vec<u8> {
    let mut f = build_frame(size, GUEST_MAC, PEER_MAC, sport);
    if size.gso {
        f[16..18].fill(0);
        f[24..26].fill(0);
        let mut pseudo = csum_add(0, &GUEST_IP);
        pseudo = csum_add(pseudo, &PEER_IP);
        pseudo += 6;
        f[50..52].copy_from_slice(&csum_fold(pseudo).to_be_bytes());
    }
    f
}

/// TX side of the e1000 driver. Non-TSO frames take one legacy descriptor
/// (EOP | IFCS | RS; the frame carries complete checksums). TSO packets
/// take a context descriptor (TSE, IPv4, TCP, MSS 1448) and data
/// descriptors of at most 4 KiB (IXSM | TXSM; EOP | RS on the last).
pub struct E1kTx {
    pub mem: GuestMemoryMmap,
    pub ring: u64,
    pub tail: u32,
    /// Ring index of the RS descriptor of every packet posted, oldest first.
    pub in_flight: VecDeque<u32>,
    /// Descriptors posted and not yet cleaned.
    pub used: u32,
    pub bufs: Vec<u64>,
    pub next_buf: usize,
    pub size: Size,
    pub frames: u64,
    /// Set IDE on every descriptor (Linux does when TIDV is not 0).
    pub ide: bool,
}

impl E1kTx {
    pub fn new(mem: &GuestMemoryMmap, base: u64, size: Size, sport: u16) -> Self {
        let frame = e1k_frame(size, sport);
        let stride = (frame.len() as u64).next_multiple_of(4096);
        let n = ((PAIR_MEM - E1K_TX_BUF_OFF) / stride).min(u64::from(E1K_RING / 2));
        let bufs: Vec<u64> = (0..n).map(|i| base + E1K_TX_BUF_OFF + i * stride).collect();
        for &b in &bufs {
            mem.write_slice(&frame, GuestAddress(b)).unwrap();
        }
        let ring = base + E1K_TX_RING_OFF;
        mem.write_slice(&vec![0u8; 16 * E1K_RING as usize], GuestAddress(ring))
            .unwrap();
        Self {
            mem: mem.clone(),
            ring,
            tail: 0,
            in_flight: VecDeque::new(),
            used: 0,
            bufs,
            next_buf: 0,
            size,
            frames: 0,
            ide: false,
        }
    }

    pub fn descs_per_packet(&self) -> u32 {
        if self.size.gso {
            1 + self.size.frame_len.div_ceil(E1K_MAX_TXD_DATA) as u32
        } else {
            1
        }
    }

    pub fn put(&mut self, d: [u8; 16]) {
        let at = self.ring + 16 * u64::from(self.tail);
        self.mem.write_slice(&d, GuestAddress(at)).unwrap();
        self.tail = (self.tail + 1) % E1K_RING;
        self.used += 1;
    }

    /// Writes descriptors for up to `E1K_TX_BATCH` packets (as many as
    /// fit, one slot always empty); returns how many.
    pub fn post(&mut self) -> u32 {
        use e1k::txd;
        let per = self.descs_per_packet();
        let room = (E1K_RING - 1 - self.used) / per;
        let n = room.min(E1K_TX_BATCH);
        let ide = if self.ide { txd::CMD_IDE } else { 0 };
        let cmd = |c: u8| u32::from(c | ide) << 24;
        for _ in 0..n {
            let buf = self.bufs[self.next_buf];
            self.next_buf = (self.next_buf + 1) % self.bufs.len();
            let len = self.size.frame_len;
            if !self.size.gso {
                let c = txd::CMD_EOP | txd::CMD_IFCS | txd::CMD_RS;
                self.in_flight.push_back(self.tail);
                self.put(e1k_desc(buf, len as u32 | cmd(c), 0));
                continue;
            }
            // Context: IPCSS 14, IPCSO 24, IPCSE 33, TUCSS 34, TUCSO 50,
            // TUCSE 0 (to the end), PAYLEN, TUCMD, HDRLEN 54, MSS.
            let mut ctx = [0u8; 16];
            ctx[0] = 14;
            ctx[1] = 24;
            ctx[2..4].copy_from_slice(&33u16.to_le_bytes());
            ctx[4] = 34;
            ctx[5] = 50;
            let tucmd = txd::CMD_DEXT | txd::CMD_TSE | txd::TUCMD_IP | txd::TUCMD_TCP;
            let lower = (len - L4_HDRS) as u32 | cmd(tucmd);
            ctx[8..12].copy_from_slice(&lower.to_le_bytes());
            ctx[13] = L4_HDRS as u8;
            ctx[14..16].copy_from_slice(&TSO_MSS.to_le_bytes());
            self.put(ctx);
            let popts = u32::from(txd::POPTS_IXSM | txd::POPTS_TXSM) << 8;
            let mut off = 0;
            while off < len {
                let chunk = (len - off).min(E1K_MAX_TXD_DATA);
                let last = off + chunk == len;
                let mut c = txd::CMD_DEXT | txd::CMD_TSE | txd::CMD_IFCS;
                if last {
                    c |= txd::CMD_EOP | txd::CMD_RS;
                    self.in_flight.push_back(self.tail);
                }
                let lower = chunk as u32 | txd::DTYP_DATA | cmd(c);
                self.put(e1k_desc(buf + off as u64, lower, popts));
                off += chunk;
            }
        }
        n
    }

    /// Cleans packets whose RS descriptor has DD (e1000_clean_tx_irq).
    pub fn reap(&mut self) -> u32 {
        let per = self.descs_per_packet();
        let mut n = 0;
        while let Some(&i) = self.in_flight.front() {
            let at = GuestAddress(self.ring + 16 * u64::from(i) + 12);
            let sta: u8 = self.mem.load(at, Ordering::Acquire).unwrap();
            if sta & e1k::txd::STA_DD == 0 {
                break;
            }
            self.mem.store(0u8, at, Ordering::Relaxed).unwrap();
            self.in_flight.pop_front();
            self.used -= per;
            n += 1;
        }
        self.frames += u64::from(n);
        n
    }
}

/// e1000 TX: the driver thread is the vCPU. Posting a batch and writing
/// TDT runs the device's transmit inside that write; the TXDW interrupt
/// then runs the "ISR" (ICR read, IMC), the clean and the re-enable (IMS).
pub fn e1000_tx(
    mut regs: E1kRegs,
    mut drv: E1kTx,
    intx: Arc<BenchIntx>,
    stats: Arc<Stats>,
    ctl: Arc<Ctl>,
) {
    let frame_len = drv.size.frame_len as u64;
    let mut seen = intx.asserts.load(Ordering::Relaxed);
    ctl.start.wait();
    while !ctl.stopped() {
        let posted = drv.post();
        if posted > 0 {
            regs.w(e1k::TDT, drv.tail);
        }
        let now = intx.asserts.load(Ordering::Relaxed);
        if now != seen {
            regs.isr();
            drv.reap();
            regs.irq_enable();
            // The re-enable may assert again for causes set meanwhile.
            seen = intx.asserts.load(Ordering::Relaxed);
        } else if posted == 0 {
            drv.reap();
        }
        stats.set(drv.frames, drv.frames * frame_len);
        stats.kicks.store(regs.mmio, Ordering::Relaxed);
    }
    stats.dev_drops.store(regs.drops(), Ordering::Relaxed);
}
