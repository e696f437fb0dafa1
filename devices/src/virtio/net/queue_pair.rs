//! The datapath of one queue pair: moves frames between the guest's rx/tx
//! virtqueues and a [`FrameBackend`], and says whether the guest must be
//! notified. It owns no fds besides the backend and raises no interrupts,
//! so it can be driven directly (unit tests, benchmarks) or by
//! [`super::NetEpollHandler`] on a worker thread.
//!
//! RX frames are copied through a preallocated per-pair buffer. TX frames
//! go to the backend straight from guest memory (a preallocated list of raw
//! iovecs, see [`TxIovecs`]) when the backend supports it and the chain is
//! ordinary; otherwise they are copied through a second buffer. Nothing is
//! allocated per frame.

use std::io::{self, IoSlice};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use net::FrameBackend;
use tracing::warn;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::metrics::{BatchCounters, NetMetrics};
use super::{MAX_BUFFER_LEN, NUM_BUFFERS_OFFSET, VNET_HDR_LEN};
use crate::rate_limit::LogRateLimiter;

/// Most chains (TX) or frames (RX) handled by one `process_*` call; the
/// event handler re-kicks itself when a budget runs out, so the other
/// direction of the pair gets its turn.
pub const TX_BUDGET: usize = 256;
pub const RX_BUDGET: usize = 256;

/// Most descriptors of a TX chain sent without copying; longer chains take
/// the copy path. Well below `IOV_MAX` (1024).
const MAX_TX_IOVECS: usize = super::QUEUE_SIZE as usize;

/// The driver broke a queue (e.g. an available index more than a queue
/// size ahead): the device needs a reset and stops using that queue.
#[derive(Debug, thiserror::Error)]
pub enum QueuePairError {
    #[error("the driver broke virtqueue {queue}")]
    BrokenQueue {
        queue: u16,
        #[source]
        source: virtio_queue::Error,
    },
}

/// Result of one [`QueuePair::process_tx`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    /// Used buffers were added and the driver asked to be notified.
    pub notify: bool,
    /// The backend would block: the current chain is back in the avail
    /// ring; call again when the backend is writable.
    pub backend_full: bool,
    /// [`TX_BUDGET`] chains were processed and more may be waiting.
    pub budget_exhausted: bool,
}

/// Result of one [`QueuePair::process_rx`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxOutcome {
    /// Used buffers were added and the driver asked to be notified.
    pub notify: bool,
    /// No guest buffers (or the queue is broken): stop polling the
    /// backend until the rx queue is kicked. Notifications are enabled.
    pub paused: bool,
    /// [`RX_BUDGET`] frames were processed and more may be waiting.
    pub budget_exhausted: bool,
    /// The backend reported end of file (peer gone).
    pub backend_closed: bool,
}

/// Which queue of the pair.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Rx,
    Tx,
}

/// Why a descriptor chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChainError {
    /// A device-writable descriptor on TX, a readable one on RX.
    WrongDirection,
    /// More bytes than [`MAX_BUFFER_LEN`] (TX).
    TooLong,
    /// Fewer bytes than a virtio-net header (TX), no room at all (RX).
    TooShort,
    /// The chain ended on a descriptor with NEXT set: a loop, a next index
    /// out of the table, or an unreadable descriptor.
    Truncated,
    /// A buffer outside guest memory.
    Memory,
    /// The head index is outside the queue, so the chain cannot be
    /// returned.
    BadHead,
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

pub struct QueuePair {
    index: usize,
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    backend: Box<dyn FrameBackend>,
    mrg_rxbuf: bool,
    /// One frame read from the backend; `rx_pending` says it is still
    /// waiting for guest buffers.
    rx_buf: Box<[u8]>,
    rx_pending: Option<usize>,
    tx_buf: Box<[u8]>,
    /// The guest memory ranges of the TX chain being sent (zero-copy path);
    /// `None` when the backend cannot write raw iovecs.
    tx_iovecs: Option<TxIovecs>,
    /// (head, used len) of the chains one RX frame occupies.
    rx_chains: Vec<(u16, u32)>,
    rx_broken: bool,
    tx_broken: bool,
    metrics: Arc<NetMetrics>,
    /// Guest-triggerable warnings.
    warnings: LogRateLimiter,
}

impl QueuePair {
    /// `index` is the pair number: its queues are `2*index` (rx) and
    /// `2*index + 1` (tx). `mrg_rxbuf` is the negotiated
    /// VIRTIO_NET_F_MRG_RXBUF. The queues' EVENT_IDX setting is used as is.
    pub fn new(
        index: usize,
        mem: GuestMemoryMmap,
        rx: Queue,
        tx: Queue,
        backend: Box<dyn FrameBackend>,
        mrg_rxbuf: bool,
        metrics: Arc<NetMetrics>,
    ) -> Self {
        let chains = usize::from(rx.max_size());
        let tx_iovecs = backend.writes_iovecs().then(TxIovecs::new);
        Self {
            index,
            mem,
            rx,
            tx,
            backend,
            mrg_rxbuf,
            rx_buf: vec![0u8; MAX_BUFFER_LEN].into_boxed_slice(),
            rx_pending: None,
            tx_buf: vec![0u8; MAX_BUFFER_LEN].into_boxed_slice(),
            tx_iovecs,
            rx_chains: Vec::with_capacity(chains),
            rx_broken: false,
            tx_broken: false,
            metrics,
            warnings: LogRateLimiter::new(),
        }
    }

    /// The pair number.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Virtqueue index of the rx queue (for interrupts).
    pub fn rx_queue_index(&self) -> u16 {
        (self.index * 2) as u16
    }

    /// Virtqueue index of the tx queue (for interrupts).
    pub fn tx_queue_index(&self) -> u16 {
        (self.index * 2 + 1) as u16
    }

    /// The backend, e.g. for its fd.
    pub fn backend(&self) -> &dyn FrameBackend {
        self.backend.as_ref()
    }

    /// Whether a frame read from the backend waits for guest buffers.
    pub fn has_pending_rx(&self) -> bool {
        self.rx_pending.is_some()
    }

    /// Whether the driver broke the rx / tx queue (no more processing).
    pub fn is_broken(&self) -> (bool, bool) {
        (self.rx_broken, self.tx_broken)
    }

    /// Gives the backend back (on reset); a pending RX frame is dropped.
    pub fn into_backend(self) -> Box<dyn FrameBackend> {
        self.backend
    }

    fn warn_rate_limited(&mut self, what: &str, detail: &dyn std::fmt::Debug) {
        if let Some(occurrences) = self.warnings.hit() {
            warn!(
                pair = self.index,
                occurrences, "virtio-net: {what}: {detail:?}"
            );
        }
    }

    /// Sends every available TX chain to the backend (up to
    /// [`TX_BUDGET`]), returns the chains to the used ring with len 0,
    /// then re-enables notifications.
    pub fn process_tx(&mut self) -> Result<TxOutcome, QueuePairError> {
        let mut out = TxOutcome::default();
        if !self.tx_broken {
            out.notify = self.run_batch(Direction::Tx, |qp, batch| qp.tx_batch(batch, &mut out))?;
        }
        Ok(out)
    }

    fn tx_batch(
        &mut self,
        batch: &mut BatchCounters,
        out: &mut TxOutcome,
    ) -> Result<u32, virtio_queue::Error> {
        let mut used = 0u32;
        let mut budget = TX_BUDGET;
        loop {
            self.tx.disable_notification(&self.mem)?;
            loop {
                if budget == 0 {
                    out.budget_exhausted = true;
                    return Ok(used);
                }
                let Some(chain) = self.tx.iter(&self.mem)?.next() else {
                    break;
                };
                budget -= 1;
                let head = chain.head_index();
                let sent = if head >= self.tx.size() {
                    Err(ChainError::BadHead)
                } else {
                    send_tx_chain(
                        &self.mem,
                        chain,
                        self.tx_iovecs.as_mut(),
                        &mut self.tx_buf,
                        self.backend.as_mut(),
                    )
                };
                match sent {
                    Ok((len, written)) => match written {
                        Ok(()) => {
                            batch.tx_frames += 1;
                            batch.tx_bytes += len as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.tx.go_to_previous_position();
                            out.backend_full = true;
                            return Ok(used);
                        }
                        Err(e) => {
                            batch.backend_errors += 1;
                            self.warn_rate_limited("tap write failed", &e);
                        }
                    },
                    Err(e) => {
                        batch.tx_malformed += 1;
                        self.warn_rate_limited("malformed tx chain dropped", &e);
                    }
                }
                if head < self.tx.size() {
                    self.tx.add_used(&self.mem, head, 0)?;
                    used += 1;
                }
            }
            if !self.tx.enable_notification(&self.mem)? {
                return Ok(used);
            }
        }
    }

    /// Moves frames from the backend into the guest's rx buffers until the
    /// backend is empty, the guest runs out of buffers (then the frame
    /// stays pending and notifications are enabled) or [`RX_BUDGET`]
    /// frames were handled.
    pub fn process_rx(&mut self) -> Result<RxOutcome, QueuePairError> {
        let mut out = RxOutcome::default();
        if self.rx_broken {
            out.paused = true;
        } else {
            out.notify = self.run_batch(Direction::Rx, |qp, batch| qp.rx_batch(batch, &mut out))?;
        }
        Ok(out)
    }

    fn rx_batch(
        &mut self,
        batch: &mut BatchCounters,
        out: &mut RxOutcome,
    ) -> Result<u32, virtio_queue::Error> {
        let mut used = 0u32;
        let mut budget = RX_BUDGET;
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
                    let avail = self.rx.avail_idx(&self.mem, Ordering::Acquire)?;
                    if avail.0 == self.rx.next_avail() {
                        // Leave the frame in the backend until buffers come.
                        if self.rx.enable_notification(&self.mem)? {
                            continue;
                        }
                        out.paused = true;
                        return Ok(used);
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
        self.rx_chains.clear();
        let mut written = 0usize;
        let mut num_buffers_at: [Option<GuestAddress>; 2] = [None; 2];
        let mut failure = None;
        while written < len {
            let Some(chain) = self.rx.iter(&self.mem)?.next() else {
                // Out of buffers mid-frame: arm the notification at the
                // current avail index, then push the popped chains back.
                let arrived = self.rx.enable_notification(&self.mem)?;
                for _ in 0..self.rx_chains.len() {
                    self.rx.go_to_previous_position();
                }
                self.rx_chains.clear();
                return Ok(Delivery::NoBuffers { arrived });
            };
            let head = chain.head_index();
            let scattered = if head < self.rx.size() {
                scatter(
                    &self.mem,
                    chain,
                    &self.rx_buf[written..len],
                    written,
                    &mut num_buffers_at,
                )
            } else {
                Err(ChainError::BadHead)
            };
            match scattered {
                Ok(n) => {
                    written += n;
                    self.rx_chains.push((head, n as u32));
                }
                Err(e) => {
                    if e != ChainError::BadHead {
                        self.rx_chains.push((head, 0));
                    }
                    failure = Some(e);
                    break;
                }
            }
            if !self.mrg_rxbuf {
                break;
            }
        }

        let chains = self.rx_chains.len() as u32;
        let delivered = failure.is_none() && written == len;
        if delivered && chains > 1 {
            let count = (chains as u16).to_le_bytes();
            for (addr, byte) in num_buffers_at.iter().zip(count) {
                // The bytes were just written there, so this cannot fail
                // unless the guest unplugs memory under our feet.
                if let Some(addr) = addr {
                    if self.mem.write_obj(byte, *addr).is_err() {
                        failure = Some(ChainError::Memory);
                    }
                }
            }
        }
        let delivered = delivered && failure.is_none();
        for &(head, used_len) in &self.rx_chains {
            let used_len = if delivered { used_len } else { 0 };
            self.rx.add_used(&self.mem, head, used_len)?;
        }
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

    /// Runs one batch of `direction` (`batch_fn` returns how many used
    /// entries it added): whether to notify, or the driver's error; the
    /// batch's counters are published either way.
    fn run_batch(
        &mut self,
        direction: Direction,
        batch_fn: impl FnOnce(&mut Self, &mut BatchCounters) -> Result<u32, virtio_queue::Error>,
    ) -> Result<bool, QueuePairError> {
        let mut batch = BatchCounters::default();
        let used = batch_fn(self, &mut batch);
        let result = match direction {
            Direction::Rx => {
                let index = self.rx_queue_index();
                settle_batch(&mut self.rx, &self.mem, index, &mut self.rx_broken, used)
            }
            Direction::Tx => {
                let index = self.tx_queue_index();
                settle_batch(&mut self.tx, &self.mem, index, &mut self.tx_broken, used)
            }
        };
        if let Ok(notify) = result {
            batch.notifications += u64::from(notify);
        }
        self.publish(&batch);
        result
    }

    fn publish(&self, batch: &BatchCounters) {
        if let Some(m) = self.metrics.pair(self.index) {
            m.publish(batch);
        }
    }
}

/// Ends a batch on `queue` (virtqueue `index`) that added `used` entries:
/// whether the driver asked to be notified. A queue error means the driver
/// broke the queue, which is then marked in `broken` and left alone.
pub(super) fn settle_batch(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    index: u16,
    broken: &mut bool,
    used: Result<u32, virtio_queue::Error>,
) -> Result<bool, QueuePairError> {
    let notify = used.and_then(|used| {
        if used > 0 {
            queue.needs_notification(mem)
        } else {
            Ok(false)
        }
    });
    notify.map_err(|source| {
        *broken = true;
        QueuePairError::BrokenQueue {
            queue: index,
            source,
        }
    })
}

/// Validates a TX chain and writes it to `backend`: straight from guest
/// memory when possible (`iovecs` is `Some`), else through `buf`. Returns
/// the frame length and the backend's verdict, or why the chain is
/// malformed.
fn send_tx_chain(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    iovecs: Option<&mut TxIovecs>,
    buf: &mut [u8],
    backend: &mut dyn FrameBackend,
) -> Result<(usize, io::Result<()>), ChainError> {
    if let Some(iovecs) = iovecs {
        match iovecs.send(mem, chain.clone(), backend)? {
            Some((_, Err(e))) if e.kind() == io::ErrorKind::Unsupported => {}
            Some(sent) => return Ok(sent),
            None => {}
        }
    }
    let len = gather(mem, chain, buf)?;
    Ok((
        len,
        backend.write_frame(&[IoSlice::new(&buf[..len])]).map(drop),
    ))
}

/// The guest memory ranges of one TX chain as raw iovecs, for
/// [`FrameBackend::write_iovecs`].
///
/// Guest memory may change under our feet (the guest owns it), so no
/// `&[u8]` or `IoSlice` is ever made over it: the iovecs are plain
/// addresses handed to the kernel, which copies the bytes. They are only
/// built by [`TxIovecs::collect`], each from a `get_slice` of the pair's
/// `GuestMemoryMmap`, i.e. a range that lies inside one mapped region,
/// and are cleared after every write, so they never outlive the frame.
struct TxIovecs {
    /// At most [`MAX_TX_IOVECS`] entries; never reallocated.
    iovecs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers are addresses inside guest memory mappings that
// the owning `QueuePair`'s `GuestMemoryMmap` keeps alive; they are never
// dereferenced in Rust, only passed to the kernel on the thread that owns
// the queue pair, so moving them to another thread is harmless.
unsafe impl Send for TxIovecs {}

impl TxIovecs {
    fn new() -> Self {
        Self {
            iovecs: Vec::with_capacity(MAX_TX_IOVECS),
        }
    }

    /// Validates a TX chain like [`gather`] and writes it to `backend`
    /// straight from `mem`: the frame length and the backend's verdict,
    /// `None` when the copy path must take the chain (nothing was
    /// written), or why the chain is malformed.
    fn send(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: DescriptorChain<&GuestMemoryMmap>,
        backend: &mut dyn FrameBackend,
    ) -> Result<Option<(usize, io::Result<()>)>, ChainError> {
        let collected = self.collect(mem, chain);
        let sent = match collected {
            Ok(Some(len)) => Ok(Some((len, self.write(mem, backend)))),
            other => other.map(|_| None),
        };
        self.iovecs.clear();
        sent
    }

    /// Validates a TX chain exactly like [`gather`] (same checks, same
    /// order, same errors; every range `get_slice` accepts, `read_slice`
    /// accepts too) and records its ranges. Returns the frame
    /// length, or `None` when the copy path must take the chain: more than
    /// [`MAX_TX_IOVECS`] descriptors, a zero-length descriptor, or a buffer
    /// that is not inside a single memory region (the copy path decides
    /// whether that is an error).
    fn collect(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: DescriptorChain<&GuestMemoryMmap>,
    ) -> Result<Option<usize>, ChainError> {
        self.iovecs.clear();
        let mut len = 0usize;
        let mut more = false;
        for desc in chain {
            more = desc.has_next();
            if desc.is_write_only() {
                return Err(ChainError::WrongDirection);
            }
            let desc_len = desc.len() as usize;
            let end = len.checked_add(desc_len).ok_or(ChainError::TooLong)?;
            if end > MAX_BUFFER_LEN {
                return Err(ChainError::TooLong);
            }
            len = end;
            // [`gather`] walks the whole chain again, so it gives the same
            // verdict as if this path had never been tried.
            if desc_len == 0 || self.iovecs.len() == MAX_TX_IOVECS {
                return Ok(None);
            }
            // `get_slice` checks that the whole range lies inside one
            // region of `mem`, so the pointer and length describe mapped
            // guest memory.
            let Ok(slice) = mem.get_slice(desc.addr(), desc_len) else {
                return Ok(None);
            };
            self.iovecs.push(libc::iovec {
                // writev(2) only reads through it; iovec just has no const
                // variant.
                iov_base: slice.ptr_guard().as_ptr().cast_mut().cast(),
                iov_len: slice.len(),
            });
        }
        if more {
            return Err(ChainError::Truncated);
        }
        if len < VNET_HDR_LEN {
            return Err(ChainError::TooShort);
        }
        Ok(Some(len))
    }

    /// Writes the collected frame with a single `write_iovecs` (backends
    /// retry EINTR themselves). `_mem` is the memory `collect` got the
    /// ranges from: its borrow keeps the regions mapped for the call.
    fn write(&self, _mem: &GuestMemoryMmap, backend: &mut dyn FrameBackend) -> io::Result<()> {
        // SAFETY: every iovec was made by `collect`, just before, from a
        // `get_slice` of `_mem`, i.e. lies inside one of its regions, which
        // stay mapped while `_mem` is borrowed; the backend only hands them
        // to the kernel.
        unsafe { backend.write_iovecs(&self.iovecs) }.map(drop)
    }
}

/// Copies a TX chain (device-readable descriptors only) into `buf`;
/// returns the frame length (virtio-net header included).
fn gather(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    buf: &mut [u8],
) -> Result<usize, ChainError> {
    let mut len = 0usize;
    let mut more = false;
    for desc in chain {
        more = desc.has_next();
        if desc.is_write_only() {
            return Err(ChainError::WrongDirection);
        }
        let end = len
            .checked_add(desc.len() as usize)
            .ok_or(ChainError::TooLong)?;
        let dst = buf.get_mut(len..end).ok_or(ChainError::TooLong)?;
        mem.read_slice(dst, desc.addr())
            .map_err(|_| ChainError::Memory)?;
        len = end;
    }
    if more {
        return Err(ChainError::Truncated);
    }
    if len < VNET_HDR_LEN {
        return Err(ChainError::TooShort);
    }
    Ok(len)
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
