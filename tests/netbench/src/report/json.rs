//! The `--json` report, written by hand to keep the crate free of a JSON
//! dependency; its field names are what scripts and docs compare.

use std::fmt::Write as _;

use super::{figure, CaseResult};
use crate::case::Mode;
use crate::cli::Opts;
use crate::stats::Measurement;

pub fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `a / b` for the JSON report, `null` without `b`.
fn ratio_json(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.4}", a / b),
        _ => "null".into(),
    }
}

/// The frames-per-CPU-second fields of one case: whole process against
/// the raw tap, the worker threads alone, and (virtio-net modes and the
/// raw reference) the device side, see `report::device`.
fn efficiency_json(results: &[CaseResult], r: &CaseResult, m: &Measurement) -> String {
    let raw = |f: fn(&Measurement) -> f64| {
        figure(results, (r.dir, r.size, r.pairs, Mode::Raw), r.pinned, f)
    };
    let mut o = format!(
        ", \"frames_per_cpu_s_vs_raw\": {}",
        ratio_json(m.frames_per_cpu_s, raw(|m| m.frames_per_cpu_s))
    );
    if matches!(r.mode, Mode::Raw | Mode::Direct | Mode::Worker) {
        let _ = write!(
            o,
            ", \"device_frames_per_cpu_s\": {:.0}, \"device_frames_per_cpu_s_vs_raw\": {}, \"driver_cpu_pct\": {:.1}, \"device_cpu_pct\": {:.1}",
            m.device_frames_per_cpu_s,
            ratio_json(m.device_frames_per_cpu_s, raw(|m| m.device_frames_per_cpu_s)),
            m.driver_cpu_pct,
            m.device_cpu_pct
        );
    }
    if let Some(w) = m.worker_frames_per_cpu_s {
        let _ = write!(o, ", \"worker_frames_per_cpu_s\": {w:.0}");
    }
    o
}

pub fn json(results: &[CaseResult], opts: &Opts, host: &str) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\n  \"benchmark\": \"virtio-net datapath\",\n  \"host\": {},\n  \"seconds\": {},\n  \"warmup\": {},\n  \"repeat\": {},\n  \"rx_buf\": {},\n  \"window\": {},\n  \"cases\": [",
        json_str(host),
        opts.seconds,
        opts.warmup,
        opts.repeat,
        opts.rx_buf,
        opts.window
    );
    for (i, r) in results.iter().enumerate() {
        let of = |mode: Mode| figure(results, (r.dir, r.size, r.pairs, mode), r.pinned, |m| m.pps);
        let (raw, virtio) = (of(Mode::Raw), of(Mode::Worker));
        let _ = write!(
            o,
            "{}\n    {{\"dir\": \"{}\", \"frame\": {}, \"frame_len\": {}, \"pairs\": {}, \"mode\": \"{}\", \"pinned\": {}",
            if i == 0 { "" } else { "," },
            r.dir.name(),
            json_str(r.size.label),
            r.size.frame_len,
            r.pairs,
            r.mode.name(),
            r.pinned
        );
        if let Some(e) = &r.error {
            let _ = write!(o, ", \"error\": {}", json_str(e));
        }
        if let Some(m) = &r.median {
            let ratio = ratio_json(m.pps, raw);
            o.push_str(&efficiency_json(results, r, m));
            let reps: Vec<String> = r.reps.iter().map(|p| format!("{p:.0}")).collect();
            let _ = write!(
                o,
                ", \"pps\": {:.0}, \"gbit_s\": {:.4}, \"ratio_vs_raw\": {}, \"cpu_pct\": {:.1}, \"frames_per_cpu_s\": {:.0}, \"secs\": {:.4}, \"frames\": {}, \"bytes\": {}, \"per_queue_frames\": {:?}, \"kernel_frames\": {}, \"kernel_drops\": {}, \"kicks\": {}, \"irqs\": {}, \"driver_waits\": {}, \"stalls\": {}, \"reps_pps\": [{}]",
                m.pps,
                m.gbps,
                ratio,
                m.cpu_pct,
                m.frames_per_cpu_s,
                m.secs,
                m.frames,
                m.bytes,
                m.per_queue,
                m.kernel_frames,
                m.kernel_drops,
                m.kicks,
                m.irqs,
                m.waits,
                m.stalls,
                reps.join(", ")
            );
            if r.mode == Mode::E1000 {
                let ratio = ratio_json(m.pps, virtio);
                // For the e1000, "kicks" counts BAR0 register accesses.
                let _ = write!(
                    o,
                    ", \"ratio_vs_virtio_worker\": {}, \"mmio_accesses\": {}, \"device_drops\": {}",
                    ratio, m.kicks, m.dev_drops
                );
            }
        }
        o.push('}');
    }
    o.push_str("\n  ]\n}\n");
    o
}
