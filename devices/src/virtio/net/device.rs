//! The virtio-net device model: features, configuration space, and the
//! activate/reset life cycle that hands backends to worker threads and
//! takes them back.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use net_backend::{FrameBackend, Offloads};
use tracing::{info, warn};
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_MAC_ADDR, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ,
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::QueueT;
use vm_memory::GuestMemoryMmap;

use super::worker::SpawnError;
use super::{
    bit, CtrlQueue, CtrlState, NetEpollHandler, NetError, NetMetrics, QueuePair, Worker,
    CONFIG_SPACE_LEN, MAX_QUEUE_PAIRS, QUEUE_SIZE,
};
use crate::virtio::{
    ActivateError, QueueConfig, VirtioDevice, VirtioInterrupt, TYPE_NET, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};

/// Smallest MTU a device may report (IPv4 minimum).
const MIN_MTU: u16 = 68;

pub struct Net {
    id: Arc<str>,
    mac: [u8; 6],
    mtu: u16,
    pairs: usize,
    queue_sizes: Vec<u16>,
    avail_features: u64,
    acked_features: u64,
    /// Backends of pairs that are not running (all of them while inactive).
    backends: Vec<Option<Box<dyn FrameBackend>>>,
    affinity: Vec<Option<Vec<usize>>>,
    /// (pair index, worker) of the running pairs.
    workers: Vec<(usize, Worker)>,
    metrics: Arc<NetMetrics>,
    needs_reset: Arc<AtomicBool>,
    ctrl_state: Arc<Mutex<CtrlState>>,
    active_pairs: Arc<AtomicU16>,
}

impl Net {
    /// A device with one queue pair per backend. `affinity` is empty or
    /// has one entry per pair (host CPUs for that pair's worker).
    pub fn new(
        id: String,
        mac: [u8; 6],
        mtu: u16,
        backends: Vec<Box<dyn FrameBackend>>,
        affinity: Vec<Option<Vec<usize>>>,
    ) -> Result<Net, NetError> {
        let pairs = backends.len();
        if pairs == 0 {
            return Err(NetError::NoBackends);
        }
        if pairs > MAX_QUEUE_PAIRS {
            return Err(NetError::TooManyQueuePairs(pairs));
        }
        if mtu < MIN_MTU {
            return Err(NetError::BadMtu(mtu));
        }
        let affinity = if affinity.is_empty() {
            vec![None; pairs]
        } else if affinity.len() != pairs {
            return Err(NetError::AffinityCount {
                got: affinity.len(),
                pairs,
            });
        } else {
            affinity
        };
        let max_cpu = 8 * std::mem::size_of::<libc::cpu_set_t>();
        if let Some(&cpu) = affinity.iter().flatten().flatten().find(|&&c| c >= max_cpu) {
            return Err(NetError::BadCpu(cpu));
        }

        let mut avail_features = VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | bit(VIRTIO_NET_F_MAC)
            | bit(VIRTIO_NET_F_STATUS)
            | bit(VIRTIO_NET_F_MTU)
            | bit(VIRTIO_NET_F_CSUM)
            | bit(VIRTIO_NET_F_GUEST_CSUM)
            | bit(VIRTIO_NET_F_HOST_TSO4)
            | bit(VIRTIO_NET_F_HOST_TSO6)
            | bit(VIRTIO_NET_F_HOST_ECN)
            | bit(VIRTIO_NET_F_GUEST_TSO4)
            | bit(VIRTIO_NET_F_GUEST_TSO6)
            | bit(VIRTIO_NET_F_GUEST_ECN)
            | bit(VIRTIO_NET_F_MRG_RXBUF)
            | bit(VIRTIO_NET_F_CTRL_VQ)
            | bit(VIRTIO_NET_F_CTRL_RX)
            | bit(VIRTIO_NET_F_CTRL_MAC_ADDR);
        if pairs > 1 {
            avail_features |= bit(VIRTIO_NET_F_MQ);
        }

        Ok(Net {
            id: Arc::from(id),
            mac,
            mtu,
            pairs,
            queue_sizes: vec![QUEUE_SIZE; 2 * pairs + 1],
            avail_features,
            acked_features: 0,
            backends: backends.into_iter().map(Some).collect(),
            affinity,
            workers: Vec::new(),
            metrics: Arc::new(NetMetrics::new(pairs)),
            needs_reset: Arc::new(AtomicBool::new(false)),
            ctrl_state: Arc::new(Mutex::new(CtrlState {
                active_pairs: 1,
                ..CtrlState::default()
            })),
            active_pairs: Arc::new(AtomicU16::new(1)),
        })
    }

    /// The device's counters (shared with its workers).
    pub fn metrics(&self) -> Arc<NetMetrics> {
        Arc::clone(&self.metrics)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Number of queue pairs (= backends).
    pub fn queue_pairs(&self) -> usize {
        self.pairs
    }

    /// Whether workers are running.
    pub fn is_active(&self) -> bool {
        !self.workers.is_empty()
    }

    /// The features the driver accepted.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// What the driver set through the control queue.
    pub fn ctrl_state(&self) -> CtrlState {
        match self.ctrl_state.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn acked(&self, feature: u32) -> bool {
        self.acked_features & bit(feature) != 0
    }

    fn config_space(&self) -> [u8; CONFIG_SPACE_LEN] {
        let mut c = [0u8; CONFIG_SPACE_LEN];
        c[..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        c[8..10].copy_from_slice(&(self.pairs as u16).to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        c
    }

    /// The offloads the tap may use towards the guest.
    fn guest_offloads(&self) -> Offloads {
        Offloads {
            csum: self.acked(VIRTIO_NET_F_GUEST_CSUM),
            tso4: self.acked(VIRTIO_NET_F_GUEST_TSO4),
            tso6: self.acked(VIRTIO_NET_F_GUEST_TSO6),
            ecn: self.acked(VIRTIO_NET_F_GUEST_ECN),
        }
    }

    /// Stops every worker and takes the backends back. False if a worker
    /// died and its backend is lost.
    fn stop_workers(&mut self) -> bool {
        let mut ok = true;
        for (pair, worker) in self.workers.drain(..) {
            match worker.stop() {
                Some(handler) => {
                    let backend = handler.into_queue_pair().into_backend();
                    if let Some(slot) = self.backends.get_mut(pair) {
                        *slot = Some(backend);
                    }
                }
                None => ok = false,
            }
        }
        ok
    }

    fn restore(&mut self, pair: usize, handler: Option<Box<NetEpollHandler>>) {
        if let (Some(slot), Some(h)) = (self.backends.get_mut(pair), handler) {
            *slot = Some(h.into_queue_pair().into_backend());
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        self.avail_features
    }

    fn ack_features(&mut self, features: u64) {
        let unknown = features & !self.avail_features;
        if unknown != 0 {
            warn!(nic = %self.id, unknown = format_args!("{unknown:#x}"),
                "virtio-net: driver acked features that were not offered");
        }
        self.acked_features = features & self.avail_features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.config_space();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = start
                .checked_add(i)
                .and_then(|o| config.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // With VERSION_1 every field is read-only (the MAC changes through
        // VIRTIO_NET_CTRL_MAC_ADDR_SET).
        let n = self
            .metrics
            .config_writes_refused
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if super::metrics::should_log(n) {
            warn!(nic = %self.id, offset, len = data.len(), occurrences = n,
                "virtio-net: configuration space write refused");
        }
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<QueueConfig>,
    ) -> Result<(), ActivateError> {
        if self.is_active() {
            return Err(ActivateError::NoBackend);
        }
        let used_pairs = if self.acked(VIRTIO_NET_F_MQ) {
            self.pairs
        } else {
            1
        };
        let has_ctrl = self.acked(VIRTIO_NET_F_CTRL_VQ);
        let want = 2 * used_pairs + usize::from(has_ctrl);
        if queues.len() != want {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want,
            });
        }
        if self.backends.iter().take(used_pairs).any(Option::is_none) {
            return Err(ActivateError::NoBackend);
        }

        let event_idx = self.acked_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut slots: Vec<Option<QueueConfig>> = (0..want).map(|_| None).collect();
        for mut q in queues {
            let index = q.index;
            let slot =
                slots
                    .get_mut(usize::from(index))
                    .ok_or_else(|| ActivateError::BadQueue {
                        index,
                        reason: format!("index beyond the {want} queues in use"),
                    })?;
            if slot.is_some() {
                return Err(ActivateError::BadQueue {
                    index,
                    reason: "configured twice".into(),
                });
            }
            if !q.queue.is_valid(&mem) {
                return Err(ActivateError::BadQueue {
                    index,
                    reason: "rings outside guest memory or misaligned".into(),
                });
            }
            q.queue.set_event_idx(event_idx);
            *slot = Some(q);
        }
        let mut slots = slots.into_iter();
        let mut pairs_cfg = Vec::with_capacity(used_pairs);
        for _ in 0..used_pairs {
            match (slots.next().flatten(), slots.next().flatten()) {
                (Some(rx), Some(tx)) => pairs_cfg.push((rx, tx)),
                _ => return Err(ActivateError::Other("missing queue".into())),
            }
        }
        let ctrl_cfg = if has_ctrl {
            slots.next().flatten()
        } else {
            None
        };

        // The tap may hand the guest only what the guest can take.
        let offloads = self.guest_offloads();
        for backend in self.backends.iter_mut().take(used_pairs).flatten() {
            backend
                .set_offloads(offloads)
                .map_err(ActivateError::Worker)?;
        }

        let mut rx_wakers = Vec::with_capacity(used_pairs);
        for (rx, _) in &pairs_cfg {
            rx_wakers.push(rx.kick.try_clone().map_err(ActivateError::Worker)?);
        }
        self.needs_reset.store(false, Ordering::Release);
        self.active_pairs.store(1, Ordering::Release);
        if let Ok(mut s) = self.ctrl_state.lock() {
            *s = CtrlState {
                active_pairs: 1,
                ..CtrlState::default()
            };
        }
        let mut ctrl = ctrl_cfg.map(|c| {
            let queue = CtrlQueue::new(
                mem.clone(),
                c.queue,
                c.index,
                self.pairs as u16,
                self.acked(VIRTIO_NET_F_MQ),
                Arc::clone(&self.ctrl_state),
                Arc::clone(&self.active_pairs),
                rx_wakers,
                Arc::clone(&self.metrics),
            );
            (queue, c.kick)
        });
        let mrg_rxbuf = self.acked(VIRTIO_NET_F_MRG_RXBUF);

        for (pair, (rx, tx)) in pairs_cfg.into_iter().enumerate() {
            let Some(backend) = self.backends.get_mut(pair).and_then(Option::take) else {
                self.stop_workers();
                return Err(ActivateError::NoBackend);
            };
            let qp = QueuePair::new(
                pair,
                mem.clone(),
                rx.queue,
                tx.queue,
                backend,
                mrg_rxbuf,
                Arc::clone(&self.metrics),
            );
            let (kill, kill_copy) = match Worker::kill_pair() {
                Ok(k) => k,
                Err(e) => {
                    if let Some(slot) = self.backends.get_mut(pair) {
                        *slot = Some(qp.into_backend());
                    }
                    self.stop_workers();
                    return Err(ActivateError::Worker(e));
                }
            };
            let handler = NetEpollHandler::new(
                Arc::clone(&self.id),
                qp,
                Arc::clone(&interrupt),
                rx.kick,
                tx.kick,
                kill,
                if pair == 0 { ctrl.take() } else { None },
                Arc::clone(&self.active_pairs),
                Arc::clone(&self.needs_reset),
                Arc::clone(&self.metrics),
            );
            let name = format!("{}-q{pair}", self.id);
            let cpus = self.affinity.get(pair).cloned().flatten();
            match Worker::spawn(name, cpus, handler, kill_copy) {
                Ok(worker) => self.workers.push((pair, worker)),
                Err(SpawnError { error, handler }) => {
                    self.restore(pair, handler);
                    self.stop_workers();
                    return Err(ActivateError::Worker(error));
                }
            }
        }
        info!(nic = %self.id, pairs = used_pairs, features = format_args!("{:#x}", self.acked_features),
            "virtio-net: activated");
        Ok(())
    }

    fn reset(&mut self) -> bool {
        let was_active = self.is_active();
        let ok = self.stop_workers();
        if was_active {
            self.metrics.log(&self.id, "reset");
        }
        self.acked_features = 0;
        self.needs_reset.store(false, Ordering::Release);
        self.active_pairs.store(1, Ordering::Release);
        ok
    }

    fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::Acquire)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_workers();
        self.metrics.log(&self.id, "drop");
    }
}
