//! Unprivileged tests: a driver-side split-ring writer over a
//! GuestMemoryMmap plays the guest, a seqpacket pair plays the tap.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_backend::{seqpacket_pair, FrameBackend, SeqpacketBackend};
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;
use crate::virtio::test_driver::DriverRing;
use crate::virtio::{
    ActivateError, QueueConfig, VirtioDevice, VirtioDeviceState, VirtioInterrupt,
    VirtioInterruptType, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};

const MEM_SIZE: usize = 0x80_0000;
const RX_RING: u64 = 0x0;
const TX_RING: u64 = 0x1_0000;
const CTRL_RING: u64 = 0x2_0000;
const BUF_BASE: u64 = 0x10_0000;

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

/// A frame as the tap hands it over: header (num_buffers garbage) + data.
fn tap_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f[0] = 1; // NEEDS_CSUM, passed through untouched
    f[10] = 0xee;
    f[11] = 0xee;
    f.extend_from_slice(payload);
    f
}

fn write_peer(peer: &mut SeqpacketBackend, frame: &[u8]) {
    peer.write_frame(&[IoSlice::new(frame)]).unwrap();
}

fn read_peer(peer: &mut SeqpacketBackend) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; MAX_BUFFER_LEN + 100];
    let n = peer.read_frame(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

struct Fixture {
    mem: GuestMemoryMmap,
    rx: DriverRing,
    tx: DriverRing,
    peer: SeqpacketBackend,
    metrics: Arc<NetMetrics>,
    qp: QueuePair,
}

fn fixture(mrg_rxbuf: bool, size: u16) -> Fixture {
    let mem = memory();
    let rx = DriverRing::new(&mem, RX_RING, size);
    let tx = DriverRing::new(&mem, TX_RING, size);
    let (dev, peer) = seqpacket_pair().unwrap();
    let metrics = Arc::new(NetMetrics::new(1));
    let qp = QueuePair::new(
        0,
        mem.clone(),
        rx.queue(false),
        tx.queue(false),
        Box::new(dev),
        mrg_rxbuf,
        Arc::clone(&metrics),
    );
    Fixture {
        mem,
        rx,
        tx,
        peer,
        metrics,
        qp,
    }
}

impl Fixture {
    fn counters(&self) -> QueuePairCounters {
        self.metrics.snapshot()[0]
    }
}

// ---------------------------------------------------------------- TX

#[test]
fn tx_frame_with_separate_header_arrives_whole() {
    let mut f = fixture(false, 16);
    let hdr = [0x11u8; VNET_HDR_LEN];
    let payload = pattern(1000, 3);
    f.mem.write_slice(&hdr, GuestAddress(BUF_BASE)).unwrap();
    f.mem
        .write_slice(&payload, GuestAddress(BUF_BASE + 0x1000))
        .unwrap();
    let head = f.tx.add_chain(&[
        (BUF_BASE, VNET_HDR_LEN as u32, false),
        (BUF_BASE + 0x1000, payload.len() as u32, false),
    ]);

    let out = f.qp.process_tx().unwrap();
    assert!(out.notify);
    assert!(!out.backend_full);

    let got = read_peer(&mut f.peer).unwrap();
    assert_eq!(&got[..VNET_HDR_LEN], &hdr);
    assert_eq!(&got[VNET_HDR_LEN..], &payload[..]);
    assert_eq!(
        read_peer(&mut f.peer).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert_eq!(f.tx.used_idx(), 1);
    assert_eq!(f.tx.used_elem(0), (u32::from(head), 0));
    let c = f.counters();
    assert_eq!((c.tx_frames, c.tx_bytes), (1, 1012));
    assert_eq!(c.notifications, 1);
    assert_eq!(c.tx_malformed, 0);
}

#[test]
fn tx_batch_notifies_once_and_respects_event_idx() {
    let mem = memory();
    let rx = DriverRing::new(&mem, RX_RING, 16);
    let mut tx = DriverRing::new(&mem, TX_RING, 16);
    let (dev, mut peer) = seqpacket_pair().unwrap();
    let txq = tx.queue(true);
    let metrics = Arc::new(NetMetrics::new(1));
    let mut qp = QueuePair::new(
        0,
        mem.clone(),
        rx.queue(false),
        txq,
        Box::new(dev),
        false,
        metrics,
    );
    mem.write_slice(&[0u8; 64], GuestAddress(BUF_BASE)).unwrap();
    // The driver wants an interrupt after the 5th used buffer (index 4).
    tx.set_used_event(4);
    for _ in 0..3 {
        tx.add_chain(&[(BUF_BASE, 64, false)]);
    }
    assert!(!qp.process_tx().unwrap().notify);
    for _ in 0..3 {
        tx.add_chain(&[(BUF_BASE, 64, false)]);
    }
    assert!(qp.process_tx().unwrap().notify);
    for _ in 0..6 {
        assert_eq!(read_peer(&mut peer).unwrap().len(), 64);
    }
    assert_eq!(tx.used_idx(), 6);
}

#[test]
fn rx_batch_publishes_once_and_respects_event_idx() {
    let mem = memory();
    let mut rx = DriverRing::new(&mem, RX_RING, 16);
    let tx = DriverRing::new(&mem, TX_RING, 16);
    let (dev, mut peer) = seqpacket_pair().unwrap();
    let metrics = Arc::new(NetMetrics::new(1));
    let mut qp = QueuePair::new(
        0,
        mem.clone(),
        rx.queue(true),
        tx.queue(false),
        Box::new(dev),
        false,
        Arc::clone(&metrics),
    );
    // The driver wants an interrupt after the 5th used buffer (index 4).
    rx.set_used_event(4);
    for i in 0..8 {
        rx.add_chain(&[(BUF_BASE + i * 0x1000, 4096, true)]);
    }
    for i in 0..3 {
        write_peer(&mut peer, &tap_frame(&pattern(100, i)));
    }
    assert!(!qp.process_rx().unwrap().notify);
    assert_eq!(rx.used_idx(), 3);
    for i in 0..3 {
        write_peer(&mut peer, &tap_frame(&pattern(100, i)));
    }
    // Frames 4..6 cross used_event 4: one notification for the batch.
    assert!(qp.process_rx().unwrap().notify);
    assert_eq!(rx.used_idx(), 6);
    assert_eq!(rx.used_elem(5), (5, 112));
    assert_eq!(metrics.snapshot()[0].notifications, 1);
    // Past used_event and not crossing it again: no notification.
    write_peer(&mut peer, &tap_frame(&pattern(100, 9)));
    assert!(!qp.process_rx().unwrap().notify);
    assert_eq!(rx.used_idx(), 7);
}

#[test]
fn tx_backend_full_keeps_the_chain_until_writable() {
    let mut f = fixture(false, 256);
    let len = 60_000u32;
    f.mem
        .write_slice(&pattern(len as usize, 1), GuestAddress(BUF_BASE))
        .unwrap();
    for _ in 0..255 {
        f.tx.add_chain(&[(BUF_BASE, len, false)]);
    }
    let out = f.qp.process_tx().unwrap();
    assert!(out.backend_full, "socket buffers should fill up: {out:?}");
    let sent = f.counters().tx_frames;
    assert!(sent > 0 && sent < 255);
    assert_eq!(u64::from(f.tx.used_idx()), sent);
    // Drain the peer; the device resumes where it stopped.
    let mut received = 0u64;
    loop {
        while read_peer(&mut f.peer).is_ok() {
            received += 1;
        }
        if received == 255 {
            break;
        }
        let out = f.qp.process_tx().unwrap();
        assert!(!out.budget_exhausted);
    }
    assert_eq!(f.tx.used_idx(), 255);
    assert_eq!(f.counters().tx_frames, 255);
    assert_eq!(f.counters().tx_malformed, 0);
}

// ---------------------------------------------------------------- RX

#[test]
fn rx_frame_lands_in_one_buffer_with_num_buffers_1() {
    let mut f = fixture(false, 16);
    let frame = tap_frame(&pattern(60, 7));
    write_peer(&mut f.peer, &frame);
    let head = f.rx.add_chain(&[(BUF_BASE, 2048, true)]);

    let out = f.qp.process_rx().unwrap();
    assert!(out.notify);
    // The only buffer is used: wait for the next kick.
    assert!(out.paused);
    assert_eq!(f.rx.used_idx(), 1);
    assert_eq!(f.rx.used_elem(0), (u32::from(head), 72));
    let got = read(&f.mem, BUF_BASE, 72);
    assert_eq!(&got[..10], &frame[..10]);
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1);
    assert_eq!(&got[12..], &frame[12..]);
    let c = f.counters();
    assert_eq!((c.rx_frames, c.rx_bytes), (1, 72));
}

#[test]
fn rx_mrg_rxbuf_spans_two_buffers() {
    let mut f = fixture(true, 16);
    let frame = tap_frame(&pattern(1500, 9));
    write_peer(&mut f.peer, &frame);
    let a = f.rx.add_chain(&[(BUF_BASE, 1024, true)]);
    let b = f.rx.add_chain(&[(BUF_BASE + 0x1000, 1024, true)]);

    let out = f.qp.process_rx().unwrap();
    assert!(out.notify);
    assert_eq!(f.rx.used_idx(), 2);
    assert_eq!(f.rx.used_elem(0), (u32::from(a), 1024));
    assert_eq!(f.rx.used_elem(1), (u32::from(b), 1512 - 1024));
    let mut got = read(&f.mem, BUF_BASE, 1024);
    got.extend(read(&f.mem, BUF_BASE + 0x1000, 1512 - 1024));
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 2);
    assert_eq!(&got[..10], &frame[..10]);
    assert_eq!(&got[12..], &frame[12..]);
}

#[test]
fn rx_mrg_header_split_across_chains() {
    // A first buffer shorter than the header: num_buffers lands in the
    // second chain.
    let mut f = fixture(true, 16);
    let frame = tap_frame(&pattern(100, 2));
    write_peer(&mut f.peer, &frame);
    f.rx.add_chain(&[(BUF_BASE, 11, true)]);
    f.rx.add_chain(&[(BUF_BASE + 0x1000, 4096, true)]);
    f.qp.process_rx().unwrap();
    let first = read(&f.mem, BUF_BASE, 11);
    let second = read(&f.mem, BUF_BASE + 0x1000, 101);
    assert_eq!(first[10], 2);
    assert_eq!(second[0], 0);
    assert_eq!(&second[1..], &frame[12..]);
}

#[test]
fn rx_without_buffers_keeps_the_frame_in_the_backend() {
    let mut f = fixture(false, 16);
    let first = tap_frame(&pattern(200, 1));
    let second = tap_frame(&pattern(300, 2));
    write_peer(&mut f.peer, &first);
    write_peer(&mut f.peer, &second);

    let out = f.qp.process_rx().unwrap();
    assert!(out.paused);
    assert!(!out.notify);
    assert!(!f.qp.has_pending_rx());
    assert_eq!(f.counters().rx_dropped_no_buffer, 0);

    // The guest posts one buffer: one frame, then paused again.
    f.rx.add_chain(&[(BUF_BASE, 4096, true)]);
    let out = f.qp.process_rx().unwrap();
    assert!(out.paused && out.notify);
    assert_eq!(f.rx.used_elem(0).1 as usize, first.len());
    f.rx.add_chain(&[(BUF_BASE + 0x2000, 4096, true)]);
    let out = f.qp.process_rx().unwrap();
    assert!(out.notify);
    assert_eq!(f.rx.used_elem(1).1 as usize, second.len());
    assert_eq!(
        &read(&f.mem, BUF_BASE + 0x2000 + 12, 300)[..],
        &second[12..]
    );
    let c = f.counters();
    assert_eq!((c.rx_frames, c.rx_dropped_no_buffer), (2, 0));
}

#[test]
fn rx_mrg_partial_buffers_defer_the_frame() {
    let mut f = fixture(true, 16);
    let frame = tap_frame(&pattern(3000, 5));
    write_peer(&mut f.peer, &frame);
    f.rx.add_chain(&[(BUF_BASE, 2048, true)]);

    let out = f.qp.process_rx().unwrap();
    assert!(out.paused);
    assert!(f.qp.has_pending_rx());
    assert_eq!(f.rx.used_idx(), 0);

    f.rx.add_chain(&[(BUF_BASE + 0x1000, 2048, true)]);
    let out = f.qp.process_rx().unwrap();
    assert!(out.notify);
    assert!(!f.qp.has_pending_rx());
    assert_eq!(f.rx.used_idx(), 2);
    assert_eq!(f.rx.used_elem(0).1, 2048);
    assert_eq!(f.rx.used_elem(1).1 as usize, frame.len() - 2048);
    assert_eq!(read(&f.mem, BUF_BASE + 10, 1)[0], 2);
    assert_eq!(f.counters().rx_frames, 1);
}

#[test]
fn rx_without_mrg_drops_frames_bigger_than_the_chain() {
    let mut f = fixture(false, 16);
    write_peer(&mut f.peer, &tap_frame(&pattern(3000, 5)));
    write_peer(&mut f.peer, &tap_frame(&pattern(100, 5)));
    let a =
        f.rx.add_chain(&[(BUF_BASE, 1024, true), (BUF_BASE + 0x1000, 1024, true)]);
    let b = f.rx.add_chain(&[(BUF_BASE + 0x2000, 1024, true)]);
    f.qp.process_rx().unwrap();
    assert_eq!(f.rx.used_elem(0), (u32::from(a), 0));
    assert_eq!(f.rx.used_elem(1), (u32::from(b), 112));
    let c = f.counters();
    assert_eq!((c.rx_frames, c.rx_dropped_no_buffer), (1, 1));
}

#[test]
fn rx_chain_spread_over_descriptors() {
    let mut f = fixture(false, 16);
    let frame = tap_frame(&pattern(5000, 4));
    write_peer(&mut f.peer, &frame);
    f.rx.add_chain(&[
        (BUF_BASE, 12, true),
        (BUF_BASE + 0x1000, 1000, true),
        (BUF_BASE + 0x2000, 8000, true),
    ]);
    f.qp.process_rx().unwrap();
    assert_eq!(f.rx.used_elem(0).1 as usize, frame.len());
    let mut got = read(&f.mem, BUF_BASE, 12);
    got.extend(read(&f.mem, BUF_BASE + 0x1000, 1000));
    got.extend(read(&f.mem, BUF_BASE + 0x2000, frame.len() - 1012));
    assert_eq!(&got[12..], &frame[12..]);
}

#[test]
fn rx_backend_hangup_is_reported() {
    let mut f = fixture(false, 16);
    f.rx.add_chain(&[(BUF_BASE, 2048, true)]);
    drop(f.peer);
    let out = f.qp.process_rx().unwrap();
    assert!(out.backend_closed);
    assert_eq!(f.rx.used_idx(), 0);
}

// ---------------------------------------------------------------- hostile guest

#[test]
fn hostile_tx_descriptor_loop_is_dropped() {
    let mut f = fixture(false, 16);
    // 0 -> 1 -> 0 -> ...
    f.tx.set_desc(0, BUF_BASE, 100, VRING_DESC_F_NEXT as u16, 1);
    f.tx.set_desc(1, BUF_BASE, 100, VRING_DESC_F_NEXT as u16, 0);
    f.tx.push(0);
    f.tx.publish();
    let out = f.qp.process_tx().unwrap();
    assert!(out.notify);
    assert_eq!(f.tx.used_elem(0), (0, 0));
    assert_eq!(f.counters().tx_malformed, 1);
    assert!(read_peer(&mut f.peer).is_err());
}

#[test]
fn hostile_rx_descriptor_loop_does_not_spin() {
    let mut f = fixture(true, 16);
    write_peer(&mut f.peer, &tap_frame(&pattern(5000, 1)));
    f.rx.set_desc(
        0,
        BUF_BASE,
        100,
        (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) as u16,
        1,
    );
    f.rx.set_desc(
        1,
        BUF_BASE,
        100,
        (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) as u16,
        0,
    );
    f.rx.push(0);
    f.rx.publish();
    f.qp.process_rx().unwrap();
    assert_eq!(f.rx.used_elem(0), (0, 0));
    assert_eq!(f.counters().rx_malformed, 1);
}

#[test]
fn hostile_out_of_range_addresses() {
    let mut f = fixture(false, 16);
    f.tx.add_chain(&[(0xffff_ffff_0000, 64, false)]);
    f.tx.add_chain(&[(MEM_SIZE as u64 - 8, 64, false)]); // crosses the end
    f.qp.process_tx().unwrap();
    assert_eq!(f.tx.used_idx(), 2);
    assert_eq!(f.counters().tx_malformed, 2);

    write_peer(&mut f.peer, &tap_frame(&pattern(100, 1)));
    write_peer(&mut f.peer, &tap_frame(&pattern(100, 2)));
    f.rx.add_chain(&[(u64::MAX - 10, 4096, true)]);
    f.rx.add_chain(&[(BUF_BASE, 4096, true)]);
    f.qp.process_rx().unwrap();
    assert_eq!(f.rx.used_elem(0).1, 0);
    assert_eq!(f.rx.used_elem(1).1, 112);
    let c = f.counters();
    assert_eq!((c.rx_malformed, c.rx_frames), (1, 1));
}

#[test]
fn hostile_zero_length_and_huge_descriptors() {
    let mut f = fixture(false, 16);
    let payload = pattern(50, 1);
    f.mem.write_slice(&payload, GuestAddress(BUF_BASE)).unwrap();
    // Zero-length only: too short.
    f.tx.add_chain(&[(BUF_BASE, 0, false)]);
    // Zero-length in the middle is harmless.
    f.tx.add_chain(&[
        (BUF_BASE, 12, false),
        (0, 0, false),
        (BUF_BASE + 12, 38, false),
    ]);
    // Huge: longer than any frame.
    f.tx.add_chain(&[(BUF_BASE, u32::MAX, false)]);
    f.tx.add_chain(&[(BUF_BASE, 40_000, false), (BUF_BASE, 40_000, false)]);
    // Device-writable descriptor on TX.
    f.tx.add_chain(&[(BUF_BASE, 12, false), (BUF_BASE, 38, true)]);
    f.qp.process_tx().unwrap();
    assert_eq!(f.tx.used_idx(), 5);
    let c = f.counters();
    assert_eq!((c.tx_frames, c.tx_malformed), (1, 4));
    assert_eq!(read_peer(&mut f.peer).unwrap(), payload);

    // RX: a zero-length chain, then a readable one, then a good one.
    write_peer(&mut f.peer, &tap_frame(&pattern(100, 1)));
    write_peer(&mut f.peer, &tap_frame(&pattern(100, 2)));
    write_peer(&mut f.peer, &tap_frame(&pattern(100, 3)));
    f.rx.add_chain(&[(BUF_BASE, 0, true)]);
    f.rx.add_chain(&[(BUF_BASE, 4096, false)]);
    f.rx.add_chain(&[(BUF_BASE, 4096, true)]);
    f.qp.process_rx().unwrap();
    assert_eq!(f.rx.used_idx(), 3);
    let c = f.counters();
    assert_eq!((c.rx_malformed, c.rx_frames), (2, 1));
}

#[test]
fn hostile_head_index_out_of_range() {
    let mut f = fixture(false, 16);
    f.tx.push(999);
    f.tx.publish();
    f.mem
        .write_slice(&[0u8; 64], GuestAddress(BUF_BASE))
        .unwrap();
    f.tx.add_chain(&[(BUF_BASE, 64, false)]);
    f.qp.process_tx().unwrap();
    // The bogus head cannot be returned; the good chain is.
    assert_eq!(f.tx.used_idx(), 1);
    assert_eq!(f.counters().tx_malformed, 1);
    assert_eq!(f.counters().tx_frames, 1);
}

#[test]
fn hostile_avail_index_past_queue_size_breaks_the_queue() {
    let mut f = fixture(false, 16);
    f.tx.set_avail_idx(17);
    let err = f.qp.process_tx().unwrap_err();
    assert!(matches!(err, QueuePairError::BrokenQueue { queue: 1, .. }));
    assert_eq!(f.qp.is_broken(), (false, true));
    // Broken queues are left alone.
    assert_eq!(f.qp.process_tx().unwrap(), TxOutcome::default());

    write_peer(&mut f.peer, &tap_frame(&[0u8; 20]));
    f.rx.set_avail_idx(40);
    assert!(f.qp.process_rx().is_err());
    assert!(f.qp.process_rx().unwrap().paused);
}

// ---------------------------------------------------------------- control queue

struct CtrlFixture {
    mem: GuestMemoryMmap,
    ring: DriverRing,
    ctrl: CtrlQueue,
    state: Arc<Mutex<CtrlState>>,
    ctx: Arc<NetContext>,
    waker: EventFd,
}

fn ctrl_fixture(max_pairs: u16, mq: bool) -> CtrlFixture {
    ctrl_fixture_sized(max_pairs, mq, 16)
}

fn ctrl_fixture_sized(max_pairs: u16, mq: bool, size: u16) -> CtrlFixture {
    let mem = memory();
    let ring = DriverRing::new(&mem, CTRL_RING, size);
    let state = Arc::new(Mutex::new(CtrlState::default()));
    let waker = EventFd::new(EFD_NONBLOCK).unwrap();
    let features = if mq { 1 << VIRTIO_NET_F_MQ } else { 0 };
    let ctx = Arc::new(NetContext::new(
        "tctrl".into(),
        mem.clone(),
        Arc::new(CountingInterrupt::default()),
        Arc::new(NetMetrics::new(1)),
        features,
        max_pairs,
        Arc::clone(&state),
    ));
    let ctrl = CtrlQueue::new(
        Arc::clone(&ctx),
        ring.queue(false),
        2,
        vec![waker.try_clone().unwrap()],
    );
    CtrlFixture {
        mem,
        ring,
        ctrl,
        state,
        ctx,
        waker,
    }
}

impl CtrlFixture {
    /// Sends one command (header and data in separate descriptors, as
    /// Linux does) and returns the ack byte.
    fn command(&mut self, class: u32, cmd: u32, data: &[u8]) -> u8 {
        let n = self.ring.used_idx();
        let base = BUF_BASE + 0x1000 * u64::from(n);
        self.mem
            .write_slice(&[class as u8, cmd as u8], GuestAddress(base))
            .unwrap();
        self.mem
            .write_slice(data, GuestAddress(base + 0x100))
            .unwrap();
        self.mem
            .write_obj(0xaau8, GuestAddress(base + 0x200))
            .unwrap();
        self.ring.add_chain(&[
            (base, 2, false),
            (base + 0x100, data.len() as u32, false),
            (base + 0x200, 1, true),
        ]);
        assert!(self.ctrl.process().unwrap().notify);
        assert_eq!(self.ring.used_idx(), n + 1);
        assert_eq!(self.ring.used_elem(n).1, 1);
        self.mem.read_obj(GuestAddress(base + 0x200)).unwrap()
    }
}

#[test]
fn ctrl_mq_vq_pairs_set() {
    let mut c = ctrl_fixture(4, true);
    let ok = VIRTIO_NET_OK as u8;
    let err = VIRTIO_NET_ERR as u8;
    let mq = VIRTIO_NET_CTRL_MQ;
    let set = VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
    assert_eq!(c.command(mq, set, &3u16.to_le_bytes()), ok);
    assert_eq!(c.ctx.active_pairs.load(Ordering::Relaxed), 3);
    assert_eq!(c.state.lock().unwrap().active_pairs, 3);
    assert_eq!(c.waker.read().unwrap(), 1, "workers are woken up");
    assert_eq!(c.command(mq, set, &5u16.to_le_bytes()), err);
    assert_eq!(c.command(mq, set, &0u16.to_le_bytes()), err);
    assert_eq!(c.command(mq, set, &[1]), err);
    assert_eq!(c.command(mq, 7, &1u16.to_le_bytes()), err);
    assert_eq!(c.ctx.active_pairs.load(Ordering::Relaxed), 3);
    assert_eq!(c.command(mq, set, &1u16.to_le_bytes()), ok);
    assert_eq!(c.ctx.active_pairs.load(Ordering::Relaxed), 1);
}

#[test]
fn ctrl_mq_refused_without_mq() {
    let mut c = ctrl_fixture(1, false);
    let set = VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
    assert_eq!(
        c.command(VIRTIO_NET_CTRL_MQ, set, &1u16.to_le_bytes()),
        VIRTIO_NET_ERR as u8
    );
}

#[test]
fn ctrl_rx_mode_mac_and_unknown_class() {
    let mut c = ctrl_fixture(1, false);
    let ok = VIRTIO_NET_OK as u8;
    let err = VIRTIO_NET_ERR as u8;
    for cmd in [
        VIRTIO_NET_CTRL_RX_PROMISC,
        VIRTIO_NET_CTRL_RX_ALLMULTI,
        VIRTIO_NET_CTRL_RX_ALLUNI,
        VIRTIO_NET_CTRL_RX_NOMULTI,
        VIRTIO_NET_CTRL_RX_NOUNI,
        VIRTIO_NET_CTRL_RX_NOBCAST,
    ] {
        assert_eq!(c.command(VIRTIO_NET_CTRL_RX, cmd, &[1]), ok);
    }
    assert_eq!(c.command(VIRTIO_NET_CTRL_RX, 6, &[1]), err);
    let mac = [2, 0, 0, 0, 0, 9];
    assert_eq!(
        c.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, &mac),
        ok
    );
    let mut table = 1u32.to_le_bytes().to_vec();
    table.extend_from_slice(&mac);
    table.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        c.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &table),
        ok
    );
    assert_eq!(c.command(99, 0, &[0]), err);
    assert_eq!(c.command(VIRTIO_NET_CTRL_VLAN, 0, &[0, 1]), err);
    let s = c.state.lock().unwrap().clone();
    assert!(s.promisc && s.allmulti && s.nobcast);
    assert_eq!(s.mac, Some(mac));
    assert_eq!(s.mac_table_unicast, 1);
}

#[test]
fn ctrl_malformed_commands_do_not_panic() {
    let mut c = ctrl_fixture(1, false);
    // No status descriptor: returned with len 0.
    c.mem
        .write_slice(&[0, 0, 1], GuestAddress(BUF_BASE))
        .unwrap();
    c.ring.add_chain(&[(BUF_BASE, 3, false)]);
    // Header out of memory.
    c.ring
        .add_chain(&[(u64::MAX - 1, 2, false), (BUF_BASE + 0x200, 1, true)]);
    // Only a status byte.
    c.ring.add_chain(&[(BUF_BASE + 0x200, 1, true)]);
    assert!(c.ctrl.process().unwrap().notify);
    assert_eq!(c.ring.used_idx(), 3);
    assert_eq!(c.ring.used_elem(0).1, 0);
    assert_eq!(c.ring.used_elem(1).1, 0);
    assert_eq!(c.ring.used_elem(2).1, 0);
    c.ring.set_avail_idx(100);
    assert!(c.ctrl.process().is_err());
    assert_eq!(c.ctrl.process().unwrap(), CtrlOutcome::default());
}

#[test]
fn ctrl_queue_work_per_call_is_bounded() {
    let mut c = ctrl_fixture_sized(1, false, 128);
    let total = CTRL_BUDGET as u16 + 8;
    for i in 0..total {
        let base = BUF_BASE + 0x100 * u64::from(i);
        c.mem
            .write_slice(
                &[
                    VIRTIO_NET_CTRL_RX as u8,
                    VIRTIO_NET_CTRL_RX_PROMISC as u8,
                    1,
                ],
                GuestAddress(base),
            )
            .unwrap();
        c.ring
            .add_chain(&[(base, 3, false), (base + 0x80, 1, true)]);
    }
    let first = c.ctrl.process().unwrap();
    assert!(first.budget_exhausted && first.notify);
    assert_eq!(c.ring.used_idx(), CTRL_BUDGET as u16);
    let second = c.ctrl.process().unwrap();
    assert!(!second.budget_exhausted && second.notify);
    assert_eq!(c.ring.used_idx(), total);
    for i in 0..total {
        assert_eq!(c.ring.used_elem(i).1, 1);
    }
    assert_eq!(c.ctrl.process().unwrap(), CtrlOutcome::default());
}

// ---------------------------------------------------------------- device

fn backends(n: usize) -> (Vec<Box<dyn FrameBackend>>, Vec<SeqpacketBackend>) {
    let mut devs: Vec<Box<dyn FrameBackend>> = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..n {
        let (d, p) = seqpacket_pair().unwrap();
        devs.push(Box::new(d));
        peers.push(p);
    }
    (devs, peers)
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[test]
fn a_backend_without_offloads_gets_no_offload_features() {
    let (dev, _peer) = net_backend::PasstStream::pair().unwrap();
    let devs: Vec<Box<dyn FrameBackend>> = vec![Box::new(dev)];
    let n = Net::new("eth0".into(), MAC, 1500, devs, vec![]).unwrap();
    let f = n.features();
    for feature in [
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_ECN,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_ECN,
    ] {
        assert!(f & (1 << feature) == 0, "feature {feature}");
    }
    for feature in [VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU] {
        assert!(f & (1 << feature) != 0, "feature {feature}");
    }
}

#[test]
fn features_and_config_space() {
    let (devs, _peers) = backends(2);
    let n = Net::new("eth0".into(), MAC, 1500, devs, vec![]).unwrap();
    assert_eq!(n.device_type(), crate::virtio::TYPE_NET);
    assert_eq!(n.queue_max_sizes(), &[256u16; 5]);
    let f = n.features();
    for feature in [
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_CTRL_RX,
        VIRTIO_NET_F_MQ,
    ] {
        assert!(f & (1 << feature) != 0, "feature {feature}");
    }
    assert!(f & VIRTIO_F_VERSION_1 != 0);
    assert!(f & VIRTIO_RING_F_EVENT_IDX != 0);
    assert!(f & (1 << VIRTIO_NET_F_GUEST_UFO) == 0);
    assert!(f & (1 << VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) == 0);

    let mut cfg = [0u8; 12];
    n.read_config(0, &mut cfg);
    assert_eq!(&cfg[..6], &MAC);
    assert_eq!(
        u16::from_le_bytes([cfg[6], cfg[7]]),
        VIRTIO_NET_S_LINK_UP as u16
    );
    assert_eq!(u16::from_le_bytes([cfg[8], cfg[9]]), 2);
    assert_eq!(u16::from_le_bytes([cfg[10], cfg[11]]), 1500);
    let mut two = [0u8; 2];
    n.read_config(10, &mut two);
    assert_eq!(u16::from_le_bytes(two), 1500);
    let mut one = [0u8; 1];
    n.read_config(5, &mut one);
    assert_eq!(one[0], 0x56);

    // KubeVirt's state: down: the status has no LINK_UP.
    let (devs, _peers) = backends(1);
    let mut down = Net::new("eth0".into(), MAC, 1500, devs, vec![]).unwrap();
    down.set_link_up(false);
    down.read_config(0, &mut cfg);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), 0);
    let mut past = [0xffu8; 4];
    n.read_config(11, &mut past);
    assert_eq!(past, [0x05, 0, 0, 0]);
    n.read_config(u64::MAX, &mut past);
    assert_eq!(past, [0; 4]);

    let (devs, _peers) = backends(1);
    let single = Net::new("eth1".into(), MAC, 9000, devs, vec![]).unwrap();
    assert!(single.features() & (1 << VIRTIO_NET_F_MQ) == 0);
    assert_eq!(single.queue_max_sizes().len(), 3);
}

#[test]
fn config_writes_are_refused() {
    let (devs, _peers) = backends(1);
    let mut n = Net::new("eth0".into(), MAC, 1500, devs, vec![]).unwrap();
    n.write_config(0, &[1, 2, 3, 4, 5, 6]);
    let mut cfg = [0u8; 6];
    n.read_config(0, &mut cfg);
    assert_eq!(cfg, MAC);
    assert_eq!(n.metrics().device_snapshot().config_writes_refused, 1);
}

#[test]
fn new_rejects_bad_arguments() {
    assert!(matches!(
        Net::new("x".into(), MAC, 1500, vec![], vec![]),
        Err(NetError::NoBackends)
    ));
    let (devs, _p) = backends(2);
    assert!(matches!(
        Net::new("x".into(), MAC, 1500, devs, vec![None]),
        Err(NetError::AffinityCount { got: 1, pairs: 2 })
    ));
    let (devs, _p) = backends(1);
    assert!(matches!(
        Net::new("x".into(), MAC, 1500, devs, vec![Some(vec![1 << 20])]),
        Err(NetError::BadCpu(_))
    ));
    let (devs, _p) = backends(1);
    assert!(matches!(
        Net::new("x".into(), MAC, 10, devs, vec![]),
        Err(NetError::BadMtu(10))
    ));
}

#[derive(Default)]
struct CountingInterrupt {
    queue: Mutex<Vec<u16>>,
    config: AtomicU64,
}

impl CountingInterrupt {
    fn queue_count(&self, q: u16) -> usize {
        self.queue
            .lock()
            .unwrap()
            .iter()
            .filter(|&&x| x == q)
            .count()
    }
}

impl VirtioInterrupt for CountingInterrupt {
    fn trigger(&self, int_type: VirtioInterruptType) -> io::Result<()> {
        match int_type {
            VirtioInterruptType::Config => {
                self.config.fetch_add(1, Ordering::SeqCst);
            }
            VirtioInterruptType::Queue(q) => self.queue.lock().unwrap().push(q),
        }
        Ok(())
    }

    fn notifier(&self, _: VirtioInterruptType) -> Option<&EventFd> {
        None
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Guest {
    mem: GuestMemoryMmap,
    rings: Vec<DriverRing>,
    kicks: Vec<EventFd>,
}

/// Queues for `n` rings (rx0, tx0, …, ctrl last) and the configs for
/// activate.
fn guest_queues(n: usize) -> (Guest, Vec<QueueConfig>) {
    let mem = memory();
    let mut rings = Vec::new();
    let mut kicks = Vec::new();
    let mut configs = Vec::new();
    for i in 0..n {
        let ring = DriverRing::new(&mem, 0x1_0000 * i as u64, 64);
        let kick = EventFd::new(EFD_NONBLOCK).unwrap();
        configs.push(QueueConfig {
            index: i as u16,
            queue: ring.queue(false),
            kick: kick.try_clone().unwrap(),
        });
        rings.push(ring);
        kicks.push(kick);
    }
    (Guest { mem, rings, kicks }, configs)
}

const DRIVER_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_RING_F_EVENT_IDX
    | (1 << VIRTIO_NET_F_MRG_RXBUF)
    | (1 << VIRTIO_NET_F_CTRL_VQ)
    | (1 << VIRTIO_NET_F_GUEST_CSUM)
    | (1 << VIRTIO_NET_F_GUEST_TSO4)
    | (1 << VIRTIO_NET_F_CSUM);

fn exchange_frames(guest: &mut Guest, peer: &mut SeqpacketBackend, irq: &CountingInterrupt) {
    // TX: the guest sends, kicks, the peer receives.
    let frame = tap_frame(&pattern(800, 4));
    let buf = BUF_BASE + 0x10_0000;
    guest.mem.write_slice(&frame, GuestAddress(buf)).unwrap();
    let before = guest.rings[1].used_idx();
    guest.rings[1].add_chain(&[(buf, frame.len() as u32, false)]);
    guest.kicks[1].write(1).unwrap();
    let mut got = None;
    wait_for("the tx frame", || {
        got = read_peer(peer).ok();
        got.is_some()
    });
    assert_eq!(got.unwrap(), frame);
    wait_for("tx used", || {
        guest.rings[1].used_idx() == before.wrapping_add(1)
    });

    // RX: the guest posts a buffer and kicks; the peer sends.
    let rx_buf = BUF_BASE + 0x20_0000;
    let before = guest.rings[0].used_idx();
    let irqs = irq.queue_count(0);
    guest.rings[0].add_chain(&[(rx_buf, 4096, true)]);
    guest.kicks[0].write(1).unwrap();
    let frame = tap_frame(&pattern(333, 8));
    write_peer(peer, &frame);
    wait_for("rx used", || {
        guest.rings[0].used_idx() == before.wrapping_add(1)
    });
    assert_eq!(guest.rings[0].used_elem(before).1 as usize, frame.len());
    let got = read(&guest.mem, rx_buf, frame.len());
    assert_eq!(&got[12..], &frame[12..]);
    assert_eq!(got[10], 1);
    wait_for("rx interrupt", || irq.queue_count(0) > irqs);
}

#[test]
fn worker_thread_datapath_reset_and_reactivate() {
    let (dev, mut peer) = seqpacket_pair().unwrap();
    let mut n = Net::new("tnet0".into(), MAC, 1500, vec![Box::new(dev)], vec![]).unwrap();
    let irq = Arc::new(CountingInterrupt::default());

    for round in 0..2 {
        n.ack_features(DRIVER_FEATURES);
        let (mut guest, configs) = guest_queues(3);
        n.activate(guest.mem.clone(), irq.clone(), configs).unwrap();
        assert!(n.is_active());
        exchange_frames(&mut guest, &mut peer, &irq);

        // Control queue on worker 0.
        let base = BUF_BASE + 0x30_0000;
        guest
            .mem
            .write_slice(
                &[
                    VIRTIO_NET_CTRL_RX as u8,
                    VIRTIO_NET_CTRL_RX_PROMISC as u8,
                    1,
                ],
                GuestAddress(base),
            )
            .unwrap();
        guest.rings[2].add_chain(&[(base, 3, false), (base + 0x100, 1, true)]);
        guest.kicks[2].write(1).unwrap();
        wait_for("ctrl used", || guest.rings[2].used_idx() == 1);
        assert_eq!(read(&guest.mem, base + 0x100, 1)[0], VIRTIO_NET_OK as u8);
        wait_for("ctrl interrupt", || irq.queue_count(2) > round);
        assert!(n.ctrl_state().promisc);

        assert!(n.reset());
        assert!(!n.is_active());
    }
    let c = n.metrics().snapshot()[0];
    assert_eq!((c.tx_frames, c.rx_frames), (2, 2));
    assert!(c.notifications >= 2);
}

#[test]
fn worker_thread_broken_queue_sets_needs_reset() {
    let (dev, _peer) = seqpacket_pair().unwrap();
    // SAFETY: sched_getcpu takes no arguments and touches no memory.
    let cpu = unsafe { libc::sched_getcpu() };
    // The CPU this test runs on is in its allowed set (containers may
    // restrict the set, so CPU 0 is not a safe choice).
    let cpu = usize::try_from(cpu).unwrap_or(0);
    let mut n = Net::new(
        "tnet1".into(),
        MAC,
        1500,
        vec![Box::new(dev)],
        vec![Some(vec![cpu])],
    )
    .unwrap();
    let irq = Arc::new(CountingInterrupt::default());
    n.ack_features(DRIVER_FEATURES);
    let (guest, configs) = guest_queues(3);
    n.activate(guest.mem.clone(), irq.clone(), configs).unwrap();
    assert!(!n.needs_reset());
    guest.rings[1].set_avail_idx(1000);
    guest.kicks[1].write(1).unwrap();
    wait_for("needs_reset", || n.needs_reset());
    wait_for("config interrupt", || {
        irq.config.load(Ordering::SeqCst) == 1
    });
    // Further kicks are ignored without new errors.
    guest.kicks[1].write(1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(irq.config.load(Ordering::SeqCst), 1);
    assert!(n.reset());
    assert!(!n.needs_reset());
}

#[test]
fn activate_validates_queues_and_keeps_backends() {
    let (devs, mut peers) = backends(2);
    let mut n = Net::new("tnet2".into(), MAC, 1500, devs, vec![]).unwrap();
    let irq = Arc::new(CountingInterrupt::default());
    let mq = DRIVER_FEATURES | (1 << VIRTIO_NET_F_MQ);
    n.ack_features(mq);
    // MQ + CTRL_VQ with 2 pairs needs 5 queues.
    let (guest, configs) = guest_queues(3);
    assert!(matches!(
        n.activate(guest.mem.clone(), irq.clone(), configs),
        Err(ActivateError::QueueCount { got: 3, want: 5 })
    ));
    assert!(!n.is_active());
    // Without MQ only the first pair (and ctrl at index 2) is used.
    n.ack_features(DRIVER_FEATURES);
    let (mut guest, configs) = guest_queues(3);
    n.activate(guest.mem.clone(), irq.clone(), configs).unwrap();
    exchange_frames(&mut guest, &mut peers[0], &irq);
    assert!(n.reset());

    // With MQ all pairs run; pair 1 receives once VQ_PAIRS_SET enables it.
    n.ack_features(mq);
    let (mut guest, configs) = guest_queues(5);
    n.activate(guest.mem.clone(), irq.clone(), configs).unwrap();
    let rx1 = BUF_BASE + 0x40_0000;
    guest.rings[2].add_chain(&[(rx1, 4096, true)]);
    guest.kicks[2].write(1).unwrap();
    let frame = tap_frame(&pattern(64, 1));
    write_peer(&mut peers[1], &frame);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(guest.rings[2].used_idx(), 0, "pair 1 is not enabled yet");
    let cmd = BUF_BASE + 0x50_0000;
    guest
        .mem
        .write_slice(
            &[
                VIRTIO_NET_CTRL_MQ as u8,
                VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET as u8,
                2,
                0,
            ],
            GuestAddress(cmd),
        )
        .unwrap();
    guest.rings[4].add_chain(&[(cmd, 4, false), (cmd + 0x100, 1, true)]);
    guest.kicks[4].write(1).unwrap();
    wait_for("pair 1 rx", || guest.rings[2].used_idx() == 1);
    assert_eq!(read(&guest.mem, cmd + 0x100, 1)[0], VIRTIO_NET_OK as u8);
    assert_eq!(n.ctrl_state().active_pairs, 2);
    // A second activation without reset is refused.
    let (_g, configs) = guest_queues(5);
    assert!(n.activate(guest.mem.clone(), irq.clone(), configs).is_err());
    assert!(n.reset());
    let snap = n.metrics().snapshot();
    assert_eq!(snap.len(), 2);
    assert_eq!(snap[1].rx_frames, 1);
    exchange_frames_after_reset_is_refused(&mut guest);
}

/// After reset the workers are gone: kicks are not served.
fn exchange_frames_after_reset_is_refused(guest: &mut Guest) {
    let before = guest.rings[1].used_idx();
    guest.rings[1].add_chain(&[(BUF_BASE, 64, false)]);
    guest.kicks[1].write(1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(guest.rings[1].used_idx(), before);
}

#[test]
fn offloads_follow_the_guest_features() {
    // The seqpacket backend records offloads; reach it through a probe
    // backend that shares the record.
    struct Probe {
        inner: SeqpacketBackend,
        seen: Arc<Mutex<Option<net_backend::Offloads>>>,
    }
    impl std::os::fd::AsRawFd for Probe {
        fn as_raw_fd(&self) -> std::os::fd::RawFd {
            self.inner.as_raw_fd()
        }
    }
    impl FrameBackend for Probe {
        fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.inner.read_frame(buf)
        }
        fn write_frame(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.inner.write_frame(bufs)
        }
        fn set_offloads(&mut self, o: net_backend::Offloads) -> io::Result<()> {
            *self.seen.lock().unwrap() = Some(o);
            Ok(())
        }
    }
    let (dev, _peer) = seqpacket_pair().unwrap();
    let seen = Arc::new(Mutex::new(None));
    let probe = Probe {
        inner: dev,
        seen: Arc::clone(&seen),
    };
    let mut n = Net::new("tnet3".into(), MAC, 1500, vec![Box::new(probe)], vec![]).unwrap();
    n.ack_features(DRIVER_FEATURES);
    let (guest, configs) = guest_queues(3);
    n.activate(
        guest.mem.clone(),
        Arc::new(CountingInterrupt::default()),
        configs,
    )
    .unwrap();
    let o = seen.lock().unwrap().unwrap();
    assert!(o.csum && o.tso4 && !o.tso6 && !o.ecn);
}

// ---------------------------------------------------------------- zero-copy TX

/// Forwards to a seqpacket backend and counts which write path was used;
/// with `zero_copy` false it keeps the trait's default `write_iovecs`, like
/// a backend that cannot write raw iovecs.
struct PathCounter {
    inner: SeqpacketBackend,
    zero_copy: bool,
    copied: Arc<AtomicU64>,
    iovec_writes: Arc<AtomicU64>,
    /// Iovecs handed to every `read_iovecs`.
    reads: Arc<Mutex<Vec<usize>>>,
}

impl std::os::fd::AsRawFd for PathCounter {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}

impl FrameBackend for PathCounter {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_frame(buf)
    }
    fn write_frame(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.copied.fetch_add(1, Ordering::Relaxed);
        self.inner.write_frame(bufs)
    }
    fn writes_iovecs(&self) -> bool {
        self.zero_copy
    }
    unsafe fn write_iovecs(&mut self, iovecs: &[libc::iovec]) -> io::Result<usize> {
        if !self.zero_copy {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.iovec_writes.fetch_add(1, Ordering::Relaxed);
        // SAFETY: our caller's contract (mapped, readable memory for the
        // call) is passed on unchanged.
        unsafe { self.inner.write_iovecs(iovecs) }
    }
    fn reads_iovecs(&self) -> bool {
        self.zero_copy
    }
    unsafe fn read_iovecs(&mut self, iovecs: &[libc::iovec]) -> io::Result<usize> {
        if !self.zero_copy {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.reads.lock().unwrap().push(iovecs.len());
        // SAFETY: our caller's contract (mapped, writable memory for the
        // call) is passed on unchanged.
        unsafe { self.inner.read_iovecs(iovecs) }
    }
    fn set_offloads(&mut self, o: net_backend::Offloads) -> io::Result<()> {
        self.inner.set_offloads(o)
    }
}

struct PathFixture {
    mem: GuestMemoryMmap,
    tx: DriverRing,
    peer: SeqpacketBackend,
    metrics: Arc<NetMetrics>,
    qp: QueuePair,
    copied: Arc<AtomicU64>,
    iovec_writes: Arc<AtomicU64>,
    reads: Arc<Mutex<Vec<usize>>>,
}

impl PathFixture {
    fn new(mem: GuestMemoryMmap, zero_copy: bool, size: u16) -> Self {
        Self::with_mrg(mem, zero_copy, size, false).0
    }

    /// The fixture and its rx ring, the pair negotiated with `mrg_rxbuf`.
    fn with_mrg(
        mem: GuestMemoryMmap,
        zero_copy: bool,
        size: u16,
        mrg_rxbuf: bool,
    ) -> (Self, DriverRing) {
        let rx = DriverRing::new(&mem, RX_RING, size);
        let tx = DriverRing::new(&mem, TX_RING, size);
        let (dev, peer) = seqpacket_pair().unwrap();
        let copied = Arc::new(AtomicU64::new(0));
        let iovec_writes = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(Mutex::new(Vec::new()));
        let backend = PathCounter {
            inner: dev,
            zero_copy,
            copied: Arc::clone(&copied),
            iovec_writes: Arc::clone(&iovec_writes),
            reads: Arc::clone(&reads),
        };
        let metrics = Arc::new(NetMetrics::new(1));
        let qp = QueuePair::new(
            0,
            mem.clone(),
            rx.queue(false),
            tx.queue(false),
            Box::new(backend),
            mrg_rxbuf,
            Arc::clone(&metrics),
        );
        let f = Self {
            mem,
            tx,
            peer,
            metrics,
            qp,
            copied,
            iovec_writes,
            reads,
        };
        (f, rx)
    }

    /// (frames written with iovecs, frames copied).
    fn paths(&self) -> (u64, u64) {
        (
            self.iovec_writes.load(Ordering::Relaxed),
            self.copied.load(Ordering::Relaxed),
        )
    }

    fn counters(&self) -> QueuePairCounters {
        self.metrics.snapshot()[0]
    }
}

/// Puts `frame` in guest memory at `base`, cut into `pieces` descriptors
/// spread 0x100 bytes apart, and queues the chain.
fn add_scattered_frame(f: &mut PathFixture, base: u64, frame: &[u8], pieces: usize) {
    let piece = frame.len().div_ceil(pieces);
    let mut bufs = Vec::new();
    for (i, chunk) in frame.chunks(piece).enumerate() {
        let addr = base + (i * (piece + 0x100)) as u64;
        f.mem.write_slice(chunk, GuestAddress(addr)).unwrap();
        bufs.push((addr, chunk.len() as u32, false));
    }
    f.tx.add_chain(&bufs);
}

#[test]
fn zero_copy_tx_sends_the_same_bytes_as_the_copy_path() {
    for zero_copy in [true, false] {
        let mut f = PathFixture::new(memory(), zero_copy, 256);
        let frames = [
            tap_frame(&pattern(52, 1)),
            tap_frame(&pattern(1502, 2)),
            tap_frame(&pattern(65202, 3)),
        ];
        add_scattered_frame(&mut f, BUF_BASE, &frames[0], 1);
        add_scattered_frame(&mut f, BUF_BASE + 0x1_0000, &frames[1], 2);
        add_scattered_frame(&mut f, BUF_BASE + 0x2_0000, &frames[2], 17);
        f.qp.process_tx().unwrap();
        for frame in &frames {
            assert_eq!(&read_peer(&mut f.peer).unwrap(), frame);
        }
        // As many descriptors as the queue has: still zero-copy.
        let long = tap_frame(&pattern(256 * 8 - VNET_HDR_LEN, 4));
        add_scattered_frame(&mut f, BUF_BASE + 0x4_0000, &long, 256);
        f.qp.process_tx().unwrap();
        assert_eq!(read_peer(&mut f.peer).unwrap(), long);
        let expected = if zero_copy { (4, 0) } else { (0, 4) };
        assert_eq!(f.paths(), expected, "zero_copy {zero_copy}");
        let c = f.counters();
        let bytes: usize = frames.iter().map(Vec::len).sum::<usize>() + long.len();
        assert_eq!(
            (c.tx_frames, c.tx_bytes, c.tx_malformed),
            (4, bytes as u64, 0)
        );
        assert_eq!(f.tx.used_idx(), 4);
    }
}

#[test]
fn zero_copy_tx_falls_back_for_unusual_chains() {
    // Two adjacent memory regions: a buffer across their border is valid
    // guest memory but no single mapping, so it is copied.
    let half = MEM_SIZE / 2;
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), half), (GuestAddress(half as u64), half)])
            .unwrap();
    let mut f = PathFixture::new(mem, true, 16);
    let across = tap_frame(&pattern(500, 1));
    let at = half as u64 - 100;
    f.mem.write_slice(&across, GuestAddress(at)).unwrap();
    f.tx.add_chain(&[(at, across.len() as u32, false)]);
    // A zero-length descriptor in the middle is copied too.
    let split = tap_frame(&pattern(38, 2));
    f.mem.write_slice(&split, GuestAddress(BUF_BASE)).unwrap();
    f.tx.add_chain(&[
        (BUF_BASE, 12, false),
        (0, 0, false),
        (BUF_BASE + 12, 38, false),
    ]);
    // And an ordinary one is not.
    let plain = tap_frame(&pattern(100, 3));
    f.mem
        .write_slice(&plain, GuestAddress(BUF_BASE + 0x1000))
        .unwrap();
    f.tx.add_chain(&[(BUF_BASE + 0x1000, plain.len() as u32, false)]);
    f.qp.process_tx().unwrap();
    assert_eq!(read_peer(&mut f.peer).unwrap(), across);
    assert_eq!(read_peer(&mut f.peer).unwrap(), split);
    assert_eq!(read_peer(&mut f.peer).unwrap(), plain);
    assert_eq!(f.paths(), (1, 2));
    let c = f.counters();
    assert_eq!((c.tx_frames, c.tx_malformed), (3, 0));
}

#[test]
fn zero_copy_tx_drops_malformed_chains_like_the_copy_path() {
    for zero_copy in [true, false] {
        let mut f = PathFixture::new(memory(), zero_copy, 16);
        f.mem
            .write_slice(&pattern(100, 1), GuestAddress(BUF_BASE))
            .unwrap();
        // Loop.
        f.tx.set_desc(0, BUF_BASE, 100, VRING_DESC_F_NEXT as u16, 1);
        f.tx.set_desc(1, BUF_BASE, 100, VRING_DESC_F_NEXT as u16, 0);
        f.tx.push(0);
        f.tx.publish();
        f.qp.process_tx().unwrap();
        // Out of range, crossing the end, then the same after a good one.
        f.tx.add_chain(&[(0xffff_ffff_0000, 64, false)]);
        f.tx.add_chain(&[(MEM_SIZE as u64 - 8, 64, false)]);
        f.tx.add_chain(&[(BUF_BASE, 12, false), (MEM_SIZE as u64 - 8, 64, false)]);
        // Too short, too long, write-only after a good descriptor.
        f.tx.add_chain(&[(BUF_BASE, 11, false)]);
        f.tx.add_chain(&[(BUF_BASE, u32::MAX, false)]);
        f.tx.add_chain(&[(BUF_BASE, 40_000, false), (BUF_BASE, 40_000, false)]);
        f.tx.add_chain(&[(BUF_BASE, 12, false), (BUF_BASE, 38, true)]);
        // Write-only after an unusual (zero-length) descriptor.
        f.tx.add_chain(&[(BUF_BASE, 0, false), (BUF_BASE, 38, true)]);
        f.qp.process_tx().unwrap();
        assert_eq!(f.tx.used_idx(), 9);
        let c = f.counters();
        assert_eq!(
            (c.tx_frames, c.tx_malformed),
            (0, 9),
            "zero_copy {zero_copy}"
        );
        assert_eq!(f.paths(), (0, 0));
        assert!(read_peer(&mut f.peer).is_err());
    }
}

#[test]
fn zero_copy_tx_copies_chains_longer_than_the_iovec_list() {
    use virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT;
    let mut f = PathFixture::new(memory(), true, 16);
    // An indirect table of 300 descriptors, more than `MAX_TX_IOVECS`.
    let n = 300u16;
    let frame = tap_frame(&pattern(usize::from(n) * 8 - VNET_HDR_LEN, 9));
    f.mem.write_slice(&frame, GuestAddress(BUF_BASE)).unwrap();
    let table = BUF_BASE + 0x10_0000;
    for i in 0..n {
        let flags = if i + 1 < n {
            VRING_DESC_F_NEXT as u16
        } else {
            0
        };
        let at = GuestAddress(table + u64::from(i) * 16);
        f.mem.write_obj(BUF_BASE + u64::from(i) * 8, at).unwrap();
        f.mem.write_obj(8u32, GuestAddress(at.0 + 8)).unwrap();
        f.mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
        f.mem.write_obj(i + 1, GuestAddress(at.0 + 14)).unwrap();
    }
    f.tx.set_desc(0, table, u32::from(n) * 16, VRING_DESC_F_INDIRECT as u16, 0);
    f.tx.push(0);
    f.tx.publish();
    f.qp.process_tx().unwrap();
    assert_eq!(read_peer(&mut f.peer).unwrap(), frame);
    assert_eq!(f.paths(), (0, 1));
    assert_eq!(f.counters().tx_frames, 1);
}

// ---------------------------------------------------------------- zero-copy RX

/// Bytes of the rx buffer area the zero-copy RX tests use.
const RX_AREA: usize = 0x40_0000;

/// What one RX run left: the used ring, the rx buffer area, the counters.
#[derive(Debug, PartialEq, Eq)]
struct RxResult {
    used: Vec<(u32, u32)>,
    area: Vec<u8>,
    frames: u64,
    bytes: u64,
    malformed: u64,
    dropped: u64,
}

/// Plays `chains` (rx chains: (addr, len, device-writable) descriptors)
/// and `frames` through a pair whose backend reads raw iovecs
/// (`zero_copy`) or only into a buffer; returns the result and how many
/// frames went through the bounce buffer.
fn rx_run(
    zero_copy: bool,
    mrg: bool,
    chains: &[Vec<(u64, u32, bool)>],
    frames: &[Vec<u8>],
) -> (RxResult, u64) {
    let (mut f, mut rx) = PathFixture::with_mrg(memory(), zero_copy, 256, mrg);
    for c in chains {
        rx.add_chain(c);
    }
    for frame in frames {
        write_peer(&mut f.peer, frame);
    }
    f.qp.process_rx().unwrap();
    let c = f.counters();
    let used = (0..rx.used_idx()).map(|i| rx.used_elem(i)).collect();
    let result = RxResult {
        used,
        area: read(&f.mem, BUF_BASE, RX_AREA),
        frames: c.rx_frames,
        bytes: c.rx_bytes,
        malformed: c.rx_malformed,
        dropped: c.rx_dropped_no_buffer,
    };
    (result, c.rx_copied)
}

/// `n` one-descriptor chains of `len` bytes, 0x1000 apart from `first`.
fn plain_chains(first: u64, n: u64, len: u32) -> Vec<Vec<(u64, u32, bool)>> {
    (0..n)
        .map(|i| vec![(first + i * 0x1000, len, true)])
        .collect()
}

/// Runs both paths, checks they agree and returns the zero-copy result
/// and its bounced frame count.
fn rx_both(mrg: bool, chains: &[Vec<(u64, u32, bool)>], frames: &[Vec<u8>]) -> (RxResult, u64) {
    let (copy, copied) = rx_run(false, mrg, chains, frames);
    assert_eq!(
        copied, copy.frames,
        "the copy-only backend copies every frame"
    );
    let (zc, bounced) = rx_run(true, mrg, chains, frames);
    assert_eq!(
        zc, copy,
        "zero-copy and copy paths must leave the same guest state"
    );
    (zc, bounced)
}

#[test]
fn zero_copy_rx_mrg_several_buffers_then_short_chains_bounce() {
    // 20 chains of 4 KiB: enough parsed ahead for a maximal frame until
    // the 64 KiB frame has taken 16; the last frame finds 2 left and
    // goes through the bounce buffer.
    let chains = plain_chains(BUF_BASE, 20, 4096);
    let frames = [
        tap_frame(&pattern(60, 1)),
        tap_frame(&pattern(1502, 2)),
        tap_frame(&pattern(65000, 3)),
        tap_frame(&pattern(1502, 4)),
    ];
    let (r, bounced) = rx_both(true, &chains, &frames);
    assert_eq!((r.frames, r.malformed, r.dropped), (4, 0, 0));
    assert_eq!(bounced, 1);
    assert_eq!(r.used.len(), 1 + 1 + 16 + 1);
    let big = &r.area[0x2000..];
    assert_eq!(u16::from_le_bytes([big[10], big[11]]), 16, "num_buffers");
    assert_eq!(&big[..10], &frames[2][..10]);
    assert_eq!(&big[12..4096], &frames[2][12..4096]);
    assert_eq!(r.used[2], (2, 4096));
    assert_eq!(r.used[17], (17, (frames[2].len() - 15 * 4096) as u32));
}

#[test]
fn zero_copy_rx_header_split_over_descriptors_and_chains() {
    // The first chain is 5 + 6 + 1 bytes: num_buffers straddles its
    // second and third descriptors and the frame goes on in the next chains.
    let mut chains = vec![vec![
        (BUF_BASE, 5, true),
        (BUF_BASE + 0x800, 6, true),
        (BUF_BASE + 0xc00, 1, true),
    ]];
    chains.extend(plain_chains(BUF_BASE + 0x1000, 20, 4096));
    let frames = [tap_frame(&pattern(5000, 7)), tap_frame(&pattern(100, 8))];
    let (r, bounced) = rx_both(true, &chains, &frames);
    assert_eq!((r.frames, r.malformed, bounced), (2, 0, 0));
    assert_eq!(r.used[..3], [(0, 12), (3, 4096), (4, 904)]);
    assert_eq!(r.area[0x800 + 5], 3, "num_buffers low byte");
    assert_eq!(r.area[0xc00], 0, "num_buffers high byte");
}

#[test]
fn zero_copy_rx_malformed_chains_fall_back_to_the_bounce_path() {
    // Chain 1 holds a readable descriptor: the first frame goes through
    // the bounce buffer into chain 0, the second is dropped with chain 1
    // exactly as the copy path does, the third is zero-copy again.
    let mut chains = plain_chains(BUF_BASE, 1, 4096);
    chains.push(vec![
        (BUF_BASE + 0x1000, 100, true),
        (BUF_BASE + 0x1100, 100, false),
    ]);
    chains.extend(plain_chains(BUF_BASE + 0x2000, 18, 4096));
    // And a chain out of guest memory further on, never reached.
    chains.push(vec![(0xffff_ffff_0000, 4096, true)]);
    let frames = [
        tap_frame(&pattern(1000, 1)),
        tap_frame(&pattern(1000, 2)),
        tap_frame(&pattern(1000, 3)),
    ];
    let (r, bounced) = rx_both(true, &chains, &frames);
    assert_eq!((r.frames, r.malformed), (2, 1));
    assert_eq!(bounced, 1, "the first frame (the second was dropped)");
    assert_eq!(r.used[1], (1, 0));
}

#[test]
fn zero_copy_rx_without_mrg_uses_one_big_chain() {
    // A "big packets" chain (17 pages) takes a maximal frame zero-copy
    // (its first 7 pages read straight, the rest through the tail); small
    // chains after it are zero-copy too, and a frame that does not fit
    // is dropped exactly as the bounce path drops it.
    let big: Vec<(u64, u32, bool)> = (0..17)
        .map(|i| (BUF_BASE + i * 0x1000, 4096, true))
        .collect();
    let chains = vec![
        big,
        vec![(BUF_BASE + 0x2_0000, 2048, true)],
        vec![(BUF_BASE + 0x2_1000, 2048, true)],
    ];
    let frames = [
        tap_frame(&pattern(65000, 1)),
        tap_frame(&pattern(3000, 2)),
        tap_frame(&pattern(1500, 3)),
    ];
    let (r, bounced) = rx_both(false, &chains, &frames);
    assert_eq!((r.frames, r.dropped), (2, 1));
    assert_eq!(bounced, 0);
    assert_eq!(r.used[0], (0, frames[0].len() as u32));
    assert_eq!(u16::from_le_bytes([r.area[10], r.area[11]]), 1);
}

#[test]
fn zero_copy_rx_small_frames_read_with_few_iovecs_big_ones_with_all() {
    // 4 KiB chains: a small frame is read into 7 guest ranges plus the
    // bounce tail; the first 64 KiB frame overflows into the tail and is
    // copied on, after which reads hand over all the ranges a maximal
    // frame needs, until
    // 16 frames in a row would have fit the short list.
    let (mut f, mut rx) = PathFixture::with_mrg(memory(), true, 256, true);
    for c in plain_chains(BUF_BASE, 200, 4096) {
        rx.add_chain(&c);
    }
    let mut frames = vec![tap_frame(&pattern(1500, 1)), tap_frame(&pattern(65000, 2))];
    frames.push(tap_frame(&pattern(65000, 3)));
    frames.extend((0..17).map(|i| tap_frame(&pattern(1500, i))));
    let mut placed = 0u64;
    for frame in &frames {
        write_peer(&mut f.peer, frame);
        f.qp.process_rx().unwrap();
        // Every frame lands whole, from the chain after the last one.
        let at = BUF_BASE + placed * 0x1000;
        let got = read(&f.mem, at, frame.len().min(4096));
        assert_eq!(&got[12..], &frame[12..got.len()]);
        placed += frame.len().div_ceil(4096) as u64;
    }
    let big = read(&f.mem, BUF_BASE + 0x1000, 65012);
    let tail = 15 * 4096;
    assert_eq!(&big[tail..], &frames[1][tail..], "overflow copied on");
    // Each process_rx reads its frame, then once more to find the
    // backend empty: the frame's read is every other one.
    let all = f.reads.lock().unwrap().clone();
    let reads: Vec<usize> = all.iter().step_by(2).copied().collect();
    assert_eq!(reads.len(), frames.len(), "{all:?}");
    assert_eq!(&reads[..2], &[8, 8]);
    // Wide: the 17 ranges a maximal frame needs, of the 33 parsed.
    assert!(reads[2..19].iter().all(|&n| n == 17), "wide: {reads:?}");
    assert_eq!(reads[19], 8, "short again after 16 small frames");
    assert_eq!((f.counters().rx_frames, f.counters().rx_copied), (20, 0));
}

#[test]
fn zero_copy_rx_returns_chains_parsed_ahead() {
    use virtio_queue::QueueT;
    let (mut f, mut rx) = PathFixture::with_mrg(memory(), true, 256, true);
    for c in plain_chains(BUF_BASE, 40, 4096) {
        rx.add_chain(&c);
    }
    write_peer(&mut f.peer, &tap_frame(&pattern(100, 1)));
    f.qp.process_rx().unwrap();
    assert_eq!(rx.used_idx(), 1);
    // One chain is used and 32 more are parsed ahead: refills parse up
    // to two maximal frames (33 chains of 4 KiB), so that one pass over
    // the avail ring serves many frames.
    assert_eq!(f.qp.rx.next_avail(), 33);
    f.qp.return_rx_buffers();
    assert_eq!(f.qp.rx.next_avail(), 1);
    // Nothing is lost: the next frame lands in chain 1.
    write_peer(&mut f.peer, &tap_frame(&pattern(100, 2)));
    f.qp.process_rx().unwrap();
    assert_eq!(rx.used_elem(1), (1, 112));
    assert_eq!(f.counters().rx_copied, 0);
}

#[test]
fn ctrl_announce_ack_clears_the_status_bit() {
    let mut c = ctrl_fixture(1, false);
    c.state.lock().unwrap().announce = true;
    let class = VIRTIO_NET_CTRL_ANNOUNCE;
    assert_eq!(c.command(class, 1, &[]), VIRTIO_NET_ERR as u8);
    assert!(c.state.lock().unwrap().announce, "only the ack clears it");
    assert_eq!(
        c.command(class, VIRTIO_NET_CTRL_ANNOUNCE_ACK, &[]),
        VIRTIO_NET_OK as u8
    );
    assert!(!c.state.lock().unwrap().announce);
    // A second ack with nothing pending is accepted.
    assert_eq!(
        c.command(class, VIRTIO_NET_CTRL_ANNOUNCE_ACK, &[]),
        VIRTIO_NET_OK as u8
    );
}

/// Sends one control command through the running worker on control ring
/// `ring` (the `n`th command on it) and returns the ack byte.
fn ctrl_via_worker(guest: &mut Guest, ring: usize, n: u16, cmd: &[u8]) -> u8 {
    let base = BUF_BASE + 0x30_0000 + 0x1000 * u64::from(n);
    guest.mem.write_slice(cmd, GuestAddress(base)).unwrap();
    guest.rings[ring].add_chain(&[(base, cmd.len() as u32, false), (base + 0x100, 1, true)]);
    guest.kicks[ring].write(1).unwrap();
    wait_for("ctrl used", || guest.rings[ring].used_idx() == n + 1);
    read(&guest.mem, base + 0x100, 1)[0]
}

fn status(n: &Net) -> u16 {
    let mut s = [0u8; 2];
    n.read_config(6, &mut s);
    u16::from_le_bytes(s)
}

#[test]
fn announce_sets_the_status_bit_until_the_driver_acks() {
    let (dev, _peer) = seqpacket_pair().unwrap();
    let mut n = Net::new("tnet2".into(), MAC, 1500, vec![Box::new(dev)], vec![]).unwrap();
    assert!(n.features() & (1 << VIRTIO_NET_F_GUEST_ANNOUNCE) != 0);
    assert!(!n.announce(), "an inactive device cannot ask");
    let irq = Arc::new(CountingInterrupt::default());

    // A driver without GUEST_ANNOUNCE is not asked.
    n.ack_features(DRIVER_FEATURES);
    let (_guest, configs) = guest_queues(3);
    n.activate(_guest.mem.clone(), irq.clone(), configs)
        .unwrap();
    assert!(!n.announce());
    assert_eq!(irq.config.load(Ordering::SeqCst), 0);
    assert_eq!(status(&n), VIRTIO_NET_S_LINK_UP as u16);
    assert!(n.reset());

    n.ack_features(DRIVER_FEATURES | (1 << VIRTIO_NET_F_GUEST_ANNOUNCE));
    let (mut guest, configs) = guest_queues(3);
    n.activate(guest.mem.clone(), irq.clone(), configs).unwrap();
    assert!(n.announce());
    assert_eq!(irq.config.load(Ordering::SeqCst), 1);
    let both = (VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE) as u16;
    assert_eq!(status(&n), both);
    let ack = [
        VIRTIO_NET_CTRL_ANNOUNCE as u8,
        VIRTIO_NET_CTRL_ANNOUNCE_ACK as u8,
    ];
    assert_eq!(ctrl_via_worker(&mut guest, 2, 0, &ack), VIRTIO_NET_OK as u8);
    assert_eq!(status(&n), VIRTIO_NET_S_LINK_UP as u16);
    assert!(n.reset());
}

#[test]
fn multi_queue_state_survives_save_and_restore() {
    let features = DRIVER_FEATURES | (1 << VIRTIO_NET_F_MQ);
    let irq = Arc::new(CountingInterrupt::default());
    let (devs, _peers) = backends(2);
    let mut a = Net::new("tnet3".into(), MAC, 1500, devs, vec![]).unwrap();
    a.ack_features(features);
    let (mut guest, configs) = guest_queues(5);
    a.activate(guest.mem.clone(), irq.clone(), configs).unwrap();
    let mut set = vec![
        VIRTIO_NET_CTRL_MQ as u8,
        VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET as u8,
    ];
    set.extend_from_slice(&2u16.to_le_bytes());
    assert_eq!(ctrl_via_worker(&mut guest, 4, 0, &set), VIRTIO_NET_OK as u8);
    let saved = a.save_device_state().unwrap();
    let VirtioDeviceState::Net(ctrl) = &saved;
    assert_eq!(ctrl.active_pairs, 2);
    assert!(a.reset());

    // The target: pair 1 receives at once, with no VQ_PAIRS_SET of its own.
    let (devs, mut peers) = backends(2);
    let mut b = Net::new("tnet3".into(), MAC, 1500, devs, vec![]).unwrap();
    b.restore_device_state(&saved).unwrap();
    b.ack_features(features);
    let (mut guest, configs) = guest_queues(5);
    b.activate(guest.mem.clone(), irq.clone(), configs).unwrap();
    assert_eq!(b.ctrl_state().active_pairs, 2);
    let rx_buf = BUF_BASE + 0x20_0000;
    guest.rings[2].add_chain(&[(rx_buf, 4096, true)]);
    guest.kicks[2].write(1).unwrap();
    let frame = tap_frame(&pattern(100, 3));
    write_peer(&mut peers[1], &frame);
    wait_for("rx on pair 1", || guest.rings[2].used_idx() == 1);
    assert!(b.reset());

    // A state with more pairs than the device has is refused.
    let (devs, _p) = backends(1);
    let mut one = Net::new("tnet3".into(), MAC, 1500, devs, vec![]).unwrap();
    assert!(one.restore_device_state(&saved).is_err());
}
