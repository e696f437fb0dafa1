//! The environment variables KubeVirt and the SR-IOV device plugin pass a
//! NIC's resource and VF pool in.

/// KubeVirt's virt-controller names the resource of spec network `<net>` in
/// this variable's `<net>`-suffixed form.
const RESOURCE_NAME_ENV_PREFIX: &str = "KUBEVIRT_RESOURCE_NAME_";
/// The SR-IOV device plugin's allocation variables start with this.
const POOL_ENV_PREFIX: &str = "PCIDEVICE";

/// The variable virt-controller puts the resource name of spec network
/// `network` in. The network name is used as is: env names may contain
/// `-`, and virt-controller does not rewrite it.
pub fn resource_name_env(network: &str) -> String {
    format!("{RESOURCE_NAME_ENV_PREFIX}{network}")
}

/// The variable the SR-IOV device plugin lists the addresses of `resource`
/// in: `PCIDEVICE_` + the name upper-cased, with `/` and `.` turned into
/// `_` (`intel.com/sriov_net` → `PCIDEVICE_INTEL_COM_SRIOV_NET`).
pub fn pool_env_name(resource: &str) -> String {
    let name: String = resource
        .to_ascii_uppercase()
        .chars()
        .map(|c| if c == '/' || c == '.' { '_' } else { c })
        .collect();
    format!("{POOL_ENV_PREFIX}_{name}")
}

/// The names the pool of `resource` may be under, most likely first: the
/// device plugin keeps `-`, but some deployments (and KubeVirt's own
/// helper, in places) turn it into `_` too.
pub fn pool_env_names(resource: &str) -> Vec<String> {
    let exact = pool_env_name(resource);
    let dashless = exact.replace('-', "_");
    if dashless == exact {
        vec![exact]
    } else {
        vec![exact, dashless]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_kubevirt_and_the_device_plugin() {
        assert_eq!(
            pool_env_name("intel.com/sriov_net"),
            "PCIDEVICE_INTEL_COM_SRIOV_NET"
        );
        assert_eq!(
            pool_env_name("openshift.io/mlxnics"),
            "PCIDEVICE_OPENSHIFT_IO_MLXNICS"
        );
        assert_eq!(
            pool_env_names("example.org/sriov-a"),
            [
                "PCIDEVICE_EXAMPLE_ORG_SRIOV-A",
                "PCIDEVICE_EXAMPLE_ORG_SRIOV_A"
            ]
        );
        assert_eq!(pool_env_names("intel.com/x"), ["PCIDEVICE_INTEL_COM_X"]);
        assert_eq!(
            resource_name_env("sriov-net"),
            "KUBEVIRT_RESOURCE_NAME_sriov-net"
        );
    }
}
