//! The `direct` mode: each benchmark thread plays the driver and calls
//! `QueuePair::process_tx` / `process_rx` itself, so the device datapath
//! is measured on one thread without any notification cost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use devices::virtio::net::{NetMetrics, QueuePair};
use net_backend::Tap;

use super::driver::{RxDriver, TxDriver};
use super::PAIR_MEM;
use crate::case::{Dir, RxSetup};
use crate::injector::Injector;
use crate::run::{CaseCtx, Spawned};
use crate::stats::{Ctl, Stats};
use crate::window::Window;

/// Starts one thread per queue pair, each over its own tap queue.
pub fn spawn(ctx: &CaseCtx, taps: Vec<Tap>) -> Spawned {
    let mut spawned = Spawned::default();
    let metrics = Arc::new(NetMetrics::new(ctx.pairs));
    for (q, tap) in taps.into_iter().enumerate() {
        let base = q as u64 * PAIR_MEM;
        let rxd = RxDriver::new(&ctx.mem, base, ctx.opts.rx_buf);
        let txd = TxDriver::new(&ctx.mem, base, ctx.size, ctx.tx_sport(q));
        let qp = QueuePair::new(
            q,
            ctx.mem.clone(),
            rxd.ring.queue(true),
            txd.ring.queue(true),
            Box::new(tap),
            true,
            Arc::clone(&metrics),
        );
        let (s, c) = ctx.thread_args(q);
        let h = match ctx.dir {
            Dir::Tx => thread::spawn(move || direct_tx(qp, txd, s, c)),
            Dir::Rx => {
                let rx = ctx.rx_setup(q);
                thread::spawn(move || direct_rx(qp, rxd, rx, s, c))
            }
        };
        spawned.handles.push(h);
    }
    spawned.guest_driver = true;
    spawned
}

pub fn direct_tx(mut qp: QueuePair, mut drv: TxDriver, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    ctl.start.wait();
    while !ctl.stopped() {
        drv.reap();
        drv.fill();
        stats.device_work(|| qp.process_tx().expect("process_tx"));
        stats.set(drv.frames, drv.frames * drv.frame_len);
    }
}

pub fn direct_rx(
    mut qp: QueuePair,
    mut drv: RxDriver,
    rx: RxSetup,
    stats: Arc<Stats>,
    ctl: Arc<Ctl>,
) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    let mut win = Window::new(rx.window);
    let mut stalls = 0u64;
    ctl.start.wait();
    while !ctl.stopped() {
        let room = win.room(drv.frames);
        win.injected += stats.device_work(|| inj.send(room).expect("inject")) as u64;
        stats.device_work(|| qp.process_rx().expect("process_rx"));
        drv.reap();
        stalls += u64::from(win.check(drv.frames));
        stats.set(drv.frames, drv.bytes);
        stats.stalls.store(stalls, Ordering::Relaxed);
    }
}
