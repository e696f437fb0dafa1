//! The DHCP server's UDP socket on the host side of a tap.
//!
//! The socket is bound to `0.0.0.0:67` and, with `SO_BINDTODEVICE`, to the
//! tap interface only, so it sees the guest's broadcasts (sent from
//! `0.0.0.0` before the guest has an address) and nothing from other
//! interfaces. `SO_REUSEADDR` lets one such socket per tap coexist in the
//! same network namespace.
//!
//! Needs CAP_NET_BIND_SERVICE (for port 67); `SO_BINDTODEVICE` on a
//! socket not yet bound to a device needs no CAP_NET_RAW since Linux 5.7
//! (before that it did). petrel in a podman container with the default
//! capability set (no NET_RAW) serves DHCP this way (tests/container.rs).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use super::drain::{serve_pending, Answer};
use super::server::{DhcpAction, DhcpServer};
use crate::sys;

/// The DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;

/// A non-blocking UDP socket serving DHCP on one interface; see the
/// [module docs](self).
#[derive(Debug)]
pub struct DhcpSocket {
    socket: UdpSocket,
    iface: String,
}

impl DhcpSocket {
    /// Binds `0.0.0.0:67` on interface `iface` with `SO_BINDTODEVICE`,
    /// `SO_BROADCAST` and `SO_REUSEADDR`; the socket is non-blocking and
    /// close-on-exec. The interface must exist.
    pub fn bind(iface: &str) -> io::Result<Self> {
        let name = sys::iface_name(iface)?;
        let fd = sys::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )?;
        sys::set_socket_int_opt(fd.as_fd(), libc::SO_REUSEADDR, 1)
            .map_err(|e| annotate(e, "setsockopt(SO_REUSEADDR)"))?;
        sys::set_socket_int_opt(fd.as_fd(), libc::SO_BROADCAST, 1)
            .map_err(|e| annotate(e, "setsockopt(SO_BROADCAST)"))?;
        sys::bind_to_device(fd.as_fd(), &name)
            .map_err(|e| annotate(e, &format!("setsockopt(SO_BINDTODEVICE, {iface:?})")))?;
        sys::bind(fd.as_fd(), &any_addr(SERVER_PORT))
            .map_err(|e| annotate(e, "bind(0.0.0.0:67)"))?;
        tracing::debug!(iface, "DHCP socket bound");
        Ok(Self {
            socket: UdpSocket::from(fd),
            iface: iface.to_owned(),
        })
    }

    /// The interface the socket is bound to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Reads every pending datagram, passes each to `server` and sends its
    /// replies; returns once the socket would block.
    ///
    /// A reply with `broadcast` goes to `255.255.255.255:68` out of the
    /// bound interface. A unicast reply goes to `client_ip:68`; the server
    /// only asks for unicast when the client already has an address
    /// (`ciaddr` set and no broadcast flag), because sending to an address
    /// the guest has not configured yet would need the kernel to resolve it
    /// by ARP, which the guest would not answer. That is also why an OFFER
    /// to a client without the broadcast flag is broadcast rather than
    /// unicast to `yiaddr` as RFC 2131 §4.1 suggests: doing that properly
    /// needs a raw socket or an ARP cache entry, and a broadcast reaches the
    /// guest on the point-to-point tap link just the same.
    ///
    /// Failing to send a reply is logged and does not stop the loop (the
    /// client retransmits); failing to receive is returned.
    pub fn handle_readable(&mut self, server: &mut DhcpServer) -> io::Result<()> {
        serve_pending(
            &self.socket,
            &self.iface,
            "DHCP",
            |packet, _src| match server.handle(packet) {
                DhcpAction::Reply { packet, broadcast } => {
                    let ip = if broadcast {
                        Ipv4Addr::BROADCAST
                    } else {
                        server.config().client_ip
                    };
                    let dest = SocketAddrV4::new(ip, CLIENT_PORT).into();
                    Answer::Reply { packet, dest }
                }
                DhcpAction::Ignore(reason) => Answer::Ignore(reason),
            },
        )
    }
}

impl AsFd for DhcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for DhcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

fn annotate(err: io::Error, op: &str) -> io::Error {
    sys::socket_error(
        err,
        op,
        "CAP_NET_RAW and CAP_NET_BIND_SERVICE",
        Some("another DHCP server owns port 67 on this interface"),
    )
}

/// `0.0.0.0:port`.
fn any_addr(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::UNSPECIFIED).to_be(),
        },
        sin_zero: [0; 8],
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::time::{Duration, Instant};

    use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
    use dhcproto::{Decodable, Decoder};

    use super::*;
    use crate::dhcp::server::test_util::{config, internet_checksum, request, CLIENT, MAC, SERVER};
    use net_backend::{FrameBackend, Tap, VNET_HDR_LEN};

    #[test]
    fn bind_rejects_bad_names() {
        assert_eq!(
            DhcpSocket::bind("").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            DhcpSocket::bind("a\0b").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            DhcpSocket::bind("sixteen-chars-xx").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    /// vnet header + Ethernet + IPv4 + UDP 68 -> 67 broadcast carrying `dhcp`.
    fn client_broadcast_frame(dhcp: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN];
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let udp_len = 8 + dhcp.len();
        let total = u16::try_from(20 + udp_len).unwrap();
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0]);
        ip.extend_from_slice(&[255, 255, 255, 255]);
        let csum = internet_checksum(&ip);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&CLIENT_PORT.to_be_bytes());
        f.extend_from_slice(&SERVER_PORT.to_be_bytes());
        f.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum
        f.extend_from_slice(dhcp);
        f
    }

    /// If `frame` (vnet header included) is IPv4/UDP 67 -> 68, returns the
    /// Ethernet destination, IP source, IP destination and UDP payload.
    fn parse_server_reply(frame: &[u8]) -> Option<([u8; 6], Ipv4Addr, Ipv4Addr, &[u8])> {
        let eth = frame.get(VNET_HDR_LEN..)?;
        if eth.get(12..14)? != [0x08, 0x00] {
            return None;
        }
        let ip = eth.get(14..)?;
        let ihl = usize::from(ip.first()? & 0x0f) * 4;
        if *ip.get(9)? != 17 {
            return None;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = ip.get(ihl..)?;
        if udp.get(0..4)? != [0, 67, 0, 68] {
            return None;
        }
        let mut dst_mac = [0; 6];
        dst_mac.copy_from_slice(&eth[..6]);
        Some((dst_mac, src, dst, udp.get(8..)?))
    }

    /// Sets an IPv4 address (SIOCSIFADDR) and netmask (SIOCSIFNETMASK).
    fn set_ipv4(iface: &str, addr: Ipv4Addr, mask: Ipv4Addr) {
        let sock = sys::inet_dgram_socket().unwrap();
        for (req, value) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, mask)] {
            // SAFETY: ifreq is plain old data; all-zero is a valid value.
            let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
            for (dst, src) in ifr.ifr_name.iter_mut().zip(iface.as_bytes()) {
                *dst = *src as libc::c_char;
            }
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(value).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in is 16 bytes, the size of the sockaddr
            // union member it is written over; both are plain old data.
            ifr.ifr_ifru.ifru_addr =
                unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) };
            // SAFETY: `sock` is an open socket and `ifr` a valid ifreq that
            // the kernel only reads for these requests.
            let rc = unsafe { libc::ioctl(sock.as_raw_fd(), req as libc::Ioctl, &mut ifr) };
            assert_eq!(rc, 0, "ioctl({req:#x}): {}", io::Error::last_os_error());
        }
    }

    #[test]
    fn discover_over_a_tap_gets_an_offer_as_root() {
        sys::in_new_netns(|| {
            let mut tap = Tap::open_named("pdhcp0", 1).unwrap().remove(0);
            tap.set_up().unwrap();
            set_ipv4("pdhcp0", SERVER, Ipv4Addr::new(255, 255, 255, 0));
            let mut socket = DhcpSocket::bind("pdhcp0").unwrap();
            assert_eq!(socket.iface(), "pdhcp0");
            let mut server = DhcpServer::new(config());

            let discover = request(MessageType::Discover, &MAC, Ipv4Addr::UNSPECIFIED, &[]);
            let frame = client_broadcast_frame(&discover);
            assert_eq!(
                tap.write_frame(&[IoSlice::new(&frame)]).unwrap(),
                frame.len()
            );

            let deadline = Instant::now() + Duration::from_secs(5);
            let mut buf = vec![0u8; 65536];
            let reply = loop {
                assert!(Instant::now() < deadline, "no OFFER on the tap");
                socket.handle_readable(&mut server).unwrap();
                match tap.read_frame(&mut buf) {
                    Ok(n) => {
                        // Other traffic (IPv6 router solicitations, MLD) is skipped.
                        if let Some((mac, src, dst, payload)) = parse_server_reply(&buf[..n]) {
                            break (mac, src, dst, payload.to_vec());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("tap read: {e}"),
                }
            };
            let (dst_mac, src, dst, payload) = reply;
            assert_eq!(dst_mac, [0xff; 6]);
            assert_eq!(src, SERVER);
            assert_eq!(dst, Ipv4Addr::BROADCAST);
            let offer = Message::decode(&mut Decoder::new(&payload)).unwrap();
            assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
            assert_eq!(offer.yiaddr(), CLIENT);
            assert_eq!(offer.chaddr(), MAC);
            assert_eq!(
                offer.opts().get(OptionCode::ServerIdentifier),
                Some(&DhcpOption::ServerIdentifier(SERVER))
            );
            assert_eq!(
                offer.opts().get(OptionCode::SubnetMask),
                Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
            );
            assert_eq!(server.counters().discovers, 1);
            assert_eq!(server.counters().offers, 1);
        });
    }
}
