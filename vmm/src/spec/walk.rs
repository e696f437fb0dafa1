//! A small path-tracking walker over `serde_yaml::Value`.
//!
//! The spec model is extracted by hand rather than with `#[derive(Deserialize)]`
//! so that (a) fields petrel does not model never make the parse fail, (b) every
//! ignored field is reported as a warning with its path, and (c) type mismatches
//! are reported with the exact field path, all of them at once.

use serde_yaml::{Mapping, Value};

use super::{Field, SchemaIssue};

/// Collects warnings and schema issues while walking one document.
#[derive(Debug, Default)]
pub(crate) struct Walker {
    pub warnings: Vec<String>,
    pub issues: Vec<SchemaIssue>,
}

/// Strips YAML tags (`!foo value`), which petrel does not interpret.
pub(crate) fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

fn type_name(v: &Value) -> &'static str {
    match untag(v) {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Renders a mapping key for use in a path.
pub(crate) fn key_text(k: &Value) -> String {
    match untag(k) {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Joins a parent path and a key; keys that are not plain identifiers are
/// bracket-quoted, e.g. `metadata.annotations["petrel.io/tap.net0"]`.
pub(crate) fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

/// A view of one mapping that remembers which keys were consumed, so the
/// remaining ones can be reported by [`MapView::finish`].
pub(crate) struct MapView<'a> {
    pub path: String,
    map: &'a Mapping,
    used: Vec<String>,
}

impl<'a> MapView<'a> {
    /// Returns the value of `key` (marking it as used) and its path.
    pub fn take(&mut self, key: &str) -> Option<(&'a Value, String)> {
        self.used.push(key.to_string());
        self.map.get(key).map(|v| (untag(v), join(&self.path, key)))
    }

    /// Returns true if the key is present (even with a null value).
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Reports every key not consumed: keys in `out_of_scope` as
    /// "ignored (reason)", all others as unknown fields.
    pub fn finish(self, w: &mut Walker, out_of_scope: &[(&str, &str)]) {
        for (k, _) in self.map {
            let key = key_text(k);
            if self.used.contains(&key) {
                continue;
            }
            let path = join(&self.path, &key);
            match out_of_scope.iter().find(|(name, _)| *name == key) {
                Some((_, reason)) => w.warnings.push(format!("{path}: ignored ({reason})")),
                None => {
                    let known = self
                        .used
                        .iter()
                        .map(String::as_str)
                        .chain(out_of_scope.iter().map(|(name, _)| *name));
                    match closest(&key, known) {
                        Some(near) => w.warnings.push(format!(
                            "{path}: unknown field {key}, ignored; did you mean {near}?"
                        )),
                        None => w.warnings.push(format!("{path}: unknown field, ignored")),
                    }
                }
            }
        }
    }
}

/// The known key `key` is most likely a typo of: at most two edits away
/// (one for short keys), or the same ignoring case.
fn closest<'k>(key: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let limit = if key.chars().count() <= 4 { 1 } else { 2 };
    known
        .filter(|k| *k != key)
        .map(|k| {
            let d = if k.eq_ignore_ascii_case(key) {
                0
            } else {
                edit_distance(key, k)
            };
            (d, k)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a transposition counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![(0..=b.len()).collect::<Vec<_>>(); a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

impl Walker {
    pub fn issue(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(SchemaIssue {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, path: &str, expected: &str, v: &Value) {
        self.issue(path, format!("expected {expected}, found {}", type_name(v)));
    }

    /// A mapping; `null` counts as an empty/absent mapping (returns None).
    pub fn map<'a>(&mut self, v: &'a Value, path: &str) -> Option<MapView<'a>> {
        match untag(v) {
            Value::Mapping(map) => Some(MapView {
                path: path.to_string(),
                map,
                used: Vec::new(),
            }),
            Value::Null => None,
            other => {
                self.wrong_type(path, "a mapping", other);
                None
            }
        }
    }

    /// A list; `null` is an empty list. Items come with their indexed paths.
    pub fn seq<'a>(&mut self, v: &'a Value, path: &str) -> Vec<(&'a Value, String)> {
        match untag(v) {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (untag(item), format!("{path}[{i}]")))
                .collect(),
            Value::Null => Vec::new(),
            other => {
                self.wrong_type(path, "a list", other);
                Vec::new()
            }
        }
    }

    /// The items of the list under `key` of `m` that `parse` accepts (it
    /// reports the others).
    pub fn list<T>(
        &mut self,
        m: &mut MapView<'_>,
        key: &str,
        mut parse: impl FnMut(&Value, &str, &mut Walker) -> Option<T>,
    ) -> Vec<T> {
        let Some((v, path)) = m.take(key) else {
            return Vec::new();
        };
        self.seq(v, &path)
            .into_iter()
            .filter_map(|(item, p)| parse(item, &p, self))
            .collect()
    }

    /// A string field. `null` is treated as absent.
    pub fn string(&mut self, v: &Value, path: &str) -> Option<Field<String>> {
        match untag(v) {
            Value::String(s) => Some(Field::new(s.clone(), path)),
            Value::Null => None,
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    /// A string or a number rendered as text (quantities, e.g. `memory: 1024`).
    pub fn scalar_text(&mut self, v: &Value, path: &str) -> Option<Field<String>> {
        match untag(v) {
            Value::String(s) => Some(Field::new(s.clone(), path)),
            Value::Number(n) => Some(Field::new(n.to_string(), path)),
            Value::Null => None,
            other => {
                self.wrong_type(path, "a string or number", other);
                None
            }
        }
    }

    /// An integer field (range is checked later, by the plan).
    pub fn int(&mut self, v: &Value, path: &str) -> Option<Field<i64>> {
        match untag(v) {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(Field::new(i, path)),
                // A whole number too large for 64 bits (YAML reads it as
                // u64 or float): its range is what is wrong.
                None if n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                    self.issue(path, format!("{n} is out of range"));
                    None
                }
                None => {
                    self.issue(path, format!("expected an integer, found {n}"));
                    None
                }
            },
            Value::Null => None,
            other => {
                self.wrong_type(path, "an integer", other);
                None
            }
        }
    }

    /// A boolean field.
    pub fn bool(&mut self, v: &Value, path: &str) -> Option<bool> {
        match untag(v) {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            other => {
                self.wrong_type(path, "true or false", other);
                None
            }
        }
    }

    /// A string-to-string map such as `metadata.annotations`.
    pub fn string_map(&mut self, v: &Value, path: &str) -> Vec<(String, Field<String>)> {
        let Some(view) = self.map(v, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, val) in view.map {
            let key = key_text(k);
            let p = join(path, &key);
            if let Some(f) = self.scalar_text(val, &p) {
                out.push((key, f));
            }
        }
        out
    }
}
