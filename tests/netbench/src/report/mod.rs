//! The results of a run and how they are reported: markdown tables on
//! stdout and, with `--json`, a JSON file.

mod cells;
mod device;
mod efficiency;
mod json;
mod table;

pub use device::device_table;
pub use efficiency::efficiency_table;
pub use json::json;
pub use table::table;

use crate::case::{Dir, Mode};
use crate::frames::Size;
use crate::stats::Measurement;

#[derive(Clone, Debug)]
pub struct CaseResult {
    pub dir: Dir,
    pub size: Size,
    pub pairs: usize,
    pub mode: Mode,
    /// Every thread of pair q ran on CPU q.
    pub pinned: bool,
    /// Median (by pps) of the repetitions, and every repetition's pps.
    pub median: Option<Measurement>,
    pub reps: Vec<f64>,
    pub error: Option<String>,
}

/// The unpinned result of a case (the pps tables).
pub fn find(
    results: &[CaseResult],
    dir: Dir,
    size: Size,
    pairs: usize,
    mode: Mode,
) -> Option<&CaseResult> {
    find_pinned(results, dir, size, pairs, mode, false)
}

pub fn find_pinned(
    results: &[CaseResult],
    dir: Dir,
    size: Size,
    pairs: usize,
    mode: Mode,
    pinned: bool,
) -> Option<&CaseResult> {
    results.iter().find(|r| {
        r.dir == dir && r.size == size && r.pairs == pairs && r.mode == mode && r.pinned == pinned
    })
}

/// A measured figure of a case's median, pinned or not.
pub fn figure(
    results: &[CaseResult],
    case: (Dir, Size, usize, Mode),
    pinned: bool,
    f: fn(&Measurement) -> f64,
) -> Option<f64> {
    let (dir, size, pairs, mode) = case;
    find_pinned(results, dir, size, pairs, mode, pinned)
        .and_then(|r| r.median.as_ref())
        .map(f)
}

pub fn pps_of(
    results: &[CaseResult],
    dir: Dir,
    size: Size,
    pairs: usize,
    mode: Mode,
) -> Option<f64> {
    find(results, dir, size, pairs, mode)
        .and_then(|r| r.median.as_ref())
        .map(|m| m.pps)
}
