//! The bridge binding: the pod interface and the VM's tap share a bridge,
//! and the guest takes over the pod's IPv4 address.
//!
//! [`setup_bridge`] does what KubeVirt's bridge binding does:
//!
//! 1. reads the pod interface's MAC, MTU, IPv4 addresses and the main
//!    table's IPv4 routes through it;
//! 2. creates the bridge with the pod MTU, recording that state in the
//!    bridge's alias (see [`PodIfaceState`]) so a later run can restore it
//!    after a SIGKILL;
//! 3. creates the tap (pod MTU, bridge port, up);
//! 4. removes the IPv4 addresses from the pod interface, optionally swaps
//!    its MAC for a random one (the guest then uses the original, see
//!    [`PodBindingRequest::guest_mac_from_pod`]), makes it a bridge port and
//!    brings it up again, deleting any route through it that survived;
//! 5. gives the bridge `169.254.75.10/32` and brings it up; the DHCP server
//!    answers from that address on the bridge, handing out the first pod
//!    address, its prefix, the default gateway as router, every other route
//!    as a classless static route, the MTU, DNS and host name.
//!
//! IPv6 addresses of the pod interface are left alone (KubeVirt's bridge
//! binding serves no DHCPv6 either); a guest can use SLAAC from the pod
//! network if there is any.
//!
//! Undo: the pod interface leaves the bridge and gets its MAC, addresses
//! and routes back; tap and bridge are deleted.

use std::net::{IpAddr, Ipv4Addr};

use net_backend::MacAddr;

use net_backend::Tap;

use super::{
    attach_tap, bind_dhcp, cleanup_stale, ensure_address, mtu16, open_tap, prepared_bridge,
    random_mac, BindingError, BindingGuard, BindingSetup, Plumbed, PodBindingRequest, TapMode,
    UndoStep, LEASE_SECS,
};
use crate::dhcp::{DhcpConfig, DhcpServer, DhcpSocket};
use crate::netlink::{Family, Netlink, Route, MAX_ALIAS_LEN, RTPROT_KERNEL};

/// The bridge's own address: link-local, so it clashes with nothing in the
/// pod network, and the DHCP server identifier the guest sees.
pub const BRIDGE_DHCP_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 75, 10);

/// Marker starting a bridge alias that holds a [`PodIfaceState`].
const ALIAS_MAGIC: &str = "petrel-pod1";

/// A route through the pod interface worth restoring (and telling the guest
/// about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedRoute {
    /// Destination network.
    pub dst: Ipv4Addr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Next hop; `None` for an on-link destination.
    pub gateway: Option<Ipv4Addr>,
    /// Metric, if any.
    pub metric: Option<u32>,
}

/// The pod interface's state before the bridge binding changed it.
///
/// Encoded into the bridge's alias (at most 255 bytes) as
/// `petrel-pod1 if=eth0 m=<mac> a=<addr>/<len>... r=<dst>/<len>[@<gw>][#<metric>]...`;
/// routes that do not fit are left out (with a warning), so a restore after
/// a crash may miss some of a very long route list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIfaceState {
    /// The pod interface's name.
    pub iface: String,
    /// Its original MAC.
    pub mac: Option<[u8; 6]>,
    /// Its IPv4 addresses, primary first.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// IPv4 routes of the main table through it, other than those the
    /// kernel derives from the addresses.
    pub routes: Vec<SavedRoute>,
}

impl PodIfaceState {
    /// The alias text; see the type docs.
    pub fn encode(&self) -> String {
        let mut text = format!("{ALIAS_MAGIC} if={}", self.iface);
        if let Some(mac) = &self.mac {
            text.push_str(&format!(" m={}", MacAddr(*mac)));
        }
        let mut items: Vec<String> = self
            .addrs
            .iter()
            .map(|(a, len)| format!(" a={a}/{len}"))
            .collect();
        items.extend(self.routes.iter().map(|r| {
            let mut item = format!(" r={}/{}", r.dst, r.prefix_len);
            if let Some(gw) = r.gateway {
                item.push_str(&format!("@{gw}"));
            }
            if let Some(metric) = r.metric {
                item.push_str(&format!("#{metric}"));
            }
            item
        }));
        for item in items {
            if text.len() + item.len() > MAX_ALIAS_LEN {
                tracing::warn!(iface = %self.iface, item = item.trim(), "pod interface state too long for the bridge alias; a crash recovery will miss this");
                continue;
            }
            text.push_str(&item);
        }
        text
    }

    /// Parses [`encode`](Self::encode)'s output; `None` for any other text.
    pub fn decode(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        if words.next()? != ALIAS_MAGIC {
            return None;
        }
        let mut state = PodIfaceState {
            iface: String::new(),
            mac: None,
            addrs: Vec::new(),
            routes: Vec::new(),
        };
        for word in words {
            let (key, value) = word.split_once('=')?;
            match key {
                "if" => state.iface = value.to_owned(),
                "m" => state.mac = Some(value.parse::<MacAddr>().ok()?.octets()),
                "a" => {
                    let (addr, len) = value.split_once('/')?;
                    state.addrs.push((addr.parse().ok()?, len.parse().ok()?));
                }
                "r" => {
                    let (value, metric) = match value.split_once('#') {
                        Some((v, m)) => (v, Some(m.parse().ok()?)),
                        None => (value, None),
                    };
                    let (net, gateway) = match value.split_once('@') {
                        Some((n, g)) => (n, Some(g.parse().ok()?)),
                        None => (value, None),
                    };
                    let (dst, len) = net.split_once('/')?;
                    state.routes.push(SavedRoute {
                        dst: dst.parse().ok()?,
                        prefix_len: len.parse().ok()?,
                        gateway,
                        metric,
                    });
                }
                _ => return None,
            }
        }
        (!state.iface.is_empty()).then_some(state)
    }

    /// Reads the state of `iface` (which has index `index` and `mac`).
    fn read(nl: &mut Netlink, iface: &str, index: u32, mac: [u8; 6]) -> Result<Self, BindingError> {
        let addrs: Vec<(Ipv4Addr, u8)> = nl
            .addresses(iface, Family::V4)?
            .into_iter()
            .filter_map(|a| match a.addr {
                IpAddr::V4(v4) => Some((v4, a.prefix_len)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let routes = nl
            .routes_v4()?
            .into_iter()
            .filter(|r| r.oif == Some(index))
            .filter(|r| {
                // Connected routes come back with the addresses.
                r.protocol != RTPROT_KERNEL
                    && !r
                        .prefsrc
                        .is_some_and(|src| addrs.iter().any(|(a, _)| IpAddr::V4(*a) == src))
            })
            .filter_map(|r| match (r.dst, r.gateway) {
                (IpAddr::V4(dst), None) => Some(SavedRoute {
                    dst,
                    prefix_len: r.prefix_len,
                    gateway: None,
                    metric: r.metric,
                }),
                (IpAddr::V4(dst), Some(IpAddr::V4(gw))) => Some(SavedRoute {
                    dst,
                    prefix_len: r.prefix_len,
                    gateway: Some(gw),
                    metric: r.metric,
                }),
                _ => None,
            })
            .collect();
        Ok(PodIfaceState {
            iface: iface.to_owned(),
            mac: Some(mac),
            addrs,
            routes,
        })
    }

    /// Puts the interface back: out of any bridge, original MAC, up,
    /// addresses, then routes (on-link ones first, default last). Carries
    /// on past failures and returns them.
    pub fn restore(&self, nl: &mut Netlink) -> Vec<String> {
        let mut errors = Vec::new();
        let iface = self.iface.as_str();
        let link = match nl.link(iface) {
            Ok(link) => link,
            Err(e) => return vec![e.to_string()],
        };
        let mut record = |r: Result<(), crate::netlink::NetlinkError>| {
            if let Err(e) = r {
                errors.push(e.to_string());
            }
        };
        if link.master.is_some() {
            record(nl.set_master(iface, None));
        }
        if let Some(mac) = self.mac {
            if link.mac != Some(mac) {
                record(nl.set_down(iface));
                record(nl.set_mac(iface, mac));
            }
        }
        record(nl.set_up(iface));
        for (addr, len) in &self.addrs {
            record(ensure_address(nl, iface, IpAddr::V4(*addr), *len));
        }
        let mut routes = self.routes.clone();
        routes.sort_by_key(|r| (r.gateway.is_some(), r.prefix_len == 0));
        for r in routes {
            let mut route = Route::new(
                IpAddr::V4(r.dst),
                r.prefix_len,
                r.gateway.map(IpAddr::V4),
                Some(link.index),
            );
            route.metric = r.metric;
            match nl.add_route(&route) {
                Err(e) if !e.is_exists() => errors.push(e.to_string()),
                _ => {}
            }
        }
        errors
    }

    /// The default gateway (lowest metric) and the other routes as DHCP
    /// classless static routes (`0.0.0.0` router = on-link).
    pub fn dhcp_routes(&self) -> (Option<Ipv4Addr>, Vec<(Ipv4Addr, u8, Ipv4Addr)>) {
        let router = self
            .routes
            .iter()
            .filter(|r| r.prefix_len == 0 && r.gateway.is_some())
            .min_by_key(|r| r.metric.unwrap_or(0))
            .and_then(|r| r.gateway);
        let classless = self
            .routes
            .iter()
            .filter(|r| r.prefix_len != 0)
            .map(|r| {
                (
                    r.dst,
                    r.prefix_len,
                    r.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
                )
            })
            .collect();
        (router, classless)
    }
}

/// Sets up the bridge binding for `req`; see the [module docs](self).
pub fn setup_bridge(req: &PodBindingRequest) -> Result<BindingSetup, BindingError> {
    let (plumbed, taps, state) = plumb_with_state(req, TapMode::Open)?;
    // On error `taps`, then `plumbed` (whose guard undoes it all), drop.
    let dhcp = bridge_dhcp(req, &state, plumbed.guest_mac, plumbed.mtu)?;
    Ok(BindingSetup {
        taps,
        dhcp,
        guard: plumbed.guard,
        mtu: plumbed.mtu,
        guest_mac: plumbed.guest_mac,
    })
}

/// Steps 1–5 (CAP_NET_ADMIN); with [`TapMode::Persistent`] no tap queue is
/// returned.
pub(super) fn plumb(
    req: &PodBindingRequest,
    mode: TapMode,
) -> Result<(Plumbed, Vec<Tap>), BindingError> {
    plumb_with_state(req, mode).map(|(plumbed, taps, _)| (plumbed, taps))
}

fn plumb_with_state(
    req: &PodBindingRequest,
    mode: TapMode,
) -> Result<(Plumbed, Vec<Tap>, PodIfaceState), BindingError> {
    req.validate()?;
    let mut nl = Netlink::new()?;
    cleanup_stale(&mut nl, req)?;

    let pod = nl.link(&req.pod_iface)?;
    let pod_mac = pod.mac.ok_or_else(|| BindingError::NoPodMac {
        iface: req.pod_iface.clone(),
    })?;
    let mtu = pod.mtu;
    let state = PodIfaceState::read(&mut nl, &req.pod_iface, pod.index, pod_mac)?;
    let (guest_mac, new_pod_mac) = if req.guest_mac_from_pod {
        (pod_mac, Some(random_mac()?))
    } else {
        (req.guest_mac, None)
    };
    tracing::info!(
        vm = %req.vm_name, nic = %req.nic_name, pod_iface = %req.pod_iface,
        bridge = %req.bridge_name, tap = %req.tap_name, mtu,
        guest_mac = %MacAddr(guest_mac), addrs = ?state.addrs, routes = ?state.routes, ?mode,
        "setting up bridge binding"
    );

    let mut guard = BindingGuard::default();
    nl.create_bridge(&req.bridge_name, Some(mtu))?;
    guard.push(UndoStep::DeleteLink(req.bridge_name.clone()));
    // Recorded before the pod interface is touched: see `cleanup_stale`.
    // The unprivileged half reads it back for its DHCP answers.
    nl.set_alias(&req.bridge_name, &state.encode())?;

    let taps = open_tap(&mut nl, req, mtu, mode, &mut guard)?;

    guard.push(UndoStep::RestorePodIface(state.clone()));
    enslave_pod_iface(&mut nl, req, &state, pod.index, new_pod_mac)?;

    ensure_address(&mut nl, &req.bridge_name, IpAddr::V4(BRIDGE_DHCP_ADDR), 32)?;
    nl.set_up(&req.bridge_name)?;
    let plumbed = Plumbed {
        guard,
        mtu: mtu16(mtu),
        guest_mac,
    };
    Ok((plumbed, taps, state))
}

/// DHCP alone, on what a privileged `net-setup` prepared: the pod
/// interface's former addresses, routes and MAC come from the bridge's
/// alias (read only), the tap's queues are attached, DHCP bound.
pub(super) fn attach(req: &PodBindingRequest) -> Result<BindingSetup, BindingError> {
    req.validate()?;
    let mut nl = Netlink::new()?;
    let bridge = prepared_bridge(&mut nl, req)?;
    let not_prepared = |reason: &str| BindingError::NotPrepared {
        name: req.bridge_name.clone(),
        reason: reason.to_owned(),
    };
    let state = bridge
        .alias
        .as_deref()
        .and_then(PodIfaceState::decode)
        .ok_or_else(|| not_prepared("the bridge holds no record of the pod interface (alias)"))?;
    let guest_mac = if req.guest_mac_from_pod {
        state
            .mac
            .ok_or_else(|| not_prepared("the bridge's record has no pod MAC"))?
    } else {
        req.guest_mac
    };
    let mtu = mtu16(bridge.mtu);
    let taps = attach_tap(req)?;
    let dhcp = bridge_dhcp(req, &state, guest_mac, mtu)?;
    tracing::info!(
        vm = %req.vm_name, nic = %req.nic_name, bridge = %req.bridge_name,
        tap = %req.tap_name, mtu, guest_mac = %MacAddr(guest_mac),
        "attached to the prepared bridge binding"
    );
    Ok(BindingSetup {
        taps,
        dhcp,
        guard: BindingGuard::default(),
        mtu,
        guest_mac,
    })
}

/// Moves the pod interface into the bridge: its addresses go (the guest
/// takes them over DHCP), it takes `new_mac` when the guest takes its MAC,
/// and the routes through it are removed.
fn enslave_pod_iface(
    nl: &mut Netlink,
    req: &PodBindingRequest,
    state: &PodIfaceState,
    pod_index: u32,
    new_mac: Option<[u8; 6]>,
) -> Result<(), BindingError> {
    for (addr, len) in &state.addrs {
        match nl.delete_address(&req.pod_iface, IpAddr::V4(*addr), *len) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    if let Some(mac) = new_mac {
        nl.set_down(&req.pod_iface)?;
        nl.set_mac(&req.pod_iface, mac)?;
    }
    nl.set_master(&req.pod_iface, Some(&req.bridge_name))?;
    nl.set_up(&req.pod_iface)?;
    // Routes through a bridge port are useless; most went with the
    // addresses or the link going down.
    for route in nl.routes_v4()? {
        if route.oif == Some(pod_index) {
            match nl.delete_route(&route) {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The DHCP server handing the guest the pod interface's first IPv4
/// address, routes, MTU and DNS; none when the pod interface had no IPv4.
fn bridge_dhcp(
    req: &PodBindingRequest,
    state: &PodIfaceState,
    guest_mac: [u8; 6],
    mtu: u16,
) -> Result<Option<(DhcpServer, DhcpSocket)>, BindingError> {
    let Some(&(client_ip, prefix_len)) = state.addrs.first() else {
        tracing::warn!(pod_iface = %req.pod_iface, "pod interface has no IPv4 address; no DHCP for the guest");
        return Ok(None);
    };
    let (router, classless_routes) = state.dhcp_routes();
    let config = DhcpConfig {
        server_ip: BRIDGE_DHCP_ADDR,
        client_mac: guest_mac,
        client_ip,
        prefix_len,
        router,
        dns_servers: req.dns.servers.clone(),
        search_domains: req.dns.search.clone(),
        hostname: (!req.hostname.is_empty()).then(|| req.hostname.clone()),
        mtu: Some(mtu),
        classless_routes,
        lease_secs: LEASE_SECS,
        extras: req.dhcp.clone(),
    };
    Ok(Some(bind_dhcp(req, config)?))
}
