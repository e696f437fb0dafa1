//! One case, once: open the taps, start the mode's threads, let them warm
//! up, and measure between two snapshots.

use std::fmt::Display;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use devices::virtio::net::Net;
use net_backend::{FrameBackend, Tap};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::case::{e1000_supported, Dir, Mode, RxSetup};
use crate::cli::Opts;
use crate::e1000::BenchIntx;
use crate::frames::Size;
use crate::pin::{cpu_of_pair, ncpus, pin_self, pin_thread};
use crate::stats::{measure, snapshot, Ctl, Measurement, Stats};
use crate::sys::ifindex;
use crate::virtio::{BenchInterrupt, OFFLOADS, PAIR_MEM};
use crate::{e1000, raw, virtio, TAP};

/// What every mode's set-up needs to know about the case being run.
pub struct CaseCtx<'a> {
    pub dir: Dir,
    pub size: Size,
    pub pairs: usize,
    /// Each pair's threads on their own CPU (see `pin.rs`).
    pub pinned: bool,
    pub opts: &'a Opts,
    /// The RX source ports for each tap queue.
    flows: &'a [Vec<u16>; 2],
    ifindex: libc::c_int,
    /// Guest memory: one `PAIR_MEM` region per queue pair.
    pub mem: GuestMemoryMmap,
    ctl: Arc<Ctl>,
    /// One per benchmark thread (queue pair).
    stats: Vec<Arc<Stats>>,
}

impl CaseCtx<'_> {
    /// What RX thread `q` injects: with one pair its one tap queue takes
    /// every flow, with two each queue its own.
    pub fn rx_setup(&self, q: usize) -> RxSetup {
        RxSetup {
            ifindex: self.ifindex,
            size: self.size,
            sports: if self.pairs == 1 {
                self.flows.iter().flatten().copied().collect()
            } else {
                self.flows[q].clone()
            },
            window: self.opts.window,
            buf_len: self.opts.rx_buf as usize,
        }
    }

    /// The CPU affinity of the virtio-net workers (`Net::new`'s).
    pub fn worker_affinity(&self) -> Vec<Option<Vec<usize>>> {
        if self.pinned {
            (0..self.pairs)
                .map(|q| Some(vec![cpu_of_pair(q)]))
                .collect()
        } else {
            Vec::new()
        }
    }

    /// The TCP source port of TX thread `q`'s frames.
    pub fn tx_sport(&self, q: usize) -> u16 {
        30000 + q as u16
    }

    /// Thread `q`'s counters and the shared start/stop control.
    pub fn thread_args(&self, q: usize) -> (Arc<Stats>, Arc<Ctl>) {
        (Arc::clone(&self.stats[q]), Arc::clone(&self.ctl))
    }
}

/// What a mode started: its benchmark threads and what must outlive them.
#[derive(Default)]
pub struct Spawned {
    pub handles: Vec<JoinHandle<()>>,
    /// The virtio-net device; dropped (workers stopped) after the
    /// benchmark threads are joined.
    pub net: Option<Net>,
    pub irq: Option<Arc<BenchInterrupt>>,
    pub intx: Option<Arc<BenchIntx>>,
    /// The benchmark threads play the guest driver, and mark their
    /// device-side work (`Stats::device_work`): the rest of their CPU is
    /// the guest's. False for the raw tap (no guest: all of it is the
    /// reference's cost) and the e1000 (its TX runs inside the driver's
    /// register writes; the whole process is counted).
    pub guest_driver: bool,
}

impl Spawned {
    /// Interrupts raised so far, by the virtio-net device or the e1000.
    pub fn irqs(&self) -> u64 {
        self.irq.as_deref().map_or(0, BenchInterrupt::total)
            + self
                .intx
                .as_ref()
                .map_or(0, |l| l.asserts.load(Ordering::Relaxed))
    }
}

/// A `map_err` adapter: "`what`: cause", the form every set-up error takes.
pub fn err<E: Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// One case: what is measured and how.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub dir: Dir,
    pub size: Size,
    pub pairs: usize,
    pub mode: Mode,
    pub pinned: bool,
}

/// Runs one case once, pinned or not; the main thread's affinity is
/// restored afterwards.
pub fn run_case(case: Case, opts: &Opts, flows: &[Vec<u16>; 2]) -> Result<Measurement, String> {
    if case.pinned {
        pin_self([cpu_of_pair(0)]).map_err(err("sched_setaffinity"))?;
    }
    let result = run_case_here(case, opts, flows);
    if case.pinned {
        pin_self(0..ncpus()).map_err(err("sched_setaffinity"))?;
    }
    result
}

/// Runs one case once; `flows[q]` are the RX source ports for tap queue q.
fn run_case_here(case: Case, opts: &Opts, flows: &[Vec<u16>; 2]) -> Result<Measurement, String> {
    let Case {
        dir,
        size,
        pairs,
        mode,
        pinned,
    } = case;
    if mode == Mode::E1000 && !e1000_supported(dir, size, pairs) {
        return Err("not supported by the e1000".into());
    }
    let mut taps = Tap::open_named(TAP, pairs as u16).map_err(err("open tap"))?;
    taps[0].set_up().map_err(err("tap up"))?;
    let idx = ifindex(TAP).map_err(err("if_nametoindex"))?;
    // The device modes negotiate offloads themselves; the raw tap and the
    // direct QueuePair get what the guest would have negotiated.
    if mode == Mode::Raw || mode == Mode::Direct {
        for t in &mut taps {
            t.set_offloads(OFFLOADS).map_err(err("TUNSETOFFLOAD"))?;
        }
    }
    let ctl = Arc::new(Ctl {
        start: Barrier::new(pairs + 1),
        stop: AtomicBool::new(false),
    });
    let stats: Vec<Arc<Stats>> = (0..pairs).map(|_| Arc::new(Stats::default())).collect();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), pairs * PAIR_MEM as usize)])
        .map_err(err("guest memory"))?;
    let ctx = CaseCtx {
        dir,
        size,
        pairs,
        pinned,
        opts,
        flows,
        ifindex: idx,
        mem,
        ctl,
        stats,
    };
    let spawned = match mode {
        Mode::Raw => raw::spawn(&ctx, taps),
        Mode::Direct => virtio::direct::spawn(&ctx, taps),
        Mode::Worker => virtio::worker::spawn(&ctx, taps)?,
        Mode::E1000 => e1000::spawn(&ctx, taps)?,
    };
    if pinned {
        for (q, h) in spawned.handles.iter().enumerate().skip(1) {
            pin_thread(h, q).map_err(err("pthread_setaffinity_np"))?;
        }
    }
    measure_running(&ctx, spawned)
}

/// Releases the threads, measures after the warm-up, stops and joins them.
pub fn measure_running(ctx: &CaseCtx, spawned: Spawned) -> Result<Measurement, String> {
    let drivers: Vec<libc::pthread_t> = if spawned.guest_driver {
        spawned.handles.iter().map(|h| h.as_pthread_t()).collect()
    } else {
        Vec::new()
    };
    ctx.ctl.start.wait();
    thread::sleep(Duration::from_secs_f64(ctx.opts.warmup));
    let s0 = snapshot(&ctx.stats, spawned.irqs(), &drivers);
    thread::sleep(Duration::from_secs_f64(ctx.opts.seconds));
    let s1 = snapshot(&ctx.stats, spawned.irqs(), &drivers);
    ctx.ctl.stop.store(true, Ordering::Relaxed);
    let Spawned { handles, net, .. } = spawned;
    let mut failed = None;
    for h in handles {
        if h.join().is_err() {
            failed = Some("a benchmark thread panicked (see above)".to_string());
        }
    }
    drop(net);
    if let Some(f) = failed {
        return Err(f);
    }
    Ok(measure(ctx.dir, &ctx.stats, &s0, &s1))
}
