//! KubeVirt `resource` networks: the device plugin names the pod interface
//! it made in a `NETWORK_INTERFACE_RESOURCES_*` variable, e.g.
//! `{"name": "bridge.network.kubevirt.io/red", "interfaces": [{"name":
//! "eth-red01", "protocol": "Ethernet"}]}`. Only the first interface is
//! used, and only protocol Ethernet exists (bridged, nothing delegated).

use serde::Deserialize;

use super::HostView;
use crate::plan::{FieldError, NicPlan};

/// Prefix of the variables device plugins set.
pub const ENV_PREFIX: &str = "NETWORK_INTERFACE_RESOURCES_";

#[derive(Deserialize)]
struct Resource {
    name: String,
    #[serde(default)]
    interfaces: Vec<ResourceIface>,
}

#[derive(Deserialize)]
struct ResourceIface {
    name: String,
    #[serde(default)]
    protocol: Option<String>,
}

/// The pod interface of `resource_name`, or why there is none.
pub(super) fn pod_iface(
    nic: &NicPlan,
    resource_name: &str,
    host: &dyn HostView,
) -> Result<String, FieldError> {
    let fail = |m: String| FieldError::new(&nic.network_path, resource_name, m);
    let vars = host.network_resources();
    let mut found = None;
    for (var, json) in &vars {
        match serde_json::from_str::<Resource>(json) {
            Ok(r) if r.name == resource_name => {
                found = Some((var, r));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(var = %var, error = %e, "device plugin variable is not the expected JSON")
            }
        }
    }
    let Some((var, resource)) = found else {
        return Err(fail(format!(
            "has no device plugin interface: no {ENV_PREFIX}* variable names this resource{}; \
             the pod must request the resource so its device plugin sets one",
            if vars.is_empty() {
                " (there are none)".to_string()
            } else {
                format!(
                    " (seen: {})",
                    vars.iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )));
    };
    let Some(first) = resource.interfaces.first() else {
        return Err(fail(format!("{var} lists no interfaces")));
    };
    if let Some(p) = first.protocol.as_deref().filter(|p| *p != "Ethernet") {
        return Err(fail(format!(
            "{var}: interface {} has protocol {p:?}; only Ethernet is supported",
            first.name
        )));
    }
    if !host.link_exists(&first.name) {
        return Err(fail(format!(
            "{var} names pod interface {}, which this pod does not have",
            first.name
        )));
    }
    Ok(first.name.clone())
}
