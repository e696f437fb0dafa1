//! The reference mode: the same frames written to and read from the tap
//! fd directly, so the device modes can be compared with what the kernel
//! alone costs.

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
use crate::window::Window;
use crate::BATCH;

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
    ctl.start.wait();
    let mut frames = 0u64;
    while !ctl.stopped() {
        for _ in 0..BATCH {
            match tap.write_frame(&[IoSlice::new(&frame)]) {
                Ok(_) => frames += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("raw tap write: {e}"),
            }
        }
        stats.set(frames, frames * frame_len);
    }
}

pub fn raw_rx(mut tap: Tap, rx: RxSetup, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    let mut buf = vec![0u8; devices::virtio::net::MAX_BUFFER_LEN];
    let mut win = Window::new(rx.window);
    let (mut frames, mut bytes, mut stalls) = (0u64, 0u64, 0u64);
    ctl.start.wait();
    while !ctl.stopped() {
        win.injected += inj.send(win.room(frames)).expect("inject") as u64;
        loop {
            match tap.read_frame(&mut buf) {
                Ok(n) => {
                    frames += 1;
                    bytes += n.saturating_sub(VNET_HDR_LEN) as u64;
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
