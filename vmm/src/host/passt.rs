//! The host side of the passt and slirp bindings: the pod interface's
//! addresses, gateway and MTU (passt hands the guest exactly these; slirp
//! its own 10.0.2.0/24), the passt program, and the command line `run`
//! starts it with.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use net::passt::{slirp, PasstArgs, PasstIpv4, PasstMode};
use serde::Serialize;

use super::{HostBackend, HostView};
use crate::plan::{Binding, FieldError, Ipv4Cidr, MacAddr, NicPlan, PortPlan};

/// The program petrel runs, looked up on PATH.
pub const PASST_PROGRAM: &str = "passt";

/// A passt or slirp NIC, with every host fact its passt needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasstPlan {
    pub binding: Binding,
    /// The pod interface passt sends through and copies (`eth0`, `net1`, …).
    pub pod_iface: String,
    /// The passt program.
    pub program: PathBuf,
    /// The guest's IPv4 address and prefix.
    pub ipv4: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    /// Whether the guest gets IPv6 (the pod interface has a global one).
    pub ipv6: bool,
    /// The pod interface's MTU, the guest's too.
    pub mtu: u16,
    /// Inbound ports forwarded to the guest (empty: all).
    pub ports: Vec<PortPlan>,
    /// passt's options; `run` adds `--fd` and `--pid`.
    pub args: Vec<String>,
}

/// What the host plan reads of a pod interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodAddrs {
    /// The primary IPv4 address and its prefix.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// The gateway of the IPv4 default route through the interface.
    pub gateway4: Option<Ipv4Addr>,
    pub mtu: u32,
}

pub(super) fn resolve(
    nic: &NicPlan,
    host: &dyn HostView,
) -> Result<(HostBackend, MacAddr), FieldError> {
    let err = |msg: String| FieldError::new(&nic.binding_path, "", msg);
    // eth0 on the pod network; a multus network's own interface (net1, …,
    // or KubeVirt's hashed name).
    let iface = match super::resolve::pod_iface(nic, host) {
        Some(found) => found?,
        None => return Err(err("reaches no pod interface passt can use".into())),
    };
    let Some(program) = host.find_program(PASST_PROGRAM) else {
        return Err(err(format!(
            "needs the {PASST_PROGRAM} program, which is not on PATH; install passt (Debian \
             package `passt`) in the VMM's image"
        )));
    };
    let addrs = host
        .pod_addrs(&iface)
        .map_err(|e| err(format!("pod interface {iface}: {e}")))?;
    let ipv6 = host.has_global_ipv6(&iface);
    if addrs.ipv4.is_none() && !ipv6 {
        return Err(err(format!(
            "needs an address on pod interface {iface}, which has none (no IPv4, no global \
             IPv6); the {} binding gives the guest the pod's connectivity, so the CNI (or \
             the IP pool) must give the pod an address",
            nic.binding
        )));
    }
    check_descriptors(
        nic,
        addrs.ipv4.is_some() || nic.binding == Binding::Slirp,
        ipv6,
        host,
    )?;
    let mode = if nic.binding == Binding::Slirp {
        PasstMode::Slirp
    } else {
        PasstMode::Passt
    };
    let ipv4 = match mode {
        PasstMode::Slirp => Some(PasstIpv4 {
            addr: slirp::GUEST,
            prefix: slirp::PREFIX,
            gateway: Some(slirp::GATEWAY),
        }),
        PasstMode::Passt => addrs.ipv4.map(|(addr, prefix)| PasstIpv4 {
            addr,
            prefix,
            gateway: addrs.gateway4,
        }),
    };
    let mtu = u16::try_from(addrs.mtu.clamp(68, 65_520)).unwrap_or(1500);
    let args = PasstArgs {
        mode,
        pod_iface: iface.clone(),
        ipv4,
        // slirp is IPv4 only, as KubeVirt's.
        ipv6: ipv6 && mode == PasstMode::Passt,
        mtu,
        ports: (!nic.ports.is_empty())
            .then(|| nic.ports.iter().map(|p| (p.port, p.protocol)).collect()),
    };
    let plan = PasstPlan {
        binding: nic.binding,
        pod_iface: iface,
        program,
        ipv4: ipv4.map(|v| Ipv4Cidr {
            addr: v.addr,
            prefix: v.prefix,
        }),
        gateway: ipv4.and_then(|v| v.gateway),
        ipv6: args.ipv6,
        mtu,
        ports: nic.ports.clone(),
        args: args.to_args(),
    };
    Ok((HostBackend::Passt(plan), nic.mac))
}

/// Without `ports`, passt binds a socket per port; refuse what would make
/// it run out of descriptors at start.
fn check_descriptors(
    nic: &NicPlan,
    ipv4: bool,
    ipv6: bool,
    host: &dyn HostView,
) -> Result<(), FieldError> {
    if !nic.ports.is_empty() {
        return Ok(());
    }
    let ipv6 = ipv6 && nic.binding == Binding::Passt;
    let ephemeral = host.ephemeral_ports().unwrap_or((32768, 60999));
    let need = net::passt::descriptors_for_all_ports(ipv4, ipv6, ephemeral);
    match host.nofile_limit() {
        Some(limit) if limit < need => Err(FieldError::new(
            &nic.binding_path,
            "",
            format!(
                "lists no ports, so passt forwards every port and needs {need} descriptors, but \
                 RLIMIT_NOFILE is {limit}; list the ports the VM serves under ports, or raise \
                 the pod's descriptor limit"
            ),
        )),
        _ => Ok(()),
    }
}

/// `program` on `path` (a PATH value): the first executable file named so.
pub fn find_on_path(program: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
