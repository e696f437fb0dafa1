//! [`PodNetService`]: everything one pod-bound NIC needs served after its
//! binding is set up — the DHCPv4 server, and with IPv6 masquerade router
//! advertisements (solicited and on the RFC 4861 schedule) and the DHCPv6
//! server — plus the binding's undo guard, so the plumbing goes away with
//! the service.
//!
//! The service owns its sockets and its timer but no event loop: the VMM's
//! control thread registers [`PodNetService::fds`] with their
//! [`ServiceToken`]s and calls [`PodNetService::handle`] with the token of
//! each readable descriptor. Dropping the service logs its counters, closes
//! the sockets and then undoes the binding.

mod ipv6;
mod ra_schedule;

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use net_backend::Tap;

use crate::binding::{BindingError, BindingGuard, BindingKind, BindingSetup, PodBindingRequest};
use crate::dhcp::v6::Dhcp6Counters;
use crate::dhcp::{DhcpCounters, DhcpServer, DhcpSocket};
use crate::netlink::NetlinkError;
use crate::ra::RaCounters;
use ipv6::{Ipv6Services, RaPolicy};

/// Errors from building or serving a [`PodNetService`].
#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    /// The binding could not be set up.
    #[error("interface {nic}: {binding} binding")]
    Binding {
        /// The NIC's name.
        nic: String,
        /// Which binding.
        binding: BindingKind,
        /// Why.
        #[source]
        source: BindingError,
    },
    /// An IPv6 service (RA, DHCPv6) could not be bound on the bridge.
    #[error("interface {nic}: IPv6 {what} on {bridge}")]
    Ipv6 {
        /// The NIC's name.
        nic: String,
        /// The service, e.g. `"DHCPv6"`.
        what: &'static str,
        /// The bridge it was to be bound to.
        bridge: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The bridge could not be looked up.
    #[error("interface {nic}: netlink")]
    Netlink {
        /// The NIC's name.
        nic: String,
        /// Why.
        #[source]
        source: NetlinkError,
    },
    /// Serving a readable descriptor failed.
    #[error("interface {nic}: {token}")]
    Serve {
        /// The NIC's name.
        nic: String,
        /// The descriptor's token.
        token: ServiceToken,
        /// The socket or timer error.
        #[source]
        source: io::Error,
    },
}

/// Names one descriptor of a [`PodNetService`]; its [`raw`](Self::raw)
/// value is what an event loop stores with the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceToken {
    /// The DHCPv4 socket.
    Dhcp4,
    /// The RA socket (router solicitations).
    RouterSolicitation,
    /// The DHCPv6 socket.
    Dhcp6,
    /// The unsolicited-advertisement timer.
    RaTimer,
}

impl ServiceToken {
    const ALL: [ServiceToken; 4] = [
        ServiceToken::Dhcp4,
        ServiceToken::RouterSolicitation,
        ServiceToken::Dhcp6,
        ServiceToken::RaTimer,
    ];

    /// The token as event data (1 to 4).
    pub const fn raw(self) -> u32 {
        match self {
            ServiceToken::Dhcp4 => 1,
            ServiceToken::RouterSolicitation => 2,
            ServiceToken::Dhcp6 => 3,
            ServiceToken::RaTimer => 4,
        }
    }

    /// The token whose [`raw`](Self::raw) value is `raw`.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.raw() == raw)
    }
}

impl fmt::Display for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceToken::Dhcp4 => "DHCP socket",
            ServiceToken::RouterSolicitation => "router solicitation socket",
            ServiceToken::Dhcp6 => "DHCPv6 socket",
            ServiceToken::RaTimer => "unsolicited router advertisement",
        })
    }
}

/// A snapshot of a service's counters, e.g. for a metrics endpoint; `None`
/// for a server the service does not run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNetCounters {
    /// The DHCPv4 server's.
    pub dhcp4: Option<DhcpCounters>,
    /// The RA socket's.
    pub ra: Option<RaCounters>,
    /// Unsolicited advertisements sent on the timer.
    pub unsolicited_ras: u32,
    /// The DHCPv6 server's.
    pub dhcp6: Option<Dhcp6Counters>,
}

/// What binding a NIC yields: the tap queues and MTU for the device model,
/// and the service to run in the control loop.
#[derive(Debug)]
pub struct BoundPodNic {
    /// One tap per queue pair.
    pub taps: Vec<Tap>,
    /// The pod MTU, for the guest.
    pub mtu: u16,
    /// The MAC the guest must use (the DHCP servers answer only it).
    pub guest_mac: [u8; 6],
    /// DHCP and RA for the NIC, and the binding's undo guard.
    pub service: PodNetService,
}

/// One pod-bound NIC's network services; see the [module docs](self).
///
/// Fields drop in declaration order: the sockets close before the guard
/// removes the bridge they are bound to.
pub struct PodNetService {
    nic: String,
    dhcp4: Option<(DhcpServer, DhcpSocket)>,
    ipv6: Option<Ipv6Services>,
    guard: BindingGuard,
}

impl fmt::Debug for PodNetService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodNetService")
            .field("nic", &self.nic)
            .field("counters", &self.counters())
            .field("undo_steps", &self.guard.len())
            .finish_non_exhaustive()
    }
}

impl PodNetService {
    /// Sets up binding `kind` for `req` and starts its services: DHCPv4
    /// when the binding hands out an IPv4 address, and for masquerade with
    /// [`PodBindingRequest::v6_cidr`] RA and DHCPv6 on the bridge. On error
    /// everything done so far is undone.
    pub fn bind(kind: BindingKind, req: &PodBindingRequest) -> Result<BoundPodNic, PodNetError> {
        let setup = kind.setup(req).map_err(|source| PodNetError::Binding {
            nic: req.nic_name.clone(),
            binding: kind,
            source,
        })?;
        Self::serve(kind, req, setup, RaPolicy::Required)
    }

    /// Like [`bind`](Self::bind), on plumbing a privileged `net-setup`
    /// prepared ([`BindingKind::attach`]): attaches to the taps and starts
    /// the same services, needing only CAP_NET_BIND_SERVICE. Router
    /// advertisements need a raw ICMPv6 socket (CAP_NET_RAW); without it
    /// the guest still gets DHCPv6 but no RA (as in KubeVirt, which sends
    /// none), and a warning says so.
    pub fn attach(kind: BindingKind, req: &PodBindingRequest) -> Result<BoundPodNic, PodNetError> {
        let setup = kind.attach(req).map_err(|source| PodNetError::Binding {
            nic: req.nic_name.clone(),
            binding: kind,
            source,
        })?;
        Self::serve(kind, req, setup, RaPolicy::IfPermitted)
    }

    fn serve(
        kind: BindingKind,
        req: &PodBindingRequest,
        setup: BindingSetup,
        ra: RaPolicy,
    ) -> Result<BoundPodNic, PodNetError> {
        tracing::info!(
            nic = %req.nic_name, binding = %kind, pod_iface = %req.pod_iface,
            tap = %req.tap_name, mtu = setup.mtu, "pod binding set up"
        );
        let mut service = PodNetService {
            nic: req.nic_name.clone(),
            dhcp4: setup.dhcp,
            ipv6: None,
            guard: setup.guard,
        };
        if let (BindingKind::Masquerade, Some(cidr)) = (kind, req.v6_cidr) {
            // On error `service` drops here and undoes the binding.
            let v6 = Ipv6Services::bind(req, setup.guest_mac, cidr, setup.mtu, ra)?;
            service.ipv6 = Some(v6);
        }
        Ok(BoundPodNic {
            taps: setup.taps,
            mtu: setup.mtu,
            guest_mac: setup.guest_mac,
            service,
        })
    }

    /// The NIC's name.
    pub fn nic(&self) -> &str {
        &self.nic
    }

    /// Every descriptor to watch for readability, with its token.
    pub fn fds(&self) -> Vec<(RawFd, ServiceToken)> {
        let mut fds = Vec::new();
        if let Some((_, sock)) = &self.dhcp4 {
            fds.push((sock.as_raw_fd(), ServiceToken::Dhcp4));
        }
        if let Some(v6) = &self.ipv6 {
            if let Some(ra) = &v6.ra {
                fds.push((ra.as_raw_fd(), ServiceToken::RouterSolicitation));
            }
            fds.push((v6.dhcp6.1.as_raw_fd(), ServiceToken::Dhcp6));
            if let Some(fd) = v6.timer_fd() {
                fds.push((fd, ServiceToken::RaTimer));
            }
        }
        fds
    }

    /// Serves the descriptor of `token`, which is readable: answers every
    /// pending DHCP message or router solicitation, or sends the timer's
    /// advertisement. A token the service has no descriptor for is a no-op.
    pub fn handle(&mut self, token: ServiceToken) -> Result<(), PodNetError> {
        let result = match (token, &mut self.dhcp4, &mut self.ipv6) {
            (ServiceToken::Dhcp4, Some((server, sock)), _) => sock.handle_readable(server),
            (ServiceToken::RouterSolicitation, _, Some(v6)) => v6.on_solicitations(&self.nic),
            (ServiceToken::Dhcp6, _, Some(v6)) => {
                let (server, sock) = &mut v6.dhcp6;
                sock.handle_readable(server)
            }
            (ServiceToken::RaTimer, _, Some(v6)) => v6.on_ra_timer(&self.nic),
            _ => Ok(()),
        };
        result.map_err(|source| PodNetError::Serve {
            nic: self.nic.clone(),
            token,
            source,
        })
    }

    /// The counters so far.
    pub fn counters(&self) -> PodNetCounters {
        PodNetCounters {
            dhcp4: self.dhcp4.as_ref().map(|(s, _)| s.counters().clone()),
            ra: self.ipv6.as_ref().and_then(Ipv6Services::ra_counters),
            unsolicited_ras: self.ipv6.as_ref().map_or(0, |v6| v6.unsolicited),
            dhcp6: self.ipv6.as_ref().map(|v6| v6.dhcp6.0.counters().clone()),
        }
    }
}

impl Drop for PodNetService {
    fn drop(&mut self) {
        let c = self.counters();
        if let Some(counters) = &c.dhcp4 {
            tracing::info!(nic = %self.nic, ?counters, "DHCP server stopped");
        }
        if let Some(counters) = &c.ra {
            tracing::info!(
                nic = %self.nic, ?counters, unsolicited = c.unsolicited_ras,
                "router advertisements stopped"
            );
        }
        if let Some(counters) = &c.dhcp6 {
            tracing::info!(nic = %self.nic, ?counters, "DHCPv6 server stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in ServiceToken::ALL {
            assert_eq!(ServiceToken::from_raw(t.raw()), Some(t));
        }
        assert_eq!(ServiceToken::from_raw(0), None);
        assert_eq!(ServiceToken::from_raw(5), None);
        assert_eq!(ServiceToken::Dhcp4.raw(), 1);
        assert_eq!(ServiceToken::RaTimer.raw(), 4);
    }

    #[test]
    fn a_service_without_servers_has_no_fds_and_ignores_tokens() {
        let mut svc = PodNetService {
            nic: "default".into(),
            dhcp4: None,
            ipv6: None,
            guard: BindingGuard::default(),
        };
        assert!(svc.fds().is_empty());
        for t in ServiceToken::ALL {
            svc.handle(t).unwrap();
        }
        assert_eq!(svc.counters(), PodNetCounters::default());
        assert_eq!(svc.nic(), "default");
    }

    #[test]
    fn serve_errors_name_nic_and_descriptor() {
        let e = PodNetError::Serve {
            nic: "default".into(),
            token: ServiceToken::Dhcp6,
            source: io::Error::from_raw_os_error(libc::EBADF),
        };
        assert_eq!(e.to_string(), "interface default: DHCPv6 socket");
        assert!(std::error::Error::source(&e).is_some());
    }
}
