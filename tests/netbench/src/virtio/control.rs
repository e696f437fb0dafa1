//! What the driver negotiates: its feature bits, the tap offloads that go
//! with them, and the control-queue command that enables more pairs.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use devices::virtio::test_driver::DriverRing;
use devices::virtio::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};
use net_backend::Offloads;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_VQ,
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_MQ,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_OK,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::CTRL_BUF_OFF;

pub fn driver_features(pairs: usize) -> u64 {
    let bit = |f: u32| 1u64 << f;
    let mut f = VIRTIO_F_VERSION_1
        | VIRTIO_RING_F_EVENT_IDX
        | bit(VIRTIO_NET_F_MRG_RXBUF)
        | bit(VIRTIO_NET_F_CTRL_VQ)
        | bit(VIRTIO_NET_F_CSUM)
        | bit(VIRTIO_NET_F_HOST_TSO4)
        | bit(VIRTIO_NET_F_GUEST_CSUM)
        | bit(VIRTIO_NET_F_GUEST_TSO4);
    if pairs > 1 {
        f |= bit(VIRTIO_NET_F_MQ);
    }
    f
}

/// What the guest would negotiate for the tap (csum + tso4).
pub const OFFLOADS: Offloads = Offloads {
    csum: true,
    tso4: true,
    tso6: false,
    ecn: false,
};

/// Sends VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET through the control queue.
pub fn set_vq_pairs(
    mem: &GuestMemoryMmap,
    ring: &mut DriverRing,
    kick: &EventFd,
    pairs: u16,
) -> io::Result<()> {
    let buf = CTRL_BUF_OFF;
    let p = pairs.to_le_bytes();
    let cmd = [
        VIRTIO_NET_CTRL_MQ as u8,
        VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET as u8,
        p[0],
        p[1],
    ];
    mem.write_slice(&cmd, GuestAddress(buf))
        .map_err(io::Error::other)?;
    mem.write_obj(0xffu8, GuestAddress(buf + 0x100))
        .map_err(io::Error::other)?;
    ring.set_desc(0, buf, 4, VRING_DESC_F_NEXT as u16, 1);
    ring.set_desc(1, buf + 0x100, 1, VRING_DESC_F_WRITE as u16, 0);
    ring.push(0);
    ring.publish();
    kick.write(1)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while ring.used_idx() == ring.last_used {
        if Instant::now() > deadline {
            return Err(io::Error::other("no answer to VQ_PAIRS_SET"));
        }
        thread::sleep(Duration::from_millis(1));
    }
    ring.last_used = ring.last_used.wrapping_add(1);
    let ack: u8 = mem
        .read_obj(GuestAddress(buf + 0x100))
        .map_err(io::Error::other)?;
    if ack != VIRTIO_NET_OK as u8 {
        return Err(io::Error::other(format!("VQ_PAIRS_SET answered {ack}")));
    }
    Ok(())
}
