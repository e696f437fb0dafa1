//! MSI-X vectors backed by KVM: one irqfd per vector on its own GSI, whose
//! route follows what the guest programs into the MSI-X table. Device
//! workers write the irqfd directly, so an interrupt never passes through a
//! VMM thread, and it lands on whichever vCPU the guest's message targets.

use std::io;
use std::sync::{Arc, Mutex};

use devices::pci::{MsiMessage, MsiVectors};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::irq::{GsiRouting, IrqError};

/// While a vector is masked its irqfd is detached from KVM: signals from
/// device workers then accumulate in the eventfd and are delivered when the
/// guest unmasks it and the irqfd is attached again (KVM checks the count
/// on attach), which is MSI-X's pending-bit behaviour.
pub struct KvmMsiVectors {
    routing: Arc<GsiRouting>,
    vectors: Vec<(u32, EventFd)>,
    attached: Mutex<Vec<bool>>,
}

impl KvmMsiVectors {
    pub fn new(routing: Arc<GsiRouting>, count: u16) -> Result<Self, IrqError> {
        let mut vectors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let gsi = routing.allocate_gsi()?;
            let evt = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(IrqError::EventFd)?;
            vectors.push((gsi, evt));
        }
        let attached = Mutex::new(vec![false; vectors.len()]);
        Ok(Self {
            routing,
            vectors,
            attached,
        })
    }

    /// The GSI of each vector, for logs.
    pub fn gsis(&self) -> Vec<u32> {
        self.vectors.iter().map(|(g, _)| *g).collect()
    }
}

impl MsiVectors for KvmMsiVectors {
    fn len(&self) -> u16 {
        self.vectors.len() as u16
    }

    fn update(&self, index: u16, msg: Option<MsiMessage>) -> io::Result<()> {
        let Some((gsi, _)) = self.vectors.get(usize::from(index)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("MSI-X vector {index} out of range"),
            ));
        };
        let gsi = *gsi;
        let evt = &self.vectors[usize::from(index)].1;
        let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        let was = attached[usize::from(index)];
        match msg {
            Some(m) => {
                self.routing
                    .set_msi(gsi, Some((m.addr, m.data)))
                    .map_err(io::Error::other)?;
                if !was {
                    self.routing
                        .vm()
                        .register_irqfd(evt, gsi)
                        .map_err(io::Error::other)?;
                    attached[usize::from(index)] = true;
                }
            }
            None => {
                if was {
                    self.routing
                        .vm()
                        .unregister_irqfd(evt, gsi)
                        .map_err(io::Error::other)?;
                    attached[usize::from(index)] = false;
                }
                self.routing.set_msi(gsi, None).map_err(io::Error::other)?;
            }
        }
        Ok(())
    }

    fn notifier(&self, index: u16) -> Option<&EventFd> {
        self.vectors.get(usize::from(index)).map(|(_, e)| e)
    }

    fn trigger(&self, index: u16) -> io::Result<()> {
        match self.vectors.get(usize::from(index)) {
            Some((_, e)) => e.write(1),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("MSI-X vector {index} out of range"),
            )),
        }
    }
}

impl Drop for KvmMsiVectors {
    fn drop(&mut self) {
        let attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        for ((gsi, evt), on) in self.vectors.iter().zip(attached.iter()) {
            if *on {
                let _ = self.routing.vm().unregister_irqfd(evt, *gsi);
            }
            let _ = self.routing.set_msi(*gsi, None);
        }
    }
}
