//! The receive loop DHCPv4 and DHCPv6 sockets share: drain every pending
//! datagram, let the server answer each, send the answers.

use std::fmt::Debug;
use std::net::{SocketAddr, UdpSocket};

use crate::budget::MAX_DATAGRAMS_PER_WAKEUP;
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

/// Reads the pending datagrams on the non-blocking `socket`, at most
/// [`MAX_DATAGRAMS_PER_WAKEUP`], passes each with its source to `answer`
/// and sends the reply it returns; returns once the socket would block or
/// the budget is spent (the level-triggered socket wakes the loop again
/// for the rest). `proto` ("DHCP", "DHCPv6") names the protocol in logs.
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
    for _ in 0..MAX_DATAGRAMS_PER_WAKEUP {
        let Some((len, src)) = sys::recv_next(|| socket.recv_from(&mut buf))? else {
            break;
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood of datagrams is served a budget at a time; every one is
    /// served in the end, and nothing is left.
    #[test]
    fn a_flood_is_served_a_budget_per_wakeup() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let flood = 3 * MAX_DATAGRAMS_PER_WAKEUP + 5;
        for i in 0..flood {
            client
                .send_to(&[i as u8; 300], server.local_addr().unwrap())
                .unwrap();
        }
        let mut per_wakeup = Vec::new();
        loop {
            let mut n = 0;
            serve_pending(&server, "lo", "DHCP", |_, _| {
                n += 1;
                Answer::<()>::Ignore(())
            })
            .unwrap();
            if n == 0 {
                break;
            }
            per_wakeup.push(n);
        }
        let budget = MAX_DATAGRAMS_PER_WAKEUP;
        assert_eq!(per_wakeup, [budget, budget, budget, 5]);
    }

    #[test]
    fn replies_go_out_within_the_budget() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_nonblocking(true).unwrap();
        for _ in 0..(MAX_DATAGRAMS_PER_WAKEUP + 1) {
            client
                .send_to(b"discover", server.local_addr().unwrap())
                .unwrap();
        }
        serve_pending(&server, "lo", "DHCP", |p, src| Answer::<()>::Reply {
            packet: p.to_vec(),
            dest: src,
        })
        .unwrap();
        let mut buf = [0u8; 64];
        let mut replies = 0;
        while client.recv_from(&mut buf).is_ok() {
            replies += 1;
        }
        assert_eq!(replies, MAX_DATAGRAMS_PER_WAKEUP);
    }
}
