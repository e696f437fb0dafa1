//! The markdown tables: every virtio-net case against the raw tap, 2 vs 1
//! queue pairs, and the e1000 against virtio-net and the raw tap.

use std::fmt::Write as _;

use super::cells::{check_note, notify_cell, ratio_cell, result_cell};
use super::{find, pps_of, CaseResult};
use crate::case::{e1000_supported, Mode};
use crate::cli::Opts;

/// Starts a markdown table: `title` as a paragraph of its own, then the
/// `header` row and the separator row for its columns.
pub fn table_head(out: &mut String, title: Option<&str>, header: &str) {
    if let Some(title) = title {
        let _ = writeln!(out);
        let _ = writeln!(out, "{title}");
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{header}");
    let columns = header.matches('|').count().saturating_sub(1);
    let _ = writeln!(out, "|{}", "---|".repeat(columns));
}

pub fn table(results: &[CaseResult], opts: &Opts) -> String {
    let mut out = String::new();
    table_head(
        &mut out,
        None,
        "| dir | frame | pairs | raw tap: pps / Gbit/s / CPU | direct QueuePair: pps / Gbit/s / CPU | direct/raw | worker+eventfd: pps / Gbit/s / CPU | worker/raw | kicks, irqs per 1k frames | checks |",
    );
    for &dir in &opts.dirs {
        for &size in &opts.sizes {
            for &pairs in &opts.queues {
                let cell = |mode: Mode| result_cell(find(results, dir, size, pairs, mode));
                let raw = pps_of(results, dir, size, pairs, Mode::Raw);
                let ratio = |mode: Mode| ratio_cell(pps_of(results, dir, size, pairs, mode), raw);
                let notify = notify_cell(find(results, dir, size, pairs, Mode::Worker));
                let checks: Vec<String> = [Mode::Raw, Mode::Direct, Mode::Worker]
                    .into_iter()
                    .filter_map(|mode| find(results, dir, size, pairs, mode))
                    .filter_map(|r| {
                        let n = check_note(r);
                        (!n.is_empty()).then(|| format!("{}: {n}", r.mode.name()))
                    })
                    .collect();
                let checks = if checks.is_empty() {
                    "ok".to_string()
                } else {
                    checks.join("; ")
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    dir.name(),
                    size.label,
                    pairs,
                    cell(Mode::Raw),
                    cell(Mode::Direct),
                    ratio(Mode::Direct),
                    cell(Mode::Worker),
                    ratio(Mode::Worker),
                    notify,
                    checks
                );
            }
        }
    }
    if opts.queues.contains(&1) && opts.queues.contains(&2) {
        table_head(
            &mut out,
            Some("2 vs 1 queue pairs (pps with 2 pairs / pps with 1 pair):"),
            "| dir | frame | raw tap | direct QueuePair | worker+eventfd |",
        );
        for &dir in &opts.dirs {
            for &size in &opts.sizes {
                let scale = |mode: Mode| {
                    ratio_cell(
                        pps_of(results, dir, size, 2, mode),
                        pps_of(results, dir, size, 1, mode),
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
    }
    if opts.modes.contains(&Mode::E1000) && opts.queues.contains(&1) {
        out.push_str(&e1000_table(results, opts));
    }
    out
}

/// The e1000 rows: e1000 against virtio-net (worker mode, 1 queue pair)
/// and the raw tap, same frames, same run.
pub fn e1000_table(results: &[CaseResult], opts: &Opts) -> String {
    let mut out = String::new();
    table_head(
        &mut out,
        Some("e1000 (1 queue) vs virtio-net (worker+eventfd, 1 queue pair) and the raw tap:"),
        "| dir | frame | raw tap: pps / Gbit/s / CPU | virtio-net worker: pps / Gbit/s / CPU | e1000: pps / Gbit/s / CPU | e1000/virtio | e1000/raw | e1000 MMIO accesses, irqs per 1k frames | checks |",
    );
    for &dir in &opts.dirs {
        for &size in &opts.sizes {
            let cell = |mode: Mode| -> String {
                if mode == Mode::E1000 && !e1000_supported(dir, size, 1) {
                    return "n/a (no GSO receive)".into();
                }
                result_cell(find(results, dir, size, 1, mode))
            };
            let e = pps_of(results, dir, size, 1, Mode::E1000);
            let ratio = |other: Mode| ratio_cell(e, pps_of(results, dir, size, 1, other));
            let e_res = find(results, dir, size, 1, Mode::E1000);
            let notify = notify_cell(e_res);
            let checks = match e_res.map(check_note) {
                Some(n) if n.is_empty() => "ok".to_string(),
                Some(n) => n,
                None => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                dir.name(),
                size.label,
                cell(Mode::Raw),
                cell(Mode::Worker),
                cell(Mode::E1000),
                ratio(Mode::Worker),
                ratio(Mode::Raw),
                notify,
                checks
            );
        }
    }
    out
}
