//! Device models of petrel. Devices see guest memory and interrupt handles,
//! never KVM: the `vmm` crate wires their interrupts to irqfds and their
//! address ranges to vCPU exits through [`bus::Bus`].

pub mod acpi;
pub mod affinity;
pub mod bus;
pub mod e1000;
pub mod frame;
pub mod legacy;
pub mod pause;
pub mod pci;
pub mod rate_limit;
pub mod sandbox;
pub mod vfio;
pub mod virtio;
pub mod worker;

pub use affinity::pin_current_thread;
pub use bus::{Bus, BusDevice, BusError};
pub use pause::PauseGate;
pub use rate_limit::{should_log, LogRateLimiter};
pub use worker::{SpawnError, Worker, WorkerHandler};
