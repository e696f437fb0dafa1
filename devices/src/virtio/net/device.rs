//! The virtio-net device model: features, configuration space, and the
//! activate/reset life cycle that hands backends to worker threads and
//! takes them back.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use net_backend::{FrameBackend, Offloads};
use tracing::{info, warn};
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_MAC_ADDR, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ,
    VIRTIO_NET_F_GUEST_ANNOUNCE, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN,
    VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_ANNOUNCE,
    VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::QueueT;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{
    bit, CtrlQueue, CtrlState, NetContext, NetEpollHandler, NetError, NetMetrics, QueuePair,
    CONFIG_SPACE_LEN, MAX_QUEUE_PAIRS, QUEUE_SIZE,
};
use crate::affinity::MAX_CPUS;
use crate::pause::PauseGate;
use crate::virtio::{
    ActivateError, QueueConfig, VirtioDevice, VirtioDeviceState, VirtioInterrupt,
    VirtioInterruptType, TYPE_NET, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::worker::{SpawnError, Worker};

/// The checksum and segmentation features, both directions.
const OFFLOAD_FEATURES: u64 = bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_ECN)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_ECN);

/// Smallest MTU a device may report (IPv4 minimum).
const MIN_MTU: u16 = 68;

pub struct Net {
    id: Arc<str>,
    mac: [u8; 6],
    /// VIRTIO_NET_S_LINK_UP in the config space (KubeVirt `state: down`
    /// clears it).
    link_up: bool,
    mtu: u16,
    pairs: usize,
    queue_sizes: Vec<u16>,
    avail_features: u64,
    acked_features: u64,
    /// Backends of pairs that are not running (all of them while inactive).
    backends: Vec<Option<Box<dyn FrameBackend>>>,
    affinity: Vec<Option<Vec<usize>>>,
    metrics: Arc<NetMetrics>,
    ctrl_state: Arc<Mutex<CtrlState>>,
    /// Control-queue state of a snapshot, taken by the next activation
    /// instead of the power-on state.
    restored: Option<CtrlState>,
    state: DeviceState,
    /// The VM's pause gate, handed to every queue-pair worker.
    pause: Option<PauseGate>,
}

/// Inactive and activated are different state (Firecracker's
/// `DeviceState`): guest memory, the interrupt and the workers exist only
/// while activated.
enum DeviceState {
    Inactive,
    Active {
        ctx: Arc<NetContext>,
        /// (pair index, worker) of the running pairs.
        workers: Vec<(usize, Worker<NetEpollHandler>)>,
    },
}

/// The driver's queues of one activation, sorted by role.
struct Queues {
    pairs: Vec<(QueueConfig, QueueConfig)>,
    ctrl: Option<QueueConfig>,
}

/// The features a device with `pairs` queue pairs over `backends` offers.
fn offered_features(pairs: usize, backends: &[Box<dyn FrameBackend>]) -> u64 {
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
        | bit(VIRTIO_NET_F_CTRL_MAC_ADDR)
        | bit(VIRTIO_NET_F_GUEST_ANNOUNCE);
    if pairs > 1 {
        avail_features |= bit(VIRTIO_NET_F_MQ);
    }
    if backends.iter().any(|b| !b.supports_offloads()) {
        // A backend of bare frames (passt): the guest must checksum
        // and segment itself, and gets only complete frames.
        avail_features &= !OFFLOAD_FEATURES;
    }
    avail_features
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
        if let Some(&cpu) = affinity
            .iter()
            .flatten()
            .flatten()
            .find(|&&c| c >= MAX_CPUS)
        {
            return Err(NetError::BadCpu(cpu));
        }

        let avail_features = offered_features(pairs, &backends);

        Ok(Net {
            id: Arc::from(id),
            mac,
            link_up: true,
            mtu,
            pairs,
            queue_sizes: vec![QUEUE_SIZE; 2 * pairs + 1],
            avail_features,
            acked_features: 0,
            backends: backends.into_iter().map(Some).collect(),
            affinity,
            metrics: Arc::new(NetMetrics::new(pairs)),
            ctrl_state: Arc::new(Mutex::new(CtrlState {
                active_pairs: 1,
                ..CtrlState::default()
            })),
            restored: None,
            state: DeviceState::Inactive,
            pause: None,
        })
    }

    /// Reports the link up or down in the config space's status.
    pub fn set_link_up(&mut self, up: bool) {
        self.link_up = up;
    }

    /// Queue-pair workers started from now on stop taking frames while
    /// `gate` is paused.
    pub fn set_pause_gate(&mut self, gate: PauseGate) {
        self.pause = Some(gate);
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
        matches!(&self.state, DeviceState::Active { workers, .. } if !workers.is_empty())
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
        let mut status = if self.link_up {
            VIRTIO_NET_S_LINK_UP as u16
        } else {
            0
        };
        if self.ctrl_state().announce {
            status |= VIRTIO_NET_S_ANNOUNCE as u16;
        }
        c[6..8].copy_from_slice(&status.to_le_bytes());
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

    /// Stops every worker, takes the backends back and returns to
    /// inactive. False if a worker died and its backend is lost.
    fn stop_workers(&mut self) -> bool {
        let DeviceState::Active { workers, .. } =
            std::mem::replace(&mut self.state, DeviceState::Inactive)
        else {
            return true;
        };
        let mut ok = true;
        for (pair, worker) in workers {
            match worker.stop() {
                Some(handler) => self.give_back(pair, handler.into_queue_pair()),
                None => ok = false,
            }
        }
        ok
    }

    fn give_back(&mut self, pair: usize, qp: QueuePair) {
        if let Some(slot) = self.backends.get_mut(pair) {
            *slot = Some(qp.into_backend());
        }
    }

    /// Queue pairs the driver uses: all with MQ, else the first.
    fn used_pairs(&self) -> usize {
        if self.acked(VIRTIO_NET_F_MQ) {
            self.pairs
        } else {
            1
        }
    }

    /// Sorts the transport's queues (valid rings, ascending unique
    /// indices) into pairs and the control queue, checking that exactly
    /// the queues the negotiated features call for were enabled.
    fn sort_queues(&self, queues: Vec<QueueConfig>) -> Result<Queues, ActivateError> {
        let used_pairs = self.used_pairs();
        let has_ctrl = self.acked(VIRTIO_NET_F_CTRL_VQ);
        let want = 2 * used_pairs + usize::from(has_ctrl);
        if queues.len() != want {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want,
            });
        }
        let event_idx = self.acked_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = queues.into_iter().enumerate().map(|(i, mut q)| {
            if usize::from(q.index) != i {
                return Err(ActivateError::BadQueue {
                    index: i as u16,
                    reason: "not enabled by the driver".into(),
                });
            }
            // The negotiated ring feature, also for callers other than the
            // transport (which already set it).
            q.queue.set_event_idx(event_idx);
            Ok(q)
        });
        let mut next = || {
            queues
                .next()
                .unwrap_or(Err(ActivateError::QueueCount { got: 0, want }))
        };
        let mut pairs = Vec::with_capacity(used_pairs);
        for _ in 0..used_pairs {
            pairs.push((next()?, next()?));
        }
        let ctrl = if has_ctrl { Some(next()?) } else { None };
        Ok(Queues { pairs, ctrl })
    }

    /// The tap may hand the guest only what the guest can take.
    fn set_offloads(&mut self, used_pairs: usize) -> Result<(), ActivateError> {
        let offloads = self.guest_offloads();
        for backend in self.backends.iter_mut().take(used_pairs).flatten() {
            backend
                .set_offloads(offloads)
                .map_err(ActivateError::Offloads)?;
        }
        Ok(())
    }

    /// The control queue, which wakes every pair's rx after VQ_PAIRS_SET.
    fn ctrl_queue(
        ctx: &Arc<NetContext>,
        queues: &mut Queues,
    ) -> Result<Option<(CtrlQueue, EventFd)>, ActivateError> {
        let Some(ctrl) = queues.ctrl.take() else {
            return Ok(None);
        };
        let rx_wakers = queues
            .pairs
            .iter()
            .map(|(rx, _)| rx.kick.try_clone())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(ActivateError::EventFd)?;
        let queue = CtrlQueue::new(Arc::clone(ctx), ctrl.queue, ctrl.index, rx_wakers);
        Ok(Some((queue, ctrl.kick)))
    }

    /// Starts the worker of pair `pair`; on failure its backend is back in
    /// `self.backends`.
    fn spawn_pair(
        &mut self,
        ctx: &Arc<NetContext>,
        pair: usize,
        (rx, tx): (QueueConfig, QueueConfig),
        ctrl: Option<(CtrlQueue, EventFd)>,
    ) -> Result<Worker<NetEpollHandler>, ActivateError> {
        let backend = self
            .backends
            .get_mut(pair)
            .and_then(Option::take)
            .ok_or(ActivateError::NoBackend)?;
        let qp = QueuePair::new(
            pair,
            ctx.mem.clone(),
            rx.queue,
            tx.queue,
            backend,
            ctx.acked(VIRTIO_NET_F_MRG_RXBUF),
            Arc::clone(&self.metrics),
        );
        let handler = NetEpollHandler::new(Arc::clone(ctx), qp, rx.kick, tx.kick, ctrl);
        let name = format!("{}-q{pair}", self.id);
        let cpus = self.affinity.get(pair).cloned().flatten();
        Worker::spawn_gated(name, cpus, handler, self.pause.clone()).map_err(
            |SpawnError { error, handler }| {
                if let Some(h) = handler {
                    self.give_back(pair, h.into_queue_pair());
                }
                ActivateError::Worker(error)
            },
        )
    }

    /// Starts one worker per used pair into `self.state` (already
    /// `Active`), stopping at the first failure.
    fn spawn_workers(
        &mut self,
        ctx: &Arc<NetContext>,
        queues: Queues,
        mut ctrl: Option<(CtrlQueue, EventFd)>,
    ) -> Result<(), ActivateError> {
        for (pair, cfg) in queues.pairs.into_iter().enumerate() {
            let worker = self.spawn_pair(ctx, pair, cfg, ctrl.take())?;
            if let DeviceState::Active { workers, .. } = &mut self.state {
                workers.push((pair, worker));
            }
        }
        Ok(())
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
        if crate::rate_limit::should_log(n) {
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
        if matches!(self.state, DeviceState::Active { .. }) {
            return Err(ActivateError::AlreadyActive);
        }
        let used_pairs = self.used_pairs();
        let mut queues = self.sort_queues(queues)?;
        if self.backends.iter().take(used_pairs).any(Option::is_none) {
            return Err(ActivateError::NoBackend);
        }
        self.set_offloads(used_pairs)?;
        let start = self.restored.take().unwrap_or(CtrlState {
            active_pairs: 1,
            ..CtrlState::default()
        });
        let active_pairs = start.active_pairs;
        if let Ok(mut s) = self.ctrl_state.lock() {
            *s = start;
        }
        let ctx = Arc::new(NetContext::new(
            Arc::clone(&self.id),
            mem,
            interrupt,
            Arc::clone(&self.metrics),
            self.acked_features,
            self.pairs as u16,
            Arc::clone(&self.ctrl_state),
        ));
        ctx.active_pairs.store(active_pairs, Ordering::Release);
        let ctrl = Self::ctrl_queue(&ctx, &mut queues)?;
        self.state = DeviceState::Active {
            ctx: Arc::clone(&ctx),
            workers: Vec::with_capacity(used_pairs),
        };
        if let Err(e) = self.spawn_workers(&ctx, queues, ctrl) {
            // The one rollback: running workers give their backends back.
            self.stop_workers();
            return Err(e);
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
        ok
    }

    fn needs_reset(&self) -> bool {
        match &self.state {
            DeviceState::Active { ctx, .. } => ctx.needs_reset(),
            DeviceState::Inactive => false,
        }
    }

    fn save_device_state(&self) -> Option<VirtioDeviceState> {
        Some(VirtioDeviceState::Net(self.ctrl_state()))
    }

    fn restore_device_state(&mut self, state: &VirtioDeviceState) -> Result<(), String> {
        let VirtioDeviceState::Net(ctrl) = state;
        if ctrl.active_pairs == 0 || usize::from(ctrl.active_pairs) > self.pairs {
            return Err(format!(
                "{}: saved with {} active queue pairs, this device has {}",
                self.id, ctrl.active_pairs, self.pairs
            ));
        }
        self.restored = Some(ctrl.clone());
        Ok(())
    }

    /// Sets VIRTIO_NET_S_ANNOUNCE and raises the configuration interrupt:
    /// the guest's driver then sends its gratuitous ARPs and unsolicited
    /// neighbour advertisements itself (from every address it holds, which
    /// the VMM's RARP cannot) and acks on the control queue.
    fn announce(&mut self) -> bool {
        let DeviceState::Active { ctx, .. } = &self.state else {
            return false;
        };
        if !ctx.acked(VIRTIO_NET_F_GUEST_ANNOUNCE) || !ctx.acked(VIRTIO_NET_F_CTRL_VQ) {
            return false;
        }
        if let Ok(mut s) = self.ctrl_state.lock() {
            s.announce = true;
        }
        if let Err(e) = ctx.interrupt.trigger(VirtioInterruptType::Config) {
            warn!(nic = %self.id, error = %e, "virtio-net: cannot raise the announce interrupt");
            return false;
        }
        info!(nic = %self.id, "virtio-net: asked the guest to announce itself");
        true
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_workers();
        self.metrics.log(&self.id, "drop");
    }
}
