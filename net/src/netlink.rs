//! A small synchronous rtnetlink client: links, addresses and routes.
//!
//! [`Netlink`] wraps one `NETLINK_ROUTE` socket (from `netlink-sys`) and
//! speaks the protocol with the message types of `netlink-packet-route`,
//! one request at a time: every call sends a request, then reads until the
//! kernel's acknowledgement or the end of the dump. No async runtime is
//! involved.
//!
//! The socket lives in the network namespace of the thread that created it
//! ([`Netlink::new`]), so a test that `unshare(CLONE_NEWNET)`s a thread must
//! create its [`Netlink`] on that thread.
//!
//! Everything here needs CAP_NET_ADMIN except the queries.
//!
//! Errors are [`NetlinkError`]s naming the operation and the link (or
//! address, or route) concerned; [`NetlinkError::errno`] exposes the
//! kernel's error number so callers can treat e.g. `ENODEV` or `EEXIST` as
//! success when they mean to be idempotent.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use net_backend::{validate_ifname, IfNameError};
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `IFF_UP`, the administrative "up" flag in [`Link::flags`].
pub const IFF_UP: u32 = libc::IFF_UP as u32;

/// `RTPROT_KERNEL`: a route the kernel added itself (e.g. the connected
/// route of an address).
pub const RTPROT_KERNEL: u8 = 2;
/// `RTPROT_BOOT`: a route added by a user or tool without a protocol; what
/// `ip route add` uses and the default of [`Route::new`].
pub const RTPROT_BOOT: u8 = 3;
/// `RTPROT_STATIC`.
pub const RTPROT_STATIC: u8 = 4;

/// `RT_SCOPE_UNIVERSE`: a route via a gateway, or a global address.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
/// `RT_SCOPE_LINK`: a directly connected destination, or a link-local
/// address.
pub const RT_SCOPE_LINK: u8 = 253;
/// `RT_SCOPE_HOST`: a host-local address (loopback).
pub const RT_SCOPE_HOST: u8 = 254;

/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;

/// Room in a link alias (`IFALIASZ`), NUL excluded.
pub const MAX_ALIAS_LEN: usize = 255;

/// Errors from [`Netlink`] operations.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened, bound or used.
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused a request.
    #[error("{op} {target}: {source}")]
    Kernel {
        /// The operation, e.g. `"set master of link"`.
        op: &'static str,
        /// What it was applied to, e.g. `"eth0"` or `"10.0.2.1/24 on k6t-eth0"`.
        target: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// A link looked up by name does not exist.
    #[error("{op} {link}: no such link")]
    NoSuchLink {
        /// The operation.
        op: &'static str,
        /// The link's name.
        link: String,
    },
    /// A reply could not be decoded.
    #[error("{op} {target}: malformed netlink reply: {reason}")]
    Decode {
        /// The operation.
        op: &'static str,
        /// What it was applied to.
        target: String,
        /// What was wrong.
        reason: String,
    },
    /// A link to create has a name the kernel would refuse.
    #[error("{op}: {source}")]
    InvalidName {
        /// The operation.
        op: &'static str,
        /// What is wrong with the name.
        source: IfNameError,
    },
    /// An argument cannot be encoded (bad prefix length, alias, ...).
    #[error("{op} {target}: invalid argument: {reason}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// What it was applied to.
        target: String,
        /// What was wrong.
        reason: String,
    },
}

impl NetlinkError {
    /// The kernel's errno for [`NetlinkError::Kernel`], `ENODEV` for
    /// [`NetlinkError::NoSuchLink`], `None` otherwise.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            NetlinkError::NoSuchLink { .. } => Some(libc::ENODEV),
            _ => None,
        }
    }

    /// Whether the error says the object (link, address, route) is absent.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL)
        )
    }

    /// Whether the error says the object already exists.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

/// A network interface as reported by `RTM_GETLINK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when it is a 6-byte (Ethernet) one.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// `IFF_*` flags (see [`IFF_UP`]).
    pub flags: u32,
    /// Index of the master (bridge) the link is a port of.
    pub master: Option<u32>,
    /// Link kind (`"bridge"`, `"veth"`, `"tun"`, ...), for virtual links.
    pub kind: Option<String>,
    /// The interface alias (`ip link set NAME alias ...`).
    pub alias: Option<String>,
}

impl Link {
    /// Whether the link is administratively up.
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
}

/// An interface address as reported by `RTM_GETADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddress {
    /// Index of the interface holding the address.
    pub index: u32,
    /// The (local) address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Scope (`RT_SCOPE_*`).
    pub scope: u8,
}

/// A unicast route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination network (`0.0.0.0` / `::` with prefix 0 for a default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Next hop; `None` for a directly connected destination.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Preferred source address.
    pub prefsrc: Option<IpAddr>,
    /// Metric (`RTA_PRIORITY`).
    pub metric: Option<u32>,
    /// Scope (`RT_SCOPE_*`).
    pub scope: u8,
    /// Protocol (`RTPROT_*`), who installed the route.
    pub protocol: u8,
}

impl Route {
    /// A route to `dst/prefix_len` via `gateway` (or on-link when `None`)
    /// out of `oif`, with protocol [`RTPROT_BOOT`] and the scope implied by
    /// the gateway.
    pub fn new(dst: IpAddr, prefix_len: u8, gateway: Option<IpAddr>, oif: Option<u32>) -> Self {
        Route {
            dst,
            prefix_len,
            gateway,
            oif,
            prefsrc: None,
            metric: None,
            scope: if gateway.is_some() {
                RT_SCOPE_UNIVERSE
            } else {
                RT_SCOPE_LINK
            },
            protocol: RTPROT_BOOT,
        }
    }

    /// Whether this is a default route (prefix length 0).
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0
    }

    fn describe(&self) -> String {
        let mut text = format!("{}/{}", self.dst, self.prefix_len);
        if let Some(gw) = self.gateway {
            text.push_str(&format!(" via {gw}"));
        }
        if let Some(oif) = self.oif {
            text.push_str(&format!(" dev #{oif}"));
        }
        text
    }
}

/// Address family selector for [`Netlink::addresses`] and [`Netlink::routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
    /// Both.
    All,
}

impl Family {
    fn matches(self, addr: &IpAddr) -> bool {
        match self {
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
            Family::All => true,
        }
    }
}

fn ip_family(addr: &IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn max_prefix(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The IPv4 broadcast address of `addr/prefix_len`, for prefixes that have
/// one (below /31).
fn broadcast_of(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    if prefix_len >= 31 {
        return None;
    }
    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(addr) | host_bits))
}

/// One synchronous `NETLINK_ROUTE` socket; see the [module docs](self).
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// Opens and binds a `NETLINK_ROUTE` socket in the calling thread's
    /// network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        // Extended acks give better error messages in dmesg-free setups;
        // failure to enable them is harmless.
        let _ = socket.set_ext_ack(true);
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends `msg` with `flags` (`NLM_F_REQUEST` is added) and collects the
    /// replies: every message of a dump, the single answer to a `GET`, or
    /// nothing for an acknowledged change.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let seq = self.send(msg, flags)?;
        let mut replies = Replies {
            seq,
            op,
            target,
            is_dump: flags & NLM_F_DUMP == NLM_F_DUMP,
            wants_ack: flags & NLM_F_ACK != 0,
            messages: Vec::new(),
        };
        loop {
            let (datagram, _) = loop {
                match self.socket.recv_from_full() {
                    Ok(received) => break received,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(NetlinkError::Socket(e)),
                }
            };
            if replies.take_datagram(&datagram)? {
                return Ok(replies.messages);
            }
        }
    }

    /// Sends one request; returns its sequence number.
    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let sent = self.socket.send(&buf, 0).map_err(NetlinkError::Socket)?;
        if sent != buf.len() {
            return Err(NetlinkError::Socket(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short netlink send ({sent} of {} bytes)", buf.len()),
            )));
        }
        Ok(seq)
    }

    /// Sends a change request and waits for its acknowledgement.
    fn change(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<(), NetlinkError> {
        self.request(msg, flags | NLM_F_ACK, op, target).map(|_| ())
    }

    // ---- links -----------------------------------------------------------

    /// The link named `name`, or `None` when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0, "look up link", name) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(parse_link(&link)),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link named `name`; [`NetlinkError::NoSuchLink`] when absent.
    pub fn link(&mut self, name: &str) -> Result<Link, NetlinkError> {
        self.link_by_name(name)?
            .ok_or_else(|| NetlinkError::NoSuchLink {
                op: "look up link",
                link: name.to_owned(),
            })
    }

    /// Index of the link named `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        self.link(name).map(|l| l.index)
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "list links",
            "",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(parse_link(&link)),
                _ => None,
            })
            .collect())
    }

    /// The links whose master is `master_index` (a bridge's ports).
    pub fn ports_of(&mut self, master_index: u32) -> Result<Vec<Link>, NetlinkError> {
        Ok(self
            .links()?
            .into_iter()
            .filter(|l| l.master == Some(master_index))
            .collect())
    }

    fn new_link(
        &mut self,
        name: &str,
        info: Vec<LinkInfo>,
        mut extra: Vec<LinkAttribute>,
        op: &'static str,
    ) -> Result<u32, NetlinkError> {
        validate_ifname(name).map_err(|source| NetlinkError::InvalidName { op, source })?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.append(&mut extra);
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.change(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            op,
            name,
        )?;
        self.link_index(name)
    }

    /// Creates bridge `name` (down, STP off), with `mtu` when given, and
    /// returns its index. Fails with `EEXIST` if the name is taken.
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<u32, NetlinkError> {
        let extra = mtu.map(LinkAttribute::Mtu).into_iter().collect();
        self.new_link(
            name,
            vec![LinkInfo::Kind(InfoKind::Bridge)],
            extra,
            "create bridge",
        )
    }

    /// Creates a veth pair `name` <-> `peer` (both down) and returns the
    /// index of `name`.
    pub fn create_veth(&mut self, name: &str, peer: &str) -> Result<u32, NetlinkError> {
        validate_ifname(peer).map_err(|source| NetlinkError::InvalidName {
            op: "create veth",
            source,
        })?;
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        self.new_link(
            name,
            vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ],
            Vec::new(),
            "create veth",
        )
    }

    /// Deletes link `name`.
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let index = self.link_index(name).map_err(|e| match e {
            NetlinkError::NoSuchLink { link, .. } => NetlinkError::NoSuchLink {
                op: "delete link",
                link,
            },
            other => other,
        })?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.change(RouteNetlinkMessage::DelLink(msg), 0, "delete link", name)
    }

    /// Deletes link `name`; succeeds when it does not exist. Returns whether
    /// it existed.
    pub fn delete_link_if_exists(&mut self, name: &str) -> Result<bool, NetlinkError> {
        match self.delete_link(name) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Applies `attributes` and flag changes to link `name` (`RTM_SETLINK`).
    fn set_link(
        &mut self,
        name: &str,
        flags: Option<(LinkFlags, LinkFlags)>,
        attributes: Vec<LinkAttribute>,
        op: &'static str,
    ) -> Result<(), NetlinkError> {
        let index = self.link(name).map_err(|e| match e {
            NetlinkError::NoSuchLink { link, .. } => NetlinkError::NoSuchLink { op, link },
            other => other,
        })?;
        let mut msg = LinkMessage::default();
        msg.header.index = index.index;
        if let Some((value, mask)) = flags {
            msg.header.flags = value;
            msg.header.change_mask = mask;
        }
        msg.attributes = attributes;
        self.change(RouteNetlinkMessage::SetLink(msg), 0, op, name)
    }

    /// Brings link `name` up.
    pub fn set_up(&mut self, name: &str) -> Result<(), NetlinkError> {
        self.set_link(
            name,
            Some((LinkFlags::Up, LinkFlags::Up)),
            Vec::new(),
            "set link up",
        )
    }

    /// Brings link `name` down.
    pub fn set_down(&mut self, name: &str) -> Result<(), NetlinkError> {
        self.set_link(
            name,
            Some((LinkFlags::empty(), LinkFlags::Up)),
            Vec::new(),
            "set link down",
        )
    }

    /// Makes link `name` a port of `master` (a bridge), or detaches it from
    /// its master when `master` is `None`.
    pub fn set_master(&mut self, name: &str, master: Option<&str>) -> Result<(), NetlinkError> {
        let master_index = match master {
            Some(m) => {
                self.link(m)
                    .map_err(|e| match e {
                        NetlinkError::NoSuchLink { link, .. } => NetlinkError::NoSuchLink {
                            op: "set master of link",
                            link,
                        },
                        other => other,
                    })?
                    .index
            }
            None => 0,
        };
        self.set_link(
            name,
            None,
            vec![LinkAttribute::Controller(master_index)],
            if master.is_some() {
                "set master of link"
            } else {
                "detach link from its master"
            },
        )
    }

    /// Sets the hardware address of link `name`. Many drivers need the link
    /// down for this.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.set_link(
            name,
            None,
            vec![LinkAttribute::Address(mac.to_vec())],
            "set MAC address of link",
        )
    }

    /// Sets the MTU of link `name`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        self.set_link(name, None, vec![LinkAttribute::Mtu(mtu)], "set MTU of link")
    }

    /// Sets the alias of link `name` (at most [`MAX_ALIAS_LEN`] bytes; an
    /// empty alias removes it).
    pub fn set_alias(&mut self, name: &str, alias: &str) -> Result<(), NetlinkError> {
        if alias.len() > MAX_ALIAS_LEN || alias.contains('\0') {
            return Err(NetlinkError::Invalid {
                op: "set alias of link",
                target: name.to_owned(),
                reason: format!("alias must be at most {MAX_ALIAS_LEN} bytes without NUL"),
            });
        }
        self.set_link(
            name,
            None,
            vec![LinkAttribute::IfAlias(alias.to_owned())],
            "set alias of link",
        )
    }

    // ---- addresses -------------------------------------------------------

    fn address_message(
        &mut self,
        link: &str,
        addr: IpAddr,
        prefix_len: u8,
        op: &'static str,
    ) -> Result<AddressMessage, NetlinkError> {
        if prefix_len > max_prefix(&addr) {
            return Err(NetlinkError::Invalid {
                op,
                target: format!("{addr}/{prefix_len} on {link}"),
                reason: "prefix length too long".into(),
            });
        }
        let index = self
            .link(link)
            .map_err(|e| match e {
                NetlinkError::NoSuchLink { link, .. } => NetlinkError::NoSuchLink { op, link },
                other => other,
            })?
            .index;
        let mut msg = AddressMessage::default();
        msg.header.family = ip_family(&addr);
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        match addr {
            IpAddr::V4(v4) => {
                msg.attributes.push(AddressAttribute::Local(addr));
                msg.attributes.push(AddressAttribute::Address(addr));
                if let Some(brd) = broadcast_of(v4, prefix_len) {
                    msg.attributes.push(AddressAttribute::Broadcast(brd));
                }
            }
            IpAddr::V6(_) => msg.attributes.push(AddressAttribute::Address(addr)),
        }
        Ok(msg)
    }

    /// Adds `addr/prefix_len` to link `link` (IPv4 with the subnet's
    /// broadcast address; IPv6 without duplicate address detection, so it is
    /// usable at once). Fails with `EEXIST` when present.
    pub fn add_address(
        &mut self,
        link: &str,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let op = "add address";
        let mut msg = self.address_message(link, addr, prefix_len, op)?;
        if addr.is_ipv6() {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.change(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            op,
            &format!("{addr}/{prefix_len} on {link}"),
        )
    }

    /// Deletes `addr/prefix_len` from link `link`.
    pub fn delete_address(
        &mut self,
        link: &str,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let op = "delete address";
        let msg = self.address_message(link, addr, prefix_len, op)?;
        self.change(
            RouteNetlinkMessage::DelAddress(msg),
            0,
            op,
            &format!("{addr}/{prefix_len} on {link}"),
        )
    }

    /// The addresses of `family` on link `link`, in kernel order (the
    /// primary IPv4 address first).
    pub fn addresses(
        &mut self,
        link: &str,
        family: Family,
    ) -> Result<Vec<IfAddress>, NetlinkError> {
        let index = self
            .link(link)
            .map_err(|e| match e {
                NetlinkError::NoSuchLink { link, .. } => NetlinkError::NoSuchLink {
                    op: "list addresses of link",
                    link,
                },
                other => other,
            })?
            .index;
        Ok(self
            .all_addresses(family)?
            .into_iter()
            .filter(|a| a.index == index)
            .collect())
    }

    /// Every address of `family` in the namespace.
    pub fn all_addresses(&mut self, family: Family) -> Result<Vec<IfAddress>, NetlinkError> {
        let replies = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            "list addresses",
            "",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_address(&a),
                _ => None,
            })
            .filter(|a| family.matches(&a.addr))
            .collect())
    }

    // ---- routes ----------------------------------------------------------

    /// The unicast routes of the main table for `family`.
    pub fn routes(&mut self, family: Family) -> Result<Vec<Route>, NetlinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match family {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
            Family::All => AddressFamily::Unspec,
        };
        let replies = self.request(
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_DUMP,
            "list routes",
            "",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => parse_route(&r),
                _ => None,
            })
            .filter(|r| family.matches(&r.dst))
            .collect())
    }

    /// The IPv4 unicast routes of the main table.
    pub fn routes_v4(&mut self) -> Result<Vec<Route>, NetlinkError> {
        self.routes(Family::V4)
    }

    /// The IPv4 default gateway of the main table (the lowest-metric
    /// default route with a gateway).
    pub fn default_gateway_v4(&mut self) -> Result<Option<Ipv4Addr>, NetlinkError> {
        let mut defaults: Vec<Route> = self
            .routes_v4()?
            .into_iter()
            .filter(|r| r.is_default() && r.gateway.is_some())
            .collect();
        defaults.sort_by_key(|r| r.metric.unwrap_or(0));
        Ok(defaults.first().and_then(|r| match r.gateway {
            Some(IpAddr::V4(gw)) => Some(gw),
            _ => None,
        }))
    }

    fn route_message(route: &Route, op: &'static str) -> Result<RouteMessage, NetlinkError> {
        if route.prefix_len > max_prefix(&route.dst)
            || route
                .gateway
                .is_some_and(|gw| gw.is_ipv4() != route.dst.is_ipv4())
        {
            return Err(NetlinkError::Invalid {
                op,
                target: route.describe(),
                reason: "prefix length or gateway family does not match the destination".into(),
            });
        }
        let mut msg = RouteMessage::default();
        msg.header = RouteHeader {
            address_family: ip_family(&route.dst),
            destination_prefix_length: route.prefix_len,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::from(route.protocol),
            scope: RouteScope::from(route.scope),
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        if route.prefix_len > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(route.dst)));
        }
        if let Some(gw) = route.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = route.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(src) = route.prefsrc {
            msg.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
        }
        if let Some(metric) = route.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        Ok(msg)
    }

    /// Adds `route` to the main table. Fails with `EEXIST` when present.
    pub fn add_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        let op = "add route";
        let msg = Self::route_message(route, op)?;
        self.change(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            op,
            &route.describe(),
        )
    }

    /// Deletes `route` from the main table (fails with `ESRCH` when absent).
    pub fn delete_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        let op = "delete route";
        let mut msg = Self::route_message(route, op)?;
        // Match any protocol and scope, as `ip route del` does.
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        self.change(RouteNetlinkMessage::DelRoute(msg), 0, op, &route.describe())
    }
}

fn parse_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        flags: msg.header.flags.bits(),
        master: None,
        kind: None,
        alias: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(addr) => {
                link.mac = <[u8; 6]>::try_from(addr.as_slice()).ok();
            }
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Controller(master) if *master != 0 => link.master = Some(*master),
            LinkAttribute::IfAlias(alias) if !alias.is_empty() => link.alias = Some(alias.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn parse_address(msg: &AddressMessage) -> Option<IfAddress> {
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    Some(IfAddress {
        index: msg.header.index,
        addr: local.or(address)?,
        prefix_len: msg.header.prefix_len,
        scope: u8::from(msg.header.scope),
    })
}

fn parse_route(msg: &RouteMessage) -> Option<Route> {
    let header = &msg.header;
    if header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(header.table);
    let mut route = Route {
        dst: match header.address_family {
            AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => return None,
        },
        prefix_len: header.destination_prefix_length,
        gateway: None,
        oif: None,
        prefsrc: None,
        metric: None,
        scope: u8::from(header.scope),
        protocol: u8::from(header.protocol),
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => route.dst = route_ip(a)?,
            RouteAttribute::Gateway(a) => route.gateway = route_ip(a),
            RouteAttribute::PrefSource(a) => route.prefsrc = route_ip(a),
            RouteAttribute::Oif(oif) => route.oif = Some(*oif),
            RouteAttribute::Priority(metric) => route.metric = Some(*metric),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    (table == RT_TABLE_MAIN).then_some(route)
}

/// The answer to one request, collected from the datagrams that carry it.
struct Replies<'a> {
    seq: u32,
    op: &'static str,
    target: &'a str,
    is_dump: bool,
    wants_ack: bool,
    messages: Vec<RouteNetlinkMessage>,
}

impl Replies<'_> {
    fn decode_err(&self, reason: String) -> NetlinkError {
        NetlinkError::Decode {
            op: self.op,
            target: self.target.to_owned(),
            reason,
        }
    }

    /// Takes the messages of one datagram; true when the answer is complete.
    fn take_datagram(&mut self, datagram: &[u8]) -> Result<bool, NetlinkError> {
        let mut offset = 0;
        while offset < datagram.len() {
            let bytes = datagram.get(offset..).unwrap_or(&[]);
            let nl = NetlinkBuffer::new_checked(bytes)
                .map_err(|e| self.decode_err(format!("bad netlink header: {e}")))?;
            let len = nl.length() as usize;
            let msg_seq = nl.sequence_number();
            if len == 0 {
                break;
            }
            let msg_bytes = bytes.get(..len).unwrap_or(bytes);
            offset += (len + 3) & !3;
            if msg_seq != self.seq {
                // A late answer to an earlier request, or a notification.
                continue;
            }
            if self.take_message(msg_bytes)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes one message of the answer; true when the answer is complete.
    fn take_message(&mut self, msg_bytes: &[u8]) -> Result<bool, NetlinkError> {
        let parsed = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg_bytes) {
            Ok(parsed) => parsed,
            Err(e) if self.is_dump => {
                // One object the crate cannot decode should not hide all
                // the others.
                let (op, target) = (self.op, self.target);
                tracing::warn!(op, target, error = %e, "skipping undecodable netlink message");
                return Ok(false);
            }
            Err(e) => return Err(self.decode_err(e.to_string())),
        };
        match parsed.payload {
            NetlinkPayload::Done(_) => Ok(true),
            NetlinkPayload::Error(err) => match err.code {
                None => Ok(true),
                Some(code) => Err(NetlinkError::Kernel {
                    op: self.op,
                    target: self.target.to_owned(),
                    source: io::Error::from_raw_os_error(-code.get()),
                }),
            },
            NetlinkPayload::InnerMessage(inner) => {
                self.messages.push(inner);
                Ok(!self.is_dump && !self.wants_ack)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast() {
        assert_eq!(
            broadcast_of(Ipv4Addr::new(10, 244, 1, 5), 24),
            Some(Ipv4Addr::new(10, 244, 1, 255))
        );
        assert_eq!(
            broadcast_of(Ipv4Addr::new(10, 0, 2, 1), 0),
            Some(Ipv4Addr::BROADCAST)
        );
        assert_eq!(broadcast_of(Ipv4Addr::new(10, 0, 2, 1), 31), None);
        assert_eq!(broadcast_of(Ipv4Addr::new(10, 0, 2, 1), 32), None);
    }

    #[test]
    fn route_messages() {
        let r = Route::new(
            "10.96.0.0".parse().unwrap(),
            12,
            Some("10.244.1.1".parse().unwrap()),
            Some(3),
        );
        assert_eq!(r.scope, RT_SCOPE_UNIVERSE);
        let msg = Netlink::route_message(&r, "t").unwrap();
        assert_eq!(msg.header.destination_prefix_length, 12);
        assert_eq!(msg.header.table, 254);
        assert_eq!(parse_route(&msg), Some(r));

        let default = Route::new(
            "0.0.0.0".parse().unwrap(),
            0,
            Some("10.244.1.1".parse().unwrap()),
            None,
        );
        assert!(default.is_default());
        let msg = Netlink::route_message(&default, "t").unwrap();
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
        assert_eq!(parse_route(&msg), Some(default));

        let onlink = Route::new("169.254.1.1".parse().unwrap(), 32, None, Some(2));
        assert_eq!(onlink.scope, RT_SCOPE_LINK);

        let bad = Route::new("10.0.0.0".parse().unwrap(), 33, None, None);
        assert!(matches!(
            Netlink::route_message(&bad, "t"),
            Err(NetlinkError::Invalid { .. })
        ));
        let mixed = Route::new(
            "10.0.0.0".parse().unwrap(),
            8,
            Some("fd00::1".parse().unwrap()),
            None,
        );
        assert!(Netlink::route_message(&mixed, "t").is_err());
    }

    #[test]
    fn error_classification() {
        let e = NetlinkError::Kernel {
            op: "delete link",
            target: "k6t-eth0".into(),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        };
        assert!(e.is_not_found());
        assert!(!e.is_exists());
        assert_eq!(
            e.to_string(),
            format!(
                "delete link k6t-eth0: {}",
                io::Error::from_raw_os_error(libc::ENODEV)
            )
        );
        let e = NetlinkError::NoSuchLink {
            op: "set link up",
            link: "eth9".into(),
        };
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "set link up eth9: no such link");
    }

    #[test]
    fn bad_link_names_are_refused_before_the_kernel() {
        let mut nl = Netlink::new().unwrap();
        let e = nl.create_bridge("bad/name", None).unwrap_err();
        assert!(
            matches!(
                e,
                NetlinkError::InvalidName {
                    op: "create bridge",
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            nl.create_veth("ok0", "way-too-long-name0"),
            Err(NetlinkError::InvalidName { .. })
        ));
    }

    fn is_root() -> bool {
        // SAFETY: geteuid(2) has no arguments and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// Runs `f` on a fresh thread inside a new network namespace.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) takes a flag word and touches no memory; it
            // moves only this thread into a new network namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn links_addresses_routes_in_netns() {
        if !is_root() {
            println!("skipped: needs root");
            return;
        }
        in_new_netns(|| {
            let mut nl = Netlink::new().unwrap();
            assert!(nl.link_by_name("eth0").unwrap().is_none());
            assert!(matches!(
                nl.set_up("eth0"),
                Err(NetlinkError::NoSuchLink {
                    op: "set link up",
                    ..
                })
            ));

            let idx = nl.create_veth("eth0", "peer0").unwrap();
            let eth0 = nl.link("eth0").unwrap();
            assert_eq!(eth0.index, idx);
            assert_eq!(eth0.kind.as_deref(), Some("veth"));
            assert!(!eth0.is_up());
            assert!(nl.link_by_name("peer0").unwrap().is_some());
            assert!(nl.create_veth("eth0", "peer1").unwrap_err().is_exists());

            nl.set_mtu("eth0", 1450).unwrap();
            let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
            nl.set_mac("eth0", mac).unwrap();
            nl.set_up("eth0").unwrap();
            nl.set_up("peer0").unwrap();
            nl.set_alias("eth0", "hello").unwrap();
            let eth0 = nl.link("eth0").unwrap();
            assert_eq!(eth0.mtu, 1450);
            assert_eq!(eth0.mac, Some(mac));
            assert!(eth0.is_up());
            assert_eq!(eth0.alias.as_deref(), Some("hello"));

            let v4: IpAddr = "10.244.1.5".parse().unwrap();
            let v6: IpAddr = "fd00:1::5".parse().unwrap();
            nl.add_address("eth0", v4, 24).unwrap();
            nl.add_address("eth0", v6, 64).unwrap();
            assert!(nl.add_address("eth0", v4, 24).unwrap_err().is_exists());
            let addrs = nl.addresses("eth0", Family::V4).unwrap();
            assert_eq!(addrs.len(), 1);
            assert_eq!(addrs[0].addr, v4);
            assert_eq!(addrs[0].prefix_len, 24);
            let addrs6 = nl.addresses("eth0", Family::V6).unwrap();
            assert!(addrs6.iter().any(|a| a.addr == v6 && a.prefix_len == 64));

            let gw: IpAddr = "10.244.1.1".parse().unwrap();
            let default = Route::new("0.0.0.0".parse().unwrap(), 0, Some(gw), Some(idx));
            nl.add_route(&default).unwrap();
            let extra = Route::new("10.96.0.0".parse().unwrap(), 12, Some(gw), Some(idx));
            nl.add_route(&extra).unwrap();
            let onlink = Route::new("169.254.1.1".parse().unwrap(), 32, None, Some(idx));
            nl.add_route(&onlink).unwrap();
            assert!(nl.add_route(&extra).unwrap_err().is_exists());
            assert_eq!(
                nl.default_gateway_v4().unwrap(),
                Some(Ipv4Addr::new(10, 244, 1, 1))
            );
            let routes = nl.routes_v4().unwrap();
            assert!(routes.contains(&default), "{routes:?}");
            assert!(routes.contains(&extra), "{routes:?}");
            assert!(routes.contains(&onlink), "{routes:?}");
            // The connected route of the address, installed by the kernel.
            assert!(routes.iter().any(|r| r.protocol == RTPROT_KERNEL
                && r.dst == "10.244.1.0".parse::<IpAddr>().unwrap()
                && r.prefix_len == 24
                && r.prefsrc == Some(v4)));
            nl.delete_route(&extra).unwrap();
            assert!(nl.delete_route(&extra).unwrap_err().is_not_found());
            assert!(!nl.routes_v4().unwrap().contains(&extra));

            let br = nl.create_bridge("br0", Some(1450)).unwrap();
            let bridge = nl.link("br0").unwrap();
            assert_eq!(bridge.kind.as_deref(), Some("bridge"));
            assert_eq!(bridge.mtu, 1450);
            nl.set_master("eth0", Some("br0")).unwrap();
            assert_eq!(nl.link("eth0").unwrap().master, Some(br));
            assert_eq!(nl.ports_of(br).unwrap().len(), 1);
            nl.set_master("eth0", None).unwrap();
            assert_eq!(nl.link("eth0").unwrap().master, None);

            nl.delete_address("eth0", v4, 24).unwrap();
            assert!(nl
                .delete_address("eth0", v4, 24)
                .unwrap_err()
                .is_not_found());
            assert!(nl.addresses("eth0", Family::V4).unwrap().is_empty());

            nl.set_down("eth0").unwrap();
            assert!(!nl.link("eth0").unwrap().is_up());
            nl.delete_link("br0").unwrap();
            assert!(nl.delete_link("br0").unwrap_err().is_not_found());
            assert!(!nl.delete_link_if_exists("br0").unwrap());
            assert!(nl.delete_link_if_exists("eth0").unwrap());
            // Deleting one end of a veth pair deletes both.
            assert!(nl.link_by_name("peer0").unwrap().is_none());
        });
    }
}
