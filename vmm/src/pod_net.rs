//! Pod network bindings for NICs on the pod network: the spec's bridge or
//! masquerade binding becomes host plumbing (net::binding) plus petrel's
//! own DHCP server, whose socket the control loop serves. Everything set up
//! here is undone when the returned state drops, on every exit path.

use std::net::{Ipv4Addr, Ipv6Addr};

use net::binding::{self, BindingGuard, PodBindingRequest};
use net::dhcp::v6::{duid_ll, Dhcp6Config, Dhcp6Server, Dhcp6Socket};
use net::dhcp::{DhcpServer, DhcpSocket};
use net::ra::RaSocket;
use net_backend::Tap;
use tracing::info;

use crate::plan::{Backend, Binding, NetworkPlan, NicPlan, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    #[error("interface {nic}: bad CIDR {cidr}")]
    Cidr { nic: String, cidr: String },
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

fn parse_v4(nic: &str, cidr: &str) -> Result<(Ipv4Addr, u8), PodNetError> {
    let bad = || PodNetError::Cidr {
        nic: nic.to_string(),
        cidr: cidr.to_string(),
    };
    let (a, p) = cidr.split_once('/').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, p.parse().map_err(|_| bad())?))
}

fn parse_v6(nic: &str, cidr: &str) -> Result<(Ipv6Addr, u8), PodNetError> {
    let bad = || PodNetError::Cidr {
        nic: nic.to_string(),
        cidr: cidr.to_string(),
    };
    let (a, p) = cidr.split_once('/').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, p.parse().map_err(|_| bad())?))
}

/// KubeVirt's newer name for a secondary multus interface: "pod" and the
/// first 11 hex digits of the SHA-256 of the network's name.
pub fn hashed_iface_name(network: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(network.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("pod{}", &hex[..11])
}

/// The pod interface a NIC's network arrives on: `eth0` for the pod
/// network (or the default multus network); for other multus networks the
/// ordinal name (`net1`, `net2`, … in `spec.networks` order) when the pod
/// has it, else KubeVirt's hashed name (the network's name is the
/// interface's name).
pub fn pod_iface(nic: &NicPlan) -> Option<String> {
    match &nic.network {
        NetworkPlan::Pod { .. } => Some("eth0".to_string()),
        NetworkPlan::Multus {
            pod_iface, default, ..
        } => {
            if *default || iface_exists(pod_iface) {
                return Some(pod_iface.clone());
            }
            let hashed = hashed_iface_name(&nic.name);
            Some(if iface_exists(&hashed) {
                hashed
            } else {
                pod_iface.clone()
            })
        }
        _ => None,
    }
}

fn iface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Whether this NIC is plumbed by a pod binding (as opposed to a tap named
/// in the spec or a backend petrel does not bind yet): masquerade on the pod
/// network, bridge on the pod network or on a multus network (L2; DHCP only
/// when that interface carries an IPv4 address).
pub fn is_pod_binding(nic: &NicPlan) -> bool {
    pod_iface(nic).is_some()
        && matches!(nic.binding, Binding::Bridge | Binding::Masquerade)
        && matches!(nic.backend, Backend::Tap { .. })
}

pub fn bind(vm_name: &str, nic: &NicPlan) -> Result<BoundNic, PodNetError> {
    let tap = match &nic.backend {
        Backend::Tap { name } => name.clone(),
        _ => format!("tap-{}", nic.name),
    };
    let iface = pod_iface(nic).unwrap_or_else(|| "eth0".to_string());
    let iface = iface.as_str();
    let mut req = PodBindingRequest::new(vm_name, &nic.name, iface, &tap, nic.mac.0);
    req.queues = nic.queue_pairs;
    req.dns = binding::read_resolv_conf("/etc/resolv.conf");
    req.ports = nic
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
    if let NetworkPlan::Pod {
        ipv4_cidr,
        ipv6_cidr,
    } = &nic.network
    {
        if let Some(c) = ipv4_cidr {
            req.v4_cidr = Some(parse_v4(&nic.name, c)?);
        }
        // IPv6 masquerade only when the pod itself has IPv6.
        if let Some(c) = ipv6_cidr {
            if pod_has_global_ipv6() {
                req.v6_cidr = Some(parse_v6(&nic.name, c)?);
            }
        }
    }
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

fn pod_has_global_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|s| {
            s.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // scope 00 = global, on the pod interface
                f.len() >= 6 && f[3] == "00" && f[5] == "eth0"
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubevirt_hashed_interface_names() {
        // sha256("mvt") = e32c04ddf04…, as KubeVirt's namescheme computes it
        assert_eq!(hashed_iface_name("mvt"), "pode32c04ddf04");
        assert_eq!(hashed_iface_name("br2"), "pod6c87f847df0");
        assert!(hashed_iface_name("a-very-long-network-name").len() <= 15);
    }
}
