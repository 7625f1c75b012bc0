//! A record's recent changes, bounded in count and bytes: kept by the memory store and by each
//! `RecordActor` (Redis keeps its own in a list, trimmed the same way by `lua/write.lua`).

use super::{Change, HistoryLimits};
use crate::model::Version;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;

/// Contiguous changes, oldest first, each with its serialized size.
#[derive(Debug, Clone, Default)]
pub struct History {
    changes: VecDeque<(Change, usize)>,
    bytes: usize,
}

impl History {
    /// Appends the change that led to `version`, then drops the oldest beyond `limits`. Without
    /// a patch (a creation, a jump, history off) it starts over: nothing before `version` can
    /// be followed any more.
    pub fn record(&mut self, version: Version, patch: Option<&Arc<Value>>, limits: HistoryLimits) {
        let Some(patch) = patch.filter(|_| limits.versions > 0) else {
            return self.clear();
        };
        if self.last_version().is_some_and(|last| last + 1 != version) {
            self.clear();
        }
        let size = crate::model::serialized_len(patch.as_ref());
        let change = Change {
            version,
            patch: Arc::clone(patch),
        };
        self.changes.push_back((change, size));
        self.bytes += size;
        while self.changes.len() > limits.versions || self.bytes > limits.bytes {
            match self.changes.pop_front() {
                Some((_, size)) => self.bytes -= size,
                None => break,
            }
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.changes.clear();
        self.bytes = 0;
    }

    /// Bytes of serialized patches kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The version of the newest change kept.
    pub fn last_version(&self) -> Option<Version> {
        self.changes.back().map(|(c, _)| c.version)
    }

    /// The changes after `since`, when the history reaches back that far.
    pub fn since(&self, since: Version) -> Option<Vec<Change>> {
        let (first, _) = self.changes.front()?;
        (first.version <= since + 1).then(|| {
            self.changes
                .iter()
                .filter(|(c, _)| c.version > since)
                .map(|(c, _)| c.clone())
                .collect()
        })
    }

    /// Every change kept, oldest first.
    pub fn all(&self) -> Vec<Change> {
        self.changes.iter().map(|(c, _)| c.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(n: u64) -> Arc<Value> {
        Arc::new(json!([{"op": "replace", "path": "/n", "value": n}]))
    }

    #[test]
    fn trims_by_count_and_bytes_and_starts_over_on_a_gap() {
        let limits = HistoryLimits {
            versions: 3,
            bytes: 1 << 20,
        };
        let mut history = History::default();
        for v in 1..=5 {
            history.record(v, Some(&patch(v)), limits);
        }
        assert_eq!(history.since(2).map(|c| c.len()), Some(3));
        assert_eq!(history.since(1), None, "2 was dropped");
        let size = crate::model::serialized_len(patch(1).as_ref());
        let tight = HistoryLimits {
            versions: 100,
            bytes: 2 * size,
        };
        for v in 6..=8 {
            history.record(v, Some(&patch(v)), tight);
        }
        assert_eq!(history.since(6).map(|c| c.len()), Some(2));
        history.record(10, Some(&patch(10)), limits);
        assert_eq!(history.all().len(), 1, "a gap starts over");
        history.record(11, None, limits);
        assert_eq!(history.last_version(), None, "a creation starts over");
    }
}
