//! The Mesh wire protocol: inbound request frames, typed payloads and outbound reply/push frames.
//!
//! Every frame is one JSON object. Requests are `{"id", "command", "payload"}`; replies echo the
//! id and command; pushes have no id. See `docs/protocol.md`.

use crate::Error;
use crate::model::{Frame, Mode, RecordId, Strategy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

/// Commands the server handles itself.
pub mod commands {
    /// Pushed right after the upgrade with the connection id.
    pub const ASSIGN_ID: &str = "mesh/assign-id";
    /// Liveness probe; answered with `true`.
    pub const NOOP: &str = "mesh/noop";
    /// Server keepalive push.
    pub const PING: &str = "ping";
    /// Client keepalive answer (never replied to).
    pub const PONG: &str = "pong";
    /// Client answer to a latency probe (treated like a pong).
    pub const LATENCY_RESPONSE: &str = "latency:response";
    /// Subscribe to a record.
    pub const SUBSCRIBE_RECORD: &str = "mesh/subscribe-record";
    /// Unsubscribe from a record.
    pub const UNSUBSCRIBE_RECORD: &str = "mesh/unsubscribe-record";
    /// Write a record.
    pub const PUBLISH_RECORD_UPDATE: &str = "mesh/publish-record-update";
    /// Read the connection's metadata.
    pub const GET_METADATA: &str = "mesh/get-my-connection-metadata";
    /// Ask to change the connection's metadata (refused unless the app installs a hook).
    pub const SET_METADATA: &str = "mesh/set-my-connection-metadata";
    /// Replace the connection's token (and metadata) before the old one expires.
    pub const REFRESH_TOKEN: &str = "mesh/refresh-token";
    /// Pushed when the server ends a subscription the client did not end (its read guard no
    /// longer allows it after a metadata change).
    pub const SUBSCRIPTION_ENDED: &str = "mesh/subscription-ended";
    /// Subscribe to a collection (the reply is its snapshot).
    pub const SUBSCRIBE_COLLECTION: &str = "mesh/subscribe-collection";
    /// Unsubscribe from a collection.
    pub const UNSUBSCRIBE_COLLECTION: &str = "mesh/unsubscribe-collection";
    /// Pushed (an error object) for a frame that was dropped with no id to reply to.
    pub const ERROR: &str = "mesh/error";
}

/// A request frame that parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's request id; `None` for fire-and-forget frames, which get no reply.
    pub id: Option<Number>,
    /// The command name.
    pub command: String,
    /// The payload (`null` when absent).
    pub payload: Value,
}

/// A frame that could not be read as a request.
#[derive(Debug, Clone, PartialEq)]
pub struct BadFrame {
    /// The integer id, if the frame had one: then the client gets an error reply.
    pub id: Option<Number>,
    /// The command, if it was a string.
    pub command: Option<String>,
    /// Why the frame was refused.
    pub reason: String,
}

const ID_NOT_INTEGER: &str = "\"id\" must be an integer; the request was not run";

/// Parses one inbound text frame. Never panics, whatever the input.
pub fn parse_request(text: &str) -> Result<Request, BadFrame> {
    let bad = |id, command, reason: &str| BadFrame {
        id,
        command,
        reason: reason.to_owned(),
    };
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        // serde_json's reason says where ("expected value at line 1 column 1").
        Err(e) => return Err(bad(None, None, &format!("frame is not JSON: {e}"))),
    };
    let Value::Object(mut fields) = value else {
        return Err(bad(None, None, "frame is not a JSON object"));
    };
    let command = match fields.remove("command") {
        Some(Value::String(command)) => Some(command),
        _ => None,
    };
    let id = match fields.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n),
        // Keepalive answers are never answered, so their id does not matter.
        Some(_) if command.as_deref().is_some_and(is_keepalive) => None,
        // Not run: no reply could carry this id back, and its sender waits for one.
        Some(_) => return Err(bad(None, command, ID_NOT_INTEGER)),
    };
    let Some(command) = command else {
        return Err(bad(id, None, "frame has no string \"command\""));
    };
    let payload = fields.remove("payload").unwrap_or(Value::Null);
    Ok(Request {
        id,
        command,
        payload,
    })
}

/// Reads a command's payload into its typed form; fails with [`Error::Invalid`] saying why.
pub fn typed_payload<T: DeserializeOwned>(command: &str, payload: Value) -> Result<T, Error> {
    serde_json::from_value(payload)
        .map_err(|e| Error::invalid(format!("invalid payload for {command}: {e}")))
}

/// Payload of `mesh/subscribe-record`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRecord {
    /// The record to watch.
    pub record_id: String,
    /// `full` (default) or `patch`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The version the client holds, to resume from (an extension; Mesh clients never send
    /// it). Anything but a non-negative integer means "cannot resume".
    #[serde(default)]
    pub since_version: Option<Value>,
}

/// Payload of `mesh/unsubscribe-record`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnsubscribeRecord {
    /// The record to stop watching.
    pub record_id: String,
}

/// Payload of `mesh/publish-record-update`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishRecordUpdate {
    /// The record to write.
    pub record_id: String,
    /// The value to write (combined with the current one per the strategy).
    pub new_value: Value,
    /// Write options.
    #[serde(default)]
    pub options: Option<PublishOptions>,
}

/// Options of `mesh/publish-record-update`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishOptions {
    /// `replace` (default), `merge` or `deepMerge`.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Write only if the record is at this version (0: only if it does not exist).
    #[serde(default)]
    pub expected_version: Option<u64>,
}

/// Payload of `mesh/subscribe-collection` and `mesh/unsubscribe-collection`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionRequest {
    /// The collection.
    pub collection_id: String,
    /// How member changes arrive: `full` (default, as Mesh) or `patch` (an extension).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The collection version the client holds, to resume instead of a snapshot (an
    /// extension). Anything but a non-negative integer means "cannot resume".
    #[serde(default)]
    pub since_version: Option<Value>,
    /// With `sinceVersion`: the members the client holds, id → record version; members it
    /// holds at their current version are not sent again.
    #[serde(default)]
    pub members: Option<Value>,
}

/// What a client resuming a collection holds (see [`Command::SubscribeCollection`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CollectionHeld {
    /// `sinceVersion`: `Some(None)` when it was sent but was not a version.
    pub since: Option<Option<u64>>,
    /// Member id → the record version the client holds.
    pub members: std::collections::HashMap<String, u64>,
}

impl CollectionHeld {
    fn from_payload(since: Option<Value>, members: Option<Value>) -> Result<Self, Error> {
        let members = match members {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(map)) => map
                .into_iter()
                .map(|(id, version)| match version.as_u64() {
                    Some(version) => Ok((id, version)),
                    None => Err(Error::invalid(
                        "members: each value must be a record version (a non-negative integer)",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(Error::invalid(
                    "members must be an object of record id -> version",
                ));
            }
        };
        Ok(CollectionHeld {
            since: since.map(|v| v.as_u64()),
            members,
        })
    }
}

/// Payload of `mesh/refresh-token`.
#[derive(Debug, Deserialize)]
pub struct RefreshToken {
    /// The fresh JWT.
    pub token: String,
}

/// A request decoded into what the server should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `mesh/noop`.
    Noop,
    /// `mesh/subscribe-record`.
    Subscribe {
        /// The record.
        record_id: RecordId,
        /// Full or patch.
        mode: Mode,
        /// `sinceVersion` when sent: `Some(None)` when it was not a version.
        since: Option<Option<u64>>,
    },
    /// `mesh/unsubscribe-record`.
    Unsubscribe {
        /// The record.
        record_id: RecordId,
    },
    /// `mesh/publish-record-update`.
    Publish {
        /// The record.
        record_id: RecordId,
        /// The incoming value (never `null`).
        value: Value,
        /// How it combines with the current value.
        strategy: Strategy,
        /// Write only if the record is at this version (0: only if absent).
        expected_version: Option<u64>,
    },
    /// `mesh/get-my-connection-metadata`.
    GetMetadata,
    /// `mesh/set-my-connection-metadata` with the proposed metadata.
    SetMetadata(Value),
    /// `mesh/refresh-token`.
    RefreshToken {
        /// The fresh JWT (not yet verified).
        token: String,
    },
    /// `mesh/subscribe-collection`.
    SubscribeCollection {
        /// The collection.
        collection_id: RecordId,
        /// How member changes arrive.
        mode: Mode,
        /// What the client holds, when it resumes.
        held: CollectionHeld,
    },
    /// `mesh/unsubscribe-collection`.
    UnsubscribeCollection {
        /// The collection.
        collection_id: RecordId,
    },
    /// Any other command (a custom one, or unknown), with its payload; the name is the
    /// caller's.
    Custom(Value),
}

/// Whether a command is a keepalive answer (`pong`, `latency:response`): never answered and
/// never rate limited.
pub fn is_keepalive(command: &str) -> bool {
    command == commands::PONG || command == commands::LATENCY_RESPONSE
}

/// A collection id: the same rules as a record id, named as such in errors.
fn collection_id(raw: &str, max_bytes: usize) -> Result<RecordId, Error> {
    RecordId::parse(raw, max_bytes).map_err(|e| match e {
        Error::Invalid(why) => Error::Invalid(why.replace("recordId", "collectionId")),
        other => other,
    })
}

/// Decodes a request's command and payload. Never panics, whatever the input.
///
/// Fails with [`Error::Invalid`] saying what is wrong with the payload.
pub fn decode_command(
    command: &str,
    payload: Value,
    max_record_id_bytes: usize,
) -> Result<Command, Error> {
    let id = |raw: &str| RecordId::parse(raw, max_record_id_bytes);
    Ok(match command {
        commands::NOOP => Command::Noop,
        commands::SUBSCRIBE_RECORD => {
            let p: SubscribeRecord = typed_payload(command, payload)?;
            Command::Subscribe {
                record_id: id(&p.record_id)?,
                mode: p.mode.unwrap_or_default(),
                since: p.since_version.map(|v| v.as_u64()),
            }
        }
        commands::UNSUBSCRIBE_RECORD => {
            let p: UnsubscribeRecord = typed_payload(command, payload)?;
            Command::Unsubscribe {
                record_id: id(&p.record_id)?,
            }
        }
        commands::PUBLISH_RECORD_UPDATE => {
            let p: PublishRecordUpdate = typed_payload(command, payload)?;
            if p.new_value.is_null() {
                return Err(Error::invalid("newValue must not be null"));
            }
            let options = p.options.unwrap_or_default();
            Command::Publish {
                record_id: id(&p.record_id)?,
                value: p.new_value,
                strategy: options.strategy.unwrap_or_default(),
                expected_version: options.expected_version,
            }
        }
        commands::GET_METADATA => Command::GetMetadata,
        commands::SET_METADATA => Command::SetMetadata(payload),
        commands::REFRESH_TOKEN => {
            let p: RefreshToken = typed_payload(command, payload)?;
            Command::RefreshToken { token: p.token }
        }
        commands::SUBSCRIBE_COLLECTION => {
            let p: CollectionRequest = typed_payload(command, payload)?;
            Command::SubscribeCollection {
                collection_id: collection_id(&p.collection_id, max_record_id_bytes)?,
                mode: p.mode.unwrap_or_default(),
                held: CollectionHeld::from_payload(p.since_version, p.members)?,
            }
        }
        commands::UNSUBSCRIBE_COLLECTION => {
            let p: CollectionRequest = typed_payload(command, payload)?;
            Command::UnsubscribeCollection {
                collection_id: collection_id(&p.collection_id, max_record_id_bytes)?,
            }
        }
        _ => Command::Custom(payload),
    })
}

/// Successful reply to `mesh/subscribe-record` (a refusal is `{"success": false}`).
#[derive(Debug, Serialize)]
pub struct SubscribeReply<'a> {
    /// Always true here.
    pub success: bool,
    /// The snapshot value (`null` when the record is absent).
    pub record: &'a Value,
    /// The snapshot version (for an absent record the tombstone's, 0 if never written).
    pub version: u64,
    /// Present when the client sent `sinceVersion`: `false`, since this is a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
}

/// Reply to `mesh/subscribe-record` with `sinceVersion` when the server resumes: the missed
/// versions follow as ordinary pushes.
#[derive(Debug, Serialize)]
pub struct ResumeReply {
    /// Always true.
    pub success: bool,
    /// Always true.
    pub resumed: bool,
    /// The version the client said it holds.
    pub version: u64,
}

#[derive(Serialize)]
struct Reply<'a, P: Serialize> {
    id: &'a Number,
    command: &'a str,
    payload: P,
}

#[derive(Serialize)]
struct Push<'a, P: Serialize> {
    command: &'a str,
    payload: P,
}

fn to_frame(value: &impl Serialize) -> Frame {
    // Serializing our own reply structs (strings, numbers, serde_json values) cannot fail.
    Frame::from(serde_json::to_string(value).expect("reply serialization cannot fail"))
}

/// The reply frame for request `id`.
pub fn reply_frame(id: &Number, command: &str, payload: &impl Serialize) -> Frame {
    to_frame(&Reply {
        id,
        command,
        payload,
    })
}

/// The error reply frame for request `id`.
pub fn error_frame(id: &Number, command: &str, error: &Error) -> Frame {
    reply_frame(id, command, &error.to_wire())
}

/// A push frame (no id).
pub fn push_frame(command: &str, payload: &impl Serialize) -> Frame {
    to_frame(&Push { command, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_requests_and_fire_and_forget_frames() {
        let r = parse_request(r#"{"id":4,"command":"mesh/noop","payload":{}}"#).unwrap();
        assert_eq!(r.id, Some(Number::from(4)));
        assert_eq!(r.command, "mesh/noop");
        let r = parse_request(r#"{"command":"pong"}"#).unwrap();
        assert_eq!((r.id, r.payload), (None, Value::Null));
    }

    #[test]
    fn malformed_frames_are_refused_with_the_id_when_there_is_one() {
        for text in ["null", "[]", "1", "\"x\"", "{", "", "{\"command\":5}"] {
            let bad = parse_request(text).unwrap_err();
            assert_eq!(bad.id, None, "{text}");
        }
        let bad = parse_request(r#"{"id":9,"payload":1}"#).unwrap_err();
        assert_eq!(bad.id, Some(Number::from(9)));
        let bad = parse_request(r#"{"id":1.5,"command":7}"#).unwrap_err();
        assert_eq!(bad.id, None);
        // An id that is not an integer: refused (not run), with the command kept for the log.
        for text in [
            r#"{"id":"1","command":"mesh/noop"}"#,
            r#"{"id":1.5,"command":"mesh/noop"}"#,
        ] {
            let bad = parse_request(text).unwrap_err();
            assert_eq!(bad.id, None, "{text}");
            assert_eq!(bad.command.as_deref(), Some("mesh/noop"), "{text}");
            assert!(bad.reason.contains("\"id\" must be an integer"), "{text}");
        }
        let not_json = parse_request("hello").unwrap_err().reason;
        assert!(not_json.contains("line 1 column 1"), "{not_json}");
        // A null id is no id; keepalive answers are read whatever their id.
        assert_eq!(
            parse_request(r#"{"id":null,"command":"x"}"#).unwrap().id,
            None
        );
        assert_eq!(
            parse_request(r#"{"id":"p","command":"pong"}"#).unwrap().id,
            None
        );
    }

    #[test]
    fn typed_payloads_reject_wrong_shapes() {
        let ok: SubscribeRecord =
            typed_payload("s", json!({"recordId": "a", "mode": "patch"})).unwrap();
        assert_eq!(ok.mode, Some(Mode::Patch));
        assert!(
            typed_payload::<SubscribeRecord>("s", json!({"recordId": "a", "mode": "x"})).is_err()
        );
        assert!(typed_payload::<SubscribeRecord>("s", json!({"recordId": 1})).is_err());
        assert!(typed_payload::<PublishRecordUpdate>("p", json!({"recordId": "a"})).is_err());
        let p: PublishRecordUpdate = typed_payload(
            "p",
            json!({"recordId": "a", "newValue": 1, "options": {"strategy": "deepMerge"}}),
        )
        .unwrap();
        assert_eq!(p.options.unwrap().strategy, Some(Strategy::DeepMerge));
    }

    #[test]
    fn replies_echo_id_and_command() {
        let f = error_frame(
            &Number::from(3),
            "nope",
            &Error::UnknownCommand("nope".into()),
        );
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(
            v,
            json!({"id": 3, "command": "nope", "payload": {"error": "Command \"nope\" not found", "code": "ENOTFOUND", "name": "CommandError"}})
        );
    }
}
