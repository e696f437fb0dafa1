//! The `worker` mode: the full `Net` device, activated with the driver's
//! features, one worker thread per queue pair woken by kick eventfds; the
//! benchmark threads play the driver and sleep on the fake interrupt.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::thread;

use devices::virtio::net::Net;
use devices::virtio::test_driver::DriverRing;
use devices::virtio::{QueueConfig, VirtioDevice, VirtioInterrupt};
use net_backend::{FrameBackend, Tap};
use std::os::fd::AsRawFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::control::{driver_features, set_vq_pairs};
use super::driver::{RxDriver, TxDriver};
use super::{BenchInterrupt, CTRL_RING, CTRL_RING_OFF, DEVICE_ID, PAIR_MEM};
use crate::case::{Dir, RxSetup};
use crate::frames::GUEST_MAC;
use crate::injector::Injector;
use crate::run::{err, CaseCtx, Spawned};
use crate::stats::{Ctl, Stats};
use crate::sys::wait_readable;
use crate::window::Window;

/// The data queues' configs and kick eventfds, in queue order (rx, tx per
/// pair), and each pair's drivers.
pub struct DataQueues {
    pub configs: Vec<QueueConfig>,
    pub kicks: Vec<EventFd>,
    pub drivers: Vec<(RxDriver, TxDriver)>,
}

/// Builds the driver rings of every pair and the queue configs the device
/// is activated with.
pub fn data_queues(ctx: &CaseCtx) -> Result<DataQueues, String> {
    let nq = 2 * ctx.pairs + 1;
    let mut configs = Vec::with_capacity(nq);
    let mut kicks = Vec::with_capacity(nq);
    let mut drivers = Vec::with_capacity(ctx.pairs);
    for q in 0..ctx.pairs {
        let base = q as u64 * PAIR_MEM;
        let rxd = RxDriver::new(&ctx.mem, base, ctx.opts.rx_buf);
        let txd = TxDriver::new(&ctx.mem, base, ctx.size, ctx.tx_sport(q));
        for (i, queue) in [
            (2 * q, rxd.ring.queue(false)),
            (2 * q + 1, txd.ring.queue(false)),
        ] {
            let kick = EventFd::new(EFD_NONBLOCK).map_err(err("eventfd"))?;
            configs.push(QueueConfig {
                index: i as u16,
                queue,
                kick: kick.try_clone().map_err(err("eventfd"))?,
            });
            kicks.push(kick);
        }
        drivers.push((rxd, txd));
    }
    Ok(DataQueues {
        configs,
        kicks,
        drivers,
    })
}

/// Creates and activates the device over `taps` (with the control queue,
/// through which more than one pair is enabled) and starts one driver
/// thread per pair.
pub fn spawn(ctx: &CaseCtx, taps: Vec<Tap>) -> Result<Spawned, String> {
    let pairs = ctx.pairs;
    let backends: Vec<Box<dyn FrameBackend>> = taps
        .into_iter()
        .map(|t| Box::new(t) as Box<dyn FrameBackend>)
        .collect();
    let mut dev = Net::new(
        DEVICE_ID.into(),
        GUEST_MAC,
        1500,
        backends,
        ctx.worker_affinity(),
    )
    .map_err(err("Net::new"))?;
    dev.ack_features(driver_features(pairs) & dev.features());
    let interrupt = Arc::new(BenchInterrupt::new(2 * pairs + 1).map_err(err("eventfd"))?);
    let DataQueues {
        mut configs,
        kicks,
        drivers,
    } = data_queues(ctx)?;
    let mut ctrl = DriverRing::new(&ctx.mem, CTRL_RING_OFF, CTRL_RING);
    let ctrl_kick = EventFd::new(EFD_NONBLOCK).map_err(err("eventfd"))?;
    configs.push(QueueConfig {
        index: (2 * pairs) as u16,
        queue: ctrl.queue(false),
        kick: ctrl_kick.try_clone().map_err(err("eventfd"))?,
    });
    let dyn_irq: Arc<dyn VirtioInterrupt> = interrupt.clone();
    dev.activate(ctx.mem.clone(), dyn_irq, configs)
        .map_err(err("activate"))?;
    if pairs > 1 {
        set_vq_pairs(&ctx.mem, &mut ctrl, &ctrl_kick, pairs as u16)
            .map_err(err("control queue"))?;
    }
    let mut spawned = Spawned::default();
    for (q, (rxd, txd)) in drivers.into_iter().enumerate() {
        let (s, c) = ctx.thread_args(q);
        let clone = |fd: &EventFd| fd.try_clone().map_err(err("eventfd"));
        let h = match ctx.dir {
            Dir::Tx => {
                let kick = clone(&kicks[2 * q + 1])?;
                let irqfd = clone(&interrupt.fds[2 * q + 1])?;
                thread::spawn(move || worker_tx(txd, kick, irqfd, s, c))
            }
            Dir::Rx => {
                let kick = clone(&kicks[2 * q])?;
                let irqfd = clone(&interrupt.fds[2 * q])?;
                let rx = ctx.rx_setup(q);
                thread::spawn(move || worker_rx(rxd, kick, irqfd, rx, s, c))
            }
        };
        spawned.handles.push(h);
    }
    spawned.net = Some(dev);
    spawned.irq = Some(interrupt);
    spawned.guest_driver = true;
    Ok(spawned)
}

pub fn worker_tx(mut drv: TxDriver, kick: EventFd, irq: EventFd, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    ctl.start.wait();
    let (mut kicks, mut waits) = (0u64, 0u64);
    // Like a guest's TX completion: refill in batches of a quarter ring,
    // sleep on the interrupt in between.
    let batch = (drv.slots / 4).max(1);
    while !ctl.stopped() {
        drv.reap();
        if drv.free.len() >= batch || drv.in_flight() == 0 {
            let old = drv.ring.avail_idx();
            if drv.fill() > 0 && drv.ring.kick_needed(old) {
                kick.write(1).expect("kick");
                kicks += 1;
            }
        } else {
            let want = (batch - drv.free.len()) as u16;
            drv.ring
                .set_used_event(drv.ring.last_used.wrapping_add(want - 1));
            fence(Ordering::SeqCst);
            if drv.ring.used_idx() == drv.ring.last_used {
                wait_readable(irq.as_raw_fd(), 5);
                let _ = irq.read();
                waits += 1;
            }
        }
        stats.set(drv.frames, drv.frames * drv.frame_len);
        stats.kicks.store(kicks, Ordering::Relaxed);
        stats.waits.store(waits, Ordering::Relaxed);
    }
}

pub fn worker_rx(
    mut drv: RxDriver,
    kick: EventFd,
    irq: EventFd,
    rx: RxSetup,
    stats: Arc<Stats>,
    ctl: Arc<Ctl>,
) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    let mut win = Window::new(rx.window);
    let (mut kicks, mut waits, mut stalls) = (0u64, 0u64, 0u64);
    ctl.start.wait();
    while !ctl.stopped() {
        let room = win.room(drv.frames);
        let sent = stats.device_work(|| inj.send(room).expect("inject"));
        win.injected += sent as u64;
        let (reaped, old) = drv.reap();
        if reaped > 0 && drv.ring.kick_needed(old) {
            kick.write(1).expect("kick");
            kicks += 1;
        }
        if sent == 0 && reaped == 0 {
            // Nothing to send and nothing received: sleep until the
            // device interrupts (NAPI would re-enable callbacks here).
            drv.ring.set_used_event(drv.ring.last_used);
            fence(Ordering::SeqCst);
            if drv.ring.used_idx() == drv.ring.last_used {
                wait_readable(irq.as_raw_fd(), 2);
                let _ = irq.read();
                waits += 1;
            }
        }
        stalls += u64::from(win.check(drv.frames));
        stats.set(drv.frames, drv.bytes);
        stats.kicks.store(kicks, Ordering::Relaxed);
        stats.waits.store(waits, Ordering::Relaxed);
        stats.stalls.store(stalls, Ordering::Relaxed);
    }
}
