//! Snapshot state of the legacy devices: plain serializable values the VMM
//! saves with a VM snapshot or migration and writes back into a VM built
//! from the same spec. The i8042 keeps none worth moving (its only effect,
//! the reset line, is edge-like); the CMOS clock registers are read from
//! the host clock, so only the index and the RAM move.

use serde::{Deserialize, Serialize};

use super::cmos::Cmos;
use super::serial::Serial;
use super::EventFdTrigger;

/// The 16550A's registers and its receive FIFO (vm-superio's
/// `SerialState`, which has no serde of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialState {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    pub in_buffer: Vec<u8>,
}

impl From<vm_superio::serial::SerialState> for SerialState {
    fn from(s: vm_superio::serial::SerialState) -> Self {
        Self {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }
}

impl From<&SerialState> for vm_superio::serial::SerialState {
    fn from(s: &SerialState) -> Self {
        Self {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot clone the serial interrupt eventfd")]
    SerialTrigger(#[source] std::io::Error),
    #[error("the saved serial state is invalid: {0}")]
    SerialState(String),
}

impl Serial {
    /// The registers and pending input.
    pub fn state(&self) -> SerialState {
        self.inner.state().into()
    }

    /// Writes `state` back, keeping the interrupt line and the output.
    pub fn restore(&mut self, state: &SerialState) -> Result<(), StateError> {
        let clone = |s: &Self| {
            s.inner
                .interrupt_evt()
                .eventfd()
                .try_clone()
                .map(EventFdTrigger::new)
                .map_err(StateError::SerialTrigger)
        };
        let trigger = clone(self)?;
        let placeholder = clone(self)?;
        let old = std::mem::replace(
            &mut self.inner,
            vm_superio::Serial::new(placeholder, Box::new(std::io::sink())),
        );
        let out = old.into_writer();
        self.inner = vm_superio::Serial::from_state(
            &state.into(),
            trigger,
            vm_superio::serial::NoEvents,
            out,
        )
        .map_err(|e| StateError::SerialState(format!("{e:?}")))?;
        Ok(())
    }
}

/// The CMOS index register and RAM (the clock registers come from the host
/// clock on every read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmosState {
    pub index: u8,
    pub ram: Vec<u8>,
}

impl Cmos {
    pub fn state(&self) -> CmosState {
        CmosState {
            index: self.index,
            ram: self.ram.to_vec(),
        }
    }

    /// Writes `state` back; a RAM image of the wrong size is refused.
    pub fn restore(&mut self, state: &CmosState) -> Result<(), String> {
        self.ram = state
            .ram
            .as_slice()
            .try_into()
            .map_err(|_| format!("CMOS RAM of {} bytes, expected 128", state.ram.len()))?;
        self.index = state.index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BusDevice;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn serial_state_round_trips() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut a = Serial::new(EventFdTrigger::new(evt), Box::new(std::io::sink()));
        a.write(3, &[0x03]); // LCR: 8N1
        a.write(7, &[0x5a]); // scratch
        a.enqueue_input(b"xy");
        let s = a.state();
        assert_eq!(s.scratch, 0x5a);
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut b = Serial::new(EventFdTrigger::new(evt), Box::new(std::io::sink()));
        b.restore(&s).unwrap();
        assert_eq!(b.state(), s);
        let mut byte = [0u8];
        b.read(0, &mut byte);
        assert_eq!(byte[0], b'x');
    }

    #[test]
    fn cmos_state_round_trips_and_checks_size() {
        let mut a = Cmos::new();
        a.write(0, &[0x40]);
        a.write(1, &[0x99]);
        let s = a.state();
        let mut b = Cmos::new();
        b.restore(&s).unwrap();
        assert_eq!(b.state(), s);
        let bad = CmosState {
            index: 0,
            ram: vec![0; 3],
        };
        assert!(b.restore(&bad).is_err());
    }
}
