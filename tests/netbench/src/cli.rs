//! Command-line options: the flags, their defaults and their checks.

use std::path::PathBuf;

use crate::case::{Dir, Mode};
use crate::frames::{Size, SIZES};

#[derive(Clone, Debug)]
pub struct Opts {
    pub seconds: f64,
    pub warmup: f64,
    pub repeat: usize,
    pub json: Option<PathBuf>,
    pub sizes: Vec<Size>,
    pub queues: Vec<usize>,
    pub dirs: Vec<Dir>,
    pub modes: Vec<Mode>,
    pub rx_buf: u32,
    pub window: usize,
    /// `--passt`: the passt backend cases only.
    pub passt: bool,
    /// Run every case unpinned (false) and/or pinned (true): each pair's
    /// threads (driver, device worker, injector) on CPU `pair`, so one
    /// pair runs on one core.
    pub pins: Vec<bool>,
}

pub const USAGE: &str = "usage: netbench [--seconds S] [--warmup S] [--repeat N] [--json FILE]
                [--sizes 64,1514,65536] [--queues 1,2] [--dirs tx,rx]
                [--modes raw,direct,worker,e1000] [--rx-buf BYTES]
                [--window FRAMES] [--pin none,core] [--passt]

Benchmarks petrel's virtio-net and e1000 datapaths against a raw tap, without
a guest. The e1000 runs with 1 queue only, and not for RX of TSO frames.
--sizes 65536 selects the 64 KiB TSO frame (65214 bytes: 45 segments of 1448).
--passt runs only the passt backend cases (TX and RX of 1514-byte UDP frames:
petrel's virtio-net worker over PasstStream vs. the benchmark on passt's socket).
--pin core runs each case with every thread of pair q pinned to CPU q (one
core per pair), --pin none unpinned; the default runs both.
Needs root; runs in a private network namespace. Timings are relative: compare
columns of one run, not runs on different hosts.";

pub fn parse_list<T>(v: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    v.split(',')
        .map(|x| f(x.trim()).ok_or_else(|| format!("bad list item {x:?}")))
        .collect()
}

pub fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        seconds: 1.0,
        warmup: 0.25,
        repeat: 3,
        json: None,
        sizes: SIZES.to_vec(),
        queues: vec![1, 2],
        dirs: vec![Dir::Tx, Dir::Rx],
        modes: vec![Mode::Raw, Mode::Direct, Mode::Worker, Mode::E1000],
        rx_buf: 4096,
        window: 192,
        passt: false,
        pins: vec![false, true],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if a == "--passt" {
            o.passt = true;
            continue;
        }
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{a} {v}: {e}"));
        match a.as_str() {
            "--seconds" => o.seconds = num(&v)?,
            "--warmup" => o.warmup = num(&v)?,
            "--repeat" => o.repeat = num(&v)?.max(1.0) as usize,
            "--json" => o.json = Some(PathBuf::from(v)),
            "--rx-buf" => o.rx_buf = num(&v)? as u32,
            "--window" => o.window = num(&v)? as usize,
            "--sizes" => {
                o.sizes = parse_list(&v, |x| {
                    let n: usize = x.parse().ok()?;
                    // 65536 (or anything above 1514) selects the TSO size.
                    SIZES
                        .iter()
                        .copied()
                        .find(|s| s.frame_len == n || (s.gso && n > 1514))
                })?
            }
            "--queues" => {
                o.queues = parse_list(&v, |x| x.parse().ok().filter(|&n: &usize| n == 1 || n == 2))?
            }
            "--dirs" => {
                o.dirs = parse_list(&v, |x| match x {
                    "tx" => Some(Dir::Tx),
                    "rx" => Some(Dir::Rx),
                    _ => None,
                })?
            }
            "--pin" => {
                o.pins = parse_list(&v, |x| match x {
                    "none" => Some(false),
                    "core" => Some(true),
                    _ => None,
                })?
            }
            "--modes" => {
                o.modes = parse_list(&v, |x| match x {
                    "raw" => Some(Mode::Raw),
                    "direct" => Some(Mode::Direct),
                    "worker" => Some(Mode::Worker),
                    "e1000" => Some(Mode::E1000),
                    _ => None,
                })?
            }
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        }
    }
    check(o)
}

fn check(o: Opts) -> Result<Opts, String> {
    if !(512..=16384).contains(&o.rx_buf) {
        return Err("--rx-buf must be 512..=16384".into());
    }
    if o.window == 0 || o.window > 400 {
        return Err("--window must be 1..=400 (the tap queues 500 frames)".into());
    }
    if o.seconds.is_nan() || o.seconds <= 0.0 || o.warmup.is_nan() || o.warmup < 0.0 {
        return Err("--seconds must be > 0 and --warmup >= 0".into());
    }
    Ok(o)
}
