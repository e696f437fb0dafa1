//! The [`VirtioInterrupt`] a virtio-pci device gets: queue and config
//! interrupts go to the MSI-X vectors the driver assigned.
//!
//! INTx is not supported: petrel's virtio-pci functions have no interrupt
//! pin, and an interrupt whose vector is VIRTIO_MSI_NO_VECTOR (or fires
//! while MSI-X is disabled) only sets the ISR bit. Linux's virtio-pci
//! driver always uses MSI-X when the function offers it.

use std::io;
use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use crate::pci::{MsiVectors, MsixConfig};
use crate::virtio::{VirtioInterrupt, VirtioInterruptType};

/// VIRTIO_MSI_NO_VECTOR.
pub const NO_VECTOR: u16 = 0xffff;
/// ISR bit for a used-buffer notification.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit for a configuration change.
pub const ISR_CONFIG: u8 = 2;

pub struct VirtioPciInterrupt {
    msix: Arc<Mutex<MsixConfig>>,
    vectors: Arc<dyn MsiVectors>,
    num_vectors: u16,
    config_vector: AtomicU16,
    queue_vectors: Vec<AtomicU16>,
    isr: AtomicU8,
}

impl VirtioPciInterrupt {
    pub fn new(
        msix: Arc<Mutex<MsixConfig>>,
        vectors: Arc<dyn MsiVectors>,
        num_queues: usize,
    ) -> Self {
        let num_vectors = msix.lock().unwrap_or_else(|e| e.into_inner()).num_vectors();
        Self {
            msix,
            vectors,
            num_vectors,
            config_vector: AtomicU16::new(NO_VECTOR),
            queue_vectors: (0..num_queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
            isr: AtomicU8::new(0),
        }
    }

    /// A vector the driver may assign: in range or NO_VECTOR (the device
    /// answers NO_VECTOR when it cannot use the requested one).
    fn valid(&self, v: u16) -> u16 {
        if v < self.num_vectors {
            v
        } else {
            NO_VECTOR
        }
    }

    pub fn config_vector(&self) -> u16 {
        self.config_vector.load(Ordering::Acquire)
    }

    pub fn set_config_vector(&self, v: u16) {
        self.config_vector.store(self.valid(v), Ordering::Release);
    }

    pub fn queue_vector(&self, queue: u16) -> u16 {
        self.queue_vectors
            .get(usize::from(queue))
            .map_or(NO_VECTOR, |v| v.load(Ordering::Acquire))
    }

    pub fn set_queue_vector(&self, queue: u16, v: u16) {
        let v = self.valid(v);
        if let Some(slot) = self.queue_vectors.get(usize::from(queue)) {
            slot.store(v, Ordering::Release);
        }
    }

    /// Reads and clears the ISR (its read side effect).
    pub fn take_isr(&self) -> u8 {
        self.isr.swap(0, Ordering::AcqRel)
    }

    /// Device reset: vectors unassigned, ISR clear.
    pub fn reset(&self) {
        self.config_vector.store(NO_VECTOR, Ordering::Release);
        for v in &self.queue_vectors {
            v.store(NO_VECTOR, Ordering::Release);
        }
        self.isr.store(0, Ordering::Release);
    }

    fn vector_of(&self, int_type: VirtioInterruptType) -> io::Result<(u8, u16)> {
        match int_type {
            VirtioInterruptType::Config => Ok((ISR_CONFIG, self.config_vector())),
            VirtioInterruptType::Queue(q) if usize::from(q) < self.queue_vectors.len() => {
                Ok((ISR_QUEUE, self.queue_vector(q)))
            }
            VirtioInterruptType::Queue(q) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no virtqueue {q}"),
            )),
        }
    }
}

impl VirtioInterrupt for VirtioPciInterrupt {
    fn trigger(&self, int_type: VirtioInterruptType) -> io::Result<()> {
        let (isr, vector) = self.vector_of(int_type)?;
        self.isr.fetch_or(isr, Ordering::AcqRel);
        if vector == NO_VECTOR {
            return Ok(());
        }
        self.msix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .trigger(vector)
    }

    /// The irqfd of the assigned vector. Writing it bypasses the MSI-X
    /// mask/pending emulation of [`MsixConfig`], so the VMM must detach
    /// the irqfd of a vector it is told to disable
    /// ([`MsiVectors::update`] with `None`) and re-attach it when the
    /// vector is routed again: KVM injects an irqfd that was signalled
    /// while detached as soon as it is re-attached.
    fn notifier(&self, int_type: VirtioInterruptType) -> Option<&EventFd> {
        let (_, vector) = self.vector_of(int_type).ok()?;
        if vector == NO_VECTOR {
            return None;
        }
        self.vectors.notifier(vector)
    }
}
