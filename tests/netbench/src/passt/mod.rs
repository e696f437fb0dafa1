//! `--passt`: frames per second through petrel's passt backend (the full
//! virtio-net device with its worker over `net_backend::PasstStream`, passt
//! started by `net::passt::Passt` as petrel starts it) against passt's own
//! socket driven directly by the benchmark (`raw`: length-prefixed frames
//! written and read in place of a VMM), one run, 1514-byte UDP frames both
//! ways.
//!
//! The private network namespace gets a veth link `pbpasst` with the
//! "pod" address 10.99.0.1 (passt copies it for the guest) and a peer
//! address 10.99.0.2, where the peer's UDP sockets live:
//! - TX: the guest sends 10.99.0.1:40000 → 10.99.0.2:9998; passt turns each
//!   frame into a datagram; the peer's socket counts what arrives.
//! - RX: the peer sends datagrams to 10.99.0.1:9999, which passt forwards
//!   (`-u 9999`); the reader counts the frames passt writes, closed-loop
//!   (at most `--window` datagrams in flight).
//!
//! Both modes are counted where the frames end up (the peer for TX, the
//! reader for RX), so the ratio is what the device model costs on top of
//! passt.

mod rx;
mod tx;

use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::case::Dir;
use crate::cli::Opts;
use crate::frames::{csum_add, csum_fold, GUEST_MAC, PEER_MAC};
use crate::stats::Ctl;
use crate::virtio::control::driver_features;
use crate::virtio::driver::{RxDriver, TxDriver};
use crate::virtio::{BenchInterrupt, CTRL_RING, CTRL_RING_OFF, PAIR_MEM};
use devices::virtio::net::{Net, VNET_HDR_LEN};
use devices::virtio::test_driver::DriverRing;
use devices::virtio::{QueueConfig, VirtioDevice, VirtioInterrupt};
use net_backend::{FrameBackend, PasstStream};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The dummy link and its addresses.
const LINK: &str = "pbpasst";
pub const POD_IP: [u8; 4] = [10, 99, 0, 1];
pub const PEER_IP: [u8; 4] = [10, 99, 0, 2];
/// The guest's source port and the peer's ports.
pub const GUEST_PORT: u16 = 40000;
pub const SINK_PORT: u16 = 9998;
pub const FORWARDED_PORT: u16 = 9999;
/// Ethernet frame length of every benchmark frame.
pub const FRAME_LEN: usize = 1514;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasstMode {
    Raw,
    Worker,
}

impl PasstMode {
    fn name(self) -> &'static str {
        match self {
            PasstMode::Raw => "raw",
            PasstMode::Worker => "petrel",
        }
    }
}

/// Frames counted where they end up, and the start/stop control the
/// driving thread shares with the main thread.
pub struct Count {
    pub frames: AtomicU64,
    pub ctl: Arc<Ctl>,
}

/// Runs the four cases (TX, RX × raw, petrel) `opts.repeat` times and
/// returns the table.
pub fn run(opts: &Opts) -> Result<String, String> {
    setup_link()?;
    let program = std::path::PathBuf::from("/usr/bin/passt");
    if !program.is_file() {
        return Err("passt is not installed (apt-get install passt)".into());
    }
    let mut out = format!(
        "passt backend, {FRAME_LEN}-byte UDP frames, median of {} × {} s (after {} s warm-up):\n\n\
         | direction | raw (benchmark on passt's socket) | petrel (virtio-net worker → PasstStream) | petrel / raw |\n\
         | --- | --- | --- | --- |\n",
        opts.repeat, opts.seconds, opts.warmup
    );
    for dir in [Dir::Tx, Dir::Rx] {
        let mut rates = [Vec::new(), Vec::new()];
        for _ in 0..opts.repeat {
            // Alternate the order so neither mode always runs first.
            for (i, mode) in [PasstMode::Raw, PasstMode::Worker].into_iter().enumerate() {
                let r = run_case(dir, mode, opts)?;
                println!(
                    "netbench: passt {} {}: {:.0} frames/s",
                    dir.name(),
                    mode.name(),
                    r
                );
                rates[i].push(r);
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (raw, worker) = (med(&mut rates[0]), med(&mut rates[1]));
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2} |\n",
            dir.name(),
            raw,
            worker,
            worker / raw
        ));
    }
    Ok(out)
}

/// One case: passt started for it, the mode's threads, frames per second
/// over `opts.seconds` after the warm-up.
fn run_case(dir: Dir, mode: PasstMode, opts: &Opts) -> Result<f64, String> {
    let args = passt_args(dir);
    let (passt, stream) =
        net::passt::Passt::spawn("pbench", std::path::Path::new("/usr/bin/passt"), &args)
            .map_err(|e| format!("passt: {e}"))?;
    let count = Arc::new(Count {
        frames: AtomicU64::new(0),
        ctl: Arc::new(Ctl {
            start: Barrier::new(2),
            stop: AtomicBool::new(false),
        }),
    });
    let spawned = match dir {
        Dir::Tx => tx::spawn(mode, stream, &count, opts)?,
        Dir::Rx => rx::spawn(mode, stream, &count, opts)?,
    };
    count.ctl.start.wait();
    thread::sleep(Duration::from_secs_f64(opts.warmup));
    let (f0, t0) = (count.frames.load(Ordering::Relaxed), Instant::now());
    thread::sleep(Duration::from_secs_f64(opts.seconds));
    let (f1, t1) = (count.frames.load(Ordering::Relaxed), Instant::now());
    count.ctl.stop.store(true, Ordering::Relaxed);
    let joined = spawned.join();
    drop(passt);
    joined?;
    Ok((f1 - f0) as f64 / (t1 - t0).as_secs_f64())
}

/// What a case started; joined (device dropped after its threads) at the end.
pub struct Running {
    pub threads: Vec<thread::JoinHandle<()>>,
    pub net: Option<devices::virtio::net::Net>,
}

impl Running {
    fn join(self) -> Result<(), String> {
        let mut ok = true;
        for t in self.threads {
            ok &= t.join().is_ok();
        }
        drop(self.net);
        ok.then_some(())
            .ok_or_else(|| "a passt benchmark thread panicked".to_string())
    }
}

/// passt's options for a case: the dummy link, no port forwarded for TX,
/// the RX port for RX.
fn passt_args(dir: Dir) -> Vec<String> {
    let udp = match dir {
        Dir::Tx => "none".to_string(),
        Dir::Rx => FORWARDED_PORT.to_string(),
    };
    [
        "--foreground",
        "--quiet",
        "--interface",
        LINK,
        "--mtu",
        "1500",
        "--tcp-ports",
        "none",
        "--udp-ports",
        &udp,
        "--ipv4-only",
        "--no-map-gw",
    ]
    .map(String::from)
    .to_vec()
}

fn setup_link() -> Result<(), String> {
    let ip = |args: &str| {
        let st = Command::new("ip")
            .args(args.split_whitespace())
            .status()
            .map_err(|e| format!("ip {args}: {e}"))?;
        st.success()
            .then_some(())
            .ok_or_else(|| format!("ip {args}: {st}"))
    };
    ip("link set lo up")?;
    // A veth pair (this host's kernel has no dummy links); both addresses
    // on one end are local, so the peer's sockets need no other namespace.
    ip(&format!("link add {LINK} type veth peer name {LINK}p"))?;
    ip(&format!("link set {LINK}p up"))?;
    ip(&format!("addr add 10.99.0.1/24 dev {LINK}"))?;
    ip(&format!("addr add 10.99.0.2/24 dev {LINK}"))?;
    ip(&format!("link set {LINK} up"))?;
    ip(&format!("route add default via 10.99.0.254 dev {LINK}"))
}

/// A UDP/IPv4 frame of [`FRAME_LEN`] bytes from the guest to the peer's
/// sink (complete checksums: passt gets no offloads).
pub fn guest_udp_frame() -> Vec<u8> {
    let mut f = vec![0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&PEER_MAC);
    f[6..12].copy_from_slice(&GUEST_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((FRAME_LEN - 14) as u16).to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&POD_IP);
    ip[16..20].copy_from_slice(&PEER_IP);
    let c = !csum_fold(csum_add(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&GUEST_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&SINK_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&((FRAME_LEN - 34) as u16).to_be_bytes());
    // UDP checksum 0: none (allowed for IPv4).
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7);
    }
    f
}

/// The peer's socket at `port` on 10.99.0.2, with a short receive timeout
/// so its loop sees the stop flag.
pub fn peer_socket(port: u16) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind((std::net::Ipv4Addr::from(PEER_IP), port))
        .map_err(|e| format!("bind peer socket: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| format!("peer socket timeout: {e}"))?;
    crate::sys::set_sockopt_int(
        std::os::fd::AsRawFd::as_raw_fd(&s),
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        8 << 20,
    )
    .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    Ok(s)
}

/// The virtio-net device over passt's stream, activated with one queue
/// pair (and the control queue), as a guest driver would.
pub struct Device {
    pub net: Net,
    pub irq: Arc<BenchInterrupt>,
    pub rx: RxDriver,
    pub tx: TxDriver,
    /// The rx and tx kick eventfds.
    pub kicks: [EventFd; 2],
}

fn efd() -> Result<EventFd, String> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))
}

pub fn device(stream: PasstStream, opts: &Opts) -> Result<Device, String> {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), PAIR_MEM as usize)])
        .map_err(|e| format!("guest memory: {e}"))?;
    let backends: Vec<Box<dyn FrameBackend>> = vec![Box::new(stream)];
    let mut net = Net::new("pbench".into(), GUEST_MAC, 1500, backends, vec![])
        .map_err(|e| format!("Net::new: {e}"))?;
    net.ack_features(driver_features(1) & net.features());
    let irq = Arc::new(BenchInterrupt::new(3).map_err(|e| format!("eventfd: {e}"))?);
    let rx = RxDriver::new(&mem, 0, opts.rx_buf);
    let mut frame = vec![0u8; VNET_HDR_LEN];
    frame.extend_from_slice(&guest_udp_frame());
    let tx = TxDriver::with_frame(&mem, 0, &frame);
    let ctrl = DriverRing::new(&mem, CTRL_RING_OFF, CTRL_RING);
    let kicks = [efd()?, efd()?, efd()?];
    let queues = [
        rx.ring.queue(false),
        tx.ring.queue(false),
        ctrl.queue(false),
    ];
    let mut configs = Vec::new();
    for (i, (queue, kick)) in queues.into_iter().zip(&kicks).enumerate() {
        configs.push(QueueConfig {
            index: i as u16,
            queue,
            kick: kick.try_clone().map_err(|e| format!("eventfd: {e}"))?,
        });
    }
    let dyn_irq: Arc<dyn VirtioInterrupt> = irq.clone();
    net.activate(mem, dyn_irq, configs)
        .map_err(|e| format!("activate: {e}"))?;
    let [rx_kick, tx_kick, _ctrl] = kicks;
    Ok(Device {
        net,
        irq,
        rx,
        tx,
        kicks: [rx_kick, tx_kick],
    })
}
