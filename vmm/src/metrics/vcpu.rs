//! Per-vCPU exit counters, written by each vCPU thread (its own slots, so
//! no sharing between vCPUs) and read by the metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use kvm_ioctls::VcpuExit;

/// Exit counts of one vCPU by kind.
#[derive(Debug, Default)]
struct Slot {
    io: AtomicU64,
    mmio: AtomicU64,
    other: AtomicU64,
}

/// Exit counts of every vCPU.
#[derive(Debug, Default)]
pub struct VcpuExits {
    slots: Vec<Slot>,
}

impl VcpuExits {
    pub fn new(vcpus: u8) -> Self {
        Self {
            slots: (0..vcpus).map(|_| Slot::default()).collect(),
        }
    }

    /// Counts one KVM_RUN exit of vCPU `id`.
    pub fn count(&self, id: u8, exit: &VcpuExit<'_>) {
        let Some(slot) = self.slots.get(usize::from(id)) else {
            return;
        };
        let counter = match exit {
            VcpuExit::IoIn(..) | VcpuExit::IoOut(..) => &slot.io,
            VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..) => &slot.mmio,
            _ => &slot.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(vcpu, [("io", n), ("mmio", n), ("other", n)])` for every vCPU.
    pub fn snapshot(&self) -> Vec<(usize, [(&'static str, u64); 3])> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i,
                    [
                        ("io", get(&s.io)),
                        ("mmio", get(&s.mmio)),
                        ("other", get(&s.other)),
                    ],
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}
