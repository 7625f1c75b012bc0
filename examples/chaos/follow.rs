//! What one subscriber knows of one record, and the checks each push must pass.
//!
//! Pure code: the subscriber task feeds it replies and pushes in arrival order.

use serde_json::Value;

/// Where the subscription of one record stands.
#[derive(Clone, Debug, PartialEq)]
pub enum View {
    /// A subscribe is on its way (first time, after a deletion, or after a reconnect).
    Waiting,
    /// Subscribed: the value (`None` while the record does not exist) at `version`.
    Live { value: Option<Value>, version: u64 },
    /// `mesh/record-deleted` arrived; the subscription has ended.
    Deleted { version: u64 },
}

/// A broken promise seen at a subscriber.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// A version at or below one already seen in the same subscription.
    Backwards {
        kind: &'static str,
        had: u64,
        got: u64,
    },
    /// A patch that does not follow the previous version: versions were skipped without a
    /// full value to resync.
    Gap { had: u64, got: u64 },
    /// A patch that does not apply to the value it should apply to.
    BadPatch { version: u64, error: String },
}

/// One record at one subscriber.
#[derive(Clone, Debug)]
pub struct Follow {
    pub view: View,
    /// Highest version seen over every subscription of this record, for the snapshot check.
    pub highest: u64,
}

impl Default for Follow {
    fn default() -> Self {
        Follow {
            view: View::Waiting,
            highest: 0,
        }
    }
}

/// What a push did to the view.
#[derive(Debug, PartialEq)]
pub enum Applied {
    /// The view moved to the new version.
    Moved,
    /// Nothing is subscribed (a push before the subscribe reply or after a deletion):
    /// nothing to check it against.
    Stray,
    /// A promise was broken; the view cannot be trusted and must be resubscribed.
    Broken(Finding),
}

impl Follow {
    /// The subscribe reply: a fresh view. A snapshot older than a version this subscriber
    /// already saw means the store went back in time (reported, and the view is taken anyway).
    pub fn snapshot(&mut self, value: Option<Value>, version: u64) -> Option<Finding> {
        let finding = (version < self.highest).then_some(Finding::Backwards {
            kind: "snapshot",
            had: self.highest,
            got: version,
        });
        self.highest = self.highest.max(version);
        self.view = View::Live { value, version };
        finding
    }

    /// A `mesh/record-update` with a full value (in patch mode: a resync, which may skip).
    pub fn full(&mut self, value: Value, version: u64) -> Applied {
        let View::Live { version: had, .. } = self.view else {
            return Applied::Stray;
        };
        if version <= had {
            return Applied::Broken(Finding::Backwards {
                kind: "full",
                had,
                got: version,
            });
        }
        self.moved(Some(value), version)
    }

    /// A `mesh/record-update` with a patch from `version - 1` to `version`.
    pub fn patch(&mut self, patch: &Value, version: u64) -> Applied {
        let View::Live {
            value,
            version: had,
        } = &self.view
        else {
            return Applied::Stray;
        };
        let had = *had;
        if version <= had {
            return Applied::Broken(Finding::Backwards {
                kind: "patch",
                had,
                got: version,
            });
        }
        if version != had + 1 {
            return Applied::Broken(Finding::Gap { had, got: version });
        }
        // A record that did not exist counts as `{}`.
        let mut next = value
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let applied = serde_json::from_value::<json_patch::Patch>(patch.clone())
            .map_err(|e| e.to_string())
            .and_then(|p| json_patch::patch(&mut next, &p).map_err(|e| e.to_string()));
        match applied {
            Ok(()) => self.moved(Some(next), version),
            Err(error) => Applied::Broken(Finding::BadPatch { version, error }),
        }
    }

    /// `mesh/record-deleted` with the record's last version; the subscription ends.
    pub fn deleted(&mut self, version: u64) -> Applied {
        let View::Live { version: had, .. } = self.view else {
            return Applied::Stray;
        };
        self.view = View::Deleted { version };
        self.highest = self.highest.max(version);
        if version < had {
            return Applied::Broken(Finding::Backwards {
                kind: "deleted",
                had,
                got: version,
            });
        }
        Applied::Moved
    }

    fn moved(&mut self, value: Option<Value>, version: u64) -> Applied {
        self.highest = self.highest.max(version);
        self.view = View::Live { value, version };
        Applied::Moved
    }

    /// The value this subscriber shows, if it is subscribed: `Some(None)` means "absent".
    pub fn shown(&self) -> Option<(Option<&Value>, u64)> {
        match &self.view {
            View::Live { value, version } => Some((value.as_ref(), *version)),
            View::Deleted { version } => Some((None, *version)),
            View::Waiting => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_patches_and_resyncs() {
        let mut f = Follow::default();
        assert_eq!(f.full(json!({}), 1), Applied::Stray);
        assert_eq!(f.snapshot(None, 0), None);
        let add = json!([{"op": "add", "path": "/n", "value": 1}]);
        assert_eq!(f.patch(&add, 1), Applied::Moved);
        assert_eq!(f.shown(), Some((Some(&json!({"n": 1})), 1)));
        // A full value may skip versions; a patch may not.
        assert_eq!(f.full(json!({"n": 5}), 5), Applied::Moved);
        let set = json!([{"op": "replace", "path": "/n", "value": 7}]);
        assert_eq!(
            f.patch(&set, 7),
            Applied::Broken(Finding::Gap { had: 5, got: 7 })
        );
        assert_eq!(f.patch(&set, 6), Applied::Moved);
        assert_eq!(f.shown(), Some((Some(&json!({"n": 7})), 6)));
    }

    #[test]
    fn catches_repeats_and_backwards() {
        let mut f = Follow::default();
        f.snapshot(Some(json!({"n": 3})), 3);
        assert!(matches!(
            f.full(json!({"n": 3}), 3),
            Applied::Broken(Finding::Backwards { kind: "full", .. })
        ));
        assert_eq!(f.deleted(4), Applied::Moved);
        assert_eq!(f.shown(), Some((None, 4)));
        assert_eq!(f.full(json!({}), 5), Applied::Stray);
        assert!(f.snapshot(None, 2).is_some(), "tombstone went back");
        let bad = json!([{"op": "remove", "path": "/missing"}]);
        assert!(matches!(
            f.patch(&bad, 3),
            Applied::Broken(Finding::BadPatch { .. })
        ));
    }
}
