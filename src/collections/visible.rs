//! What one subscriber sees of a collection's window. Usually all of it (no member's read
//! guard refuses it), which is stored as one word rather than one id per member: at 1,000
//! members and 1,000 subscribers the difference is ~50 MB.

use super::membership::Membership;
use crate::model::RecordId;
use std::collections::HashSet;

/// See the module docs.
#[derive(Debug, PartialEq)]
pub(super) enum Visible {
    /// The whole window.
    Window,
    /// Only these members of the window.
    Only(HashSet<RecordId>),
}

impl Visible {
    /// From the window's members this subscriber may read (`readable`, out of `window_len`).
    pub(super) fn from_readable(window_len: usize, readable: Vec<RecordId>) -> Self {
        if readable.len() == window_len {
            Visible::Window
        } else {
            Visible::Only(readable.into_iter().collect())
        }
    }

    /// Whether the subscriber sees `id` (a member of the window).
    pub(super) fn contains(&self, id: &RecordId, membership: &Membership) -> bool {
        match self {
            Visible::Window => membership.shows(id),
            Visible::Only(ids) => ids.contains(id),
        }
    }

    /// `id` left the window: whether the subscriber had seen it.
    pub(super) fn leave(&mut self, id: &RecordId) -> bool {
        match self {
            Visible::Window => true,
            Visible::Only(ids) => ids.remove(id),
        }
    }

    /// `added` entered the window (already applied to `membership`); the subscriber may read
    /// `entering` of them.
    pub(super) fn enter(
        &mut self,
        added: &[RecordId],
        entering: &HashSet<RecordId>,
        membership: &Membership,
    ) {
        match self {
            Visible::Window if entering.len() == added.len() => {}
            Visible::Window => {
                let refused: HashSet<&RecordId> =
                    added.iter().filter(|id| !entering.contains(*id)).collect();
                let shown = membership.window();
                let only = shown.into_iter().filter(|id| !refused.contains(id));
                *self = Visible::Only(only.collect());
            }
            Visible::Only(ids) => ids.extend(entering.iter().cloned()),
        }
    }

    /// Every id the subscriber sees.
    pub(super) fn ids(&self, membership: &Membership) -> HashSet<RecordId> {
        match self {
            Visible::Window => membership.window().into_iter().collect(),
            Visible::Only(ids) => ids.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Versioned;
    use serde_json::json;
    use std::sync::Arc;

    fn id(text: &str) -> RecordId {
        RecordId::parse(text, 64).unwrap()
    }

    fn membership(ids: &[&str]) -> Membership {
        let mut m = Membership::new(None, None);
        let record = Versioned {
            value: Arc::new(json!(1)),
            version: 1,
        };
        m.apply(ids.iter().map(|t| (id(t), Some(record.clone()))).collect());
        m
    }

    #[test]
    fn a_subscriber_that_reads_everything_stores_nothing_until_a_member_is_refused() {
        let m = membership(&["a", "b", "c"]);
        let mut seen = Visible::from_readable(2, vec![id("a"), id("b")]);
        assert_eq!(seen, Visible::Window);
        // c entered and may be read: still the whole window.
        seen.enter(&[id("c")], &HashSet::from([id("c")]), &m);
        assert_eq!(seen, Visible::Window);
        assert!(seen.contains(&id("c"), &m));
        // d entered and is refused: from now on, the list.
        let m = membership(&["a", "b", "c", "d"]);
        seen.enter(&[id("d")], &HashSet::new(), &m);
        assert!(!seen.contains(&id("d"), &m));
        assert_eq!(seen.ids(&m), HashSet::from([id("a"), id("b"), id("c")]));
        assert!(seen.leave(&id("a")));
        assert!(!seen.leave(&id("d")));
    }
}
