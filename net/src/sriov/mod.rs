//! Which SR-IOV virtual function (VF) each `sriov` NIC of the VM gets, found
//! the way KubeVirt's virt-launcher finds it, and whether that VF can really
//! be passed through with VFIO.
//!
//! Nothing here touches KVM or VFIO itself: the pod's facts (environment,
//! Multus' network-status, sysfs, `/dev/vfio`) come in through [`PodInfo`]
//! so tests can fake them, and the result is a list of checked
//! [`VfDevice`]s for the VFIO code to open.
//!
//! The PCI address of a NIC's VF is taken from, in order:
//!
//! 1. Multus' `k8s.v1.cni.cncf.io/network-status` annotation: the SR-IOV CNI
//!    reports the VF it moved into the pod as `device-info` of the entry for
//!    that pod interface. This is the only source that ties a VF to one
//!    interface, so it wins whenever it is there.
//! 2. The SR-IOV device plugin: the pod requested N VFs of a resource and the
//!    plugin set `PCIDEVICE_<RESOURCE>` to their N addresses, in no useful
//!    order. The resource of a network comes from
//!    `KUBEVIRT_RESOURCE_NAME_<network>` (set by KubeVirt's virt-controller)
//!    or from the NetworkAttachmentDefinition in the spec (Virtink). Every
//!    NIC takes the first address no other NIC took, so all NICs of a VM are
//!    resolved together by [`resolve_all`].
//!
//! A misconfigured pod typically breaks every SR-IOV NIC at once, so
//! [`resolve_all`] reports the problems of all NICs together
//! ([`SriovErrors`]), each saying what was looked at and how to fix it.

mod address;
mod env_names;
mod errors;
mod go_quote;
mod network_status;
mod pod_info;
mod resolve;
mod sysfs;
#[cfg(test)]
mod tests;

pub use address::{ParsePciAddressError, PciAddress};
pub use env_names::{pool_env_name, pool_env_names, resource_name_env};
pub use errors::{PodInfoError, SriovError, SriovErrors};
pub use network_status::{
    load_network_status, parse_annotations, parse_network_status, NetworkStatus,
    NETWORK_STATUS_ANNOTATION, OLD_NETWORK_STATUS_ANNOTATION,
};
pub use pod_info::{network_status_from_env, PodInfo, NETWORK_STATUS_ENV};
pub use resolve::{resolve_all, Source, VfDevice, VfRequest};

/// The only driver through which a VF can be handed to the guest.
pub const VFIO_DRIVER: &str = "vfio-pci";
