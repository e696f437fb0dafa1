//! The masquerade binding: the guest on a private subnet behind NAT.
//!
//! [`setup_masquerade`] does what KubeVirt's masquerade binding does:
//!
//! 1. creates the bridge (pod MTU) holding the gateway address, the first
//!    host of the guest network (`10.0.2.1/24` by default), and for IPv6 the
//!    first host of that network (e.g. `fd10:0:2::1/120`, added without
//!    DAD);
//! 2. creates the tap (pod MTU, bridge port, up) and brings the bridge up;
//! 3. makes sure forwarding is on (`net.ipv4.ip_forward`, and
//!    `net.ipv6.conf.all.forwarding` with IPv6) in the current network
//!    namespace: read first, written only when off, and an error naming the
//!    sysctl and `securityContext.sysctls` when it is off and `/proc/sys` is
//!    read-only. `route_localnet` is never set: the pod's loopback is not
//!    forwarded to the guest (see [`nft`](crate::nft));
//! 4. applies the [`nft::MasqueradeRules`] in table [`nft_table_name`]
//!    (`petrel_<vm>`), replacing a stale one. The rules' "tap" is the
//!    bridge: that is the interface the IP layer sees the guest's traffic
//!    on. The `nft` run is started before steps 1–3 and waited for after
//!    them (the rules match interface names, which need not exist yet), so
//!    the table is loaded before the tap is handed to the device;
//! 5. serves DHCP on the bridge: the guest gets the second host
//!    (`10.0.2.2`), the gateway as router and server, the pod MTU, DNS and
//!    host name. The IPv6 guest address is not served here:
//!    [`PodNetService`](crate::service::PodNetService) adds router
//!    advertisements and DHCPv6 on the bridge for it.
//!
//! The pod interface is not touched.
//!
//! Undo: delete the nft table, the tap and the bridge. The forwarding
//! sysctls are left as they are: other NICs or the pod may rely on them.
//!
//! [`nft_table_name`]: super::nft_table_name

use std::net::IpAddr;

use net_backend::MacAddr;

use net_backend::Tap;

use super::{
    attach_tap, bind_dhcp, cleanup_stale, ensure_address, ensure_sysctl, first_hosts_v4,
    first_hosts_v6, mtu16, nft_table_name, open_tap, prepared_bridge, BindingError, BindingGuard,
    BindingSetup, Plumbed, PodBindingRequest, TapMode, UndoStep, DEFAULT_V4_CIDR, LEASE_SECS,
};
use crate::dhcp::DhcpConfig;
use crate::netlink::Netlink;
use crate::nft::{self, MasqueradeRules};

/// The nftables rules [`setup_masquerade`] applies for `req` (after
/// [`PodBindingRequest::validate`]).
pub fn masquerade_rules(req: &PodBindingRequest) -> MasqueradeRules {
    let (net4, len4) = req.v4_cidr.unwrap_or(DEFAULT_V4_CIDR);
    let (gw4, guest4) = first_hosts_v4(net4, len4);
    MasqueradeRules {
        table: nft_table_name(&req.vm_name),
        pod_iface: req.pod_iface.clone(),
        tap: req.bridge_name.clone(),
        guest_v4: Some((guest4, gw4, len4)),
        guest_v6: req.v6_cidr.map(|(net6, len6)| {
            let (gw6, guest6) = first_hosts_v6(net6, len6);
            (guest6, gw6, len6)
        }),
        ports: req.ports.clone(),
        reserved: req.reserved_ports.clone(),
    }
}

/// The gateway (pod bridge) MAC for a guest MAC: locally administered
/// unicast and never the guest's own.
pub fn gateway_mac(guest: [u8; 6]) -> [u8; 6] {
    let mut mac = guest;
    mac[0] = (mac[0] | 0x02) & 0xfe;
    mac[5] ^= 0x01;
    mac
}

/// Sets up the masquerade binding for `req`; see the [module docs](self).
pub fn setup_masquerade(req: &PodBindingRequest) -> Result<BindingSetup, BindingError> {
    let (plumbed, taps) = plumb(req, TapMode::Open)?;
    // On error `taps`, then `plumbed` (whose guard undoes it all), drop.
    let dhcp = bind_dhcp(req, dhcp_config(req, plumbed.mtu)?)?;
    Ok(BindingSetup {
        taps,
        dhcp: Some(dhcp),
        guard: plumbed.guard,
        mtu: plumbed.mtu,
        guest_mac: req.guest_mac,
    })
}

/// Steps 1–4: bridge, tap, sysctls and nft table (CAP_NET_ADMIN). With
/// [`TapMode::Persistent`] no tap queue is returned.
pub(super) fn plumb(
    req: &PodBindingRequest,
    mode: TapMode,
) -> Result<(Plumbed, Vec<Tap>), BindingError> {
    req.validate()?;
    let rules = masquerade_rules(req);
    let Some((guest4, gw4, len4)) = rules.guest_v4 else {
        return Err(no_v4(req));
    };

    let mut nl = Netlink::new()?;
    cleanup_stale(&mut nl, req)?;

    let pod = nl.link(&req.pod_iface)?;
    let mtu = pod.mtu;
    tracing::info!(
        vm = %req.vm_name, nic = %req.nic_name, pod_iface = %req.pod_iface,
        bridge = %req.bridge_name, tap = %req.tap_name, mtu, table = %rules.table,
        guest_v4 = %guest4, gateway_v4 = %gw4, guest_v6 = ?rules.guest_v6,
        guest_mac = %MacAddr(req.guest_mac), ?mode,
        "setting up masquerade binding"
    );

    let mut guard = BindingGuard::default();
    // Step 4 starts first and runs while the links are made: the rules
    // name the bridge and the pod interface (`iifname`), they do not need
    // them to exist, and the `nft` run is most of this function's time.
    // Declared after `guard`, `loading` drops first: a set-up that fails
    // below waits for nft before the guard deletes the table.
    guard.push(UndoStep::DeleteNftTable(rules.clone()));
    let loading = nft::spawn_apply(&rules.to_json())?;
    nl.create_bridge(&req.bridge_name, Some(mtu))?;
    guard.push(UndoStep::DeleteLink(req.bridge_name.clone()));
    // The gateway's MAC follows from the guest's, not from the kernel's
    // random choice, so a guest migrated into another pod keeps a valid
    // ARP entry for its gateway.
    nl.set_mac(&req.bridge_name, gateway_mac(req.guest_mac))?;
    ensure_address(&mut nl, &req.bridge_name, IpAddr::V4(gw4), len4)?;
    if let Some((_, gw6, len6)) = rules.guest_v6 {
        ensure_address(&mut nl, &req.bridge_name, IpAddr::V6(gw6), len6)?;
    }
    let taps = open_tap(&mut nl, req, mtu, mode, &mut guard)?;
    nl.set_up(&req.bridge_name)?;

    ensure_sysctl("net.ipv4.ip_forward", "1")?;
    if rules.guest_v6.is_some() {
        ensure_sysctl("net.ipv6.conf.all.forwarding", "1")?;
    }

    finish_rules(&rules, loading)?;
    let plumbed = Plumbed {
        guard,
        mtu: mtu16(mtu),
        guest_mac: req.guest_mac,
    };
    Ok((plumbed, taps))
}

/// Step 5 alone, on what a privileged `net-setup` prepared: the bridge and
/// its tap are checked (read only), the tap's queues attached, DHCP bound.
pub(super) fn attach(req: &PodBindingRequest) -> Result<BindingSetup, BindingError> {
    req.validate()?;
    let mut nl = Netlink::new()?;
    let bridge = prepared_bridge(&mut nl, req)?;
    let mtu = mtu16(bridge.mtu);
    let config = dhcp_config(req, mtu)?;
    let taps = attach_tap(req)?;
    let dhcp = bind_dhcp(req, config)?;
    tracing::info!(
        vm = %req.vm_name, nic = %req.nic_name, bridge = %req.bridge_name,
        tap = %req.tap_name, mtu, "attached to the prepared masquerade binding"
    );
    Ok(BindingSetup {
        taps,
        dhcp: Some(dhcp),
        guard: BindingGuard::default(),
        mtu,
        guest_mac: req.guest_mac,
    })
}

fn no_v4(req: &PodBindingRequest) -> BindingError {
    BindingError::Invalid {
        nic: req.nic_name.clone(),
        reason: "no IPv4 guest network".into(),
    }
}

/// What the DHCP server hands the guest: the second host, the gateway as
/// router and server, the pod MTU, DNS and host name.
fn dhcp_config(req: &PodBindingRequest, mtu: u16) -> Result<DhcpConfig, BindingError> {
    let Some((guest4, gw4, len4)) = masquerade_rules(req).guest_v4 else {
        return Err(no_v4(req));
    };
    Ok(DhcpConfig {
        server_ip: gw4,
        client_mac: req.guest_mac,
        client_ip: guest4,
        prefix_len: len4,
        router: Some(gw4),
        dns_servers: req.dns.servers.clone(),
        search_domains: req.dns.search.clone(),
        hostname: (!req.hostname.is_empty()).then(|| req.hostname.clone()),
        mtu: Some(mtu),
        classless_routes: Vec::new(),
        lease_secs: LEASE_SECS,
        extras: req.dhcp.clone(),
    })
}

/// Waits for the `nft` run that loads the table (each run costs 12–19 ms
/// of start-up here): `to_json` replaces a stale table atomically. Only
/// when that fails — a stale table whose ruleset no longer loads alongside
/// the new one — is it deleted in a run of its own and the rules loaded
/// again.
fn finish_rules(rules: &MasqueradeRules, loading: nft::PendingNft) -> Result<(), nft::NftError> {
    if let Err(first) = loading.wait() {
        tracing::debug!(
            error = %first, table = %rules.table,
            "replacing the nft table in one run failed; deleting it first"
        );
        nft::apply(&rules.delete_json())?;
        nft::apply(&rules.to_json())?;
    }
    Ok(())
}
