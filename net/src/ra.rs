//! IPv6 Router Advertisements for one guest on a tap or bridge link.
//!
//! petrel's masquerade binding gives the guest a fixed address from a small
//! ULA range (by default `fd10:0:2::2` in `fd10:0:2::/120`, the gateway
//! `fd10:0:2::1` sitting on the host side), like KubeVirt. A /120 cannot be
//! used for SLAAC (RFC 4862 needs a /64), so the advertisement:
//!
//! - sets the M (managed) flag, so the guest gets its address by stateful
//!   DHCPv6 ([`crate::dhcp::v6`]), and the O (other configuration) flag;
//! - makes the host its default router (router lifetime [`ROUTER_LIFETIME`]);
//! - carries a Prefix Information option for the CIDR with L=1, A=0: the
//!   guest adds an on-link route for the prefix but forms no address from it;
//! - carries the host's link-layer address and the link MTU.
//!
//! - [`router_advertisement`] builds the ICMPv6 message; pure.
//! - [`RaSocket`] is the raw ICMPv6 socket that multicasts it and answers
//!   Router Solicitations. The socket owns no timer: unsolicited
//!   advertisements on the RFC 4861 schedule are sent by
//!   [`PodNetService`](crate::service::PodNetService).
//!
//! Needs CAP_NET_RAW (raw socket, `SO_BINDTODEVICE`), i.e. root in practice.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::budget::{RaRateLimit, MAX_DATAGRAMS_PER_WAKEUP};
use crate::sys;

/// ICMPv6 Router Solicitation (RFC 4861 §4.1).
pub const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 Router Advertisement (RFC 4861 §4.2).
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
/// Hop limit the advertisement tells the guest to use.
pub const CUR_HOP_LIMIT: u8 = 64;
/// Router lifetime advertised, in seconds (3 × MaxRtrAdvInterval).
pub const ROUTER_LIFETIME: u16 = 1800;
/// How often the caller should multicast an unsolicited advertisement; well
/// under a third of [`ROUTER_LIFETIME`] so a lost packet or two does not let
/// the default route expire.
pub const RA_INTERVAL: Duration = Duration::from_secs(300);
/// Valid lifetime of the on-link prefix, in seconds (radvd's default).
pub const PREFIX_VALID_LIFETIME: u32 = 86_400;
/// Preferred lifetime of the on-link prefix, in seconds (radvd's default).
pub const PREFIX_PREFERRED_LIFETIME: u32 = 14_400;

/// M flag: addresses are available via DHCPv6.
pub const FLAG_MANAGED: u8 = 0x80;
/// O flag: other configuration (DNS) is available via DHCPv6.
pub const FLAG_OTHER: u8 = 0x40;
/// Prefix Information L flag: the prefix is on-link.
pub const PREFIX_FLAG_ON_LINK: u8 = 0x80;
/// Prefix Information A flag: usable for SLAAC (never set here).
pub const PREFIX_FLAG_AUTONOMOUS: u8 = 0x40;

/// Option type: source link-layer address.
const OPT_SOURCE_LL_ADDR: u8 = 1;
/// Option type: prefix information.
const OPT_PREFIX_INFO: u8 = 3;
/// Option type: MTU.
const OPT_MTU: u8 = 5;

/// All-nodes link-local multicast group, where advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All-routers link-local multicast group, where solicitations arrive.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// `ICMP6_FILTER` socket option (`<netinet/icmp6.h>`), level `IPPROTO_ICMPV6`;
/// not in the `libc` crate.
const ICMP6_FILTER: libc::c_int = 1;

/// Large enough for any solicitation (they are a few dozen bytes).
const RECV_BUF_LEN: usize = 2048;

/// `prefix` with every bit past `prefix_len` cleared (`prefix_len` is
/// clamped to 128).
pub fn mask_prefix(prefix: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    let len = u32::from(prefix_len.min(128));
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    Ipv6Addr::from(u128::from(prefix) & mask)
}

/// Builds a Router Advertisement (the ICMPv6 message, without the IPv6
/// header; the checksum field is zero because the kernel fills it in for
/// raw ICMPv6 sockets). See the [module docs](self) for the contents.
///
/// Layout: 16-byte header, source link-layer address option (8 bytes), MTU
/// option (8 bytes), Prefix Information option (32 bytes); 64 bytes in all.
pub fn router_advertisement(mac: [u8; 6], mtu: u32, prefix: Ipv6Addr, prefix_len: u8) -> Vec<u8> {
    let prefix_len = prefix_len.min(128);
    let mut ra = Vec::with_capacity(64);
    // Header: type, code, checksum.
    ra.extend_from_slice(&[ICMPV6_ROUTER_ADVERTISEMENT, 0, 0, 0]);
    ra.push(CUR_HOP_LIMIT);
    ra.push(FLAG_MANAGED | FLAG_OTHER);
    ra.extend_from_slice(&ROUTER_LIFETIME.to_be_bytes());
    ra.extend_from_slice(&0u32.to_be_bytes()); // reachable time: unspecified
    ra.extend_from_slice(&0u32.to_be_bytes()); // retrans timer: unspecified
                                               // Source link-layer address: length in units of 8 bytes.
    ra.extend_from_slice(&[OPT_SOURCE_LL_ADDR, 1]);
    ra.extend_from_slice(&mac);
    // MTU.
    ra.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
    ra.extend_from_slice(&mtu.to_be_bytes());
    // Prefix information: on-link only.
    ra.extend_from_slice(&[OPT_PREFIX_INFO, 4, prefix_len, PREFIX_FLAG_ON_LINK]);
    ra.extend_from_slice(&PREFIX_VALID_LIFETIME.to_be_bytes());
    ra.extend_from_slice(&PREFIX_PREFERRED_LIFETIME.to_be_bytes());
    ra.extend_from_slice(&0u32.to_be_bytes()); // reserved
    ra.extend_from_slice(&mask_prefix(prefix, prefix_len).octets());
    ra
}

/// True when `msg` (an ICMPv6 message) is a well-formed Router Solicitation
/// as far as can be told without the IPv6 header (RFC 4861 §6.1.1: code 0,
/// at least 8 bytes, every option of non-zero length and within bounds).
pub fn is_router_solicitation(msg: &[u8]) -> bool {
    if msg.len() < 8 || msg[0] != ICMPV6_ROUTER_SOLICITATION || msg[1] != 0 {
        return false;
    }
    let mut opts = &msg[8..];
    while !opts.is_empty() {
        let Some(&len) = opts.get(1) else {
            return false;
        };
        let len = usize::from(len) * 8;
        if len == 0 || len > opts.len() {
            return false;
        }
        opts = &opts[len..];
    }
    true
}

/// Counters of a [`RaSocket`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaCounters {
    /// Router Solicitations received (and answered).
    pub solicitations: u64,
    /// Router Advertisements sent, solicited or not.
    pub advertisements: u64,
    /// Received ICMPv6 messages that were not valid solicitations.
    pub dropped: u64,
    /// Advertisements that could not be sent.
    pub send_errors: u64,
    /// Solicitations inside MIN_DELAY_BETWEEN_RAS of the last
    /// advertisement: answered when the window ends.
    pub rate_limited: u64,
}

/// A non-blocking raw ICMPv6 socket advertising the host as router on one
/// interface; see the [module docs](self).
///
/// The socket is bound to the interface (`SO_BINDTODEVICE`), sends with hop
/// limit 255 (RFC 4861 requires it; receivers drop anything else), only
/// receives Router Solicitations (`ICMP6_FILTER`) and joins `ff02::2`. The
/// kernel picks the interface's link-local address as source, so the
/// interface must have one (the default unless `addr_gen_mode` is `none`).
/// The hop limit of received solicitations is not checked (that needs
/// `IPV6_RECVHOPLIMIT` ancillary data); answering a forged one only costs
/// an advertisement on the guest's own link.
#[derive(Debug)]
pub struct RaSocket {
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    ra: Vec<u8>,
    counters: RaCounters,
    limit: RaRateLimit,
    /// A rate-limited solicitation is waiting for its advertisement.
    reply_owed: bool,
}

impl RaSocket {
    /// Opens the socket on `iface` (which must exist) for the advertisement
    /// [`router_advertisement`]`(mac, mtu, prefix, prefix_len)`.
    pub fn bind(
        iface: &str,
        mac: [u8; 6],
        mtu: u32,
        prefix: Ipv6Addr,
        prefix_len: u8,
    ) -> io::Result<Self> {
        let name = sys::iface_name(iface)?;
        let ifindex = sys::ifindex(&name).map_err(|e| annotate(e, "if_nametoindex"))?;
        let fd = sys::socket6(libc::SOCK_RAW, libc::IPPROTO_ICMPV6)
            .map_err(|e| annotate(e, "socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)"))?;
        sys::bind_to_device(fd.as_fd(), &name)
            .map_err(|e| annotate(e, &format!("setsockopt(SO_BINDTODEVICE, {iface:?})")))?;
        let hops: libc::c_int = 255;
        sys::set_opt(
            fd.as_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
            &hops,
        )
        .map_err(|e| annotate(e, "setsockopt(IPV6_MULTICAST_HOPS)"))?;
        sys::set_opt(
            fd.as_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            &hops,
        )
        .map_err(|e| annotate(e, "setsockopt(IPV6_UNICAST_HOPS)"))?;
        let ifindex_int = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        sys::set_opt(
            fd.as_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            &ifindex_int,
        )
        .map_err(|e| annotate(e, "setsockopt(IPV6_MULTICAST_IF)"))?;
        // Our own multicast RA looped back makes the host kernel log "RA
        // from local address".
        let zero: libc::c_int = 0;
        sys::set_opt(
            fd.as_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_LOOP,
            &zero,
        )
        .map_err(|e| annotate(e, "setsockopt(IPV6_MULTICAST_LOOP)"))?;
        let filter = icmp6_filter_pass_only(ICMPV6_ROUTER_SOLICITATION);
        sys::set_opt(fd.as_fd(), libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
            .map_err(|e| annotate(e, "setsockopt(ICMP6_FILTER)"))?;
        sys::join_group6(fd.as_fd(), ALL_ROUTERS, ifindex)
            .map_err(|e| annotate(e, "setsockopt(IPV6_ADD_MEMBERSHIP, ff02::2)"))?;
        tracing::debug!(iface, ifindex, "RA socket bound");
        Ok(Self {
            fd,
            iface: iface.to_owned(),
            ifindex,
            ra: router_advertisement(mac, mtu, prefix, prefix_len),
            counters: RaCounters::default(),
            limit: RaRateLimit::default(),
            reply_owed: false,
        })
    }

    /// The interface the socket is bound to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The advertisement this socket sends.
    pub fn advertisement(&self) -> &[u8] {
        &self.ra
    }

    /// The counters so far.
    pub fn counters(&self) -> &RaCounters {
        &self.counters
    }

    /// Multicasts the advertisement to all nodes (`ff02::1`) on the link.
    pub fn send_ra(&mut self) -> io::Result<()> {
        let dest = SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex);
        self.limit.sent(Instant::now());
        self.reply_owed = false;
        match sys::send_to6(self.fd.as_fd(), &self.ra, &dest) {
            Ok(()) => {
                self.counters.advertisements += 1;
                Ok(())
            }
            Err(e) => {
                self.counters.send_errors += 1;
                Err(e)
            }
        }
    }

    /// Whether a multicast advertisement may go out now (RFC 4861's
    /// MIN_DELAY_BETWEEN_RAS), else how long until it may.
    pub fn may_send(&self) -> Result<(), Duration> {
        self.limit.check(Instant::now())
    }

    /// When the advertisement owed to a rate-limited solicitation may go
    /// out; the caller's timer then sends it with [`RaSocket::send_ra`].
    pub fn owed_reply_in(&self) -> Option<Duration> {
        self.reply_owed
            .then(|| self.may_send().err().unwrap_or(Duration::ZERO))
    }

    /// Reads the pending messages (at most [`MAX_DATAGRAMS_PER_WAKEUP`])
    /// and answers Router Solicitations with a multicast advertisement
    /// (RFC 4861 §6.2.6 allows either; the multicast needs no neighbour
    /// resolution), at most one per MIN_DELAY_BETWEEN_RAS: a solicitation
    /// inside that window is owed its answer ([`RaSocket::owed_reply_in`]).
    /// Failing to send is logged; failing to receive is returned.
    pub fn handle_readable(&mut self) -> io::Result<()> {
        let mut buf = [0u8; RECV_BUF_LEN];
        for _ in 0..MAX_DATAGRAMS_PER_WAKEUP {
            let Some((len, src)) = sys::recv_next(|| sys::recv_from6(self.fd.as_fd(), &mut buf))?
            else {
                break;
            };
            let msg = buf.get(..len).unwrap_or(&[]);
            if !is_router_solicitation(msg) {
                self.counters.dropped += 1;
                tracing::debug!(iface = %self.iface, %src, "non-RS ICMPv6 message ignored");
                continue;
            }
            self.counters.solicitations += 1;
            if self.may_send().is_err() {
                self.counters.rate_limited += 1;
                self.reply_owed = true;
                continue;
            }
            if let Err(e) = self.send_ra() {
                tracing::warn!(iface = %self.iface, error = %e, "cannot send router advertisement");
            }
        }
        Ok(())
    }
}

impl AsFd for RaSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for RaSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `struct icmp6_filter` as glibc lays it out: one bit per ICMPv6 type, set
/// when the type is blocked.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Icmp6Filter {
    data: [u32; 8],
}

/// A filter blocking every ICMPv6 type but `pass`
/// (`ICMP6_FILTER_SETBLOCKALL` + `ICMP6_FILTER_SETPASS`).
fn icmp6_filter_pass_only(pass: u8) -> Icmp6Filter {
    let mut data = [u32::MAX; 8];
    if let Some(word) = data.get_mut(usize::from(pass >> 5)) {
        *word &= !(1u32 << (pass & 31));
    }
    Icmp6Filter { data }
}

fn annotate(err: io::Error, op: &str) -> io::Error {
    sys::socket_error(err, op, "CAP_NET_RAW", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    const PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 0);

    #[test]
    fn ra_header_and_flags() {
        let ra = router_advertisement(MAC, 1500, PREFIX, 120);
        assert_eq!(ra.len(), 64);
        assert_eq!(ra[0], 134);
        assert_eq!(ra[1], 0);
        assert_eq!(&ra[2..4], &[0, 0], "checksum left to the kernel");
        assert_eq!(ra[4], 64);
        assert_eq!(ra[5] & FLAG_MANAGED, FLAG_MANAGED);
        assert_eq!(ra[5] & FLAG_OTHER, FLAG_OTHER);
        assert_eq!(ra[5] & 0x3f, 0);
        assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 1800);
        assert_eq!(&ra[8..16], &[0; 8]);
    }

    #[test]
    fn ra_options_layout() {
        let ra = router_advertisement(MAC, 1400, PREFIX, 120);
        // Source link-layer address.
        assert_eq!(&ra[16..18], &[1, 1]);
        assert_eq!(&ra[18..24], &MAC);
        // MTU.
        assert_eq!(&ra[24..28], &[5, 1, 0, 0]);
        assert_eq!(u32::from_be_bytes([ra[28], ra[29], ra[30], ra[31]]), 1400);
        // Prefix information: on-link, not autonomous.
        let pio = &ra[32..64];
        assert_eq!(pio[0], 3);
        assert_eq!(pio[1], 4);
        assert_eq!(pio[2], 120);
        assert_eq!(pio[3] & PREFIX_FLAG_ON_LINK, PREFIX_FLAG_ON_LINK);
        assert_eq!(pio[3] & PREFIX_FLAG_AUTONOMOUS, 0);
        assert_eq!(
            u32::from_be_bytes([pio[4], pio[5], pio[6], pio[7]]),
            PREFIX_VALID_LIFETIME
        );
        assert_eq!(
            u32::from_be_bytes([pio[8], pio[9], pio[10], pio[11]]),
            PREFIX_PREFERRED_LIFETIME
        );
        assert_eq!(&pio[12..16], &[0; 4]);
        assert_eq!(&pio[16..32], &PREFIX.octets());
    }

    #[test]
    fn ra_prefix_is_masked() {
        let host = Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 0x1ff);
        let ra = router_advertisement(MAC, 1500, host, 120);
        assert_eq!(
            &ra[48..64],
            &Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 0x100).octets()
        );
        assert_eq!(mask_prefix(host, 0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(mask_prefix(host, 128), host);
        assert_eq!(mask_prefix(host, 200), host);
        assert_eq!(
            mask_prefix(host, 64),
            Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 0)
        );
    }

    #[test]
    fn router_solicitation_validation() {
        assert!(is_router_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
        let mut with_slla = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        with_slla.extend_from_slice(&MAC);
        assert!(is_router_solicitation(&with_slla));
        assert!(!is_router_solicitation(&[133, 0, 0, 0]));
        assert!(!is_router_solicitation(&[133, 1, 0, 0, 0, 0, 0, 0]));
        assert!(!is_router_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0]));
        // Zero-length option, truncated option, lone type byte.
        assert!(!is_router_solicitation(&[
            133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0
        ]));
        assert!(!is_router_solicitation(&[
            133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0
        ]));
        assert!(!is_router_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0, 1]));
        assert!(!is_router_solicitation(&[]));
    }

    #[test]
    fn filter_passes_only_rs() {
        let f = icmp6_filter_pass_only(133);
        for t in 0u8..=255 {
            let blocked = f.data[usize::from(t >> 5)] & (1 << (t & 31)) != 0;
            assert_eq!(blocked, t != 133, "type {t}");
        }
    }

    /// The ICMPv6/UDP checksum over the IPv6 pseudo-header and `payload`.
    fn l4_checksum(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> u16 {
        let mut data = Vec::new();
        data.extend_from_slice(&src.octets());
        data.extend_from_slice(&dst.octets());
        data.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, next]);
        data.extend_from_slice(payload);
        crate::dhcp::server::test_util::internet_checksum(&data)
    }

    /// vnet header + Ethernet + IPv6 (hop limit 255) carrying `l4` of
    /// protocol `next`, whose checksum at `csum_at` is filled in.
    fn guest_frame(dst: Ipv6Addr, next: u8, mut l4: Vec<u8>, csum_at: usize) -> Vec<u8> {
        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
        let csum = l4_checksum(src, dst, next, &l4);
        l4[csum_at..csum_at + 2].copy_from_slice(&csum.to_be_bytes());
        let mut f = vec![0u8; net_backend::VNET_HDR_LEN];
        let d = dst.octets();
        f.extend_from_slice(&[0x33, 0x33, d[12], d[13], d[14], d[15]]);
        f.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&u16::try_from(l4.len()).unwrap().to_be_bytes());
        f.extend_from_slice(&[next, 255]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&d);
        f.extend_from_slice(&l4);
        f
    }

    /// If `frame` (vnet header included) is an IPv6 Router Advertisement,
    /// returns its hop limit, source, destination and ICMPv6 message.
    fn parse_ra(frame: &[u8]) -> Option<(u8, Ipv6Addr, Ipv6Addr, Vec<u8>)> {
        let eth = frame.get(net_backend::VNET_HDR_LEN..)?;
        if eth.get(12..14)? != [0x86, 0xdd] || *eth.get(14 + 6)? != 58 {
            return None;
        }
        let ip = eth.get(14..)?;
        let icmp = ip.get(40..)?;
        if *icmp.first()? != ICMPV6_ROUTER_ADVERTISEMENT {
            return None;
        }
        let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
        let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
        Some((ip[7], src.into(), dst.into(), icmp.to_vec()))
    }

    #[test]
    fn ra_and_dhcp6_over_a_tap_as_root() {
        use std::io::IoSlice;
        use std::time::Instant;

        use crate::dhcp::v6::{duid_ll, Dhcp6Config, Dhcp6Server, Dhcp6Socket};
        use net_backend::{FrameBackend, Tap};

        sys::in_new_netns(|| {
            // No DAD: the link-local address is usable at once.
            std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0").unwrap();

            let mut tap = Tap::open_named("pra0", 1).unwrap().remove(0);
            tap.set_up().unwrap();
            let mac = tap.mac().unwrap();
            let mut ra_sock = RaSocket::bind("pra0", mac, 1500, PREFIX, 120).unwrap();
            assert_eq!(ra_sock.iface(), "pra0");
            let mut dhcp_sock = Dhcp6Socket::bind("pra0").unwrap();
            let mut server = Dhcp6Server::new(Dhcp6Config {
                server_duid: duid_ll(mac),
                client_mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                client_ip: Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 2),
                dns_servers: vec![],
                search: vec![],
                preferred_lifetime: 3600,
                valid_lifetime: 3600,
            });

            let mut buf = vec![0u8; 65536];
            let mut next_ra = |tap: &mut Tap, what: &str| {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    assert!(Instant::now() < deadline, "no RA on the tap ({what})");
                    match tap.read_frame(&mut buf) {
                        Ok(n) => {
                            if let Some(ra) = parse_ra(&buf[..n]) {
                                return ra;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("tap read: {e}"),
                    }
                }
            };

            // Unsolicited; retried until the link-local address exists.
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = ra_sock.send_ra() {
                assert!(Instant::now() < deadline, "send_ra: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            let (hops, src, dst, icmp) = next_ra(&mut tap, "unsolicited");
            assert_eq!(hops, 255);
            assert_eq!(src.segments()[0], 0xfe80);
            assert_eq!(dst, ALL_NODES);
            assert_eq!(icmp[..2], ra_sock.advertisement()[..2]);
            assert_eq!(icmp[4..], ra_sock.advertisement()[4..]);
            assert_eq!(&icmp[18..24], &mac);

            // Solicited.
            let rs = guest_frame(ALL_ROUTERS, 58, vec![133, 0, 0, 0, 0, 0, 0, 0], 2);
            tap.write_frame(&[IoSlice::new(&rs)]).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while ra_sock.counters().solicitations == 0 {
                assert!(Instant::now() < deadline, "RS not received");
                ra_sock.handle_readable().unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            // Inside MIN_DELAY_BETWEEN_RAS of the unsolicited one: owed,
            // and sent when the window ends (the service's timer does it).
            assert_eq!(ra_sock.counters().rate_limited, 1);
            let due = ra_sock.owed_reply_in().expect("an answer is owed");
            assert!(due <= crate::budget::MIN_DELAY_BETWEEN_RAS, "{due:?}");
            std::thread::sleep(due);
            assert_eq!(ra_sock.may_send(), Ok(()));
            ra_sock.send_ra().unwrap();
            assert_eq!(ra_sock.owed_reply_in(), None);
            let (_, _, dst, _) = next_ra(&mut tap, "solicited");
            assert_eq!(dst, ALL_NODES);
            assert_eq!(ra_sock.counters().advertisements, 2);

            // A DHCPv6 SOLICIT reaches the server through ff02::1:2.
            let mut dhcp = vec![1, 0, 0, 1, 0, 1, 0, 10];
            dhcp.extend_from_slice(&duid_ll([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
            dhcp.extend_from_slice(&[0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
            let mut udp = vec![0x02, 0x22, 0x02, 0x23];
            udp.extend_from_slice(&u16::try_from(8 + dhcp.len()).unwrap().to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.extend_from_slice(&dhcp);
            let all_dhcp = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
            let solicit = guest_frame(all_dhcp, 17, udp, 6);
            tap.write_frame(&[IoSlice::new(&solicit)]).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while server.counters().advertises == 0 {
                assert!(Instant::now() < deadline, "SOLICIT not answered");
                dhcp_sock.handle_readable(&mut server).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(server.counters().solicits, 1);
        });
    }

    #[test]
    fn bind_rejects_bad_names() {
        for name in ["", "a\0b", "sixteen-chars-xx"] {
            assert_eq!(
                RaSocket::bind(name, MAC, 1500, PREFIX, 120)
                    .unwrap_err()
                    .kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
