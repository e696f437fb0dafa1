//! The socket system calls of the pod plumbing (DHCPv4/v6 and RA sockets):
//! one small safe wrapper per call std has no API for.
//!
//! Every `unsafe` block of the crate's sockets lives here, each around
//! exactly one foreign call. (The backends' ioctls and frame I/O are in
//! `net_backend`'s own `sys`.)

use std::ffi::{CStr, CString};
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_int, c_void};

pub(crate) use net_backend::syscall::{
    cvt, cvt_size, retry_eintr, set_opt, set_socket_int_opt, socklen_of,
};

/// One receive on a non-blocking socket: `None` once it would block.
pub(crate) fn recv_next<T>(recv: impl FnMut() -> io::Result<T>) -> io::Result<Option<T>> {
    match retry_eintr(recv) {
        Ok(received) => Ok(Some(received)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// `err` of the socket call `op`, with the likely cause of the usual
/// failures: missing capabilities (the socket `needs` them), a missing
/// interface, and the address being taken (by `in_use`, if given).
pub(crate) fn socket_error(
    err: io::Error,
    op: &str,
    needs: &str,
    in_use: Option<&str>,
) -> io::Error {
    let hint = match (err.raw_os_error(), in_use) {
        (Some(libc::EPERM | libc::EACCES), _) => format!(" (needs {needs}, i.e. root)"),
        (Some(libc::ENODEV | libc::ENXIO), _) => " (no such interface)".to_owned(),
        (Some(libc::EADDRINUSE), Some(owner)) => format!(" ({owner})"),
        _ => String::new(),
    };
    io::Error::new(err.kind(), format!("{op} failed: {err}{hint}"))
}

/// Validates an interface name ([`net_backend::validate_ifname`]) for
/// `SO_BINDTODEVICE`/`if_nametoindex`; a bad one is `InvalidInput`.
pub(crate) fn iface_name(iface: &str) -> io::Result<CString> {
    net_backend::validate_ifname(iface)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    CString::new(iface).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
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
#[cfg(test)]
pub(crate) fn inet_dgram_socket() -> io::Result<OwnedFd> {
    socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
}

/// bind(2) to `addr`, a `sockaddr_in` or `sockaddr_in6`.
pub(crate) fn bind<T: Copy>(fd: BorrowedFd<'_>, addr: &T) -> io::Result<()> {
    let ptr: *const libc::sockaddr = (addr as *const T).cast();
    // SAFETY: the kernel reads at most `size_of::<T>()` bytes through `ptr`,
    // which points to `addr`, borrowed across the call.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), ptr, socklen_of::<T>()) }).map(drop)
}

/// setsockopt(2) `SO_BINDTODEVICE`: the socket only sees traffic of the
/// interface `name`.
pub(crate) fn bind_to_device(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes_with_nul();
    let len = libc::socklen_t::try_from(bytes.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let ptr: *const c_void = bytes.as_ptr().cast();
    // SAFETY: the kernel reads at most `len` bytes of the NUL-terminated
    // name through `ptr`; the name outlives the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ptr,
            len,
        )
    })
    .map(drop)
}

/// The index of interface `name`.
pub(crate) fn ifindex(name: &CStr) -> io::Result<u32> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call,
    // which only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// A non-blocking, close-on-exec `AF_INET6` socket.
pub(crate) fn socket6(ty: c_int, proto: c_int) -> io::Result<OwnedFd> {
    socket(
        libc::AF_INET6,
        ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        proto,
    )
}

/// Joins IPv6 multicast `group` on interface `ifindex`.
pub(crate) fn join_group6(fd: BorrowedFd<'_>, group: Ipv6Addr, ifindex: u32) -> io::Result<()> {
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: ifindex,
    };
    set_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)
}

fn to_sockaddr6(addr: &SocketAddrV6) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: addr.port().to_be(),
        sin6_flowinfo: addr.flowinfo().to_be(),
        sin6_addr: libc::in6_addr {
            s6_addr: addr.ip().octets(),
        },
        sin6_scope_id: addr.scope_id(),
    }
}

/// bind(2) to an IPv6 `addr`.
pub(crate) fn bind6(fd: BorrowedFd<'_>, addr: &SocketAddrV6) -> io::Result<()> {
    bind(fd, &to_sockaddr6(addr))
}

/// sendto(2) `dest`, retried on EINTR.
pub(crate) fn send_to6(fd: BorrowedFd<'_>, buf: &[u8], dest: &SocketAddrV6) -> io::Result<()> {
    let sa = to_sockaddr6(dest);
    retry_eintr(|| {
        // SAFETY: `fd` is a valid socket for the borrow; the kernel reads
        // `buf.len()` bytes from `buf` and the sockaddr_in6 `sa` of the
        // size passed, both alive across the call.
        let ret = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&sa as *const libc::sockaddr_in6).cast(),
                socklen_of::<libc::sockaddr_in6>(),
            )
        };
        cvt_size(ret).map(drop)
    })
}

/// recvfrom(2), returning the length and the IPv6 source.
pub(crate) fn recv_from6(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV6)> {
    let mut sa = libc::sockaddr_in6 {
        sin6_family: 0,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
        sin6_scope_id: 0,
    };
    let mut sa_len = socklen_of::<libc::sockaddr_in6>();
    // SAFETY: `fd` is a valid socket for the borrow; the kernel writes at
    // most `buf.len()` bytes to `buf` and at most `sa_len` bytes to `sa`,
    // both exclusively borrowed across the call.
    let ret = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut sa as *mut libc::sockaddr_in6).cast(),
            &mut sa_len,
        )
    };
    let len = cvt_size(ret)?;
    let src = SocketAddrV6::new(
        Ipv6Addr::from(sa.sin6_addr.s6_addr),
        u16::from_be(sa.sin6_port),
        u32::from_be(sa.sin6_flowinfo),
        sa.sin6_scope_id,
    );
    Ok((len.min(buf.len()), src))
}

/// Effective user id of this process.
#[cfg(test)]
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Runs `test` on a thread of its own in a new network namespace, so the
/// interfaces it makes exist only there; skips it (saying why) unless this
/// process may make taps, i.e. is root with `/dev/net/tun`.
#[cfg(test)]
pub(crate) fn in_new_netns(test: impl FnOnce() + Send + 'static) {
    if euid() != 0 {
        println!("skipped: needs root");
        return;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("skipped: /dev/net/tun is missing");
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: unshare(2) takes a flag word and touches no memory; it
        // moves only this thread into a new network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
        test();
    })
    .join()
    .unwrap();
}

/// Makes the child of `cmd` inherit descriptor `fd` across exec (it is
/// close-on-exec here) and get `SIGKILL` when this thread's process dies.
pub(crate) fn keep_fd_and_die_with_parent(cmd: &mut std::process::Command, fd: c_int) {
    use std::os::unix::process::CommandExt;
    let hook = move || -> io::Result<()> {
        // SAFETY: fcntl(F_SETFD) on a descriptor number, async-signal-safe
        // (this runs between fork and exec); no memory is touched.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only and is
        // async-signal-safe.
        cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) })?;
        Ok(())
    };
    // SAFETY: the hook only makes the two async-signal-safe calls above,
    // allocates nothing and takes no lock, as pre_exec requires.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// pidfd_open(2): a descriptor that polls readable when process `pid`
/// (our unreaped child) exits.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
    let fd = c_int::try_from(ret).map_err(|_| io::Error::last_os_error())?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `fd`, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// poll(2) for readability of `fd`, up to `timeout_ms`; true when readable.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) reads and writes exactly one pollfd, the local `pfd`.
    let n = retry_eintr(|| cvt(unsafe { libc::poll(&mut pfd, 1, timeout_ms) }))?;
    Ok(n > 0)
}

/// The hard `RLIMIT_NOFILE` of this process.
pub(crate) fn nofile_hard_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit through the pointer, which
    // points to the local `lim`.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok(lim.rlim_max)
}
