//! Linux tap interfaces as [`FrameBackend`]s.
//!
//! A [`Tap`] is one queue of a tap interface opened with `IFF_TAP |
//! IFF_NO_PI | IFF_VNET_HDR` (plus `IFF_MULTI_QUEUE` for more than one
//! queue): each read(2) returns one Ethernet frame and each write(2) sends
//! one, both prefixed with a [`VNET_HDR_LEN`]-byte virtio-net header.
//!
//! A tap created by [`Tap::open_named`] is not persistent: the kernel deletes
//! the interface when the last queue's descriptor is closed, i.e. when the
//! last [`Tap`] of it is dropped. A pre-created (persistent) tap is attached
//! to and left in place.

use std::fs::OpenOptions;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::ifname::{validate_ifname, IfNameError};
use crate::sys::{self, IfReq};
use crate::{FrameBackend, Offloads, VNET_HDR_LEN};

/// Path of the tun/tap clone device.
const TUN_PATH: &str = "/dev/net/tun";

/// Errors from opening or configuring a tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The interface name is not one the kernel accepts.
    #[error(transparent)]
    InvalidName(#[from] IfNameError),
    /// Zero queues were requested.
    #[error("a tap needs at least one queue, {queues} requested")]
    InvalidQueues {
        /// The requested queue count.
        queues: u16,
    },
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open {TUN_PATH}: {0}{hint}", hint = open_hint(.0))]
    OpenTun(#[source] io::Error),
    /// TUNSETIFF (create or attach) failed.
    #[error("cannot create or attach tap {name:?}: {source}{hint}", hint = set_iff_hint(source))]
    SetIff {
        /// The interface name asked for.
        name: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// TUNSETVNETHDRSZ failed.
    #[error("cannot set the tap's virtio-net header size to {VNET_HDR_LEN}: {0}")]
    VnetHdr(#[source] io::Error),
    /// TUNSETOFFLOAD failed.
    #[error("cannot set the tap's offloads: {0}")]
    Offload(#[source] io::Error),
    /// A descriptor handed to [`Tap::from_fd`] is not a usable tap.
    #[error("descriptor is not a usable tap: {reason}")]
    NotATap {
        /// What is wrong with it.
        reason: String,
    },
    /// Another system call on the tap or its interface failed.
    #[error("{op} failed: {source}")]
    Ioctl {
        /// The operation, e.g. `"SIOCSIFFLAGS"`.
        op: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
}

fn open_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            " (the tun driver is missing: load the `tun` module, or create the node \
             with `mknod /dev/net/tun c 10 200`)"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (needs root or CAP_NET_ADMIN, or access to /dev/net/tun)"
        }
        _ => "",
    }
}

fn set_iff_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => {
            " (creating a tap needs CAP_NET_ADMIN; attaching to an existing one needs \
             CAP_NET_ADMIN or to be its owner/group)"
        }
        Some(libc::EBUSY) => {
            " (the tap exists and is already attached: a single-queue tap takes only one \
             open descriptor)"
        }
        Some(libc::EINVAL) => {
            " (an interface with this name exists with different flags, e.g. single vs \
             multi queue, or is not a tap)"
        }
        Some(libc::E2BIG) => " (too many queues for one tap)",
        _ => "",
    }
}

/// One queue of a tap interface; see the [module docs](self).
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Opens tap `name` (creating it if absent, attaching if present) with
    /// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, plus `IFF_MULTI_QUEUE` when
    /// `queues > 1`, and returns one `Tap` per queue.
    ///
    /// With `queues == 1` `IFF_MULTI_QUEUE` is not requested, so a
    /// pre-created single-queue tap still attaches. Every descriptor is
    /// non-blocking and close-on-exec, uses a [`VNET_HDR_LEN`]-byte header
    /// (TUNSETVNETHDRSZ) and starts with no offloads (TUNSETOFFLOAD 0) until
    /// the guest negotiates some.
    pub fn open_named(name: &str, queues: u16) -> Result<Vec<Tap>, TapError> {
        validate_ifname(name)?;
        if queues == 0 {
            return Err(TapError::InvalidQueues { queues });
        }
        let mut flags = sys::IFF_TAP | sys::IFF_NO_PI | sys::IFF_VNET_HDR;
        if queues > 1 {
            flags |= sys::IFF_MULTI_QUEUE;
        }

        let mut ifname = name.to_owned();
        let mut taps = Vec::with_capacity(usize::from(queues));
        for queue in 0..queues {
            // std opens with O_CLOEXEC.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(TUN_PATH)
                .map_err(TapError::OpenTun)?;
            let fd = OwnedFd::from(file);

            let mut req = IfReq::with_name(&ifname);
            req.set_flags(flags);
            sys::tun_set_iff(fd.as_fd(), &mut req).map_err(|source| TapError::SetIff {
                name: ifname.clone(),
                source,
            })?;
            // The kernel writes back the final name (it expands templates
            // such as "tap%d"); later queues attach to exactly that one.
            ifname = req.name();

            let tap = Tap {
                fd,
                name: ifname.clone(),
            };
            tap.init_vnet()?;
            tracing::debug!(tap = %tap.name, queue, queues, "opened tap queue");
            taps.push(tap);
        }
        Ok(taps)
    }

    /// Creates tap `name` as a persistent interface owned by `uid`/`gid`
    /// (TUNSETPERSIST, TUNSETOWNER, TUNSETGROUP), with the flags
    /// [`open_named`](Self::open_named) will later attach with for `queues`
    /// queues, and closes it again: the interface stays, with no queue
    /// attached, until it is deleted. A process running as `uid` (or in
    /// group `gid`) then attaches with [`open_named`](Self::open_named)
    /// without any capability. Creating needs CAP_NET_ADMIN.
    pub fn create_persistent(name: &str, queues: u16, uid: u32, gid: u32) -> Result<(), TapError> {
        // Opened with the flags (IFF_MULTI_QUEUE or not) that later
        // attaches must use; the queues close again at the end.
        let taps = Self::open_named(name, queues)?;
        let Some(first) = taps.first() else {
            return Err(TapError::InvalidQueues { queues });
        };
        let fd = first.fd.as_fd();
        for (op, req, value) in [
            ("TUNSETOWNER", sys::TUNSETOWNER, libc::c_ulong::from(uid)),
            ("TUNSETGROUP", sys::TUNSETGROUP, libc::c_ulong::from(gid)),
            ("TUNSETPERSIST", sys::TUNSETPERSIST, 1),
        ] {
            sys::tun_set_value(fd, req, value).map_err(ioctl_err(op))?;
        }
        tracing::debug!(tap = name, queues, uid, gid, "created persistent tap");
        Ok(())
    }

    /// Wraps an already-open tap descriptor handed over by a parent process.
    ///
    /// Checks with TUNGETIFF that it is attached to a tap with `IFF_NO_PI`
    /// and `IFF_VNET_HDR`, makes it non-blocking, sets the header size to
    /// [`VNET_HDR_LEN`] and resets the offloads to none.
    pub fn from_fd(fd: OwnedFd) -> Result<Tap, TapError> {
        let mut req = IfReq::with_name("");
        sys::tun_get_iff(fd.as_fd(), &mut req).map_err(|e| TapError::NotATap {
            reason: format!("TUNGETIFF failed: {e}"),
        })?;
        let flags = req.flags();
        let not_a_tap = |reason: &str| TapError::NotATap {
            reason: format!("{} ({:?})", reason, req.name()),
        };
        if flags & sys::TUN_TYPE_MASK != sys::IFF_TAP {
            return Err(not_a_tap("a tun (layer 3) device, not a tap"));
        }
        if flags & sys::IFF_NO_PI == 0 {
            return Err(not_a_tap("opened without IFF_NO_PI"));
        }
        if flags & sys::IFF_VNET_HDR == 0 {
            return Err(not_a_tap("opened without IFF_VNET_HDR"));
        }
        sys::set_nonblocking(fd.as_fd()).map_err(|source| TapError::Ioctl {
            op: "fcntl(F_SETFL, O_NONBLOCK)",
            source,
        })?;
        let tap = Tap {
            fd,
            name: req.name(),
        };
        tap.init_vnet()?;
        tracing::debug!(tap = %tap.name, "adopted tap descriptor");
        Ok(tap)
    }

    /// Sets the header size and clears the offloads.
    fn init_vnet(&self) -> Result<(), TapError> {
        let len = libc::c_int::try_from(VNET_HDR_LEN)
            .map_err(|_| TapError::VnetHdr(io::ErrorKind::InvalidInput.into()))?;
        sys::tun_set_vnet_hdr_sz(self.fd.as_fd(), len).map_err(TapError::VnetHdr)?;
        sys::tun_set_offload(self.fd.as_fd(), 0).map_err(TapError::Offload)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Brings the interface up (SIOCSIFFLAGS `IFF_UP` via an `AF_INET`
    /// datagram socket); a no-op if it is up already. Needs CAP_NET_ADMIN.
    pub fn set_up(&self) -> Result<(), TapError> {
        let sock = control_socket()?;
        let mut req = IfReq::with_name(&self.name);
        sys::sioc_get_if_flags(sock.as_fd(), &mut req).map_err(ioctl_err("SIOCGIFFLAGS"))?;
        if req.flags() & sys::IFF_UP != 0 {
            return Ok(());
        }
        req.set_flags(req.flags() | sys::IFF_UP);
        sys::sioc_set_if_flags(sock.as_fd(), &req).map_err(ioctl_err("SIOCSIFFLAGS"))
    }

    /// The interface's MAC address (SIOCGIFHWADDR).
    pub fn mac(&self) -> Result<[u8; 6], TapError> {
        let sock = control_socket()?;
        let mut req = IfReq::with_name(&self.name);
        sys::sioc_get_if_hwaddr(sock.as_fd(), &mut req).map_err(ioctl_err("SIOCGIFHWADDR"))?;
        Ok(req.hwaddr())
    }

    /// Sets the interface's MTU (SIOCSIFMTU). Needs CAP_NET_ADMIN.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), TapError> {
        let mtu = libc::c_int::try_from(mtu).map_err(|_| TapError::Ioctl {
            op: "SIOCSIFMTU",
            source: io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"),
        })?;
        let sock = control_socket()?;
        let mut req = IfReq::with_name(&self.name);
        req.set_mtu(mtu);
        sys::sioc_set_if_mtu(sock.as_fd(), &req).map_err(ioctl_err("SIOCSIFMTU"))
    }
}

fn ioctl_err(op: &'static str) -> impl FnOnce(io::Error) -> TapError {
    move |source| TapError::Ioctl { op, source }
}

fn control_socket() -> Result<OwnedFd, TapError> {
    sys::inet_dgram_socket().map_err(|source| TapError::Ioctl {
        op: "socket(AF_INET, SOCK_DGRAM)",
        source,
    })
}

impl FrameBackend for Tap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.fd.as_fd(), buf)
    }

    fn write_frame(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::writev(self.fd.as_fd(), bufs)
    }

    fn writes_iovecs(&self) -> bool {
        true
    }

    unsafe fn write_iovecs(&mut self, iovecs: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the caller keeps the memory `iovecs` describe mapped and
        // readable for this call, which is what `writev_raw` needs.
        unsafe { sys::writev_raw(self.fd.as_fd(), iovecs) }
    }

    fn reads_iovecs(&self) -> bool {
        true
    }

    fn accepts_gso(&self) -> bool {
        // tun_get_user takes GSO frames whatever TUNSETOFFLOAD says (that
        // governs the other direction) and the stack segments them.
        true
    }

    unsafe fn read_iovecs(&mut self, iovecs: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the caller keeps the memory `iovecs` describe mapped and
        // writable for this call, which is what `readv_raw` needs.
        unsafe { sys::readv_raw(self.fd.as_fd(), iovecs) }
    }

    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()> {
        sys::tun_set_offload(self.fd.as_fd(), offloads.to_tun_flags())
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_named_rejects_bad_input_before_touching_the_kernel() {
        assert!(matches!(
            Tap::open_named("bad/name", 1),
            Err(TapError::InvalidName(_))
        ));
        assert!(matches!(
            Tap::open_named("", 2),
            Err(TapError::InvalidName(_))
        ));
        assert!(matches!(
            Tap::open_named("ok0", 0),
            Err(TapError::InvalidQueues { queues: 0 })
        ));
    }

    #[test]
    fn error_messages_carry_hints() {
        let e = TapError::OpenTun(io::Error::from_raw_os_error(libc::ENOENT));
        assert!(e.to_string().contains("tun"), "{e}");
        let e = TapError::OpenTun(io::Error::from_raw_os_error(libc::EPERM));
        assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
        let e = TapError::SetIff {
            name: "tap0".into(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert!(e.to_string().contains("single-queue"), "{e}");
        let e = TapError::SetIff {
            name: "tap0".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(e.to_string().contains("multi queue"), "{e}");
        let e = TapError::VnetHdr(io::Error::from_raw_os_error(libc::EBADF));
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn from_fd_rejects_non_taps() {
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(matches!(
            Tap::from_fd(OwnedFd::from(null)),
            Err(TapError::NotATap { .. })
        ));
        let (a, _b) = sys::seqpacket_socketpair().unwrap();
        assert!(matches!(Tap::from_fd(a), Err(TapError::NotATap { .. })));
    }

    /// Whether an interface called `name` exists in this network namespace.
    fn interface_exists(name: &str) -> bool {
        let sock = sys::inet_dgram_socket().unwrap();
        let mut req = IfReq::with_name(name);
        match sys::sioc_get_if_flags(sock.as_fd(), &mut req) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => false,
            Err(e) => panic!("SIOCGIFFLAGS {name}: {e}"),
        }
    }

    /// A broadcast ARP request for 192.0.2.2 from 192.0.2.1 (TEST-NET-1).
    fn arp_request() -> Vec<u8> {
        let src = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(&[0xff; 6]); // destination: broadcast
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x06]); // ARP
        f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
        f.extend_from_slice(&src);
        f.extend_from_slice(&[192, 0, 2, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[192, 0, 2, 2]);
        assert_eq!(f.len(), 42);
        f
    }

    #[test]
    fn tap_lifecycle_as_root() {
        if sys::euid() != 0 {
            println!("skipped: needs root");
            return;
        }
        // In a private network namespace of a dedicated thread: the test's
        // tap never appears among the host's interfaces.
        std::thread::spawn(|| {
            // SAFETY: unshare(2) takes a flag word and touches no memory; it
            // only moves this thread into a new network namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            tap_lifecycle_in_own_netns();
        })
        .join()
        .unwrap();
    }

    fn tap_lifecycle_in_own_netns() {
        if sys::euid() != 0 {
            println!("skipped: needs root");
            return;
        }
        // Unique per process, so parallel runs on one host do not collide;
        // the tap is not persistent and goes away with its last descriptor.
        let name = format!("ptst{}", std::process::id() % 10000);
        assert!(!interface_exists(&name), "{name} already exists");

        let mut taps = Tap::open_named(&name, 2).unwrap();
        assert_eq!(taps.len(), 2);
        assert!(taps.iter().all(|t| t.name() == name));
        assert_ne!(taps[0].as_raw_fd(), taps[1].as_raw_fd());
        assert!(interface_exists(&name));

        let offloads = Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            ecn: true,
        };
        for tap in &mut taps {
            tap.set_offloads(offloads).unwrap();
            tap.set_offloads(Offloads::NONE).unwrap();
            tap.set_offloads(offloads).unwrap();
        }

        // Attaching single-queue to a multi-queue tap is refused, with a hint.
        match Tap::open_named(&name, 1) {
            Err(e @ TapError::SetIff { .. }) => {
                assert!(e.to_string().contains("multi queue"), "{e}");
            }
            other => panic!("expected SetIff, got {other:?}"),
        }

        taps[0].set_up().unwrap();
        taps[0].set_up().unwrap();
        taps[0].set_mtu(1400).unwrap();
        let mac = taps[0].mac().unwrap();
        assert_ne!(mac, [0; 6]);

        let hdr = [0u8; VNET_HDR_LEN];
        let frame = arp_request();
        let n = taps[0]
            .write_frame(&[IoSlice::new(&hdr), IoSlice::new(&frame)])
            .unwrap();
        assert_eq!(n, VNET_HDR_LEN + frame.len());

        // A duplicate of a queue's descriptor can be adopted.
        let adopted = Tap::from_fd(taps[1].fd.try_clone().unwrap()).unwrap();
        assert_eq!(adopted.name(), name);
        assert_eq!(adopted.mac().unwrap(), mac);

        // A tun fd not attached to any interface is not a tap.
        let unattached = OpenOptions::new()
            .read(true)
            .write(true)
            .open(TUN_PATH)
            .unwrap();
        assert!(matches!(
            Tap::from_fd(OwnedFd::from(unattached)),
            Err(TapError::NotATap { .. })
        ));

        assert!(matches!(
            Tap::open_named("bad name", 2),
            Err(TapError::InvalidName(_))
        ));

        drop(adopted);
        drop(taps);
        assert!(!interface_exists(&name), "{name} outlived its descriptors");
    }
}
