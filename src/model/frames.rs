//! Push frames, serialized once per update and mode and shared by every subscriber.

use super::{RecordId, Version};
use bytestring::ByteString;
use serde_json::Value;

/// One serialized WebSocket text frame; cloning it shares the bytes.
pub type Frame = ByteString;

fn push_json(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    // Serializing a `serde_json::Value` or a string into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("JSON into memory cannot fail");
}

fn finish(out: Vec<u8>) -> Frame {
    // Everything written is JSON produced by serde_json, so it is valid UTF-8.
    ByteString::try_from(out).expect("serde_json writes UTF-8")
}

fn record_update(
    id: &RecordId,
    field: &str,
    body: &impl serde::Serialize,
    version: Version,
) -> Frame {
    let mut out = Vec::with_capacity(96 + id.as_str().len());
    out.extend_from_slice(br#"{"command":"mesh/record-update","payload":{"recordId":"#);
    push_json(&mut out, &id.as_str());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":");
    push_json(&mut out, body);
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(version.to_string().as_bytes());
    out.extend_from_slice(b"}}");
    finish(out)
}

/// `mesh/record-update` carrying the whole value (push frames are built here, byte by byte,
/// which is why their command names are spelled out rather than taken from `protocol`).
pub fn full_frame(id: &RecordId, value: &Value, version: Version) -> Frame {
    record_update(id, "full", value, version)
}

/// `mesh/record-update` carrying the patch from `version - 1`.
pub fn patch_frame(id: &RecordId, patch: &impl serde::Serialize, version: Version) -> Frame {
    record_update(id, "patch", patch, version)
}

/// `mesh/record-deleted` with the last version the record had.
pub fn deleted_frame(id: &RecordId, version: Version) -> Frame {
    let mut out = Vec::with_capacity(80 + id.as_str().len());
    out.extend_from_slice(br#"{"command":"mesh/record-deleted","payload":{"recordId":"#);
    push_json(&mut out, &id.as_str());
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(version.to_string().as_bytes());
    out.extend_from_slice(b"}}");
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(frame: &Frame) -> Value {
        serde_json::from_str(frame).unwrap()
    }

    #[test]
    fn frames_have_the_mesh_shapes() {
        let id = RecordId::parse("doc:\"1\"", 64).unwrap();
        assert_eq!(
            parse(&full_frame(&id, &json!({"a": 1}), 3)),
            json!({"command": "mesh/record-update", "payload": {"recordId": "doc:\"1\"", "full": {"a": 1}, "version": 3}})
        );
        let patch = json_patch::diff(&json!({}), &json!({"a": 1}));
        assert_eq!(
            parse(&patch_frame(&id, &patch, 1)),
            json!({"command": "mesh/record-update", "payload": {"recordId": "doc:\"1\"", "patch": [{"op": "add", "path": "/a", "value": 1}], "version": 1}})
        );
        assert_eq!(
            parse(&deleted_frame(&id, 7)),
            json!({"command": "mesh/record-deleted", "payload": {"recordId": "doc:\"1\"", "version": 7}})
        );
    }
}
