//! [`BindingGuard`]: the list of changes a binding made, undone in reverse
//! order on drop.

use super::bridge;
use crate::netlink::Netlink;
use crate::nft;

/// One change to undo.
#[derive(Debug, Clone)]
pub(super) enum UndoStep {
    /// Delete a link (bridge or tap); absent is fine.
    DeleteLink(String),
    /// Put the pod interface back as it was before the bridge binding.
    RestorePodIface(bridge::PodIfaceState),
    /// Delete the nft table of these rules; absent is fine.
    DeleteNftTable(nft::MasqueradeRules),
}

impl UndoStep {
    fn run(&self, nl: Option<&mut Netlink>, errors: &mut Vec<String>) {
        match self {
            UndoStep::DeleteNftTable(rules) => {
                if let Err(e) = nft::apply(&rules.delete_json()) {
                    errors.push(format!("delete nft table {}: {e}", rules.table));
                }
            }
            UndoStep::DeleteLink(name) => match nl {
                Some(nl) => {
                    if let Err(e) = nl.delete_link_if_exists(name) {
                        errors.push(e.to_string());
                    }
                }
                None => errors.push(format!("delete link {name}: no netlink socket")),
            },
            UndoStep::RestorePodIface(state) => match nl {
                Some(nl) => errors.extend(state.restore(nl)),
                None => errors.push(format!("restore {}: no netlink socket", state.iface)),
            },
        }
    }
}

/// Undoes a binding's changes in reverse order; see the [module docs](self).
#[derive(Debug, Default)]
pub struct BindingGuard {
    steps: Vec<UndoStep>,
}

impl BindingGuard {
    pub(super) fn push(&mut self, step: UndoStep) {
        self.steps.push(step);
    }

    /// Number of changes still to undo.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there is nothing to undo.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Keeps every change: the guard forgets them without undoing any (a
    /// privileged `net-setup` leaves its plumbing for the unprivileged
    /// VMM; `net-teardown` removes it by name).
    pub fn keep(mut self) {
        self.steps.clear();
    }

    /// Undoes everything now, in reverse order, carrying on past failures,
    /// and returns a description of each failure.
    pub fn teardown(mut self) -> Vec<String> {
        self.run()
    }

    fn run(&mut self) -> Vec<String> {
        let steps = std::mem::take(&mut self.steps);
        let mut errors = Vec::new();
        if steps.is_empty() {
            return errors;
        }
        let mut nl = match Netlink::new() {
            Ok(nl) => Some(nl),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        for step in steps.iter().rev() {
            step.run(nl.as_mut(), &mut errors);
        }
        tracing::info!(
            steps = steps.len(),
            failed = errors.len(),
            "pod network plumbing removed"
        );
        errors
    }
}

impl Drop for BindingGuard {
    fn drop(&mut self) {
        for error in self.run() {
            tracing::warn!(%error, "network binding teardown");
        }
    }
}
