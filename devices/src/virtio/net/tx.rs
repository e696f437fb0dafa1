//! The transmit path of a [`QueuePair`]: TX chains go to the backend
//! straight from guest memory (a preallocated list of raw iovecs, see
//! [`TxIovecs`]) when the backend supports it and the chain is ordinary;
//! otherwise they are copied through the pair's TX buffer.

use std::io::{self, IoSlice};
use std::num::Wrapping;

use net_backend::FrameBackend;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestMemoryMmap};

use super::avail_ring::AvailRing;
use super::metrics::BatchCounters;
use super::queue_pair::{warn_rate_limited, ChainError, Direction};
use super::slice_chain::{DescTable, SliceChain};
use super::{QueuePair, QueuePairError, TxOutcome, MAX_BUFFER_LEN, TX_BUDGET, VNET_HDR_LEN};
use crate::virtio::iovec::GuestIovecs;

/// Most descriptors of a TX chain sent without copying; longer chains take
/// the copy path. Well below `IOV_MAX` (1024).
const MAX_TX_IOVECS: usize = super::QUEUE_SIZE as usize;

impl QueuePair {
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

    /// Passes over the avail ring until it is empty with notifications
    /// enabled, the budget is spent or the backend is full; each pass's
    /// chains go to the used ring together ([`UsedBatch`]).
    fn tx_batch(
        &mut self,
        batch: &mut BatchCounters,
        out: &mut TxOutcome,
    ) -> Result<u32, virtio_queue::Error> {
        let mut used = 0u32;
        let mut budget = TX_BUDGET;
        loop {
            self.tx.disable_notification(&self.mem)?;
            let stopped = self.tx_pass(batch, out, &mut budget);
            used += self.tx_used.publish(&mut self.tx, &self.mem)?;
            if stopped? || !self.tx.enable_notification(&self.mem)? {
                return Ok(used);
            }
        }
    }

    /// Sends the chains available now (one read of the avail index, the
    /// ring and descriptor table each resolved once for all of them) and
    /// records them in `tx_used`; true when the batch must stop (budget
    /// spent, backend full).
    fn tx_pass(
        &mut self,
        batch: &mut BatchCounters,
        out: &mut TxOutcome,
        budget: &mut usize,
    ) -> Result<bool, virtio_queue::Error> {
        // Disjoint borrows: the queue's position moves while the sends
        // use the memory, iovecs, buffer and backend.
        let Self {
            ref mem,
            ref mut tx,
            ref mut tx_iovecs,
            ref mut tx_buf,
            ref mut backend,
            ref mut tx_used,
            ref mut warnings,
            index,
            ..
        } = *self;
        let size = tx.size();
        let ring = AvailRing::resolve(mem, tx)?;
        let mut pos = Wrapping(tx.next_avail());
        let avail = ring.index(pos)?;
        let table = DescTable::resolve(mem, tx.desc_table(), size);
        loop {
            if *budget == 0 {
                out.budget_exhausted = true;
                return Ok(true);
            }
            if pos == avail {
                return Ok(false);
            }
            let head = ring.head(pos)?;
            *budget -= 1;
            let sent = if head >= size {
                Err(ChainError::BadHead)
            } else {
                let iovecs = tx_iovecs.as_mut();
                send_tx_chain(mem, &table, head, iovecs, tx_buf, backend.as_mut())
            };
            match sent {
                Ok((len, Ok(()))) => {
                    batch.tx_frames += 1;
                    batch.tx_bytes += len as u64;
                }
                Ok((_, Err(e))) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The chain stays available (not consumed).
                    out.backend_full = true;
                    return Ok(true);
                }
                Ok((_, Err(e))) => {
                    batch.backend_errors += 1;
                    warn_rate_limited(warnings, index, "tap write failed", &e);
                }
                Err(e) => {
                    batch.tx_malformed += 1;
                    warn_rate_limited(warnings, index, "malformed tx chain dropped", &e);
                }
            }
            pos += Wrapping(1);
            tx.set_next_avail(pos.0);
            if head < size {
                tx_used.push(head, 0);
            }
        }
    }
}

/// Validates TX chain `head` of `table` and writes it to `backend`:
/// straight from guest memory when possible (`iovecs` is `Some`), else
/// through `buf`. Returns the frame length and the backend's verdict, or
/// why the chain is malformed.
fn send_tx_chain(
    mem: &GuestMemoryMmap,
    table: &DescTable<'_>,
    head: u16,
    iovecs: Option<&mut TxIovecs>,
    buf: &mut [u8],
    backend: &mut dyn FrameBackend,
) -> Result<(usize, io::Result<()>), ChainError> {
    if let Some(iovecs) = iovecs {
        match iovecs.send(mem, table.chain(mem, head), backend)? {
            Some((_, Err(e))) if e.kind() == io::ErrorKind::Unsupported => {}
            Some(sent) => return Ok(sent),
            None => {}
        }
    }
    let len = gather(mem, table.chain(mem, head), buf)?;
    Ok((
        len,
        backend.write_frame(&[IoSlice::new(&buf[..len])]).map(drop),
    ))
}

/// The guest memory ranges of one TX chain, for
/// [`FrameBackend::write_iovecs`]: the chain checks of [`gather`] over a
/// [`GuestIovecs`] (which holds the unsafe part).
pub(super) struct TxIovecs {
    /// At most [`MAX_TX_IOVECS`] entries.
    iovecs: GuestIovecs,
}

impl TxIovecs {
    pub(super) fn new() -> Self {
        Self {
            iovecs: GuestIovecs::with_capacity(MAX_TX_IOVECS),
        }
    }

    /// Validates a TX chain like [`gather`] and writes it to `backend`
    /// straight from `mem`: the frame length and the backend's verdict,
    /// `None` when the copy path must take the chain (nothing was
    /// written), or why the chain is malformed.
    fn send(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: SliceChain<'_>,
        backend: &mut dyn FrameBackend,
    ) -> Result<Option<(usize, io::Result<()>)>, ChainError> {
        let collected = self.collect(mem, chain);
        let sent = match collected {
            Ok(Some(len)) => Ok(Some((len, self.iovecs.write_to(mem, backend).map(drop)))),
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
        chain: impl Iterator<Item = Descriptor>,
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
            if desc_len == 0 || !self.iovecs.push(mem, desc.addr(), desc_len) {
                return Ok(None);
            }
        }
        if more {
            return Err(ChainError::Truncated);
        }
        if len < VNET_HDR_LEN {
            return Err(ChainError::TooShort);
        }
        Ok(Some(len))
    }
}

/// Copies a TX chain (device-readable descriptors only) into `buf`;
/// returns the frame length (virtio-net header included).
fn gather(
    mem: &GuestMemoryMmap,
    chain: SliceChain<'_>,
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
