//! The receive path of a [`QueuePair`]. When the backend reads raw iovecs
//! and the guest's chains parsed ahead hold a maximal frame, the backend
//! reads each frame straight into them (zero-copy, see `rx_buffers.rs`);
//! otherwise — short or malformed chains, few buffers, a copy-only
//! backend — frames read into the pair's RX buffer are copied into the
//! guest's rx chains (several per frame with MRG_RXBUF), and a frame the
//! guest has no buffers for waits.

use std::io;
use std::num::Wrapping;
use std::sync::atomic::Ordering;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory,
};

use super::avail_ring::AvailRing;
use super::metrics::BatchCounters;
use super::queue_pair::{ChainError, Direction, RX_PUBLISH_EVERY};
use super::rx_buffers::RxBuffers;
use super::slice_chain::DescTable;
use super::{
    QueuePair, QueuePairError, RxOutcome, MAX_BUFFER_LEN, NUM_BUFFERS_OFFSET, RX_BUDGET,
    VNET_HDR_LEN,
};

/// What the parsed-ahead chains allow for the next frame.
enum Refill {
    /// They hold a maximal frame: read it straight into them.
    Ready,
    /// No chains at all.
    Empty,
    /// Too few bytes, or a chain the zero-copy path cannot take: the
    /// parsed chains must go back and the bounce path take the frame.
    Bounce,
}

/// How one zero-copy read ended.
enum ZeroCopy {
    /// A frame was placed in `chains` chains (or dropped: 0).
    Frame { chains: u32 },
    /// The backend is empty, closed or failing: end the batch.
    Stop,
    /// Interrupted: try again.
    Retry,
}

/// How [`QueuePair::deliver`] ended.
enum Delivery {
    /// The frame is in the guest; `chains` used entries were added.
    Delivered { chains: u32 },
    /// The frame was dropped; `chains` entries were returned with len 0.
    Dropped { chains: u32 },
    /// The guest has not posted enough buffers: the frame stays in the
    /// rx buffer, popped chains were pushed back, notifications enabled;
    /// `arrived` tells whether buffers showed up meanwhile.
    NoBuffers { arrived: bool },
}

/// Where [`QueuePair::deliver`]'s chains took the frame.
struct Filled {
    /// Bytes of the frame placed.
    written: usize,
    /// Guest addresses of the two `num_buffers` bytes.
    num_buffers_at: [Option<GuestAddress>; 2],
    /// Why the last chain was refused.
    failure: Option<ChainError>,
}

impl QueuePair {
    /// Moves frames from the backend into the guest's rx buffers until the
    /// backend is empty, the guest runs out of buffers (then the frame
    /// stays pending and notifications are enabled) or [`RX_BUDGET`]
    /// frames were handled.
    pub fn process_rx(&mut self) -> Result<RxOutcome, QueuePairError> {
        let mut out = RxOutcome::default();
        if self.rx_broken {
            out.paused = true;
            return Ok(out);
        }
        let notify = self.run_batch(Direction::Rx, |qp, batch| {
            let added = qp.rx_batch(batch, &mut out);
            // Published on every exit, the error's too: what was placed
            // stays placed.
            let published = qp.rx_used.publish(&mut qp.rx, &qp.mem);
            added.and_then(|n| published.map(|_| n))
        })?;
        out.notify = notify;
        Ok(out)
    }

    fn rx_batch(
        &mut self,
        batch: &mut BatchCounters,
        out: &mut RxOutcome,
    ) -> Result<u32, virtio_queue::Error> {
        let (mut used, mut budget) = (0u32, RX_BUDGET);
        // While frames flow the device polls the backend, so the driver
        // need not kick; notifications come back on when buffers run out.
        self.rx.disable_notification(&self.mem)?;
        loop {
            if budget == 0 {
                out.budget_exhausted = true;
                return Ok(used);
            }
            let len = match self.rx_pending.take() {
                Some(len) => len,
                None => {
                    match self.refill()? {
                        Refill::Ready => {
                            match self.receive_zero_copy(batch, out)? {
                                ZeroCopy::Frame { chains } => {
                                    budget -= 1;
                                    used += chains;
                                }
                                ZeroCopy::Stop => return Ok(used),
                                ZeroCopy::Retry => {}
                            }
                            continue;
                        }
                        Refill::Empty => {
                            // Leave the frame in the backend until buffers come.
                            if self.rx.enable_notification(&self.mem)? {
                                continue;
                            }
                            out.paused = true;
                            return Ok(used);
                        }
                        Refill::Bounce => self.return_rx_buffers(),
                    }
                    match self.backend.read_frame(&mut self.rx_buf) {
                        Ok(0) => {
                            out.backend_closed = true;
                            return Ok(used);
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(used),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            batch.backend_errors += 1;
                            self.warn_rate_limited("tap read failed", &e);
                            return Ok(used);
                        }
                    }
                }
            };
            budget -= 1;
            if !(VNET_HDR_LEN..=self.rx_buf.len()).contains(&len) {
                batch.rx_malformed += 1;
                self.warn_rate_limited("short frame from the backend dropped", &len);
                continue;
            }
            match self.deliver(len, batch)? {
                Delivery::Delivered { chains } => {
                    used += chains;
                    batch.rx_frames += 1;
                    batch.rx_copied += 1;
                    batch.rx_bytes += len as u64;
                }
                Delivery::Dropped { chains } => used += chains,
                Delivery::NoBuffers { arrived } => {
                    self.rx_pending = Some(len);
                    if !arrived {
                        out.paused = true;
                        return Ok(used);
                    }
                }
            }
        }
    }

    /// Gives the chains parsed ahead back to the avail ring (they are the
    /// last ones popped), e.g. before the bounce path or when the worker
    /// stops, so that the queue state says exactly what the guest owns.
    pub fn return_rx_buffers(&mut self) {
        if let Some(bufs) = self.rx_buffers.as_mut() {
            for _ in 0..bufs.clear() {
                self.rx.go_to_previous_position();
            }
        }
    }

    /// Parses chains ahead until they hold a maximal frame (one chain
    /// without MRG_RXBUF), and says whether the zero-copy path can take
    /// the next frame. Once below a maximal frame, it parses on to two of
    /// them, so that one pass over the avail ring serves many frames.
    fn refill(&mut self) -> Result<Refill, virtio_queue::Error> {
        let Some(bufs) = self.rx_buffers.as_mut() else {
            let avail = self.rx.avail_idx(&self.mem, Ordering::Acquire)?;
            return Ok(if avail.0 == self.rx.next_avail() {
                Refill::Empty
            } else {
                Refill::Bounce
            });
        };
        let (max_chains, want) = if self.mrg_rxbuf {
            (usize::MAX, 2 * MAX_BUFFER_LEN)
        } else {
            (1, MAX_BUFFER_LEN)
        };
        let ready = |b: &RxBuffers| {
            if self.mrg_rxbuf {
                b.capacity() >= MAX_BUFFER_LEN
            } else {
                b.chains() == 1
            }
        };
        if ready(bufs) {
            return Ok(Refill::Ready);
        }
        let refused = parse_ahead(&self.mem, &mut self.rx, bufs, want, max_chains)?;
        if refused && !ready(bufs) {
            // The refused chain stayed in the avail ring; the parsed ones
            // before it still serve when they hold a frame, and it is
            // judged by the bounce path once it is first in line.
            return Ok(Refill::Bounce);
        }
        Ok(if ready(bufs) {
            Refill::Ready
        } else if bufs.chains() == 0 {
            Refill::Empty
        } else {
            Refill::Bounce
        })
    }

    /// Reads one frame from the backend straight into the parsed chains
    /// (a small read's overflow through the bounce buffer, see
    /// `rx_buffers.rs`) and returns the ones it filled to the used ring,
    /// `num_buffers` set.
    fn receive_zero_copy(
        &mut self,
        batch: &mut BatchCounters,
        out: &mut RxOutcome,
    ) -> Result<ZeroCopy, virtio_queue::Error> {
        let Some(bufs) = self.rx_buffers.as_mut() else {
            return Ok(ZeroCopy::Stop);
        };
        let read = match bufs.read(
            &self.mem,
            self.backend.as_mut(),
            &mut self.rx_buf,
            MAX_BUFFER_LEN,
        ) {
            Ok(read) if read.len == 0 => {
                out.backend_closed = true;
                return Ok(ZeroCopy::Stop);
            }
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ZeroCopy::Stop),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(ZeroCopy::Retry),
            Err(e) => {
                batch.backend_errors += 1;
                self.warn_rate_limited("tap read failed", &e);
                return Ok(ZeroCopy::Stop);
            }
        };
        let len = read.len;
        if !(VNET_HDR_LEN..=read.offered).contains(&len) {
            // The buffers stay parsed; whatever landed there is garbage
            // the guest never sees.
            batch.rx_malformed += 1;
            self.warn_rate_limited("short or truncated frame from the backend dropped", &len);
            return Ok(ZeroCopy::Frame { chains: 0 });
        }
        let mut failure = None;
        if len > read.direct {
            let overflow = &self.rx_buf[..len - read.direct];
            match bufs.place_overflow(&self.mem, read.direct, overflow) {
                Some(n) if n == overflow.len() => {}
                // Only without MRG_RXBUF: the frame is longer than the
                // chain, dropped as the bounce path drops it.
                Some(_) => failure = Some(None),
                None => failure = Some(Some(ChainError::Memory)),
            }
        }
        let num_buffers_at =
            bufs.take(if failure.is_none() { len } else { 0 }, &mut self.rx_chains);
        let chains = self.rx_chains.len() as u16;
        match failure {
            None => failure = self.set_num_buffers(&num_buffers_at, chains).map(Some),
            // The bounce path leaves the bytes that fit with num_buffers
            // 1; so does this one (the guest sees neither: used len 0).
            Some(None) => _ = self.set_num_buffers(&num_buffers_at, 1),
            Some(Some(_)) => {}
        }
        self.return_rx_chains(failure.is_none())?;
        match failure {
            None => {
                batch.rx_frames += 1;
                batch.rx_bytes += len as u64;
            }
            Some(Some(e)) => {
                batch.rx_malformed += 1;
                self.warn_rate_limited("malformed rx chain, frame dropped", &e);
            }
            Some(None) => {
                batch.rx_dropped_no_buffer += 1;
                self.warn_rate_limited("rx buffer too small, frame dropped", &len);
            }
        }
        Ok(ZeroCopy::Frame {
            chains: u32::from(chains),
        })
    }

    /// Records the chains of one frame (`rx_chains`) as used, with their
    /// lengths when `delivered` and 0 otherwise. The used index goes out
    /// every [`RX_PUBLISH_EVERY`] entries, so a driver polling the ring
    /// sees progress mid-batch (as vhost-net does), and at the batch end.
    fn return_rx_chains(&mut self, delivered: bool) -> Result<(), virtio_queue::Error> {
        let size = self.rx.size();
        for &(head, used_len) in &self.rx_chains {
            if head >= size {
                return Err(virtio_queue::Error::InvalidDescriptorIndex);
            }
            self.rx_used
                .push(head, if delivered { used_len } else { 0 });
        }
        if self.rx_used.pending() >= RX_PUBLISH_EVERY {
            self.rx_used.publish(&mut self.rx, &self.mem)?;
        }
        Ok(())
    }

    /// Copies the frame in `rx_buf[..len]` into guest rx chains: one chain,
    /// or with MRG_RXBUF as many as needed (num_buffers set accordingly).
    fn deliver(
        &mut self,
        len: usize,
        batch: &mut BatchCounters,
    ) -> Result<Delivery, virtio_queue::Error> {
        // virtio 1.x: num_buffers is 1 unless buffers are merged.
        self.rx_buf[NUM_BUFFERS_OFFSET..NUM_BUFFERS_OFFSET + 2]
            .copy_from_slice(&1u16.to_le_bytes());
        let filled = match self.fill_chains(len)? {
            Some(filled) => filled,
            None => {
                // Out of buffers mid-frame: arm the notification at the
                // current avail index, then push the popped chains back.
                let arrived = self.rx.enable_notification(&self.mem)?;
                for _ in 0..self.rx_chains.len() {
                    self.rx.go_to_previous_position();
                }
                self.rx_chains.clear();
                return Ok(Delivery::NoBuffers { arrived });
            }
        };

        let chains = self.rx_chains.len() as u32;
        let mut failure = filled.failure;
        let delivered = failure.is_none() && filled.written == len;
        if delivered && chains > 1 {
            failure = self.set_num_buffers(&filled.num_buffers_at, chains as u16);
        }
        let delivered = delivered && failure.is_none();
        self.return_rx_chains(delivered)?;
        if delivered {
            return Ok(Delivery::Delivered { chains });
        }
        match failure {
            Some(e) => {
                batch.rx_malformed += 1;
                self.warn_rate_limited("malformed rx chain, frame dropped", &e);
            }
            None => {
                batch.rx_dropped_no_buffer += 1;
                self.warn_rate_limited("rx buffer too small, frame dropped", &len);
            }
        }
        Ok(Delivery::Dropped { chains })
    }

    /// Pops rx chains into `rx_chains` and scatters `rx_buf[..len]` over
    /// them (one chain without MRG_RXBUF); `None` when the guest ran out
    /// of chains before the frame was placed.
    fn fill_chains(&mut self, len: usize) -> Result<Option<Filled>, virtio_queue::Error> {
        self.rx_chains.clear();
        let mut filled = Filled {
            written: 0,
            num_buffers_at: [None; 2],
            failure: None,
        };
        while filled.written < len {
            let Some(chain) = self.rx.iter(&self.mem)?.next() else {
                return Ok(None);
            };
            let head = chain.head_index();
            let written = filled.written;
            let scattered = if head < self.rx.size() {
                scatter(
                    &self.mem,
                    chain,
                    &self.rx_buf[written..len],
                    written,
                    &mut filled.num_buffers_at,
                )
            } else {
                Err(ChainError::BadHead)
            };
            match scattered {
                Ok(n) => {
                    filled.written += n;
                    self.rx_chains.push((head, n as u32));
                }
                Err(e) => {
                    if e != ChainError::BadHead {
                        self.rx_chains.push((head, 0));
                    }
                    filled.failure = Some(e);
                    break;
                }
            }
            if !self.mrg_rxbuf {
                break;
            }
        }
        Ok(Some(filled))
    }

    /// Writes the number of chains a merged frame took into its
    /// `num_buffers` field, wherever its two bytes landed.
    fn set_num_buffers(
        &self,
        num_buffers_at: &[Option<GuestAddress>; 2],
        chains: u16,
    ) -> Option<ChainError> {
        // Usually both bytes are in one descriptor: one volatile store (a
        // `write_obj` goes through vm-memory's generic byte copy).
        if let [Some(lo), Some(hi)] = *num_buffers_at {
            if lo.checked_add(1) == Some(hi) {
                let slice = self.mem.get_slice(lo, 2).ok();
                return match slice.as_ref().and_then(|s| s.get_ref::<u16>(0).ok()) {
                    Some(num_buffers) => {
                        num_buffers.store(chains.to_le());
                        None
                    }
                    None => Some(ChainError::Memory),
                };
            }
        }
        let mut failure = None;
        for (addr, byte) in num_buffers_at.iter().zip(chains.to_le_bytes()) {
            // The bytes were just written there, so this cannot fail
            // unless the guest unplugs memory under our feet.
            if let Some(addr) = addr {
                if self.mem.write_obj(byte, *addr).is_err() {
                    failure = Some(ChainError::Memory);
                }
            }
        }
        failure
    }
}

/// Parses the chains available in `rx` onto `bufs` until they hold `want`
/// bytes or `max_chains` chains, reading the avail ring and descriptor
/// table through slices resolved once (see `avail_ring.rs`,
/// `slice_chain.rs`). The avail position advances past every chain
/// parsed, exactly as popping them would, so that
/// [`QueuePair::return_rx_buffers`] can give them back; a chain `bufs`
/// refuses stays available. True when one was refused.
fn parse_ahead(
    mem: &GuestMemoryMmap,
    rx: &mut Queue,
    bufs: &mut RxBuffers,
    want: usize,
    max_chains: usize,
) -> Result<bool, virtio_queue::Error> {
    let size = rx.size();
    let ring = AvailRing::resolve(mem, rx)?;
    let mut pos = Wrapping(rx.next_avail());
    let avail = ring.index(pos)?;
    let table = DescTable::resolve(mem, rx.desc_table(), size);
    while bufs.capacity() < want && bufs.chains() < max_chains && pos != avail {
        let head = ring.head(pos)?;
        if !bufs.push_chain(mem, head, table.chain(mem, head), size) {
            return Ok(true);
        }
        pos += Wrapping(1);
        rx.set_next_avail(pos.0);
    }
    Ok(false)
}

/// Copies `data` (which starts at offset `base` of the frame) into an RX
/// chain (device-writable descriptors only) and returns how many bytes
/// fit; records where the frame's `num_buffers` bytes landed.
fn scatter(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    data: &[u8],
    base: usize,
    num_buffers_at: &mut [Option<GuestAddress>; 2],
) -> Result<usize, ChainError> {
    let mut done = 0usize;
    let mut more = false;
    for desc in chain {
        more = desc.has_next();
        if !desc.is_write_only() {
            return Err(ChainError::WrongDirection);
        }
        let n = (desc.len() as usize).min(data.len() - done);
        if n > 0 {
            let src = data.get(done..done + n).ok_or(ChainError::TooLong)?;
            mem.write_slice(src, desc.addr())
                .map_err(|_| ChainError::Memory)?;
            let start = base + done;
            for (i, slot) in num_buffers_at.iter_mut().enumerate() {
                let at = NUM_BUFFERS_OFFSET + i;
                if (start..start + n).contains(&at) {
                    *slot = desc.addr().checked_add((at - start) as u64);
                }
            }
            done += n;
        }
        if done == data.len() {
            more = false;
            break;
        }
    }
    if more {
        return Err(ChainError::Truncated);
    }
    if done == 0 {
        return Err(ChainError::TooShort);
    }
    Ok(done)
}
