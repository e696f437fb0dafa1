//! VM spec files: KubeVirt `VirtualMachineInstance` / `VirtualMachine` and
//! Virtink `VirtualMachine` objects, read from (multi-document) YAML.
//!
//! [`parse_str`] finds exactly one VM object among the documents (other
//! objects such as `NetworkAttachmentDefinition` or `ConfigMap` may sit next
//! to it) and turns it into a [`VmSpec`]. The parse never fails on fields
//! petrel does not model: those are listed in [`VmSpec::warnings`] with their
//! paths. Semantic checks (ranges, MAC syntax, binding rules...) are done by
//! [`crate::plan::resolve`].

mod common;
mod kubevirt;
mod model;
pub mod quantity;
mod virtink;
mod walk;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

pub use model::*;
pub use quantity::{parse_quantity, QuantityError};

use walk::{MapView, Walker};

/// `apiVersion`s accepted for KubeVirt objects.
pub const KUBEVIRT_API_VERSIONS: &[&str] = &["kubevirt.io/v1", "kubevirt.io/v1alpha3"];
/// `apiVersion`s accepted for Virtink objects.
pub const VIRTINK_API_VERSIONS: &[&str] = &["virt.virtink.smartx.com/v1alpha1"];

/// Name used when the VM object has no `metadata.name`.
pub const DEFAULT_VM_NAME: &str = "vm";

/// A type or shape problem in the VM object (e.g. a string where a number
/// belongs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for SchemaIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a spec file could not be turned into a [`VmSpec`].
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax error. `document` is 1-based; `line`/`column` (1-based)
    /// are positions in the whole input when serde_yaml knows them.
    #[error("YAML error in document {document}")]
    Yaml {
        document: usize,
        line: Option<usize>,
        column: Option<usize>,
        #[source]
        source: serde_yaml::Error,
    },
    #[error(
        "no VM object found in {documents} YAML document(s); expected a kubevirt.io \
         VirtualMachineInstance/VirtualMachine or a virt.virtink.smartx.com VirtualMachine"
    )]
    NoVmObject { documents: usize },
    #[error("several VM objects in one file: {}; keep exactly one", objects.join(", "))]
    SeveralVmObjects {
        /// `Kind/name (document N)` for each VM object found.
        objects: Vec<String>,
    },
    #[error(
        "document {document}: apiVersion: {api_version:?} is not supported for kind {kind}; \
         use one of {}",
        supported.join(", ")
    )]
    UnsupportedApiVersion {
        document: usize,
        kind: String,
        api_version: String,
        supported: Vec<String>,
    },
    #[error("document {document}: invalid VM object:\n{}", issues.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Schema {
        document: usize,
        issues: Vec<SchemaIssue>,
    },
}

/// Reads and parses a spec file; `-` reads standard input.
pub fn load_file(path: &Path) -> Result<VmSpec, SpecError> {
    let io = |source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(io)?;
        text
    } else {
        std::fs::read_to_string(path).map_err(io)?
    };
    parse_str(&text)
}

fn yaml_error(document: usize, source: serde_yaml::Error) -> SpecError {
    if let Some(issue) = too_big_integer(&source) {
        return SpecError::Schema {
            document,
            issues: vec![issue],
        };
    }
    let loc = source.location();
    SpecError::Yaml {
        document,
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        source,
    }
}

/// serde_yaml cannot hold an integer beyond 64 bits and reports it as
/// "path: invalid type: integer `N` as u128, …": that is a range problem.
fn too_big_integer(e: &serde_yaml::Error) -> Option<SchemaIssue> {
    let text = e.to_string();
    let (path, rest) = text.split_once(": invalid type: integer `")?;
    let (number, rest) = rest.split_once('`')?;
    rest.starts_with(" as u128").then(|| SchemaIssue {
        path: path.to_string(),
        message: format!("{number} is out of range"),
    })
}

/// Parses multi-document YAML text and returns the single VM object in it.
pub fn parse_str(yaml: &str) -> Result<VmSpec, SpecError> {
    // Editors on Windows start files with a byte-order mark.
    let yaml = yaml.strip_prefix('\u{feff}').unwrap_or(yaml);
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let mut value = Value::deserialize(de).map_err(|e| yaml_error(i + 1, e))?;
        value.apply_merge().map_err(|e| yaml_error(i + 1, e))?;
        docs.push(value);
    }
    let sorted = sort_documents(&docs)?;
    let (document, spec_kind, doc) = match sorted.candidates.as_slice() {
        [] => {
            return Err(SpecError::NoVmObject {
                documents: docs.len(),
            })
        }
        [c] => (c.document, c.spec_kind, c.doc),
        several => {
            return Err(SpecError::SeveralVmObjects {
                objects: several
                    .iter()
                    .map(|c| format!("{}/{} (document {})", c.kind, c.name, c.document))
                    .collect(),
            })
        }
    };
    let mut w = Walker {
        warnings: sorted.warnings,
        issues: Vec::new(),
    };
    let mut spec = VmSpec::empty(spec_kind, document, sorted.attachments);
    if let Some(root) = w.map(doc, "") {
        parse_object(root, &mut spec, &mut w);
    }
    if !w.issues.is_empty() {
        return Err(SpecError::Schema {
            document,
            issues: w.issues,
        });
    }
    spec.warnings = w.warnings;
    Ok(spec)
}

/// A document that holds a VM object.
struct Candidate<'a> {
    document: usize,
    spec_kind: SpecKind,
    doc: &'a Value,
    kind: String,
    name: String,
}

/// The documents of a file, sorted: VM objects, network attachments, and
/// warnings for the rest.
struct Sorted<'a> {
    candidates: Vec<Candidate<'a>>,
    attachments: Vec<NetworkAttachment>,
    warnings: Vec<String>,
}

fn sort_documents(docs: &[Value]) -> Result<Sorted<'_>, SpecError> {
    let mut out = Sorted {
        candidates: Vec::new(),
        attachments: Vec::new(),
        warnings: Vec::new(),
    };
    for (document, doc) in expand_lists(docs) {
        let Value::Mapping(map) = doc else {
            if !doc.is_null() {
                out.warnings
                    .push(format!("document {document}: not a mapping, ignored"));
            }
            continue;
        };
        let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
        let kind = text("kind").unwrap_or_default();
        let api_version = text("apiVersion").unwrap_or_default();
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match classify(doc, &kind, &api_version, document)? {
            Some(spec_kind) => out.candidates.push(Candidate {
                document,
                spec_kind,
                doc,
                kind,
                name,
            }),
            None if kind == "NetworkAttachmentDefinition" => {
                out.attachments.push(network_attachment(doc, name));
            }
            None => {
                let what = if kind.is_empty() {
                    "object without kind"
                } else {
                    &kind
                };
                out.warnings.push(format!(
                    "document {document} ({what} {name}): not a VM object, ignored"
                ));
            }
        }
    }
    Ok(out)
}

/// The documents with each `kind: List` (what `kubectl get -o yaml`
/// writes) replaced by its items; each keeps its document's 1-based number.
fn expand_lists(docs: &[Value]) -> Vec<(usize, &Value)> {
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let doc = walk::untag(doc);
        let is_list = doc.get("kind").and_then(Value::as_str) == Some("List");
        match doc.get("items").and_then(Value::as_sequence) {
            Some(items) if is_list => out.extend(items.iter().map(|v| (i + 1, walk::untag(v)))),
            _ => out.push((i + 1, doc)),
        }
    }
    out
}

impl VmSpec {
    /// A spec with nothing parsed yet.
    fn empty(kind: SpecKind, document: usize, attachments: Vec<NetworkAttachment>) -> Self {
        VmSpec {
            kind,
            name: String::new(),
            namespace: None,
            api_version: String::new(),
            document,
            annotations: Default::default(),
            cpu: CpuSpec::default(),
            memory: None,
            kernel: KernelSpec::default(),
            interfaces: Vec::new(),
            networks: Vec::new(),
            interfaces_path: String::new(),
            networks_path: String::new(),
            memory_path: String::new(),
            autoattach_pod_interface: None,
            network_interface_multiqueue: false,
            termination_grace_period: None,
            network_attachments: attachments,
            warnings: Vec::new(),
        }
    }
}

/// Decides whether a document is a VM object, and of which flavour.
fn classify(
    doc: &Value,
    kind: &str,
    api_version: &str,
    document: usize,
) -> Result<Option<SpecKind>, SpecError> {
    let spec = doc.get("spec");
    let has = |k: &str| spec.and_then(|s| s.get(k)).is_some();
    let kubevirt = KUBEVIRT_API_VERSIONS.contains(&api_version);
    let virtink = VIRTINK_API_VERSIONS.contains(&api_version);
    let missing = api_version.is_empty();
    let found = match kind {
        "VirtualMachineInstance" if kubevirt || missing => Some(SpecKind::KubeVirtVmi),
        "VirtualMachine" if kubevirt => Some(SpecKind::KubeVirtVm),
        "VirtualMachine" if virtink => Some(SpecKind::Virtink),
        "VirtualMachine" if missing && has("instance") => Some(SpecKind::Virtink),
        "VirtualMachine" if missing => Some(SpecKind::KubeVirtVm),
        // The legacy KubeVirt kind used throughout older docs: a VMI-shaped
        // object (spec.domain), or VM-shaped if it has spec.template.
        "VM" if (kubevirt || missing) && has("template") => Some(SpecKind::KubeVirtVm),
        "VM" if kubevirt || missing => Some(SpecKind::KubeVirtVmi),
        "VirtualMachineInstance" | "VirtualMachine" | "VM" => {
            let supported: Vec<String> = match kind {
                "VirtualMachine" => KUBEVIRT_API_VERSIONS
                    .iter()
                    .chain(VIRTINK_API_VERSIONS)
                    .map(|s| s.to_string())
                    .collect(),
                _ => KUBEVIRT_API_VERSIONS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            return Err(SpecError::UnsupportedApiVersion {
                document,
                kind: kind.to_string(),
                api_version: api_version.to_string(),
                supported,
            });
        }
        _ => None,
    };
    Ok(found)
}

fn network_attachment(doc: &Value, name: String) -> NetworkAttachment {
    let meta = doc.get("metadata");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    NetworkAttachment {
        name,
        namespace: text(meta.and_then(|m| m.get("namespace"))),
        resource_name: text(
            meta.and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("k8s.v1.cni.cncf.io/resourceName")),
        ),
        config: text(doc.get("spec").and_then(|s| s.get("config"))),
    }
}

/// Walks the top level of the VM object: apiVersion, kind, metadata, spec.
fn parse_object(mut root: MapView<'_>, spec: &mut VmSpec, w: &mut Walker) {
    if let Some((v, p)) = root.take("apiVersion") {
        if let Some(f) = w.string(v, &p) {
            spec.api_version = f.value;
        }
    }
    if spec.api_version.is_empty() {
        let assumed = match spec.kind {
            SpecKind::Virtink => VIRTINK_API_VERSIONS[0],
            _ => KUBEVIRT_API_VERSIONS[0],
        };
        w.warnings
            .push(format!("apiVersion: missing; assuming {assumed}"));
    }
    if let Some((v, p)) = root.take("kind") {
        if let Some(k) = w.string(v, &p) {
            if k.value == "VM" {
                w.warnings.push(format!(
                    "kind: \"VM\" is the legacy KubeVirt kind; treated as {}",
                    spec.kind.describe()
                ));
            }
        }
    }
    if let Some((v, p)) = root.take("metadata") {
        parse_metadata(v, &p, spec, w);
    }
    if spec.name.is_empty() {
        w.warnings
            .push(format!("metadata.name: missing; using {DEFAULT_VM_NAME:?}"));
        spec.name = DEFAULT_VM_NAME.to_string();
    }
    match root.take("spec") {
        Some((v, p)) => match spec.kind {
            SpecKind::KubeVirtVmi => kubevirt::parse_vmi_spec(v, &p, spec, w),
            SpecKind::KubeVirtVm => kubevirt::parse_vm_spec(v, &p, spec, w),
            SpecKind::Virtink => virtink::parse_spec(v, &p, spec, w),
        },
        None => w.issue("spec", "required field missing"),
    }
    root.finish(w, &[("status", "status is written by the cluster")]);
}

/// Reads name, namespace and annotations; other metadata (labels, uid, ...)
/// is Kubernetes bookkeeping and silently ignored.
pub(crate) fn parse_metadata(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    let Some(mut meta) = w.map(v, path) else {
        return;
    };
    let name = meta
        .take("name")
        .or_else(|| meta.take("generateName"))
        .and_then(|(v, p)| w.string(v, &p));
    if let Some(name) = name {
        spec.name = name.value;
    }
    if let Some(ns) = meta.take("namespace").and_then(|(v, p)| w.string(v, &p)) {
        spec.namespace = Some(ns.value);
    }
    if let Some((v, p)) = meta.take("annotations") {
        for (k, f) in w.string_map(v, &p) {
            spec.annotations.insert(k, f);
        }
    }
}
