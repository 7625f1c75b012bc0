//! Collection frames as Mesh's client reads them.
//!
//! A member, in the snapshot and in diffs, is the record's value with `"id"` set to the record
//! id (Mesh's `{...value, id}`). A value that is not an object becomes
//! `{"id": <record id>, "value": <value>}` (Mesh would spread it into index keys or drop it).
//! The snapshot wraps each member as `{"id", "record"}`; diffs send members bare, and the
//! client wraps them itself.

use crate::model::{Frame, RecordId};
use crate::protocol::{self, commands};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Number, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The member form of a record's value (see the module docs).
pub fn member(id: &RecordId, value: &Value) -> Value {
    let mut fields = match value {
        Value::Object(fields) => fields.clone(),
        other => {
            let mut fields = Map::new();
            fields.insert("value".into(), other.clone());
            fields
        }
    };
    fields.insert("id".into(), Value::String(id.as_str().to_owned()));
    Value::Object(fields)
}

/// A member serialized straight from the stored value, without copying it (the snapshot of a
/// large collection would otherwise copy every value twice).
pub struct MemberRef<'a> {
    /// The record id.
    pub id: &'a RecordId,
    /// Its value.
    pub value: &'a Value,
}

impl Serialize for MemberRef<'_> {
    fn serialize<S: Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(fields) => {
                let len = fields.len() + usize::from(!fields.contains_key("id"));
                let mut map = out.serialize_map(Some(len))?;
                for (key, value) in fields.iter().filter(|(key, _)| *key != "id") {
                    map.serialize_entry(key, value)?;
                }
                map.serialize_entry("id", self.id.as_str())?;
                map.end()
            }
            other => {
                let mut map = out.serialize_map(Some(2))?;
                map.serialize_entry("value", other)?;
                map.serialize_entry("id", self.id.as_str())?;
                map.end()
            }
        }
    }
}

/// A member as JSON text: the value as a member, or `{"id"}` when there is none.
pub fn member_text(id: &RecordId, value: Option<&Value>) -> String {
    match value {
        Some(value) => serde_json::to_string(&MemberRef { id, value })
            .expect("serializing a JSON value into memory cannot fail"),
        None => gone(id).to_string(),
    }
}

/// The member form of a record that is gone (or was never seen): just its id.
pub fn gone(id: &RecordId) -> Value {
    json!({ "id": id.as_str() })
}

/// How a subscription starts: the snapshot (Mesh), or a resume from what the client holds.
#[derive(Clone, Copy, Debug)]
pub enum Opening<'a> {
    /// A snapshot at version 1.
    Fresh,
    /// The client asked to resume with a `sinceVersion` that is not a version: a snapshot,
    /// marked `"resumed": false`.
    NotResumed,
    /// Resuming from collection version `since`, the client holding `held` (member id →
    /// record version): every member's id, but the values of only those it lacks.
    Resumed {
        /// The client's collection version.
        since: u64,
        /// What it holds.
        held: &'a HashMap<String, u64>,
    },
}

impl Opening<'_> {
    /// The subscriber's version after the reply (its next diff is one more).
    pub fn version(&self) -> u64 {
        match self {
            Opening::Fresh | Opening::NotResumed => 1,
            Opening::Resumed { since, .. } => since + 1,
        }
    }
}

/// The successful subscribe reply: the members' ids, in order, and their values with their
/// record versions (an extension: Mesh's client reads `id` and `record` only). When resuming,
/// members the client holds at their current version are listed in `ids` only.
pub fn snapshot(
    request: &Number,
    members: &[(RecordId, Arc<Value>, u64)],
    opening: Opening<'_>,
) -> Frame {
    #[derive(Serialize)]
    struct Entry<'a> {
        id: &'a str,
        record: MemberRef<'a>,
        version: u64,
    }
    #[derive(Serialize)]
    struct Snapshot<'a> {
        success: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        resumed: Option<bool>,
        ids: Vec<&'a str>,
        records: Vec<Entry<'a>>,
        version: u64,
    }
    let held = match opening {
        Opening::Resumed { held, .. } => Some(held),
        _ => None,
    };
    let payload = Snapshot {
        success: true,
        resumed: match opening {
            Opening::Fresh => None,
            Opening::NotResumed => Some(false),
            Opening::Resumed { .. } => Some(true),
        },
        ids: members.iter().map(|(id, _, _)| id.as_str()).collect(),
        records: members
            .iter()
            .filter(|(id, _, version)| held.is_none_or(|h| h.get(id.as_str()) != Some(version)))
            .map(|(id, value, version)| Entry {
                id: id.as_str(),
                record: MemberRef { id, value },
                version: *version,
            })
            .collect(),
        version: opening.version(),
    };
    protocol::reply_frame(request, commands::SUBSCRIBE_COLLECTION, &payload)
}

/// The refusal reply (not exposed, or the guard said no): Mesh's shape, not an error.
pub fn refusal(request: &Number) -> Frame {
    let payload = json!({ "success": false, "ids": [], "records": [], "version": 0 });
    protocol::reply_frame(request, commands::SUBSCRIBE_COLLECTION, &payload)
}

/// The `mesh/collection-diff` pushes of one change, from members already serialized (each
/// is JSON text), versions `first_version`, `first_version + 1`, ...: one push, or several
/// when one would be larger than `max_bytes` (each holds at least one member; removals
/// first). None when nothing was added or removed. No frame the server sends is larger than
/// one it would accept, and the versions stay consecutive for the client.
pub fn diffs(
    collection: &RecordId,
    (added, removed): (&[&str], &[&str]),
    first_version: u64,
    max_bytes: usize,
) -> Vec<Frame> {
    // The frame around the members: command, collection id, keys, version.
    let budget = max_bytes.saturating_sub(128 + 2 * collection.as_str().len());
    let mut frames = Vec::new();
    let (mut chunk_added, mut chunk_removed) = (Vec::new(), Vec::new());
    let mut used = 0;
    let members = removed
        .iter()
        .map(|m| (false, *m))
        .chain(added.iter().map(|m| (true, *m)));
    for (is_added, member) in members {
        let size = member.len() + 1;
        if used + size > budget && (!chunk_added.is_empty() || !chunk_removed.is_empty()) {
            let version = first_version + frames.len() as u64;
            frames.push(diff(collection, &chunk_added, &chunk_removed, version));
            (chunk_added, chunk_removed, used) = (Vec::new(), Vec::new(), 0);
        }
        used += size;
        if is_added {
            chunk_added.push(member);
        } else {
            chunk_removed.push(member);
        }
    }
    if !chunk_added.is_empty() || !chunk_removed.is_empty() {
        let version = first_version + frames.len() as u64;
        frames.push(diff(collection, &chunk_added, &chunk_removed, version));
    }
    frames
}

/// A `mesh/collection-diff` push from members already serialized (each is JSON text).
pub fn diff(collection: &RecordId, added: &[&str], removed: &[&str], version: u64) -> Frame {
    let mut out = String::with_capacity(
        96 + collection.as_str().len()
            + added
                .iter()
                .chain(removed)
                .map(|m| m.len() + 1)
                .sum::<usize>(),
    );
    out.push_str(r#"{"command":"mesh/collection-diff","payload":{"collectionId":"#);
    out.push_str(&Value::String(collection.as_str().to_owned()).to_string());
    out.push_str(r#","added":["#);
    out.push_str(&added.join(","));
    out.push_str(r#"],"removed":["#);
    out.push_str(&removed.join(","));
    out.push_str(r#"],"version":"#);
    out.push_str(&version.to_string());
    out.push_str("}}");
    Frame::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> RecordId {
        RecordId::parse(text, 64).unwrap()
    }

    #[test]
    fn members_are_values_with_their_id() {
        assert_eq!(
            member(&id("t:1"), &json!({"title": "a", "id": "other"})),
            json!({"title": "a", "id": "t:1"})
        );
        assert_eq!(member(&id("n"), &json!(5)), json!({"value": 5, "id": "n"}));
    }

    #[test]
    fn member_text_is_the_member_without_a_copy() {
        for value in [
            json!({"title": "a", "id": "other"}),
            json!({"b": [1]}),
            json!(5),
        ] {
            let text = member_text(&id("t:1"), Some(&value));
            let parsed: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed, member(&id("t:1"), &value));
        }
        assert_eq!(member_text(&id("t:1"), None), r#"{"id":"t:1"}"#);
    }

    #[test]
    fn a_diff_is_valid_json_in_mesh_shape() {
        let added = member(&id("t:2"), &json!({"x": 1})).to_string();
        let removed = gone(&id("t:\"1")).to_string();
        let frame = diff(&id("list:\"a"), &[&added], &[&removed], 7);
        let parsed: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            parsed,
            json!({"command": "mesh/collection-diff", "payload": {
                "collectionId": "list:\"a", "added": [{"x": 1, "id": "t:2"}],
                "removed": [{"id": "t:\"1"}], "version": 7}})
        );
    }
}
