//! The driver side of the virtio-net rings: a TX ring of 2-descriptor
//! chains over prebuilt frames and an RX ring of writable buffers.

use devices::virtio::net::VNET_HDR_LEN;
use devices::virtio::test_driver::DriverRing;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{PAIR_MEM, RING, RX_BUF_OFF, RX_RING_OFF, TX_BUF_OFF, TX_RING_OFF};
use crate::frames::{tx_frame, Size};

/// TX side of the driver: RING/2 slots, each a 2-descriptor chain (12-byte
/// header, then the frame) over its own copy of the frame.
pub struct TxDriver {
    pub ring: DriverRing,
    pub slots: usize,
    pub free: Vec<u16>,
    pub frame_len: u64,
    pub frames: u64,
}

impl TxDriver {
    pub fn new(mem: &GuestMemoryMmap, base: u64, size: Size, sport: u16) -> Self {
        Self::with_frame(mem, base, &tx_frame(size, sport))
    }

    /// Every slot posts `frame` (virtio-net header included).
    pub fn with_frame(mem: &GuestMemoryMmap, base: u64, frame: &[u8]) -> Self {
        let ring = DriverRing::new(mem, base + TX_RING_OFF, RING);
        let frame_len = frame.len() - VNET_HDR_LEN;
        let stride = (frame.len() as u64).next_multiple_of(4096);
        let slots = usize::from(RING / 2);
        assert!(TX_BUF_OFF + slots as u64 * stride <= PAIR_MEM);
        for s in 0..slots as u16 {
            let addr = base + TX_BUF_OFF + u64::from(s) * stride;
            mem.write_slice(frame, GuestAddress(addr)).unwrap();
            let (d0, d1) = (2 * s, 2 * s + 1);
            ring.set_desc(d0, addr, VNET_HDR_LEN as u32, VRING_DESC_F_NEXT as u16, d1);
            ring.set_desc(d1, addr + VNET_HDR_LEN as u64, frame_len as u32, 0, 0);
        }
        Self {
            ring,
            slots,
            free: (0..slots as u16).rev().collect(),
            frame_len: frame_len as u64,
            frames: 0,
        }
    }

    /// Posts every free slot; returns how many (0: nothing published).
    pub fn fill(&mut self) -> usize {
        let n = self.free.len();
        while let Some(s) = self.free.pop() {
            self.ring.push(2 * s);
        }
        if n > 0 {
            self.ring.publish();
        }
        n
    }

    /// Collects used chains; returns how many.
    pub fn reap(&mut self) -> usize {
        let used = self.ring.used_idx();
        let mut n = 0;
        while self.ring.last_used != used {
            let (id, _) = self.ring.used_elem(self.ring.last_used);
            self.free.push((id / 2) as u16);
            self.ring.last_used = self.ring.last_used.wrapping_add(1);
            n += 1;
        }
        self.frames += n as u64;
        n
    }

    pub fn in_flight(&self) -> usize {
        self.slots - self.free.len()
    }
}

/// RX side of the driver: RING single-descriptor writable buffers of
/// `buf_len` bytes (MRG_RXBUF: a frame may span several), reposted as soon
/// as they are used. Frames are counted from num_buffers in the header.
pub struct RxDriver {
    pub ring: DriverRing,
    pub buf_base: u64,
    pub buf_len: u32,
    /// Buffers still to come for the current frame.
    pub remaining: u16,
    pub acc: u64,
    pub frames: u64,
    pub bytes: u64,
}

impl RxDriver {
    pub fn new(mem: &GuestMemoryMmap, base: u64, buf_len: u32) -> Self {
        let mut ring = DriverRing::new(mem, base + RX_RING_OFF, RING);
        let buf_base = base + RX_BUF_OFF;
        assert!(RX_BUF_OFF + u64::from(RING) * u64::from(buf_len) <= TX_BUF_OFF);
        for i in 0..RING {
            let addr = buf_base + u64::from(i) * u64::from(buf_len);
            ring.set_desc(i, addr, buf_len, VRING_DESC_F_WRITE as u16, 0);
            ring.push(i);
        }
        ring.publish();
        Self {
            ring,
            buf_base,
            buf_len,
            remaining: 0,
            acc: 0,
            frames: 0,
            bytes: 0,
        }
    }

    /// Consumes used buffers, reposts them; returns (buffers, avail index
    /// before reposting).
    pub fn reap(&mut self) -> (usize, u16) {
        let old = self.ring.avail_idx();
        let used = self.ring.used_idx();
        let mut n = 0;
        while self.ring.last_used != used {
            let (id, len) = self.ring.used_elem(self.ring.last_used);
            if self.remaining == 0 {
                let at = self.buf_base + u64::from(id) * u64::from(self.buf_len) + 10;
                let nb: u16 = self.ring.mem().read_obj(GuestAddress(at)).unwrap();
                self.remaining = u16::from_le(nb).max(1);
                self.acc = u64::from(len).saturating_sub(VNET_HDR_LEN as u64);
            } else {
                self.acc += u64::from(len);
            }
            self.remaining -= 1;
            if self.remaining == 0 {
                self.frames += 1;
                self.bytes += self.acc;
            }
            self.ring.push(id as u16);
            self.ring.last_used = self.ring.last_used.wrapping_add(1);
            n += 1;
        }
        if n > 0 {
            self.ring.publish();
        }
        (n, old)
    }
}
