//! Pod network bindings: the host plan's [`PodPlan`] becomes a
//! [`PodBindingRequest`] handed to [`net`], which sets up the host plumbing
//! and returns the NIC's [`PodNetService`] (DHCP, RA, DHCPv6 and the undo
//! guard) for the control loop. Everything set up is undone when that
//! service drops, on every exit path.

use net::binding::{BindingKind, DnsInfo, PodBindingRequest, TapOwner};
use net::dhcp::DhcpExtras;
use net::PodNetService;
use net_backend::Tap;

use crate::host::{HostPlan, PodPlan};
use crate::net_state::{self, NetState, PreparedNic};
use crate::plan::{Binding, NicPlan, VmPlan};

pub use net::service::PodNetError;

/// Taps and MTU for the NIC, with the service to keep alive.
pub struct BoundNic {
    pub taps: Vec<Tap>,
    pub mtu: u16,
    /// The MAC the binding's DHCP server answers.
    pub guest_mac: [u8; 6],
    pub service: PodNetService,
}

fn kind(pod: &PodPlan) -> BindingKind {
    match pod.binding {
        Binding::Masquerade => BindingKind::Masquerade,
        _ => BindingKind::Bridge,
    }
}

/// Sets up the binding the host plan describes for `nic` of VM `vm_name`,
/// or, when `net-setup` prepared it ([`PodPlan::prepared`]), attaches to it.
pub fn bind(vm_name: &str, nic: &NicPlan, pod: &PodPlan) -> Result<BoundNic, PodNetError> {
    let req = request(vm_name, nic, pod);
    let bound = if pod.prepared {
        PodNetService::attach(kind(pod), &req)?
    } else {
        PodNetService::bind(kind(pod), &req)?
    };
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
    req.reserved_ports = pod.reserved_ports.clone();
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

/// `petrel net-setup`: the privileged half for every pod-bound NIC of
/// `plan` (bridge, persistent taps owned by `owner`, sysctls, nft table),
/// each after removing stale state of the same names. All or nothing: if a
/// NIC fails, what the earlier ones did is undone. Returns the record for
/// [`net_state::write`].
pub fn setup(plan: &VmPlan, host: &HostPlan, owner: TapOwner) -> Result<NetState, PodNetError> {
    let mut guards = Vec::new();
    let mut nics = Vec::new();
    for (name, queues, pod) in net_state::pod_nics(plan, host) {
        let Some(nic) = plan.nics.iter().find(|n| n.name == name) else {
            continue;
        };
        let plumbed = kind(pod)
            .plumb(&request(&plan.name, nic, pod), owner)
            .map_err(|source| PodNetError::Binding {
                nic: name.to_string(),
                binding: kind(pod),
                source,
            })?;
        let mut record = PreparedNic::planned(name, queues, pod);
        record.guest_mac = net_backend::MacAddr(plumbed.guest_mac).to_string();
        record.mtu = plumbed.mtu;
        nics.push(record);
        guards.push(plumbed.guard);
    }
    for guard in guards {
        guard.keep();
    }
    Ok(NetState {
        version: net_state::STATE_VERSION,
        vm: plan.name.clone(),
        uid: owner.uid,
        gid: owner.gid,
        nics,
    })
}

/// `petrel net-teardown`: removes what `net-setup` made for every
/// pod-bound NIC of `plan` (nft table, tap, bridge; the pod interface of a
/// bridge binding restored), carrying on past failures, which it returns.
pub fn teardown(plan: &VmPlan, host: &HostPlan) -> Vec<String> {
    let mut errors = Vec::new();
    for (name, _, pod) in net_state::pod_nics(plan, host) {
        let Some(nic) = plan.nics.iter().find(|n| n.name == name) else {
            continue;
        };
        if let Err(e) = kind(pod).remove(&request(&plan.name, nic, pod)) {
            errors.push(format!("interface {name}: {e}"));
        }
    }
    errors
}
