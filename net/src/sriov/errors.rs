//! What goes wrong reading the pod's facts ([`PodInfoError`]) and resolving
//! each NIC's VF ([`SriovError`], all NICs together in [`SriovErrors`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::{ParsePciAddressError, PciAddress, VFIO_DRIVER};

/// Why the downward-API files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PodInfoError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: malformed network status: {reason}", .path.display())]
    Malformed { path: PathBuf, reason: String },
}

/// Why one NIC has no usable VF.
#[derive(Debug, thiserror::Error)]
pub enum SriovError {
    #[error(
        "network {network} (pod interface {pod_iface}): no VF for it: {status} has no \
         entry for {pod_iface} with a PCI device-info, {env} is not set and the spec gives \
         no resourceName for {multus_network}; request the VF through the \
         k8s.v1.cni.cncf.io/resourceName annotation of NetworkAttachmentDefinition \
         {multus_network} (and project the network-status annotation into the pod)"
    )]
    NoSource {
        network: String,
        pod_iface: String,
        multus_network: String,
        /// `KUBEVIRT_RESOURCE_NAME_<network>`.
        env: String,
        /// The network-status file, or a note that there was none.
        status: String,
    },

    #[error(
        "network {network}: resource {resource} (from {origin}) was not allocated to the pod: \
         {env} is not set; add {resource} to the pod's resources.limits (one per NIC on it) \
         and check that the SR-IOV device plugin advertises it on the node"
    )]
    PoolMissing {
        network: String,
        resource: String,
        origin: String,
        env: String,
    },

    #[error(
        "network {network}: all {size} VFs of resource {resource} ({env}={value}) are already \
         taken by other NICs; request one {resource} per NIC using it in the pod's \
         resources.limits"
    )]
    PoolExhausted {
        network: String,
        resource: String,
        env: String,
        value: String,
        size: usize,
    },

    #[error("network {network}: bad VF address from {origin}")]
    BadAddress {
        network: String,
        /// Where the string was read, e.g. `PCIDEVICE_INTEL_COM_SRIOV` or the
        /// network-status file.
        origin: String,
        #[source]
        source: ParsePciAddressError,
    },

    #[error(
        "network {network}: network-status gives VF {address} to interface {pod_iface}, but \
         it already gives it to network {first_network}; the CNI result is inconsistent, \
         check the SR-IOV CNI and device plugin on the node"
    )]
    DuplicateAddress {
        network: String,
        pod_iface: String,
        address: PciAddress,
        first_network: String,
    },

    #[error(
        "network {network}: VF {address} (from {source_desc}) is not in sysfs ({} is missing); \
         the pod sees another host's devices or the VF was removed (SR-IOV numvfs changed?)",
        .path.display()
    )]
    NotInSysfs {
        network: String,
        address: PciAddress,
        source_desc: String,
        path: PathBuf,
    },

    #[error(
        "network {network}: VF {address} is bound to {}, not {VFIO_DRIVER}, so it cannot be \
         passed through; use deviceType: vfio-pci in the SR-IOV node policy, or on the node \
         {}run `echo {VFIO_DRIVER} > /sys/bus/pci/devices/{address}/driver_override; \
         echo {address} > /sys/bus/pci/drivers_probe`",
        .driver.as_deref().unwrap_or("no driver"),
        unbind_hint(.driver.as_deref(), .address)
    )]
    WrongDriver {
        network: String,
        address: PciAddress,
        /// The bound driver, `None` if unbound.
        driver: Option<String>,
    },

    #[error(
        "network {network}: VF {address} has no IOMMU group ({} is missing); enable the IOMMU \
         on the node (intel_iommu=on or amd_iommu=on on the kernel command line)",
        .path.display()
    )]
    NoIommuGroup {
        network: String,
        address: PciAddress,
        path: PathBuf,
    },

    #[error(
        "network {network}: VF {address} is in IOMMU group {group} but {} does not exist in \
         the container; the device plugin did not mount it (is the resource in the pod's \
         resources.limits?) or the container lacks access to /dev/vfio",
        .path.display()
    )]
    NoVfioGroupNode {
        network: String,
        address: PciAddress,
        group: u32,
        path: PathBuf,
    },

    #[error("network {network}: cannot read {}", .path.display())]
    Io {
        network: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("network {network}: {}: unexpected content {content:?}", .path.display())]
    BadSysfsValue {
        network: String,
        path: PathBuf,
        content: String,
    },
}

/// The extra step [`SriovError::WrongDriver`]'s fix needs when another
/// driver holds the VF: `driver_override` only applies at the next probe.
fn unbind_hint(driver: Option<&str>, address: &PciAddress) -> String {
    match driver {
        Some(_) => format!(
            "unbind it (`echo {address} > /sys/bus/pci/devices/{address}/driver/unbind`) and "
        ),
        None => String::new(),
    }
}

/// The problems of every NIC that could not be resolved; never empty.
///
/// One value for all NICs, because fixing them one failed start at a time
/// is slow when the cause (a policy, a missing limit) is usually shared.
#[derive(Debug)]
pub struct SriovErrors(pub Vec<SriovError>);

impl SriovErrors {
    pub fn errors(&self) -> &[SriovError] {
        &self.0
    }
}

impl fmt::Display for SriovErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} SR-IOV NICs cannot be set up:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                    let mut src = std::error::Error::source(e);
                    while let Some(s) = src {
                        write!(f, ": {s}")?;
                        src = s.source();
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SriovErrors {
    /// With a single error, chain to it so `{:#}`-style reporters show its
    /// cause; with several, [`Display`](fmt::Display) already shows all.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.0.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}
