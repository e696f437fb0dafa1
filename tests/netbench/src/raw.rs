//! The reference mode: the same frames written to and read from the tap
//! fd directly, so the device modes can be compared with what the kernel
//! alone costs.
//!
//! The reference touches as much memory as the device does: TX writes
//! from as many buffers, as far apart, as the driver's TX slots (each a
//! copy of the frame), and RX reads into a buffer area as big as the
//! driver's RX buffers, moving on by what each frame used. Writing one
//! buffer again and again would hand the kernel's copy a cache-hot source
//! the device never has (the guest's frames are spread over its ring),
//! and that difference grows with the frame (128 × 64 KiB = 8 MiB).

use std::io::{self, IoSlice};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use devices::virtio::net::VNET_HDR_LEN;
use net_backend::{FrameBackend, Tap};

use crate::case::{Dir, RxSetup};
use crate::frames::tx_frame;
use crate::injector::Injector;
use crate::run::{CaseCtx, Spawned};
use crate::stats::{Ctl, Stats};
use crate::virtio::RING;
use crate::window::Window;
use crate::BATCH;

/// The driver's TX slots (as `TxDriver`: half the ring, 2 descriptors
/// each), and the stride between their frames.
fn tx_slots(frame_len: usize) -> (usize, usize) {
    (usize::from(RING / 2), frame_len.next_multiple_of(4096))
}

/// Starts one raw thread per tap queue.
pub fn spawn(ctx: &CaseCtx, taps: Vec<Tap>) -> Spawned {
    let mut spawned = Spawned::default();
    for (q, tap) in taps.into_iter().enumerate() {
        let (s, c) = ctx.thread_args(q);
        let h = match ctx.dir {
            Dir::Tx => {
                let frame = tx_frame(ctx.size, ctx.tx_sport(q));
                let len = ctx.size.frame_len as u64;
                thread::spawn(move || raw_tx(tap, frame, len, s, c))
            }
            Dir::Rx => {
                let rx = ctx.rx_setup(q);
                thread::spawn(move || raw_rx(tap, rx, s, c))
            }
        };
        spawned.handles.push(h);
    }
    spawned
}

pub fn raw_tx(mut tap: Tap, frame: Vec<u8>, frame_len: u64, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    let (slots, stride) = tx_slots(frame.len());
    let mut area = vec![0u8; slots * stride];
    for slot in area.chunks_exact_mut(stride) {
        slot[..frame.len()].copy_from_slice(&frame);
    }
    let mut slot = 0;
    ctl.start.wait();
    let mut frames = 0u64;
    while !ctl.stopped() {
        for _ in 0..BATCH {
            let at = slot * stride;
            match tap.write_frame(&[IoSlice::new(&area[at..at + frame.len()])]) {
                Ok(_) => {
                    frames += 1;
                    slot = (slot + 1) % slots;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("raw tap write: {e}"),
            }
        }
        stats.set(frames, frames * frame_len);
    }
}

pub fn raw_rx(mut tap: Tap, rx: RxSetup, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    // The driver's RX buffers: RING of `rx_buf` bytes; a frame is read
    // where the next free buffer starts and uses as many as it fills.
    let max = devices::virtio::net::MAX_BUFFER_LEN;
    let span = usize::from(RING) * rx.buf_len;
    let mut area = vec![0u8; span + max];
    let mut at = 0;
    let mut win = Window::new(rx.window);
    let (mut frames, mut bytes, mut stalls) = (0u64, 0u64, 0u64);
    ctl.start.wait();
    while !ctl.stopped() {
        win.injected += inj.send(win.room(frames)).expect("inject") as u64;
        loop {
            match tap.read_frame(&mut area[at..at + max]) {
                Ok(n) => {
                    frames += 1;
                    bytes += n.saturating_sub(VNET_HDR_LEN) as u64;
                    at = (at + n.max(1).next_multiple_of(rx.buf_len)) % span;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("raw tap read: {e}"),
            }
        }
        stalls += u64::from(win.check(frames));
        stats.set(frames, bytes);
        stats.stalls.store(stalls, Ordering::Relaxed);
    }
}
