//! The setup steps and host helpers both bindings share.

use std::fs;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use net_backend::Tap;

use super::guard::{BindingGuard, UndoStep};
use super::{bridge, BindingError, PodBindingRequest, TapMode};
use crate::dhcp::{DhcpConfig, DhcpServer, DhcpSocket};
use crate::netlink::{Netlink, NetlinkError};

/// Removes links left by an earlier run of the same binding: the bridge
/// (first restoring the pod interface from the state recorded in its
/// alias, if any) and the tap.
pub(super) fn cleanup_stale(nl: &mut Netlink, req: &PodBindingRequest) -> Result<(), BindingError> {
    if let Some(link) = nl.link_by_name(&req.bridge_name)? {
        if link.kind.as_deref() != Some("bridge") {
            return Err(BindingError::Stale {
                name: req.bridge_name.clone(),
                reason: format!(
                    "a {} link of that name exists and is not a bridge",
                    link.kind.as_deref().unwrap_or("physical")
                ),
            });
        }
        let state = link
            .alias
            .as_deref()
            .and_then(bridge::PodIfaceState::decode);
        tracing::warn!(bridge = %req.bridge_name, restore = state.is_some(), "removing stale bridge");
        nl.delete_link_if_exists(&req.bridge_name)?;
        if let Some(state) = state {
            let errors = state.restore(nl);
            if !errors.is_empty() {
                return Err(BindingError::Stale {
                    name: state.iface.clone(),
                    reason: errors.join("; "),
                });
            }
        }
    }
    if let Some(link) = nl.link_by_name(&req.tap_name)? {
        if link.kind.as_deref() != Some("tun") {
            return Err(BindingError::Stale {
                name: req.tap_name.clone(),
                reason: format!(
                    "a {} link of that name exists and is not a tap",
                    link.kind.as_deref().unwrap_or("physical")
                ),
            });
        }
        tracing::warn!(tap = %req.tap_name, "removing stale tap");
        nl.delete_link_if_exists(&req.tap_name)?;
    }
    Ok(())
}

/// Opens the tap (or, for the privilege split, creates it persistent and
/// owned by the unprivileged uid, leaving no queue open), gives it `mtu`,
/// makes it a port of the bridge and brings it up; registers its deletion
/// with `guard`.
pub(super) fn open_tap(
    nl: &mut Netlink,
    req: &PodBindingRequest,
    mtu: u32,
    mode: TapMode,
    guard: &mut BindingGuard,
) -> Result<Vec<Tap>, BindingError> {
    let tap_err = |source| BindingError::Tap {
        name: req.tap_name.clone(),
        source,
    };
    let taps = match mode {
        TapMode::Open => Tap::open_named(&req.tap_name, req.queues).map_err(tap_err)?,
        TapMode::Persistent(owner) => {
            Tap::create_persistent(&req.tap_name, req.queues, owner.uid, owner.gid)
                .map_err(tap_err)?;
            Vec::new()
        }
    };
    guard.push(UndoStep::DeleteLink(req.tap_name.clone()));
    nl.set_mtu(&req.tap_name, mtu)?;
    nl.set_master(&req.tap_name, Some(&req.bridge_name))?;
    nl.set_up(&req.tap_name)?;
    Ok(taps)
}

/// The bridge a privileged `net-setup` left for `req`, checked: a bridge
/// of that name, with the tap (a tun/tap link) as a port. Reads only.
pub(super) fn prepared_bridge(
    nl: &mut Netlink,
    req: &PodBindingRequest,
) -> Result<crate::netlink::Link, BindingError> {
    let missing = |name: &str, reason: String| BindingError::NotPrepared {
        name: name.to_owned(),
        reason,
    };
    let bridge = nl
        .link_by_name(&req.bridge_name)?
        .filter(|l| l.kind.as_deref() == Some("bridge"))
        .ok_or_else(|| missing(&req.bridge_name, "no bridge of that name".into()))?;
    let tap = nl
        .link_by_name(&req.tap_name)?
        .filter(|l| l.kind.as_deref() == Some("tun"))
        .ok_or_else(|| missing(&req.tap_name, "no tap of that name".into()))?;
    if tap.master != Some(bridge.index) {
        return Err(missing(
            &req.tap_name,
            format!("the tap is not a port of {}", req.bridge_name),
        ));
    }
    Ok(bridge)
}

/// Attaches to the prepared tap: one queue per pair. TUNSETIFF on a tap
/// owned by the caller's uid needs no capability.
pub(super) fn attach_tap(req: &PodBindingRequest) -> Result<Vec<Tap>, BindingError> {
    Tap::open_named(&req.tap_name, req.queues).map_err(|source| BindingError::Tap {
        name: req.tap_name.clone(),
        source,
    })
}

/// Binds the DHCP socket on the bridge.
pub(super) fn bind_dhcp(
    req: &PodBindingRequest,
    config: DhcpConfig,
) -> Result<(DhcpServer, DhcpSocket), BindingError> {
    let socket = DhcpSocket::bind(&req.bridge_name).map_err(|source| BindingError::Dhcp {
        iface: req.bridge_name.clone(),
        source,
    })?;
    Ok((DhcpServer::new(config), socket))
}

/// The MTU as the 16-bit value DHCP and virtio-net carry.
pub(super) fn mtu16(mtu: u32) -> u16 {
    u16::try_from(mtu).unwrap_or(u16::MAX)
}

/// A random unicast, locally administered MAC address.
pub(super) fn random_mac() -> Result<[u8; 6], BindingError> {
    let mut mac = [0u8; 6];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut mac))
        .map_err(BindingError::Random)?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// The first and second host of `addr/prefix_len` (gateway and guest).
pub(super) fn first_hosts_v4(addr: Ipv4Addr, prefix_len: u8) -> (Ipv4Addr, Ipv4Addr) {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    let network = u32::from(addr) & mask;
    (
        Ipv4Addr::from(network.wrapping_add(1)),
        Ipv4Addr::from(network.wrapping_add(2)),
    )
}

/// The first and second host of `addr/prefix_len` (gateway and guest).
pub(crate) fn first_hosts_v6(addr: Ipv6Addr, prefix_len: u8) -> (Ipv6Addr, Ipv6Addr) {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix_len.min(128)))
        .unwrap_or(0);
    let network = u128::from(addr) & mask;
    (
        Ipv6Addr::from(network.wrapping_add(1)),
        Ipv6Addr::from(network.wrapping_add(2)),
    )
}

/// Adds `addr/prefix_len` to `link`, tolerating an existing one.
pub(super) fn ensure_address(
    nl: &mut Netlink,
    link: &str,
    addr: IpAddr,
    prefix_len: u8,
) -> Result<(), NetlinkError> {
    match nl.add_address(link, addr, prefix_len) {
        Err(e) if e.is_exists() => Ok(()),
        other => other,
    }
}

/// Whether `iface` has a global-scope IPv6 address (from
/// `/proc/net/if_inet6`): the masquerade binding offers the guest IPv6 only
/// when the pod itself has it.
pub fn pod_has_global_ipv6(iface: &str) -> bool {
    fs::read_to_string("/proc/net/if_inet6")
        .map(|s| {
            s.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // scope 00 = global, on the pod interface
                f.len() >= 6 && f[3] == "00" && f[5] == iface
            })
        })
        .unwrap_or(false)
}
