//! Kernel-side frame injection for the RX cases, and the probe that finds
//! which TCP flows a 2-queue tap puts on each of its queues.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use net_backend::{FrameBackend, Tap};

use crate::frames::{build_frame, sport_of, vnet_hdr, Size, GUEST_MAC, PEER_MAC, SIZES};
use crate::sys::{cvt, ifindex, set_sockopt_int};
use crate::BATCH;

/// A throw-away 2-queue tap used to find flows for each tap queue.
pub const PROBE_TAP: &str = "pbprobe0";

/// Sends frames into an interface from the kernel side: an `AF_PACKET`
/// raw socket with `PACKET_VNET_HDR` (so 64 KiB TCPv4 GSO frames can be
/// sent) and `PACKET_QDISC_BYPASS`, batched with sendmmsg(2). Not `Send`
/// (raw pointers into its own buffers): build it on the thread using it.
pub struct Injector {
    pub fd: OwnedFd,
    /// One frame per flow, each prefixed with a 10-byte virtio_net_hdr.
    pub frames: Vec<Vec<u8>>,
    pub next: usize,
    pub addr: Box<libc::sockaddr_ll>,
    pub iov: Vec<libc::iovec>,
    pub msgs: Vec<libc::mmsghdr>,
}

impl Injector {
    pub fn new(ifindex: libc::c_int, size: Size, sports: &[u16]) -> io::Result<Self> {
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
    pub fn send(&mut self, n: usize) -> io::Result<usize> {
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
pub fn probe_flows(per_queue: usize) -> io::Result<[Vec<u16>; 2]> {
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

/// The RX source ports per tap queue. Without RX cases (`rx` false) no
/// probe is needed; if the probe cannot place flows on both queues, both
/// queues get the same ports and 2-pair RX is uneven, which is said.
pub fn rx_flows(rx: bool) -> [Vec<u16>; 2] {
    let default = vec![40000, 40001, 40002, 40003];
    if !rx {
        return [default, Vec::new()];
    }
    match probe_flows(4) {
        Ok(f) if f.iter().all(|q| !q.is_empty()) => {
            println!(
                "netbench: RX flows (TCP source ports) per tap queue: {:?} / {:?}",
                f[0], f[1]
            );
            f
        }
        Ok(f) => {
            println!(
                "netbench: could not find flows for both tap queues ({:?} / {:?}); 2-pair RX will be uneven",
                f[0], f[1]
            );
            let all: Vec<u16> = f.iter().flatten().copied().collect();
            [all.clone(), all]
        }
        Err(e) => {
            println!("netbench: flow probe failed ({e}); 2-pair RX may be uneven");
            [default.clone(), default]
        }
    }
}
