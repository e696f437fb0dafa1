//! A virtio-net queue pair (petrel's `QueuePair`) over guest memory the
//! input writes: descriptor tables, avail rings (event-idx or not,
//! indirect and looping chains, bad lengths and addresses), and frames
//! arriving from the backend (a seqpacket pair, as in the unit tests).
#![no_main]

use std::io::IoSlice;
use std::sync::Arc;

use devices::virtio::net::{NetMetrics, QueuePair};
use devices::virtio::test_driver::DriverRing;
use libfuzzer_sys::fuzz_target;
use net_backend::{seqpacket_pair, FrameBackend};
use petrel_fuzz::{memory, Input, MEM_SIZE};
use vm_memory::{Bytes, GuestAddress};

const RX_RING: u64 = 0;
const TX_RING: u64 = 0x8000;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let size = 1u16 << (input.u8() % 9);
    let mem = memory();
    let mut rx = DriverRing::new(&mem, RX_RING, size);
    let mut tx = DriverRing::new(&mem, TX_RING, size);
    let Ok((dev, mut peer)) = seqpacket_pair() else {
        return;
    };
    let mut qp = QueuePair::new(
        0,
        mem.clone(),
        rx.queue(flags & 1 != 0),
        tx.queue(flags & 2 != 0),
        Box::new(dev),
        flags & 4 != 0,
        Arc::new(NetMetrics::new(1)),
    );
    let mut frame = vec![0u8; 70_000];
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            // Raw bytes anywhere in guest memory (rings included).
            0 => {
                let addr = u64::from(input.u32()) % MEM_SIZE as u64;
                let len = usize::from(input.u8()) * 4;
                let bytes = input.bytes(len);
                let _ = mem.write_slice(bytes, GuestAddress(addr));
            }
            // A descriptor as the driver would write it.
            1 => {
                let ring = if input.bool() { &rx } else { &tx };
                let (i, addr, len, fl, next) = (
                    input.u16(),
                    input.u64(),
                    input.u32(),
                    input.u16(),
                    input.u16(),
                );
                ring.set_desc(i % size, addr, len, fl, next);
            }
            // A well-formed chain in the buffer area.
            2 => {
                let ring = if input.bool() { &mut rx } else { &mut tx };
                let n = 1 + usize::from(input.u8() % 4);
                let bufs: Vec<(u64, u32, bool)> = (0..n)
                    .map(|_| {
                        let addr = 0x2_0000 + u64::from(input.u16()) * 8;
                        (addr, u32::from(input.u16()), input.bool())
                    })
                    .collect();
                if usize::from(ring.avail_idx()) < 4 * usize::from(size) {
                    ring.add_chain(&bufs);
                }
            }
            // A raw avail index (past the ring, backwards, ...).
            3 => {
                let idx = input.u16();
                if input.bool() {
                    rx.set_avail_idx(idx)
                } else {
                    tx.set_avail_idx(idx)
                }
            }
            4 => {
                let _ = qp.process_tx();
            }
            // A frame from the backend, then receive.
            5 => {
                let len = usize::from(input.u16()) % 66_000;
                let bytes = input.bytes(len);
                let _ = peer.write_frame(&[IoSlice::new(bytes)]);
                let _ = qp.process_rx();
            }
            6 => {
                let _ = qp.process_rx();
            }
            _ => {
                let idx = input.u16();
                if input.bool() {
                    rx.set_used_event(idx)
                } else {
                    tx.set_used_event(idx)
                }
            }
        }
        // What the device sent, so the backend never fills.
        while peer.read_frame(&mut frame).is_ok() {}
    }
});
