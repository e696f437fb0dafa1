//! COM1: a 16550A (vm-superio) whose interrupt line is an eventfd the VMM
//! binds to GSI 4 with irqfd. The guest's user-space console output goes
//! through the tty layer and needs the THR-empty interrupt to progress.

use std::io::Write;

use tracing::warn;

use super::EventFdTrigger;
use crate::rate_limit::LogRateLimiter;
use crate::BusDevice;

pub const SERIAL_COM1_BASE: u64 = 0x3f8;
pub const SERIAL_COM1_IRQ: u32 = 4;
pub const SERIAL_PORT_LEN: u64 = 8;

pub struct Serial {
    pub(super) inner:
        vm_superio::Serial<EventFdTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
    interrupt_errors: LogRateLimiter,
}

impl Serial {
    pub fn new(interrupt: EventFdTrigger, out: Box<dyn Write + Send>) -> Self {
        Self {
            inner: vm_superio::Serial::new(interrupt, out),
            interrupt_errors: LogRateLimiter::new(),
        }
    }

    /// Queues host input (stdin) for the guest; returns how many bytes the
    /// FIFO took, so the caller can retry the rest later.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.inner.fifo_capacity();
        if room == 0 {
            return 0;
        }
        let take = &bytes[..bytes.len().min(room)];
        match self.inner.enqueue_raw_bytes(take) {
            Ok(n) => n,
            Err(e) => {
                warn!(error = ?e, "serial: input dropped");
                take.len()
            }
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() != 1 || offset >= SERIAL_PORT_LEN {
            data.fill(0xff);
            return;
        }
        data[0] = self.inner.read(offset as u8);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() != 1 || offset >= SERIAL_PORT_LEN {
            return;
        }
        if let Err(e) = self.inner.write(offset as u8, data[0]) {
            // Output errors (closed stdout) must not stop the guest.
            if let Some(count) = self.interrupt_errors.hit() {
                warn!(error = ?e, count, "serial write failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_and_thre_interrupt() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let sink = Sink::default();
        let mut s = Serial::new(
            EventFdTrigger::new(evt.try_clone().unwrap()),
            Box::new(sink.clone()),
        );
        s.write(1, &[0x02]); // IER: THR empty interrupt
        for b in b"hi\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        assert!(evt.read().unwrap() >= 1);
        // wrong-size access is ignored, reads all-ones
        let mut two = [0u8; 2];
        s.read(0, &mut two);
        assert_eq!(two, [0xff, 0xff]);
    }

    #[test]
    fn input_reaches_receive_buffer() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut s = Serial::new(EventFdTrigger::new(evt), Box::new(Sink::default()));
        assert_eq!(s.enqueue_input(b"ab"), 2);
        let mut b = [0u8];
        s.read(0, &mut b);
        assert_eq!(b[0], b'a');
    }
}
