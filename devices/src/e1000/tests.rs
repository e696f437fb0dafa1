//! Unprivileged tests: the test plays the driver through BAR accesses and
//! guest memory, a seqpacket pair plays the tap, and a fake INTx line
//! records levels.

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_backend::{seqpacket_pair, FrameBackend, SeqpacketBackend};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::eeprom::{CHECKSUM_WORD, EEPROM_SUM, EEPROM_WORDS};
use super::phy;
use super::reg_file::Regs;
use super::regs::*;
use super::rx::{self, crc32, RxResult};
use super::tx::{fold, ones_sum};
use super::*;
use crate::pci::{BarKind, PciDevice};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const PEER: [u8; 6] = [0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc];
const MEM_SIZE: usize = 0x100_0000;
const TX_RING: u64 = 0x1_0000;
const RX_RING: u64 = 0x2_0000;
const TX_BUFS: u64 = 0x10_0000;
const RX_BUFS: u64 = 0x40_0000;
const RX_BUF_STRIDE: u64 = 0x4000;
const BAR0: u64 = 0xc002_0000;
const BAR1: u64 = 0xc000;
const OUTSIDE: u64 = 0xf000_0000;

#[derive(Default)]
struct FakeIntx {
    levels: Mutex<Vec<bool>>,
}

impl FakeIntx {
    fn level(&self) -> bool {
        self.levels.lock().unwrap().last().copied().unwrap_or(false)
    }

    /// How many times the line was asserted (raised or poked).
    fn asserts(&self) -> usize {
        self.levels.lock().unwrap().iter().filter(|&&l| l).count()
    }
}

impl IntxLine for FakeIntx {
    fn set_level(&self, asserted: bool) {
        self.levels.lock().unwrap().push(asserted);
    }
}

struct Harness {
    dev: E1000,
    net: SeqpacketBackend,
    mem: GuestMemoryMmap,
    irq: Arc<FakeIntx>,
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

impl Harness {
    /// A migrated e1000: the same guest memory, a new backend and line,
    /// (`activate`d or not before) restored from the saved `json`.
    fn migration_target(mem: &GuestMemoryMmap, activate: bool, json: &[u8]) -> Self {
        let (dev_end, net) = seqpacket_pair().unwrap();
        let irq = Arc::new(FakeIntx::default());
        let mut dev = Self::inactive_device(dev_end, mem, &irq);
        if activate {
            dev.activate().unwrap();
        }
        dev.restore_state(&serde_json::from_slice(json).unwrap())
            .unwrap();
        Self {
            dev,
            net,
            mem: mem.clone(),
            irq,
        }
    }

    fn new() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let (dev_end, net) = seqpacket_pair().unwrap();
        let irq = Arc::new(FakeIntx::default());
        let mut dev = Self::inactive_device(dev_end, &mem, &irq);
        dev.activate().unwrap();
        Self { dev, net, mem, irq }
    }

    fn inactive_device(
        dev_end: SeqpacketBackend,
        mem: &GuestMemoryMmap,
        irq: &Arc<FakeIntx>,
    ) -> E1000 {
        E1000::new(
            "e1000-test".into(),
            MAC,
            Box::new(dev_end),
            mem.clone(),
            irq.clone(),
            BAR0,
            BAR1,
        )
        .unwrap()
    }

    fn r(&mut self, off: u64) -> u32 {
        let mut d = [0u8; 4];
        self.dev.bar_read(0, off, &mut d);
        u32::from_le_bytes(d)
    }

    fn w(&mut self, off: u64, v: u32) {
        self.dev.bar_write(0, off, &v.to_le_bytes());
    }

    fn io_r(&mut self, off: u64) -> u32 {
        self.dev.bar_write(1, 0, &(off as u32).to_le_bytes());
        let mut d = [0u8; 4];
        self.dev.bar_read(1, 4, &mut d);
        u32::from_le_bytes(d)
    }

    fn io_w(&mut self, off: u64, v: u32) {
        self.dev.bar_write(1, 0, &(off as u32).to_le_bytes());
        self.dev.bar_write(1, 4, &v.to_le_bytes());
    }

    fn eerd(&mut self, addr: u32) -> u16 {
        self.w(EERD, eerd::START | addr << eerd::ADDR_SHIFT);
        let v = self.r(EERD);
        assert_ne!(v & eerd::DONE, 0);
        assert_eq!((v >> eerd::ADDR_SHIFT) & 0xff, addr);
        (v >> eerd::DATA_SHIFT) as u16
    }

    fn mdic(&mut self, phy_addr: u32, reg: u32, write: Option<u16>) -> u32 {
        let op = match write {
            Some(v) => mdic::OP_WRITE | u32::from(v),
            None => mdic::OP_READ,
        };
        self.w(
            MDIC,
            reg << mdic::REG_SHIFT | phy_addr << mdic::PHY_SHIFT | op,
        );
        let v = self.r(MDIC);
        assert_ne!(v & mdic::READY, 0);
        v
    }

    fn setup_tx(&mut self, descs: u32) {
        self.w(TDBAL, TX_RING as u32);
        self.w(TDBAH, 0);
        self.w(TDLEN, descs * 16);
        self.w(TDH, 0);
        self.w(TDT, 0);
        self.w(TCTL, tctl::EN | tctl::PSP);
    }

    fn put_tx_desc(&self, index: u32, desc: [u8; 16]) {
        self.mem
            .write_slice(&desc, GuestAddress(TX_RING + 16 * u64::from(index)))
            .unwrap();
    }

    fn tx_status(&self, index: u32) -> u8 {
        self.mem
            .read_obj::<u8>(GuestAddress(TX_RING + 16 * u64::from(index) + 12))
            .unwrap()
    }

    /// Frames received by "the network" so far (virtio-net header checked
    /// and stripped).
    fn net_frames(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70000];
        loop {
            match self.net.read_frame(&mut buf) {
                Ok(n) => {
                    assert!(n >= VNET_HDR_LEN);
                    assert_eq!(&buf[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
                    out.push(buf[VNET_HDR_LEN..n].to_vec());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn setup_rx(&mut self, descs: u32, rctl_val: u32) {
        for i in 0..descs {
            let buf = RX_BUFS + RX_BUF_STRIDE * u64::from(i);
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&buf.to_le_bytes());
            self.mem
                .write_slice(&d, GuestAddress(RX_RING + 16 * u64::from(i)))
                .unwrap();
        }
        self.w(RDBAL, RX_RING as u32);
        self.w(RDBAH, 0);
        self.w(RDLEN, descs * 16);
        self.w(RDH, 0);
        self.w(RDT, descs - 1);
        self.w(RCTL, rctl_val | rctl::EN);
    }

    fn send(&mut self, frame: &[u8]) {
        let hdr = [0u8; VNET_HDR_LEN];
        self.net
            .write_frame(&[IoSlice::new(&hdr), IoSlice::new(frame)])
            .unwrap();
    }

    fn wait_rdh(&mut self, want: u32) -> bool {
        wait_for(|| self.r(RDH) == want)
    }

    /// (length, status, errors, special) of RX descriptor `i`.
    fn rx_desc(&self, i: u32) -> (u16, u8, u8, u16) {
        let mut wb = [0u8; 8];
        self.mem
            .read_slice(&mut wb, GuestAddress(RX_RING + 16 * u64::from(i) + 8))
            .unwrap();
        (
            u16::from_le_bytes([wb[0], wb[1]]),
            wb[4],
            wb[5],
            u16::from_le_bytes([wb[6], wb[7]]),
        )
    }

    fn rx_buf(&self, i: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.mem
            .read_slice(&mut b, GuestAddress(RX_BUFS + RX_BUF_STRIDE * u64::from(i)))
            .unwrap();
        b
    }
}

// ---- descriptor and packet builders ----

fn legacy_desc(addr: u64, len: u16, cmd: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&len.to_le_bytes());
    d[11] = cmd;
    d
}

fn data_desc(addr: u64, len: u32, dcmd: u8, popts: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    let lower = (len & 0xf_ffff) | txd::DTYP_DATA | u32::from(dcmd | txd::CMD_DEXT) << 24;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = popts;
    d
}

#[derive(Clone, Copy, Default)]
struct Ctx {
    ipcss: u8,
    ipcso: u8,
    ipcse: u16,
    tucss: u8,
    tucso: u8,
    tucse: u16,
    paylen: u32,
    tucmd: u8,
    hdr_len: u8,
    mss: u16,
}

fn ctx_desc(c: Ctx) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0] = c.ipcss;
    d[1] = c.ipcso;
    d[2..4].copy_from_slice(&c.ipcse.to_le_bytes());
    d[4] = c.tucss;
    d[5] = c.tucso;
    d[6..8].copy_from_slice(&c.tucse.to_le_bytes());
    let lower = (c.paylen & 0xf_ffff) | u32::from(c.tucmd | txd::CMD_DEXT) << 24;
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[13] = c.hdr_len;
    d[14..16].copy_from_slice(&c.mss.to_le_bytes());
    d
}

const SRC_IP: [u8; 4] = [10, 0, 2, 15];
const DST_IP: [u8; 4] = [10, 0, 2, 2];

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn ipv4(total_len: u16, id: u16, proto: u8) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total_len.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&SRC_IP);
    h.extend_from_slice(&DST_IP);
    h
}

fn set_ip_checksum(frame: &mut [u8]) {
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = !fold(ones_sum(&frame[14..34]));
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

fn pseudo_sum(proto: u8, l4_len: usize) -> u32 {
    let mut p = Vec::new();
    p.extend_from_slice(&SRC_IP);
    p.extend_from_slice(&DST_IP);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(l4_len as u16).to_be_bytes());
    ones_sum(&p)
}

fn ip_checksum_ok(frame: &[u8]) -> bool {
    fold(ones_sum(&frame[14..34])) == 0xffff
}

fn l4_checksum_ok(frame: &[u8], proto: u8) -> bool {
    let l4 = &frame[34..];
    fold(pseudo_sum(proto, l4.len()) + ones_sum(l4)) == 0xffff
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

// ---- PCI ----

#[test]
fn pci_identity_and_bars() {
    let mut h = Harness::new();
    assert_eq!(h.dev.config_read(0), 0x100e_8086);
    assert_eq!(h.dev.config_read(2), 0x0200_0003);
    assert_eq!(h.dev.config_read(11), 0x001e_8086);
    assert_eq!((h.dev.config_read(15) >> 8) & 0xff, 1, "INTA#");
    assert_eq!(h.dev.config_read(4), BAR0 as u32);
    assert_eq!(h.dev.config_read(5), BAR1 as u32 | 1);
    // The guest may write the interrupt line.
    h.dev.config_write(15, 0, &[11]);
    assert_eq!(h.dev.config_read(15) & 0xff, 11);
    let bars = h.dev.bars();
    assert_eq!(bars.len(), 2);
    assert_eq!(
        (bars[0].index, bars[0].size, bars[0].kind),
        (0, BAR0_SIZE, BarKind::Mmio32)
    );
    assert_eq!(
        (bars[1].index, bars[1].size, bars[1].kind),
        (1, BAR1_SIZE, BarKind::Io)
    );
    assert_eq!(h.dev.bar0_addr(), BAR0);
    assert_eq!(h.dev.bar1_addr(), BAR1);
}

#[test]
fn bad_bar_addresses_are_refused() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let (a, _b) = seqpacket_pair().unwrap();
    let irq: Arc<dyn IntxLine> = Arc::new(FakeIntx::default());
    let err = E1000::new("x".into(), MAC, Box::new(a), mem, irq, 0xc000_1000, BAR1);
    assert!(matches!(err, Err(E1000Error::Pci(_))));
}

#[test]
fn status_reports_link_up_gigabit_full_duplex() {
    let mut h = Harness::new();
    let s = h.r(STATUS);
    assert_ne!(s & status::LU, 0);
    assert_ne!(s & status::FD, 0);
    assert_ne!(s & status::SPEED_1000, 0);
    assert_eq!(h.r(CTRL) & ctrl::SLU, ctrl::SLU);
    // RAL0/RAH0 hold the MAC.
    assert_eq!(
        h.r(RA),
        u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]])
    );
    assert_eq!(h.r(RA + 4), 0x5634 | rah::AV);
}

#[test]
fn link_down_clears_status_lu_and_the_phy_link() {
    let mut h = Harness::new();
    h.dev.set_link_up(false);
    assert_eq!(h.r(STATUS) & status::LU, 0);
    assert_ne!(h.r(STATUS) & status::FD, 0);
    let st = h.mdic(1, phy::PHY_STATUS as u32, None) as u16;
    assert_eq!(st & phy::STATUS_LINK, 0);
    let spec = h.mdic(1, phy::M88E1000_PHY_SPEC_STATUS as u32, None) as u16;
    assert_eq!(spec & (1 << 10), 0);
    // No link-status-change interrupt announces a link that is down.
    h.w(IMS, icr::LSC);
    assert_eq!(h.r(ICR) & icr::LSC, 0);
    h.dev.set_link_up(true);
    assert_ne!(h.r(STATUS) & status::LU, 0);
}

// ---- EEPROM ----

#[test]
fn eeprom_via_eerd() {
    let mut h = Harness::new();
    let words: Vec<u16> = (0..EEPROM_WORDS as u32).map(|a| h.eerd(a)).collect();
    let sum = words.iter().fold(0u16, |a, &w| a.wrapping_add(w));
    assert_eq!(sum, EEPROM_SUM);
    assert_eq!(words[0], 0x5452);
    assert_eq!(words[1], 0x1200);
    assert_eq!(words[2], 0x5634);
    assert_eq!(words[11], E1000_DEVICE_ID);
    assert_eq!(words[CHECKSUM_WORD], h.eerd(CHECKSUM_WORD as u32));
}

/// Linux's e1000 microwire sequence (e1000_acquire_eeprom,
/// e1000_shift_out_ee_bits, e1000_shift_in_ee_bits, e1000_standby_eeprom,
/// e1000_release_eeprom).
fn bitbang_read(h: &mut Harness, addr: u16) -> u16 {
    let mut e = h.r(EECD);
    assert_ne!(e & eecd::PRES, 0);
    assert_eq!(e & eecd::SIZE, 0, "64-word part");
    e |= eecd::REQ;
    h.w(EECD, e);
    e = h.r(EECD);
    assert_ne!(e & eecd::GNT, 0);
    e &= !(eecd::DI | eecd::SK);
    h.w(EECD, e);
    e |= eecd::CS;
    h.w(EECD, e);

    let shift_out = |h: &mut Harness, e: &mut u32, data: u16, count: u32| {
        let mut mask = 1u16 << (count - 1);
        *e &= !eecd::DO;
        while mask != 0 {
            *e &= !eecd::DI;
            if data & mask != 0 {
                *e |= eecd::DI;
            }
            h.w(EECD, *e);
            *e |= eecd::SK;
            h.w(EECD, *e);
            *e &= !eecd::SK;
            h.w(EECD, *e);
            mask >>= 1;
        }
        *e &= !eecd::DI;
        h.w(EECD, *e);
    };
    shift_out(h, &mut e, 0b110, 3);
    shift_out(h, &mut e, addr, 6);

    e = h.r(EECD) & !(eecd::DO | eecd::DI);
    let mut data = 0u16;
    for _ in 0..16 {
        data <<= 1;
        e |= eecd::SK;
        h.w(EECD, e);
        e = h.r(EECD) & !eecd::DI;
        if e & eecd::DO != 0 {
            data |= 1;
        }
        e &= !eecd::SK;
        h.w(EECD, e);
    }

    // Standby.
    e &= !(eecd::CS | eecd::SK);
    h.w(EECD, e);
    e |= eecd::SK;
    h.w(EECD, e);
    e |= eecd::CS;
    h.w(EECD, e);
    e &= !eecd::SK;
    h.w(EECD, e);
    // Release.
    e &= !(eecd::CS | eecd::DI);
    h.w(EECD, e);
    e |= eecd::SK;
    h.w(EECD, e);
    e &= !eecd::SK;
    h.w(EECD, e);
    e &= !eecd::REQ;
    h.w(EECD, e);
    data
}

#[test]
fn eeprom_via_microwire_bitbang() {
    let mut h = Harness::new();
    let mut sum = 0u16;
    for addr in 0..EEPROM_WORDS as u16 {
        let w = bitbang_read(&mut h, addr);
        assert_eq!(w, h.eerd(u32::from(addr)), "word {addr}");
        sum = sum.wrapping_add(w);
    }
    assert_eq!(sum, EEPROM_SUM);
    let mac_words = [0u16, 1, 2].map(|a| bitbang_read(&mut h, a));
    assert_eq!(mac_words, [0x5452, 0x1200, 0x5634]);
}

// ---- PHY ----

#[test]
fn mdic_phy_registers() {
    let mut h = Harness::new();
    let st = h.mdic(1, phy::PHY_STATUS as u32, None);
    assert_eq!(st & mdic::ERROR, 0);
    let st = st as u16;
    assert_ne!(st & phy::STATUS_LINK, 0);
    assert_ne!(st & phy::STATUS_AN_COMPLETE, 0);
    assert_eq!(h.mdic(1, phy::PHY_ID1 as u32, None) as u16, 0x0141);
    assert_eq!(h.mdic(1, phy::PHY_ID2 as u32, None) as u16 & 0xfff0, 0x0c20);
    // Linux's M88 checks.
    let spec = h.mdic(1, phy::M88E1000_PHY_SPEC_STATUS as u32, None) as u16;
    assert_eq!(spec >> 14, 2, "1000 Mb/s");
    // Writable registers store; reset and AN restart self-clear.
    h.mdic(1, phy::PHY_AUTONEG_ADV as u32, Some(0x0101));
    assert_eq!(h.mdic(1, phy::PHY_AUTONEG_ADV as u32, None) as u16, 0x0101);
    h.mdic(1, phy::PHY_CTRL as u32, Some(0x1140 | 0x8000 | 0x0200));
    assert_eq!(h.mdic(1, phy::PHY_CTRL as u32, None) as u16, 0x1140);
    // Read-only registers ignore writes.
    h.mdic(1, phy::PHY_ID1 as u32, Some(0xdead));
    assert_eq!(h.mdic(1, phy::PHY_ID1 as u32, None) as u16, 0x0141);
    // Other PHY addresses do not answer.
    assert_ne!(h.mdic(2, phy::PHY_STATUS as u32, None) & mdic::ERROR, 0);
}

// ---- interrupts ----

#[test]
fn icr_ims_imc_drive_the_line() {
    let mut h = Harness::new();
    h.w(IMS, icr::RXT0 | icr::TXDW);
    assert!(!h.irq.level());
    h.w(ICS, icr::RXT0);
    assert!(h.irq.level());
    h.w(IMC, icr::RXT0);
    assert!(!h.irq.level());
    assert_eq!(h.r(IMS), icr::TXDW);
    h.w(IMS, icr::RXT0);
    assert!(h.irq.level(), "pending cause unmasked");
    // Read clears.
    assert_eq!(h.r(ICR), icr::RXT0);
    assert!(!h.irq.level());
    assert_eq!(h.r(ICR), 0);
    // Write-1-clear.
    h.w(ICS, icr::RXT0 | icr::TXDW);
    assert!(h.irq.level());
    h.w(ICR, icr::RXT0);
    assert!(h.irq.level(), "TXDW still pending");
    h.w(ICR, icr::TXDW);
    assert!(!h.irq.level());
    // Masked causes latch without asserting.
    h.w(ICS, icr::RXO);
    assert!(!h.irq.level());
    assert_eq!(h.r(ICR), icr::RXO);
}

#[test]
fn lsc_fires_when_the_driver_first_enables_it() {
    let mut h = Harness::new();
    h.w(IMS, icr::RXT0);
    assert!(!h.irq.level());
    h.w(IMS, icr::LSC);
    assert!(h.irq.level());
    assert_eq!(h.r(ICR) & icr::LSC, icr::LSC);
    // Only once.
    h.w(IMC, u32::MAX);
    h.w(IMS, icr::LSC);
    assert!(!h.irq.level());
}

// ---- transmit ----

#[test]
fn tx_legacy_descriptor() {
    let mut h = Harness::new();
    h.setup_tx(8);
    h.w(IMS, icr::TXDW);
    let mut frame = eth(PEER, MAC, 0x0800);
    frame.extend_from_slice(&pattern(86, 1));
    h.mem.write_slice(&frame, GuestAddress(TX_BUFS)).unwrap();
    h.put_tx_desc(
        0,
        legacy_desc(
            TX_BUFS,
            frame.len() as u16,
            txd::CMD_EOP | txd::CMD_IFCS | txd::CMD_RS,
        ),
    );
    h.w(TDT, 1);
    assert_eq!(h.net_frames(), vec![frame.clone()]);
    assert_eq!(h.tx_status(0) & txd::STA_DD, txd::STA_DD);
    assert_eq!(h.r(TDH), 1);
    assert!(h.irq.level());
    assert_ne!(h.r(ICR) & icr::TXDW, 0);
    // Statistics clear on read.
    assert_eq!(h.r(GPTC), 1);
    assert_eq!(h.r(GPTC), 0);
    assert_eq!(h.r(GOTCL), frame.len() as u32 + 4);
    assert_eq!(h.dev.counters().tx_frames, 1);

    // A packet over three descriptors, RS only on the last; the ring wraps.
    h.w(TDH, 6);
    h.w(TDT, 6);
    let parts = [pattern(14, 2), pattern(500, 3), pattern(700, 4)];
    let mut want = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let addr = TX_BUFS + 0x1000 * (i as u64 + 1);
        h.mem.write_slice(p, GuestAddress(addr)).unwrap();
        let cmd = if i == 2 {
            txd::CMD_EOP | txd::CMD_RS
        } else {
            0
        };
        h.put_tx_desc((6 + i as u32) % 8, legacy_desc(addr, p.len() as u16, cmd));
        want.extend_from_slice(p);
    }
    h.w(TDT, 1);
    assert_eq!(h.net_frames(), vec![want]);
    assert_eq!(h.r(TDH), 1);
    assert_eq!(h.tx_status(0) & txd::STA_DD, txd::STA_DD);
}

#[test]
fn tx_vlan_insertion() {
    let mut h = Harness::new();
    h.setup_tx(8);
    h.w(CTRL, ctrl::DEFAULT | ctrl::VME);
    let mut frame = eth(PEER, MAC, 0x0800);
    frame.extend_from_slice(&pattern(50, 9));
    h.mem.write_slice(&frame, GuestAddress(TX_BUFS)).unwrap();
    let mut d = legacy_desc(TX_BUFS, frame.len() as u16, txd::CMD_EOP | txd::CMD_VLE);
    d[14..16].copy_from_slice(&0x2005u16.to_le_bytes());
    h.put_tx_desc(0, d);
    h.w(TDT, 1);
    let got = h.net_frames();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][..12], &frame[..12]);
    assert_eq!(&got[0][12..16], &[0x81, 0x00, 0x20, 0x05]);
    assert_eq!(&got[0][16..], &frame[12..]);
}

fn udp_packet(payload: &[u8]) -> Vec<u8> {
    let l4_len = 8 + payload.len();
    let mut f = eth(PEER, MAC, 0x0800);
    f.extend_from_slice(&ipv4(20 + l4_len as u16, 7, 17));
    set_ip_checksum(&mut f);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
    f.extend_from_slice(&(l4_len as u16).to_be_bytes());
    // CHECKSUM_PARTIAL: the pseudo-header sum, not complemented.
    f.extend_from_slice(&fold(pseudo_sum(17, l4_len)).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn tcp_header(seq: u32, flags: u8, check: u16) -> Vec<u8> {
    let mut t = vec![0x9c, 0x40, 0x00, 0x50];
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff]);
    t.extend_from_slice(&check.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t
}

#[test]
fn tx_checksum_offload_udp_and_tcp() {
    let mut h = Harness::new();
    h.setup_tx(16);

    // UDP: context then header and payload in separate descriptors.
    let udp = udp_packet(&pattern(333, 5));
    h.mem.write_slice(&udp, GuestAddress(TX_BUFS)).unwrap();
    h.put_tx_desc(
        0,
        ctx_desc(Ctx {
            tucss: 34,
            tucso: 40,
            ..Ctx::default()
        }),
    );
    h.put_tx_desc(1, data_desc(TX_BUFS, 42, 0, txd::POPTS_TXSM));
    h.put_tx_desc(
        2,
        data_desc(
            TX_BUFS + 42,
            udp.len() as u32 - 42,
            txd::CMD_EOP | txd::CMD_RS,
            txd::POPTS_TXSM,
        ),
    );

    // TCP with both IP and TCP checksums inserted.
    let payload = pattern(1000, 6);
    let mut tcp = eth(PEER, MAC, 0x0800);
    tcp.extend_from_slice(&ipv4(20 + 20 + payload.len() as u16, 9, 6));
    tcp.extend_from_slice(&tcp_header(
        77,
        0x18,
        fold(pseudo_sum(6, 20 + payload.len())),
    ));
    tcp.extend_from_slice(&payload);
    let tcp_addr = TX_BUFS + 0x1000;
    h.mem.write_slice(&tcp, GuestAddress(tcp_addr)).unwrap();
    h.put_tx_desc(
        3,
        ctx_desc(Ctx {
            ipcss: 14,
            ipcso: 24,
            ipcse: 33,
            tucss: 34,
            tucso: 50,
            tucmd: txd::TUCMD_TCP | txd::TUCMD_IP,
            ..Ctx::default()
        }),
    );
    h.put_tx_desc(
        4,
        data_desc(
            tcp_addr,
            tcp.len() as u32,
            txd::CMD_EOP | txd::CMD_RS,
            txd::POPTS_TXSM | txd::POPTS_IXSM,
        ),
    );
    h.w(TDT, 5);

    let frames = h.net_frames();
    assert_eq!(frames.len(), 2);
    let (u, t) = (&frames[0], &frames[1]);
    assert_eq!(u.len(), udp.len());
    assert_ne!(be16(u, 40), 0);
    assert!(l4_checksum_ok(u, 17), "UDP checksum");
    assert_eq!(&u[42..], &udp[42..]);
    assert!(ip_checksum_ok(t), "IPv4 header checksum");
    assert!(l4_checksum_ok(t, 6), "TCP checksum");
    assert_eq!(&t[54..], &payload[..]);
    assert_eq!(h.tx_status(2) & txd::STA_DD, txd::STA_DD);
    assert_eq!(h.tx_status(4) & txd::STA_DD, txd::STA_DD);
}

/// Writes a TSO packet (header prepared the way Linux's e1000_tso does)
/// with the given context, returning the payload.
fn post_tso(h: &mut Harness, payload_len: usize, ctx: Ctx, first: u32) -> (Vec<u8>, u32) {
    let payload = pattern(payload_len, 11);
    let mut hdr = eth(PEER, MAC, 0x0800);
    hdr.extend_from_slice(&ipv4(0, 0x1234, 6));
    hdr.extend_from_slice(&tcp_header(1000, 0x19, fold(pseudo_sum(6, 0))));
    h.mem.write_slice(&hdr, GuestAddress(TX_BUFS)).unwrap();
    h.mem
        .write_slice(&payload, GuestAddress(TX_BUFS + 0x1000))
        .unwrap();
    let popts = txd::POPTS_TXSM | txd::POPTS_IXSM;
    let mut i = first;
    h.put_tx_desc(i, ctx_desc(ctx));
    i += 1;
    h.put_tx_desc(i, data_desc(TX_BUFS, 54, txd::CMD_TSE, popts));
    i += 1;
    // Payload in chunks of at most 4000 bytes.
    let mut off = 0;
    while off < payload_len {
        let n = (payload_len - off).min(4000);
        let last = off + n == payload_len;
        let cmd = txd::CMD_TSE | if last { txd::CMD_EOP | txd::CMD_RS } else { 0 };
        h.put_tx_desc(
            i,
            data_desc(TX_BUFS + 0x1000 + off as u64, n as u32, cmd, popts),
        );
        i += 1;
        off += n;
    }
    (payload, i)
}

fn tso_ctx(payload_len: usize, mss: u16) -> Ctx {
    Ctx {
        ipcss: 14,
        ipcso: 24,
        ipcse: 33,
        tucss: 34,
        tucso: 50,
        tucse: 0,
        paylen: payload_len as u32,
        tucmd: txd::CMD_TSE | txd::TUCMD_TCP | txd::TUCMD_IP,
        hdr_len: 54,
        mss,
    }
}

#[test]
fn tso_segments_a_large_tcp_send() {
    let mut h = Harness::new();
    h.setup_tx(32);
    let (payload, end) = post_tso(&mut h, 10000, tso_ctx(10000, 1448), 0);
    h.w(TDT, end);
    let frames = h.net_frames();
    assert_eq!(frames.len(), 7);
    let mut reassembled = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let last = i == 6;
        let seg = if last { 10000 - 6 * 1448 } else { 1448 };
        assert_eq!(f.len(), 54 + seg, "segment {i}");
        assert_eq!(be16(f, 16) as usize, f.len() - 14, "IP total length");
        assert_eq!(be16(f, 18), 0x1234 + i as u16, "IP id");
        assert!(ip_checksum_ok(f), "IP checksum of segment {i}");
        assert_eq!(be32(f, 38), 1000 + (i * 1448) as u32, "sequence");
        assert_eq!(f[47], if last { 0x19 } else { 0x10 }, "flags");
        assert!(l4_checksum_ok(f, 6), "TCP checksum of segment {i}");
        reassembled.extend_from_slice(&f[54..]);
    }
    assert_eq!(reassembled, payload);
    assert_eq!(h.r(TDH), end);
    assert_eq!(h.tx_status(end - 1) & txd::STA_DD, txd::STA_DD);
    assert_eq!(h.r(GPTC), 7);
    assert_eq!(h.r(TSCTC), 1);
}

// ---- receive ----

#[test]
fn crc32_matches_the_ieee_check_value() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
    // Values from an independent implementation (Python's zlib.crc32): a
    // minimum-size broadcast ARP frame (60 bytes, zero padded) and 1536
    // bytes of 0, 1, ..., 255 repeated.
    let mut arp = eth([0xff; 6], PEER, 0x0806);
    arp.resize(60, 0);
    assert_eq!(crc32(&arp), 0x6259_1683);
    let ramp: Vec<u8> = (0..1536).map(|i| i as u8).collect();
    assert_eq!(crc32(&ramp), 0xad48_4d3f);
}

/// The byte-at-a-time reference (IEEE 802.3 CRC-32, reflected).
fn crc32_bitwise(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn crc32_matches_the_bitwise_reference() {
    let data: Vec<u8> = (0..2100u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // Every length up to past the SIMD folding's 128-byte minimum, and
    // every start alignment.
    for len in (0..300).chain([1514, 1518, 2047, 2048, 2049]) {
        for start in 0..8 {
            let d = &data[start..start + len];
            assert_eq!(crc32(d), crc32_bitwise(d), "len {len} start {start}");
        }
    }
}

#[test]
fn rx_fcs_on_the_wire() {
    let mut h = Harness::new();
    h.setup_rx(8, rctl::BAM);
    // A runt: padded to 60 bytes, FCS over the padding.
    let arp = eth([0xff; 6], PEER, 0x0806);
    h.send(&arp);
    assert!(h.wait_rdh(1));
    let (len, _, _, _) = h.rx_desc(0);
    assert_eq!(len, 64);
    let got = h.rx_buf(0, 64);
    assert!(got[14..60].iter().all(|&b| b == 0));
    assert_eq!(&got[60..], &0x6259_1683u32.to_le_bytes());
    // A full-size frame.
    let mut f = eth(MAC, PEER, 0x0800);
    f.extend_from_slice(&pattern(1500, 7));
    h.send(&f);
    assert!(h.wait_rdh(2));
    assert_eq!(h.rx_desc(1).0, 1518);
    let got = h.rx_buf(1, 1518);
    assert_eq!(&got[..1514], &f[..]);
    assert_eq!(&got[1514..], &crc32_bitwise(&f).to_le_bytes());
    // The FCS split across two 256-byte buffers (254 + 4 bytes).
    h.w(RCTL, rctl::EN | rctl::BAM | 3 << rctl::BSIZE_SHIFT);
    let mut f = eth(MAC, PEER, 0x0800);
    f.extend_from_slice(&pattern(240, 9));
    h.send(&f);
    assert!(h.wait_rdh(4));
    assert_eq!(h.rx_desc(2).0, 256);
    assert_eq!(h.rx_desc(3).0, 2);
    let mut got = h.rx_buf(2, 256);
    got.extend(h.rx_buf(3, 2));
    assert_eq!(&got[..254], &f[..]);
    assert_eq!(&got[254..], &crc32_bitwise(&f).to_le_bytes());
    // A stripped VLAN tag: the FCS covers the bytes delivered.
    h.w(RCTL, rctl::EN | rctl::BAM);
    h.w(CTRL, ctrl::DEFAULT | ctrl::VME);
    let mut v = eth(MAC, PEER, 0x8100);
    v.extend_from_slice(&[0x00, 0x2a, 0x08, 0x00]);
    v.extend_from_slice(&pattern(100, 5));
    h.send(&v);
    assert!(h.wait_rdh(5));
    let (len, st, _, special) = h.rx_desc(4);
    assert_eq!((len, special), (114 + 4, 0x2a));
    assert_ne!(st & rxd::STA_VP, 0);
    let got = h.rx_buf(4, 118);
    let mut stripped = v[..12].to_vec();
    stripped.extend_from_slice(&v[16..]);
    assert_eq!(&got[..114], &stripped[..]);
    assert_eq!(&got[114..], &crc32_bitwise(&stripped).to_le_bytes());
}

/// Drives the three receive steps directly on a register file (no
/// worker): the copy runs without the lock, so the driver may reprogram
/// the ring in between.
#[test]
fn rx_ring_reprogrammed_during_the_copy() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let irq = FakeIntx::default();
    let mut regs = Regs::new(MAC, super::deadline_timer::DeadlineTimer::new().unwrap());
    for i in 0..8u64 {
        let buf = RX_BUFS + RX_BUF_STRIDE * i;
        mem.write_obj(buf, GuestAddress(RX_RING + 16 * i)).unwrap();
    }
    let program = |regs: &mut Regs| {
        regs.write(RDBAL, RX_RING as u32, &irq);
        regs.write(RDBAH, 0, &irq);
        regs.write(RDLEN, 8 * 16, &irq);
        regs.write(RDH, 0, &irq);
        regs.write(RDT, 7, &irq);
        regs.write(RCTL, rctl::EN, &irq);
    };
    program(&mut regs);
    let mut f = eth(MAC, PEER, 0x0800);
    f.extend_from_slice(&pattern(100, 1));

    // Undisturbed: RDH moves, RXT0 is set, the statistics count it.
    let plan = rx::prepare(&mut regs, &f).unwrap();
    let written = rx::write(&mem, &f, &plan);
    assert_eq!(
        rx::publish(&mut regs, &f, &plan, &written),
        RxResult::Delivered
    );
    assert_eq!(regs.get(RDH), 1);
    regs.rx_delivered(&irq);
    assert_ne!(regs.get(ICR) & icr::RXT0, 0);
    assert_eq!(regs.get(GPRC), 1);
    assert_eq!(regs.get(GORCL), 118);

    // The driver rewrites RDH, RDLEN or RDBAH, or resets, mid-copy: the
    // device does not publish a head for the old ring.
    type Reprogram = fn(&mut Regs, &FakeIntx);
    let cases: [Reprogram; 4] = [
        |r, i| {
            r.write(RDH, 0, i);
        },
        |r, i| {
            r.write(RDLEN, 16 * 16, i);
        },
        |r, i| {
            r.write(RDBAH, 0, i);
        },
        |r, i| {
            r.write(CTRL, ctrl::RST, i);
        },
    ];
    for (n, reprogram) in cases.iter().enumerate() {
        program(&mut regs);
        regs.write(RDH, 3, &irq);
        let plan = rx::prepare(&mut regs, &f).unwrap();
        reprogram(&mut regs, &irq);
        let rdh = regs.get(RDH);
        let written = rx::write(&mem, &f, &plan);
        assert_eq!(
            rx::publish(&mut regs, &f, &plan, &written),
            RxResult::Dropped,
            "case {n}"
        );
        assert_eq!(regs.get(RDH), rdh, "case {n}");
        // The copy stayed within the snapshot's descriptor.
        let mut wb = [0u8; 8];
        mem.read_slice(&mut wb, GuestAddress(RX_RING + 3 * 16 + 8))
            .unwrap();
        assert_eq!(u16::from_le_bytes([wb[0], wb[1]]), 118, "case {n}");
    }
    // Only RDT moving (the normal case) is not a reprogramming.
    program(&mut regs);
    let plan = rx::prepare(&mut regs, &f).unwrap();
    regs.write(RDT, 5, &irq);
    let written = rx::write(&mem, &f, &plan);
    assert_eq!(
        rx::publish(&mut regs, &f, &plan, &written),
        RxResult::Delivered
    );
    assert_eq!(regs.get(RDH), 1);
}

#[test]
fn rx_frame_lands_in_the_ring() {
    let mut h = Harness::new();
    h.setup_rx(8, rctl::BAM);
    h.w(IMS, icr::RXT0);
    let mut frame = eth(MAC, PEER, 0x0800);
    frame.extend_from_slice(&pattern(86, 3));
    h.send(&frame);
    assert!(h.wait_rdh(1));
    let (len, st, err, _) = h.rx_desc(0);
    assert_eq!(len as usize, frame.len() + 4, "length includes the FCS");
    assert_eq!(st, rxd::STA_DD | rxd::STA_EOP | rxd::STA_IXSM);
    assert_eq!(err, 0);
    let got = h.rx_buf(0, frame.len() + 4);
    assert_eq!(&got[..frame.len()], &frame[..]);
    assert_eq!(&got[frame.len()..], &crc32(&frame).to_le_bytes());
    assert!(wait_for(|| h.irq.level()));
    assert_ne!(h.r(ICR) & icr::RXT0, 0);
    assert!(!h.irq.level());
    assert_eq!(h.r(GPRC), 1);
    assert_eq!(h.dev.counters().rx_frames, 1);

    // A runt is padded to 60 bytes; SECRC drops the FCS.
    h.w(RCTL, rctl::EN | rctl::BAM | rctl::SECRC);
    let arp = eth([0xff; 6], PEER, 0x0806);
    h.send(&arp);
    assert!(h.wait_rdh(2));
    let (len, st, _, _) = h.rx_desc(1);
    assert_eq!(len, 60);
    assert_eq!(st & rxd::STA_EOP, rxd::STA_EOP);
    let got = h.rx_buf(1, 60);
    assert_eq!(&got[..14], &arp[..]);
    assert!(got[14..].iter().all(|&b| b == 0));
}

#[test]
fn rx_filter() {
    let mut h = Harness::new();
    h.setup_rx(16, 0);
    let foreign = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    let mut f = eth(foreign, PEER, 0x0800);
    f.extend_from_slice(&pattern(50, 1));
    h.send(&f);
    assert!(wait_for(|| h.dev.counters().rx_filtered == 1));
    // Broadcast without BAM is filtered too, with BAM accepted.
    let bcast = eth([0xff; 6], PEER, 0x0806);
    h.send(&bcast);
    assert!(wait_for(|| h.dev.counters().rx_filtered == 2));
    assert_eq!(h.r(RDH), 0);
    h.w(RCTL, rctl::EN | rctl::BAM);
    h.send(&bcast);
    assert!(h.wait_rdh(1));
    // Multicast by MTA hash (MO = 0: bits 47:36 of the address).
    let mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    let m = eth(mcast, PEER, 0x0800);
    h.send(&m);
    assert!(wait_for(|| h.dev.counters().rx_filtered == 3));
    h.w(MTA, 1 << 16);
    h.send(&m);
    assert!(h.wait_rdh(2));
    // A second unicast address in RAL1/RAH1.
    h.w(
        RA + 8,
        u32::from_le_bytes([foreign[0], foreign[1], foreign[2], foreign[3]]),
    );
    h.w(
        RA + 12,
        u32::from(u16::from_le_bytes([foreign[4], foreign[5]])) | rah::AV,
    );
    h.send(&f);
    assert!(h.wait_rdh(3));
    // Multicast in an exact filter (Linux's e1000_set_rx_mode does that).
    let mc2 = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
    h.w(
        RA + 16,
        u32::from_le_bytes([mc2[0], mc2[1], mc2[2], mc2[3]]),
    );
    h.w(
        RA + 20,
        u32::from(u16::from_le_bytes([mc2[4], mc2[5]])) | rah::AV,
    );
    h.send(&eth(mc2, PEER, 0x86dd));
    assert!(h.wait_rdh(4));
    // Promiscuous.
    h.w(RCTL, rctl::EN | rctl::UPE);
    let mut g = eth([0x02, 9, 9, 9, 9, 9], PEER, 0x0800);
    g.extend_from_slice(&pattern(50, 2));
    h.send(&g);
    assert!(h.wait_rdh(5));
    assert_eq!(h.dev.counters().rx_filtered, 3);
    assert_eq!(h.dev.counters().rx_frames, 5);
}

#[test]
fn rx_waits_for_descriptors_instead_of_dropping() {
    let mut h = Harness::new();
    h.setup_rx(8, 0);
    h.w(RDT, 2); // two descriptors available
    for i in 0..5u8 {
        let mut f = eth(MAC, PEER, 0x0800);
        f.extend_from_slice(&pattern(100, i));
        h.send(&f);
    }
    assert!(h.wait_rdh(2));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.r(RDH), 2);
    assert_eq!(h.dev.counters().rx_dropped, 0);
    h.w(RDT, 7);
    assert!(h.wait_rdh(5));
    assert_eq!(h.dev.counters().rx_frames, 5);
    assert_eq!(h.dev.counters().rx_dropped, 0);
    // Frames arrived in order.
    for i in 0..5u32 {
        assert_eq!(h.rx_buf(i, 114)[14], pattern(100, i as u8)[0]);
    }
}

#[test]
fn rx_frame_spans_small_buffers() {
    let mut h = Harness::new();
    h.setup_rx(8, 3 << rctl::BSIZE_SHIFT); // 256-byte buffers
    let mut f = eth(MAC, PEER, 0x0800);
    f.extend_from_slice(&pattern(586, 4));
    h.send(&f);
    assert!(h.wait_rdh(3));
    let descs: Vec<_> = (0..3).map(|i| h.rx_desc(i)).collect();
    assert_eq!(descs[0].0, 256);
    assert_eq!(descs[1].0, 256);
    assert_eq!(descs[2].0, 604 - 512);
    assert_eq!(descs[0].1 & rxd::STA_EOP, 0);
    assert_eq!(descs[1].1 & rxd::STA_EOP, 0);
    assert_eq!(descs[2].1 & rxd::STA_EOP, rxd::STA_EOP);
    let mut got = h.rx_buf(0, 256);
    got.extend(h.rx_buf(1, 256));
    got.extend(h.rx_buf(2, 92));
    assert_eq!(&got[..600], &f[..]);
}

#[test]
fn rx_vlan_strip_with_vme() {
    let mut h = Harness::new();
    h.setup_rx(8, 0);
    h.w(CTRL, ctrl::DEFAULT | ctrl::VME);
    let mut f = eth(MAC, PEER, 0x8100);
    f.extend_from_slice(&[0x00, 0x2a, 0x08, 0x00]);
    f.extend_from_slice(&pattern(80, 1));
    h.send(&f);
    assert!(h.wait_rdh(1));
    let (len, st, _, special) = h.rx_desc(0);
    assert_eq!(len as usize, f.len() - 4 + 4);
    assert_ne!(st & rxd::STA_VP, 0);
    assert_eq!(special, 0x2a);
    let got = h.rx_buf(0, 16);
    assert_eq!(&got[12..14], &[0x08, 0x00]);
}

#[test]
fn rx_disabled_drains_and_drops() {
    let mut h = Harness::new();
    let f = eth(MAC, PEER, 0x0800);
    h.send(&f);
    assert!(wait_for(|| h.dev.counters().rx_dropped == 1));
    assert_eq!(h.dev.counters().rx_frames, 0);
}

// ---- hostile guests ----

#[test]
fn hostile_tx_rings() {
    let mut h = Harness::new();
    // Ring outside guest memory.
    h.w(TDBAL, OUTSIDE as u32);
    h.w(TDLEN, 128);
    h.w(TCTL, tctl::EN);
    h.w(TDT, 3);
    assert_eq!(h.r(TDH), 0);
    assert!(h.dev.counters().tx_ring_errors >= 1);
    // Tail beyond the ring, zero-length ring.
    h.setup_tx(8);
    h.w(TDT, 100);
    h.w(TDLEN, 0);
    h.w(TDT, 1);
    h.w(TDLEN, 8 * 16);
    h.w(TDH, 50);
    h.w(TDT, 1);
    assert!(h.dev.counters().tx_ring_errors >= 4);
    // A ring that ends exactly at the end of memory.
    h.w(TDBAL, (MEM_SIZE - 64) as u32);
    h.w(TDH, 0);
    h.w(TDT, 7);
    assert_eq!(h.r(TDH), 4);
    assert!(h.net_frames().is_empty());
}

#[test]
fn hostile_tx_descriptors() {
    let mut h = Harness::new();
    h.setup_tx(8);
    let before = h.dev.counters().tx_dropped;
    // Zero length with EOP.
    h.put_tx_desc(0, legacy_desc(TX_BUFS, 0, txd::CMD_EOP | txd::CMD_RS));
    // Buffer outside memory.
    h.put_tx_desc(1, legacy_desc(OUTSIDE, 100, txd::CMD_EOP | txd::CMD_RS));
    // Buffer straddling the end of memory.
    h.put_tx_desc(
        2,
        legacy_desc(MEM_SIZE as u64 - 10, 100, txd::CMD_EOP | txd::CMD_RS),
    );
    // Reserved descriptor type.
    let mut d = data_desc(TX_BUFS, 60, txd::CMD_EOP | txd::CMD_RS, 0);
    d[10] |= 0x30; // DTYP = 3
    h.put_tx_desc(3, d);
    h.w(TDT, 4);
    assert_eq!(h.r(TDH), 4);
    assert!(h.net_frames().is_empty());
    assert_eq!(h.dev.counters().tx_dropped - before, 4);
    for i in 0..4 {
        assert_eq!(h.tx_status(i) & txd::STA_DD, txd::STA_DD);
    }

    // A "packet" that never ends: laps of 16 KiB descriptors without EOP.
    for lap in 0..4u32 {
        for i in 0..8u32 {
            h.put_tx_desc(i, legacy_desc(TX_BUFS, 0x4000, 0));
        }
        let start = h.r(TDH);
        h.w(TDT, (start + 7) % 8);
        assert_eq!(h.r(TDH), (start + 7) % 8, "lap {lap}");
    }
    let tdh = h.r(TDH);
    h.put_tx_desc(tdh, legacy_desc(TX_BUFS, 60, txd::CMD_EOP));
    h.w(TDT, (tdh + 1) % 8);
    assert!(h.net_frames().is_empty());
    assert_eq!(h.dev.counters().tx_dropped - before, 5);

    // The device still works afterwards.
    let tdh = h.r(TDH);
    let f = eth(PEER, MAC, 0x0800);
    h.mem.write_slice(&f, GuestAddress(TX_BUFS)).unwrap();
    h.put_tx_desc(tdh, legacy_desc(TX_BUFS, f.len() as u16, txd::CMD_EOP));
    h.w(TDT, (tdh + 1) % 8);
    assert_eq!(h.net_frames(), vec![f]);
}

#[test]
fn hostile_tso_parameters() {
    let mut h = Harness::new();
    h.setup_tx(64);
    let mut next = 0;
    let mut post = |h: &mut Harness, ctx: Ctx| {
        let (_, end) = post_tso(h, 3000, ctx, next);
        next = end;
        h.w(TDT, end);
        assert_eq!(h.r(TDH), end);
    };
    // MSS zero and tiny.
    post(&mut h, tso_ctx(3000, 0));
    post(&mut h, tso_ctx(3000, 1));
    // Header longer than the packet, zero header, offsets past the header.
    post(
        &mut h,
        Ctx {
            hdr_len: 40,
            ..tso_ctx(3000, 1448)
        },
    );
    post(
        &mut h,
        Ctx {
            hdr_len: 0,
            ..tso_ctx(3000, 1448)
        },
    );
    post(
        &mut h,
        Ctx {
            tucss: 250,
            ..tso_ctx(3000, 1448)
        },
    );
    post(
        &mut h,
        Ctx {
            ipcso: 200,
            ..tso_ctx(3000, 1448)
        },
    );
    assert!(h.net_frames().is_empty());
    assert_eq!(h.dev.counters().tx_dropped, 6);
    // A huge MSS is just one segment.
    post(&mut h, tso_ctx(3000, 0xffff));
    let frames = h.net_frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].len(), 3054);
    assert!(ip_checksum_ok(&frames[0]));
    assert!(l4_checksum_ok(&frames[0], 6));
}

#[test]
fn hostile_rx_rings() {
    let mut h = Harness::new();
    // Ring outside guest memory: frames are dropped, nothing loops.
    h.setup_rx(8, 0);
    h.w(RDBAL, OUTSIDE as u32);
    let f = eth(MAC, PEER, 0x0800);
    h.send(&f);
    h.send(&f);
    assert!(wait_for(|| h.dev.counters().rx_dropped == 2));
    assert!(h.dev.counters().rx_ring_errors >= 2);
    assert_eq!(h.r(RDH), 0);
    // Head/tail out of range: the device waits for a sane RDT.
    h.w(RDBAL, RX_RING as u32);
    h.w(RDT, 500);
    h.send(&f);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(h.r(RDH), 0);
    h.w(RDT, 7);
    assert!(h.wait_rdh(1));
    // Buffer address outside memory: the descriptor completes with RXE.
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&OUTSIDE.to_le_bytes());
    h.mem.write_slice(&d, GuestAddress(RX_RING + 16)).unwrap();
    h.send(&f);
    assert!(h.wait_rdh(2));
    let (_, st, err, _) = h.rx_desc(1);
    assert_eq!(st & rxd::STA_DD, rxd::STA_DD);
    assert_eq!(err, rxd::ERR_RXE);
    // Frames that can never fit the ring are dropped (12 buffers of 256
    // bytes needed, 8 descriptors).
    h.w(RDLEN, 8 * 16 + 0x70); // the low 7 bits are ignored
    assert_eq!(h.r(RDLEN), 8 * 16);
    h.w(RDH, 0);
    h.w(RDT, 7);
    h.w(RCTL, rctl::EN | rctl::LPE | 3 << rctl::BSIZE_SHIFT);
    let mut big = eth(MAC, PEER, 0x0800);
    big.extend_from_slice(&pattern(3000, 0));
    let dropped = h.dev.counters().rx_dropped;
    h.send(&big);
    let ok = wait_for(|| h.dev.counters().rx_dropped == dropped + 1);
    assert!(
        ok,
        "{:?} rdh {} rdt {}",
        h.dev.counters(),
        h.r(RDH),
        h.r(RDT)
    );
}

#[test]
fn odd_register_accesses() {
    let mut h = Harness::new();
    // Unknown registers read 0 and are counted.
    assert_eq!(h.r(0x5b50), 0);
    h.w(0x5b50, 0xffff_ffff);
    assert_eq!(h.r(0x5b50), 0);
    assert_eq!(h.dev.counters().unknown_reg_accesses, 3);
    // Past the BAR, odd sizes and unknown BARs.
    let mut d = [0u8; 4];
    h.dev.bar_read(0, BAR0_SIZE + 4, &mut d);
    h.dev.bar_write(0, BAR0_SIZE + 4, &d);
    let mut three = [0u8; 3];
    h.dev.bar_read(0, 0, &mut three);
    h.dev.bar_write(0, 0, &three);
    h.dev.bar_read(5, 0, &mut d);
    h.dev.bar_write(5, 0, &d);
    h.dev.bar_read(1, 60, &mut d);
    h.dev.bar_write(1, 60, &d);
    // Narrow and wide accesses.
    let mut b = [0u8; 1];
    h.dev.bar_read(0, STATUS, &mut b);
    assert_eq!(b[0] as u32, status::VALUE & 0xff);
    h.w(TIPG, 0);
    h.dev.bar_write(0, TIPG + 1, &[0x0a]);
    assert_eq!(h.r(TIPG), 0x0a00);
    h.dev
        .bar_write(0, RDBAL, &0x0000_0001_0000_1000u64.to_le_bytes());
    assert_eq!((h.r(RDBAL), h.r(RDBAH)), (0x1000, 1));
    let mut q = [0u8; 8];
    h.dev.bar_read(0, RDBAL, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0x0000_0001_0000_1000);
    // IOADDR past the register file wraps instead of failing.
    h.io_w(0x2_0000 + TIPG, 5);
    assert_eq!(h.r(TIPG), 5);
}

#[test]
fn ctrl_rst_restores_defaults() {
    let mut h = Harness::new();
    h.setup_tx(8);
    h.setup_rx(8, rctl::BAM | rctl::UPE);
    h.w(IMS, icr::RXT0 | icr::TXDW);
    h.w(ICS, icr::TXDW);
    assert!(h.irq.level());
    h.w(RA, 0x1122_3344);
    h.w(RA + 12, rah::AV | 0x7777);
    h.w(MTA + 8, 0xffff);
    h.mdic(1, phy::PHY_AUTONEG_ADV as u32, Some(0x0001));
    // Linux issues the reset through the I/O window on the 82540.
    assert_eq!(h.io_r(STATUS), status::VALUE);
    let ctrl_val = h.io_r(CTRL);
    h.io_w(CTRL, ctrl_val | ctrl::RST);
    assert!(!h.irq.level());
    assert_eq!(h.r(CTRL), ctrl::DEFAULT);
    assert_eq!(h.r(CTRL) & ctrl::RST, 0);
    for reg in [
        RCTL,
        TCTL,
        IMS,
        ICR,
        TDLEN,
        RDLEN,
        TDT,
        RDT,
        MTA + 8,
        RA + 12,
    ] {
        assert_eq!(h.r(reg), 0, "register {reg:#x}");
    }
    assert_eq!(
        h.r(RA),
        u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]])
    );
    assert_eq!(h.r(RA + 4), 0x5634 | rah::AV);
    assert_eq!(h.mdic(1, phy::PHY_AUTONEG_ADV as u32, None) as u16, 0x0de1);
    // LSC is announced again after a reset.
    h.w(IMS, icr::LSC);
    assert!(h.irq.level());
    // The EEPROM is intact.
    assert_eq!(h.eerd(0), 0x5452);
}

#[test]
fn rx_worker_runs_between_activate_and_stop() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let (dev_end, net) = seqpacket_pair().unwrap();
    let irq = Arc::new(FakeIntx::default());
    let dev = Harness::inactive_device(dev_end, &mem, &irq);
    let mut h = Harness { dev, net, mem, irq };
    // Construction spawns nothing: the frame waits in the backend.
    assert!(!h.dev.is_active());
    let f = eth(MAC, PEER, 0x0800);
    h.send(&f);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(h.dev.counters().rx_dropped, 0);
    h.dev.activate().unwrap();
    h.dev.activate().unwrap();
    assert!(wait_for(|| h.dev.counters().rx_dropped == 1));
    h.dev.stop();
    assert!(!h.dev.is_active());
    h.send(&f);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(h.dev.counters().rx_dropped, 1);
    h.dev.activate().unwrap();
    assert!(wait_for(|| h.dev.counters().rx_dropped == 2));
}

#[test]
fn drop_stops_the_worker() {
    let h = Harness::new();
    let name_prefix = "e1000-test-rx";
    assert!(name_prefix.starts_with(h.dev.id()));
    drop(h);
}

#[test]
fn rx_completes_partial_checksums_and_refuses_gso() {
    let mut h = Harness::new();
    h.setup_rx(8, 0);
    let mut f = eth(MAC, PEER, 0x0800);
    f.extend_from_slice(&ipv4(20 + 8 + 40, 1, 17));
    set_ip_checksum(&mut f);
    f.extend_from_slice(&[0x00, 0x35, 0x30, 0x39, 0x00, 48]);
    f.extend_from_slice(&fold(pseudo_sum(17, 48)).to_be_bytes());
    f.extend_from_slice(&pattern(40, 8));
    // NEEDS_CSUM, csum_start 34, csum_offset 6.
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[0] = 1;
    hdr[6..8].copy_from_slice(&34u16.to_le_bytes());
    hdr[8..10].copy_from_slice(&6u16.to_le_bytes());
    h.net
        .write_frame(&[IoSlice::new(&hdr), IoSlice::new(&f)])
        .unwrap();
    assert!(h.wait_rdh(1));
    let got = h.rx_buf(0, f.len());
    assert!(l4_checksum_ok(&got, 17));
    // A GSO frame cannot be handed over.
    let mut gso = [0u8; VNET_HDR_LEN];
    gso[1] = 1;
    h.net
        .write_frame(&[IoSlice::new(&gso), IoSlice::new(&f)])
        .unwrap();
    assert!(wait_for(|| h.dev.counters().rx_dropped == 1));
    assert_eq!(h.r(RDH), 1);
}

/// Posts `packets` TSO packets of 64 KiB (context, header and payload
/// descriptors each) at MSS `mss` from descriptor `first` of a 64-entry
/// ring; returns the descriptor after the last.
fn post_big_tso(h: &mut Harness, packets: u32, mss: u16, first: u32) -> u32 {
    let payload_len = 0x1_0000 - 54;
    let mut hdr = eth(PEER, MAC, 0x0800);
    hdr.extend_from_slice(&ipv4(0, 0x1234, 6));
    hdr.extend_from_slice(&tcp_header(1000, 0x18, fold(pseudo_sum(6, 0))));
    h.mem.write_slice(&hdr, GuestAddress(TX_BUFS)).unwrap();
    h.mem
        .write_slice(&pattern(payload_len, 3), GuestAddress(TX_BUFS + 0x1000))
        .unwrap();
    let popts = txd::POPTS_TXSM | txd::POPTS_IXSM;
    let mut i = first;
    for _ in 0..packets {
        h.put_tx_desc(i, ctx_desc(tso_ctx(payload_len, mss)));
        h.put_tx_desc((i + 1) % 64, data_desc(TX_BUFS, 54, txd::CMD_TSE, popts));
        let cmd = txd::CMD_TSE | txd::CMD_EOP | txd::CMD_RS;
        let payload = data_desc(TX_BUFS + 0x1000, payload_len as u32, cmd, popts);
        h.put_tx_desc((i + 2) % 64, payload);
        i = (i + 3) % 64;
    }
    i
}

/// Frames the device tried to send (the seqpacket peer is not drained,
/// so most end as backend errors once its buffer is full).
fn tx_attempts(h: &Harness) -> u64 {
    let c = h.dev.counters();
    c.tx_frames + c.backend_errors
}

#[test]
fn one_tdt_write_sends_a_bounded_number_of_frames() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let (dev_end, net) = seqpacket_pair().unwrap();
    let irq = Arc::new(FakeIntx::default());
    // No worker yet: every TDT write is exactly one pass.
    let dev = Harness::inactive_device(dev_end, &mem, &irq);
    let mut h = Harness { dev, net, mem, irq };
    h.setup_tx(64);
    let per_packet = (0x1_0000 - 54u64).div_ceil(MIN_TSO_MSS as u64);
    assert!(per_packet <= MAX_TSO_SEGMENTS as u64);
    // 21 packets of 1365 segments: 28665 frames behind one TDT write.
    let end = post_big_tso(&mut h, 21, MIN_TSO_MSS as u16, 0);
    let started = Instant::now();
    h.w(TDT, end);
    let one_pass = started.elapsed();
    assert_eq!(tx_attempts(&h), TX_PASS_FRAMES as u64);
    assert_eq!(
        h.r(TDH),
        3,
        "the first packet was gathered, its segments wait"
    );
    assert_eq!(h.tx_status(2) & txd::STA_DD, txd::STA_DD);
    // Another TDT write (same tail) does one more pass, no more.
    h.w(TDT, end);
    assert_eq!(tx_attempts(&h), 2 * TX_PASS_FRAMES as u64);
    // The worker continues on its own until the ring is done.
    h.dev.activate().unwrap();
    assert!(wait_for(|| h.r(TDH) == end), "TDH {} of {end}", h.r(TDH));
    assert!(wait_for(|| tx_attempts(&h) == 21 * per_packet));
    assert_eq!(h.dev.counters().tx_dropped, h.dev.counters().backend_errors);
    assert!(
        one_pass < Duration::from_secs(1),
        "one pass took {one_pass:?}"
    );

    // Below the minimum MSS, or more segments than allowed: dropped whole.
    let before = h.dev.counters().tx_dropped;
    let end2 = post_big_tso(&mut h, 1, MIN_TSO_MSS as u16 - 1, end);
    h.w(TDT, end2);
    assert!(wait_for(|| h.r(TDH) == end2));
    assert_eq!(tx_attempts(&h), 21 * per_packet);
    assert_eq!(h.dev.counters().tx_dropped, before + 1);
}

/// A seqpacket backend whose peer "segments GSO frames itself", as the
/// kernel behind a tap does.
struct GsoBackend(SeqpacketBackend);

impl std::os::fd::AsRawFd for GsoBackend {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl FrameBackend for GsoBackend {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_frame(buf)
    }
    fn write_frame(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_frame(bufs)
    }
    fn accepts_gso(&self) -> bool {
        true
    }
    fn set_offloads(&mut self, o: net_backend::Offloads) -> io::Result<()> {
        self.0.set_offloads(o)
    }
}

#[test]
fn tso_goes_whole_to_a_backend_that_accepts_gso() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let (dev_end, mut net) = seqpacket_pair().unwrap();
    let irq = Arc::new(FakeIntx::default());
    let backend = Box::new(GsoBackend(dev_end));
    let mut dev = E1000::new(
        "e1000-gso".into(),
        MAC,
        backend,
        mem.clone(),
        irq.clone(),
        BAR0,
        BAR1,
    )
    .unwrap();
    dev.activate().unwrap();
    let (_unused_dev, unused_net) = seqpacket_pair().unwrap();
    drop(_unused_dev);
    let mut h = Harness {
        dev,
        net: unused_net,
        mem,
        irq,
    };
    h.setup_tx(32);
    let (payload, end) = post_tso(&mut h, 10000, tso_ctx(10000, 1448), 0);
    h.w(TDT, end);
    assert_eq!(h.r(TDH), end);
    let mut buf = vec![0u8; 70000];
    let n = net.read_frame(&mut buf).unwrap();
    assert!(net.read_frame(&mut buf).is_err(), "one frame, not segments");
    let (hdr, f) = buf[..n].split_at_mut(VNET_HDR_LEN);
    // NEEDS_CSUM, TCPV4, hdr_len 54, gso_size 1448, csum 34+16.
    assert_eq!(hdr, &[1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]);
    assert_eq!(f.len(), 54 + 10000);
    assert_eq!(&f[54..], &payload[..]);
    assert_eq!(be16(f, 16) as usize, f.len() - 14, "IP total length");
    assert!(ip_checksum_ok(f));
    // The TCP checksum field holds the pseudo-header sum with the length,
    // as for CHECKSUM_PARTIAL: completing it as the stack does gives a
    // valid checksum.
    assert_eq!(be16(f, 50), fold(pseudo_sum(6, f.len() - 34)));
    let c = !fold(ones_sum(&f[34..]));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    assert!(l4_checksum_ok(f, 6));
    // The statistics count the segments the wire carries.
    assert_eq!(h.r(GPTC), 7);
    assert_eq!(h.dev.counters().tx_frames, 7);
    assert_eq!(h.dev.counters().tx_bytes, 7 * 54 + 10000);
}

#[test]
fn state_moves_rings_registers_phy_and_a_half_sent_packet() {
    let mut a = Harness::new();
    a.setup_rx(8, rctl::BAM);
    a.setup_tx(8);
    a.w(IMS, icr::TXDW | icr::RXT0);
    let mut f = eth(MAC, PEER, 0x0800);
    f.extend_from_slice(&pattern(100, 1));
    a.send(&f);
    assert!(a.wait_rdh(1));
    a.mdic(1, 4, Some(0x0de1)); // auto-negotiation advertisement
                                // The first half of a packet: its descriptor has no EOP.
    let mut out = eth(PEER, MAC, 0x0800);
    out.extend_from_slice(&pattern(200, 2));
    a.mem.write_slice(&out, GuestAddress(TX_BUFS)).unwrap();
    a.put_tx_desc(0, legacy_desc(TX_BUFS, 100, txd::CMD_IFCS));
    a.w(TDT, 1);
    assert!(a.net_frames().is_empty());
    assert_eq!(a.r(TDH), 1);
    let saved = a.dev.save_state();
    let json = serde_json::to_vec(&saved).unwrap();
    a.dev.stop();

    // The target: same memory (it moved with the VM), a new backend.
    let mut b = Harness::migration_target(&a.mem, true, &json);
    assert_eq!(b.dev.save_state(), saved);
    assert_eq!((b.r(RDH), b.r(RDT), b.r(TDH), b.r(TDT)), (1, 7, 1, 1));
    assert_eq!(b.r(IMS), icr::TXDW | icr::RXT0);
    assert_eq!(b.mdic(1, 4, None) & 0xffff, 0x0de1);
    assert!(b.irq.level(), "the pending RXT0 cause asserts the line");
    // Receive goes on at descriptor 1.
    b.send(&f);
    assert!(b.wait_rdh(2));
    assert_eq!(b.rx_buf(1, f.len()), f);
    // Transmit finishes the packet the source started.
    b.put_tx_desc(
        1,
        legacy_desc(TX_BUFS + 100, 114, txd::CMD_EOP | txd::CMD_IFCS),
    );
    b.w(TDT, 2);
    assert_eq!(b.net_frames(), vec![out]);

    // Another device's state is refused.
    let mut other = saved.clone();
    let mut v = serde_json::to_value(&other).unwrap();
    v["id"] = "e1000-other".into();
    other = serde_json::from_value(v).unwrap();
    assert!(b.dev.restore_state(&other).is_err());
}

#[test]
fn a_paused_gate_defers_transmit_to_the_worker() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let (dev_end, net) = seqpacket_pair().unwrap();
    let irq = Arc::new(FakeIntx::default());
    let mut dev = Harness::inactive_device(dev_end, &mem, &irq);
    let gate = crate::pause::PauseGate::new().unwrap();
    dev.set_pause_gate(gate.clone());
    dev.activate().unwrap();
    let mut h = Harness { dev, net, mem, irq };
    h.setup_tx(8);
    let mut frame = eth(PEER, MAC, 0x0800);
    frame.extend_from_slice(&pattern(86, 1));
    h.mem.write_slice(&frame, GuestAddress(TX_BUFS)).unwrap();
    h.put_tx_desc(
        0,
        legacy_desc(TX_BUFS, frame.len() as u16, txd::CMD_EOP | txd::CMD_RS),
    );
    gate.pause();
    h.w(TDT, 1);
    std::thread::sleep(Duration::from_millis(50));
    // Neither the frame nor the descriptor write-back happened.
    assert!(h.net_frames().is_empty());
    assert_eq!(h.tx_status(0) & txd::STA_DD, 0);
    assert_eq!(h.r(TDH), 0);
    gate.resume().unwrap();
    assert!(wait_for(|| h.tx_status(0) & txd::STA_DD != 0));
    assert_eq!(h.net_frames(), vec![frame]);
}

// ---- interrupt moderation ----

mod moderation {
    use super::super::moderation::{itr_interval_ns, Moderation, MIN_ITR};
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn itr_interval_units_and_bounds() {
        assert_eq!(itr_interval_ns(0), 0, "ITR = 0: no throttling");
        // Linux's 20 000 interrupts/s: 1e9 / (20000 * 256) = 195.
        assert_eq!(itr_interval_ns(195), 195 * 256);
        // Hostile: ITR = 1 is raised to MIN_ITR (about 10 µs)...
        assert_eq!(itr_interval_ns(1), MIN_ITR * 256);
        // ...and the reserved bits 31:16 do not count.
        assert_eq!(itr_interval_ns(u32::MAX), 0xffff * 256);
        assert_eq!(itr_interval_ns(0x1_0000), 0);
    }

    #[test]
    fn one_assertion_per_interval_and_deferred_ones_at_its_end() {
        let mut m = Moderation::default();
        let itr = 195; // 49.92 µs
        assert!(m.may_assert(10 * MS, itr), "nothing asserted yet");
        m.asserted(10 * MS);
        assert!(!m.may_assert(10 * MS + 49_919, itr));
        m.defer();
        assert_eq!(m.next_deadline(itr, icr::ALL), Some(10 * MS + 49_920));
        assert!(m.may_assert(10 * MS + 49_920, itr));
        // Nothing pending, nothing due.
        m.cancel_deferred();
        assert_eq!(m.next_deadline(itr, icr::ALL), None);
        // ITR = 0 never holds an assertion back.
        assert!(m.may_assert(10 * MS + 1, 0));
    }

    #[test]
    fn rdtr_restarts_and_radv_bounds_the_receive_delay() {
        let mut m = Moderation::default();
        // RDTR = 0 (Linux's default): RXT0 at once.
        assert!(m.rx_frames(0, 0, 8));
        assert_eq!(m.next_deadline(0, icr::ALL), None);
        // RDTR = 100 (102.4 µs), RADV = 1000 (1.024 ms): a frame every
        // 50 µs keeps restarting the relative timer; RADV ends it.
        let mut t = 0;
        let mut raised_at = None;
        while t < 3 * MS {
            if m.take_expired(t) & icr::RXT0 != 0 {
                raised_at = Some(t);
                break;
            }
            assert!(!m.rx_frames(t, 100, 1000));
            t += 50_000;
        }
        let at = raised_at.expect("RADV raised RXT0");
        assert!((1_024_000..1_024_000 + 50_000).contains(&at), "{at}");
        // A lone frame: RXT0 one RDTR after it.
        assert!(!m.rx_frames(5 * MS, 100, 1000));
        assert_eq!(m.next_deadline(0, icr::ALL), Some(5 * MS + 102_400));
        assert_eq!(m.take_expired(5 * MS + 102_399), 0);
        assert_eq!(m.take_expired(5 * MS + 102_400), icr::RXT0);
    }

    #[test]
    fn a_hostile_stream_cannot_postpone_rxt0_forever() {
        // RDTR at its maximum, RADV = 0 ("no absolute delay"): a frame
        // every millisecond would keep the relative timer from ever
        // expiring; the 0xffff-unit bound (67.1 ms) raises RXT0.
        let mut m = Moderation::default();
        let mut t = 0;
        while m.take_expired(t) == 0 {
            assert!(t < 100 * MS, "RXT0 never came");
            assert!(!m.rx_frames(t, u32::MAX, 0));
            t += MS;
        }
        assert!((0xffff * 1024..0xffff * 1024 + MS).contains(&t), "{t}");
    }

    #[test]
    fn tidv_delays_only_descriptors_with_ide() {
        let mut m = Moderation::default();
        // No IDE: TXDW at once, whatever TIDV says.
        assert!(m.tx_written_back(0, false, 8, 32));
        // IDE with TIDV = 8, TADV = 32 (Linux's defaults).
        assert!(!m.tx_written_back(MS, true, 8, 32));
        assert_eq!(m.pending_causes(), icr::TXDW);
        assert_eq!(m.next_deadline(0, icr::ALL), Some(MS + 8 * 1024));
        // A write-back without IDE raises the pending TXDW with it.
        assert!(m.tx_written_back(MS + 1, false, 8, 32));
        assert_eq!(m.pending_causes(), 0);
        // IDE with TIDV = 0: no delay.
        assert!(m.tx_written_back(2 * MS, true, 0, 32));
        // TADV bounds a stream of IDE write-backs.
        let mut t = 3 * MS;
        while m.take_expired(t) & icr::TXDW == 0 {
            assert!(!m.tx_written_back(t, true, 8, 32));
            t += 4096;
        }
        assert!((3 * MS + 32 * 1024..3 * MS + 32 * 1024 + 4096).contains(&t));
    }

    #[test]
    fn the_timer_wakes_once_per_interval_and_not_for_masked_causes() {
        let mut m = Moderation::default();
        let itr = 195; // 49.92 µs
        m.asserted(0);
        // TXDW 8.192 µs after a write-back, inside the interval: looked
        // at when the interval ends, however often the delay restarts.
        for t in (1_000..40_000).step_by(1_000) {
            assert!(!m.tx_written_back(t, true, 8, 32));
            assert_eq!(m.next_deadline(itr, icr::ALL), Some(49_920));
        }
        // Masked (or the line already up): no timer at all...
        assert_eq!(m.next_deadline(itr, icr::RXT0), None);
        // ...but the cause is there when looked for.
        assert_eq!(m.take_expired(49_920), icr::TXDW);
        // Past the interval, the delay's own deadline.
        assert!(!m.rx_frames(100_000, 10, 0));
        assert_eq!(m.next_deadline(itr, icr::ALL), Some(100_000 + 10_240));
    }

    fn moderated(itr: u32) -> Harness {
        let mut h = Harness::new();
        h.w(IMS, icr::RXT0 | icr::TXDW | icr::LSC);
        h.r(ICR);
        h.w(ITR, itr);
        h
    }

    #[test]
    fn itr_zero_asserts_every_cause_at_once() {
        let mut h = moderated(0);
        let before = h.irq.asserts();
        for _ in 0..10 {
            h.w(ICS, icr::RXT0);
            assert!(h.irq.level());
            assert_eq!(h.r(ICR), icr::RXT0);
            assert!(!h.irq.level());
        }
        assert_eq!(h.irq.asserts() - before, 10);
    }

    #[test]
    fn causes_in_the_interval_coalesce_and_assert_at_its_end() {
        // 0xffff × 256 ns = 16.8 ms.
        let mut h = moderated(0xffff);
        let interval = Duration::from_nanos(0xffff * 256);
        let before = h.irq.asserts();
        let start = Instant::now();
        h.w(ICS, icr::TXDW);
        assert!(h.irq.level(), "the first assertion is not held back");
        assert_eq!(h.r(ICR), icr::TXDW);
        h.w(ICS, icr::RXT0);
        h.w(ICS, icr::LSC);
        if start.elapsed() < interval {
            assert!(!h.irq.level(), "asserted inside the interval");
        }
        assert!(wait_for(|| h.irq.level()));
        assert!(start.elapsed() >= interval);
        assert_eq!(h.r(ICR), icr::RXT0 | icr::LSC, "both causes, in ICR");
        assert_eq!(h.irq.asserts() - before, 2);
        // Read or masked before the end: nothing is asserted.
        std::thread::sleep(interval);
        h.w(ICS, icr::RXT0);
        assert!(h.irq.level(), "the interval is over");
        h.r(ICR);
        h.w(ICS, icr::RXT0);
        h.w(IMC, icr::RXT0);
        std::thread::sleep(interval * 2);
        assert!(!h.irq.level());
        // Unmasked after the end: at once.
        h.w(IMS, icr::RXT0);
        assert!(h.irq.level());
        assert_eq!(h.irq.asserts() - before, 4);
    }

    /// Spins (no sleep: frames come faster than `wait_for` polls) until
    /// RDH is `want`.
    fn spin_rdh(h: &mut Harness, want: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if h.r(RDH) == want {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    #[test]
    fn itr_throttles_interrupts_over_a_burst_of_frames() {
        // ITR = 0x4000: 4.19 ms between assertions.
        let mut h = moderated(0x4000);
        h.setup_rx(16, rctl::BAM);
        let mut f = eth(MAC, PEER, 0x0800);
        f.extend_from_slice(&pattern(100, 4));
        let before = h.irq.asserts();
        let start = Instant::now();
        let frames = 300u32;
        // The driver's ISR reads ICR whenever the line is up.
        for i in 1..=frames {
            h.send(&f);
            assert!(spin_rdh(&mut h, i % 16));
            h.w(RDT, (i + 15) % 16);
            if h.irq.level() {
                assert_ne!(h.r(ICR) & icr::RXT0, 0);
            }
        }
        // One more frame, its cause left for the end of the interval.
        h.send(&f);
        assert!(wait_for(|| h.irq.level()));
        let elapsed = start.elapsed();
        let asserts = (h.irq.asserts() - before) as u128;
        let bound = elapsed.as_nanos() / (0x4000 * 256) + 1;
        eprintln!("{} frames, {asserts} interrupts in {elapsed:?}", frames + 1);
        assert!(asserts <= bound, "{asserts} > {bound} in {elapsed:?}");
        assert!(asserts < u128::from(frames), "no frame coalesced");
    }

    #[test]
    fn rdtr_delays_rxt0_and_fpd_flushes_it() {
        let mut h = moderated(0);
        h.setup_rx(8, rctl::BAM);
        let mut f = eth(MAC, PEER, 0x0800);
        f.extend_from_slice(&pattern(60, 5));
        // RDTR = 5000 units: 5.12 ms after the frame.
        h.w(RDTR, 5000);
        let start = Instant::now();
        h.send(&f);
        assert!(h.wait_rdh(1));
        if start.elapsed() < Duration::from_micros(5120) {
            assert!(!h.irq.level());
        }
        assert!(wait_for(|| h.irq.level()));
        assert!(start.elapsed() >= Duration::from_micros(5120));
        assert_eq!(h.r(ICR), icr::RXT0);
        // RDTR at its maximum (67 ms); FPD raises the pending RXT0 now.
        h.w(RDTR, 0xffff);
        h.send(&f);
        assert!(h.wait_rdh(2));
        h.w(RDTR, rdtr::FPD | 0xffff);
        assert!(h.irq.level());
        assert_eq!(h.r(ICR), icr::RXT0);
        assert_eq!(h.r(RDTR), 0xffff, "FPD reads back clear");
        // Nothing is left pending.
        std::thread::sleep(Duration::from_millis(80));
        assert!(!h.irq.level());
    }

    #[test]
    fn tidv_delays_txdw_for_ide_descriptors() {
        let mut h = moderated(0);
        h.setup_tx(8);
        let mut out = eth(PEER, MAC, 0x0800);
        out.extend_from_slice(&pattern(60, 6));
        h.mem.write_slice(&out, GuestAddress(TX_BUFS)).unwrap();
        let len = out.len() as u16;
        let cmd = txd::CMD_EOP | txd::CMD_IFCS | txd::CMD_RS;
        h.w(TIDV, 5000);
        h.w(TADV, 0);
        // Without IDE: TXDW during the TDT write.
        h.put_tx_desc(0, legacy_desc(TX_BUFS, len, cmd));
        h.w(TDT, 1);
        assert!(h.irq.level());
        assert_eq!(h.r(ICR) & icr::TXDW, icr::TXDW);
        // With IDE: 5.12 ms later.
        let start = Instant::now();
        h.put_tx_desc(1, legacy_desc(TX_BUFS, len, cmd | txd::CMD_IDE));
        h.w(TDT, 2);
        assert_eq!(h.tx_status(1) & txd::STA_DD, txd::STA_DD);
        if start.elapsed() < Duration::from_micros(5120) {
            assert!(!h.irq.level());
        }
        assert!(wait_for(|| h.irq.level()));
        assert!(start.elapsed() >= Duration::from_micros(5120));
        assert_eq!(h.r(ICR) & icr::TXDW, icr::TXDW);
        assert_eq!(h.net_frames().len(), 2);
    }

    #[test]
    fn hostile_values_still_deliver() {
        // Every moderation register at all ones: the reserved bits do not
        // count (ITR 16.8 ms, delays 67.1 ms); RADV/TADV 0 are bounded.
        let mut h = moderated(u32::MAX);
        h.setup_rx(8, rctl::BAM);
        h.setup_tx(8);
        h.w(RDTR, !rdtr::FPD);
        h.w(RADV, 0);
        h.w(TIDV, u32::MAX);
        h.w(TADV, 0);
        let mut f = eth(MAC, PEER, 0x0800);
        f.extend_from_slice(&pattern(60, 7));
        h.send(&f);
        assert!(h.wait_rdh(1));
        assert!(wait_for(|| h.irq.level()), "RXT0 within the bound");
        assert_eq!(h.r(ICR) & icr::RXT0, icr::RXT0);
        h.mem.write_slice(&f, GuestAddress(TX_BUFS)).unwrap();
        let cmd = txd::CMD_EOP | txd::CMD_RS | txd::CMD_IDE;
        h.put_tx_desc(0, legacy_desc(TX_BUFS, f.len() as u16, cmd));
        h.w(TDT, 1);
        assert!(wait_for(|| h.irq.level()), "TXDW within the bound");
        assert_eq!(h.r(ICR) & icr::TXDW, icr::TXDW);
        // ITR = 1 is throttled at 10 µs, not 256 ns: still delivered.
        h.w(ITR, 1);
        for _ in 0..100 {
            h.w(ICS, icr::LSC);
            assert!(wait_for(|| h.irq.level()));
            assert_eq!(h.r(ICR), icr::LSC);
        }
    }

    #[test]
    fn a_snapshot_keeps_a_delayed_cause() {
        let mut a = moderated(0);
        a.setup_rx(8, rctl::BAM);
        a.w(RDTR, 0xffff);
        let mut f = eth(MAC, PEER, 0x0800);
        f.extend_from_slice(&pattern(60, 8));
        a.send(&f);
        assert!(a.wait_rdh(1));
        let start = Instant::now();
        let saved = a.dev.save_state();
        let json = serde_json::to_vec(&saved).unwrap();
        a.dev.stop();
        if start.elapsed() < Duration::from_millis(60) {
            assert!(!a.irq.level(), "RXT0 was still delayed at the save");
        }
        let mut b = Harness::migration_target(&a.mem, false, &json);
        assert!(b.irq.level(), "the target raises the delayed RXT0");
        assert_eq!(b.r(ICR), icr::RXT0);
    }
}
