//! petrel's VMM library: spec parsing, the two plans and the VM lifecycle.
//! The `petrel` binary (main.rs) is a thin CLI over this crate.
//!
//! Data flows one way, each stage handing a plain value to the next and
//! none deciding again what an earlier one decided:
//!
//! - [`spec`]: KubeVirt/Virtink YAML → one [`spec::VmSpec`] model.
//! - [`plan`]: the spec plan, pure (`petrel validate`): validation, upstream
//!   defaults, MACs, PCI slots, queues, and refusal of what petrel cannot
//!   build.
//! - [`host`]: the host plan, resolved inside the pod (`petrel validate
//!   --host`): pod interfaces, IPv6, DNS, link MACs, VFs, handed-over fds.
//! - [`backend`] opens each NIC's backend as the host plan says (taps,
//!   macvtap, pod bindings through `net`); [`attach`] builds each device
//!   model (`devices`) on the PCI bus ([`pci_setup`]); passthrough goes
//!   through [`vfio`].
//! - [`Vmm`]: the KVM VM ([`vm`]), vCPU threads ([`vcpu`]) and the control
//!   loop ([`control`]), built with `Vmm::try_from(VmmConfig)` and run with
//!   [`Vmm::run`]; teardown order is its field order.

mod acpi;
pub mod affinity;
pub mod api;
pub mod attach;
pub mod backend;
mod boot;
pub mod caps;
pub mod console;
mod console_socket;
pub mod console_writer;
pub mod control;
pub mod error;
pub mod exit;
pub mod host;
mod intx;
pub mod irq;
pub mod lifecycle;
pub mod loader;
mod memory;
pub mod metrics;
pub mod migration;
mod msi;
pub mod net_state;
pub mod panic_hook;
pub mod pci_setup;
pub mod plan;
pub mod pod_net;
pub mod reset;
pub mod sandbox;
pub mod seccomp;
mod signals;
pub mod spec;
pub mod spec_input;
pub mod vcpu;
pub mod vcpu_pause;
pub mod vfio;
pub mod vm;
mod vmm;

pub use console::ConsoleTarget;
pub use error::VmmError;
pub use exit::ExitReason;
pub use lifecycle::{Lifecycle, LifecycleError};
pub use loader::BootProtocol;
pub use reset::OnGuestReset;
pub use seccomp::SeccompMode;
pub use vmm::{ExtraPci, RunOptions, Vmm, VmmConfig};
