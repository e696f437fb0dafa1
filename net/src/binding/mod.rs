//! Pod network bindings: wiring a VM NIC into a Kubernetes-style pod's
//! network namespace, the way KubeVirt's `pkg/network/setup` does.
//!
//! Two bindings are provided, each for one NIC:
//!
//! - [`setup_bridge`]: the pod interface (e.g. `eth0`) becomes a port of a
//!   new bridge (`k6t-eth0`) together with the VM's tap; the pod's IPv4
//!   address moves from `eth0` to the guest, which gets it (with the pod's
//!   gateway, routes, MTU and DNS) from the in-process DHCP server that
//!   answers on the bridge from `169.254.75.10`. See [`bridge`].
//! - [`setup_masquerade`]: the guest sits on a private subnet (default
//!   `10.0.2.0/24`) behind a bridge holding the gateway address
//!   (`10.0.2.1`), and nftables NATs between it and the pod address, which
//!   stays on `eth0`. See [`masquerade`].
//!
//! Both return a [`BindingSetup`]: the tap queues for the device model, the
//! DHCP server and its socket, and a [`BindingGuard`] that undoes every
//! change in reverse order when dropped (or, with errors reported, on
//! [`BindingGuard::teardown`]). If setup fails half-way, what was done so far
//! is undone before the error is returned.
//!
//! Setup is idempotent with respect to a previous run killed before it could
//! clean up (SIGKILL, OOM): it first removes a stale bridge, tap and nft
//! table of the same names. The bridge binding records the pod interface's
//! original state (MAC, IPv4 addresses, routes) in the bridge's alias
//! (`ip link show k6t-eth0` shows it) before touching the interface, so a
//! later run can put the pod interface back first and then start over.
//!
//! Everything happens in the network namespace of the calling thread, with
//! netlink, `/proc/sys` and the `nft` binary (forked from the calling
//! thread); the [`BindingGuard`] must be dropped in the same namespace.
//! Needs CAP_NET_ADMIN (and CAP_NET_RAW / CAP_NET_BIND_SERVICE for the DHCP
//! socket).

pub mod bridge;
pub mod masquerade;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::dhcp::{DhcpServer, DhcpSocket};
use crate::netlink::{Netlink, NetlinkError};
use crate::nft::{self, NftError, Protocol};
use crate::tap::{Tap, TapError};

pub use bridge::setup_bridge;
pub use masquerade::setup_masquerade;

/// Prefix of the bridge name KubeVirt uses (`k6t-<pod iface>`).
pub const BRIDGE_PREFIX: &str = "k6t-";
/// Prefix of the nftables table of a VM ([`nft_table_name`]).
pub const NFT_TABLE_PREFIX: &str = "petrel_";
/// Longest interface name, NUL excluded.
pub const MAX_IFNAME_LEN: usize = 15;
/// Longest nft table name [`nft_table_name`] produces.
pub const MAX_TABLE_NAME_LEN: usize = 64;
/// The masquerade binding's default IPv4 guest network (KubeVirt's
/// `vmNetworkCIDR` default).
pub const DEFAULT_V4_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 0, 2, 0), 24);
/// The masquerade binding's customary IPv6 guest network (KubeVirt's
/// `vmIPv6NetworkCIDR` default).
pub const DEFAULT_V6_CIDR: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 0), 120);
/// Lease time handed out: effectively infinite, as in KubeVirt, since the
/// guest's address never changes while it runs.
pub const LEASE_SECS: u32 = u32::MAX;

/// DNS settings passed to the guest over DHCP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsInfo {
    /// IPv4 name servers (DHCPv4 option 6 carries no IPv6 servers).
    pub servers: Vec<Ipv4Addr>,
    /// Search domains.
    pub search: Vec<String>,
}

/// Parses resolv.conf(5) text: `nameserver` lines (IPv4 ones; IPv6 and
/// malformed ones are skipped), and the last `search` line, or failing
/// that the last `domain` line, for the search list.
pub fn parse_resolv_conf(text: &str) -> DnsInfo {
    let mut servers = Vec::new();
    let mut search = None;
    let mut domain = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(Ok(addr)) = words.next().map(str::parse::<Ipv4Addr>) {
                    if !servers.contains(&addr) {
                        servers.push(addr);
                    }
                }
            }
            Some("search") => {
                search = Some(words.map(str::to_owned).collect::<Vec<_>>());
            }
            Some("domain") => domain = words.next().map(str::to_owned),
            _ => {}
        }
    }
    DnsInfo {
        servers,
        search: search
            .or_else(|| domain.map(|d| vec![d]))
            .unwrap_or_default(),
    }
}

/// Reads and parses `path` (normally `/etc/resolv.conf`) with
/// [`parse_resolv_conf`]. An unreadable file gives empty settings and a
/// warning: the guest then simply gets no DNS configuration.
pub fn read_resolv_conf(path: impl AsRef<Path>) -> DnsInfo {
    let path = path.as_ref();
    match fs::read_to_string(path) {
        Ok(text) => parse_resolv_conf(&text),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read resolv.conf; no DNS for the guest");
            DnsInfo::default()
        }
    }
}

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
    /// Masquerade only: the guest's IPv4 network ([`DEFAULT_V4_CIDR`] when
    /// `None`); the gateway is its first host, the guest its second.
    pub v4_cidr: Option<(Ipv4Addr, u8)>,
    /// Masquerade only: the guest's IPv6 network, if any (e.g.
    /// [`DEFAULT_V6_CIDR`]); gateway and guest as for IPv4.
    pub v6_cidr: Option<(Ipv6Addr, u8)>,
    /// DNS settings for the guest, e.g. from [`read_resolv_conf`].
    pub dns: DnsInfo,
    /// Host name for the guest (DHCP option 12); empty sends none.
    pub hostname: String,
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
            v4_cidr: None,
            v6_cidr: None,
            dns: DnsInfo::default(),
            hostname: vm_name.to_owned(),
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
            if let Err(reason) = check_ifname(name) {
                return Err(self.invalid(format!("invalid {what} name {name:?}: {reason}")));
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

/// Checks an interface name the way the kernel's `dev_valid_name` does.
fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name.len() > MAX_IFNAME_LEN {
        Err("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Err("reserved")
    } else if name.contains(['/', ':', '\0']) || name.chars().any(char::is_whitespace) {
        Err("contains '/', ':', NUL or whitespace")
    } else {
        Ok(())
    }
}

/// Errors from setting up a binding.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The request is inconsistent.
    #[error("invalid binding request for NIC {nic:?}: {reason}")]
    Invalid {
        /// The NIC's name.
        nic: String,
        /// What is wrong.
        reason: String,
    },
    /// A netlink operation failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The tap could not be created or configured.
    #[error("tap {name}: {source}")]
    Tap {
        /// The tap's name.
        name: String,
        /// The underlying error.
        source: TapError,
    },
    /// `nft` failed.
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    /// The DHCP socket could not be bound.
    #[error("DHCP socket on {iface}: {source}")]
    Dhcp {
        /// The interface it was to be bound to.
        iface: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A sysctl could not be read or written.
    #[error("sysctl {path}: {source}")]
    Sysctl {
        /// Its `/proc/sys` path.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The pod interface has no Ethernet MAC address (bridge binding).
    #[error("pod interface {iface} has no Ethernet MAC address")]
    NoPodMac {
        /// The interface.
        iface: String,
    },
    /// State left by an earlier run could not be cleaned up.
    #[error("cannot clean up stale state of {name}: {reason}")]
    Stale {
        /// The conflicting interface or table.
        name: String,
        /// Why.
        reason: String,
    },
    /// No random bytes for a MAC address.
    #[error("cannot read random bytes for a MAC address: {0}")]
    Random(#[source] io::Error),
}

/// What a binding hands to the VMM for one NIC.
///
/// Fields drop in declaration order: the taps (a non-persistent tap
/// vanishes with its last queue), the DHCP socket, then the guard.
#[derive(Debug)]
pub struct BindingSetup {
    /// One [`Tap`] per queue, up and a port of the bridge.
    pub taps: Vec<Tap>,
    /// The DHCP server and its socket (bound to the bridge), when there is
    /// an IPv4 address to hand out.
    pub dhcp: Option<(DhcpServer, DhcpSocket)>,
    /// Undoes everything when dropped.
    pub guard: BindingGuard,
    /// MTU of the pod interface, to be used for the guest (virtio-net
    /// `mtu` config field) as it is for the bridge and tap.
    pub mtu: u16,
    /// The MAC the guest must use (the DHCP server answers only it).
    pub guest_mac: [u8; 6],
}

/// One change to undo.
#[derive(Debug, Clone)]
enum UndoStep {
    /// Delete a link (bridge or tap); absent is fine.
    DeleteLink(String),
    /// Put the pod interface back as it was before the bridge binding.
    RestorePodIface(bridge::PodIfaceState),
    /// Delete the nft table of these rules; absent is fine.
    DeleteNftTable(nft::MasqueradeRules),
}

impl UndoStep {
    fn run(&self, nl: Option<&mut Netlink>, errors: &mut Vec<String>) {
        match self {
            UndoStep::DeleteNftTable(rules) => {
                if let Err(e) = nft::apply(&rules.delete_json()) {
                    errors.push(format!("delete nft table {}: {e}", rules.table));
                }
            }
            UndoStep::DeleteLink(name) => match nl {
                Some(nl) => {
                    if let Err(e) = nl.delete_link_if_exists(name) {
                        errors.push(e.to_string());
                    }
                }
                None => errors.push(format!("delete link {name}: no netlink socket")),
            },
            UndoStep::RestorePodIface(state) => match nl {
                Some(nl) => errors.extend(state.restore(nl)),
                None => errors.push(format!("restore {}: no netlink socket", state.iface)),
            },
        }
    }
}

/// Undoes a binding's changes in reverse order; see the [module docs](self).
#[derive(Debug, Default)]
pub struct BindingGuard {
    steps: Vec<UndoStep>,
}

impl BindingGuard {
    fn push(&mut self, step: UndoStep) {
        self.steps.push(step);
    }

    /// Number of changes still to undo.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there is nothing to undo.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Undoes everything now, in reverse order, carrying on past failures,
    /// and returns a description of each failure.
    pub fn teardown(mut self) -> Vec<String> {
        self.run()
    }

    fn run(&mut self) -> Vec<String> {
        let steps = std::mem::take(&mut self.steps);
        let mut errors = Vec::new();
        if steps.is_empty() {
            return errors;
        }
        let mut nl = match Netlink::new() {
            Ok(nl) => Some(nl),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        for step in steps.iter().rev() {
            step.run(nl.as_mut(), &mut errors);
        }
        errors
    }
}

impl Drop for BindingGuard {
    fn drop(&mut self) {
        for error in self.run() {
            tracing::warn!(%error, "network binding teardown");
        }
    }
}

/// Removes links left by an earlier run of the same binding: the bridge
/// (first restoring the pod interface from the state recorded in its
/// alias, if any) and the tap.
fn cleanup_stale(nl: &mut Netlink, req: &PodBindingRequest) -> Result<(), BindingError> {
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

/// Opens the tap, gives it `mtu`, makes it a port of the bridge and brings
/// it up; registers its deletion with `guard`.
fn open_tap(
    nl: &mut Netlink,
    req: &PodBindingRequest,
    mtu: u32,
    guard: &mut BindingGuard,
) -> Result<Vec<Tap>, BindingError> {
    let taps = Tap::open_named(&req.tap_name, req.queues).map_err(|source| BindingError::Tap {
        name: req.tap_name.clone(),
        source,
    })?;
    guard.push(UndoStep::DeleteLink(req.tap_name.clone()));
    nl.set_mtu(&req.tap_name, mtu)?;
    nl.set_master(&req.tap_name, Some(&req.bridge_name))?;
    nl.set_up(&req.tap_name)?;
    Ok(taps)
}

/// Binds the DHCP socket on the bridge.
fn bind_dhcp(
    req: &PodBindingRequest,
    config: crate::dhcp::DhcpConfig,
) -> Result<(DhcpServer, DhcpSocket), BindingError> {
    let socket = DhcpSocket::bind(&req.bridge_name).map_err(|source| BindingError::Dhcp {
        iface: req.bridge_name.clone(),
        source,
    })?;
    Ok((DhcpServer::new(config), socket))
}

/// The MTU as the 16-bit value DHCP and virtio-net carry.
fn mtu16(mtu: u32) -> u16 {
    u16::try_from(mtu).unwrap_or(u16::MAX)
}

/// A random unicast, locally administered MAC address.
fn random_mac() -> Result<[u8; 6], BindingError> {
    let mut mac = [0u8; 6];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut mac))
        .map_err(BindingError::Random)?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// Sets a `/proc/sys` value (e.g. `net/ipv4/ip_forward`) for the calling
/// thread's network namespace, writing only when it differs.
fn set_sysctl(key: &str, value: &str) -> Result<(), BindingError> {
    let path = format!("/proc/sys/{key}");
    let err = |source| BindingError::Sysctl {
        path: path.clone(),
        source,
    };
    let current = fs::read_to_string(&path).map_err(err)?;
    if current.trim() == value {
        return Ok(());
    }
    fs::write(&path, value).map_err(err)?;
    tracing::debug!(%path, value, "sysctl set");
    Ok(())
}

/// The first and second host of `addr/prefix_len` (gateway and guest).
fn first_hosts_v4(addr: Ipv4Addr, prefix_len: u8) -> (Ipv4Addr, Ipv4Addr) {
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
fn first_hosts_v6(addr: Ipv6Addr, prefix_len: u8) -> (Ipv6Addr, Ipv6Addr) {
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
fn ensure_address(
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
