//! The efficiency tables: frames per CPU-second of every mode against the
//! raw tap, unpinned and with each pair pinned to one core, the pinned
//! 2-pair scaling and the e1000 against virtio-net on the same terms.

use std::fmt::Write as _;

use super::cells::ratio_cell;
use super::table::table_head;
use super::{figure, CaseResult};
use crate::case::{e1000_supported, Dir, Mode};
use crate::cli::Opts;
use crate::frames::Size;
use crate::stats::Measurement;

fn fpcs(m: &Measurement) -> f64 {
    m.frames_per_cpu_s
}

fn pps(m: &Measurement) -> f64 {
    m.pps
}

/// Frames per CPU-second of the device's worker threads alone (NaN, shown
/// as "–", where there are none).
fn worker_fpcs(m: &Measurement) -> f64 {
    m.worker_frames_per_cpu_s.unwrap_or(f64::NAN)
}

fn rate(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) if v >= 1e6 => format!("{:.2} M", v / 1e6),
        Some(v) => format!("{:.0} k", v / 1e3),
        None => "–".into(),
    }
}

/// Frames per CPU-second (unpinned) and pps pinned to one core per pair,
/// each mode against the raw tap.
pub fn efficiency_table(results: &[CaseResult], opts: &Opts) -> String {
    let mut out = String::new();
    table_head(
        &mut out,
        Some("Efficiency: frames per CPU-second of the whole process (driver, device workers, injector), unpinned; of the virtio-net worker threads alone (the device without the benchmark's driver; for RX the raw reference also pays the injection, so that ratio flatters the device); and pps with each pair's threads pinned to one core:"),
        "| dir | frame | pairs | raw: frames/CPU-s | direct | worker | direct/raw | **worker/raw** | worker threads alone: frames/CPU-s | …/raw | pinned raw pps | pinned worker pps | pinned worker/raw |",
    );
    for &dir in &opts.dirs {
        for &size in &opts.sizes {
            for &pairs in &opts.queues {
                let f = |mode: Mode, pinned: bool, what: fn(&Measurement) -> f64| {
                    figure(results, (dir, size, pairs, mode), pinned, what)
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | **{}** | {} | {} | {} | {} | {} |",
                    dir.name(),
                    size.label,
                    pairs,
                    rate(f(Mode::Raw, false, fpcs)),
                    rate(f(Mode::Direct, false, fpcs)),
                    rate(f(Mode::Worker, false, fpcs)),
                    ratio_cell(f(Mode::Direct, false, fpcs), f(Mode::Raw, false, fpcs)),
                    ratio_cell(f(Mode::Worker, false, fpcs), f(Mode::Raw, false, fpcs)),
                    rate(f(Mode::Worker, false, worker_fpcs)),
                    ratio_cell(
                        f(Mode::Worker, false, worker_fpcs).filter(|v| v.is_finite()),
                        f(Mode::Raw, false, fpcs)
                    ),
                    rate(f(Mode::Raw, true, pps)),
                    rate(f(Mode::Worker, true, pps)),
                    ratio_cell(f(Mode::Worker, true, pps), f(Mode::Raw, true, pps)),
                );
            }
        }
    }
    if opts.queues.contains(&1) && opts.queues.contains(&2) && opts.pins.contains(&true) {
        out.push_str(&scaling_table(results, opts));
    }
    if opts.modes.contains(&Mode::E1000) && opts.queues.contains(&1) {
        out.push_str(&e1000_efficiency(results, opts));
    }
    out
}

/// 2 pairs on 2 cores against 1 pair on 1 core (pinned pps).
fn scaling_table(results: &[CaseResult], opts: &Opts) -> String {
    let mut out = String::new();
    table_head(
        &mut out,
        Some("Multiqueue scaling, pinned: pps of 2 pairs (pair q's driver and worker on CPU q) / pps of 1 pair on one core; the driver threads (the benchmark playing the guest) share the cores with the workers, so this counts their cost too:"),
        "| dir | frame | raw tap | direct QueuePair | worker+eventfd |",
    );
    for &dir in &opts.dirs {
        for &size in &opts.sizes {
            let scale = |mode: Mode| {
                ratio_cell(
                    figure(results, (dir, size, 2, mode), true, pps),
                    figure(results, (dir, size, 1, mode), true, pps),
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                dir.name(),
                size.label,
                scale(Mode::Raw),
                scale(Mode::Direct),
                scale(Mode::Worker)
            );
        }
    }
    out
}

/// The e1000 against virtio-net (worker mode), frames per CPU-second and
/// pinned pps, 1 queue.
fn e1000_efficiency(results: &[CaseResult], opts: &Opts) -> String {
    let mut out = String::new();
    table_head(
        &mut out,
        Some("e1000 vs virtio-net (worker), 1 queue: frames per CPU-second and pinned pps:"),
        "| dir | frame | e1000 frames/CPU-s | virtio frames/CPU-s | **e1000/virtio** | e1000 pinned pps | virtio pinned pps | pinned e1000/virtio |",
    );
    for &dir in &opts.dirs {
        for &size in &opts.sizes {
            if !e1000_supported(dir, size, 1) {
                continue;
            }
            out.push_str(&e1000_row(results, dir, size));
        }
    }
    out
}

fn e1000_row(results: &[CaseResult], dir: Dir, size: Size) -> String {
    let f = |mode: Mode, pinned: bool, what: fn(&Measurement) -> f64| {
        figure(results, (dir, size, 1, mode), pinned, what)
    };
    format!(
        "| {} | {} | {} | {} | **{}** | {} | {} | {} |\n",
        dir.name(),
        size.label,
        rate(f(Mode::E1000, false, fpcs)),
        rate(f(Mode::Worker, false, fpcs)),
        ratio_cell(f(Mode::E1000, false, fpcs), f(Mode::Worker, false, fpcs)),
        rate(f(Mode::E1000, true, pps)),
        rate(f(Mode::Worker, true, pps)),
        ratio_cell(f(Mode::E1000, true, pps), f(Mode::Worker, true, pps)),
    )
}
