//! Raw kernel interface of the backends: tun/tap and interface ioctl
//! numbers, the `ifreq` layout and one small safe wrapper per system call
//! this crate makes (ioctls, read/writev, socketpair, mknod, open).
//!
//! Every `unsafe` block of the crate lives here, each around exactly one
//! foreign call, so the rest of the crate is safe code. (The pod plumbing
//! in the `net` crate has its own socket helpers.)

use std::ffi::CStr;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_int, c_short, c_uint, c_ulong, c_void};

/// Length of an interface name buffer, including the terminating NUL.
pub(crate) const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// Request type of `libc::ioctl` on this target (`c_ulong` on glibc, `c_int` on musl).
pub(crate) type IoctlReq = libc::Ioctl;

// tun/tap ioctls (`linux/if_tun.h`), issued on a `/dev/net/tun` fd.
pub(crate) const TUNSETIFF: IoctlReq = libc::TUNSETIFF;
pub(crate) const TUNGETIFF: IoctlReq = libc::TUNGETIFF;
pub(crate) const TUNSETOFFLOAD: IoctlReq = libc::TUNSETOFFLOAD;
pub(crate) const TUNSETVNETHDRSZ: IoctlReq = libc::TUNSETVNETHDRSZ;
pub(crate) const TUNSETPERSIST: IoctlReq = libc::TUNSETPERSIST;
pub(crate) const TUNSETOWNER: IoctlReq = libc::TUNSETOWNER;
pub(crate) const TUNSETGROUP: IoctlReq = libc::TUNSETGROUP;

// Interface ioctls (`linux/sockios.h`), issued on any socket. libc types them
// `c_ulong` everywhere, which is not the request type on every target.
#[allow(clippy::unnecessary_cast)]
pub(crate) const SIOCGIFFLAGS: IoctlReq = libc::SIOCGIFFLAGS as IoctlReq;
#[allow(clippy::unnecessary_cast)]
pub(crate) const SIOCSIFFLAGS: IoctlReq = libc::SIOCSIFFLAGS as IoctlReq;
#[allow(clippy::unnecessary_cast)]
pub(crate) const SIOCGIFHWADDR: IoctlReq = libc::SIOCGIFHWADDR as IoctlReq;
#[allow(clippy::unnecessary_cast)]
pub(crate) const SIOCSIFMTU: IoctlReq = libc::SIOCSIFMTU as IoctlReq;

// TUNSETIFF / TUNGETIFF flags; the kernel carries them in the 16-bit `ifr_flags`.
pub(crate) const IFF_TAP: c_short = libc::IFF_TAP as c_short;
pub(crate) const IFF_NO_PI: c_short = libc::IFF_NO_PI as c_short;
pub(crate) const IFF_VNET_HDR: c_short = libc::IFF_VNET_HDR as c_short;
pub(crate) const IFF_MULTI_QUEUE: c_short = libc::IFF_MULTI_QUEUE as c_short;
/// `TUN_TYPE_MASK`: the bits of `ifr_flags` that say tun or tap.
pub(crate) const TUN_TYPE_MASK: c_short = 0x000f;
/// Interface flag `IFF_UP` (SIOC[GS]IFFLAGS).
pub(crate) const IFF_UP: c_short = libc::IFF_UP as c_short;

// Offload bits for TUNSETOFFLOAD.
pub(crate) const TUN_F_CSUM: c_uint = libc::TUN_F_CSUM;
pub(crate) const TUN_F_TSO4: c_uint = libc::TUN_F_TSO4;
pub(crate) const TUN_F_TSO6: c_uint = libc::TUN_F_TSO6;
pub(crate) const TUN_F_TSO_ECN: c_uint = libc::TUN_F_TSO_ECN;

/// Byte size of the `ifr_ifru` union of `struct ifreq` on 64-bit and 32-bit
/// Linux alike (its largest member, `struct ifmap`, is 24 bytes on LP64 and
/// 16 on ILP32; `struct sockaddr` is 16).
const IFRU_LEN: usize = std::mem::size_of::<libc::ifreq>() - IFNAMSIZ;

/// `struct ifreq` from `linux/if.h`.
///
/// The `ifr_ifru` union is kept as raw bytes: every member this crate uses
/// (`ifr_flags`, `ifr_mtu`, `ifr_hwaddr`) starts at offset 0 of the union, so
/// it is read and written with native-endian byte conversions and no union
/// access is needed. The alignment matches the C union's (pointer-sized).
#[repr(C)]
#[cfg_attr(target_pointer_width = "64", repr(align(8)))]
#[cfg_attr(target_pointer_width = "32", repr(align(4)))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IfReq {
    /// NUL-terminated interface name.
    pub(crate) name: [u8; IFNAMSIZ],
    /// The `ifr_ifru` union as bytes.
    pub(crate) ifru: [u8; IFRU_LEN],
}

impl IfReq {
    /// An all-zero request carrying `name`.
    ///
    /// `name` must already be validated to be at most `IFNAMSIZ - 1` bytes;
    /// a longer one is truncated so the terminating NUL always remains.
    pub(crate) fn with_name(name: &str) -> Self {
        let mut req = Self {
            name: [0; IFNAMSIZ],
            ifru: [0; IFRU_LEN],
        };
        let bytes = name.as_bytes();
        let len = bytes.len().min(IFNAMSIZ - 1);
        req.name[..len].copy_from_slice(&bytes[..len]);
        req
    }

    /// The name up to its first NUL, lossily decoded.
    pub(crate) fn name(&self) -> String {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..len]).into_owned()
    }

    /// `ifr_flags`.
    pub(crate) fn flags(&self) -> c_short {
        c_short::from_ne_bytes([self.ifru[0], self.ifru[1]])
    }

    /// Sets `ifr_flags`.
    pub(crate) fn set_flags(&mut self, flags: c_short) {
        self.ifru[..2].copy_from_slice(&flags.to_ne_bytes());
    }

    /// Sets `ifr_mtu`.
    pub(crate) fn set_mtu(&mut self, mtu: c_int) {
        self.ifru[..4].copy_from_slice(&mtu.to_ne_bytes());
    }

    /// The first six bytes of `ifr_hwaddr.sa_data` (after the 2-byte `sa_family`).
    pub(crate) fn hwaddr(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.ifru[2..8]);
        mac
    }
}

pub(crate) use crate::syscall::{cvt, cvt_size, retry_eintr, set_socket_int_opt};

/// The ioctls whose argument is one `struct ifreq` and nothing else, so
/// that [`ifreq_ioctl`] cannot be handed a request that would touch more.
#[derive(Debug, Clone, Copy)]
enum IfreqIoctl {
    TunSetIff,
    TunGetIff,
    GetFlags,
    SetFlags,
    GetHwaddr,
    SetMtu,
}

impl IfreqIoctl {
    fn request(self) -> IoctlReq {
        match self {
            Self::TunSetIff => TUNSETIFF,
            Self::TunGetIff => TUNGETIFF,
            Self::GetFlags => SIOCGIFFLAGS,
            Self::SetFlags => SIOCSIFFLAGS,
            Self::GetHwaddr => SIOCGIFHWADDR,
            Self::SetMtu => SIOCSIFMTU,
        }
    }
}

/// Issues `ioctl` on `fd` with `req`, which the kernel reads and, for the
/// getters and TUNSETIFF, writes back.
fn ifreq_ioctl(fd: BorrowedFd<'_>, ioctl: IfreqIoctl, req: &mut IfReq) -> io::Result<()> {
    let ptr: *mut IfReq = req;
    // SAFETY: every `IfreqIoctl` reads and at most writes one `struct
    // ifreq`; `ptr` points to a live, exclusively borrowed `IfReq` with the
    // kernel's layout and size.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), ioctl.request(), ptr) }).map(drop)
}

/// TUNSETIFF: attaches the tun fd to (creating if needed) interface
/// `req.name` with `req.flags()`; the kernel writes the final name back.
pub(crate) fn tun_set_iff(fd: BorrowedFd<'_>, req: &mut IfReq) -> io::Result<()> {
    ifreq_ioctl(fd, IfreqIoctl::TunSetIff, req)
}

/// TUNGETIFF: fills `req` with the name and tun flags of the attached interface.
pub(crate) fn tun_get_iff(fd: BorrowedFd<'_>, req: &mut IfReq) -> io::Result<()> {
    ifreq_ioctl(fd, IfreqIoctl::TunGetIff, req)
}

/// TUNSETVNETHDRSZ: sets the virtio-net header length prepended to frames.
pub(crate) fn tun_set_vnet_hdr_sz(fd: BorrowedFd<'_>, len: c_int) -> io::Result<()> {
    let ptr: *const c_int = &len;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which
    // refers to a live local for the duration of the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, ptr) }).map(drop)
}

/// TUNSETOFFLOAD: sets the `TUN_F_*` offloads the reader of the fd accepts.
pub(crate) fn tun_set_offload(fd: BorrowedFd<'_>, flags: c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long) and
    // touches no memory of ours.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, c_ulong::from(flags)) }).map(drop)
}

/// TUNSETPERSIST, TUNSETOWNER or TUNSETGROUP: one integer argument passed
/// by value (persist on/off, owner uid, group gid).
pub(crate) fn tun_set_value(fd: BorrowedFd<'_>, req: IoctlReq, value: c_ulong) -> io::Result<()> {
    // SAFETY: these three tun ioctls take their argument by value and touch
    // no memory of ours; `fd` is a live descriptor.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, value) }).map(drop)
}

/// SIOCGIFFLAGS: reads the interface flags of `req.name` into `req`.
pub(crate) fn sioc_get_if_flags(sock: BorrowedFd<'_>, req: &mut IfReq) -> io::Result<()> {
    ifreq_ioctl(sock, IfreqIoctl::GetFlags, req)
}

/// SIOCSIFFLAGS: sets the interface flags of `req.name` to `req.flags()`.
pub(crate) fn sioc_set_if_flags(sock: BorrowedFd<'_>, req: &IfReq) -> io::Result<()> {
    // The kernel only reads the request, so a copy will do.
    ifreq_ioctl(sock, IfreqIoctl::SetFlags, &mut { *req })
}

/// SIOCGIFHWADDR: reads the hardware address of `req.name` into `req`.
pub(crate) fn sioc_get_if_hwaddr(sock: BorrowedFd<'_>, req: &mut IfReq) -> io::Result<()> {
    ifreq_ioctl(sock, IfreqIoctl::GetHwaddr, req)
}

/// SIOCSIFMTU: sets the MTU of `req.name` to the `ifr_mtu` in `req`.
pub(crate) fn sioc_set_if_mtu(sock: BorrowedFd<'_>, req: &IfReq) -> io::Result<()> {
    // The kernel only reads the request, so a copy will do.
    ifreq_ioctl(sock, IfreqIoctl::SetMtu, &mut { *req })
}

/// Takes ownership of a descriptor a successful system call just returned.
fn own(fd: c_int) -> OwnedFd {
    // SAFETY: callers pass only a descriptor the kernel has just handed to
    // us (checked non-negative) and that nothing else owns or will close.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// socket(2); `ty` carries the `SOCK_*` flags.
pub(crate) fn socket(domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes only integer arguments and touches no memory of ours.
    let fd = cvt(unsafe { libc::socket(domain, ty, protocol) })?;
    Ok(own(fd))
}

/// An `AF_INET` datagram socket (close-on-exec) for interface ioctls.
pub(crate) fn inet_dgram_socket() -> io::Result<OwnedFd> {
    socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
}

/// A connected, non-blocking, close-on-exec `AF_UNIX` `SOCK_SEQPACKET` pair.
pub(crate) fn seqpacket_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1; 2];
    let ptr = fds.as_mut_ptr();
    // SAFETY: socketpair(2) writes exactly two ints through `ptr`, which
    // points to a live local array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            ptr,
        )
    })?;
    Ok((own(fds[0]), own(fds[1])))
}

/// A connected, close-on-exec `AF_UNIX` `SOCK_STREAM` pair (blocking; the
/// caller makes its own end non-blocking).
pub(crate) fn stream_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1; 2];
    let ptr = fds.as_mut_ptr();
    // SAFETY: socketpair(2) writes exactly two ints through `ptr`, which
    // points to a live local array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            ptr,
        )
    })?;
    Ok((own(fds[0]), own(fds[1])))
}

/// readv(2) into `bufs`, retrying on `EINTR`.
pub(crate) fn readv(fd: BorrowedFd<'_>, bufs: &mut [std::io::IoSliceMut<'_>]) -> io::Result<usize> {
    let count = c_int::try_from(bufs.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many buffers"))?;
    // `IoSliceMut` is guaranteed ABI-compatible with `struct iovec` on Unix.
    let iov: *const libc::iovec = bufs.as_mut_ptr().cast_const().cast();
    retry_eintr(|| {
        // SAFETY: readv(2) reads `count` iovecs through `iov` (the exclusively
        // borrowed `bufs`) and writes at most their lengths into the memory
        // they describe, all borrowed for the duration of the call.
        cvt_size(unsafe { libc::readv(fd.as_raw_fd(), iov, count) })
    })
}

/// sendmsg(2) of all of `bufs` as one write with `MSG_NOSIGNAL` (a peer
/// that hung up is `EPIPE`, never `SIGPIPE`) and `MSG_DONTWAIT`, retrying
/// on `EINTR`.
pub(crate) fn send_nosignal(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is guaranteed ABI-compatible with `struct iovec` on Unix;
    // sendmsg only reads through the pointer.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len();
    retry_eintr(|| {
        // SAFETY: sendmsg(2) reads `msg` and the iovecs and memory it
        // describes (the borrowed `bufs`), all alive across the call.
        cvt_size(unsafe {
            libc::sendmsg(
                fd.as_raw_fd(),
                &msg,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        })
    })
}

/// Adds `O_NONBLOCK` to the file status flags of `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and touches no memory of ours.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: F_SETFL takes an integer argument and touches no memory of ours.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

// The frame I/O below calls the kernel through syscall(2), not glibc's
// read/writev/readv: those are thread-cancellation points whose
// bookkeeping (__pthread_{enable,disable}_asynccancel) took ~5% of a
// virtio-net TX worker's time per frame, and petrel never cancels threads.
// Same system calls, so a seccomp filter sees no difference.

/// read(2) into `buf`, retrying on `EINTR`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let ptr: *mut c_void = buf.as_mut_ptr().cast();
    retry_eintr(|| {
        // SAFETY: read(2) writes at most `buf.len()` bytes through `ptr`,
        // which points to the start of the exclusively borrowed `buf`.
        cvt_size(
            unsafe { libc::syscall(libc::SYS_read, fd.as_raw_fd(), ptr, buf.len()) }
                as libc::ssize_t,
        )
    })
}

/// writev(2) of all of `bufs` as one write, retrying on `EINTR`.
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = c_int::try_from(bufs.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many buffers"))?;
    // `IoSlice` is guaranteed ABI-compatible with `struct iovec` on Unix.
    let iov: *const libc::iovec = bufs.as_ptr().cast();
    retry_eintr(|| {
        // SAFETY: writev(2) reads `count` iovecs through `iov` (the borrowed
        // `bufs`, laid out as iovecs) and the memory they describe, all of
        // which stays borrowed for the duration of the call.
        cvt_size(
            unsafe { libc::syscall(libc::SYS_writev, fd.as_raw_fd(), iov, count) } as libc::ssize_t,
        )
    })
}

/// writev(2) of raw `iovecs` as one write, retrying on `EINTR`.
///
/// # Safety
///
/// Every iovec must describe memory that stays mapped and readable for the
/// whole call. The memory may be written concurrently by someone else (e.g.
/// a guest): no Rust reference to it is made, the kernel copies it.
pub(crate) unsafe fn writev_raw(fd: BorrowedFd<'_>, iovecs: &[libc::iovec]) -> io::Result<usize> {
    let count = c_int::try_from(iovecs.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many buffers"))?;
    let iov = iovecs.as_ptr();
    retry_eintr(|| {
        // SAFETY: writev(2) reads `count` iovecs through `iov` (the borrowed
        // `iovecs`) and the memory they describe, which the caller keeps
        // mapped and readable for the duration of this function.
        cvt_size(
            unsafe { libc::syscall(libc::SYS_writev, fd.as_raw_fd(), iov, count) } as libc::ssize_t,
        )
    })
}

/// readv(2) of one frame into raw `iovecs`, retrying on `EINTR`.
///
/// # Safety
///
/// Every iovec must describe memory that stays mapped and writable for the
/// whole call. The memory may be read or written concurrently by someone
/// else (e.g. a guest): no Rust reference to it is made, the kernel writes
/// it.
pub(crate) unsafe fn readv_raw(fd: BorrowedFd<'_>, iovecs: &[libc::iovec]) -> io::Result<usize> {
    let count = c_int::try_from(iovecs.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many buffers"))?;
    let iov = iovecs.as_ptr();
    retry_eintr(|| {
        // SAFETY: readv(2) reads `count` iovecs through `iov` (the borrowed
        // `iovecs`) and writes the memory they describe, which the caller
        // keeps mapped and writable for the duration of this function.
        cvt_size(
            unsafe { libc::syscall(libc::SYS_readv, fd.as_raw_fd(), iov, count) } as libc::ssize_t,
        )
    })
}

/// mknod(2) of a character device node `path` for `dev` with mode 0600.
pub(crate) fn mknod_char(path: &CStr, dev: libc::dev_t) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call,
    // which only reads it; mknod touches no other memory of ours.
    cvt(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, dev) }).map(drop)
}

/// open(2) of `path` read-write and close-on-exec.
pub(crate) fn open_rdwr(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call,
    // which only reads it; the returned descriptor is checked, then owned.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    Ok(own(fd))
}

/// Effective user id of this process.
#[cfg(test)]
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_matches_libc() {
        assert_eq!(
            std::mem::size_of::<IfReq>(),
            std::mem::size_of::<libc::ifreq>()
        );
        assert_eq!(
            std::mem::align_of::<IfReq>(),
            std::mem::align_of::<libc::ifreq>()
        );
    }

    #[test]
    fn ifreq_name_encoding() {
        let req = IfReq::with_name("tap0");
        assert_eq!(&req.name[..5], b"tap0\0");
        assert!(req.name[4..].iter().all(|&b| b == 0));
        assert_eq!(req.name(), "tap0");
        assert!(req.ifru.iter().all(|&b| b == 0));

        // 15 bytes is the longest name; the 16th byte stays NUL.
        let req = IfReq::with_name("abcdefghijklmno");
        assert_eq!(&req.name[..15], b"abcdefghijklmno");
        assert_eq!(req.name[15], 0);
        assert_eq!(req.name(), "abcdefghijklmno");

        // An over-long name never loses the terminator.
        let req = IfReq::with_name("abcdefghijklmnopq");
        assert_eq!(req.name[15], 0);
        assert_eq!(req.name(), "abcdefghijklmno");

        // A name the kernel filled to the brim still decodes.
        let mut req = IfReq::with_name("");
        req.name = [b'x'; IFNAMSIZ];
        assert_eq!(req.name().len(), IFNAMSIZ);
    }

    #[test]
    fn ifreq_union_fields() {
        let mut req = IfReq::with_name("eth0");
        req.set_flags(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
        assert_eq!(req.flags(), 0x5002);
        assert_eq!(&req.ifru[..2], &0x5002_i16.to_ne_bytes());
        req.set_mtu(9000);
        assert_eq!(&req.ifru[..4], &9000_i32.to_ne_bytes());
        req.ifru[2..8].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(req.hwaddr(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    }

    // The generic _IOC encoding; powerpc, mips and sparc differ.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    #[test]
    fn ioctl_numbers() {
        assert_eq!(u64::from(TUNSETIFF as u32), 0x4004_54ca);
        assert_eq!(u64::from(TUNGETIFF as u32), 0x8004_54d2);
        assert_eq!(u64::from(TUNSETOFFLOAD as u32), 0x4004_54d0);
        assert_eq!(u64::from(TUNSETVNETHDRSZ as u32), 0x4004_54d8);
        assert_eq!(u64::from(SIOCSIFFLAGS as u32), 0x8914);
        assert_eq!(u64::from(SIOCGIFHWADDR as u32), 0x8927);
    }
}
