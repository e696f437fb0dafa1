//! IPv6 on the masquerade bridge: router advertisements (default route,
//! on-link prefix, M flag; solicited and on the RFC 4861 schedule) and the
//! DHCPv6 server handing out the guest's address.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use vmm_sys_util::timerfd::TimerFd;

use super::ra_schedule::{jitter_unit, ra_interval};
use super::PodNetError;
use crate::binding::{first_hosts_v6, PodBindingRequest};
use crate::dhcp::v6::{duid_ll, Dhcp6Config, Dhcp6Server, Dhcp6Socket};
use crate::netlink::Netlink;
use crate::ra::{RaCounters, RaSocket};

/// MAC used for the RA source option and the server DUID when the bridge
/// reports none.
const FALLBACK_BRIDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// Whether router advertisements must be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RaPolicy {
    /// A raw socket that cannot be opened is an error (petrel plumbs the
    /// pod itself, so it has the capabilities).
    Required,
    /// The privilege split: without CAP_NET_RAW there is no RA, only a
    /// warning.
    IfPermitted,
}

/// The RA socket, its timer and the DHCPv6 server of one bridge.
pub(super) struct Ipv6Services {
    /// `None` when [`RaPolicy::IfPermitted`] found no CAP_NET_RAW.
    pub(super) ra: Option<RaSocket>,
    /// Unsolicited advertisements; `None` when no timer could be made (the
    /// guest's solicitations are still answered).
    pub(super) ra_timer: Option<TimerFd>,
    /// Unsolicited advertisements sent so far.
    pub(super) unsolicited: u32,
    /// When the timer fires next.
    next_timer: Option<Instant>,
    pub(super) dhcp6: (Dhcp6Server, Dhcp6Socket),
}

impl Ipv6Services {
    /// Binds RA and DHCPv6 on `req.bridge_name` for the guest network
    /// `net6/len6`: the guest learns its default route and the on-link
    /// prefix from the RA and its address (the second of the prefix) from
    /// DHCPv6. Sends the first advertisement and arms the timer.
    pub(super) fn bind(
        req: &PodBindingRequest,
        guest_mac: [u8; 6],
        (net6, len6): (Ipv6Addr, u8),
        mtu: u16,
        policy: RaPolicy,
    ) -> Result<Self, PodNetError> {
        let io_err = |what: &'static str| {
            move |source| PodNetError::Ipv6 {
                nic: req.nic_name.clone(),
                what,
                bridge: req.bridge_name.clone(),
                source,
            }
        };
        let netlink_err = |source| PodNetError::Netlink {
            nic: req.nic_name.clone(),
            source,
        };
        let mut nl = Netlink::new().map_err(netlink_err)?;
        let bridge_mac = nl
            .link(&req.bridge_name)
            .map_err(netlink_err)?
            .mac
            .unwrap_or(FALLBACK_BRIDGE_MAC);
        let ra = match RaSocket::bind(&req.bridge_name, bridge_mac, u32::from(mtu), net6, len6) {
            Ok(mut ra) => {
                // The bridge's link-local address may still be tentative;
                // the guest's router solicitation gets an answer either way.
                if let Err(e) = ra.send_ra() {
                    tracing::debug!(error = %e, "first RA not sent yet");
                }
                Some(ra)
            }
            Err(e)
                if policy == RaPolicy::IfPermitted
                    && e.kind() == io::ErrorKind::PermissionDenied =>
            {
                tracing::warn!(
                    nic = %req.nic_name, error = %e,
                    "no router advertisements without CAP_NET_RAW (a raw ICMPv6 socket); the \
                     guest gets its IPv6 address by DHCPv6 but must be given its default route \
                     otherwise (add NET_RAW to the container for RAs)"
                );
                None
            }
            Err(e) => return Err(io_err("router advertisements")(e)),
        };
        let cfg = Dhcp6Config {
            server_duid: duid_ll(bridge_mac),
            client_mac: guest_mac,
            client_ip: first_hosts_v6(net6, len6).1,
            dns_servers: Vec::new(),
            search: req.dns.search.clone(),
            preferred_lifetime: u32::MAX,
            valid_lifetime: u32::MAX,
        };
        let sock = Dhcp6Socket::bind(&req.bridge_name).map_err(io_err("DHCPv6"))?;
        tracing::info!(nic = %req.nic_name, guest = %cfg.client_ip, "IPv6: RA and DHCPv6 on the bridge");
        let ra_timer = TimerFd::new()
            .map_err(|e| {
                tracing::warn!(error = %e, nic = %req.nic_name, "no timer for unsolicited router advertisements");
            })
            .ok();
        let mut services = Self {
            ra,
            ra_timer,
            unsolicited: 0,
            next_timer: None,
            dhcp6: (Dhcp6Server::new(cfg), sock),
        };
        services.arm_ra_timer(&req.nic_name);
        Ok(services)
    }

    /// The timer's descriptor, if there is a timer.
    pub(super) fn timer_fd(&self) -> Option<RawFd> {
        self.ra_timer.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn arm_ra_timer(&mut self, nic: &str) {
        if self.ra.is_none() {
            return;
        }
        let next = ra_interval(self.unsolicited, jitter_unit());
        self.arm_in(next, nic);
    }

    fn arm_in(&mut self, next: Duration, nic: &str) {
        // A zero interval would disarm the timer.
        let next = next.max(Duration::from_millis(1));
        if let Some(t) = &mut self.ra_timer {
            if let Err(e) = t.reset(next, None) {
                tracing::warn!(error = %e, nic, "cannot arm the router advertisement timer");
                return;
            }
            self.next_timer = Some(Instant::now() + next);
        }
    }

    /// Router solicitations arrived: answers them (at most one
    /// advertisement per MIN_DELAY_BETWEEN_RAS); one owed by the rate
    /// limit is sent by the timer, brought forward to when it may go.
    pub(super) fn on_solicitations(&mut self, nic: &str) -> io::Result<()> {
        let Some(ra) = &mut self.ra else {
            return Ok(());
        };
        ra.handle_readable()?;
        if let Some(due) = ra.owed_reply_in() {
            let at = Instant::now() + due;
            if self.next_timer.is_none_or(|t| at < t) {
                self.arm_in(due, nic);
            }
        }
        Ok(())
    }

    /// The timer expired: clears it, and multicasts an advertisement unless
    /// one went out less than MIN_DELAY_BETWEEN_RAS ago (then it fires
    /// again when one may); re-arms it for the next interval.
    pub(super) fn on_ra_timer(&mut self, nic: &str) -> io::Result<()> {
        if let Some(t) = &mut self.ra_timer {
            // Readable, so this does not block; it clears the expiry.
            t.wait()
                .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
        }
        self.next_timer = None;
        let Some(ra) = &self.ra else {
            return Ok(());
        };
        if let Err(wait) = ra.may_send() {
            self.arm_in(wait, nic);
            return Ok(());
        }
        self.unsolicited = self.unsolicited.saturating_add(1);
        self.arm_ra_timer(nic);
        match &mut self.ra {
            Some(ra) => ra.send_ra(),
            None => Ok(()),
        }
    }

    /// The RA socket's counters, when there is one.
    pub(super) fn ra_counters(&self) -> Option<RaCounters> {
        self.ra.as_ref().map(|ra| ra.counters().clone())
    }
}
