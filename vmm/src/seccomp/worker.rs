//! NIC workers: an event loop over the queue kicks, the backend (tap,
//! macvtap or a socket) and the kill eventfd; frames move with
//! read/readv/write/writev (or recv/send on a socket backend); the guest is
//! interrupted through irqfd writes.

use super::base;
use super::Rules;

/// Calls both worker kinds make.
fn datapath() -> Rules {
    base::common().merge(base::event_loop()).allow(&[
        libc::SYS_readv,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_ppoll,
        libc::SYS_poll,
    ])
}

/// A virtio-net queue pair worker (pair 0 also serves the control queue,
/// which only updates shared state: the tap's offloads are set at
/// activation, on the vCPU thread). No ioctl at all.
pub(super) fn virtio_net_queue() -> Rules {
    datapath()
}

/// The e1000 receive worker. Its interrupt moderation timer (a timerfd,
/// created with the device) is armed by whichever thread holds the register
/// lock: this worker, or a vCPU (which spawns it, so gets this list too).
pub(super) fn e1000_rx() -> Rules {
    datapath().allow(&[libc::SYS_timerfd_settime])
}
