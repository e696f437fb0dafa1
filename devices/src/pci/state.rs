//! Snapshot state of the PCI functions that can be saved (see
//! [`super::PciDevice::save_state`]). Only virtio-pci functions can yet;
//! e1000 and VFIO functions report none and the VMM refuses to save them.

use serde::{Deserialize, Serialize};

use crate::virtio::transport::VirtioPciState;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PciDeviceState {
    Virtio(VirtioPciState),
}
