//! Pod network bindings: the host plan's [`PodPlan`] becomes a
//! [`PodBindingRequest`] handed to [`net`], which sets up the host plumbing
//! and returns the NIC's [`PodNetService`] (DHCP, RA, DHCPv6 and the undo
//! guard) for the control loop. Everything set up is undone when that
//! service drops, on every exit path.

use net::binding::{BindingKind, DnsInfo, PodBindingRequest};
use net::dhcp::DhcpExtras;
use net::PodNetService;
use net_backend::Tap;

use crate::host::PodPlan;
use crate::plan::{Binding, NicPlan};

pub use net::service::PodNetError;

/// Taps and MTU for the NIC, with the service to keep alive.
pub struct BoundNic {
    pub taps: Vec<Tap>,
    pub mtu: u16,
    /// The MAC the binding's DHCP server answers.
    pub guest_mac: [u8; 6],
    pub service: PodNetService,
}

/// Sets up the binding the host plan describes for `nic` of VM `vm_name`.
pub fn bind(vm_name: &str, nic: &NicPlan, pod: &PodPlan) -> Result<BoundNic, PodNetError> {
    let kind = match pod.binding {
        Binding::Masquerade => BindingKind::Masquerade,
        _ => BindingKind::Bridge,
    };
    let bound = PodNetService::bind(kind, &request(vm_name, nic, pod))?;
    Ok(BoundNic {
        taps: bound.taps,
        mtu: bound.mtu,
        guest_mac: bound.guest_mac,
        service: bound.service,
    })
}

/// The binding request: every field comes from the plans.
fn request(vm_name: &str, nic: &NicPlan, pod: &PodPlan) -> PodBindingRequest {
    let mut req = PodBindingRequest::new(vm_name, &nic.name, &pod.pod_iface, &pod.tap, nic.mac.0);
    req.queues = nic.queue_pairs;
    req.dns = DnsInfo {
        servers: pod.dns_servers.clone(),
        search: pod.dns_search.clone(),
    };
    req.ports = pod.ports.iter().map(|p| (p.port, p.protocol)).collect();
    req.v4_cidr = pod.ipv4.map(|c| (c.addr, c.prefix));
    req.v6_cidr = pod.ipv6.map(|c| (c.addr, c.prefix));
    req.dhcp = DhcpExtras {
        boot_file_name: nic.dhcp.boot_file_name.clone(),
        tftp_server_name: nic.dhcp.tftp_server_name.clone(),
        ntp_servers: nic.dhcp.ntp_servers.clone(),
        private_options: nic
            .dhcp
            .private_options
            .iter()
            .map(|o| (o.code, o.value.as_bytes().to_vec()))
            .collect(),
    };
    req.guest_mac_from_pod = pod.delegate_mac;
    req
}
