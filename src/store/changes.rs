//! The message published on a record's channel, and its parsing into a [`RemoteChange`].
//!
//! The Lua scripts build these messages by concatenating strings (the value is already JSON,
//! serialized once in Rust), so the format is kept deliberately flat:
//!
//! - `{"version":<n>,"value":<json>}` after a write, one message per version, with
//!   `,"patch":<json>` before the value when the writer kept history;
//! - `{"version":<n>,"deleted":true}` after a delete, `<n>` being the last version.

use super::RemoteChange;
use serde_json::Value;
use std::sync::Arc;

/// Why a message on a record channel was not understood. Only logged: a bad message is
/// skipped, never fatal.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChangeParseError {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    /// `version` is missing or not a non-negative integer.
    #[error("no integer \"version\"")]
    NoVersion,
    /// Neither `value` nor `"deleted": true` is present.
    #[error("neither \"value\" nor \"deleted\": true")]
    NoChange,
}

/// Whether `payload` is an update that the store tagged `origin` published (`write.lua` puts
/// `"from":"<tag>"` right after the version), told without parsing the rest: an instance's own
/// writes coming back on the record's channel, which its record actor already applied.
pub(crate) fn published_by(payload: &[u8], origin: &str) -> bool {
    let Some(rest) = payload.strip_prefix(b"{\"version\":") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(tag) = rest[digits..].strip_prefix(b",\"from\":\"") else {
        return false;
    };
    tag.strip_prefix(origin.as_bytes())
        .is_some_and(|end| end.first() == Some(&b'"'))
}

/// Parses one published message.
pub(crate) fn parse_change(payload: &[u8]) -> Result<RemoteChange, ChangeParseError> {
    let parsed: Value = serde_json::from_slice(payload)
        .map_err(|err| ChangeParseError::NotAnObject(err.to_string()))?;
    let Value::Object(mut fields) = parsed else {
        return Err(ChangeParseError::NotAnObject("another JSON type".into()));
    };
    let version = fields
        .get("version")
        .and_then(Value::as_u64)
        .ok_or(ChangeParseError::NoVersion)?;
    if fields.get("deleted") == Some(&Value::Bool(true)) {
        return Ok(RemoteChange::Deleted { version });
    }
    // `remove` moves the value out: a large document is parsed once and never copied.
    let patch = fields.remove("patch").map(Arc::new);
    match fields.remove("value") {
        Some(value) => Ok(RemoteChange::Updated {
            version,
            value: Arc::new(value),
            patch,
        }),
        None => Err(ChangeParseError::NoChange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_instance_knows_its_own_updates_unparsed() {
        let own = br#"{"version":7,"from":"ab12","patch":[],"value":1}"#;
        assert!(published_by(own, "ab12"));
        assert!(!published_by(own, "ab1"));
        assert!(!published_by(own, "ab123"));
        assert!(!published_by(br#"{"version":7,"value":1}"#, "ab12"));
        assert!(!published_by(br#"{"version":7,"deleted":true}"#, "ab12"));
        assert!(!published_by(
            br#"{"from":"ab12","version":7,"value":1}"#,
            "ab12"
        ));
        // Parsed in full, the tag is just another field.
        assert!(matches!(
            parse_change(own),
            Ok(RemoteChange::Updated { version: 7, .. })
        ));
    }

    #[test]
    fn update_message() {
        let change = parse_change(br#"{"version":7,"value":{"a":[1,2,{"b":null}]}}"#);
        assert_eq!(
            change,
            Ok(RemoteChange::Updated {
                version: 7,
                value: Arc::new(json!({"a": [1, 2, {"b": null}]})),
                patch: None,
            })
        );
    }

    #[test]
    fn null_and_scalar_values_are_updates() {
        assert_eq!(
            parse_change(br#"{"version":2,"value":null}"#),
            Ok(RemoteChange::Updated {
                version: 2,
                value: Arc::new(Value::Null),
                patch: None,
            })
        );
        assert_eq!(
            parse_change(br#"{"version":3,"value":"text"}"#),
            Ok(RemoteChange::Updated {
                version: 3,
                value: Arc::new(json!("text")),
                patch: None,
            })
        );
    }

    #[test]
    fn update_message_with_its_patch() {
        let change = parse_change(
            br#"{"version":4,"patch":[{"op":"add","path":"/a","value":1}],"value":{"a":1}}"#,
        );
        assert_eq!(
            change,
            Ok(RemoteChange::Updated {
                version: 4,
                value: Arc::new(json!({"a": 1})),
                patch: Some(Arc::new(json!([{"op": "add", "path": "/a", "value": 1}]))),
            })
        );
    }

    #[test]
    fn delete_message() {
        assert_eq!(
            parse_change(br#"{"version":12,"deleted":true}"#),
            Ok(RemoteChange::Deleted { version: 12 })
        );
    }

    #[test]
    fn largest_version_survives() {
        let payload = format!(r#"{{"version":{},"deleted":true}}"#, u64::MAX);
        assert_eq!(
            parse_change(payload.as_bytes()),
            Ok(RemoteChange::Deleted { version: u64::MAX })
        );
    }

    #[test]
    fn malformed_messages_are_rejected() {
        assert!(matches!(
            parse_change(b"not json"),
            Err(ChangeParseError::NotAnObject(_))
        ));
        assert!(matches!(
            parse_change(b"[1,2]"),
            Err(ChangeParseError::NotAnObject(_))
        ));
        assert_eq!(
            parse_change(br#"{"value":1}"#),
            Err(ChangeParseError::NoVersion)
        );
        assert_eq!(
            parse_change(br#"{"version":-1,"value":1}"#),
            Err(ChangeParseError::NoVersion)
        );
        assert_eq!(
            parse_change(br#"{"version":"3","value":1}"#),
            Err(ChangeParseError::NoVersion)
        );
        assert_eq!(
            parse_change(br#"{"version":3}"#),
            Err(ChangeParseError::NoChange)
        );
        assert_eq!(
            parse_change(br#"{"version":3,"deleted":false}"#),
            Err(ChangeParseError::NoChange)
        );
    }
}
