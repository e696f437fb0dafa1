//! The fake interrupt the virtio-net device raises in the worker mode.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use devices::virtio::{VirtioInterrupt, VirtioInterruptType};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A `VirtioInterrupt` standing in for MSI-X irqfds: counts every trigger
/// and writes an eventfd per queue the driver thread sleeps on.
pub struct BenchInterrupt {
    pub fds: Vec<EventFd>,
    pub counts: Vec<AtomicU64>,
}

impl BenchInterrupt {
    pub fn new(queues: usize) -> io::Result<Self> {
        let mut fds = Vec::with_capacity(queues);
        for _ in 0..queues {
            fds.push(EventFd::new(EFD_NONBLOCK)?);
        }
        Ok(Self {
            fds,
            counts: (0..queues).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl VirtioInterrupt for BenchInterrupt {
    fn trigger(&self, int_type: VirtioInterruptType) -> io::Result<()> {
        if let VirtioInterruptType::Queue(q) = int_type {
            let q = usize::from(q);
            if let Some(c) = self.counts.get(q) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(fd) = self.fds.get(q) {
                fd.write(1)?;
            }
        }
        Ok(())
    }

    fn notifier(&self, _: VirtioInterruptType) -> Option<&EventFd> {
        None
    }
}
