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
//! Needs root (CAP_NET_ADMIN): the process first moves into a new network
//! namespace (`unshare(CLONE_NEWNET)`), so its taps live and die with it
//! and the host's interfaces are never touched. Timings are printed, never
//! asserted.

use std::fmt::Write as _;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use devices::e1000::{regs as e1k, E1000Counters, E1000};
use devices::pci::{IntxLine, PciDevice};
use devices::virtio::net::{Net, NetMetrics, QueuePair, QUEUE_SIZE, VNET_HDR_LEN};
use devices::virtio::test_driver::DriverRing;
use devices::virtio::{
    QueueConfig, VirtioDevice, VirtioInterrupt, VirtioInterruptType, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};
use net_backend::{FrameBackend, Offloads, Tap};
use virtio_bindings::virtio_net::{
    VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_VQ,
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_MQ,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_OK,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

// ------------------------------------------------------------ constants

/// The device's tap.
const TAP: &str = "pbench0";
/// A throw-away 2-queue tap used to find flows for each tap queue.
const PROBE_TAP: &str = "pbprobe0";

/// Source MAC of the frames the "guest" sends; destination of injected ones.
const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xbe, 0x0c, 0x01];
/// A dummy unicast MAC nobody owns: the kernel drops TX frames as
/// PACKET_OTHERHOST right at ip_rcv.
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xbe, 0x0c, 0x02];
const GUEST_IP: [u8; 4] = [10, 99, 0, 1];
const PEER_IP: [u8; 4] = [10, 99, 0, 2];
const DST_PORT: u16 = 5201;

/// virtio_net_hdr flags / gso types (virtio 1.x, 5.1.6).
const HDR_F_NEEDS_CSUM: u8 = 1;
const HDR_GSO_TCPV4: u8 = 1;
/// MSS of the TSO frames (a 1500-byte MTU minus IPv4 and TCP headers,
/// minus the 12 bytes of TCP timestamps Linux would use).
const TSO_MSS: u16 = 1448;
/// Ethernet + IPv4 + TCP header bytes.
const L4_HDRS: usize = 14 + 20 + 20;

/// Guest memory per queue pair and the layout inside it.
const PAIR_MEM: u64 = 16 << 20;
const RX_RING_OFF: u64 = 0;
const TX_RING_OFF: u64 = 0x4000;
const CTRL_RING_OFF: u64 = 0x8000;
const CTRL_BUF_OFF: u64 = 0xc000;
const RX_BUF_OFF: u64 = 0x10_0000;
const TX_BUF_OFF: u64 = 0x50_0000;
/// Size of the rx and tx rings (the device's maximum).
const RING: u16 = QUEUE_SIZE;
const CTRL_RING: u16 = 16;
/// Frames per sendmmsg / raw write burst.
const BATCH: usize = 32;
/// No frame received for this long while frames are in flight: they are
/// considered lost (counted as a stall) and the window reopens.
const STALL: Duration = Duration::from_millis(50);

// ------------------------------------------------------------ frames

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Size {
    label: &'static str,
    /// Ethernet frame length (no FCS, no virtio-net header).
    frame_len: usize,
    /// A TCPv4 GSO frame (tso4 offload).
    gso: bool,
}

const SIZES: [Size; 3] = [
    Size {
        label: "64 B",
        frame_len: 64,
        gso: false,
    },
    Size {
        label: "1514 B",
        frame_len: 1514,
        gso: false,
    },
    // 45 full segments: what Linux's TCP builds under the 64 KiB GSO
    // limit. A 65536-byte skb would reach `gso_max_size` (65536) on the
    // injection path and be segmented in software.
    Size {
        label: "64 KiB TSO",
        frame_len: L4_HDRS + 45 * TSO_MSS as usize,
        gso: true,
    },
];

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A TCP/IPv4 Ethernet frame of `size.frame_len` bytes from `src` to
/// `dst`. GSO frames carry the pseudo-header checksum in the TCP checksum
/// field (CHECKSUM_PARTIAL), the others a complete checksum.
fn build_frame(size: Size, src_mac: [u8; 6], dst_mac: [u8; 6], sport: u16) -> Vec<u8> {
    let len = size.frame_len;
    assert!(len >= L4_HDRS && len - 14 <= 65535, "frame length {len}");
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let (sip, dip) = if src_mac == GUEST_MAC {
        (GUEST_IP, PEER_IP)
    } else {
        (PEER_IP, GUEST_IP)
    };
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64;
    ip[9] = 6; // TCP
    ip[12..16].copy_from_slice(&sip);
    ip[16..20].copy_from_slice(&dip);
    let c = !csum_fold(csum_add(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    for (i, b) in f[L4_HDRS..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    let tcp_len = len - 34;
    let tcp = &mut f[34..];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&DST_PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH | ACK
    tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let mut pseudo = csum_add(0, &sip);
    pseudo = csum_add(pseudo, &dip);
    pseudo += 6 + tcp_len as u32;
    let c = if size.gso {
        csum_fold(pseudo)
    } else {
        !csum_fold(csum_add(pseudo, tcp))
    };
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f
}

/// The 12-byte virtio_net_hdr_v1 for a frame of `size` (num_buffers 0).
fn vnet_hdr(size: Size) -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    if size.gso {
        h[0] = HDR_F_NEEDS_CSUM;
        h[1] = HDR_GSO_TCPV4;
        h[2..4].copy_from_slice(&(L4_HDRS as u16).to_le_bytes());
        h[4..6].copy_from_slice(&TSO_MSS.to_le_bytes());
        h[6..8].copy_from_slice(&34u16.to_le_bytes()); // csum_start
        h[8..10].copy_from_slice(&16u16.to_le_bytes()); // csum_offset
    }
    h
}

/// Header + frame, as the driver posts it and the raw writer writes it.
fn tx_frame(size: Size, sport: u16) -> Vec<u8> {
    let mut v = vnet_hdr(size).to_vec();
    v.extend_from_slice(&build_frame(size, GUEST_MAC, PEER_MAC, sport));
    v
}

/// TCP source port of a frame read from the tap (header included).
fn sport_of(buf: &[u8]) -> Option<u16> {
    let at = VNET_HDR_LEN + 34;
    buf.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

// ------------------------------------------------------------ small syscalls

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn ifindex(name: &str) -> io::Result<libc::c_int> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: if_nametoindex reads the NUL-terminated string, which lives
    // until the end of this statement.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    libc::c_int::try_from(idx).map_err(io::Error::other)
}

fn set_sockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    let ptr: *const libc::c_void = (&v as *const libc::c_int).cast();
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: setsockopt reads `len` bytes from `ptr`, a live local int.
    cvt(unsafe { libc::setsockopt(fd, level, opt, ptr, len) }).map(drop)
}

/// Waits until `fd` is readable or `timeout_ms` passed.
fn wait_readable(fd: RawFd, timeout_ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes exactly one pollfd, a live local.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
}

/// User + system CPU seconds of the whole process (all threads, the
/// device's workers included).
fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain integers; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the live local `ru`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Counters of interface `name` from /proc/self/net/dev (this process's
/// network namespace): (rx_packets, rx_dropped, tx_packets, tx_dropped).
fn if_counters(name: &str) -> Option<[u64; 4]> {
    let text = std::fs::read_to_string("/proc/self/net/dev").ok()?;
    for line in text.lines() {
        let Some((ifname, rest)) = line.split_once(':') else {
            continue;
        };
        if ifname.trim() != name {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() >= 12 {
            return Some([v[1], v[3], v[9], v[11]]);
        }
    }
    None
}

fn enter_private_netns() -> io::Result<()> {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(io::Error::other(
            "netbench needs root (CAP_NET_ADMIN) to create a network namespace and taps",
        ));
    }
    // SAFETY: unshare takes an integer flag set and touches no memory of
    // ours; it runs before any thread is spawned, so every later thread
    // (and the device's workers) inherits the new namespace.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    // No IPv6 autoconfiguration (DAD, router solicitations, MLD): those
    // frames would show up on the tap next to the benchmark's.
    for p in [
        "/proc/sys/net/ipv6/conf/all/disable_ipv6",
        "/proc/sys/net/ipv6/conf/default/disable_ipv6",
    ] {
        let _ = std::fs::write(p, "1");
    }
    Ok(())
}

// ------------------------------------------------------------ injector

/// Sends frames into an interface from the kernel side: an `AF_PACKET`
/// raw socket with `PACKET_VNET_HDR` (so 64 KiB TCPv4 GSO frames can be
/// sent) and `PACKET_QDISC_BYPASS`, batched with sendmmsg(2). Not `Send`
/// (raw pointers into its own buffers): build it on the thread using it.
struct Injector {
    fd: OwnedFd,
    /// One frame per flow, each prefixed with a 10-byte virtio_net_hdr.
    frames: Vec<Vec<u8>>,
    next: usize,
    addr: Box<libc::sockaddr_ll>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Injector {
    fn new(ifindex: libc::c_int, size: Size, sports: &[u16]) -> io::Result<Self> {
        // SAFETY: socket takes only integer arguments.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `raw` was just returned by socket and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // 15 = PACKET_VNET_HDR, 20 = PACKET_QDISC_BYPASS (linux/if_packet.h).
        set_sockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, 15, 1)?;
        set_sockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, 20, 1)?;
        // SAFETY: sockaddr_ll is plain integers; all zeroes is valid.
        let mut addr: Box<libc::sockaddr_ll> = Box::new(unsafe { std::mem::zeroed() });
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&GUEST_MAC);
        // Bound with protocol 0: the socket receives nothing, and taps on
        // the interface see no copies of its frames.
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let ptr: *const libc::sockaddr = (&*addr as *const libc::sockaddr_ll).cast();
        // SAFETY: bind reads `len` bytes from `ptr`, the boxed sockaddr_ll.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), ptr, len) })?;
        addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();

        let frames = sports
            .iter()
            .map(|&p| {
                let mut v = vnet_hdr(size)[..10].to_vec();
                v.extend_from_slice(&build_frame(size, PEER_MAC, GUEST_MAC, p));
                v
            })
            .collect();
        let iov = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            BATCH
        ];
        // SAFETY: mmsghdr is plain integers and pointers; zero is valid.
        let msgs = vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; BATCH];
        Ok(Self {
            fd,
            frames,
            next: 0,
            addr,
            iov,
            msgs,
        })
    }

    /// Sends up to `n` (at most [`BATCH`]) frames, cycling through the
    /// flows; returns how many the kernel took (0 when it would block).
    fn send(&mut self, n: usize) -> io::Result<usize> {
        let n = n.min(BATCH);
        if n == 0 {
            return Ok(0);
        }
        let addr: *mut libc::c_void = (&mut *self.addr as *mut libc::sockaddr_ll).cast();
        for i in 0..n {
            let f = &self.frames[(self.next + i) % self.frames.len()];
            self.iov[i] = libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = addr;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: the first `n` mmsghdrs point to live iovecs, frames and
        // the boxed address, all owned by `self` and not moved during the
        // call; the kernel only reads them (and writes msg_len).
        let ret = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if ret < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let sent = ret as usize;
        self.next = (self.next + sent) % self.frames.len();
        Ok(sent)
    }
}

/// Finds `per_queue` TCP source ports whose frames the tap's automatic
/// queue selection puts on queue 0 and on queue 1 of a 2-queue tap. The
/// selection is a hash of the flow with a per-boot key, so ports are found
/// by trying them.
fn probe_flows(per_queue: usize) -> io::Result<[Vec<u16>; 2]> {
    let mut taps = Tap::open_named(PROBE_TAP, 2).map_err(io::Error::other)?;
    taps[0].set_up().map_err(io::Error::other)?;
    let size = SIZES[0];
    let idx = ifindex(PROBE_TAP)?;
    let mut found: [Vec<u16>; 2] = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 256];
    for port in 20000u16..22000 {
        if found.iter().all(|f| f.len() >= per_queue) {
            break;
        }
        let mut inj = Injector::new(idx, size, &[port])?;
        if inj.send(1)? != 1 {
            continue;
        }
        let deadline = Instant::now() + Duration::from_millis(20);
        'wait: while Instant::now() < deadline {
            for (q, tap) in taps.iter_mut().enumerate() {
                while let Ok(n) = tap.read_frame(&mut buf) {
                    if sport_of(&buf[..n]) == Some(port) {
                        if found[q].len() < per_queue {
                            found[q].push(port);
                        }
                        break 'wait;
                    }
                }
            }
            thread::yield_now();
        }
    }
    Ok(found)
}

// ------------------------------------------------------------ driver rings

/// TX side of the driver: RING/2 slots, each a 2-descriptor chain (12-byte
/// header, then the frame) over its own copy of the frame.
struct TxDriver {
    ring: DriverRing,
    slots: usize,
    free: Vec<u16>,
    frame_len: u64,
    frames: u64,
}

impl TxDriver {
    fn new(mem: &GuestMemoryMmap, base: u64, size: Size, sport: u16) -> Self {
        let ring = DriverRing::new(mem, base + TX_RING_OFF, RING);
        let frame = tx_frame(size, sport);
        let stride = (frame.len() as u64).next_multiple_of(4096);
        let slots = usize::from(RING / 2);
        assert!(TX_BUF_OFF + slots as u64 * stride <= PAIR_MEM);
        for s in 0..slots as u16 {
            let addr = base + TX_BUF_OFF + u64::from(s) * stride;
            mem.write_slice(&frame, GuestAddress(addr)).unwrap();
            let (d0, d1) = (2 * s, 2 * s + 1);
            ring.set_desc(d0, addr, VNET_HDR_LEN as u32, VRING_DESC_F_NEXT as u16, d1);
            ring.set_desc(d1, addr + VNET_HDR_LEN as u64, size.frame_len as u32, 0, 0);
        }
        Self {
            ring,
            slots,
            free: (0..slots as u16).rev().collect(),
            frame_len: size.frame_len as u64,
            frames: 0,
        }
    }

    /// Posts every free slot; returns how many (0: nothing published).
    fn fill(&mut self) -> usize {
        let n = self.free.len();
        while let Some(s) = self.free.pop() {
            self.ring.push(2 * s);
        }
        if n > 0 {
            self.ring.publish();
        }
        n
    }

    /// Collects used chains; returns how many.
    fn reap(&mut self) -> usize {
        let used = self.ring.used_idx();
        let mut n = 0;
        while self.ring.last_used != used {
            let (id, _) = self.ring.used_elem(self.ring.last_used);
            self.free.push((id / 2) as u16);
            self.ring.last_used = self.ring.last_used.wrapping_add(1);
            n += 1;
        }
        self.frames += n as u64;
        n
    }

    fn in_flight(&self) -> usize {
        self.slots - self.free.len()
    }
}

/// RX side of the driver: RING single-descriptor writable buffers of
/// `buf_len` bytes (MRG_RXBUF: a frame may span several), reposted as soon
/// as they are used. Frames are counted from num_buffers in the header.
struct RxDriver {
    ring: DriverRing,
    buf_base: u64,
    buf_len: u32,
    /// Buffers still to come for the current frame.
    remaining: u16,
    acc: u64,
    frames: u64,
    bytes: u64,
}

impl RxDriver {
    fn new(mem: &GuestMemoryMmap, base: u64, buf_len: u32) -> Self {
        let mut ring = DriverRing::new(mem, base + RX_RING_OFF, RING);
        let buf_base = base + RX_BUF_OFF;
        assert!(RX_BUF_OFF + u64::from(RING) * u64::from(buf_len) <= TX_BUF_OFF);
        for i in 0..RING {
            let addr = buf_base + u64::from(i) * u64::from(buf_len);
            ring.set_desc(i, addr, buf_len, VRING_DESC_F_WRITE as u16, 0);
            ring.push(i);
        }
        ring.publish();
        Self {
            ring,
            buf_base,
            buf_len,
            remaining: 0,
            acc: 0,
            frames: 0,
            bytes: 0,
        }
    }

    /// Consumes used buffers, reposts them; returns (buffers, avail index
    /// before reposting).
    fn reap(&mut self) -> (usize, u16) {
        let old = self.ring.avail_idx();
        let used = self.ring.used_idx();
        let mut n = 0;
        while self.ring.last_used != used {
            let (id, len) = self.ring.used_elem(self.ring.last_used);
            if self.remaining == 0 {
                let at = self.buf_base + u64::from(id) * u64::from(self.buf_len) + 10;
                let nb: u16 = self.ring.mem().read_obj(GuestAddress(at)).unwrap();
                self.remaining = u16::from_le(nb).max(1);
                self.acc = u64::from(len).saturating_sub(VNET_HDR_LEN as u64);
            } else {
                self.acc += u64::from(len);
            }
            self.remaining -= 1;
            if self.remaining == 0 {
                self.frames += 1;
                self.bytes += self.acc;
            }
            self.ring.push(id as u16);
            self.ring.last_used = self.ring.last_used.wrapping_add(1);
            n += 1;
        }
        if n > 0 {
            self.ring.publish();
        }
        (n, old)
    }
}

// ------------------------------------------------------------ interrupts

/// A `VirtioInterrupt` standing in for MSI-X irqfds: counts every trigger
/// and writes an eventfd per queue the driver thread sleeps on.
struct BenchInterrupt {
    fds: Vec<EventFd>,
    counts: Vec<AtomicU64>,
}

impl BenchInterrupt {
    fn new(queues: usize) -> io::Result<Self> {
        let mut fds = Vec::with_capacity(queues);
        for _ in 0..queues {
            fds.push(EventFd::new(EFD_NONBLOCK)?);
        }
        Ok(Self {
            fds,
            counts: (0..queues).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl VirtioInterrupt for BenchInterrupt {
    fn trigger(&self, int_type: VirtioInterruptType) -> io::Result<()> {
        if let VirtioInterruptType::Queue(q) = int_type {
            let q = usize::from(q);
            if let Some(c) = self.counts.get(q) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(fd) = self.fds.get(q) {
                fd.write(1)?;
            }
        }
        Ok(())
    }

    fn notifier(&self, _: VirtioInterruptType) -> Option<&EventFd> {
        None
    }
}

// ------------------------------------------------------------ per-thread loops

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Tx,
    Rx,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Tx => "TX",
            Dir::Rx => "RX",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Raw,
    Direct,
    Worker,
    E1000,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Direct => "direct",
            Mode::Worker => "worker",
            Mode::E1000 => "e1000",
        }
    }
}

/// Live counters of one benchmark thread (totals, stored by the owner).
#[derive(Default)]
struct Stats {
    frames: AtomicU64,
    bytes: AtomicU64,
    kicks: AtomicU64,
    waits: AtomicU64,
    stalls: AtomicU64,
    /// e1000: device drops and errors over the whole run (set at the end).
    dev_drops: AtomicU64,
}

impl Stats {
    fn set(&self, frames: u64, bytes: u64) {
        self.frames.store(frames, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }
}

struct Ctl {
    start: Barrier,
    stop: AtomicBool,
}

impl Ctl {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Closed-loop injection bookkeeping shared by the RX loops.
struct Window {
    size: usize,
    injected: u64,
    /// Frames given up on after a stall.
    forgotten: u64,
    last_progress: Instant,
    last_received: u64,
}

impl Window {
    fn new(size: usize) -> Self {
        Self {
            size,
            injected: 0,
            forgotten: 0,
            last_progress: Instant::now(),
            last_received: 0,
        }
    }

    fn room(&self, received: u64) -> usize {
        let in_flight = (self.injected - self.forgotten).saturating_sub(received);
        self.size.saturating_sub(in_flight as usize)
    }

    /// Notes progress; after [`STALL`] without any while frames are in
    /// flight they are written off. Returns true on a stall.
    fn check(&mut self, received: u64) -> bool {
        let now = Instant::now();
        if received != self.last_received {
            self.last_received = received;
            self.last_progress = now;
            return false;
        }
        let in_flight = (self.injected - self.forgotten).saturating_sub(received);
        if in_flight > 0 && now.duration_since(self.last_progress) > STALL {
            self.forgotten = self.injected - received.min(self.injected);
            self.last_progress = now;
            return true;
        }
        false
    }
}

fn raw_tx(mut tap: Tap, frame: Vec<u8>, frame_len: u64, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    ctl.start.wait();
    let mut frames = 0u64;
    while !ctl.stopped() {
        for _ in 0..BATCH {
            match tap.write_frame(&[IoSlice::new(&frame)]) {
                Ok(_) => frames += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("raw tap write: {e}"),
            }
        }
        stats.set(frames, frames * frame_len);
    }
}

fn direct_tx(mut qp: QueuePair, mut drv: TxDriver, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    ctl.start.wait();
    while !ctl.stopped() {
        drv.reap();
        drv.fill();
        qp.process_tx().expect("process_tx");
        stats.set(drv.frames, drv.frames * drv.frame_len);
    }
}

fn worker_tx(mut drv: TxDriver, kick: EventFd, irq: EventFd, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    ctl.start.wait();
    let (mut kicks, mut waits) = (0u64, 0u64);
    // Like a guest's TX completion: refill in batches of a quarter ring,
    // sleep on the interrupt in between.
    let batch = (drv.slots / 4).max(1);
    while !ctl.stopped() {
        drv.reap();
        if drv.free.len() >= batch || drv.in_flight() == 0 {
            let old = drv.ring.avail_idx();
            if drv.fill() > 0 && drv.ring.kick_needed(old) {
                kick.write(1).expect("kick");
                kicks += 1;
            }
        } else {
            let want = (batch - drv.free.len()) as u16;
            drv.ring
                .set_used_event(drv.ring.last_used.wrapping_add(want - 1));
            fence(Ordering::SeqCst);
            if drv.ring.used_idx() == drv.ring.last_used {
                wait_readable(irq.as_raw_fd(), 5);
                let _ = irq.read();
                waits += 1;
            }
        }
        stats.set(drv.frames, drv.frames * drv.frame_len);
        stats.kicks.store(kicks, Ordering::Relaxed);
        stats.waits.store(waits, Ordering::Relaxed);
    }
}

struct RxSetup {
    ifindex: libc::c_int,
    size: Size,
    sports: Vec<u16>,
    window: usize,
}

fn raw_rx(mut tap: Tap, rx: RxSetup, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    let mut buf = vec![0u8; devices::virtio::net::MAX_BUFFER_LEN];
    let mut win = Window::new(rx.window);
    let (mut frames, mut bytes, mut stalls) = (0u64, 0u64, 0u64);
    ctl.start.wait();
    while !ctl.stopped() {
        win.injected += inj.send(win.room(frames)).expect("inject") as u64;
        loop {
            match tap.read_frame(&mut buf) {
                Ok(n) => {
                    frames += 1;
                    bytes += n.saturating_sub(VNET_HDR_LEN) as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("raw tap read: {e}"),
            }
        }
        stalls += u64::from(win.check(frames));
        stats.set(frames, bytes);
        stats.stalls.store(stalls, Ordering::Relaxed);
    }
}

fn direct_rx(mut qp: QueuePair, mut drv: RxDriver, rx: RxSetup, stats: Arc<Stats>, ctl: Arc<Ctl>) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    let mut win = Window::new(rx.window);
    let mut stalls = 0u64;
    ctl.start.wait();
    while !ctl.stopped() {
        win.injected += inj.send(win.room(drv.frames)).expect("inject") as u64;
        qp.process_rx().expect("process_rx");
        drv.reap();
        stalls += u64::from(win.check(drv.frames));
        stats.set(drv.frames, drv.bytes);
        stats.stalls.store(stalls, Ordering::Relaxed);
    }
}

fn worker_rx(
    mut drv: RxDriver,
    kick: EventFd,
    irq: EventFd,
    rx: RxSetup,
    stats: Arc<Stats>,
    ctl: Arc<Ctl>,
) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    let mut win = Window::new(rx.window);
    let (mut kicks, mut waits, mut stalls) = (0u64, 0u64, 0u64);
    ctl.start.wait();
    while !ctl.stopped() {
        let sent = inj.send(win.room(drv.frames)).expect("inject");
        win.injected += sent as u64;
        let (reaped, old) = drv.reap();
        if reaped > 0 && drv.ring.kick_needed(old) {
            kick.write(1).expect("kick");
            kicks += 1;
        }
        if sent == 0 && reaped == 0 {
            // Nothing to send and nothing received: sleep until the
            // device interrupts (NAPI would re-enable callbacks here).
            drv.ring.set_used_event(drv.ring.last_used);
            fence(Ordering::SeqCst);
            if drv.ring.used_idx() == drv.ring.last_used {
                wait_readable(irq.as_raw_fd(), 2);
                let _ = irq.read();
                waits += 1;
            }
        }
        stalls += u64::from(win.check(drv.frames));
        stats.set(drv.frames, drv.bytes);
        stats.kicks.store(kicks, Ordering::Relaxed);
        stats.waits.store(waits, Ordering::Relaxed);
        stats.stalls.store(stalls, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------ e1000

/// Descriptors per e1000 ring (Linux's default for both rings).
const E1K_RING: u32 = 256;
/// Guest memory layout of the e1000 case (one `PAIR_MEM` region).
const E1K_TX_RING_OFF: u64 = 0;
const E1K_RX_RING_OFF: u64 = 0x1000;
const E1K_RX_BUF_OFF: u64 = 0x10_0000;
const E1K_TX_BUF_OFF: u64 = 0x50_0000;
/// RCTL.BSIZE 2048 (BSIZE 0, BSEX clear), as Linux uses for a 1500 MTU.
const E1K_RX_BUF: u64 = 2048;
/// Linux's E1000_RX_BUFFER_WRITE: RDT is written every 16 buffers.
const E1K_RDT_EVERY: u32 = 16;
/// Linux's E1000_MAX_DATA_PER_TXD: TSO payload is split in 4 KiB descriptors.
const E1K_MAX_TXD_DATA: usize = 4096;
/// Frames (TSO: packets) posted per TDT write, like virtio's TX refill.
const E1K_TX_BATCH: u32 = 32;
/// Linux's IMS_ENABLE_MASK: RXT0 | TXDW | RXDMT0 | RXSEQ | LSC.
const E1K_IMS: u32 =
    e1k::icr::RXT0 | e1k::icr::TXDW | e1k::icr::RXDMT0 | e1k::icr::RXSEQ | e1k::icr::LSC;
const E1K_BAR0: u64 = 0xc000_0000;
const E1K_BAR1: u64 = 0xc000;

/// Whether the e1000 mode can run a case: one queue, and no GSO receive
/// (the device turns the tap's offloads off, so the kernel would segment
/// an injected 64 KiB frame into 45 before the tap).
fn e1000_supported(dir: Dir, size: Size, pairs: usize) -> bool {
    pairs == 1 && !(dir == Dir::Rx && size.gso)
}

/// TCP segments the kernel sees per benchmark frame in `mode`.
fn kernel_segments(mode: Mode, size: Size) -> u64 {
    if mode == Mode::E1000 && size.gso {
        (size.frame_len - L4_HDRS).div_ceil(usize::from(TSO_MSS)) as u64
    } else {
        1
    }
}

/// A fake INTA# line: counts assertions and writes an eventfd the driver
/// thread sleeps on (what an irqfd would do for a real guest).
struct BenchIntx {
    asserts: AtomicU64,
    fd: EventFd,
}

impl IntxLine for BenchIntx {
    fn set_level(&self, asserted: bool) {
        if asserted {
            self.asserts.fetch_add(1, Ordering::Relaxed);
            let _ = self.fd.write(1);
        }
    }
}

/// The guest driver's register access: BAR0 dword reads and writes,
/// counted (each one is an MMIO exit for a real guest).
struct E1kRegs {
    dev: E1000,
    mmio: u64,
}

impl E1kRegs {
    fn w(&mut self, reg: u64, v: u32) {
        self.dev.bar_write(0, reg, &v.to_le_bytes());
        self.mmio += 1;
    }

    fn r(&mut self, reg: u64) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(0, reg, &mut b);
        self.mmio += 1;
        u32::from_le_bytes(b)
    }

    /// Linux's e1000_intr + NAPI entry: read ICR (clears it), mask all.
    fn isr(&mut self) {
        self.r(e1k::ICR);
        self.w(e1k::IMC, !0);
    }

    /// Linux's NAPI completion: unmask.
    fn irq_enable(&mut self) {
        self.w(e1k::IMS, E1K_IMS);
    }

    /// Device-side drops and errors so far.
    fn drops(&self) -> u64 {
        let c: E1000Counters = self.dev.counters();
        c.tx_dropped
            + c.tx_ring_errors
            + c.rx_filtered
            + c.rx_dropped
            + c.rx_ring_errors
            + c.backend_errors
    }
}

/// The e1000 frame a Linux guest hands the device: for TSO, IP total
/// length and checksum zeroed and the TCP checksum field holding the
/// pseudo-header sum without length (e1000_tso); otherwise complete.
fn e1k_frame(size: Size, sport: u16) -> Vec<u8> {
    let mut f = build_frame(size, GUEST_MAC, PEER_MAC, sport);
    if size.gso {
        f[16..18].fill(0);
        f[24..26].fill(0);
        let mut pseudo = csum_add(0, &GUEST_IP);
        pseudo = csum_add(pseudo, &PEER_IP);
        pseudo += 6;
        f[50..52].copy_from_slice(&csum_fold(pseudo).to_be_bytes());
    }
    f
}

fn e1k_desc(addr: u64, lower: u32, upper: u32) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[12..16].copy_from_slice(&upper.to_le_bytes());
    d
}

/// TX side of the e1000 driver. Non-TSO frames take one legacy descriptor
/// (EOP | IFCS | RS; the frame carries complete checksums). TSO packets
/// take a context descriptor (TSE, IPv4, TCP, MSS 1448) and data
/// descriptors of at most 4 KiB (IXSM | TXSM; EOP | RS on the last).
struct E1kTx {
    mem: GuestMemoryMmap,
    ring: u64,
    tail: u32,
    /// Ring index of the RS descriptor of every packet posted, oldest first.
    in_flight: std::collections::VecDeque<u32>,
    /// Descriptors posted and not yet cleaned.
    used: u32,
    bufs: Vec<u64>,
    next_buf: usize,
    size: Size,
    frames: u64,
}

impl E1kTx {
    fn new(mem: &GuestMemoryMmap, base: u64, size: Size, sport: u16) -> Self {
        let frame = e1k_frame(size, sport);
        let stride = (frame.len() as u64).next_multiple_of(4096);
        let n = ((PAIR_MEM - E1K_TX_BUF_OFF) / stride).min(u64::from(E1K_RING / 2));
        let bufs: Vec<u64> = (0..n).map(|i| base + E1K_TX_BUF_OFF + i * stride).collect();
        for &b in &bufs {
            mem.write_slice(&frame, GuestAddress(b)).unwrap();
        }
        let ring = base + E1K_TX_RING_OFF;
        mem.write_slice(&vec![0u8; 16 * E1K_RING as usize], GuestAddress(ring))
            .unwrap();
        Self {
            mem: mem.clone(),
            ring,
            tail: 0,
            in_flight: std::collections::VecDeque::new(),
            used: 0,
            bufs,
            next_buf: 0,
            size,
            frames: 0,
        }
    }

    fn descs_per_packet(&self) -> u32 {
        if self.size.gso {
            1 + self.size.frame_len.div_ceil(E1K_MAX_TXD_DATA) as u32
        } else {
            1
        }
    }

    fn put(&mut self, d: [u8; 16]) {
        let at = self.ring + 16 * u64::from(self.tail);
        self.mem.write_slice(&d, GuestAddress(at)).unwrap();
        self.tail = (self.tail + 1) % E1K_RING;
        self.used += 1;
    }

    /// Writes descriptors for up to `E1K_TX_BATCH` packets (as many as
    /// fit, one slot always empty); returns how many.
    fn post(&mut self) -> u32 {
        use e1k::txd;
        let per = self.descs_per_packet();
        let room = (E1K_RING - 1 - self.used) / per;
        let n = room.min(E1K_TX_BATCH);
        let cmd = |c: u8| u32::from(c) << 24;
        for _ in 0..n {
            let buf = self.bufs[self.next_buf];
            self.next_buf = (self.next_buf + 1) % self.bufs.len();
            let len = self.size.frame_len;
            if !self.size.gso {
                let c = txd::CMD_EOP | txd::CMD_IFCS | txd::CMD_RS;
                self.in_flight.push_back(self.tail);
                self.put(e1k_desc(buf, len as u32 | cmd(c), 0));
                continue;
            }
            // Context: IPCSS 14, IPCSO 24, IPCSE 33, TUCSS 34, TUCSO 50,
            // TUCSE 0 (to the end), PAYLEN, TUCMD, HDRLEN 54, MSS.
            let mut ctx = [0u8; 16];
            ctx[0] = 14;
            ctx[1] = 24;
            ctx[2..4].copy_from_slice(&33u16.to_le_bytes());
            ctx[4] = 34;
            ctx[5] = 50;
            let tucmd = txd::CMD_DEXT | txd::CMD_TSE | txd::TUCMD_IP | txd::TUCMD_TCP;
            let lower = (len - L4_HDRS) as u32 | cmd(tucmd);
            ctx[8..12].copy_from_slice(&lower.to_le_bytes());
            ctx[13] = L4_HDRS as u8;
            ctx[14..16].copy_from_slice(&TSO_MSS.to_le_bytes());
            self.put(ctx);
            let popts = u32::from(txd::POPTS_IXSM | txd::POPTS_TXSM) << 8;
            let mut off = 0;
            while off < len {
                let chunk = (len - off).min(E1K_MAX_TXD_DATA);
                let last = off + chunk == len;
                let mut c = txd::CMD_DEXT | txd::CMD_TSE | txd::CMD_IFCS;
                if last {
                    c |= txd::CMD_EOP | txd::CMD_RS;
                    self.in_flight.push_back(self.tail);
                }
                let lower = chunk as u32 | txd::DTYP_DATA | cmd(c);
                self.put(e1k_desc(buf + off as u64, lower, popts));
                off += chunk;
            }
        }
        n
    }

    /// Cleans packets whose RS descriptor has DD (e1000_clean_tx_irq).
    fn reap(&mut self) -> u32 {
        let per = self.descs_per_packet();
        let mut n = 0;
        while let Some(&i) = self.in_flight.front() {
            let at = GuestAddress(self.ring + 16 * u64::from(i) + 12);
            let sta: u8 = self.mem.load(at, Ordering::Acquire).unwrap();
            if sta & e1k::txd::STA_DD == 0 {
                break;
            }
            self.mem.store(0u8, at, Ordering::Relaxed).unwrap();
            self.in_flight.pop_front();
            self.used -= per;
            n += 1;
        }
        self.frames += u64::from(n);
        n
    }
}

/// RX side of the e1000 driver: `E1K_RING` descriptors over 2 KiB buffers;
/// cleaned descriptors get their status cleared and are handed back by
/// writing RDT every `E1K_RDT_EVERY` buffers (and before going idle).
struct E1kRx {
    mem: GuestMemoryMmap,
    ring: u64,
    next_to_clean: u32,
    to_refill: u32,
    /// Bytes of the frame being assembled (frames may span buffers).
    acc: u64,
    frames: u64,
    bytes: u64,
}

impl E1kRx {
    fn new(mem: &GuestMemoryMmap, base: u64) -> Self {
        let ring = base + E1K_RX_RING_OFF;
        assert!(E1K_RX_BUF_OFF + u64::from(E1K_RING) * E1K_RX_BUF <= E1K_TX_BUF_OFF);
        for i in 0..u64::from(E1K_RING) {
            let buf = base + E1K_RX_BUF_OFF + i * E1K_RX_BUF;
            mem.write_slice(&e1k_desc(buf, 0, 0), GuestAddress(ring + 16 * i))
                .unwrap();
        }
        Self {
            mem: mem.clone(),
            ring,
            next_to_clean: 0,
            to_refill: 0,
            acc: 0,
            frames: 0,
            bytes: 0,
        }
    }

    /// Cleans descriptors with DD; returns how many.
    fn reap(&mut self) -> u32 {
        let mut n = 0;
        loop {
            let wb = self.ring + 16 * u64::from(self.next_to_clean) + 8;
            let sta: u8 = self
                .mem
                .load(GuestAddress(wb + 4), Ordering::Acquire)
                .unwrap();
            if sta & e1k::rxd::STA_DD == 0 {
                break;
            }
            let len: u16 = self.mem.read_obj(GuestAddress(wb)).unwrap();
            self.acc += u64::from(u16::from_le(len));
            if sta & e1k::rxd::STA_EOP != 0 {
                // Linux strips the FCS (RCTL.SECRC is left clear).
                self.bytes += self.acc.saturating_sub(4);
                self.frames += 1;
                self.acc = 0;
            }
            self.mem.write_slice(&[0u8; 8], GuestAddress(wb)).unwrap();
            self.next_to_clean = (self.next_to_clean + 1) % E1K_RING;
            self.to_refill += 1;
            n += 1;
        }
        n
    }

    /// Hands cleaned descriptors back (RDT one behind next_to_clean).
    fn refill(&mut self, regs: &mut E1kRegs) {
        if self.to_refill > 0 {
            regs.w(e1k::RDT, (self.next_to_clean + E1K_RING - 1) % E1K_RING);
            self.to_refill = 0;
        }
    }
}

/// Brings the device up as Linux's e1000 driver would (rings, TCTL,
/// RCTL with BAM and 2 KiB buffers, IMS).
fn e1k_setup(regs: &mut E1kRegs, base: u64) {
    regs.w(e1k::TDBAL, (base + E1K_TX_RING_OFF) as u32);
    regs.w(e1k::TDBAH, ((base + E1K_TX_RING_OFF) >> 32) as u32);
    regs.w(e1k::TDLEN, E1K_RING * 16);
    regs.w(e1k::TDH, 0);
    regs.w(e1k::TDT, 0);
    regs.w(e1k::TCTL, e1k::tctl::EN | e1k::tctl::PSP);
    regs.w(e1k::RDBAL, (base + E1K_RX_RING_OFF) as u32);
    regs.w(e1k::RDBAH, ((base + E1K_RX_RING_OFF) >> 32) as u32);
    regs.w(e1k::RDLEN, E1K_RING * 16);
    regs.w(e1k::RDH, 0);
    regs.w(e1k::RDT, E1K_RING - 1);
    regs.w(e1k::RCTL, e1k::rctl::EN | e1k::rctl::BAM);
    regs.irq_enable();
}

/// e1000 TX: the driver thread is the vCPU. Posting a batch and writing
/// TDT runs the device's transmit inside that write; the TXDW interrupt
/// then runs the "ISR" (ICR read, IMC), the clean and the re-enable (IMS).
fn e1000_tx(
    mut regs: E1kRegs,
    mut drv: E1kTx,
    intx: Arc<BenchIntx>,
    stats: Arc<Stats>,
    ctl: Arc<Ctl>,
) {
    let frame_len = drv.size.frame_len as u64;
    let mut seen = intx.asserts.load(Ordering::Relaxed);
    ctl.start.wait();
    while !ctl.stopped() {
        let posted = drv.post();
        if posted > 0 {
            regs.w(e1k::TDT, drv.tail);
        }
        let now = intx.asserts.load(Ordering::Relaxed);
        if now != seen {
            regs.isr();
            drv.reap();
            regs.irq_enable();
            // The re-enable may assert again for causes set meanwhile.
            seen = intx.asserts.load(Ordering::Relaxed);
        } else if posted == 0 {
            drv.reap();
        }
        stats.set(drv.frames, drv.frames * frame_len);
        stats.kicks.store(regs.mmio, Ordering::Relaxed);
    }
    stats.dev_drops.store(regs.drops(), Ordering::Relaxed);
}

/// e1000 RX: the benchmark thread injects (closed loop) and cleans the
/// ring NAPI-style: poll while there is work, then unmask and sleep on the
/// interrupt; on wake, ICR read and IMC as Linux's ISR does.
fn e1000_rx(
    mut regs: E1kRegs,
    mut drv: E1kRx,
    intx: Arc<BenchIntx>,
    rx: RxSetup,
    stats: Arc<Stats>,
    ctl: Arc<Ctl>,
) {
    let mut inj = Injector::new(rx.ifindex, rx.size, &rx.sports).expect("AF_PACKET injector");
    let mut win = Window::new(rx.window);
    let (mut waits, mut stalls) = (0u64, 0u64);
    // Start in polling mode (interrupts masked).
    regs.isr();
    ctl.start.wait();
    while !ctl.stopped() {
        let sent = inj.send(win.room(drv.frames)).expect("inject");
        win.injected += sent as u64;
        let reaped = drv.reap();
        if drv.to_refill >= E1K_RDT_EVERY {
            drv.refill(&mut regs);
        }
        if sent == 0 && reaped == 0 {
            drv.refill(&mut regs);
            regs.irq_enable();
            wait_readable(intx.fd.as_raw_fd(), 2);
            let _ = intx.fd.read();
            regs.isr();
            waits += 1;
        }
        stalls += u64::from(win.check(drv.frames));
        stats.set(drv.frames, drv.bytes);
        stats.kicks.store(regs.mmio, Ordering::Relaxed);
        stats.waits.store(waits, Ordering::Relaxed);
        stats.stalls.store(stalls, Ordering::Relaxed);
    }
    stats.dev_drops.store(regs.drops(), Ordering::Relaxed);
}

// ------------------------------------------------------------ cases

#[derive(Clone, Debug)]
struct Opts {
    seconds: f64,
    warmup: f64,
    repeat: usize,
    json: Option<PathBuf>,
    sizes: Vec<Size>,
    queues: Vec<usize>,
    dirs: Vec<Dir>,
    modes: Vec<Mode>,
    rx_buf: u32,
    window: usize,
}

#[derive(Clone, Debug, Default)]
struct Measurement {
    secs: f64,
    frames: u64,
    bytes: u64,
    pps: f64,
    gbps: f64,
    cpu_pct: f64,
    per_queue: Vec<u64>,
    /// Frames the kernel counted on the tap (TX: rx_packets, RX: tx_packets).
    kernel_frames: u64,
    /// Drops the kernel counted on the tap (RX: tap ring full).
    kernel_drops: u64,
    kicks: u64,
    irqs: u64,
    waits: u64,
    stalls: u64,
    /// e1000: device drops and errors over the whole run, warm-up included.
    dev_drops: u64,
}

struct Snapshot {
    at: Instant,
    cpu: f64,
    frames: Vec<u64>,
    bytes: Vec<u64>,
    kernel: [u64; 4],
    irqs: u64,
}

fn snapshot(stats: &[Arc<Stats>], irqs: u64) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        cpu: cpu_seconds(),
        frames: stats
            .iter()
            .map(|s| s.frames.load(Ordering::Relaxed))
            .collect(),
        bytes: stats
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed))
            .collect(),
        kernel: if_counters(TAP).unwrap_or_default(),
        irqs,
    }
}

fn driver_features(pairs: usize) -> u64 {
    let bit = |f: u32| 1u64 << f;
    let mut f = VIRTIO_F_VERSION_1
        | VIRTIO_RING_F_EVENT_IDX
        | bit(VIRTIO_NET_F_MRG_RXBUF)
        | bit(VIRTIO_NET_F_CTRL_VQ)
        | bit(VIRTIO_NET_F_CSUM)
        | bit(VIRTIO_NET_F_HOST_TSO4)
        | bit(VIRTIO_NET_F_GUEST_CSUM)
        | bit(VIRTIO_NET_F_GUEST_TSO4);
    if pairs > 1 {
        f |= bit(VIRTIO_NET_F_MQ);
    }
    f
}

/// What the guest would negotiate for the tap (csum + tso4).
const OFFLOADS: Offloads = Offloads {
    csum: true,
    tso4: true,
    tso6: false,
    ecn: false,
};

/// Sends VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET through the control queue.
fn set_vq_pairs(
    mem: &GuestMemoryMmap,
    ring: &mut DriverRing,
    kick: &EventFd,
    pairs: u16,
) -> io::Result<()> {
    let buf = CTRL_BUF_OFF;
    let p = pairs.to_le_bytes();
    let cmd = [
        VIRTIO_NET_CTRL_MQ as u8,
        VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET as u8,
        p[0],
        p[1],
    ];
    mem.write_slice(&cmd, GuestAddress(buf))
        .map_err(io::Error::other)?;
    mem.write_obj(0xffu8, GuestAddress(buf + 0x100))
        .map_err(io::Error::other)?;
    ring.set_desc(0, buf, 4, VRING_DESC_F_NEXT as u16, 1);
    ring.set_desc(1, buf + 0x100, 1, VRING_DESC_F_WRITE as u16, 0);
    ring.push(0);
    ring.publish();
    kick.write(1)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while ring.used_idx() == ring.last_used {
        if Instant::now() > deadline {
            return Err(io::Error::other("no answer to VQ_PAIRS_SET"));
        }
        thread::sleep(Duration::from_millis(1));
    }
    ring.last_used = ring.last_used.wrapping_add(1);
    let ack: u8 = mem
        .read_obj(GuestAddress(buf + 0x100))
        .map_err(io::Error::other)?;
    if ack != VIRTIO_NET_OK as u8 {
        return Err(io::Error::other(format!("VQ_PAIRS_SET answered {ack}")));
    }
    Ok(())
}

/// Runs one case once; `flows[q]` are the RX source ports for tap queue q.
fn run_case(
    dir: Dir,
    size: Size,
    pairs: usize,
    mode: Mode,
    opts: &Opts,
    flows: &[Vec<u16>; 2],
) -> Result<Measurement, String> {
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: &dyn std::fmt::Display| format!("{what}: {e}")
    };
    if mode == Mode::E1000 && !e1000_supported(dir, size, pairs) {
        return Err("not supported by the e1000".into());
    }
    let mut taps = Tap::open_named(TAP, pairs as u16).map_err(|e| err("open tap")(&e))?;
    taps[0].set_up().map_err(|e| err("tap up")(&e))?;
    let idx = ifindex(TAP).map_err(|e| err("if_nametoindex")(&e))?;
    if mode == Mode::Raw || mode == Mode::Direct {
        for t in &mut taps {
            t.set_offloads(OFFLOADS)
                .map_err(|e| err("TUNSETOFFLOAD")(&e))?;
        }
    }
    let ctl = Arc::new(Ctl {
        start: Barrier::new(pairs + 1),
        stop: AtomicBool::new(false),
    });
    let stats: Vec<Arc<Stats>> = (0..pairs).map(|_| Arc::new(Stats::default())).collect();
    let rx_setup = |q: usize| RxSetup {
        ifindex: idx,
        size,
        sports: if pairs == 1 {
            flows.iter().flatten().copied().collect()
        } else {
            flows[q].clone()
        },
        window: opts.window,
    };
    let tx_sport = |q: usize| 30000 + q as u16;
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    let mut net: Option<Net> = None;
    let mut irq: Option<Arc<BenchInterrupt>> = None;
    let mut intx: Option<Arc<BenchIntx>> = None;
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), pairs * PAIR_MEM as usize)])
        .map_err(|e| err("guest memory")(&e))?;

    match mode {
        Mode::Raw => {
            for (q, tap) in taps.into_iter().enumerate() {
                let (s, c) = (Arc::clone(&stats[q]), Arc::clone(&ctl));
                let h = match dir {
                    Dir::Tx => {
                        let frame = tx_frame(size, tx_sport(q));
                        let len = size.frame_len as u64;
                        thread::spawn(move || raw_tx(tap, frame, len, s, c))
                    }
                    Dir::Rx => {
                        let rx = rx_setup(q);
                        thread::spawn(move || raw_rx(tap, rx, s, c))
                    }
                };
                handles.push(h);
            }
        }
        Mode::Direct => {
            let metrics = Arc::new(NetMetrics::new(pairs));
            for (q, tap) in taps.into_iter().enumerate() {
                let base = q as u64 * PAIR_MEM;
                let rxd = RxDriver::new(&mem, base, opts.rx_buf);
                let txd = TxDriver::new(&mem, base, size, tx_sport(q));
                let qp = QueuePair::new(
                    q,
                    mem.clone(),
                    rxd.ring.queue(true),
                    txd.ring.queue(true),
                    Box::new(tap),
                    true,
                    Arc::clone(&metrics),
                );
                let (s, c) = (Arc::clone(&stats[q]), Arc::clone(&ctl));
                let h = match dir {
                    Dir::Tx => thread::spawn(move || direct_tx(qp, txd, s, c)),
                    Dir::Rx => {
                        let rx = rx_setup(q);
                        thread::spawn(move || direct_rx(qp, rxd, rx, s, c))
                    }
                };
                handles.push(h);
            }
        }
        Mode::Worker => {
            let backends: Vec<Box<dyn FrameBackend>> = taps
                .into_iter()
                .map(|t| Box::new(t) as Box<dyn FrameBackend>)
                .collect();
            let mut dev = Net::new("pbench".into(), GUEST_MAC, 1500, backends, vec![])
                .map_err(|e| err("Net::new")(&e))?;
            dev.ack_features(driver_features(pairs) & dev.features());
            let nq = 2 * pairs + 1;
            let interrupt = Arc::new(BenchInterrupt::new(nq).map_err(|e| err("eventfd")(&e))?);
            let mut configs = Vec::with_capacity(nq);
            let mut kicks = Vec::with_capacity(nq);
            let mut drivers = Vec::with_capacity(pairs);
            for q in 0..pairs {
                let base = q as u64 * PAIR_MEM;
                let rxd = RxDriver::new(&mem, base, opts.rx_buf);
                let txd = TxDriver::new(&mem, base, size, tx_sport(q));
                for (i, queue) in [
                    (2 * q, rxd.ring.queue(false)),
                    (2 * q + 1, txd.ring.queue(false)),
                ] {
                    let kick = EventFd::new(EFD_NONBLOCK).map_err(|e| err("eventfd")(&e))?;
                    configs.push(QueueConfig {
                        index: i as u16,
                        queue,
                        kick: kick.try_clone().map_err(|e| err("eventfd")(&e))?,
                    });
                    kicks.push(kick);
                }
                drivers.push((rxd, txd));
            }
            let mut ctrl = DriverRing::new(&mem, CTRL_RING_OFF, CTRL_RING);
            let ctrl_kick = EventFd::new(EFD_NONBLOCK).map_err(|e| err("eventfd")(&e))?;
            configs.push(QueueConfig {
                index: (2 * pairs) as u16,
                queue: ctrl.queue(false),
                kick: ctrl_kick.try_clone().map_err(|e| err("eventfd")(&e))?,
            });
            let dyn_irq: Arc<dyn VirtioInterrupt> = interrupt.clone();
            dev.activate(mem.clone(), dyn_irq, configs)
                .map_err(|e| err("activate")(&e))?;
            if pairs > 1 {
                set_vq_pairs(&mem, &mut ctrl, &ctrl_kick, pairs as u16)
                    .map_err(|e| err("control queue")(&e))?;
            }
            for (q, (rxd, txd)) in drivers.into_iter().enumerate() {
                let (s, c) = (Arc::clone(&stats[q]), Arc::clone(&ctl));
                let clone = |fd: &EventFd| fd.try_clone().map_err(|e| err("eventfd")(&e));
                let h = match dir {
                    Dir::Tx => {
                        let kick = clone(&kicks[2 * q + 1])?;
                        let irqfd = clone(&interrupt.fds[2 * q + 1])?;
                        thread::spawn(move || worker_tx(txd, kick, irqfd, s, c))
                    }
                    Dir::Rx => {
                        let kick = clone(&kicks[2 * q])?;
                        let irqfd = clone(&interrupt.fds[2 * q])?;
                        let rx = rx_setup(q);
                        thread::spawn(move || worker_rx(rxd, kick, irqfd, rx, s, c))
                    }
                };
                handles.push(h);
            }
            net = Some(dev);
            irq = Some(interrupt);
        }
        Mode::E1000 => {
            let line = Arc::new(BenchIntx {
                asserts: AtomicU64::new(0),
                fd: EventFd::new(EFD_NONBLOCK).map_err(|e| err("eventfd")(&e))?,
            });
            let tap = taps.into_iter().next().ok_or("no tap")?;
            let dyn_line: Arc<dyn IntxLine> = line.clone();
            let mut dev = E1000::new(
                "pbench-e1000".into(),
                GUEST_MAC,
                Box::new(tap),
                mem.clone(),
                dyn_line,
                E1K_BAR0,
                E1K_BAR1,
            )
            .map_err(|e| err("E1000::new")(&e))?;
            dev.activate().map_err(|e| err("E1000::activate")(&e))?;
            let mut regs = E1kRegs { dev, mmio: 0 };
            let rxd = E1kRx::new(&mem, 0);
            let txd = E1kTx::new(&mem, 0, size, tx_sport(0));
            e1k_setup(&mut regs, 0);
            let (s, c, l) = (Arc::clone(&stats[0]), Arc::clone(&ctl), Arc::clone(&line));
            let h = match dir {
                Dir::Tx => thread::spawn(move || e1000_tx(regs, txd, l, s, c)),
                Dir::Rx => {
                    let rx = rx_setup(0);
                    thread::spawn(move || e1000_rx(regs, rxd, l, rx, s, c))
                }
            };
            handles.push(h);
            intx = Some(line);
        }
    }

    ctl.start.wait();
    thread::sleep(Duration::from_secs_f64(opts.warmup));
    let irqs = || {
        irq.as_deref().map_or(0, BenchInterrupt::total)
            + intx
                .as_ref()
                .map_or(0, |l| l.asserts.load(Ordering::Relaxed))
    };
    let s0 = snapshot(&stats, irqs());
    thread::sleep(Duration::from_secs_f64(opts.seconds));
    let s1 = snapshot(&stats, irqs());
    ctl.stop.store(true, Ordering::Relaxed);
    let mut failed = None;
    for h in handles {
        if h.join().is_err() {
            failed = Some("a benchmark thread panicked (see above)".to_string());
        }
    }
    drop(net);
    if let Some(f) = failed {
        return Err(f);
    }

    let secs = s1.at.duration_since(s0.at).as_secs_f64();
    let per_queue: Vec<u64> = s1
        .frames
        .iter()
        .zip(&s0.frames)
        .map(|(a, b)| a - b)
        .collect();
    let frames: u64 = per_queue.iter().sum();
    let bytes: u64 = s1.bytes.iter().zip(&s0.bytes).map(|(a, b)| a - b).sum();
    let k = |i: usize| s1.kernel[i].saturating_sub(s0.kernel[i]);
    let (kernel_frames, kernel_drops) = match dir {
        Dir::Tx => (k(0), k(1)),
        Dir::Rx => (k(2), k(3)),
    };
    let sum = |f: fn(&Stats) -> &AtomicU64| -> u64 {
        stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    };
    Ok(Measurement {
        secs,
        frames,
        bytes,
        pps: frames as f64 / secs,
        gbps: bytes as f64 * 8.0 / secs / 1e9,
        cpu_pct: (s1.cpu - s0.cpu) / secs * 100.0,
        per_queue,
        kernel_frames,
        kernel_drops,
        kicks: sum(|s| &s.kicks),
        irqs: s1.irqs - s0.irqs,
        waits: sum(|s| &s.waits),
        stalls: sum(|s| &s.stalls),
        dev_drops: sum(|s| &s.dev_drops),
    })
}

// ------------------------------------------------------------ report

#[derive(Clone, Debug)]
struct CaseResult {
    dir: Dir,
    size: Size,
    pairs: usize,
    mode: Mode,
    /// Median (by pps) of the repetitions, and every repetition's pps.
    median: Option<Measurement>,
    reps: Vec<f64>,
    error: Option<String>,
}

fn find(
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

fn pps_of(results: &[CaseResult], dir: Dir, size: Size, pairs: usize, mode: Mode) -> Option<f64> {
    find(results, dir, size, pairs, mode)
        .and_then(|r| r.median.as_ref())
        .map(|m| m.pps)
}

fn fmt_rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2} M", pps / 1e6)
    } else {
        format!("{:.0} k", pps / 1e3)
    }
}

/// A table cell for one case: pps, Gbit/s and CPU, or why there are none.
fn result_cell(r: Option<&CaseResult>) -> String {
    match r {
        Some(CaseResult { error: Some(e), .. }) => format!("failed: {e}"),
        Some(CaseResult {
            median: Some(m), ..
        }) => format!("{}pps / {:.2} / {:.0}%", fmt_rate(m.pps), m.gbps, m.cpu_pct),
        _ => "–".into(),
    }
}

/// `a / b` as a table cell, when both were measured.
fn ratio_cell(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// Kicks (or MMIO accesses) and interrupts per 1000 frames of one case.
fn notify_cell(r: Option<&CaseResult>) -> String {
    match r.and_then(|r| r.median.as_ref()) {
        Some(m) if m.frames > 0 => format!(
            "{:.1}, {:.1}",
            m.kicks as f64 * 1000.0 / m.frames as f64,
            m.irqs as f64 * 1000.0 / m.frames as f64
        ),
        _ => "–".into(),
    }
}

fn check_note(r: &CaseResult) -> String {
    let Some(m) = &r.median else {
        return String::new();
    };
    let mut notes = Vec::new();
    // The kernel's count and ours differ by at most the frames in flight
    // at the two snapshot instants.
    let segs = kernel_segments(r.mode, r.size);
    let slack = (2 * u64::from(RING) * r.pairs as u64 + 64) * segs;
    if m.kernel_frames.abs_diff(m.frames * segs) > slack {
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

/// Starts a markdown table: `title` as a paragraph of its own, then the
/// `header` row and the separator row for its columns.
fn table_head(out: &mut String, title: Option<&str>, header: &str) {
    if let Some(title) = title {
        let _ = writeln!(out);
        let _ = writeln!(out, "{title}");
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{header}");
    let columns = header.matches('|').count().saturating_sub(1);
    let _ = writeln!(out, "|{}", "---|".repeat(columns));
}

fn table(results: &[CaseResult], opts: &Opts) -> String {
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
fn e1000_table(results: &[CaseResult], opts: &Opts) -> String {
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

fn json_str(s: &str) -> String {
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

fn json(results: &[CaseResult], opts: &Opts, host: &str) -> String {
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
        let raw = pps_of(results, r.dir, r.size, r.pairs, Mode::Raw);
        let virtio = pps_of(results, r.dir, r.size, r.pairs, Mode::Worker);
        let _ = write!(
            o,
            "{}\n    {{\"dir\": \"{}\", \"frame\": {}, \"frame_len\": {}, \"pairs\": {}, \"mode\": \"{}\"",
            if i == 0 { "" } else { "," },
            r.dir.name(),
            json_str(r.size.label),
            r.size.frame_len,
            r.pairs,
            r.mode.name()
        );
        if let Some(e) = &r.error {
            let _ = write!(o, ", \"error\": {}", json_str(e));
        }
        if let Some(m) = &r.median {
            let ratio = match raw {
                Some(x) if x > 0.0 => format!("{:.4}", m.pps / x),
                _ => "null".into(),
            };
            let reps: Vec<String> = r.reps.iter().map(|p| format!("{p:.0}")).collect();
            let _ = write!(
                o,
                ", \"pps\": {:.0}, \"gbit_s\": {:.4}, \"ratio_vs_raw\": {}, \"cpu_pct\": {:.1}, \"secs\": {:.4}, \"frames\": {}, \"bytes\": {}, \"per_queue_frames\": {:?}, \"kernel_frames\": {}, \"kernel_drops\": {}, \"kicks\": {}, \"irqs\": {}, \"driver_waits\": {}, \"stalls\": {}, \"reps_pps\": [{}]",
                m.pps,
                m.gbps,
                ratio,
                m.cpu_pct,
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
                let ratio = match virtio {
                    Some(x) if x > 0.0 => format!("{:.4}", m.pps / x),
                    _ => "null".into(),
                };
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

// ------------------------------------------------------------ main

const USAGE: &str = "usage: netbench [--seconds S] [--warmup S] [--repeat N] [--json FILE]
                [--sizes 64,1514,65536] [--queues 1,2] [--dirs tx,rx]
                [--modes raw,direct,worker,e1000] [--rx-buf BYTES]
                [--window FRAMES]

Benchmarks petrel's virtio-net and e1000 datapaths against a raw tap, without
a guest. The e1000 runs with 1 queue only, and not for RX of TSO frames.
--sizes 65536 selects the 64 KiB TSO frame (65214 bytes: 45 segments of 1448).
Needs root; runs in a private network namespace. Timings are relative: compare
columns of one run, not runs on different hosts.";

fn parse_list<T>(v: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    v.split(',')
        .map(|x| f(x.trim()).ok_or_else(|| format!("bad list item {x:?}")))
        .collect()
}

fn parse_args() -> Result<Opts, String> {
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
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
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

fn host_description() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netbench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = enter_private_netns() {
        eprintln!("netbench: cannot enter a private network namespace: {e}");
        std::process::exit(1);
    }
    let host = host_description();
    println!(
        "netbench: {host}; {} s per case after {} s warm-up, median of {}; rx buffers {} B (MRG_RXBUF), window {} frames",
        opts.seconds, opts.warmup, opts.repeat, opts.rx_buf, opts.window
    );

    let mut flows: [Vec<u16>; 2] = [vec![40000, 40001, 40002, 40003], Vec::new()];
    if opts.dirs.contains(&Dir::Rx) {
        match probe_flows(4) {
            Ok(f) if f.iter().all(|q| !q.is_empty()) => {
                println!(
                    "netbench: RX flows (TCP source ports) per tap queue: {:?} / {:?}",
                    f[0], f[1]
                );
                flows = f;
            }
            Ok(f) => {
                println!(
                    "netbench: could not find flows for both tap queues ({:?} / {:?}); 2-pair RX will be uneven",
                    f[0], f[1]
                );
                let all: Vec<u16> = f.iter().flatten().copied().collect();
                flows = [all.clone(), all];
            }
            Err(e) => {
                println!("netbench: flow probe failed ({e}); 2-pair RX may be uneven");
                flows[1] = flows[0].clone();
            }
        }
    }

    let mut results: Vec<CaseResult> = Vec::new();
    for &dir in &opts.dirs {
        for &size in &opts.sizes {
            for &pairs in &opts.queues {
                let mut reps: Vec<Vec<Measurement>> = vec![Vec::new(); opts.modes.len()];
                let mut errors: Vec<Option<String>> = vec![None; opts.modes.len()];
                // Modes interleaved per repetition, so slow drifts of a
                // noisy host hit all of them alike.
                for _ in 0..opts.repeat {
                    for (i, &mode) in opts.modes.iter().enumerate() {
                        if errors[i].is_some()
                            || (mode == Mode::E1000 && !e1000_supported(dir, size, pairs))
                        {
                            continue;
                        }
                        match run_case(dir, size, pairs, mode, &opts, &flows) {
                            Ok(m) => reps[i].push(m),
                            Err(e) => errors[i] = Some(e),
                        }
                    }
                }
                for (i, &mode) in opts.modes.iter().enumerate() {
                    if mode == Mode::E1000 && !e1000_supported(dir, size, pairs) {
                        continue;
                    }
                    let mut ms = std::mem::take(&mut reps[i]);
                    ms.sort_by(|a, b| a.pps.total_cmp(&b.pps));
                    let all: Vec<f64> = ms.iter().map(|m| m.pps).collect();
                    let median = (!ms.is_empty()).then(|| ms[ms.len() / 2].clone());
                    if let Some(m) = &median {
                        eprintln!(
                            "  {} {:>10} {} pair(s) {:>6}: {:>10.0} pps {:>7.2} Gbit/s cpu {:>4.0}%  (reps {:?})",
                            dir.name(),
                            size.label,
                            pairs,
                            mode.name(),
                            m.pps,
                            m.gbps,
                            m.cpu_pct,
                            all.iter().map(|p| format!("{:.0}k", p / 1e3)).collect::<Vec<_>>()
                        );
                    }
                    if let Some(e) = &errors[i] {
                        eprintln!(
                            "  {} {} {} pair(s) {}: FAILED: {e}",
                            dir.name(),
                            size.label,
                            pairs,
                            mode.name()
                        );
                    }
                    results.push(CaseResult {
                        dir,
                        size,
                        pairs,
                        mode,
                        median,
                        reps: all,
                        error: errors[i].take(),
                    });
                }
            }
        }
    }

    println!();
    print!("{}", table(&results, &opts));
    if let Some(path) = &opts.json {
        if let Err(e) = std::fs::write(path, json(&results, &opts, &host)) {
            eprintln!("netbench: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("\nnetbench: JSON written to {}", path.display());
    }
}
