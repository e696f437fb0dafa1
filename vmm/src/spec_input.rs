//! Where `petrel run` takes the VM spec from: a file, or base64 JSON the
//! way Virtink's prerunner gets it (`--spec-base64`, or the `VM_DATA`
//! variable). Virtink's controller marshals the typed object, which may
//! lack `apiVersion`/`kind`; those are filled in from the object's shape
//! (`spec.instance` is Virtink's VirtualMachine, `spec.domain` KubeVirt's
//! VirtualMachineInstance) before the usual parser sees it.

use std::path::Path;

use base64::Engine;
use serde_json::Value;

use crate::spec::{self, SpecError, VmSpec};

/// The variable Virtink's controller hands the spec in.
pub const VM_DATA_ENV: &str = "VM_DATA";

#[derive(Debug, thiserror::Error)]
pub enum SpecInputError {
    #[error("no VM spec: give a file, --spec-base64, or set {VM_DATA_ENV}")]
    Missing,
    #[error("the base64 spec does not decode")]
    Base64(#[source] base64::DecodeError),
    #[error("the base64 spec is not JSON")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// The spec from `file`, else `base64`, else `$VM_DATA`.
pub fn load(file: Option<&Path>, base64: Option<&str>) -> Result<VmSpec, SpecInputError> {
    if let Some(path) = file {
        return Ok(spec::load_file(path)?);
    }
    let env = std::env::var(VM_DATA_ENV).ok();
    let data = base64
        .or(env.as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(SpecInputError::Missing)?;
    from_base64(data)
}

/// Decodes base64 JSON and parses it as a spec.
pub fn from_base64(data: &str) -> Result<VmSpec, SpecInputError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(SpecInputError::Base64)?;
    let mut value: Value = serde_json::from_slice(&bytes).map_err(SpecInputError::Json)?;
    fill_type_meta(&mut value);
    // JSON is YAML: the one parser keeps one set of rules.
    Ok(spec::parse_str(&value.to_string())?)
}

fn fill_type_meta(value: &mut Value) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    if obj.contains_key("kind") {
        return;
    }
    let spec = obj.get("spec");
    let (api, kind) = if spec.and_then(|s| s.get("instance")).is_some() {
        ("virt.virtink.smartx.com/v1alpha1", "VirtualMachine")
    } else if spec.and_then(|s| s.get("domain")).is_some() {
        ("kubevirt.io/v1", "VirtualMachineInstance")
    } else {
        return;
    };
    obj.insert("apiVersion".into(), Value::from(api));
    obj.insert("kind".into(), Value::from(kind));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn virtink_json_without_type_meta() {
        let json = r#"{"metadata":{"name":"vm1","namespace":"ns1"},
            "spec":{"instance":{"cpu":{"sockets":1,"coresPerSocket":2},
            "memory":{"size":"256Mi"}}}}"#;
        let spec = from_base64(&b64(json)).unwrap();
        assert_eq!(spec.name, "vm1");
        assert_eq!(spec.namespace.as_deref(), Some("ns1"));
    }

    #[test]
    fn kubevirt_json_and_bad_input() {
        let json = r#"{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstance",
            "metadata":{"name":"k1"},"spec":{"domain":{"devices":{}}}}"#;
        assert_eq!(from_base64(&b64(json)).unwrap().name, "k1");
        assert!(matches!(from_base64("@@@"), Err(SpecInputError::Base64(_))));
        assert!(matches!(
            from_base64(&b64("not json")),
            Err(SpecInputError::Json(_))
        ));
    }
}
