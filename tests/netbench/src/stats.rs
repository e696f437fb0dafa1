//! What a case measures: the live counters each benchmark thread
//! publishes, the start/stop control they share, snapshots around the
//! measured interval and the resulting [`Measurement`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use crate::case::Dir;
use crate::sys::{
    cpu_seconds, if_counters, process_cpu_ns, pthread_cpu_ns, thread_cpu_ns, threads_cpu_seconds,
};
use crate::TAP;

/// Live counters of one benchmark thread (totals, stored by the owner).
#[derive(Default)]
pub struct Stats {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub kicks: AtomicU64,
    pub waits: AtomicU64,
    pub stalls: AtomicU64,
    /// e1000: device drops and errors over the whole run (set at the end).
    pub dev_drops: AtomicU64,
    /// CPU nanoseconds this benchmark thread spent on the device's side
    /// rather than the guest's (see [`Stats::device_work`]).
    pub device_ns: AtomicU64,
}

impl Stats {
    /// Runs `f`, work the benchmark thread does on the device's side (the
    /// direct mode's `process_*` calls, RX injection: on a real host they
    /// are not the guest's vCPU), and adds the calling thread's CPU time
    /// during it to `device_ns`. Two clock reads per call, i.e. per batch.
    pub fn device_work<R>(&self, f: impl FnOnce() -> R) -> R {
        let t0 = thread_cpu_ns();
        let r = f();
        let spent = thread_cpu_ns().saturating_sub(t0);
        self.device_ns.fetch_add(spent, Ordering::Relaxed);
        r
    }

    pub fn set(&self, frames: u64, bytes: u64) {
        self.frames.store(frames, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }
}

pub struct Ctl {
    pub start: Barrier,
    pub stop: AtomicBool,
}

impl Ctl {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Measurement {
    pub secs: f64,
    pub frames: u64,
    pub bytes: u64,
    pub pps: f64,
    pub gbps: f64,
    pub cpu_pct: f64,
    /// Frames per CPU-second of the whole process (every thread: the
    /// driver, the device's workers, the injector): efficiency rather than
    /// speed, comparable between modes that use different amounts of CPU.
    pub frames_per_cpu_s: f64,
    /// Frames per CPU-second of the virtio-net worker threads alone (the
    /// device's side without the benchmark's driver), when there are any.
    pub worker_frames_per_cpu_s: Option<f64>,
    /// Frames per CPU-second of the device's side: every thread of the
    /// process except the work of the benchmark threads that plays the
    /// guest driver (ring reads and writes, kicks, waiting for interrupts),
    /// i.e. the device's workers (worker mode), the `process_*` calls
    /// (direct mode), the RX injection and the main thread. For the raw
    /// tap, which has no guest, this is the whole process.
    pub device_frames_per_cpu_s: f64,
    /// CPU of the guest-driver work (benchmark threads less their device
    /// work) and of the device's side, % of one core.
    pub driver_cpu_pct: f64,
    pub device_cpu_pct: f64,
    pub per_queue: Vec<u64>,
    /// Frames the kernel counted on the tap (TX: rx_packets, RX: tx_packets).
    pub kernel_frames: u64,
    /// Drops the kernel counted on the tap (RX: tap ring full).
    pub kernel_drops: u64,
    pub kicks: u64,
    pub irqs: u64,
    pub waits: u64,
    pub stalls: u64,
    /// e1000: device drops and errors over the whole run, warm-up included.
    pub dev_drops: u64,
}

pub struct Snapshot {
    pub at: Instant,
    pub cpu: f64,
    /// Process CPU, ns (its CPU-time clock: exact).
    pub cpu_ns: u64,
    /// CPU ns of the benchmark threads, and the part of it that was
    /// device work.
    pub bench_ns: u64,
    pub device_ns: u64,
    /// CPU seconds of the virtio-net worker threads.
    pub worker_cpu: f64,
    pub frames: Vec<u64>,
    pub bytes: Vec<u64>,
    pub kernel: [u64; 4],
    pub irqs: u64,
}

/// The counters now; `threads` are the live benchmark threads.
pub fn snapshot(stats: &[Arc<Stats>], irqs: u64, threads: &[libc::pthread_t]) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        cpu: cpu_seconds(),
        cpu_ns: process_cpu_ns(),
        bench_ns: threads.iter().map(|&t| pthread_cpu_ns(t)).sum(),
        device_ns: stats
            .iter()
            .map(|s| s.device_ns.load(Ordering::Relaxed))
            .sum(),
        worker_cpu: threads_cpu_seconds(crate::virtio::WORKER_PREFIX),
        frames: stats
            .iter()
            .map(|s| s.frames.load(Ordering::Relaxed))
            .collect(),
        bytes: stats
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .collect(),
        kernel: if_counters(TAP).unwrap_or_default(),
        irqs,
    }
}

/// The measurement between snapshots `s0` and `s1`; the per-thread
/// notification and stall counters are totals at the end of the run.
pub fn measure(dir: Dir, stats: &[Arc<Stats>], s0: &Snapshot, s1: &Snapshot) -> Measurement {
    let secs = s1.at.duration_since(s0.at).as_secs_f64();
    let per_queue: Vec<u64> = s1
        .frames
        .iter()
        .zip(&s0.frames)
        .map(|(a, b)| a - b)
        .collect();
    let frames: u64 = per_queue.iter().sum();
    let bytes: u64 = s1.bytes.iter().zip(&s0.bytes).map(|(a, b)| a - b).sum();
    let k = |i: usize| s1.kernel[i].saturating_sub(s0.kernel[i]);
    let (kernel_frames, kernel_drops) = match dir {
        Dir::Tx => (k(0), k(1)),
        Dir::Rx => (k(2), k(3)),
    };
    let ns = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e9;
    let driver = (ns(s1.bench_ns, s0.bench_ns) - ns(s1.device_ns, s0.device_ns)).max(0.0);
    let device = (ns(s1.cpu_ns, s0.cpu_ns) - driver).max(1e-9);
    let sum = |f: fn(&Stats) -> &AtomicU64| -> u64 {
        stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    };
    Measurement {
        secs,
        frames,
        bytes,
        pps: frames as f64 / secs,
        gbps: bytes as f64 * 8.0 / secs / 1e9,
        cpu_pct: (s1.cpu - s0.cpu) / secs * 100.0,
        frames_per_cpu_s: frames as f64 / (s1.cpu - s0.cpu).max(1e-9),
        worker_frames_per_cpu_s: {
            let cpu = s1.worker_cpu - s0.worker_cpu;
            (cpu > 0.0).then(|| frames as f64 / cpu)
        },
        device_frames_per_cpu_s: frames as f64 / device,
        driver_cpu_pct: driver / secs * 100.0,
        device_cpu_pct: device / secs * 100.0,
        per_queue,
        kernel_frames,
        kernel_drops,
        kicks: sum(|s| &s.kicks),
        irqs: s1.irqs - s0.irqs,
        waits: sum(|s| &s.waits),
        stalls: sum(|s| &s.stalls),
        dev_drops: sum(|s| &s.dev_drops),
    }
}
