//! Transport tests: a fake device and a fake MSI routing group, driven the
//! way Linux's virtio_pci_modern driver drives the function.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::pci::{FakeVectors, MsiMessage, PciBarRegion, PciBus, PciConfigIo, PciDevice};
use crate::virtio::{
    status, ActivateError, QueueConfig, VirtioDevice, VirtioInterrupt, VirtioInterruptType,
    VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::BusDevice;
use virtio_queue::QueueT;

const BAR0: u64 = 0xc000_8000;
const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | 1 << 5;

/// (index, size, event_idx, desc, avail, used)
type QueueRecord = (u16, u16, bool, u64, u64, u64);

#[derive(Default)]
struct Record {
    activations: Vec<Vec<QueueRecord>>,
    resets: u32,
    acked: Option<u64>,
    config_writes: Vec<(u64, Vec<u8>)>,
    interrupt: Option<Arc<dyn VirtioInterrupt>>,
    kicks: Vec<EventFd>,
}

struct FakeDevice {
    rec: Arc<Mutex<Record>>,
    sizes: Vec<u16>,
    fail_activate: bool,
    refuse_reset: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
}

impl VirtioDevice for FakeDevice {
    fn device_type(&self) -> u32 {
        crate::virtio::TYPE_NET
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn features(&self) -> u64 {
        FEATURES
    }
    fn ack_features(&mut self, features: u64) {
        self.rec.lock().unwrap().acked = Some(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = 0x50u8.wrapping_add(offset as u8).wrapping_add(i as u8);
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.rec
            .lock()
            .unwrap()
            .config_writes
            .push((offset, data.to_vec()));
    }
    fn activate(
        &mut self,
        _mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<QueueConfig>,
    ) -> Result<(), ActivateError> {
        if self.fail_activate {
            return Err(ActivateError::Other("nope".into()));
        }
        let mut rec = self.rec.lock().unwrap();
        rec.activations.push(
            queues
                .iter()
                .map(|q| {
                    assert!(q.queue.ready());
                    (
                        q.index,
                        q.queue.size(),
                        q.queue.event_idx_enabled(),
                        q.queue.desc_table(),
                        q.queue.avail_ring(),
                        q.queue.used_ring(),
                    )
                })
                .collect(),
        );
        rec.kicks = queues.into_iter().map(|q| q.kick).collect();
        rec.interrupt = Some(interrupt);
        Ok(())
    }
    fn reset(&mut self) -> bool {
        self.rec.lock().unwrap().resets += 1;
        !self.refuse_reset.load(Ordering::SeqCst)
    }
    fn needs_reset(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }
}

struct Harness {
    dev: VirtioPciDevice,
    rec: Arc<Mutex<Record>>,
    msi: Arc<FakeVectors>,
    refuse_reset: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
}

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
}

fn harness_with(sizes: &[u16], fail_activate: bool) -> Harness {
    let rec = Arc::new(Mutex::new(Record::default()));
    let refuse_reset = Arc::new(AtomicBool::new(false));
    let broken = Arc::new(AtomicBool::new(false));
    let fake = FakeDevice {
        rec: rec.clone(),
        sizes: sizes.to_vec(),
        fail_activate,
        refuse_reset: refuse_reset.clone(),
        broken: broken.clone(),
    };
    let nvec = VirtioPciDevice::msix_vectors_needed(&fake);
    let msi = FakeVectors::new(nvec);
    let dev =
        VirtioPciDevice::new("net0".into(), Box::new(fake), mem(), msi.clone(), BAR0).unwrap();
    Harness {
        dev,
        rec,
        msi,
        refuse_reset,
        broken,
    }
}

fn harness() -> Harness {
    harness_with(&[256, 256], false)
}

// Common config offsets.
const DFSELECT: u64 = 0x00;
const DF: u64 = 0x04;
const GFSELECT: u64 = 0x08;
const GF: u64 = 0x0c;
const MSIX_CONFIG: u64 = 0x10;
const NUM_QUEUES: u64 = 0x12;
const STATUS: u64 = 0x14;
const Q_SELECT: u64 = 0x16;
const Q_SIZE: u64 = 0x18;
const Q_MSIX: u64 = 0x1a;
const Q_ENABLE: u64 = 0x1c;
const Q_NOTIFY_OFF: u64 = 0x1e;
const Q_DESC: u64 = 0x20;
const Q_AVAIL: u64 = 0x28;
const Q_USED: u64 = 0x30;

fn w(d: &mut VirtioPciDevice, off: u64, v: u64, len: usize) {
    d.bar_write(0, off, &v.to_le_bytes()[..len]);
}

fn r(d: &mut VirtioPciDevice, off: u64, len: usize) -> u64 {
    let mut b = [0u8; 8];
    d.bar_read(0, off, &mut b[..len]);
    u64::from_le_bytes(b)
}

fn status_of(d: &mut VirtioPciDevice) -> u8 {
    r(d, STATUS, 1) as u8
}

fn negotiate(d: &mut VirtioPciDevice, features: u64) -> u8 {
    w(d, STATUS, 0, 1);
    w(d, STATUS, u64::from(status::ACKNOWLEDGE), 1);
    w(
        d,
        STATUS,
        u64::from(status::ACKNOWLEDGE | status::DRIVER),
        1,
    );
    w(d, GFSELECT, 0, 4);
    w(d, GF, features & 0xffff_ffff, 4);
    w(d, GFSELECT, 1, 4);
    w(d, GF, features >> 32, 4);
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    w(d, STATUS, u64::from(s), 1);
    status_of(d)
}

fn setup_queue(d: &mut VirtioPciDevice, q: u16, size: u16, base: u64, vector: u16) {
    w(d, Q_SELECT, u64::from(q), 2);
    w(d, Q_SIZE, u64::from(size), 2);
    w(d, Q_MSIX, u64::from(vector), 2);
    w(d, Q_DESC, base, 8); // one 64-bit access
    w(d, Q_AVAIL, base + 0x1000, 4);
    w(d, Q_AVAIL + 4, (base + 0x1000) >> 32, 4);
    w(d, Q_USED, base + 0x2000, 4);
    w(d, Q_USED + 4, 0, 4);
    w(d, Q_ENABLE, 1, 2);
}

fn driver_ok(d: &mut VirtioPciDevice) {
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    w(d, STATUS, u64::from(s), 1);
}

fn cfg_byte(d: &mut VirtioPciDevice, off: usize) -> u8 {
    (d.config_read(off / 4) >> ((off % 4) * 8)) as u8
}

fn cfg_dword(d: &mut VirtioPciDevice, off: usize) -> u32 {
    u32::from_le_bytes([0, 1, 2, 3].map(|i| cfg_byte(d, off + i)))
}

/// Walks the capability list: (offset, id).
fn caps(d: &mut VirtioPciDevice) -> Vec<(usize, u8)> {
    let mut out = vec![];
    let mut p = usize::from(cfg_byte(d, 0x34));
    while p != 0 && out.len() < 48 {
        out.push((p, cfg_byte(d, p)));
        p = usize::from(cfg_byte(d, p + 1));
    }
    out
}

fn enable_msix(d: &mut VirtioPciDevice) {
    let (off, _) = caps(d).into_iter().find(|&(_, id)| id == 0x11).unwrap();
    d.config_write(off / 4, 2, &0x8000u16.to_le_bytes());
}

fn program_vector(d: &mut VirtioPciDevice, v: u64, addr: u32, data: u32, masked: bool) {
    let base = MSIX_TABLE_OFFSET + 16 * v;
    w(d, base, u64::from(addr), 4);
    w(d, base + 4, 0, 4);
    w(d, base + 8, u64::from(data), 4);
    w(d, base + 12, u64::from(masked), 4);
}

#[test]
fn identity_and_bar_sizing() {
    let mut h = harness();
    let d = &mut h.dev;
    assert_eq!(d.config_read(0), 0x1041_1af4);
    assert_eq!(d.config_read(2), 0x0200_0001);
    assert_eq!(d.config_read(11), 0x0040_1af4);
    assert_eq!(d.config_read(15) >> 8 & 0xff, 0, "no INTx pin");
    assert_ne!(d.config_read(1) & 1 << 20, 0, "capability list");
    // 64-bit BAR0, sized like Linux does.
    assert_eq!(d.config_read(4), 0xc000_8004);
    assert_eq!(d.config_read(5), 0);
    d.config_write(4, 0, &[0xff; 4]);
    d.config_write(5, 0, &[0xff; 4]);
    let size = !(u64::from(d.config_read(5)) << 32 | u64::from(d.config_read(4) & !0xf)) + 1;
    assert_eq!(size, BAR0_SIZE);
    d.config_write(4, 0, &0xc000_8000u32.to_le_bytes());
    d.config_write(5, 0, &0u32.to_le_bytes());
    assert_eq!(d.config_read(4), 0xc000_8004);
    // A move is refused; decoding stays put.
    d.config_write(4, 0, &0xd000_0000u32.to_le_bytes());
    assert_eq!(d.config_read(4), 0xc000_8004);
    assert_eq!(d.bars()[0].addr, BAR0);
    // Other BARs are absent.
    d.config_write(6, 0, &[0xff; 4]);
    assert_eq!(d.config_read(6), 0);
}

#[test]
fn capability_chain_has_virtio_caps() {
    let mut h = harness();
    let d = &mut h.dev;
    let list = caps(d);
    assert_eq!(list[0].1, 0x11);
    let msix = list[0].0;
    // Table size 3 (2 queues + config), table/PBA in BAR0.
    assert_eq!(cfg_dword(d, msix) >> 16, 2);
    assert_eq!(cfg_dword(d, msix + 4), MSIX_TABLE_OFFSET as u32);
    assert_eq!(cfg_dword(d, msix + 8), MSIX_PBA_OFFSET as u32);
    let mut found = std::collections::BTreeMap::new();
    for &(off, id) in &list[1..] {
        assert_eq!(id, 0x09);
        let ty = cfg_byte(d, off + 3);
        let cap_len = cfg_byte(d, off + 2);
        assert_eq!(cfg_byte(d, off + 4), 0, "bar");
        found.insert(
            ty,
            (off, cap_len, cfg_dword(d, off + 8), cfg_dword(d, off + 12)),
        );
    }
    assert_eq!(found.len(), 5);
    assert_eq!(found[&cfg_type::COMMON].2, COMMON_CONFIG_OFFSET as u32);
    assert!(found[&cfg_type::COMMON].3 >= 0x38);
    assert_eq!(found[&cfg_type::ISR].2, ISR_OFFSET as u32);
    assert_eq!(found[&cfg_type::DEVICE].2, DEVICE_CONFIG_OFFSET as u32);
    let (noff, nlen, nbase, nsize) = found[&cfg_type::NOTIFY];
    assert_eq!(nlen, 20);
    assert_eq!((nbase, nsize), (NOTIFY_OFFSET as u32, 8));
    assert_eq!(cfg_dword(d, noff + 16), NOTIFY_OFF_MULTIPLIER);
    assert_eq!(found[&cfg_type::PCI].1, 20);
    // Everything the caps point at lies inside BAR0.
    for (_, (_, _, off, len)) in found {
        assert!(u64::from(off) + u64::from(len) <= BAR0_SIZE);
    }
}

#[test]
fn pci_cfg_capability_window() {
    let mut h = harness();
    let d = &mut h.dev;
    let (off, _) = caps(d)
        .into_iter()
        .find(|&(o, id)| id == 0x09 && cfg_byte(d, o + 3) == cfg_type::PCI)
        .unwrap();
    d.config_write((off + 4) / 4, 0, &[0]);
    d.config_write((off + 8) / 4, 0, &(NUM_QUEUES as u32).to_le_bytes());
    d.config_write((off + 12) / 4, 0, &2u32.to_le_bytes());
    assert_eq!(d.config_read((off + 16) / 4) & 0xffff, 2);
    // A write through the window: queue_select = 1.
    d.config_write((off + 8) / 4, 0, &(Q_SELECT as u32).to_le_bytes());
    d.config_write((off + 16) / 4, 0, &1u16.to_le_bytes());
    assert_eq!(r(d, Q_SELECT, 2), 1);
}

#[test]
fn through_config_io_and_bar_region() {
    let h = harness();
    let rec = h.rec.clone();
    let dev: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(h.dev));
    let bus = Arc::new(Mutex::new(PciBus::new()));
    bus.lock().unwrap().add_device(3, dev.clone()).unwrap();
    let mut io = PciConfigIo::new(bus);
    io.write(0, &(0x8000_0000u32 | 3 << 11).to_le_bytes());
    let mut b = [0u8; 4];
    io.read(4, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1041_1af4);
    io.write(0, &(0x8000_0000u32 | 4 << 11).to_le_bytes());
    io.read(4, &mut b);
    assert_eq!(u32::from_le_bytes(b), u32::MAX);
    let regions = PciBarRegion::for_device(&dev);
    assert_eq!(regions.len(), 1);
    let (bar, mut region) = regions.into_iter().next().unwrap();
    assert_eq!((bar.addr, bar.size), (BAR0, BAR0_SIZE));
    let mut n = [0u8; 2];
    region.read(NUM_QUEUES, &mut n);
    assert_eq!(u16::from_le_bytes(n), 2);
    region.write(DEVICE_CONFIG_OFFSET + 6, &[7]);
    assert_eq!(rec.lock().unwrap().config_writes, vec![(6, vec![7])]);
}

#[test]
fn feature_negotiation() {
    let mut h = harness();
    let d = &mut h.dev;
    w(d, DFSELECT, 0, 4);
    assert_eq!(r(d, DF, 4), FEATURES & 0xffff_ffff);
    w(d, DFSELECT, 1, 4);
    assert_eq!(r(d, DF, 4), FEATURES >> 32);
    w(d, DFSELECT, 2, 4);
    assert_eq!(r(d, DF, 4), 0);
    // Without VERSION_1: FEATURES_OK does not stick.
    let s = negotiate(d, 1 << 5);
    assert_eq!(s & status::FEATURES_OK, 0);
    assert_eq!(h.rec.lock().unwrap().acked, None);
    // Features the device does not offer: refused too.
    let s = negotiate(d, VIRTIO_F_VERSION_1 | 1 << 6);
    assert_eq!(s & status::FEATURES_OK, 0);
    // DRIVER_OK without FEATURES_OK is ignored.
    driver_ok(d);
    assert_eq!(status_of(d) & status::DRIVER_OK, 0);
    assert!(h.rec.lock().unwrap().activations.is_empty());
    // A proper subset with VERSION_1.
    let want = VIRTIO_F_VERSION_1 | 1 << 5;
    let s = negotiate(d, want);
    assert_ne!(s & status::FEATURES_OK, 0);
    assert_eq!(h.rec.lock().unwrap().acked, Some(want));
    w(d, GFSELECT, 1, 4);
    assert_eq!(r(d, GF, 4), 1);
    // Frozen after FEATURES_OK.
    w(d, GF, 0, 4);
    assert_eq!(r(d, GF, 4), 1);
}

#[test]
fn queue_setup_and_activation() {
    let mut h = harness();
    let d = &mut h.dev;
    assert_eq!(r(d, NUM_QUEUES, 2), 2);
    negotiate(d, VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX);
    w(d, Q_SELECT, 1, 2);
    assert_eq!(r(d, Q_SIZE, 2), 256);
    assert_eq!(r(d, Q_NOTIFY_OFF, 2), 1);
    w(d, Q_SELECT, 7, 2);
    assert_eq!(r(d, Q_SIZE, 2), 0, "absent queue");
    setup_queue(d, 0, 128, 0x1_0000, 1);
    setup_queue(d, 1, 64, 0x2_0000, 2);
    // Writes after enable are ignored.
    w(d, Q_SIZE, 32, 2);
    assert_eq!(r(d, Q_SIZE, 2), 64);
    assert_eq!(r(d, Q_DESC, 8), 0x2_0000);
    assert_eq!(r(d, Q_ENABLE, 2), 1);
    driver_ok(d);
    assert!(d.is_activated());
    assert_ne!(status_of(d) & status::DRIVER_OK, 0);
    assert_eq!(status_of(d) & status::DEVICE_NEEDS_RESET, 0);
    let rec = h.rec.lock().unwrap();
    assert_eq!(
        rec.activations,
        vec![vec![
            (0, 128, true, 0x1_0000, 0x1_1000, 0x1_2000),
            (1, 64, true, 0x2_0000, 0x2_1000, 0x2_2000)
        ]]
    );
    drop(rec);
    // Queue setup is frozen after DRIVER_OK.
    w(d, Q_SELECT, 0, 2);
    w(d, Q_DESC, 0x5_0000, 4);
    assert_eq!(r(d, Q_DESC, 4), 0x1_0000);
}

#[test]
fn only_enabled_queues_and_no_event_idx() {
    let mut h = harness();
    let d = &mut h.dev;
    negotiate(d, VIRTIO_F_VERSION_1);
    setup_queue(d, 1, 256, 0x3_0000, 0xffff);
    driver_ok(d);
    let rec = h.rec.lock().unwrap();
    assert_eq!(
        rec.activations,
        vec![vec![(1, 256, false, 0x3_0000, 0x3_1000, 0x3_2000)]]
    );
}

#[test]
fn notify_write_and_ioeventfds() {
    let mut h = harness();
    let d = &mut h.dev;
    let fds = d.ioeventfds();
    assert_eq!(fds.len(), 2);
    assert_eq!(fds[0].0, BAR0 + NOTIFY_OFFSET);
    assert_eq!(fds[1].0, BAR0 + NOTIFY_OFFSET + 4);
    negotiate(d, VIRTIO_F_VERSION_1);
    setup_queue(d, 0, 256, 0x1_0000, 1);
    setup_queue(d, 1, 256, 0x2_0000, 2);
    driver_ok(d);
    // An MMIO-exit notify of queue 1 (Linux writes the queue index).
    w(d, NOTIFY_OFFSET + 4, 1, 2);
    let rec = h.rec.lock().unwrap();
    assert_eq!(rec.kicks[1].read().unwrap(), 1);
    assert!(rec.kicks[0].read().is_err(), "queue 0 not kicked");
    drop(rec);
    // Misaligned or out-of-range notifications are dropped.
    w(d, NOTIFY_OFFSET + 2, 0, 2);
    w(d, NOTIFY_OFFSET + 64, 0, 2);
    assert!(d.ioeventfds()[0].1.read().is_err());
    // The ioeventfd the VMM registers is the same eventfd the device got.
    d.ioeventfds()[0].1.write(1).unwrap();
    assert_eq!(h.rec.lock().unwrap().kicks[0].read().unwrap(), 1);
}

#[test]
fn reset_clears_state() {
    let mut h = harness();
    let d = &mut h.dev;
    w(d, MSIX_CONFIG, 0, 2);
    negotiate(d, VIRTIO_F_VERSION_1);
    let resets_before = h.rec.lock().unwrap().resets;
    setup_queue(d, 0, 64, 0x1_0000, 1);
    driver_ok(d);
    w(d, NOTIFY_OFFSET, 0, 2);
    w(d, STATUS, 0, 1);
    assert_eq!(h.rec.lock().unwrap().resets, resets_before + 1);
    assert_eq!(status_of(d), 0);
    assert!(!d.is_activated());
    assert_eq!(r(d, MSIX_CONFIG, 2), 0xffff);
    w(d, Q_SELECT, 0, 2);
    assert_eq!(r(d, Q_SIZE, 2), 256);
    assert_eq!(r(d, Q_ENABLE, 2), 0);
    assert_eq!(r(d, Q_MSIX, 2), 0xffff);
    assert_eq!(r(d, Q_DESC, 8), 0);
    w(d, GFSELECT, 1, 4);
    assert_eq!(r(d, GF, 4), 0);
    assert!(d.ioeventfds()[0].1.read().is_err(), "stale kick drained");
    // And it can be brought up again.
    negotiate(d, VIRTIO_F_VERSION_1);
    setup_queue(d, 0, 64, 0x1_0000, 1);
    driver_ok(d);
    assert_eq!(h.rec.lock().unwrap().activations.len(), 2);
}

#[test]
fn refused_reset_still_reads_zero_then_needs_reset() {
    let mut h = harness();
    let d = &mut h.dev;
    h.refuse_reset.store(true, Ordering::SeqCst);
    negotiate(d, VIRTIO_F_VERSION_1);
    w(d, STATUS, 0, 1);
    assert_eq!(status_of(d), 0, "Linux polls for 0 after a reset");
    negotiate(d, VIRTIO_F_VERSION_1);
    setup_queue(d, 0, 64, 0x1_0000, 1);
    driver_ok(d);
    assert!(!d.is_activated());
    assert_ne!(status_of(d) & status::DEVICE_NEEDS_RESET, 0);
    h.refuse_reset.store(false, Ordering::SeqCst);
    negotiate(d, VIRTIO_F_VERSION_1);
    setup_queue(d, 0, 64, 0x1_0000, 1);
    driver_ok(d);
    assert!(d.is_activated());
}

#[test]
fn bad_queues_set_needs_reset() {
    // Ring outside RAM, size not a power of two, size above max,
    // misaligned descriptor table.
    let cases: [(u16, u64); 4] = [
        (64, 0x10_0000),
        (100, 0x1_0000),
        (512, 0x1_0000),
        (64, 0x1_0008),
    ];
    for (size, base) in cases {
        let mut h = harness();
        let d = &mut h.dev;
        enable_msix(d);
        program_vector(d, 0, 0xfee0_0000, 0x41, false);
        negotiate(d, VIRTIO_F_VERSION_1);
        w(d, MSIX_CONFIG, 0, 2);
        setup_queue(d, 0, size, base, 1);
        driver_ok(d);
        assert!(!d.is_activated(), "size {size} base {base:#x}");
        assert!(h.rec.lock().unwrap().activations.is_empty());
        assert_ne!(status_of(d) & status::DEVICE_NEEDS_RESET, 0);
        // Config interrupt raised with the ISR config bit.
        assert_eq!(h.msi.take_triggers(), vec![0]);
        assert_eq!(r(d, ISR_OFFSET, 1), 2);
        assert_eq!(r(d, ISR_OFFSET, 1), 0, "ISR read clears");
        w(d, STATUS, 0, 1);
        assert_eq!(status_of(d), 0);
    }
}

#[test]
fn activation_failure_sets_needs_reset() {
    let mut h = harness_with(&[256], false);
    negotiate(&mut h.dev, VIRTIO_F_VERSION_1);
    setup_queue(&mut h.dev, 0, 64, 0x1_0000, 1);
    driver_ok(&mut h.dev);
    assert!(h.dev.is_activated());
    h.broken.store(true, Ordering::SeqCst);
    assert_ne!(status_of(&mut h.dev) & status::DEVICE_NEEDS_RESET, 0);

    let mut h = harness_with(&[256], true);
    negotiate(&mut h.dev, VIRTIO_F_VERSION_1);
    setup_queue(&mut h.dev, 0, 64, 0x1_0000, 1);
    driver_ok(&mut h.dev);
    assert!(!h.dev.is_activated());
    assert_ne!(status_of(&mut h.dev) & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn msix_vectors_and_interrupts() {
    let mut h = harness();
    let d = &mut h.dev;
    // Vector numbers beyond the table read back as NO_VECTOR.
    w(d, MSIX_CONFIG, 3, 2);
    assert_eq!(r(d, MSIX_CONFIG, 2), 0xffff);
    w(d, MSIX_CONFIG, 0, 2);
    assert_eq!(r(d, MSIX_CONFIG, 2), 0);
    enable_msix(d);
    assert!(h.msi.take_updates().is_empty(), "all entries still masked");
    program_vector(d, 1, 0xfee0_1000, 0x4022, false);
    assert_eq!(
        h.msi.take_updates(),
        vec![(
            1,
            Some(MsiMessage {
                addr: 0xfee0_1000,
                data: 0x4022
            })
        )]
    );
    program_vector(d, 2, 0xfee0_2000, 0x4023, true);
    negotiate(d, VIRTIO_F_VERSION_1);
    setup_queue(d, 0, 64, 0x1_0000, 1);
    setup_queue(d, 1, 64, 0x2_0000, 2);
    w(d, Q_SELECT, 1, 2);
    assert_eq!(r(d, Q_MSIX, 2), 2);
    driver_ok(d);
    let irq = h.rec.lock().unwrap().interrupt.clone().unwrap();
    // Queue 0 → vector 1, delivered.
    irq.trigger(VirtioInterruptType::Queue(0)).unwrap();
    assert_eq!(h.msi.take_triggers(), vec![1]);
    assert_eq!(h.msi.fds[1].read().unwrap(), 1);
    assert!(std::ptr::eq(
        irq.notifier(VirtioInterruptType::Queue(0)).unwrap(),
        &h.msi.fds[1]
    ));
    // Queue 1 → vector 2, masked: pending, then delivered on unmask.
    irq.trigger(VirtioInterruptType::Queue(1)).unwrap();
    assert!(h.msi.take_triggers().is_empty());
    assert_eq!(r(d, MSIX_PBA_OFFSET, 8), 1 << 2);
    w(d, MSIX_TABLE_OFFSET + 2 * 16 + 12, 0, 4);
    assert_eq!(h.msi.take_triggers(), vec![2]);
    assert_eq!(r(d, MSIX_PBA_OFFSET, 8), 0);
    // Config → vector 0 (masked, never programmed): pending only.
    irq.trigger(VirtioInterruptType::Config).unwrap();
    assert!(h.msi.take_triggers().is_empty());
    assert_eq!(r(d, ISR_OFFSET, 1), u64::from(ISR_QUEUE | ISR_CONFIG));
    // Unknown queue.
    assert!(irq.trigger(VirtioInterruptType::Queue(2)).is_err());
    assert!(irq.notifier(VirtioInterruptType::Queue(2)).is_none());
    // Unassigned vector: no notifier, trigger only sets the ISR.
    w(d, STATUS, 0, 1);
    assert!(irq.notifier(VirtioInterruptType::Config).is_none());
    irq.trigger(VirtioInterruptType::Config).unwrap();
    assert!(h.msi.take_triggers().is_empty());
    // Table reads back through BAR0 (64-bit access of address).
    assert_eq!(r(d, MSIX_TABLE_OFFSET + 16, 8), 0xfee0_1000);
    assert_eq!(r(d, MSIX_TABLE_OFFSET + 24, 4), 0x4022);
}

#[test]
fn device_config_forwarded() {
    let mut h = harness();
    let d = &mut h.dev;
    assert_eq!(r(d, DEVICE_CONFIG_OFFSET, 1), 0x50);
    assert_eq!(r(d, DEVICE_CONFIG_OFFSET + 4, 2), 0x5554);
    w(d, DEVICE_CONFIG_OFFSET + 2, 0xaabb, 2);
    assert_eq!(
        h.rec.lock().unwrap().config_writes,
        vec![(2, vec![0xbb, 0xaa])]
    );
    // Crossing the region end is dropped.
    w(d, DEVICE_CONFIG_OFFSET + 0xffe, 0, 4);
    assert_eq!(h.rec.lock().unwrap().config_writes.len(), 1);
}

#[test]
fn constructor_rejects_bad_input() {
    let mk = |sizes: Vec<u16>, nvec: u16, bar: u64| {
        let fake = FakeDevice {
            rec: Arc::default(),
            sizes,
            fail_activate: false,
            refuse_reset: Arc::default(),
            broken: Arc::default(),
        };
        VirtioPciDevice::new(
            "x".into(),
            Box::new(fake),
            mem(),
            FakeVectors::new(nvec),
            bar,
        )
    };
    assert!(mk(vec![256], 2, BAR0).is_ok());
    assert!(matches!(
        mk(vec![], 1, BAR0),
        Err(VirtioPciError::QueueCount(0))
    ));
    assert!(matches!(
        mk(vec![100], 2, BAR0),
        Err(VirtioPciError::QueueMaxSize { .. })
    ));
    assert!(matches!(
        mk(vec![256], 0, BAR0),
        Err(VirtioPciError::VectorCount(0))
    ));
    assert!(matches!(
        mk(vec![256], 600, BAR0),
        Err(VirtioPciError::VectorCount(600))
    ));
    assert!(matches!(
        mk(vec![256], 2, BAR0 + 0x1000),
        Err(VirtioPciError::Pci(_))
    ));
}

/// xorshift64*, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let h = harness();
    let dev: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(h.dev));
    let bus = Arc::new(Mutex::new(PciBus::new()));
    bus.lock().unwrap().add_device(1, dev.clone()).unwrap();
    let mut io = PciConfigIo::new(bus);
    let (_, mut region) = PciBarRegion::for_device(&dev).into_iter().next().unwrap();
    let sizes = [0usize, 1, 2, 3, 4, 5, 8, 16];
    for i in 0..200_000u32 {
        let r = rng.next();
        let len = sizes[(r % sizes.len() as u64) as usize];
        let value = rng.next();
        let mut data = [0u8; 16];
        data[..8].copy_from_slice(&value.to_le_bytes());
        data[8..].copy_from_slice(&rng.next().to_le_bytes());
        let sel = rng.next();
        // Bias towards interesting places: the common config, the MSI-X
        // table and the status register.
        let offset = match sel % 8 {
            0 => sel >> 8,
            1 => (sel >> 8) % BAR0_SIZE,
            2 => (sel >> 8) % 0x40,
            3 => MSIX_TABLE_OFFSET + (sel >> 8) % 0x40,
            4 => STATUS,
            _ => (sel >> 8) % 0x100,
        };
        match r >> 61 {
            0 => region.read(offset, &mut data[..len]),
            1 | 2 => region.write(offset, &data[..len]),
            3 => {
                let mut d = dev.lock().unwrap();
                d.config_write((offset >> 2) as usize % 80, offset & 7, &data[..len]);
            }
            4 => {
                let _ = dev.lock().unwrap().config_read((offset >> 2) as usize % 80);
            }
            5 => io.write(offset % 10, &data[..len]),
            6 => io.read(offset % 10, &mut data[..len]),
            _ => {
                // A driver-shaped sequence now and then.
                let mut d = dev.lock().unwrap();
                d.bar_write(0, STATUS, &[(value & 0xff) as u8]);
                if i % 7 == 0 {
                    d.bar_write(0, Q_ENABLE, &[1, 0]);
                }
            }
        }
    }
    // Still a working device afterwards.
    let mut d = dev.lock().unwrap();
    d.bar_write(0, STATUS, &[0]);
    let mut s = [0u8; 1];
    d.bar_read(0, STATUS, &mut s);
    assert_eq!(s[0], 0);
}

/// A device like [`harness`]'s on the given guest memory.
fn harness_on(m: &GuestMemoryMmap) -> Harness {
    let rec = Arc::new(Mutex::new(Record::default()));
    let refuse_reset = Arc::new(AtomicBool::new(false));
    let broken = Arc::new(AtomicBool::new(false));
    let fake = FakeDevice {
        rec: rec.clone(),
        sizes: vec![256, 256],
        fail_activate: false,
        refuse_reset: refuse_reset.clone(),
        broken: broken.clone(),
    };
    let msi = FakeVectors::new(VirtioPciDevice::msix_vectors_needed(&fake));
    let dev =
        VirtioPciDevice::new("net0".into(), Box::new(fake), m.clone(), msi.clone(), BAR0).unwrap();
    Harness {
        dev,
        rec,
        msi,
        refuse_reset,
        broken,
    }
}

#[test]
fn saved_state_restores_an_activated_function_elsewhere() {
    use vm_memory::Bytes;
    let m = mem();
    let mut a = harness_on(&m);
    let d = &mut a.dev;
    negotiate(d, VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX);
    enable_msix(d);
    program_vector(d, 1, 0xfee0_0000, 0x31, false);
    setup_queue(d, 0, 128, 0x1_0000, 1);
    setup_queue(d, 1, 64, 0x2_0000, 2);
    driver_ok(d);
    // The guest has seen 5 buffers used on queue 0.
    m.write_obj(5u16, GuestAddress(0x1_2002)).unwrap();
    let saved = a.dev.save_state();
    assert!(saved.activated);

    let mut b = harness_on(&m);
    b.msi.take_updates();
    b.dev.restore_state(&saved).unwrap();
    assert!(b.dev.is_activated());
    assert_eq!(b.dev.save_state(), saved);
    let rec = b.rec.lock().unwrap();
    assert_eq!(
        rec.acked,
        Some(VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX)
    );
    assert_eq!(
        rec.activations,
        vec![vec![
            (0, 128, true, 0x1_0000, 0x1_1000, 0x1_2000),
            (1, 64, true, 0x2_0000, 0x2_1000, 0x2_2000)
        ]]
    );
    // Every queue is kicked once, so a notification lost in the move is not.
    for k in &rec.kicks {
        assert_eq!(k.read().unwrap(), 1);
    }
    drop(rec);
    // The MSI-X table was routed again, and the queues' vectors fired once.
    let routed = b.msi.take_updates();
    assert!(
        routed.iter().any(|(v, msg)| *v == 1 && msg.is_some()),
        "{routed:?}"
    );
    let fired = b.msi.take_triggers();
    assert!(fired.contains(&1), "{fired:?}");
    // A running function refuses a second restore; another shape too.
    assert!(b.dev.restore_state(&saved).is_err());
    let mut other = saved.clone();
    other.queues.pop();
    assert!(harness_on(&m).dev.restore_state(&other).is_err());
}
