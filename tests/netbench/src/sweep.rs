//! Every case of a run: each direction, size and pair count, the modes
//! interleaved per repetition, and the median of the repetitions kept.

use crate::case::{e1000_supported, Dir, Mode};
use crate::cli::Opts;
use crate::frames::Size;
use crate::report::CaseResult;
use crate::run::{run_case, Case};
use crate::stats::Measurement;

/// Runs every case `opts` selects; `flows` as for [`run_case`].
pub fn run_all(opts: &Opts, flows: &[Vec<u16>; 2]) -> Vec<CaseResult> {
    let mut results: Vec<CaseResult> = Vec::new();
    for &dir in &opts.dirs {
        for &size in &opts.sizes {
            for &pairs in &opts.queues {
                for &pinned in &opts.pins {
                    run_modes(dir, size, pairs, pinned, opts, flows, &mut results);
                }
            }
        }
    }
    results
}

/// Runs one direction, size and pair count in every mode, `opts.repeat`
/// times, and appends one result per mode the case supports.
pub fn run_modes(
    dir: Dir,
    size: Size,
    pairs: usize,
    pinned: bool,
    opts: &Opts,
    flows: &[Vec<u16>; 2],
    results: &mut Vec<CaseResult>,
) {
    let mut reps: Vec<Vec<Measurement>> = vec![Vec::new(); opts.modes.len()];
    let mut errors: Vec<Option<String>> = vec![None; opts.modes.len()];
    // Modes interleaved per repetition, so slow drifts of a
    // noisy host hit all of them alike.
    for _ in 0..opts.repeat {
        for (i, &mode) in opts.modes.iter().enumerate() {
            if errors[i].is_some() || (mode == Mode::E1000 && !e1000_supported(dir, size, pairs)) {
                continue;
            }
            let case = Case {
                dir,
                size,
                pairs,
                mode,
                pinned,
            };
            match run_case(case, opts, flows) {
                Ok(m) => reps[i].push(m),
                Err(e) => errors[i] = Some(e),
            }
        }
    }
    for (i, &mode) in opts.modes.iter().enumerate() {
        if mode == Mode::E1000 && !e1000_supported(dir, size, pairs) {
            continue;
        }
        let mut result = CaseResult {
            dir,
            size,
            pairs,
            mode,
            pinned,
            median: None,
            reps: Vec::new(),
            error: errors[i].take(),
        };
        summarize(&mut result, std::mem::take(&mut reps[i]));
        results.push(result);
    }
}

/// Fills in the median and every repetition's pps, and prints them (or
/// the failure) on stderr as the run goes.
pub fn summarize(r: &mut CaseResult, mut ms: Vec<Measurement>) {
    ms.sort_by(|a, b| a.pps.total_cmp(&b.pps));
    r.reps = ms.iter().map(|m| m.pps).collect();
    r.median = (!ms.is_empty()).then(|| ms[ms.len() / 2].clone());
    if let Some(m) = &r.median {
        eprintln!(
            "  {} {:>10} {} pair(s){} {:>6}: {:>10.0} pps {:>7.2} Gbit/s cpu {:>4.0}% {:>10.0} frames/CPU-s  (reps {:?})",
            r.dir.name(),
            r.size.label,
            r.pairs,
            if r.pinned { " pinned" } else { "" },
            r.mode.name(),
            m.pps,
            m.gbps,
            m.cpu_pct,
            m.frames_per_cpu_s,
            r.reps
                .iter()
                .map(|p| format!("{:.0}k", p / 1e3))
                .collect::<Vec<_>>()
        );
    }
    if let Some(e) = &r.error {
        eprintln!(
            "  {} {} {} pair(s) {}: FAILED: {e}",
            r.dir.name(),
            r.size.label,
            r.pairs,
            r.mode.name()
        );
    }
}
