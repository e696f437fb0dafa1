//! Per-interface fields: NIC model, boot order and link state.

use super::*;

pub(super) fn model(iface: &InterfaceSpec, errors: &mut Vec<FieldError>) -> NicModel {
    let Some(f) = &iface.model else {
        return NicModel::VirtioNet;
    };
    NicModel::from_kubevirt(&f.value).unwrap_or_else(|| {
        let all: Vec<&str> = NicModel::ALL.iter().map(|m| m.as_str()).collect();
        errors.push(FieldError::new(
            &f.path,
            &f.value,
            format!("is not a known NIC model; use one of {}", all.join(", ")),
        ));
        NicModel::VirtioNet
    })
}

pub(super) fn boot_order(
    iface: &InterfaceSpec,
    seen: &mut BTreeMap<u32, String>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> Option<u32> {
    let f = iface.boot_order.as_ref()?;
    match u32::try_from(f.value) {
        Ok(v) if v >= 1 => {
            warnings.push(format!(
                "{}: has no effect; petrel boots the kernel directly and has no firmware \
                 that could boot from this interface",
                f.path
            ));
            if let Some(first) = seen.get(&v) {
                errors.push(FieldError::new(
                    &f.path,
                    v.to_string(),
                    format!("is used twice (also {first}); boot orders must be unique"),
                ));
            } else {
                seen.insert(v, f.path.clone());
            }
            Some(v)
        }
        _ => {
            errors.push(FieldError::new(
                &f.path,
                f.value.to_string(),
                "is out of range; use 1 or greater",
            ));
            None
        }
    }
}

/// KubeVirt's interface `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkState {
    Up,
    /// Attached with the link down.
    Down,
    /// Not attached at all.
    Absent,
}

pub(super) fn link_state(
    iface: &InterfaceSpec,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> LinkState {
    let Some(f) = &iface.state else {
        return LinkState::Up;
    };
    match f.value.as_str() {
        "" | "up" => LinkState::Up,
        "down" => LinkState::Down,
        "absent" => {
            warnings.push(format!(
                "{}: absent; interface {:?} is not attached",
                f.path, iface.name.value
            ));
            LinkState::Absent
        }
        _ => {
            errors.push(FieldError::new(
                &f.path,
                &f.value,
                "is not an interface state; use up, down or absent",
            ));
            LinkState::Up
        }
    }
}
