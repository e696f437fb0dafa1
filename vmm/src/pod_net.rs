//! Pod network bindings for NICs on the pod network: the spec's bridge or
//! masquerade binding is translated into a [`PodBindingRequest`] and handed
//! to [`net`], which sets up the host plumbing and returns the NIC's
//! [`PodNetService`] (DHCP, RA, DHCPv6 and the undo guard) for the control
//! loop. Everything set up is undone when that service drops, on every exit
//! path.

use std::net::{Ipv4Addr, Ipv6Addr};

use net::binding::{self, BindingKind, PodBindingRequest};
use net::PodNetService;
use net_backend::Tap;

use crate::plan::{Backend, Binding, NetworkPlan, NicPlan, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    #[error("interface {nic}: bad CIDR {cidr}")]
    Cidr { nic: String, cidr: String },
    #[error(transparent)]
    Net(#[from] net::service::PodNetError),
}

/// A pod binding that is set up: the services the control loop serves and
/// the guard that undoes the plumbing, all owned by net.
pub type PodBinding = PodNetService;

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
    let req = request(vm_name, nic)?;
    let kind = match nic.binding {
        Binding::Masquerade => BindingKind::Masquerade,
        _ => BindingKind::Bridge,
    };
    let bound = PodNetService::bind(kind, &req)?;
    Ok(BoundNic {
        taps: bound.taps,
        mtu: bound.mtu,
        state: bound.service,
    })
}

/// The binding request for `nic` of VM `vm_name`.
fn request(vm_name: &str, nic: &NicPlan) -> Result<PodBindingRequest, PodNetError> {
    let tap = match &nic.backend {
        Backend::Tap { name } => name.clone(),
        _ => format!("tap-{}", nic.name),
    };
    let iface = pod_iface(nic).unwrap_or_else(|| "eth0".to_string());
    let mut req = PodBindingRequest::new(vm_name, &nic.name, &iface, &tap, nic.mac.0);
    req.queues = nic.queue_pairs;
    req.dns = binding::read_resolv_conf("/etc/resolv.conf");
    req.ports = nic
        .ports
        .iter()
        .map(|p| {
            let proto = match p.protocol {
                Protocol::Tcp => net::Protocol::Tcp,
                Protocol::Udp => net::Protocol::Udp,
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
            if binding::pod_has_global_ipv6(&iface) {
                req.v6_cidr = Some(parse_v6(&nic.name, c)?);
            }
        }
    }
    Ok(req)
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
