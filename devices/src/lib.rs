//! Device models of petrel. Devices see guest memory and interrupt handles,
//! never KVM: the `vmm` crate wires their interrupts to irqfds and their
//! address ranges to vCPU exits through [`bus::Bus`].

pub mod bus;
pub mod e1000;
pub mod legacy;
pub mod pci;
pub mod vfio;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
