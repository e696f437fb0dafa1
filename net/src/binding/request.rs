//! What to wire up for one VM NIC ([`PodBindingRequest`]), its checks and
//! the names derived from it (bridge, nft table).

use std::net::{Ipv4Addr, Ipv6Addr};

use net_backend::validate_ifname;

use super::{
    BindingError, DnsInfo, BRIDGE_PREFIX, MAX_IFNAME_LEN, MAX_TABLE_NAME_LEN, NFT_TABLE_PREFIX,
};
use crate::dhcp::DhcpExtras;
use crate::nft::Protocol;

/// The bridge name for `pod_iface`: `k6t-<pod_iface>`, truncated to
/// [`MAX_IFNAME_LEN`] bytes.
pub fn default_bridge_name(pod_iface: &str) -> String {
    truncate_bytes(&format!("{BRIDGE_PREFIX}{pod_iface}"), MAX_IFNAME_LEN)
}

/// The nftables table of VM `vm_name`: `petrel_<vm_name>` with every byte
/// outside `[A-Za-z0-9_]` replaced by `_`, at most [`MAX_TABLE_NAME_LEN`]
/// bytes.
///
/// There is one table per VM, so only one NIC of a VM can use the
/// masquerade binding (as in KubeVirt, where it is the pod network's).
pub fn nft_table_name(vm_name: &str) -> String {
    let sanitized: String = vm_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    truncate_bytes(
        &format!("{NFT_TABLE_PREFIX}{sanitized}"),
        MAX_TABLE_NAME_LEN,
    )
}

fn truncate_bytes(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// What to wire up for one VM NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodBindingRequest {
    /// The VM's name (for the nft table name and logs).
    pub vm_name: String,
    /// The NIC's name in the VM spec (for logs and errors).
    pub nic_name: String,
    /// The pod interface to bind to, normally `eth0`.
    pub pod_iface: String,
    /// Name of the tap to create.
    pub tap_name: String,
    /// Name of the bridge to create, normally [`default_bridge_name`].
    pub bridge_name: String,
    /// Tap queues (one per vCPU pair for multi-queue virtio-net).
    pub queues: u16,
    /// The guest's MAC address (ignored by the bridge binding when
    /// [`guest_mac_from_pod`](Self::guest_mac_from_pod) is set).
    pub guest_mac: [u8; 6],
    /// Bridge binding only: give the guest the pod interface's own MAC and
    /// the pod interface a random locally administered one (KubeVirt's
    /// behaviour when the VM spec has no `macAddress`), so that whatever in
    /// the cluster network knows the pod's MAC reaches the guest.
    pub guest_mac_from_pod: bool,
    /// Masquerade only: ports forwarded to the guest; empty forwards all.
    pub ports: Vec<(u16, Protocol)>,
    /// Masquerade only: TCP ports never forwarded, because petrel serves
    /// them in the pod itself (its `--metrics-address` port).
    pub reserved_ports: Vec<u16>,
    /// Masquerade only: the guest's IPv4 network ([`DEFAULT_V4_CIDR`](super::DEFAULT_V4_CIDR) when
    /// `None`); the gateway is its first host, the guest its second.
    pub v4_cidr: Option<(Ipv4Addr, u8)>,
    /// Masquerade only: the guest's IPv6 network, if any (e.g.
    /// [`DEFAULT_V6_CIDR`](super::DEFAULT_V6_CIDR)); gateway and guest as for IPv4.
    pub v6_cidr: Option<(Ipv6Addr, u8)>,
    /// DNS settings for the guest, e.g. from [`read_resolv_conf`].
    pub dns: DnsInfo,
    /// Host name for the guest (DHCP option 12); empty sends none.
    pub hostname: String,
    /// The spec's DHCP options (boot file, TFTP, NTP, private ones).
    pub dhcp: DhcpExtras,
}

impl PodBindingRequest {
    /// A request for `vm_name`'s NIC `nic_name` on `pod_iface` with tap
    /// `tap_name`, the [`default_bridge_name`], one queue, no DNS and the VM
    /// name as host name.
    pub fn new(
        vm_name: &str,
        nic_name: &str,
        pod_iface: &str,
        tap_name: &str,
        guest_mac: [u8; 6],
    ) -> Self {
        PodBindingRequest {
            vm_name: vm_name.to_owned(),
            nic_name: nic_name.to_owned(),
            pod_iface: pod_iface.to_owned(),
            tap_name: tap_name.to_owned(),
            bridge_name: default_bridge_name(pod_iface),
            queues: 1,
            guest_mac,
            guest_mac_from_pod: false,
            ports: Vec::new(),
            reserved_ports: Vec::new(),
            v4_cidr: None,
            v6_cidr: None,
            dns: DnsInfo::default(),
            hostname: vm_name.to_owned(),
            dhcp: DhcpExtras::default(),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> BindingError {
        BindingError::Invalid {
            nic: self.nic_name.clone(),
            reason: reason.into(),
        }
    }

    /// Checks names, queue count, MAC and networks; both setups call it
    /// first.
    pub fn validate(&self) -> Result<(), BindingError> {
        if self.vm_name.is_empty() {
            return Err(self.invalid("empty VM name"));
        }
        for (what, name) in [
            ("pod interface", &self.pod_iface),
            ("tap", &self.tap_name),
            ("bridge", &self.bridge_name),
        ] {
            if let Err(e) = validate_ifname(name) {
                return Err(self.invalid(format!("{what}: {e}")));
            }
        }
        if self.pod_iface == self.tap_name
            || self.pod_iface == self.bridge_name
            || self.tap_name == self.bridge_name
        {
            return Err(self.invalid(format!(
                "pod interface {:?}, tap {:?} and bridge {:?} must have distinct names",
                self.pod_iface, self.tap_name, self.bridge_name
            )));
        }
        if self.queues == 0 {
            return Err(self.invalid("zero tap queues"));
        }
        if !self.guest_mac_from_pod {
            if self.guest_mac[0] & 1 != 0 {
                return Err(self.invalid("the guest MAC is a multicast address"));
            }
            if self.guest_mac == [0; 6] {
                return Err(self.invalid("the guest MAC is all zeros"));
            }
        }
        if let Some((_, len)) = self.v4_cidr {
            if !(1..=30).contains(&len) {
                return Err(self.invalid(format!(
                    "IPv4 guest network prefix /{len} must be /1 to /30"
                )));
            }
        }
        if let Some((_, len)) = self.v6_cidr {
            if !(1..=126).contains(&len) {
                return Err(self.invalid(format!(
                    "IPv6 guest network prefix /{len} must be /1 to /126"
                )));
            }
        }
        Ok(())
    }
}
