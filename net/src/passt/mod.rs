//! The passt and slirp bindings: petrel runs the `passt` program (what
//! KubeVirt and libvirt use) once per NIC, connected to it by a socket
//! pair (`passt --fd`), and moves the guest's frames over it with
//! [`net_backend::PasstStream`]. passt translates them to ordinary TCP,
//! UDP and ICMP sockets of the pod, so neither binding needs a bridge,
//! nftables, a tap or any capability.
//!
//! - [`PasstArgs`]: the command line, from what the plans decided
//!   (addresses, MTU, ports); built here so `petrel validate --host` can
//!   print exactly what `run` starts.
//! - [`Passt`] (`process`): the running process — started in the
//!   foreground, waited for until it is ready, watched through a pidfd, and
//!   killed and reaped on every exit path.

mod process;

use std::net::Ipv4Addr;

use crate::Protocol;

pub use process::{Passt, PasstError};

/// KubeVirt's slirp addressing (QEMU's user-mode network defaults).
pub mod slirp {
    use std::net::Ipv4Addr;

    /// The guest's address.
    pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    /// Prefix length of the guest network.
    pub const PREFIX: u8 = 24;
    /// The gateway, which also stands for the pod itself.
    pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    /// The DNS address, forwarded to the pod's first resolver.
    pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
}

/// Which addressing the guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasstMode {
    /// The pod interface's own addresses, gateway and MTU; traffic to the
    /// gateway goes to the real gateway (`--no-map-gw`).
    Passt,
    /// [`slirp`]'s addresses; the gateway address reaches the pod itself.
    Slirp,
}

/// The guest's IPv4 settings passt hands out by DHCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasstIpv4 {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// What one NIC's passt is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasstArgs {
    pub mode: PasstMode,
    /// The pod interface passt takes its addresses and routes from and
    /// sends through (`eth0`, `net1`, …).
    pub pod_iface: String,
    /// IPv4 settings; `None` runs IPv6 only.
    pub ipv4: Option<PasstIpv4>,
    /// Whether the guest gets IPv6 (the pod interface has a global IPv6
    /// address).
    pub ipv6: bool,
    /// MTU handed out by DHCP and NDP.
    pub mtu: u16,
    /// Inbound ports forwarded to the guest; `None` forwards all of them
    /// (KubeVirt's rule when the spec lists none).
    pub ports: Option<Vec<(u16, Protocol)>>,
}

impl PasstArgs {
    /// passt's options, without the socket (`--fd`) and pid-file options
    /// [`Passt::spawn`] adds.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["--foreground", "--quiet", "--stderr"]
            .map(String::from)
            .to_vec();
        let mut opt = |name: &str, value: String| {
            a.push(name.to_string());
            a.push(value);
        };
        opt("--interface", self.pod_iface.clone());
        opt("--mtu", self.mtu.to_string());
        if let Some(v4) = &self.ipv4 {
            opt("--address", v4.addr.to_string());
            opt("--netmask", v4.prefix.to_string());
            if let Some(gw) = v4.gateway {
                opt("--gateway", gw.to_string());
            }
        }
        if self.mode == PasstMode::Slirp {
            opt("--dns-forward", slirp::DNS.to_string());
        }
        let (tcp, udp) = self.port_specs();
        opt("--tcp-ports", tcp);
        opt("--udp-ports", udp);
        if self.mode == PasstMode::Passt {
            a.push("--no-map-gw".into());
        }
        match (self.ipv4.is_some(), self.ipv6) {
            (true, false) => a.push("--ipv4-only".into()),
            (false, true) => a.push("--ipv6-only".into()),
            _ => {}
        }
        a
    }

    /// `-t`/`-u` specs: the listed ports per protocol (`none` when a
    /// protocol has none, since passt would otherwise mirror TCP ports to
    /// UDP), or `all` when nothing is listed.
    fn port_specs(&self) -> (String, String) {
        let Some(ports) = &self.ports else {
            return ("all".into(), "all".into());
        };
        let list = |proto: Protocol| {
            let mut p: Vec<u16> = ports
                .iter()
                .filter(|(_, pr)| *pr == proto)
                .map(|(port, _)| *port)
                .collect();
            p.sort_unstable();
            p.dedup();
            if p.is_empty() {
                "none".to_string()
            } else {
                p.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            }
        };
        (list(Protocol::Tcp), list(Protocol::Udp))
    }
}

/// Descriptors passt needs to forward every port (`-t all -u all`): one
/// socket per port, protocol and IP version, for every port outside the
/// ephemeral range `ephemeral` (which passt leaves alone), plus a margin
/// for its own use.
pub fn descriptors_for_all_ports(ipv4: bool, ipv6: bool, ephemeral: (u16, u16)) -> u64 {
    let (lo, hi) = ephemeral;
    let ephemeral_ports = u64::from(hi.saturating_sub(lo)) + u64::from(lo <= hi);
    let ports = 65_535u64.saturating_sub(ephemeral_ports);
    let families = u64::from(ipv4) + u64::from(ipv6);
    2 * ports * families.max(1) + 1024
}

/// This process's hard `RLIMIT_NOFILE`, which passt inherits (and raises
/// its soft limit to).
pub fn nofile_limit() -> Option<u64> {
    crate::sys::nofile_hard_limit().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passt() -> PasstArgs {
        PasstArgs {
            mode: PasstMode::Passt,
            pod_iface: "eth0".into(),
            ipv4: Some(PasstIpv4 {
                addr: Ipv4Addr::new(10, 244, 1, 7),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 244, 1, 1)),
            }),
            ipv6: false,
            mtu: 1450,
            ports: Some(vec![
                (8080, Protocol::Tcp),
                (80, Protocol::Tcp),
                (53, Protocol::Udp),
            ]),
        }
    }

    #[test]
    fn passt_mode_copies_the_pod_and_lists_ports() {
        assert_eq!(
            passt().to_args().join(" "),
            "--foreground --quiet --stderr --interface eth0 --mtu 1450 --address 10.244.1.7 \
             --netmask 24 --gateway 10.244.1.1 --tcp-ports 80,8080 --udp-ports 53 --no-map-gw \
             --ipv4-only"
        );
    }

    #[test]
    fn no_ports_forwards_all_and_one_protocol_leaves_the_other_none() {
        let mut a = passt();
        a.ports = None;
        a.ipv6 = true;
        let args = a.to_args().join(" ");
        assert!(args.contains("--tcp-ports all --udp-ports all"), "{args}");
        assert!(!args.contains("-only"), "{args}");
        a.ports = Some(vec![(80, Protocol::Tcp)]);
        let args = a.to_args().join(" ");
        assert!(args.contains("--tcp-ports 80 --udp-ports none"), "{args}");
    }

    #[test]
    fn slirp_mode_uses_slirps_addresses_and_forwards_dns() {
        let a = PasstArgs {
            mode: PasstMode::Slirp,
            ipv4: Some(PasstIpv4 {
                addr: slirp::GUEST,
                prefix: slirp::PREFIX,
                gateway: Some(slirp::GATEWAY),
            }),
            ..passt()
        };
        let args = a.to_args().join(" ");
        assert!(
            args.contains(
                "--address 10.0.2.15 --netmask 24 --gateway 10.0.2.2 --dns-forward 10.0.2.3"
            ),
            "{args}"
        );
        assert!(!args.contains("--no-map-gw"), "{args}");
    }

    #[test]
    fn all_ports_need_a_socket_per_port_outside_the_ephemeral_range() {
        // Linux's default range 32768-60999 leaves 37 303 ports.
        assert_eq!(
            descriptors_for_all_ports(true, false, (32768, 60999)),
            2 * 37_303 + 1024
        );
        assert_eq!(
            descriptors_for_all_ports(true, true, (32768, 60999)),
            4 * 37_303 + 1024
        );
        assert_eq!(
            descriptors_for_all_ports(true, false, (60999, 32768)),
            2 * 65_535 + 1024
        );
    }

    #[test]
    fn ipv6_only_pod() {
        let a = PasstArgs {
            ipv4: None,
            ipv6: true,
            ..passt()
        };
        let args = a.to_args().join(" ");
        assert!(args.ends_with("--ipv6-only"), "{args}");
        assert!(!args.contains("--address"), "{args}");
    }
}
