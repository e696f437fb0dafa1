//! The results of a run and how they are reported: markdown tables on
//! stdout and, with `--json`, a JSON file.

mod cells;
mod json;
mod table;

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
    /// Median (by pps) of the repetitions, and every repetition's pps.
    pub median: Option<Measurement>,
    pub reps: Vec<f64>,
    pub error: Option<String>,
}

pub fn find(
    results: &[CaseResult],
    dir: Dir,
    size: Size,
    pairs: usize,
    mode: Mode,
) -> Option<&CaseResult> {
    results
        .iter()
        .find(|r| r.dir == dir && r.size == size && r.pairs == pairs && r.mode == mode)
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
