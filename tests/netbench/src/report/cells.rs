//! Table cells: rates, ratios, notification counts and the sanity checks
//! of one case.

use super::CaseResult;
use crate::virtio::RING;

pub fn fmt_rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2} M", pps / 1e6)
    } else {
        format!("{:.0} k", pps / 1e3)
    }
}

/// A table cell for one case: pps, Gbit/s and CPU, or why there are none.
pub fn result_cell(r: Option<&CaseResult>) -> String {
    match r {
        Some(CaseResult { error: Some(e), .. }) => format!("failed: {e}"),
        Some(CaseResult {
            median: Some(m), ..
        }) => format!("{}pps / {:.2} / {:.0}%", fmt_rate(m.pps), m.gbps, m.cpu_pct),
        _ => "–".into(),
    }
}

/// `a / b` as a table cell, when both were measured.
pub fn ratio_cell(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// Kicks (or MMIO accesses) and interrupts per 1000 frames of one case.
pub fn notify_cell(r: Option<&CaseResult>) -> String {
    match r.and_then(|r| r.median.as_ref()) {
        Some(m) if m.frames > 0 => format!(
            "{:.1}, {:.1}",
            m.kicks as f64 * 1000.0 / m.frames as f64,
            m.irqs as f64 * 1000.0 / m.frames as f64
        ),
        _ => "–".into(),
    }
}

pub fn check_note(r: &CaseResult) -> String {
    let Some(m) = &r.median else {
        return String::new();
    };
    let mut notes = Vec::new();
    // The kernel's count and ours differ by at most the frames in flight
    // at the two snapshot instants (every mode, the e1000 too, hands TSO
    // packets to the tap whole).
    let slack = 2 * u64::from(RING) * r.pairs as u64 + 64;
    if m.kernel_frames.abs_diff(m.frames) > slack {
        notes.push(format!("kernel saw {} frames", m.kernel_frames));
    }
    if m.dev_drops > 0 {
        notes.push(format!("device dropped {} (whole run)", m.dev_drops));
    }
    if m.kernel_drops > 0 {
        notes.push(format!("{} dropped", m.kernel_drops));
    }
    if m.stalls > 0 {
        notes.push(format!("{} stalls", m.stalls));
    }
    if r.pairs > 1 && m.per_queue.len() > 1 {
        let max = m.per_queue.iter().copied().max().unwrap_or(0) as f64;
        let min = m.per_queue.iter().copied().min().unwrap_or(0) as f64;
        if max > 0.0 && min / max < 0.5 {
            notes.push(format!("uneven queues {:?}", m.per_queue));
        }
    }
    notes.join(", ")
}
