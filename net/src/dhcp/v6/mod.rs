//! A minimal stateful DHCPv6 server (RFC 8415) for one guest on a tap link.
//!
//! It complements [`crate::ra`]: the Router Advertisement sets the M flag,
//! and this server hands the guest its fixed address (an IA_NA with
//! [`Dhcp6Config::client_ip`]) plus DNS servers and search domains. Like
//! the DHCPv4 server it keeps no lease state.
//!
//! - [`server`]: [`Dhcp6Server::handle`] turns a received message into a
//!   [`Dhcp6Action`]; pure, never panics.
//! - [`socket`]: [`Dhcp6Socket`], the UDP socket on `[::]:547` of the tap
//!   that feeds the server and sends its replies.
//!
//! # Which clients are answered
//!
//! A DHCPv6 client is identified by its DUID, not its MAC. When the DUID is
//! MAC-based (DUID-LLT or DUID-LL with Ethernet hardware type) and names
//! another MAC than [`Dhcp6Config::client_mac`], the message is ignored.
//! Any other DUID (DUID-EN, DUID-UUID, ... — systemd-networkd and
//! NetworkManager use those by default) is answered, like KubeVirt does:
//! only the guest is on the tap. Such answers are counted in
//! [`Dhcp6Counters::non_mac_duid`].

pub mod server;
pub mod socket;

use std::net::Ipv6Addr;

pub use server::{
    duid_ll, duid_mac, encode_domain_list, Dhcp6Action, Dhcp6Config, Dhcp6Counters,
    Dhcp6IgnoreReason, Dhcp6Server,
};
pub use socket::Dhcp6Socket;

/// The DHCPv6 server (and relay agent) port.
pub const SERVER_PORT: u16 = 547;
/// The DHCPv6 client port.
pub const CLIENT_PORT: u16 = 546;
/// All_DHCP_Relay_Agents_and_Servers, where clients send.
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
