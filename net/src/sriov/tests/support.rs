//! The fake host the tests resolve against.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sriov::*;

/// A unique scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("petrel-sriov-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A fake host: sysfs under `<tmp>/sys`, VFIO nodes under
/// `<tmp>/dev/vfio`, the downward API under `<tmp>/podinfo`.
pub struct Host {
    pub tmp: TempDir,
    env: BTreeMap<String, String>,
    status: Vec<NetworkStatus>,
}

impl Host {
    pub fn new() -> Host {
        let tmp = TempDir::new();
        fs::create_dir_all(tmp.0.join("sys/bus/pci/devices")).unwrap();
        fs::create_dir_all(tmp.0.join("dev/vfio")).unwrap();
        Host {
            tmp,
            env: BTreeMap::new(),
            status: Vec::new(),
        }
    }

    pub fn dev_dir(&self, addr: &str) -> PathBuf {
        self.tmp.0.join("sys/bus/pci/devices").join(addr)
    }

    /// A device bound to `driver` (or none) in IOMMU group `group` (or
    /// none), with the group's /dev/vfio node when `node` is set.
    pub fn device(&self, addr: &str, driver: Option<&str>, group: Option<u32>, node: bool) {
        let dir = self.dev_dir(addr);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vendor"), "0x8086\n").unwrap();
        fs::write(dir.join("device"), "0x154c\n").unwrap();
        if let Some(driver) = driver {
            let target = self.tmp.0.join("sys/bus/pci/drivers").join(driver);
            fs::create_dir_all(target).unwrap();
            symlink(format!("../../drivers/{driver}"), dir.join("driver")).unwrap();
        }
        if let Some(group) = group {
            let target = self.tmp.0.join(format!("sys/kernel/iommu_groups/{group}"));
            fs::create_dir_all(target).unwrap();
            symlink(
                format!("../../../../kernel/iommu_groups/{group}"),
                dir.join("iommu_group"),
            )
            .unwrap();
            if node {
                fs::write(self.tmp.0.join(format!("dev/vfio/{group}")), "").unwrap();
            }
        }
    }

    /// A VF ready for passthrough.
    pub fn vf(&self, addr: &str, group: u32) {
        self.device(addr, Some(VFIO_DRIVER), Some(group), true);
    }

    pub fn env(&mut self, k: &str, v: &str) {
        self.env.insert(k.to_string(), v.to_string());
    }

    pub fn status(&mut self, name: &str, iface: &str, pci: Option<&str>) {
        self.status.push(NetworkStatus {
            name: name.to_string(),
            interface: Some(iface.to_string()),
            device_type: pci.map(|_| "pci".to_string()),
            pci_address: pci.map(str::to_string),
            ..NetworkStatus::default()
        });
    }

    pub fn info(&self) -> PodInfo {
        PodInfo {
            env: self.env.clone(),
            network_status: self.status.clone(),
            network_status_file: Some(PathBuf::from("/etc/podinfo/network-status")),
            sysfs: self.tmp.0.join("sys"),
            dev_vfio: self.tmp.0.join("dev/vfio"),
        }
    }

    pub fn podinfo(&self) -> PathBuf {
        let dir = self.tmp.0.join("podinfo");
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}

pub fn req<'a>(network: &'a str, multus: &'a str, iface: &'a str) -> VfRequest<'a> {
    VfRequest {
        network,
        multus_network: multus,
        pod_iface: iface,
        resource: None,
    }
}

/// A request for a NIC whose network names device-plugin resource
/// `resource` in the spec.
pub fn pool_req<'a>(
    resource: &'a str,
    network: &'a str,
    multus: &'a str,
    iface: &'a str,
) -> VfRequest<'a> {
    VfRequest {
        resource: Some(resource),
        ..req(network, multus, iface)
    }
}

pub fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// The VFs resolving `reqs` on `h` gives, all NICs resolved.
pub fn resolved(h: &Host, reqs: &[VfRequest<'_>]) -> Vec<VfDevice> {
    resolve_all(&h.info(), reqs).unwrap()
}

/// The errors resolving `reqs` fails with, checked to be `count`.
pub fn errors(info: &PodInfo, reqs: &[VfRequest<'_>], count: usize) -> Vec<SriovError> {
    let errs = resolve_all(info, reqs).unwrap_err().0;
    assert_eq!(errs.len(), count, "{errs:?}");
    errs
}

pub fn one_error(info: &PodInfo, reqs: &[VfRequest<'_>]) -> SriovError {
    errors(info, reqs, 1).remove(0)
}

/// Asserts that `e`'s message mentions each of `parts`.
pub fn assert_mentions(e: &dyn std::fmt::Display, parts: &[&str]) {
    let msg = e.to_string();
    for part in parts {
        assert!(msg.contains(part), "{part}: {msg}");
    }
}

/// Multus' network status for a pod with the cluster network, an SR-IOV VF
/// on `net1` and a vDPA device on `net2`.
pub const STATUS_JSON: &str = r#"[{
    "name": "kindnet",
    "interface": "eth0",
    "ips": ["10.244.1.5"],
    "mac": "0a:58:0a:f4:01:05",
    "default": true,
    "dns": {}
},{
    "name": "default/sriov-a",
    "interface": "net1",
    "ips": ["192.168.1.10"],
    "mac": "ce:4e:9c:d3:1f:a0",
    "dns": {},
    "device-info": {
        "type": "pci",
        "version": "1.0.0",
        "pci": {"pci-address": "0000:65:00.2"}
    }
},{
    "name": "default/vdpa",
    "interface": "net2",
    "device-info": {"type": "vdpa", "vdpa": {"pci-address": "0000:65:00.4"}, "pci": {"pci-address": "0000:65:00.4"}}
}]"#;
