//! Adapts an eventfd (registered by the VMM as an irqfd or exit event) to
//! vm-superio's `Trigger`.

use std::io;
use vmm_sys_util::eventfd::EventFd;

#[derive(Debug)]
pub struct EventFdTrigger(EventFd);

impl EventFdTrigger {
    pub fn new(evt: EventFd) -> Self {
        Self(evt)
    }

    pub fn eventfd(&self) -> &EventFd {
        &self.0
    }
}

impl vm_superio::Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}
