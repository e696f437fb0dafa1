//! The DHCPv6 server's UDP socket on the host side of a tap.

use std::ffi::CString;
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::server::{Dhcp6Action, Dhcp6Server};
use super::{ALL_DHCP_SERVERS, SERVER_PORT};
use crate::dhcp::drain::{serve_pending, Answer};
use crate::sys;

/// The DHCPv6 server's UDP socket on the host side of a tap: `[::]:547`,
/// `SO_BINDTODEVICE` to the tap, member of `ff02::1:2` there,
/// `SO_REUSEADDR` so one per tap can coexist in a namespace. Replies go
/// back to the client's (link-local) address and port.
///
/// Needs CAP_NET_RAW (for `SO_BINDTODEVICE`) and CAP_NET_BIND_SERVICE (for
/// port 547), i.e. root in practice.
#[derive(Debug)]
pub struct Dhcp6Socket {
    socket: std::net::UdpSocket,
    iface: String,
}

impl Dhcp6Socket {
    /// Binds the socket on `iface`, which must exist; non-blocking and
    /// close-on-exec.
    pub fn bind(iface: &str) -> io::Result<Self> {
        let name: CString = sys::iface_name(iface)?;
        let ifindex = sys::ifindex(&name).map_err(|e| annotate(e, "if_nametoindex"))?;
        let fd: OwnedFd = sys::socket6(libc::SOCK_DGRAM, libc::IPPROTO_UDP)
            .map_err(|e| annotate(e, "socket(AF_INET6, SOCK_DGRAM)"))?;
        let one: libc::c_int = 1;
        sys::set_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)
            .map_err(|e| annotate(e, "setsockopt(SO_REUSEADDR)"))?;
        sys::set_opt(fd.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &one)
            .map_err(|e| annotate(e, "setsockopt(IPV6_V6ONLY)"))?;
        sys::bind_to_device(fd.as_fd(), &name)
            .map_err(|e| annotate(e, &format!("setsockopt(SO_BINDTODEVICE, {iface:?})")))?;
        sys::bind6(
            fd.as_fd(),
            &SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, SERVER_PORT, 0, 0),
        )
        .map_err(|e| annotate(e, "bind([::]:547)"))?;
        sys::join_group6(fd.as_fd(), ALL_DHCP_SERVERS, ifindex)
            .map_err(|e| annotate(e, "setsockopt(IPV6_ADD_MEMBERSHIP, ff02::1:2)"))?;
        tracing::debug!(iface, "DHCPv6 socket bound");
        Ok(Self {
            socket: std::net::UdpSocket::from(fd),
            iface: iface.to_owned(),
        })
    }

    /// The interface the socket is bound to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Reads every pending datagram, passes each to `server` and sends its
    /// replies to the sender; returns once the socket would block. Failing
    /// to send is logged (the client retransmits); failing to receive is
    /// returned.
    pub fn handle_readable(&mut self, server: &mut Dhcp6Server) -> io::Result<()> {
        serve_pending(
            &self.socket,
            &self.iface,
            "DHCPv6",
            |packet, src| match server.handle(packet) {
                Dhcp6Action::Reply(reply) => Answer::Reply {
                    packet: reply,
                    dest: src,
                },
                Dhcp6Action::Ignore(reason) => Answer::Ignore(reason),
            },
        )
    }
}

impl AsFd for Dhcp6Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for Dhcp6Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

fn annotate(err: io::Error, op: &str) -> io::Error {
    sys::socket_error(
        err,
        op,
        "CAP_NET_RAW and CAP_NET_BIND_SERVICE",
        Some("another DHCPv6 server owns port 547 on this interface"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_rejects_bad_names() {
        for name in ["", "a\0b", "sixteen-chars-xx"] {
            assert_eq!(
                Dhcp6Socket::bind(name).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
