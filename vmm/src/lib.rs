//! petrel's VMM library: spec parsing, plan resolution and the VM lifecycle.
//! The `petrel` binary (main.rs) is a thin CLI over this crate.

pub mod affinity;
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
pub mod nic;
pub mod plan;
pub mod pod_net;
pub mod run;
mod signals;
pub mod spec;
pub mod vcpu;
pub mod vfio;
pub mod vm;

pub use error::VmmError;
pub use exit::ExitReason;
pub use loader::BootProtocol;
pub use run::{run, ConsoleTarget, ExtraPci, RunOptions};
