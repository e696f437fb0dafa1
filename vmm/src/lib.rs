//! petrel's VMM library: spec parsing, plan resolution and the VM lifecycle.
//! The `petrel` binary (main.rs) is a thin CLI over this crate.

pub mod affinity;
pub mod attach;
pub mod backend;
pub mod console;
pub mod control;
pub mod error;
pub mod exit;
pub mod host;
mod intx;
pub mod irq;
pub mod loader;
mod memory;
mod msi;
pub mod pci_setup;
pub mod plan;
pub mod pod_net;
mod signals;
pub mod spec;
pub mod vcpu;
pub mod vfio;
pub mod vm;
mod vmm;

pub use console::ConsoleTarget;
pub use error::VmmError;
pub use exit::ExitReason;
pub use loader::BootProtocol;
pub use vmm::{ExtraPci, RunOptions, Vmm, VmmConfig};
