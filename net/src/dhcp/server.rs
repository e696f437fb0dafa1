//! The DHCPv4 server's protocol logic: bytes in, [`DhcpAction`] out, no I/O.

use std::net::Ipv4Addr;

use dhcproto::v4::{
    DhcpOption, DhcpOptions, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use super::options::{encode_classless_routes, encode_domain_search, prefix_to_mask};

/// Offset of the magic cookie in a DHCP message (after the fixed BOOTP part).
const MAGIC_OFFSET: usize = 236;
/// The DHCP magic cookie (RFC 2131 §3).
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Smallest DHCP message: the fixed BOOTP header plus the magic cookie.
const MIN_MESSAGE_LEN: usize = MAGIC_OFFSET + MAGIC.len();
/// Replies are zero-padded to the minimum BOOTP message size (RFC 1542
/// §3.4), which some old clients insist on.
const MIN_REPLY_LEN: usize = 300;
/// Room in the `sname` header field, terminating NUL excluded.
const SNAME_MAX: usize = 63;
/// Room in the `file` header field, terminating NUL excluded.
const FILE_MAX: usize = 127;

/// What the server hands out to its single client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The gateway/tap address; also the server identifier (option 54).
    pub server_ip: Ipv4Addr,
    /// Only requests from this hardware address are answered.
    pub client_mac: [u8; 6],
    /// The address leased to the client.
    pub client_ip: Ipv4Addr,
    /// Prefix length of the client's subnet, sent as the subnet mask (1).
    pub prefix_len: u8,
    /// Default router (3).
    pub router: Option<Ipv4Addr>,
    /// DNS servers (6).
    pub dns_servers: Vec<Ipv4Addr>,
    /// Domain search list (119); the first entry is also the domain name (15).
    pub search_domains: Vec<String>,
    /// Host name (12), normally the VM's name.
    pub hostname: Option<String>,
    /// Interface MTU (26).
    pub mtu: Option<u16>,
    /// Classless static routes `(destination, prefix length, router)` (121).
    ///
    /// When non-empty and [`router`](Self::router) is set, a default route
    /// via the router is added to option 121 unless one is listed already:
    /// RFC 3442 clients ignore option 3 whenever option 121 is present.
    pub classless_routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Lease time (51); T1 (58) is half of it and T2 (59) seven eighths.
    pub lease_secs: u32,
    /// What the VM spec adds (KubeVirt `dhcpOptions`).
    pub extras: DhcpExtras,
}

/// Options the VM spec asks for (KubeVirt `dhcpOptions`), sent in every
/// OFFER and ACK as KubeVirt's DHCP server does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpExtras {
    /// Boot file name (67), also in the BOOTP `file` field when it fits.
    pub boot_file_name: Option<String>,
    /// TFTP server name (66), also in the BOOTP `sname` field when it fits.
    pub tftp_server_name: Option<String>,
    /// NTP servers (42).
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Site-specific options (224-254) with their raw values.
    pub private_options: Vec<(u8, Vec<u8>)>,
}

/// What to do with a received packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpAction {
    /// Send `packet` (a complete DHCP message, the UDP payload) to the
    /// client's port 68.
    Reply {
        /// The encoded reply.
        packet: Vec<u8>,
        /// Send to 255.255.255.255 when true, else unicast to the
        /// configured `client_ip`.
        broadcast: bool,
    },
    /// Send nothing.
    Ignore(IgnoreReason),
}

/// Why a packet was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Not a decodable DHCP message (too short, bad magic cookie, not
    /// Ethernet, `hlen != 6`, no message type option, ...).
    Malformed(&'static str),
    /// A BOOTREPLY, or a message type that only servers send.
    NotRequest,
    /// `chaddr` is not the configured client's MAC.
    ForeignMac,
    /// A REQUEST in SELECTING state that chose another server.
    OtherServer(Ipv4Addr),
    /// A DHCPRELEASE (counted; nothing to free for a fixed lease).
    Release,
    /// A DHCPDECLINE (counted; the client found its address in use).
    Decline,
}

/// Per-server counters of received requests and sent replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpCounters {
    /// DHCPDISCOVERs received from the client.
    pub discovers: u64,
    /// DHCPOFFERs sent.
    pub offers: u64,
    /// DHCPREQUESTs received from the client.
    pub requests: u64,
    /// DHCPACKs sent (to REQUESTs and INFORMs).
    pub acks: u64,
    /// DHCPNAKs sent.
    pub naks: u64,
    /// DHCPINFORMs received from the client.
    pub informs: u64,
    /// DHCPRELEASEs received from the client.
    pub releases: u64,
    /// DHCPDECLINEs received from the client.
    pub declines: u64,
    /// Packets dropped as undecodable or not Ethernet/6-byte hardware addresses.
    pub dropped_malformed: u64,
    /// Packets dropped because `chaddr` is not the client's MAC.
    pub dropped_foreign_mac: u64,
    /// BOOTREPLYs and server-side message types dropped.
    pub dropped_not_request: u64,
}

/// A DHCPv4 server for exactly one client with a fixed address.
#[derive(Debug)]
pub struct DhcpServer {
    config: DhcpConfig,
    counters: DhcpCounters,
}

/// The kind of reply being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Offer,
    Ack,
    InformAck,
    Nak,
}

impl DhcpServer {
    /// A server answering `config.client_mac` only.
    pub fn new(config: DhcpConfig) -> Self {
        Self {
            config,
            counters: DhcpCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    /// The counters so far.
    pub fn counters(&self) -> &DhcpCounters {
        &self.counters
    }

    /// Handles one received DHCP message (a UDP payload). Never panics, on
    /// any input.
    pub fn handle(&mut self, packet: &[u8]) -> DhcpAction {
        let msg = match parse(packet) {
            Ok(msg) => msg,
            Err(reason) => {
                self.counters.dropped_malformed += 1;
                return DhcpAction::Ignore(IgnoreReason::Malformed(reason));
            }
        };
        if msg.opcode() != Opcode::BootRequest {
            self.counters.dropped_not_request += 1;
            return DhcpAction::Ignore(IgnoreReason::NotRequest);
        }
        if msg.htype() != HType::Eth || msg.hlen() != 6 {
            self.counters.dropped_malformed += 1;
            return DhcpAction::Ignore(IgnoreReason::Malformed(
                "not an Ethernet (htype 1, hlen 6) client",
            ));
        }
        // hlen == 6 was checked, so chaddr() is 6 bytes and cannot panic.
        if msg.chaddr() != self.config.client_mac {
            self.counters.dropped_foreign_mac += 1;
            return DhcpAction::Ignore(IgnoreReason::ForeignMac);
        }
        let Some(msg_type) = msg.opts().msg_type() else {
            self.counters.dropped_malformed += 1;
            return DhcpAction::Ignore(IgnoreReason::Malformed("no DHCP message type option"));
        };
        match msg_type {
            MessageType::Discover => {
                self.counters.discovers += 1;
                self.reply(&msg, ReplyKind::Offer)
            }
            MessageType::Request => {
                self.counters.requests += 1;
                self.handle_request(&msg)
            }
            MessageType::Inform => {
                self.counters.informs += 1;
                self.reply(&msg, ReplyKind::InformAck)
            }
            MessageType::Release => {
                self.counters.releases += 1;
                tracing::debug!(xid = msg.xid(), "DHCPRELEASE from the guest");
                DhcpAction::Ignore(IgnoreReason::Release)
            }
            MessageType::Decline => {
                self.counters.declines += 1;
                tracing::warn!(
                    client_ip = %self.config.client_ip,
                    "guest declined its DHCP address (address conflict on the link?)"
                );
                DhcpAction::Ignore(IgnoreReason::Decline)
            }
            _ => {
                self.counters.dropped_not_request += 1;
                DhcpAction::Ignore(IgnoreReason::NotRequest)
            }
        }
    }

    /// RFC 2131 §4.3.2: tells the client states apart and ACKs or NAKs.
    fn handle_request(&mut self, msg: &Message) -> DhcpAction {
        let server_id = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(id)) => Some(*id),
            _ => None,
        };
        let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        if let Some(id) = server_id {
            // SELECTING: the client answers one of the OFFERs it got.
            if id != self.config.server_ip {
                return DhcpAction::Ignore(IgnoreReason::OtherServer(id));
            }
        }
        // SELECTING and INIT-REBOOT carry option 50; RENEWING and
        // REBINDING carry the address in ciaddr.
        let wanted = requested.unwrap_or_else(|| msg.ciaddr());
        if wanted == self.config.client_ip {
            self.reply(msg, ReplyKind::Ack)
        } else {
            tracing::debug!(
                %wanted,
                client_ip = %self.config.client_ip,
                "NAK: guest requested an address other than its own"
            );
            self.reply(msg, ReplyKind::Nak)
        }
    }

    fn reply(&mut self, req: &Message, kind: ReplyKind) -> DhcpAction {
        let cfg = &self.config;
        let mut reply = Message::default();
        reply
            .set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_xid(req.xid())
            .set_flags(req.flags())
            .set_giaddr(req.giaddr())
            .set_chaddr(&cfg.client_mac);

        let mut opts = DhcpOptions::new();
        opts.insert(DhcpOption::ServerIdentifier(cfg.server_ip));
        match kind {
            ReplyKind::Nak => {
                opts.insert(DhcpOption::MessageType(MessageType::Nak));
                opts.insert(DhcpOption::Message(
                    "requested address is not assigned to this client".to_owned(),
                ));
                reply.set_opts(opts);
                self.counters.naks += 1;
                // RFC 2131 §4.1: with giaddr 0, NAKs are always broadcast.
                return encode(&reply).map_or_else(
                    |reason| self.encode_failed(reason),
                    |packet| DhcpAction::Reply {
                        packet,
                        broadcast: true,
                    },
                );
            }
            ReplyKind::Offer => {
                opts.insert(DhcpOption::MessageType(MessageType::Offer));
            }
            ReplyKind::Ack | ReplyKind::InformAck => {
                opts.insert(DhcpOption::MessageType(MessageType::Ack));
            }
        }

        fill_lease(cfg, req, kind, &mut reply, &mut opts);
        reply.set_opts(opts);

        // Broadcast while the client may not have its address configured
        // (ciaddr 0) or when it asks for it (RFC 2131 §4.1). An INFORM from
        // an address other than ours is answered by broadcast too, since a
        // unicast reply would go to `client_ip`, not to the sender.
        let broadcast = req.flags().broadcast()
            || req.ciaddr().is_unspecified()
            || (kind == ReplyKind::InformAck && req.ciaddr() != cfg.client_ip);
        match encode(&reply) {
            Ok(packet) => {
                match kind {
                    ReplyKind::Offer => self.counters.offers += 1,
                    _ => self.counters.acks += 1,
                }
                DhcpAction::Reply { packet, broadcast }
            }
            Err(reason) => self.encode_failed(reason),
        }
    }

    fn encode_failed(&mut self, reason: &'static str) -> DhcpAction {
        tracing::error!(
            reason,
            "cannot encode a DHCP reply; check the DHCP configuration"
        );
        DhcpAction::Ignore(IgnoreReason::Malformed(reason))
    }
}

/// Adds the configuration options shared by OFFER, ACK and INFORM's ACK.
fn insert_config_options(cfg: &DhcpConfig, opts: &mut DhcpOptions) {
    opts.insert(DhcpOption::SubnetMask(prefix_to_mask(cfg.prefix_len)));
    if let Some(router) = cfg.router {
        opts.insert(DhcpOption::Router(vec![router]));
    }
    if !cfg.dns_servers.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(cfg.dns_servers.clone()));
    }
    if let Some(hostname) = cfg.hostname.as_deref().filter(|h| !h.is_empty()) {
        opts.insert(DhcpOption::Hostname(hostname.to_owned()));
    }
    if let Some(first) = cfg.search_domains.first() {
        let domain = first.strip_suffix('.').unwrap_or(first);
        if !domain.is_empty() {
            opts.insert(DhcpOption::DomainName(domain.to_owned()));
        }
        let search = encode_domain_search(&cfg.search_domains);
        if !search.is_empty() {
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::DomainSearch,
                search,
            )));
        }
    }
    if let Some(mtu) = cfg.mtu {
        opts.insert(DhcpOption::InterfaceMtu(mtu));
    }
    if !cfg.classless_routes.is_empty() {
        let mut routes = cfg.classless_routes.clone();
        if let Some(router) = cfg.router {
            if !routes.iter().any(|&(_, len, _)| len == 0) {
                routes.push((Ipv4Addr::UNSPECIFIED, 0, router));
            }
        }
        let data = encode_classless_routes(&routes);
        if !data.is_empty() {
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::ClasslessStaticRoute,
                data,
            )));
        }
    }
    insert_extras(&cfg.extras, opts);
}

/// The spec's own options: PXE (66, 67), NTP (42), private (224-254).
fn insert_extras(extras: &DhcpExtras, opts: &mut DhcpOptions) {
    if let Some(name) = extras.tftp_server_name.as_deref().filter(|n| !n.is_empty()) {
        opts.insert(DhcpOption::TFTPServerName(name.as_bytes().to_vec()));
    }
    if let Some(file) = extras.boot_file_name.as_deref().filter(|f| !f.is_empty()) {
        opts.insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
    }
    if !extras.ntp_servers.is_empty() {
        opts.insert(DhcpOption::NtpServers(extras.ntp_servers.clone()));
    }
    for (code, value) in &extras.private_options {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(*code),
            value.clone(),
        )));
    }
}

/// Decodes a DHCP message, rejecting what is not one.
///
/// dhcproto's decoder is only reached on input at least
/// [`MIN_MESSAGE_LEN`] long with the right magic cookie, and it runs under
/// `catch_unwind` ([`crate::contained`]): the bytes come from the guest, and a bug in a third-party
/// parser must not take the VMM down.
fn parse(packet: &[u8]) -> Result<Message, &'static str> {
    if packet.len() < MIN_MESSAGE_LEN {
        return Err("shorter than a DHCP header");
    }
    if packet[MAGIC_OFFSET..MIN_MESSAGE_LEN] != MAGIC {
        return Err("bad magic cookie");
    }
    let decoded = crate::contained::contain(|| Message::decode(&mut Decoder::new(packet)));
    match decoded {
        Some(Ok(msg)) => Ok(msg),
        Some(Err(_)) => Err("undecodable DHCP message"),
        None => Err("DHCP decoder panicked"),
    }
}

/// Encodes a reply, padded to [`MIN_REPLY_LEN`].
fn encode(msg: &Message) -> Result<Vec<u8>, &'static str> {
    let mut buf = Vec::with_capacity(576);
    msg.encode(&mut Encoder::new(&mut buf))
        .map_err(|_| "DHCP reply encoding failed")?;
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, 0);
    }
    Ok(buf)
}

/// Builders and helpers shared by this crate's DHCP tests.
/// The lease part of an OFFER or ACK (address and times; none for the
/// answer to an INFORM), the configuration options and the PXE header
/// fields.
fn fill_lease(
    cfg: &DhcpConfig,
    req: &Message,
    kind: ReplyKind,
    reply: &mut Message,
    opts: &mut DhcpOptions,
) {
    match kind {
        ReplyKind::InformAck => {
            // RFC 2131 §4.3.5: no lease, no yiaddr, ciaddr echoed.
            reply.set_ciaddr(req.ciaddr());
        }
        _ => {
            if kind == ReplyKind::Ack {
                reply.set_ciaddr(req.ciaddr());
            }
            reply.set_yiaddr(cfg.client_ip);
            opts.insert(DhcpOption::AddressLeaseTime(cfg.lease_secs));
            opts.insert(DhcpOption::Renewal(cfg.lease_secs / 2));
            let t2 = u64::from(cfg.lease_secs) * 7 / 8;
            opts.insert(DhcpOption::Rebinding(u32::try_from(t2).unwrap_or(u32::MAX)));
        }
    }
    insert_config_options(cfg, opts);
    if let Some(name) = &cfg.extras.tftp_server_name {
        if name.len() <= SNAME_MAX && !name.contains('\0') {
            reply.set_sname_str(name);
        }
    }
    if let Some(file) = &cfg.extras.boot_file_name {
        if file.len() <= FILE_MAX && !file.contains('\0') {
            reply.set_fname_str(file);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use dhcproto::v4::Flags;

    pub(crate) const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    pub(crate) const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    pub(crate) const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    pub(crate) fn config() -> DhcpConfig {
        DhcpConfig {
            server_ip: SERVER,
            client_mac: MAC,
            client_ip: CLIENT,
            prefix_len: 24,
            router: Some(SERVER),
            dns_servers: vec![Ipv4Addr::new(10, 96, 0, 10)],
            search_domains: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            hostname: Some("vm1".into()),
            mtu: Some(1450),
            classless_routes: vec![],
            lease_secs: 86400,
            extras: DhcpExtras::default(),
        }
    }

    /// A client message of `msg_type` from `mac`, encoded.
    pub(crate) fn request(
        msg_type: MessageType,
        mac: &[u8],
        ciaddr: Ipv4Addr,
        extra: &[DhcpOption],
    ) -> Vec<u8> {
        let mut msg = Message::default();
        msg.set_xid(0x1234_5678)
            .set_ciaddr(ciaddr)
            .set_chaddr(mac)
            .set_flags(Flags::default());
        msg.opts_mut().insert(DhcpOption::MessageType(msg_type));
        msg.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
        ]));
        for opt in extra {
            msg.opts_mut().insert(opt.clone());
        }
        let mut buf = Vec::new();
        // Encoding a well-formed test message into a Vec cannot fail.
        let _ = msg.encode(&mut Encoder::new(&mut buf));
        buf
    }

    /// Decodes a reply packet, failing the test if it is not one.
    pub(crate) fn decode_reply(action: &DhcpAction) -> (Message, bool) {
        match action {
            DhcpAction::Reply { packet, broadcast } => {
                let msg = Message::decode(&mut Decoder::new(packet));
                assert!(msg.is_ok(), "reply does not decode: {msg:?}");
                (msg.unwrap_or_default(), *broadcast)
            }
            DhcpAction::Ignore(reason) => {
                unreachable!("expected a reply, got Ignore({reason:?})")
            }
        }
    }

    /// The one's-complement checksum of IPv4, UDP and ICMPv6 (RFC 1071);
    /// an odd length counts as padded with a zero byte.
    pub(crate) fn internet_checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = data
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// xorshift64*: deterministic pseudo-random bytes without a dependency.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub(crate) fn byte(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use dhcproto::v4::Flags;

    fn server() -> DhcpServer {
        DhcpServer::new(config())
    }

    fn opt(msg: &Message, code: OptionCode) -> Option<&DhcpOption> {
        msg.opts().get(code)
    }

    #[test]
    fn discover_gets_offer_with_all_options() {
        let mut s = server();
        let action = s.handle(&request(
            MessageType::Discover,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[],
        ));
        let (offer, broadcast) = decode_reply(&action);
        assert!(broadcast, "client without an address must get a broadcast");
        assert_eq!(offer.opcode(), Opcode::BootReply);
        assert_eq!(offer.xid(), 0x1234_5678);
        assert_eq!(offer.chaddr(), MAC);
        assert_eq!(offer.yiaddr(), CLIENT);
        assert_eq!(offer.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(
            opt(&offer, OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        assert_eq!(
            opt(&offer, OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            opt(&offer, OptionCode::Router),
            Some(&DhcpOption::Router(vec![SERVER]))
        );
        assert_eq!(
            opt(&offer, OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
                10, 96, 0, 10
            )]))
        );
        assert_eq!(
            opt(&offer, OptionCode::Hostname),
            Some(&DhcpOption::Hostname("vm1".into()))
        );
        assert_eq!(
            opt(&offer, OptionCode::DomainName),
            Some(&DhcpOption::DomainName("default.svc.cluster.local".into()))
        );
        assert_eq!(
            opt(&offer, OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1450))
        );
        assert_eq!(
            opt(&offer, OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(86400))
        );
        assert_eq!(
            opt(&offer, OptionCode::Renewal),
            Some(&DhcpOption::Renewal(43200))
        );
        assert_eq!(
            opt(&offer, OptionCode::Rebinding),
            Some(&DhcpOption::Rebinding(75600))
        );
        // dhcproto decodes our hand-encoded option 119 into names.
        match opt(&offer, OptionCode::DomainSearch) {
            Some(DhcpOption::DomainSearch(names)) => {
                let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                assert_eq!(
                    names,
                    [
                        "default.svc.cluster.local.",
                        "svc.cluster.local.",
                        "cluster.local."
                    ]
                );
            }
            other => unreachable!("bad option 119: {other:?}"),
        }
        assert_eq!(opt(&offer, OptionCode::ClasslessStaticRoute), None);
        assert_eq!(opt(&offer, OptionCode::TFTPServerName), None);
        assert_eq!(s.counters().discovers, 1);
        assert_eq!(s.counters().offers, 1);
    }

    #[test]
    fn reply_is_padded_to_bootp_minimum() {
        let mut cfg = config();
        cfg.search_domains.clear();
        cfg.dns_servers.clear();
        cfg.hostname = None;
        let mut s = DhcpServer::new(cfg);
        match s.handle(&request(
            MessageType::Discover,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[],
        )) {
            DhcpAction::Reply { packet, .. } => assert!(packet.len() >= MIN_REPLY_LEN),
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn classless_routes_include_default_route() {
        let mut cfg = config();
        cfg.classless_routes = vec![(
            Ipv4Addr::new(192, 168, 0, 0),
            16,
            Ipv4Addr::new(10, 0, 2, 3),
        )];
        let mut s = DhcpServer::new(cfg);
        let action = s.handle(&request(
            MessageType::Discover,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[],
        ));
        let (offer, _) = decode_reply(&action);
        match opt(&offer, OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(routes)) => {
                let routes: Vec<(String, Ipv4Addr)> = routes
                    .iter()
                    .map(|(net, gw)| (net.to_string(), *gw))
                    .collect();
                assert_eq!(
                    routes,
                    [
                        ("192.168.0.0/16".to_owned(), Ipv4Addr::new(10, 0, 2, 3)),
                        ("0.0.0.0/0".to_owned(), SERVER),
                    ]
                );
            }
            other => unreachable!("bad option 121: {other:?}"),
        }
        // Option 3 is still sent for clients without RFC 3442 support.
        assert!(opt(&offer, OptionCode::Router).is_some());
    }

    #[test]
    fn explicit_default_route_is_not_duplicated() {
        let mut cfg = config();
        let gw = Ipv4Addr::new(10, 0, 2, 9);
        cfg.classless_routes = vec![(Ipv4Addr::UNSPECIFIED, 0, gw)];
        let mut s = DhcpServer::new(cfg);
        let action = s.handle(&request(
            MessageType::Discover,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[],
        ));
        let (offer, _) = decode_reply(&action);
        match opt(&offer, OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(routes)) => {
                assert_eq!(routes.len(), 1);
                assert_eq!(routes[0].1, gw);
            }
            other => unreachable!("bad option 121: {other:?}"),
        }
    }

    #[test]
    fn ntp_and_private_options_in_offer_and_ack() {
        let mut cfg = config();
        cfg.extras.ntp_servers = vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
        cfg.extras.private_options = vec![(240, b"hello".to_vec()), (254, b"x".to_vec())];
        let mut s = DhcpServer::new(cfg);
        let selecting = [
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::RequestedIpAddress(CLIENT),
        ];
        for (msg, opts) in [
            (MessageType::Discover, &[][..]),
            (MessageType::Request, &selecting[..]),
        ] {
            let action = s.handle(&request(msg, &MAC, Ipv4Addr::UNSPECIFIED, opts));
            let (reply, _) = decode_reply(&action);
            assert_eq!(
                opt(&reply, OptionCode::NtpServers),
                Some(&DhcpOption::NtpServers(vec![
                    Ipv4Addr::new(192, 0, 2, 1),
                    Ipv4Addr::new(192, 0, 2, 2)
                ])),
                "{msg:?}"
            );
            for (code, value) in [(240u8, &b"hello"[..]), (254, b"x")] {
                match opt(&reply, OptionCode::from(code)) {
                    Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), value, "{msg:?}"),
                    other => panic!("option {code} in {msg:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn boot_options_and_header_fields() {
        let mut cfg = config();
        cfg.extras.boot_file_name = Some("pxelinux.0".into());
        cfg.extras.tftp_server_name = Some("tftp.example".into());
        let mut s = DhcpServer::new(cfg);
        let action = s.handle(&request(
            MessageType::Discover,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[],
        ));
        let (offer, _) = decode_reply(&action);
        assert_eq!(
            opt(&offer, OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"pxelinux.0".to_vec()))
        );
        assert_eq!(
            opt(&offer, OptionCode::TFTPServerName),
            Some(&DhcpOption::TFTPServerName(b"tftp.example".to_vec()))
        );
        // dhcproto returns header strings with their terminating NUL.
        assert_eq!(offer.fname(), Some(&b"pxelinux.0\0"[..]));
        assert_eq!(offer.sname(), Some(&b"tftp.example\0"[..]));

        // Too long for the header field: only the option carries it.
        let mut cfg = config();
        let long = "f".repeat(200);
        cfg.extras.boot_file_name = Some(long.clone());
        let mut s = DhcpServer::new(cfg);
        let action = s.handle(&request(
            MessageType::Discover,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[],
        ));
        let (offer, _) = decode_reply(&action);
        assert_eq!(offer.fname(), None);
        assert_eq!(
            opt(&offer, OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(long.into_bytes()))
        );
    }

    #[test]
    fn request_selecting_our_server_is_acked() {
        let mut s = server();
        let action = s.handle(&request(
            MessageType::Request,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[
                DhcpOption::ServerIdentifier(SERVER),
                DhcpOption::RequestedIpAddress(CLIENT),
            ],
        ));
        let (ack, broadcast) = decode_reply(&action);
        assert!(broadcast);
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), CLIENT);
        assert!(opt(&ack, OptionCode::AddressLeaseTime).is_some());
        assert_eq!(s.counters().requests, 1);
        assert_eq!(s.counters().acks, 1);
    }

    #[test]
    fn request_selecting_wrong_address_is_naked() {
        let mut s = server();
        let action = s.handle(&request(
            MessageType::Request,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[
                DhcpOption::ServerIdentifier(SERVER),
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 99)),
            ],
        ));
        let (nak, broadcast) = decode_reply(&action);
        assert!(broadcast);
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(s.counters().naks, 1);
    }

    #[test]
    fn request_for_other_server_is_ignored() {
        let mut s = server();
        let other = Ipv4Addr::new(10, 0, 2, 200);
        let action = s.handle(&request(
            MessageType::Request,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[
                DhcpOption::ServerIdentifier(other),
                DhcpOption::RequestedIpAddress(CLIENT),
            ],
        ));
        assert_eq!(action, DhcpAction::Ignore(IgnoreReason::OtherServer(other)));
        assert_eq!(s.counters().requests, 1);
        assert_eq!(s.counters().acks + s.counters().naks, 0);
    }

    #[test]
    fn init_reboot_request() {
        let mut s = server();
        let ok = s.handle(&request(
            MessageType::Request,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[DhcpOption::RequestedIpAddress(CLIENT)],
        ));
        assert_eq!(
            decode_reply(&ok).0.opts().msg_type(),
            Some(MessageType::Ack)
        );
        let bad = s.handle(&request(
            MessageType::Request,
            &MAC,
            Ipv4Addr::UNSPECIFIED,
            &[DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 168, 1, 5,
            ))],
        ));
        let (nak, broadcast) = decode_reply(&bad);
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert!(broadcast);
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(opt(&nak, OptionCode::AddressLeaseTime).is_none());
    }

    #[test]
    fn renew_is_unicast_ack_and_wrong_ciaddr_is_naked() {
        let mut s = server();
        let ok = s.handle(&request(MessageType::Request, &MAC, CLIENT, &[]));
        let (ack, broadcast) = decode_reply(&ok);
        assert!(!broadcast, "a renewing client with an address gets unicast");
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.ciaddr(), CLIENT);
        assert_eq!(ack.yiaddr(), CLIENT);

        let bad = s.handle(&request(
            MessageType::Request,
            &MAC,
            Ipv4Addr::new(10, 0, 2, 16),
            &[],
        ));
        let (nak, broadcast) = decode_reply(&bad);
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert!(broadcast);
        assert_eq!(s.counters().acks, 1);
        assert_eq!(s.counters().naks, 1);
    }

    #[test]
    fn broadcast_flag_is_honoured() {
        let mut s = server();
        let mut msg = Message::decode(&mut Decoder::new(&request(
            MessageType::Request,
            &MAC,
            CLIENT,
            &[],
        )))
        .unwrap_or_default();
        msg.set_flags(Flags::default().set_broadcast());
        let mut buf = Vec::new();
        assert!(msg.encode(&mut Encoder::new(&mut buf)).is_ok());
        let (ack, broadcast) = decode_reply(&s.handle(&buf));
        assert!(broadcast);
        assert!(ack.flags().broadcast());
    }

    #[test]
    fn inform_gets_ack_without_lease() {
        let mut s = server();
        let action = s.handle(&request(MessageType::Inform, &MAC, CLIENT, &[]));
        let (ack, broadcast) = decode_reply(&action);
        assert!(!broadcast);
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(ack.ciaddr(), CLIENT);
        assert!(opt(&ack, OptionCode::AddressLeaseTime).is_none());
        assert!(opt(&ack, OptionCode::Renewal).is_none());
        assert!(opt(&ack, OptionCode::Rebinding).is_none());
        assert!(opt(&ack, OptionCode::DomainNameServer).is_some());
        assert_eq!(s.counters().informs, 1);
        assert_eq!(s.counters().acks, 1);

        // From an address that is not the lease: still answered, by broadcast.
        let other = Ipv4Addr::new(10, 0, 2, 77);
        let (ack, broadcast) =
            decode_reply(&s.handle(&request(MessageType::Inform, &MAC, other, &[])));
        assert!(broadcast);
        assert_eq!(ack.ciaddr(), other);
    }

    #[test]
    fn release_and_decline_are_counted_and_ignored() {
        let mut s = server();
        assert_eq!(
            s.handle(&request(MessageType::Release, &MAC, CLIENT, &[])),
            DhcpAction::Ignore(IgnoreReason::Release)
        );
        assert_eq!(
            s.handle(&request(
                MessageType::Decline,
                &MAC,
                Ipv4Addr::UNSPECIFIED,
                &[DhcpOption::RequestedIpAddress(CLIENT)]
            )),
            DhcpAction::Ignore(IgnoreReason::Decline)
        );
        assert_eq!(s.counters().releases, 1);
        assert_eq!(s.counters().declines, 1);
    }

    #[test]
    fn foreign_mac_is_ignored() {
        let mut s = server();
        let other = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
        assert_eq!(
            s.handle(&request(
                MessageType::Discover,
                &other,
                Ipv4Addr::UNSPECIFIED,
                &[]
            )),
            DhcpAction::Ignore(IgnoreReason::ForeignMac)
        );
        assert_eq!(s.counters().dropped_foreign_mac, 1);
        assert_eq!(s.counters().discovers, 0);
    }

    #[test]
    fn bad_hlen_and_htype_are_malformed() {
        let mut s = server();
        // An 8-byte chaddr.
        let pkt = request(
            MessageType::Discover,
            &[0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0],
            Ipv4Addr::UNSPECIFIED,
            &[],
        );
        assert!(matches!(
            s.handle(&pkt),
            DhcpAction::Ignore(IgnoreReason::Malformed(_))
        ));
        // hlen 255 (must not reach dhcproto's chaddr(), which would panic).
        let mut pkt = request(MessageType::Discover, &MAC, Ipv4Addr::UNSPECIFIED, &[]);
        pkt[2] = 255;
        assert!(matches!(
            s.handle(&pkt),
            DhcpAction::Ignore(IgnoreReason::Malformed(_))
        ));
        // htype 6 (IEEE 802).
        let mut pkt = request(MessageType::Discover, &MAC, Ipv4Addr::UNSPECIFIED, &[]);
        pkt[1] = 6;
        assert!(matches!(
            s.handle(&pkt),
            DhcpAction::Ignore(IgnoreReason::Malformed(_))
        ));
        assert_eq!(s.counters().dropped_malformed, 3);
    }

    #[test]
    fn bootreply_and_server_messages_are_not_requests() {
        let mut s = server();
        let mut pkt = request(MessageType::Discover, &MAC, Ipv4Addr::UNSPECIFIED, &[]);
        pkt[0] = 2; // BOOTREPLY
        assert_eq!(s.handle(&pkt), DhcpAction::Ignore(IgnoreReason::NotRequest));
        let pkt = request(MessageType::Offer, &MAC, Ipv4Addr::UNSPECIFIED, &[]);
        assert_eq!(s.handle(&pkt), DhcpAction::Ignore(IgnoreReason::NotRequest));
        assert_eq!(s.counters().dropped_not_request, 2);
    }

    #[test]
    fn short_bad_magic_and_no_type_are_malformed() {
        let mut s = server();
        assert!(matches!(
            s.handle(&[]),
            DhcpAction::Ignore(IgnoreReason::Malformed(_))
        ));
        let mut pkt = request(MessageType::Discover, &MAC, Ipv4Addr::UNSPECIFIED, &[]);
        pkt[MAGIC_OFFSET] = 0;
        assert!(matches!(
            s.handle(&pkt),
            DhcpAction::Ignore(IgnoreReason::Malformed(_))
        ));
        // Plain BOOTP: magic cookie but only the End option.
        let mut pkt = request(MessageType::Discover, &MAC, Ipv4Addr::UNSPECIFIED, &[]);
        pkt.truncate(MIN_MESSAGE_LEN);
        pkt.push(255);
        assert_eq!(
            s.handle(&pkt),
            DhcpAction::Ignore(IgnoreReason::Malformed("no DHCP message type option"))
        );
        assert_eq!(s.counters().dropped_malformed, 3);
    }

    #[test]
    fn random_truncated_and_mutated_packets_never_panic() {
        let mut s = server();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let valid = [
            request(MessageType::Discover, &MAC, Ipv4Addr::UNSPECIFIED, &[]),
            request(
                MessageType::Request,
                &MAC,
                Ipv4Addr::UNSPECIFIED,
                &[
                    DhcpOption::ServerIdentifier(SERVER),
                    DhcpOption::RequestedIpAddress(CLIENT),
                ],
            ),
            request(MessageType::Inform, &MAC, CLIENT, &[]),
        ];
        let mut handled = 0u64;
        // Every truncation of every valid packet.
        for pkt in &valid {
            for len in 0..=pkt.len() {
                let _ = s.handle(&pkt[..len]);
                handled += 1;
            }
        }
        // Pure noise, with and without a valid fixed header.
        for i in 0..3000 {
            let len = rng.below(700);
            let mut pkt: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if i % 2 == 0 && pkt.len() >= MIN_MESSAGE_LEN {
                pkt[0] = 1;
                pkt[1] = 1;
                pkt[2] = 6;
                pkt[28..34].copy_from_slice(&MAC);
                pkt[MAGIC_OFFSET..MIN_MESSAGE_LEN].copy_from_slice(&MAGIC);
            }
            let _ = s.handle(&pkt);
            handled += 1;
        }
        // Valid packets with random bytes of the option area rewritten.
        for _ in 0..5000 {
            let mut pkt = valid[rng.below(valid.len())].clone();
            for _ in 0..1 + rng.below(8) {
                let at = MIN_MESSAGE_LEN + rng.below(pkt.len() - MIN_MESSAGE_LEN);
                pkt[at] = rng.byte();
            }
            if rng.below(4) == 0 {
                let extra = rng.below(64);
                pkt.extend((0..extra).map(|_| rng.byte()));
            }
            if rng.below(4) == 0 {
                let len = MIN_MESSAGE_LEN + rng.below(pkt.len() - MIN_MESSAGE_LEN);
                pkt.truncate(len);
            }
            let _ = s.handle(&pkt);
            handled += 1;
        }
        let c = s.counters();
        let accounted = c.discovers
            + c.requests
            + c.informs
            + c.releases
            + c.declines
            + c.dropped_malformed
            + c.dropped_foreign_mac
            + c.dropped_not_request;
        assert_eq!(accounted, handled, "every packet is counted once: {c:?}");
        assert!(c.offers + c.acks + c.naks > 0);
    }
}
