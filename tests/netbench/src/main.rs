//! netbench: a device-model benchmark of petrel's virtio-net and e1000
//! datapaths without a guest.
//!
//! The benchmark plays the guest driver: it lays out split virtqueues and
//! buffers in a `GuestMemoryMmap`, posts descriptor chains, publishes the
//! avail index and kicks exactly as a driver would. The other end of the
//! tap is the kernel:
//!
//! - TX: frames the driver posts are written by the device to the tap; the
//!   kernel receives them on `pbench0` and drops them (the destination MAC
//!   is not the interface's, no addresses are configured). The interface's
//!   rx counters (`/proc/net/dev`) confirm every frame arrived.
//! - RX: the benchmark injects frames into `pbench0` from the kernel side
//!   with an `AF_PACKET` socket (`PACKET_VNET_HDR`, `PACKET_QDISC_BYPASS`,
//!   `sendmmsg`), so the kernel queues them on the tap; the device reads
//!   them into posted rx buffers (MRG_RXBUF) and the driver recycles them.
//!   Injection is closed-loop (at most `--window` frames in flight per
//!   queue) so the tap's ring never overflows.
//!
//! Every case runs in three modes, one after the other in the same run:
//!
//! - `raw`: the same frames written with writev(2) to / read with read(2)
//!   from the tap fd directly (the reference: what the kernel costs);
//! - `direct`: the benchmark thread calls `QueuePair::process_tx` /
//!   `process_rx` itself (device datapath cost, single thread);
//! - `worker`: the full `Net` device, activated with the driver's
//!   features, one worker thread per queue pair woken by kick eventfds; a
//!   fake `VirtioInterrupt` counts interrupts and wakes the driver thread;
//! - `e1000`: the e1000 model (`devices::e1000::E1000`), driven through
//!   `bar_write`/`bar_read` on BAR 0 as Linux's e1000 driver would (256-entry
//!   rings, RCTL EN|BAM with 2 KiB buffers, IMS, ICR read + IMC in the
//!   "ISR", IMS again when done). TX writes legacy descriptors (EOP|IFCS|RS)
//!   or, for TSO, a context descriptor and 4 KiB data descriptors, and
//!   writes TDT every 32 packets: the device transmits on the calling thread
//!   inside that write. RX recycles descriptors with DD and writes RDT every
//!   16; the device's rx worker thread reads the tap. A fake `IntxLine`
//!   counts assertions. One queue only, and no RX of TSO frames.
//!
//! and with 1 and 2 queue pairs (2 pairs: a multi-queue tap, one thread per
//! pair, each on its own tap queue; RX flows are chosen by probing so each
//! lands on its pair's tap queue).
//!
//! `--passt` measures the passt backend instead (see [`passt`]).
//!
//! Needs root (CAP_NET_ADMIN): the process first moves into a new network
//! namespace (`unshare(CLONE_NEWNET)`), so its taps live and die with it
//! and the host's interfaces are never touched. Timings are printed, never
//! asserted.

mod case;
mod cli;
mod e1000;
mod frames;
mod injector;
mod passt;
mod pin;
mod raw;
mod report;
mod run;
mod stats;
mod sweep;
mod sys;
mod virtio;
mod window;

use case::Dir;

/// The device's tap.
const TAP: &str = "pbench0";
/// Frames per sendmmsg / raw write burst.
const BATCH: usize = 32;

fn main() {
    let opts = match cli::parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netbench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = sys::enter_private_netns() {
        eprintln!("netbench: cannot enter a private network namespace: {e}");
        std::process::exit(1);
    }
    let host = sys::host_description();
    if opts.passt {
        println!("netbench: {host}");
        match passt::run(&opts) {
            Ok(table) => print!("\n{table}"),
            Err(e) => {
                eprintln!("netbench: passt: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    println!(
        "netbench: {host}; {} s per case after {} s warm-up, median of {}; rx buffers {} B (MRG_RXBUF), window {} frames",
        opts.seconds, opts.warmup, opts.repeat, opts.rx_buf, opts.window
    );
    let flows = injector::rx_flows(opts.dirs.contains(&Dir::Rx));
    let results = sweep::run_all(&opts, &flows);

    println!();
    print!("{}", report::table(&results, &opts));
    print!("{}", report::efficiency_table(&results, &opts));
    print!("{}", report::device_table(&results, &opts));
    if let Some(path) = &opts.json {
        if let Err(e) = std::fs::write(path, report::json(&results, &opts, &host)) {
            eprintln!("netbench: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("\nnetbench: JSON written to {}", path.display());
    }
}
