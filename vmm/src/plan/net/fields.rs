//! Field helpers shared by the network rules: uniqueness, required values,
//! one-of-a-kind sections.

use super::*;

/// Reports names used twice (at the later occurrence).
pub(super) fn check_unique<'a>(
    names: impl Iterator<Item = &'a Field<String>>,
    what: &str,
    errors: &mut Vec<FieldError>,
) {
    let mut seen = BTreeMap::new();
    for f in names {
        note_name(&mut seen, f, what, errors);
    }
}

/// Records the name `f`, or reports it when `seen` already has it; `seen`
/// maps each name to where it was first used.
pub(super) fn note_name<'a>(
    seen: &mut BTreeMap<&'a str, &'a str>,
    f: &'a Field<String>,
    what: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(first) = seen.get(f.value.as_str()) {
        errors.push(FieldError::new(
            &f.path,
            &f.value,
            format!("is used by two {what}s (also {first}); {what} names must be unique"),
        ));
    } else {
        seen.insert(&f.value, &f.path);
    }
}

pub(super) fn required(
    f: &Option<Field<String>>,
    path: &str,
    what: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match f {
        Some(f) if !f.value.is_empty() => Some(f.value.clone()),
        Some(f) => {
            errors.push(FieldError::new(&f.path, "", format!("is empty; {what}")));
            None
        }
        None => {
            errors.push(FieldError::new(path, "", format!("is missing; {what}")));
            None
        }
    }
}

/// Reports each of `extras` (paths) as a second `what` of `owner`, which
/// already has `first`: a network takes one source, an interface one
/// binding.
pub(super) fn report_extras<'p>(
    extras: impl Iterator<Item = &'p str>,
    what: &str,
    owner: &str,
    first: &str,
    errors: &mut Vec<FieldError>,
) {
    for path in extras {
        errors.push(FieldError::new(
            path,
            "",
            format!("is a second {what} for {owner} (it already has {first}); keep exactly one"),
        ));
    }
}
