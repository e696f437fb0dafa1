//! The interrupt-routing contract between PCI devices and the VMM.

use vmm_sys_util::eventfd::EventFd;

/// One MSI message: the guest's address/data pair from an MSI-X table
/// entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    pub addr: u64,
    pub data: u32,
}

/// A group of MSI vectors (one per MSI-X table entry), implemented by the
/// VMM with KVM GSI routing and one irqfd per vector. Devices never see
/// KVM; [`super::MsixConfig`] calls [`MsiVectors::update`] whenever the
/// effective routing of a vector changes.
pub trait MsiVectors: Send + Sync {
    /// Number of vectors this group holds.
    fn len(&self) -> u16;
    /// True when the group holds no vector.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Routes vector `index` to `msg`, or disables it (`None`: masked or
    /// MSI-X disabled).
    fn update(&self, index: u16, msg: Option<MsiMessage>) -> std::io::Result<()>;
    /// The irqfd of vector `index`: writing it injects the interrupt (while
    /// routed).
    fn notifier(&self, index: u16) -> Option<&EventFd>;
    /// Injects vector `index`.
    fn trigger(&self, index: u16) -> std::io::Result<()>;
}

#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    /// Records what the transport asks of the VMM.
    pub struct FakeVectors {
        pub fds: Vec<EventFd>,
        pub updates: Mutex<Vec<(u16, Option<MsiMessage>)>>,
        pub triggers: Mutex<Vec<u16>>,
    }

    impl FakeVectors {
        pub fn new(n: u16) -> Arc<Self> {
            Arc::new(Self {
                fds: (0..n)
                    .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
                    .collect(),
                updates: Mutex::new(vec![]),
                triggers: Mutex::new(vec![]),
            })
        }
        pub fn take_updates(&self) -> Vec<(u16, Option<MsiMessage>)> {
            std::mem::take(&mut *self.updates.lock().unwrap())
        }
        pub fn take_triggers(&self) -> Vec<u16> {
            std::mem::take(&mut *self.triggers.lock().unwrap())
        }
    }

    impl MsiVectors for FakeVectors {
        fn len(&self) -> u16 {
            self.fds.len() as u16
        }
        fn update(&self, index: u16, msg: Option<MsiMessage>) -> io::Result<()> {
            self.updates.lock().unwrap().push((index, msg));
            Ok(())
        }
        fn notifier(&self, index: u16) -> Option<&EventFd> {
            self.fds.get(usize::from(index))
        }
        fn trigger(&self, index: u16) -> io::Result<()> {
            self.triggers.lock().unwrap().push(index);
            self.fds[usize::from(index)].write(1)
        }
    }
}
