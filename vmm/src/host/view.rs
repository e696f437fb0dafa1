//! What the host plan reads from the pod, behind a trait so the rules are
//! unit-tested against a made-up pod.

use std::path::{Path, PathBuf};

use net::binding::DnsInfo;
use net::sriov::{PodInfo, VfDevice, VfRequest};

use super::PodAddrs;

/// The pod as the host plan sees it.
pub trait HostView {
    /// Whether the pod has a network interface `name`.
    fn link_exists(&self, name: &str) -> bool;
    /// The MAC of interface `name` (text from the kernel), or why not.
    fn link_mac(&self, name: &str) -> Result<String, String>;
    /// Whether `iface` has a global IPv6 address.
    fn has_global_ipv6(&self, iface: &str) -> bool;
    /// The pod's DNS settings.
    fn dns(&self) -> DnsInfo;
    /// `iface`'s IPv4 address, default gateway and MTU, or why not.
    fn pod_addrs(&self, iface: &str) -> Result<PodAddrs, String>;
    /// Where executable `program` is on PATH.
    fn find_program(&self, program: &str) -> Option<PathBuf>;
    /// The hard descriptor limit (`RLIMIT_NOFILE`) programs started by
    /// petrel inherit.
    fn nofile_limit(&self) -> Option<u64>;
    /// `net.ipv4.ip_local_port_range`.
    fn ephemeral_ports(&self) -> Option<(u16, u16)>;
    /// The `NETWORK_INTERFACE_RESOURCES_*` variables device plugins set
    /// (name, JSON value).
    fn network_resources(&self) -> Vec<(String, String)>;
    /// Whether descriptor `fd` is open in this process.
    fn fd_is_open(&self, fd: i32) -> bool;
    /// Whether open descriptor `fd` is a tap (TUNGETIFF), or what it is.
    fn fd_is_tap(&self, fd: i32) -> Result<(), String>;
    /// The VF of each SR-IOV request, all at once; each error names its
    /// network.
    fn resolve_vfs(&self, reqs: &[VfRequest<'_>]) -> Result<Vec<VfDevice>, Vec<String>>;
}

/// The real pod: sysfs, procfs, /etc/resolv.conf, the process's env and
/// the downward-API directory.
#[derive(Debug, Clone)]
pub struct SysHost {
    pub pod_info: PathBuf,
}

impl SysHost {
    pub fn new(pod_info: &Path) -> Self {
        SysHost {
            pod_info: pod_info.to_path_buf(),
        }
    }
}

fn sys_class_net(name: &str) -> PathBuf {
    Path::new("/sys/class/net").join(name)
}

/// Error messages with their causes, one per line item.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

impl HostView for SysHost {
    fn link_exists(&self, name: &str) -> bool {
        !name.is_empty() && !name.contains('/') && sys_class_net(name).exists()
    }

    fn link_mac(&self, name: &str) -> Result<String, String> {
        let path = sys_class_net(name).join("address");
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    fn has_global_ipv6(&self, iface: &str) -> bool {
        net::binding::pod_has_global_ipv6(iface)
    }

    fn dns(&self) -> DnsInfo {
        net::binding::read_resolv_conf("/etc/resolv.conf")
    }

    fn pod_addrs(&self, iface: &str) -> Result<PodAddrs, String> {
        read_pod_addrs(iface).map_err(|e| with_sources(&e))
    }

    fn find_program(&self, program: &str) -> Option<PathBuf> {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        super::find_on_path(program, &path)
    }

    fn nofile_limit(&self) -> Option<u64> {
        net::passt::nofile_limit()
    }

    fn ephemeral_ports(&self) -> Option<(u16, u16)> {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        let mut it = text.split_whitespace().map(str::parse::<u16>);
        Some((it.next()?.ok()?, it.next()?.ok()?))
    }

    fn network_resources(&self) -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(k, _)| k.starts_with(super::resource::ENV_PREFIX))
            .collect()
    }

    fn fd_is_open(&self, fd: i32) -> bool {
        // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    fn fd_is_tap(&self, fd: i32) -> Result<(), String> {
        // struct ifreq: 16 bytes of name, then the flags (a short).
        let mut req = [0u8; 40];
        // SAFETY: TUNGETIFF writes at most a struct ifreq (40 bytes) into
        // the live buffer; on another kind of descriptor it fails.
        let rc = unsafe { libc::ioctl(fd, libc::TUNGETIFF, req.as_mut_ptr()) };
        if rc < 0 {
            return Err(format!(
                "not a tap (TUNGETIFF: {})",
                std::io::Error::last_os_error()
            ));
        }
        let flags = u16::from_ne_bytes([req[16], req[17]]);
        // IFF_TUN = 1, IFF_TAP = 2 in the low bits.
        match flags & 0x000f {
            0x0002 => Ok(()),
            _ => Err("a tun (layer 3) device, not a tap".into()),
        }
    }

    fn resolve_vfs(&self, reqs: &[VfRequest<'_>]) -> Result<Vec<VfDevice>, Vec<String>> {
        let info = PodInfo::from_process(&self.pod_info).map_err(|e| {
            vec![format!(
                "cannot read the pod's downward-API files: {}",
                with_sources(&e)
            )]
        })?;
        net::sriov::resolve_all(&info, reqs)
            .map_err(|es| es.errors().iter().map(|e| with_sources(e)).collect())
    }
}

/// A pod interface's primary IPv4 address, the gateway of the default
/// route through it, and its MTU, over rtnetlink (no privilege needed).
fn read_pod_addrs(iface: &str) -> Result<PodAddrs, net::netlink::NetlinkError> {
    use net::netlink::{Family, Netlink};
    use std::net::IpAddr;
    let mut nl = Netlink::new()?;
    let link = nl.link(iface)?;
    let ipv4 = nl
        .addresses(iface, Family::V4)?
        .into_iter()
        .find_map(|a| match a.addr {
            IpAddr::V4(v4) => Some((v4, a.prefix_len)),
            IpAddr::V6(_) => None,
        });
    let mut defaults: Vec<_> = nl
        .routes_v4()?
        .into_iter()
        .filter(|r| r.is_default() && r.oif == Some(link.index))
        .collect();
    defaults.sort_by_key(|r| r.metric.unwrap_or(0));
    let gateway4 = defaults.iter().find_map(|r| match r.gateway {
        Some(IpAddr::V4(gw)) => Some(gw),
        _ => None,
    });
    Ok(PodAddrs {
        ipv4,
        gateway4,
        mtu: link.mtu,
    })
}
