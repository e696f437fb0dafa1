//! The DHCPv6 protocol logic: [`Dhcp6Server::handle`] turns a received
//! message into a [`Dhcp6Action`]; pure, never panics. See the
//! [module docs](super) for which clients are answered.

use std::net::Ipv6Addr;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, Message, MessageType, OptionCode, Status, StatusCode,
    UnknownOption, IANA, IAPD,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

/// DUID type: link-layer address plus time (RFC 8415 §11.2).
const DUID_LLT: u16 = 1;
/// DUID type: link-layer address (RFC 8415 §11.4).
const DUID_LL: u16 = 3;
/// Hardware type Ethernet (RFC 826).
const HTYPE_ETHERNET: u16 = 1;
/// Longest DUID allowed (RFC 8415 §11.1: 128 bytes plus the type).
const MAX_DUID_LEN: usize = 130;
/// Message type codes (RFC 8415 §7.3) of what clients send.
const SOLICIT: u8 = 1;
const REQUEST: u8 = 3;
const CONFIRM: u8 = 4;
const RENEW: u8 = 5;
const REBIND: u8 = 6;
const RELEASE: u8 = 8;
const DECLINE: u8 = 9;
const INFORMATION_REQUEST: u8 = 11;
/// Option code of the domain search list (RFC 3646).
const OPTION_DOMAIN_LIST: u16 = 24;

/// A DUID-LL (RFC 8415 §11.4) for an Ethernet `mac`, e.g. the server DUID
/// from the bridge's MAC.
pub fn duid_ll(mac: [u8; 6]) -> Vec<u8> {
    let mut duid = Vec::with_capacity(10);
    duid.extend_from_slice(&DUID_LL.to_be_bytes());
    duid.extend_from_slice(&HTYPE_ETHERNET.to_be_bytes());
    duid.extend_from_slice(&mac);
    duid
}

/// The Ethernet MAC a DUID-LLT or DUID-LL names, if any.
pub fn duid_mac(duid: &[u8]) -> Option<[u8; 6]> {
    let ty = u16::from_be_bytes([*duid.first()?, *duid.get(1)?]);
    let htype = u16::from_be_bytes([*duid.get(2)?, *duid.get(3)?]);
    let lladdr = match ty {
        DUID_LLT => duid.get(8..)?,
        DUID_LL => duid.get(4..)?,
        _ => return None,
    };
    if htype != HTYPE_ETHERNET {
        return None;
    }
    lladdr.try_into().ok()
}

/// What the server hands out to its single client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp6Config {
    /// The server's DUID (option 2), normally [`duid_ll`] of the bridge MAC.
    pub server_duid: Vec<u8>,
    /// Messages whose MAC-based client DUID names another MAC are ignored.
    pub client_mac: [u8; 6],
    /// The address leased to the client (in an IA_NA).
    pub client_ip: Ipv6Addr,
    /// DNS recursive name servers (option 23).
    pub dns_servers: Vec<Ipv6Addr>,
    /// Domain search list (option 24).
    pub search: Vec<String>,
    /// Preferred lifetime of the address, in seconds; T1 is half of it and
    /// T2 four fifths (RFC 8415 §21.4).
    pub preferred_lifetime: u32,
    /// Valid lifetime of the address, in seconds.
    pub valid_lifetime: u32,
}

/// What to do with a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dhcp6Action {
    /// Send this message (the UDP payload) back to the sender's address
    /// and port.
    Reply(Vec<u8>),
    /// Send nothing.
    Ignore(Dhcp6IgnoreReason),
}

/// Why a message was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dhcp6IgnoreReason {
    /// Not a decodable DHCPv6 client message, or one missing a required
    /// option.
    Malformed(&'static str),
    /// A message type that only servers or relays send.
    NotRequest,
    /// The MAC-based client DUID names another MAC.
    ForeignMac,
    /// The message carries another server's DUID.
    OtherServer,
    /// A CONFIRM without addresses (RFC 8415 §18.3.3: no reply).
    NothingToConfirm,
}

/// Per-server counters of received messages and sent replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dhcp6Counters {
    /// SOLICITs received.
    pub solicits: u64,
    /// ADVERTISEs sent.
    pub advertises: u64,
    /// REQUESTs received.
    pub requests: u64,
    /// RENEWs received.
    pub renews: u64,
    /// REBINDs received.
    pub rebinds: u64,
    /// CONFIRMs received.
    pub confirms: u64,
    /// INFORMATION-REQUESTs received.
    pub information_requests: u64,
    /// RELEASEs received.
    pub releases: u64,
    /// DECLINEs received.
    pub declines: u64,
    /// REPLYs sent (rapid commit included).
    pub replies: u64,
    /// SOLICITs answered with a rapid-commit REPLY.
    pub rapid_commits: u64,
    /// Messages answered although their client DUID is not MAC-based.
    pub non_mac_duid: u64,
    /// Messages dropped as undecodable or incomplete.
    pub dropped_malformed: u64,
    /// Messages dropped because the client DUID names another MAC.
    pub dropped_foreign_mac: u64,
    /// Server/relay message types dropped.
    pub dropped_not_request: u64,
    /// Messages dropped because they name another server.
    pub dropped_other_server: u64,
}

/// A DHCPv6 server for exactly one client with a fixed address.
#[derive(Debug)]
pub struct Dhcp6Server {
    config: Dhcp6Config,
    counters: Dhcp6Counters,
}

impl Dhcp6Server {
    /// A server for `config`; see the [module docs](self) for which
    /// clients it answers.
    pub fn new(config: Dhcp6Config) -> Self {
        Self {
            config,
            counters: Dhcp6Counters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Dhcp6Config {
        &self.config
    }

    /// The counters so far.
    pub fn counters(&self) -> &Dhcp6Counters {
        &self.counters
    }

    /// Handles one received DHCPv6 message (a UDP payload). Never panics,
    /// on any input.
    pub fn handle(&mut self, packet: &[u8]) -> Dhcp6Action {
        let action = self.handle_inner(packet);
        match &action {
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::Malformed(_)) => {
                self.counters.dropped_malformed += 1
            }
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::NotRequest) => {
                self.counters.dropped_not_request += 1
            }
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::ForeignMac) => {
                self.counters.dropped_foreign_mac += 1
            }
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::OtherServer) => {
                self.counters.dropped_other_server += 1
            }
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::NothingToConfirm) => {}
            Dhcp6Action::Reply(reply) => match reply.first() {
                Some(2) => self.counters.advertises += 1,
                _ => self.counters.replies += 1,
            },
        }
        action
    }

    fn handle_inner(&mut self, packet: &[u8]) -> Dhcp6Action {
        use Dhcp6IgnoreReason::*;
        let Some(&ty) = packet.first() else {
            return Dhcp6Action::Ignore(Malformed("empty message"));
        };
        if !matches!(
            ty,
            SOLICIT | REQUEST | CONFIRM | RENEW | REBIND | RELEASE | DECLINE | INFORMATION_REQUEST
        ) {
            return Dhcp6Action::Ignore(NotRequest);
        }
        let msg = match parse(packet) {
            Ok(msg) => msg,
            Err(reason) => return Dhcp6Action::Ignore(Malformed(reason)),
        };

        if let Err(reason) = self.check_identifiers(ty, &msg) {
            return Dhcp6Action::Ignore(reason);
        }
        self.respond(ty, &msg)
    }

    /// Checks the client identifier (required except in
    /// INFORMATION-REQUEST; a MAC-based one must carry the guest's MAC) and
    /// the server identifier (required in REQUEST, RENEW, RELEASE and
    /// DECLINE; ours whenever present).
    fn check_identifiers(&mut self, ty: u8, msg: &Message) -> Result<(), Dhcp6IgnoreReason> {
        use Dhcp6IgnoreReason::*;
        // Client identifier: required except in INFORMATION-REQUEST.
        let client_id = match msg.opts().get(OptionCode::ClientId) {
            Some(DhcpOption::ClientId(id)) => Some(id.as_slice()),
            _ => None,
        };
        match client_id {
            None if ty != INFORMATION_REQUEST => {
                return Err(Malformed("no client identifier"));
            }
            Some(id) if id.len() < 2 || id.len() > MAX_DUID_LEN => {
                return Err(Malformed("bad client identifier length"));
            }
            Some(id) => match duid_mac(id) {
                Some(mac) if mac != self.config.client_mac => {
                    return Err(ForeignMac);
                }
                Some(_) => {}
                None => self.counters.non_mac_duid += 1,
            },
            None => {}
        }

        // Server identifier: required in REQUEST, RENEW, RELEASE and
        // DECLINE; must be ours whenever present.
        let server_id = match msg.opts().get(OptionCode::ServerId) {
            Some(DhcpOption::ServerId(id)) => Some(id.as_slice()),
            _ => None,
        };
        match server_id {
            Some(id) if id != self.config.server_duid.as_slice() => {
                return Err(OtherServer);
            }
            None if matches!(ty, REQUEST | RENEW | RELEASE | DECLINE) => {
                return Err(Malformed("no server identifier"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts the (checked) request and builds the reply its type asks for.
    fn respond(&mut self, ty: u8, msg: &Message) -> Dhcp6Action {
        use Dhcp6IgnoreReason::*;
        let result = match ty {
            SOLICIT => {
                self.counters.solicits += 1;
                if msg.opts().get(OptionCode::RapidCommit).is_some() {
                    self.counters.rapid_commits += 1;
                    self.reply(msg, MessageType::Reply, Body::Addresses, true)
                } else {
                    self.reply(msg, MessageType::Advertise, Body::Addresses, false)
                }
            }
            REQUEST | RENEW | REBIND => {
                match ty {
                    REQUEST => self.counters.requests += 1,
                    RENEW => self.counters.renews += 1,
                    _ => self.counters.rebinds += 1,
                }
                self.reply(msg, MessageType::Reply, Body::Addresses, false)
            }
            CONFIRM => {
                self.counters.confirms += 1;
                let addrs = ia_na_addresses(msg);
                if addrs.is_empty() {
                    return Dhcp6Action::Ignore(NothingToConfirm);
                }
                let on_link = addrs.iter().all(|a| *a == self.config.client_ip);
                let status = if on_link {
                    Status::Success
                } else {
                    Status::NotOnLink
                };
                self.reply(msg, MessageType::Reply, Body::Status(status), false)
            }
            RELEASE | DECLINE => {
                if ty == RELEASE {
                    self.counters.releases += 1;
                    tracing::debug!("DHCPv6 RELEASE from the guest");
                } else {
                    self.counters.declines += 1;
                    tracing::warn!(
                        client_ip = %self.config.client_ip,
                        "guest declined its DHCPv6 address (duplicate address on the link?)"
                    );
                }
                self.reply(
                    msg,
                    MessageType::Reply,
                    Body::Status(Status::Success),
                    false,
                )
            }
            _ => {
                self.counters.information_requests += 1;
                self.reply(msg, MessageType::Reply, Body::InfoOnly, false)
            }
        };
        match result {
            Ok(bytes) => Dhcp6Action::Reply(bytes),
            Err(reason) => Dhcp6Action::Ignore(Malformed(reason)),
        }
    }

    /// Builds and encodes a reply of `msg_type` to `req`.
    fn reply(
        &self,
        req: &Message,
        msg_type: MessageType,
        body: Body,
        rapid_commit: bool,
    ) -> Result<Vec<u8>, &'static str> {
        let mut reply = Message::new_with_id(msg_type, req.xid());
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::ServerId(self.config.server_duid.clone()));
        if let Some(DhcpOption::ClientId(id)) = req.opts().get(OptionCode::ClientId) {
            opts.insert(DhcpOption::ClientId(id.clone()));
        }
        match body {
            Body::Addresses => {
                let mut any_ia = false;
                for opt in req.opts().iter() {
                    match opt {
                        DhcpOption::IANA(ia) => {
                            // One address to give: the first IA_NA gets it.
                            let ia = if any_ia {
                                no_addrs_ia(ia.id)
                            } else {
                                self.ia_na(ia.id)
                            };
                            any_ia = true;
                            opts.insert(DhcpOption::IANA(ia));
                        }
                        DhcpOption::IAPD(pd) => {
                            opts.insert(DhcpOption::IAPD(IAPD {
                                id: pd.id,
                                t1: 0,
                                t2: 0,
                                opts: status_opts(Status::NoPrefixAvail, "no prefix delegation"),
                            }));
                        }
                        _ => {}
                    }
                }
                if !any_ia {
                    opts.insert(status(Status::NoAddrsAvail, "only IA_NA is served"));
                }
                if msg_type == MessageType::Advertise {
                    // 255: the client need not wait for other servers.
                    opts.insert(DhcpOption::Preference(255));
                }
            }
            Body::Status(code) => {
                opts.insert(status(code, ""));
            }
            Body::InfoOnly => {}
        }
        if rapid_commit {
            opts.insert(DhcpOption::RapidCommit);
        }
        if !self.config.dns_servers.is_empty() {
            opts.insert(DhcpOption::DomainNameServers(
                self.config.dns_servers.clone(),
            ));
        }
        let search = encode_domain_list(&self.config.search);
        if !search.is_empty() {
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::from(OPTION_DOMAIN_LIST),
                search,
            )));
        }
        let mut buf = Vec::with_capacity(256);
        reply
            .encode(&mut Encoder::new(&mut buf))
            .map_err(|_| "DHCPv6 reply encoding failed")?;
        Ok(buf)
    }

    /// An IA_NA with the client's address.
    fn ia_na(&self, id: u32) -> IANA {
        let pref = self.config.preferred_lifetime;
        let (t1, t2) = if pref == u32::MAX {
            (u32::MAX, u32::MAX)
        } else {
            (
                pref / 2,
                u32::try_from(u64::from(pref) * 4 / 5).unwrap_or(u32::MAX),
            )
        };
        let mut opts = DhcpOptions::new();
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: self.config.client_ip,
            preferred_life: pref,
            valid_life: self.config.valid_lifetime.max(pref),
            opts: DhcpOptions::new(),
        }));
        IANA { id, t1, t2, opts }
    }
}

/// What a reply carries besides the identifiers and DNS options.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// IA_NA (and IA_PD refusals) for the client's IAs.
    Addresses,
    /// A top-level status code.
    Status(Status),
    /// Nothing more (INFORMATION-REQUEST).
    InfoOnly,
}

fn status(code: Status, msg: &str) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status: code,
        msg: msg.to_owned(),
    })
}

fn status_opts(code: Status, msg: &str) -> DhcpOptions {
    let mut opts = DhcpOptions::new();
    opts.insert(status(code, msg));
    opts
}

fn no_addrs_ia(id: u32) -> IANA {
    IANA {
        id,
        t1: 0,
        t2: 0,
        opts: status_opts(Status::NoAddrsAvail, "one address per client"),
    }
}

/// Every address in the IA_NAs of `msg`.
fn ia_na_addresses(msg: &Message) -> Vec<Ipv6Addr> {
    let mut addrs = Vec::new();
    for opt in msg.opts().iter() {
        if let DhcpOption::IANA(ia) = opt {
            for inner in ia.opts.iter() {
                if let DhcpOption::IAAddr(a) = inner {
                    addrs.push(a.addr);
                }
            }
        }
    }
    addrs
}

/// Decodes a client message. `dhcproto` runs under `catch_unwind`: the
/// bytes come from the guest, and a bug in a third-party parser must not
/// take the VMM down.
fn parse(packet: &[u8]) -> Result<Message, &'static str> {
    if packet.len() < 4 {
        return Err("shorter than a DHCPv6 header");
    }
    let decoded = crate::contained::contain(|| Message::decode(&mut Decoder::new(packet)));
    match decoded {
        Some(Ok(msg)) => Ok(msg),
        Some(Err(_)) => Err("undecodable DHCPv6 message"),
        None => Err("DHCPv6 decoder panicked"),
    }
}

/// Encodes a domain search list as RFC 3646 wants it: uncompressed RFC 1035
/// names. Invalid names are skipped with a warning.
pub fn encode_domain_list(domains: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    'names: for domain in domains {
        let trimmed = domain.trim_end_matches('.');
        if trimmed.is_empty() || trimmed.len() > 253 {
            tracing::warn!(domain, "search domain skipped: bad length");
            continue;
        }
        let mut name = Vec::with_capacity(trimmed.len() + 2);
        for label in trimmed.split('.') {
            let Ok(len) = u8::try_from(label.len()) else {
                tracing::warn!(domain, "search domain skipped: label too long");
                continue 'names;
            };
            if len == 0 || len > 63 || !label.is_ascii() {
                tracing::warn!(domain, "search domain skipped: bad label");
                continue 'names;
            }
            name.push(len);
            name.extend_from_slice(label.as_bytes());
        }
        name.push(0);
        out.extend_from_slice(&name);
    }
    out
}

#[cfg(test)]
mod tests {
    use dhcproto::Name;

    use super::*;

    /// Fuzzer regression (tests/fuzz/seeds/dhcp/regress-dhcproto-v6-status-code-underflow):
    /// dhcproto panics on this message (an option shorter than its fixed
    /// part: `len - 4` overflows). The panic is contained and marked, the
    /// message ignored, and the server keeps serving.
    #[test]
    fn fuzz_regression_dhcproto_underflow_is_contained() {
        let hex = [
            "010106cdab000034000012800000000000000000000000000000000052540012",
            "3456000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000525400123456000000",
            "0000000000000000000056000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000010000000000000000000000000",
            "0000000000000000000000000000000000000000000000006382536335010737",
            "040103060fff",
        ]
        .concat();
        let packet: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut server = Dhcp6Server::new(config());
        assert_eq!(
            server.handle(&packet),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::Malformed("DHCPv6 decoder panicked"))
        );
        assert!(!crate::contained::active());
        let solicit = request(MessageType::Solicit, Some(duid_ll(MAC)), vec![ia(7)]);
        assert_eq!(
            reply_of(server.handle(&solicit)).msg_type(),
            MessageType::Advertise
        );
    }
    use crate::dhcp::server::test_util::Rng;

    const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const CLIENT: Ipv6Addr = Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 2);
    const DNS: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 10);

    fn config() -> Dhcp6Config {
        Dhcp6Config {
            server_duid: duid_ll(SERVER_MAC),
            client_mac: MAC,
            client_ip: CLIENT,
            dns_servers: vec![DNS],
            search: vec!["default.svc.cluster.local".into(), "cluster.local.".into()],
            preferred_lifetime: 3600,
            valid_lifetime: 7200,
        }
    }

    fn request(ty: MessageType, client_duid: Option<Vec<u8>>, extra: Vec<DhcpOption>) -> Vec<u8> {
        let mut msg = Message::new_with_id(ty, [1, 2, 3]);
        if let Some(duid) = client_duid {
            msg.opts_mut().insert(DhcpOption::ClientId(duid));
        }
        for opt in extra {
            msg.opts_mut().insert(opt);
        }
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    fn ia(id: u32) -> DhcpOption {
        DhcpOption::IANA(IANA {
            id,
            t1: 0,
            t2: 0,
            opts: DhcpOptions::new(),
        })
    }

    fn ia_with(id: u32, addr: Ipv6Addr) -> DhcpOption {
        let mut opts = DhcpOptions::new();
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr,
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
        DhcpOption::IANA(IANA {
            id,
            t1: 0,
            t2: 0,
            opts,
        })
    }

    fn server_id() -> DhcpOption {
        DhcpOption::ServerId(duid_ll(SERVER_MAC))
    }

    fn reply_of(action: Dhcp6Action) -> Message {
        match action {
            Dhcp6Action::Reply(bytes) => Message::decode(&mut Decoder::new(&bytes)).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn assert_address(reply: &Message, iaid: u32) {
        let Some(DhcpOption::IANA(ia)) = reply.opts().get(OptionCode::IANA) else {
            panic!("no IA_NA in {reply:?}");
        };
        assert_eq!(ia.id, iaid);
        assert_eq!(ia.t1, 1800);
        assert_eq!(ia.t2, 2880);
        let Some(DhcpOption::IAAddr(addr)) = ia.opts.get(OptionCode::IAAddr) else {
            panic!("no IAADDR in {ia:?}");
        };
        assert_eq!(addr.addr, CLIENT);
        assert_eq!(addr.preferred_life, 3600);
        assert_eq!(addr.valid_life, 7200);
    }

    fn assert_ids_and_dns(reply: &Message, client_duid: &[u8]) {
        assert_eq!(reply.xid(), [1, 2, 3]);
        assert_eq!(
            reply.opts().get(OptionCode::ServerId),
            Some(&DhcpOption::ServerId(duid_ll(SERVER_MAC)))
        );
        assert_eq!(
            reply.opts().get(OptionCode::ClientId),
            Some(&DhcpOption::ClientId(client_duid.to_vec()))
        );
        assert_eq!(
            reply.opts().get(OptionCode::DomainNameServers),
            Some(&DhcpOption::DomainNameServers(vec![DNS]))
        );
        assert_eq!(
            reply.opts().get(OptionCode::DomainSearchList),
            Some(&DhcpOption::DomainSearchList(vec![
                Name::from_ascii("default.svc.cluster.local.").unwrap(),
                Name::from_ascii("cluster.local.").unwrap(),
            ]))
        );
    }

    #[test]
    fn duid_helpers() {
        let ll = duid_ll(MAC);
        assert_eq!(ll, [0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(duid_mac(&ll), Some(MAC));
        let mut llt = vec![0, 1, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        llt.extend_from_slice(&MAC);
        assert_eq!(duid_mac(&llt), Some(MAC));
        assert_eq!(duid_mac(&[0, 2, 0, 0, 0, 9, 1, 2]), None); // DUID-EN
        assert_eq!(duid_mac(&[0, 3, 0, 6, 1, 2, 3, 4, 5, 6]), None); // not Ethernet
        assert_eq!(duid_mac(&[0, 3, 0, 1, 1, 2]), None); // short
        assert_eq!(duid_mac(&[0]), None);
    }

    #[test]
    fn solicit_gets_advertise_with_address() {
        let mut server = Dhcp6Server::new(config());
        let duid = duid_ll(MAC);
        let solicit = request(MessageType::Solicit, Some(duid.clone()), vec![ia(7)]);
        let adv = reply_of(server.handle(&solicit));
        assert_eq!(adv.msg_type(), MessageType::Advertise);
        assert_ids_and_dns(&adv, &duid);
        assert_address(&adv, 7);
        assert_eq!(
            adv.opts().get(OptionCode::Preference),
            Some(&DhcpOption::Preference(255))
        );
        assert!(adv.opts().get(OptionCode::RapidCommit).is_none());
        assert_eq!(server.counters().solicits, 1);
        assert_eq!(server.counters().advertises, 1);
        assert_eq!(server.counters().replies, 0);
    }

    #[test]
    fn solicit_with_rapid_commit_gets_reply() {
        let mut server = Dhcp6Server::new(config());
        let duid = duid_ll(MAC);
        let solicit = request(
            MessageType::Solicit,
            Some(duid.clone()),
            vec![ia(1), DhcpOption::RapidCommit],
        );
        let reply = reply_of(server.handle(&solicit));
        assert_eq!(reply.msg_type(), MessageType::Reply);
        assert!(reply.opts().get(OptionCode::RapidCommit).is_some());
        assert_ids_and_dns(&reply, &duid);
        assert_address(&reply, 1);
        assert_eq!(server.counters().rapid_commits, 1);
        assert_eq!(server.counters().replies, 1);
    }

    #[test]
    fn request_renew_rebind_get_reply() {
        let mut server = Dhcp6Server::new(config());
        let duid = duid_ll(MAC);
        for ty in [MessageType::Request, MessageType::Renew] {
            let msg = request(ty, Some(duid.clone()), vec![ia(3), server_id()]);
            let reply = reply_of(server.handle(&msg));
            assert_eq!(reply.msg_type(), MessageType::Reply);
            assert_ids_and_dns(&reply, &duid);
            assert_address(&reply, 3);
        }
        let rebind = request(MessageType::Rebind, Some(duid.clone()), vec![ia(3)]);
        assert_address(&reply_of(server.handle(&rebind)), 3);
        let c = server.counters();
        assert_eq!((c.requests, c.renews, c.rebinds, c.replies), (1, 1, 1, 3));
    }

    #[test]
    fn request_needs_our_server_id() {
        let mut server = Dhcp6Server::new(config());
        let duid = duid_ll(MAC);
        let none = request(MessageType::Request, Some(duid.clone()), vec![ia(3)]);
        assert!(matches!(
            server.handle(&none),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::Malformed(_))
        ));
        let other = request(
            MessageType::Request,
            Some(duid),
            vec![ia(3), DhcpOption::ServerId(duid_ll([9; 6]))],
        );
        assert_eq!(
            server.handle(&other),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::OtherServer)
        );
        assert_eq!(server.counters().dropped_other_server, 1);
        assert_eq!(server.counters().dropped_malformed, 1);
    }

    #[test]
    fn information_request_gets_dns() {
        let mut server = Dhcp6Server::new(config());
        let duid = duid_ll(MAC);
        let msg = request(MessageType::InformationRequest, Some(duid.clone()), vec![]);
        let reply = reply_of(server.handle(&msg));
        assert_eq!(reply.msg_type(), MessageType::Reply);
        assert_ids_and_dns(&reply, &duid);
        assert!(reply.opts().get(OptionCode::IANA).is_none());
        // Without a client identifier too.
        let anon = request(MessageType::InformationRequest, None, vec![]);
        let reply = reply_of(server.handle(&anon));
        assert_eq!(
            reply.opts().get(OptionCode::DomainNameServers),
            Some(&DhcpOption::DomainNameServers(vec![DNS]))
        );
        assert_eq!(server.counters().information_requests, 2);
    }

    #[test]
    fn confirm_checks_the_address() {
        let mut server = Dhcp6Server::new(config());
        let duid = duid_ll(MAC);
        let good = request(
            MessageType::Confirm,
            Some(duid.clone()),
            vec![ia_with(1, CLIENT)],
        );
        let reply = reply_of(server.handle(&good));
        assert_eq!(
            reply.opts().get(OptionCode::StatusCode),
            Some(&status(Status::Success, ""))
        );
        let bad = request(
            MessageType::Confirm,
            Some(duid.clone()),
            vec![ia_with(1, Ipv6Addr::LOCALHOST)],
        );
        let reply = reply_of(server.handle(&bad));
        assert_eq!(
            reply.opts().get(OptionCode::StatusCode),
            Some(&status(Status::NotOnLink, ""))
        );
        let empty = request(MessageType::Confirm, Some(duid), vec![ia(1)]);
        assert_eq!(
            server.handle(&empty),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::NothingToConfirm)
        );
    }

    #[test]
    fn release_and_decline_get_success() {
        let mut server = Dhcp6Server::new(config());
        let duid = duid_ll(MAC);
        for ty in [MessageType::Release, MessageType::Decline] {
            let msg = request(
                ty,
                Some(duid.clone()),
                vec![ia_with(1, CLIENT), server_id()],
            );
            let reply = reply_of(server.handle(&msg));
            assert_eq!(
                reply.opts().get(OptionCode::StatusCode),
                Some(&status(Status::Success, ""))
            );
        }
        assert_eq!(server.counters().releases, 1);
        assert_eq!(server.counters().declines, 1);
    }

    #[test]
    fn foreign_mac_ignored_non_mac_duid_answered() {
        let mut server = Dhcp6Server::new(config());
        let foreign = request(MessageType::Solicit, Some(duid_ll([7; 6])), vec![ia(1)]);
        assert_eq!(
            server.handle(&foreign),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::ForeignMac)
        );
        assert_eq!(server.counters().dropped_foreign_mac, 1);
        // DUID-EN (systemd-networkd style).
        let en = vec![0, 2, 0, 0, 0xab, 0x11, 1, 2, 3, 4, 5, 6, 7, 8];
        let solicit = request(MessageType::Solicit, Some(en.clone()), vec![ia(2)]);
        let adv = reply_of(server.handle(&solicit));
        assert_address(&adv, 2);
        assert_ids_and_dns(&adv, &en);
        assert_eq!(server.counters().non_mac_duid, 1);
    }

    #[test]
    fn extra_ias_and_pd_are_refused() {
        let mut server = Dhcp6Server::new(config());
        let pd = DhcpOption::IAPD(IAPD {
            id: 9,
            t1: 0,
            t2: 0,
            opts: DhcpOptions::new(),
        });
        let solicit = request(
            MessageType::Solicit,
            Some(duid_ll(MAC)),
            vec![ia(1), ia(2), pd],
        );
        let adv = reply_of(server.handle(&solicit));
        let ias = adv.opts().get_all(OptionCode::IANA).unwrap();
        assert_eq!(ias.len(), 2);
        let Some(DhcpOption::IAPD(pd)) = adv.opts().get(OptionCode::IAPD) else {
            panic!("no IA_PD");
        };
        assert_eq!(
            pd.opts.get(OptionCode::StatusCode),
            Some(&status(Status::NoPrefixAvail, "no prefix delegation"))
        );
        // No IA_NA at all: top-level NoAddrsAvail.
        let bare = request(MessageType::Solicit, Some(duid_ll(MAC)), vec![]);
        let adv = reply_of(server.handle(&bare));
        assert!(matches!(
            adv.opts().get(OptionCode::StatusCode),
            Some(DhcpOption::StatusCode(StatusCode {
                status: Status::NoAddrsAvail,
                ..
            }))
        ));
    }

    #[test]
    fn server_messages_and_garbage_are_ignored() {
        let mut server = Dhcp6Server::new(config());
        let adv = request(MessageType::Advertise, Some(duid_ll(MAC)), vec![]);
        assert_eq!(
            server.handle(&adv),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::NotRequest)
        );
        assert!(matches!(
            server.handle(&[]),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::Malformed(_))
        ));
        assert!(matches!(
            server.handle(&[1, 2]),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::Malformed(_))
        ));
        // Option length running past the end.
        assert!(matches!(
            server.handle(&[1, 0, 0, 1, 0, 1, 0, 50, 0, 3]),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::Malformed(_))
        ));
        let no_client = request(MessageType::Solicit, None, vec![ia(1)]);
        assert!(matches!(
            server.handle(&no_client),
            Dhcp6Action::Ignore(Dhcp6IgnoreReason::Malformed(_))
        ));
        assert_eq!(server.counters().dropped_not_request, 1);
        assert_eq!(server.counters().dropped_malformed, 4);
    }

    #[test]
    fn domain_list_encoding() {
        assert_eq!(
            encode_domain_list(&["a.bc".into(), "".into(), "x..y".into(), "d.".into()]),
            [1, b'a', 2, b'b', b'c', 0, 1, b'd', 0]
        );
        assert_eq!(encode_domain_list(&["a".repeat(64)]), Vec::<u8>::new());
    }

    #[test]
    fn fuzz_never_panics() {
        let mut server = Dhcp6Server::new(config());
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let seeds = [
            request(MessageType::Solicit, Some(duid_ll(MAC)), vec![ia(1)]),
            request(
                MessageType::Request,
                Some(duid_ll(MAC)),
                vec![ia_with(1, CLIENT), server_id()],
            ),
            request(MessageType::InformationRequest, None, vec![]),
        ];
        for i in 0..20_000 {
            let packet: Vec<u8> = match i % 3 {
                0 => {
                    // Random bytes with a client message type.
                    let len = rng.below(300);
                    let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    if let Some(b) = p.first_mut() {
                        *b = [1, 3, 4, 5, 6, 8, 9, 11][rng.below(8)];
                    }
                    p
                }
                1 => {
                    // Truncated seed.
                    let seed = &seeds[rng.below(seeds.len())];
                    seed[..rng.below(seed.len() + 1)].to_vec()
                }
                _ => {
                    // Seed with flipped bytes.
                    let mut p = seeds[rng.below(seeds.len())].clone();
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(p.len());
                        p[at] = rng.next() as u8;
                    }
                    p
                }
            };
            let _ = server.handle(&packet);
        }
        assert!(server.counters().dropped_malformed > 0);
    }
}
