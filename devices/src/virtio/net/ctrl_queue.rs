//! The control virtqueue (virtio 1.x, 5.1.6.5): rx mode and MAC filter
//! commands are acknowledged and recorded (the tap delivers everything,
//! the guest's stack filters), VQ_PAIRS_SET selects how many queue pairs
//! carry traffic, unknown classes are refused.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use virtio_bindings::virtio_net::{
    VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, VIRTIO_NET_CTRL_GUEST_OFFLOADS,
    VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET,
    VIRTIO_NET_CTRL_MAC_TABLE_SET, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
    VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, VIRTIO_NET_CTRL_RX_ALLUNI,
    VIRTIO_NET_CTRL_RX_NOBCAST, VIRTIO_NET_CTRL_RX_NOMULTI, VIRTIO_NET_CTRL_RX_NOUNI,
    VIRTIO_NET_CTRL_RX_PROMISC, VIRTIO_NET_ERR, VIRTIO_NET_F_MQ, VIRTIO_NET_OK,
};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::queue_pair::settle_batch;
use super::{NetContext, QueuePairError};
use crate::rate_limit::should_log;

/// Bytes of a command (class, command, data) the device looks at; MAC
/// tables may be longer and are only counted.
const CMD_PEEK_LEN: usize = 64;

/// Most commands handled by one [`CtrlQueue::process`] call, as
/// [`super::TX_BUDGET`] for TX: a driver that keeps refilling the control
/// queue from another vCPU cannot hold the pair-0 worker (and so that
/// pair's datapath) in one call. Linux sends one command at a time.
pub const CTRL_BUDGET: usize = 32;

/// Result of one [`CtrlQueue::process`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CtrlOutcome {
    /// Used buffers were added and the driver asked to be notified.
    pub notify: bool,
    /// [`CTRL_BUDGET`] commands were handled and more may be waiting:
    /// call again (the event handler re-kicks the queue).
    pub budget_exhausted: bool,
}

/// What the driver asked for through the control queue, and the one
/// thing the device asks of the driver (an announcement). It is the
/// device-specific part of a virtio-net snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtrlState {
    /// Queue pairs the driver enabled with VQ_PAIRS_SET (1 at start).
    pub active_pairs: u16,
    pub promisc: bool,
    pub allmulti: bool,
    pub alluni: bool,
    pub nomulti: bool,
    pub nouni: bool,
    pub nobcast: bool,
    /// Last VIRTIO_NET_CTRL_MAC_ADDR_SET.
    pub mac: Option<[u8; 6]>,
    /// Unicast entries of the last MAC_TABLE_SET.
    pub mac_table_unicast: u32,
    /// Last GUEST_OFFLOADS_SET bitmap (recorded only).
    pub guest_offloads: Option<u64>,
    /// VIRTIO_NET_S_ANNOUNCE is set in the config status: the device asked
    /// the driver to announce itself (after a move); the driver's
    /// VIRTIO_NET_CTRL_ANNOUNCE_ACK clears it (virtio 1.2, 5.1.6.5.4).
    #[serde(default)]
    pub announce: bool,
}

pub struct CtrlQueue {
    ctx: Arc<NetContext>,
    queue: Queue,
    index: u16,
    /// Clones of the rx kick eventfds of every pair: written after
    /// VQ_PAIRS_SET so each worker re-evaluates whether it may receive.
    rx_wakers: Vec<EventFd>,
    broken: bool,
}

impl CtrlQueue {
    /// The control queue at virtqueue `index` of the device activated as
    /// `ctx` (VQ_PAIRS_SET is accepted when `ctx` has VIRTIO_NET_F_MQ).
    pub fn new(ctx: Arc<NetContext>, queue: Queue, index: u16, rx_wakers: Vec<EventFd>) -> Self {
        Self {
            ctx,
            queue,
            index,
            rx_wakers,
            broken: false,
        }
    }

    /// Virtqueue index of the control queue.
    pub fn queue_index(&self) -> u16 {
        self.index
    }

    /// Handles the available commands, at most [`CTRL_BUDGET`] of them.
    pub fn process(&mut self) -> Result<CtrlOutcome, QueuePairError> {
        let mut out = CtrlOutcome::default();
        if self.broken {
            return Ok(out);
        }
        let used = self.batch(&mut out.budget_exhausted);
        out.notify = settle_batch(
            &mut self.queue,
            &self.ctx.mem,
            self.index,
            &mut self.broken,
            used,
        )?;
        Ok(out)
    }

    fn batch(&mut self, exhausted: &mut bool) -> Result<u32, virtio_queue::Error> {
        let mut used = 0;
        let mut budget = CTRL_BUDGET;
        // The chains borrow the memory while `command` needs `self`.
        let ctx = Arc::clone(&self.ctx);
        loop {
            self.queue.disable_notification(&ctx.mem)?;
            loop {
                if budget == 0 {
                    // Notifications stay off: the handler calls again.
                    *exhausted = true;
                    return Ok(used);
                }
                let Some(chain) = self.queue.iter(&ctx.mem)?.next() else {
                    break;
                };
                budget -= 1;
                if self.command(chain)? {
                    used += 1;
                }
            }
            if !self.queue.enable_notification(&ctx.mem)? {
                return Ok(used);
            }
        }
    }

    /// Reads, executes and acknowledges one command chain; returns whether
    /// a used entry was added (not for an out-of-range head).
    fn command(
        &mut self,
        chain: DescriptorChain<&GuestMemoryMmap>,
    ) -> Result<bool, virtio_queue::Error> {
        let head = chain.head_index();
        let mut cmd = [0u8; CMD_PEEK_LEN];
        let mut got = 0usize;
        let mut status: Option<GuestAddress> = None;
        let mut malformed = false;
        let mut more = false;
        for desc in chain {
            more = desc.has_next();
            if desc.is_write_only() {
                if desc.len() > 0 {
                    status = Some(desc.addr());
                }
                continue;
            }
            if status.is_some() {
                // Readable after writable breaks the layout.
                malformed = true;
            }
            let take = (desc.len() as usize).min(CMD_PEEK_LEN - got);
            if take > 0 {
                let dst = &mut cmd[got..got + take];
                if self.ctx.mem.read_slice(dst, desc.addr()).is_err() {
                    malformed = true;
                }
                got += take;
            }
        }
        malformed |= more || got < 2 || head >= self.queue.size();
        self.ctx
            .metrics
            .ctrl_commands
            .fetch_add(1, Ordering::Relaxed);
        let ack = if malformed {
            None
        } else {
            Some(self.handle(cmd[0], cmd[1], &cmd[2..got]))
        };
        if ack != Some(VIRTIO_NET_OK as u8) {
            let n = self.ctx.metrics.ctrl_errors.fetch_add(1, Ordering::Relaxed) + 1;
            if should_log(n) {
                warn!(
                    class = cmd[0],
                    command = cmd[1],
                    malformed,
                    occurrences = n,
                    "virtio-net: control command refused"
                );
            }
        }
        if head >= self.queue.size() {
            return Ok(false);
        }
        let used_len = match (ack, status) {
            (Some(ack), Some(addr)) if self.ctx.mem.write_obj(ack, addr).is_ok() => 1,
            _ => 0,
        };
        self.queue.add_used(&self.ctx.mem, head, used_len)?;
        Ok(true)
    }

    /// Executes one command and returns its ack byte.
    fn handle(&mut self, class: u8, command: u8, data: &[u8]) -> u8 {
        let ok = VIRTIO_NET_OK as u8;
        let err = VIRTIO_NET_ERR as u8;
        let class = u32::from(class);
        let command = u32::from(command);
        debug!(
            class,
            command,
            len = data.len(),
            "virtio-net: control command"
        );
        let Ok(mut state) = self.ctx.ctrl_state.lock() else {
            return err;
        };
        match class {
            VIRTIO_NET_CTRL_RX => rx_mode(&mut state, command, data),
            VIRTIO_NET_CTRL_MAC => match command {
                VIRTIO_NET_CTRL_MAC_ADDR_SET => match data.get(..6) {
                    Some(mac) => {
                        let mut m = [0u8; 6];
                        m.copy_from_slice(mac);
                        state.mac = Some(m);
                        ok
                    }
                    None => err,
                },
                VIRTIO_NET_CTRL_MAC_TABLE_SET => {
                    if let Some(n) = data.get(..4) {
                        state.mac_table_unicast = u32::from_le_bytes([n[0], n[1], n[2], n[3]]);
                    }
                    ok
                }
                _ => err,
            },
            VIRTIO_NET_CTRL_MQ if command == VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET => {
                let Some(n) = data.get(..2) else {
                    return err;
                };
                let pairs = u16::from_le_bytes([n[0], n[1]]);
                if !self.ctx.acked(VIRTIO_NET_F_MQ) || pairs == 0 || pairs > self.ctx.max_pairs {
                    return err;
                }
                state.active_pairs = pairs;
                self.ctx.active_pairs.store(pairs, Ordering::Release);
                for waker in &self.rx_wakers {
                    // A failed wake only delays rx until the next kick.
                    let _ = waker.write(1);
                }
                ok
            }
            VIRTIO_NET_CTRL_ANNOUNCE if command == VIRTIO_NET_CTRL_ANNOUNCE_ACK => {
                // An ack with nothing pending is harmless (the spec only
                // says the device clears the bit).
                if std::mem::take(&mut state.announce) {
                    info!(nic = %self.ctx.nic, "virtio-net: the guest announced itself (ANNOUNCE_ACK)");
                }
                ok
            }
            VIRTIO_NET_CTRL_GUEST_OFFLOADS if command == VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET => {
                match data.get(..8) {
                    Some(b) => {
                        let mut v = [0u8; 8];
                        v.copy_from_slice(b);
                        state.guest_offloads = Some(u64::from_le_bytes(v));
                        ok
                    }
                    None => err,
                }
            }
            _ => err,
        }
    }
}

/// VIRTIO_NET_CTRL_RX: sets one rx-mode flag; returns the ack byte.
fn rx_mode(state: &mut CtrlState, command: u32, data: &[u8]) -> u8 {
    let Some(&on) = data.first() else {
        return VIRTIO_NET_ERR as u8;
    };
    let flag = match command {
        VIRTIO_NET_CTRL_RX_PROMISC => &mut state.promisc,
        VIRTIO_NET_CTRL_RX_ALLMULTI => &mut state.allmulti,
        VIRTIO_NET_CTRL_RX_ALLUNI => &mut state.alluni,
        VIRTIO_NET_CTRL_RX_NOMULTI => &mut state.nomulti,
        VIRTIO_NET_CTRL_RX_NOUNI => &mut state.nouni,
        VIRTIO_NET_CTRL_RX_NOBCAST => &mut state.nobcast,
        _ => return VIRTIO_NET_ERR as u8,
    };
    *flag = on != 0;
    VIRTIO_NET_OK as u8
}
