//! The i8042 keyboard controller, only for its reset line: with `reboot=k`
//! the guest resets (reboot, poweroff, panic) by writing 0xFE to port 0x64.
//! The trigger is the VMM's exit event.

use tracing::error;

use super::EventFdTrigger;
use crate::BusDevice;

/// Ports 0x60..=0x64; offset 4 is the command/status port.
pub const I8042_BASE: u64 = 0x60;
pub const I8042_LEN: u64 = 5;

pub struct I8042 {
    inner: vm_superio::I8042Device<EventFdTrigger>,
    reset_requested: bool,
}

impl I8042 {
    pub fn new(reset: EventFdTrigger) -> Self {
        Self {
            inner: vm_superio::I8042Device::new(reset),
            reset_requested: false,
        }
    }

    pub fn reset_requested(&self) -> bool {
        self.reset_requested
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty, so the guest's
        // kb_wait() before the reset command returns at once.
        data.fill(0);
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.inner.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Some(&value), Ok(off)) = (data.first(), u8::try_from(offset)) else {
            return;
        };
        if off == 4 && value == 0xfe {
            self.reset_requested = true;
        }
        if let Err(e) = self.inner.write(off, value) {
            error!(error = %e, "i8042: cannot signal the reset event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn reset_command_fires_event() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut dev = I8042::new(EventFdTrigger::new(evt.try_clone().unwrap()));
        dev.write(0, &[0xfe]); // data port: not a reset
        assert!(evt.read().is_err());
        dev.write(4, &[0xd1]); // another command
        assert!(evt.read().is_err());
        dev.write(4, &[0xfe]);
        assert_eq!(evt.read().unwrap(), 1);
        assert!(dev.reset_requested());
        let mut b = [0xffu8];
        dev.read(4, &mut b);
        assert_eq!(b[0], 0);
    }
}
