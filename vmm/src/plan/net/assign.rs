//! MAC addresses and PCI slots: explicit ones checked, the rest assigned.

use super::*;

/// Parses the values interfaces set in one field (`field`), reporting bad
/// ones and repeats (at the later occurrence). Returns each draft's value
/// and the valid values with the path that first set each, so the caller
/// can fill in the rest without clashing.
pub(super) fn parse_explicit<'a, T: Ord + Copy, E: std::fmt::Display>(
    drafts: &[Draft<'a>],
    field: impl Fn(&'a InterfaceSpec) -> Option<&'a Field<String>>,
    parse: impl Fn(&str) -> Result<T, E>,
    plural: &str,
    errors: &mut Vec<FieldError>,
) -> (Vec<Option<T>>, BTreeMap<T, &'a str>) {
    let mut out = Vec::new();
    let mut used = BTreeMap::new();
    for d in drafts {
        let Some(f) = field(d.iface) else {
            out.push(None);
            continue;
        };
        match parse(&f.value) {
            Ok(v) => {
                if let Some(first) = used.get(&v) {
                    errors.push(FieldError::new(
                        &f.path,
                        &f.value,
                        format!("is used twice (also {first}); {plural} must be unique"),
                    ));
                } else {
                    used.insert(v, f.path.as_str());
                }
                out.push(Some(v));
            }
            Err(e) => {
                errors.push(FieldError::new(&f.path, &f.value, e.to_string()));
                out.push(None);
            }
        }
    }
    (out, used)
}

/// Explicit MACs are checked; the others are derived from the names.
pub(super) fn assign_macs(
    spec: &VmSpec,
    drafts: &[Draft<'_>],
    errors: &mut Vec<FieldError>,
) -> Vec<Option<MacAddr>> {
    let (mut out, mut used) = parse_explicit(
        drafts,
        |i| i.mac.as_ref(),
        MacAddr::parse_unicast,
        "MAC addresses",
        errors,
    );
    // `namespace/name`: a Kubernetes name has no '/', so two VMs of one
    // name in two namespaces get different MACs and no pair aliases.
    let vm = match &spec.namespace {
        Some(ns) => format!("{ns}/{}", spec.name),
        None => spec.name.clone(),
    };
    for (d, slot) in drafts.iter().zip(out.iter_mut()) {
        if d.iface.mac.is_some() {
            continue;
        }
        let mut salt = 0;
        let mut mac = generate_mac(&vm, &d.iface.name.value, salt);
        while used.contains_key(&mac) {
            salt += 1;
            mac = generate_mac(&vm, &d.iface.name.value, salt);
        }
        used.insert(mac, &d.iface.path);
        *slot = Some(mac);
    }
    out
}

/// Explicit PCI addresses are checked; the others get free slots in order.
pub(super) fn assign_pci(
    drafts: &[Draft<'_>],
    errors: &mut Vec<FieldError>,
) -> Vec<Option<PciAddress>> {
    let (mut out, used) = parse_explicit(
        drafts,
        |i| i.pci_address.as_ref(),
        PciAddress::parse_for_device,
        "PCI addresses",
        errors,
    );
    let mut alloc = SlotAllocator::new(used.keys().copied());
    for (d, slot) in drafts.iter().zip(out.iter_mut()) {
        if d.iface.pci_address.is_some() {
            continue;
        }
        *slot = alloc.allocate();
        if slot.is_none() {
            errors.push(FieldError::new(
                &d.iface.path,
                "",
                "gets no PCI slot: bus 0000:00 slots 02-1f are all used; petrel has one PCI \
                 bus, so use fewer interfaces",
            ));
        }
    }
    out
}
