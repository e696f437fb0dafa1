//! Legacy PC devices the guest kernel expects without ACPI: COM1, the i8042
//! reset line and a CMOS RTC.

mod cmos;
mod i8042;
mod serial;
mod state;
mod trigger;

pub use cmos::{Cmos, CMOS_BASE, CMOS_LEN};
pub use i8042::{I8042, I8042_BASE, I8042_LEN};
pub use serial::{Serial, SERIAL_COM1_BASE, SERIAL_COM1_IRQ, SERIAL_PORT_LEN};
pub use state::{CmosState, SerialState, StateError};
pub use trigger::EventFdTrigger;
