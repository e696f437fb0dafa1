//! Whether a claimed VF can really be passed through: present in sysfs,
//! bound to vfio-pci, in an IOMMU group whose node the container has.

use std::fs;
use std::io;
use std::path::Path;

use super::resolve::Claim;
use super::{PodInfo, SriovError, VfDevice, VFIO_DRIVER};

/// Rule 4: checks that the claimed VF exists, is bound to vfio-pci and has
/// an IOMMU group whose node is in the container.
pub(super) fn check_device(
    info: &PodInfo,
    network: &str,
    claim: Claim,
) -> Result<VfDevice, SriovError> {
    let address = claim.address;
    let sysfs_path = info.sysfs.join("bus/pci/devices").join(address.to_string());
    if !sysfs_path.exists() {
        return Err(SriovError::NotInSysfs {
            network: network.to_string(),
            address,
            source_desc: claim.source.to_string(),
            path: sysfs_path,
        });
    }

    let driver = link_name(network, &sysfs_path.join("driver"))?;
    if driver.as_deref() != Some(VFIO_DRIVER) {
        return Err(SriovError::WrongDriver {
            network: network.to_string(),
            address,
            driver,
        });
    }

    let group_link = sysfs_path.join("iommu_group");
    let Some(group) = link_name(network, &group_link)? else {
        return Err(SriovError::NoIommuGroup {
            network: network.to_string(),
            address,
            path: group_link,
        });
    };
    let iommu_group = group
        .parse::<u32>()
        .map_err(|_| SriovError::BadSysfsValue {
            network: network.to_string(),
            path: group_link,
            content: group,
        })?;
    let group_path = info.dev_vfio.join(iommu_group.to_string());
    if !group_path.exists() {
        return Err(SriovError::NoVfioGroupNode {
            network: network.to_string(),
            address,
            group: iommu_group,
            path: group_path,
        });
    }

    let vendor = read_id(network, &sysfs_path.join("vendor"))?;
    let device = read_id(network, &sysfs_path.join("device"))?;
    Ok(VfDevice {
        network: network.to_string(),
        address,
        sysfs_path,
        iommu_group,
        group_path,
        vendor,
        device,
        resolved_from: claim.source,
    })
}

/// The file name a sysfs symlink points to (`driver` → `vfio-pci`), `None`
/// when the link is absent, which sysfs uses to say "none".
fn link_name(network: &str, link: &Path) -> Result<Option<String>, SriovError> {
    match fs::read_link(link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SriovError::Io {
            network: network.to_string(),
            path: link.to_path_buf(),
            source,
        }),
    }
}

/// A sysfs PCI id file (`vendor`, `device`): `0x8086\n`.
fn read_id(network: &str, path: &Path) -> Result<u16, SriovError> {
    let content = fs::read_to_string(path).map_err(|source| SriovError::Io {
        network: network.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = content.trim();
    trimmed
        .strip_prefix("0x")
        .and_then(|hex| u16::from_str_radix(hex, 16).ok())
        .ok_or_else(|| SriovError::BadSysfsValue {
            network: network.to_string(),
            path: path.to_path_buf(),
            content: trimmed.to_string(),
        })
}
