//! The receive loop DHCPv4 and DHCPv6 sockets share: drain every pending
//! datagram, let the server answer each, send the answers.

use std::fmt::Debug;
use std::net::{SocketAddr, UdpSocket};

use crate::sys;

/// Large enough for any DHCP or DHCPv6 message a client sends (they are
/// limited by the link MTU); a longer datagram is truncated and then fails
/// to decode.
const RECV_BUF_LEN: usize = 4096;

/// What a server makes of one received datagram.
pub(crate) enum Answer<R> {
    /// Send `packet` to `dest`.
    Reply {
        /// The encoded reply.
        packet: Vec<u8>,
        /// Where it goes.
        dest: SocketAddr,
    },
    /// Send nothing, for this reason (logged at debug).
    Ignore(R),
}

/// Reads every pending datagram on the non-blocking `socket`, passes each
/// with its source to `answer` and sends the reply it returns; returns once
/// the socket would block. `proto` ("DHCP", "DHCPv6") names the protocol in
/// logs.
///
/// Failing to send a reply is logged and does not stop the loop (clients
/// retransmit); failing to receive is returned.
pub(crate) fn serve_pending<R: Debug>(
    socket: &UdpSocket,
    iface: &str,
    proto: &'static str,
    mut answer: impl FnMut(&[u8], SocketAddr) -> Answer<R>,
) -> std::io::Result<()> {
    let mut buf = [0u8; RECV_BUF_LEN];
    while let Some((len, src)) = sys::recv_next(|| socket.recv_from(&mut buf))? {
        let packet = buf.get(..len).unwrap_or(&[]);
        match answer(packet, src) {
            Answer::Reply { packet, dest } => {
                if let Err(e) = sys::retry_eintr(|| socket.send_to(&packet, dest)) {
                    tracing::warn!(iface, %dest, error = %e, "cannot send {proto} reply");
                }
            }
            Answer::Ignore(reason) => {
                tracing::debug!(iface, %src, ?reason, "{proto} message ignored");
            }
        }
    }
    Ok(())
}
