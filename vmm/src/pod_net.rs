//! Pod network bindings for NICs on the pod network: the spec's bridge or
//! masquerade binding becomes host plumbing (net::binding) plus petrel's
//! own DHCP server, whose socket the control loop serves. Everything set up
//! here is undone when the returned state drops, on every exit path.

use std::net::Ipv6Addr;

use net::binding::{self, BindingGuard, DnsInfo, PodBindingRequest};
use net::dhcp::v6::{duid_ll, Dhcp6Config, Dhcp6Server, Dhcp6Socket};
use net::dhcp::{DhcpServer, DhcpSocket};
use net::ra::RaSocket;
use net::Tap;
use tracing::info;

use crate::host::PodPlan;
use crate::plan::{Binding, NicPlan, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    #[error("interface {nic}: {binding} binding")]
    Binding {
        nic: String,
        binding: &'static str,
        #[source]
        source: binding::BindingError,
    },
    #[error("interface {nic}: IPv6 {what} on {bridge}")]
    Ipv6 {
        nic: String,
        what: &'static str,
        bridge: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {nic}: netlink")]
    Netlink {
        nic: String,
        #[source]
        source: net::netlink::NetlinkError,
    },
}

/// A pod binding that is set up: the DHCP server to serve and the guard
/// that undoes the plumbing.
pub struct PodBinding {
    pub nic: String,
    pub dhcp: Option<(DhcpServer, DhcpSocket)>,
    /// IPv6 masquerade: router advertisements (default route, on-link
    /// prefix, M flag) and the DHCPv6 server handing out the guest address.
    pub ra: Option<RaSocket>,
    pub dhcp6: Option<(Dhcp6Server, Dhcp6Socket)>,
    pub guard: BindingGuard,
}

/// Taps and MTU for the NIC, with the binding state to keep alive.
pub struct BoundNic {
    pub taps: Vec<Tap>,
    pub mtu: u16,
    pub state: PodBinding,
}

/// Sets up the binding the host plan describes for `nic`.
pub fn bind(vm_name: &str, nic: &NicPlan, pod: &PodPlan) -> Result<BoundNic, PodNetError> {
    let tap = pod.tap.as_str();
    let iface = pod.pod_iface.as_str();
    let mut req = PodBindingRequest::new(vm_name, &nic.name, iface, tap, nic.mac.0);
    req.queues = nic.queue_pairs;
    req.dns = DnsInfo {
        servers: pod.dns_servers.clone(),
        search: pod.dns_search.clone(),
    };
    req.ports = pod
        .ports
        .iter()
        .map(|p| {
            let proto = match p.protocol {
                Protocol::Tcp => net::nft::Protocol::Tcp,
                Protocol::Udp => net::nft::Protocol::Udp,
            };
            (p.port, proto)
        })
        .collect();
    req.v4_cidr = pod.ipv4.map(|c| (c.addr, c.prefix));
    req.v6_cidr = pod.ipv6.map(|c| (c.addr, c.prefix));
    let (setup, which) = match nic.binding {
        Binding::Masquerade => (binding::setup_masquerade(&req), "masquerade"),
        _ => (binding::setup_bridge(&req), "bridge"),
    };
    let setup = setup.map_err(|source| PodNetError::Binding {
        nic: nic.name.clone(),
        binding: which,
        source,
    })?;
    info!(nic = %nic.name, binding = which, pod_iface = iface, tap = %tap, mtu = setup.mtu, "pod binding set up");
    let mut state = PodBinding {
        nic: nic.name.clone(),
        dhcp: setup.dhcp,
        ra: None,
        dhcp6: None,
        guard: setup.guard,
    };
    if let (Binding::Masquerade, Some((net6, len6))) = (nic.binding, req.v6_cidr) {
        let (ra, dhcp6) = ipv6_services(&req, nic, net6, len6, setup.mtu)?;
        state.ra = Some(ra);
        state.dhcp6 = Some(dhcp6);
    }
    Ok(BoundNic {
        taps: setup.taps,
        mtu: setup.mtu,
        state,
    })
}

/// RA and DHCPv6 on the masquerade bridge: the guest learns its default
/// route and the on-link prefix from the RA and its address (the second
/// of the prefix) from DHCPv6.
fn ipv6_services(
    req: &PodBindingRequest,
    nic: &NicPlan,
    net6: Ipv6Addr,
    len6: u8,
    mtu: u16,
) -> Result<(RaSocket, (Dhcp6Server, Dhcp6Socket)), PodNetError> {
    let io_err = |what: &'static str| {
        let bridge = req.bridge_name.clone();
        let nic = nic.name.clone();
        move |source| PodNetError::Ipv6 {
            nic,
            what,
            bridge,
            source,
        }
    };
    let mut nl = net::netlink::Netlink::new().map_err(|source| PodNetError::Netlink {
        nic: nic.name.clone(),
        source,
    })?;
    let bridge_mac = nl
        .link(&req.bridge_name)
        .map_err(|source| PodNetError::Netlink {
            nic: nic.name.clone(),
            source,
        })?
        .mac
        .unwrap_or([0x02, 0, 0, 0, 0, 1]);
    let mut ra = RaSocket::bind(&req.bridge_name, bridge_mac, u32::from(mtu), net6, len6)
        .map_err(io_err("router advertisements"))?;
    // The bridge's link-local address may still be tentative; the guest's
    // router solicitation gets an answer either way.
    if let Err(e) = ra.send_ra() {
        tracing::debug!(error = %e, "first RA not sent yet");
    }
    let network = u128::from(net6) & (u128::MAX.checked_shl(128 - u32::from(len6)).unwrap_or(0));
    let cfg = Dhcp6Config {
        server_duid: duid_ll(bridge_mac),
        client_mac: req.guest_mac,
        client_ip: Ipv6Addr::from(network + 2),
        dns_servers: Vec::new(),
        search: req.dns.search.clone(),
        preferred_lifetime: u32::MAX,
        valid_lifetime: u32::MAX,
    };
    let sock = Dhcp6Socket::bind(&req.bridge_name).map_err(io_err("DHCPv6"))?;
    info!(nic = %nic.name, guest = %cfg.client_ip, "IPv6: RA and DHCPv6 on the bridge");
    Ok((ra, (Dhcp6Server::new(cfg), sock)))
}
