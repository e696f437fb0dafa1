//! Snapshot state of the PCI functions that can be saved (see
//! [`super::PciDevice::save_state`]): virtio-pci and e1000 functions;
//! VFIO functions report none and the VMM refuses to save them.

use serde::{Deserialize, Serialize};

use crate::e1000::E1000State;
use crate::virtio::transport::VirtioPciState;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PciDeviceState {
    Virtio(VirtioPciState),
    E1000(Box<E1000State>),
}
