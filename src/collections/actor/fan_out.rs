//! Sending one batch's change to every subscriber: the diff each one's view calls for, then
//! the members' new values (full, or patches for patch subscribers), each frame built once.

use super::{CollectionActor, Subscriber};
use crate::collections::frames;
use crate::collections::membership::{Membership, WindowChange};
use crate::model::{Frame, Mode, RecordId, full_frame, patch_frame};
use std::collections::{HashMap, HashSet};

impl CollectionActor {
    /// Sends `change` to every subscriber; `seen` says which entering members each may read.
    pub(super) fn fan_out(&mut self, change: &WindowChange, seen: Vec<(u64, Vec<RecordId>)>) {
        let member_text = |id: &RecordId, membership: &Membership| {
            frames::member_text(id, membership.get(id).map(|m| &*m.value))
        };
        let added: HashMap<&RecordId, String> = change
            .added
            .iter()
            .map(|id| (id, member_text(id, &self.membership)))
            .collect();
        let removed: HashMap<&RecordId, String> = change
            .removed
            .iter()
            .map(|id| (id, member_text(id, &self.membership)))
            .collect();
        let patches = self.subscribers.values().any(|s| s.mode == Mode::Patch);
        let updates = Updates::new(change, &self.membership, patches);
        let max_bytes = self.hub.max_snapshot_bytes();
        let mut gone = Vec::new();
        for (session, entering) in seen {
            let Some(s) = self.subscribers.get_mut(&session) else {
                continue;
            };
            let entering: HashSet<RecordId> = entering.into_iter().collect();
            let added_texts: Vec<&str> = change
                .added
                .iter()
                .filter(|id| entering.contains(*id))
                .map(|id| added[id].as_str())
                .collect();
            let removed_texts: Vec<&str> = change
                .removed
                .iter()
                .filter(|id| s.visible.leave(id))
                .map(|id| removed[id].as_str())
                .collect();
            s.visible.enter(&change.added, &entering, &self.membership);
            let mut ok = true;
            let members = (&added_texts[..], &removed_texts[..]);
            for frame in frames::diffs(&self.id, members, s.version + 1, max_bytes) {
                s.version += 1;
                ok &= s.outbox.push(frame).is_ok();
            }
            for frame in updates.frames_for(s, &self.membership) {
                ok &= s.outbox.push(frame).is_ok();
            }
            if !ok {
                gone.push(session);
            }
        }
        for session in gone {
            self.subscribers.remove(&session);
        }
    }
}

/// The `mesh/record-update` frames of one batch, built once per kind and shared.
struct Updates {
    /// (id, full frame, patch frame when the change is one version) per updated member.
    frames: Vec<(RecordId, Frame, Option<Frame>)>,
}

impl Updates {
    /// The frames of `change`; patches only when someone takes them (`patches`).
    fn new(change: &WindowChange, membership: &Membership, patches: bool) -> Self {
        let frames = change
            .updated
            .iter()
            .filter_map(|(id, before)| {
                let now = membership.get(id)?;
                let full = full_frame(id, &now.value, now.version);
                let patch = before
                    .as_ref()
                    .filter(|b| patches && b.version + 1 == now.version)
                    .map(|b| {
                        let patch = crate::model::change_patch(&b.value, &now.value);
                        patch_frame(id, &patch, now.version)
                    });
                Some((id.clone(), full, patch))
            })
            .collect();
        Updates { frames }
    }

    /// The frames `s` gets: for each updated member it sees, a patch if it asked for patches
    /// and the change is one version, else the full value.
    fn frames_for<'a>(
        &'a self,
        s: &'a Subscriber,
        membership: &'a Membership,
    ) -> impl Iterator<Item = Frame> + 'a {
        self.frames
            .iter()
            .filter(|(id, _, _)| s.visible.contains(id, membership))
            .map(|(_, full, patch)| match (s.mode, patch) {
                (Mode::Patch, Some(patch)) => patch.clone(),
                _ => full.clone(),
            })
    }
}
