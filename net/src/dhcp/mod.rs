//! A minimal DHCPv4 server for one guest on a tap link.
//!
//! The guest's address is fixed by configuration; the server exists so an
//! unmodified guest image configured for DHCP gets it (with its routes, DNS
//! and search domains) without any agent. It answers only the configured
//! client MAC and keeps no lease state.
//!
//! - [`server`]: the protocol logic, [`DhcpServer::handle`] turning a
//!   received message into a [`DhcpAction`]; pure and fully unit-tested.
//! - [`options`]: hand-written encoders for options 119 and 121 and the
//!   subnet-mask helpers.
//! - [`socket`]: [`DhcpSocket`], the UDP socket on the tap that feeds the
//!   server and sends its replies.
//! - [`v6`]: the DHCPv6 server and socket, laid out the same way.
//! - `drain` (private): the receive-and-answer loop both sockets share.
//!
//! Messages are decoded and encoded with the `dhcproto` crate.

mod drain;
pub mod options;
pub mod server;
pub mod socket;
pub mod v6;

pub use server::{DhcpAction, DhcpConfig, DhcpCounters, DhcpExtras, DhcpServer, IgnoreReason};
pub use socket::{DhcpSocket, CLIENT_PORT, SERVER_PORT};
