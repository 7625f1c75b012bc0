//! The Mesh protocol as a client speaks it.
//!
//! Two ways in, for two kinds of reader. The load tool reads thousands of frames a second on
//! cores it shares with the server: [`Incoming`] parses a frame into a small struct whose
//! strings borrow from the frame, skipping what the tool does not look at, and the writers
//! ([`subscribe`], [`publish`]) append straight into a string. The mesh-records tests and the
//! chaos checker care for every field instead: they build requests from JSON values with
//! [`request`] and read frames as `serde_json::Value`s ([`is_ping`], [`error_code`]). Both
//! start with [`assigned_id`] and answer pings with [`PONG`]. Collections add
//! [`subscribe_collection`] and [`unsubscribe_collection`]; their replies and diffs parse into
//! the same [`Payload`], whose arrays (`ids`, `added`, `removed`) are only counted.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;

/// The server's first frame on every connection; its payload is the connection's id.
pub const ASSIGN_ID: &str = "mesh/assign-id";
/// Subscribe to a record (`recordId`, `mode`, optionally `sinceVersion`).
pub const SUBSCRIBE: &str = "mesh/subscribe-record";
/// Write a record (`recordId`, `newValue`, optionally `options`).
pub const PUBLISH: &str = "mesh/publish-record-update";
/// The push of a new version: `full` (the value) or `patch` (RFC 6902), and `version`.
pub const RECORD_UPDATE: &str = "mesh/record-update";
/// The server's keepalive push; a client that does not answer [`PONG`] is disconnected.
pub const PING: &str = "ping";
/// Subscribe to a collection (`collectionId`, `mode`); the reply holds the members
/// (`ids`, `records`) and `version` 1.
pub const SUBSCRIBE_COLLECTION: &str = "mesh/subscribe-collection";
/// Leave a collection (`collectionId`); the reply is `true` or `false`.
pub const UNSUBSCRIBE_COLLECTION: &str = "mesh/unsubscribe-collection";
/// The push of a collection's membership change: `added`, `removed` and `version` (the
/// subscriber's own count of diffs, one more each time).
pub const COLLECTION_DIFF: &str = "mesh/collection-diff";

/// The keepalive answer to the server's `ping` push.
pub const PONG: &str = r#"{"command":"pong","payload":{}}"#;

/// Subscription mode, as the protocol spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    Patch,
}

impl Mode {
    /// The protocol's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Patch => "patch",
        }
    }
}

/// The connection id the server's first frame assigns; an error naming what came instead
/// of a `mesh/assign-id` with a string payload.
pub fn assigned_id(first: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    struct First<'a> {
        #[serde(borrow)]
        command: Cow<'a, str>,
        #[serde(default)]
        payload: serde_json::Value,
    }
    let frame: First =
        serde_json::from_slice(first).map_err(|e| format!("unreadable first frame: {e}"))?;
    match (&*frame.command, frame.payload) {
        (ASSIGN_ID, serde_json::Value::String(id)) => Ok(id),
        (ASSIGN_ID, other) => Err(format!(
            "{ASSIGN_ID} with a payload that is not a string: {other}"
        )),
        (command, _) => Err(format!("first frame is {command}, not {ASSIGN_ID}")),
    }
}

/// A request frame: `{"id", "command", "payload"}`; its reply carries the same id.
pub fn request(id: u64, command: &str, payload: &serde_json::Value) -> String {
    serde_json::json!({"id": id, "command": command, "payload": payload}).to_string()
}

/// Whether a frame is the server's keepalive `ping` push (to answer with [`PONG`]).
pub fn is_ping(frame: &serde_json::Value) -> bool {
    frame["command"] == PING && frame.get("id").is_none()
}

/// The code of an error payload (`{"error", "code", "name"}`; `ERROR` when it has none), or
/// `None` when the payload is not an error.
pub fn error_code(payload: &serde_json::Value) -> Option<String> {
    payload
        .get("error")
        .map(|_| payload["code"].as_str().unwrap_or("ERROR").to_owned())
}

/// An incoming frame. Strings borrow from the frame's bytes, so parsing a push allocates
/// nothing in the common case.
#[derive(Deserialize)]
pub struct Incoming<'a> {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(borrow)]
    pub command: Cow<'a, str>,
    #[serde(default, borrow)]
    pub payload: Lenient<Payload<'a>>,
}

/// The payload fields of replies and record pushes; every one is optional because one
/// struct serves all the shapes.
#[derive(Deserialize)]
pub struct Payload<'a> {
    pub success: Option<bool>,
    pub version: Option<u64>,
    /// The value in a full-mode push (for a patch subscriber: a resync).
    #[serde(default)]
    pub full: Lenient<Stamp>,
    #[serde(default)]
    pub patch: PatchStamp,
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub error: Option<Cow<'a, str>>,
    /// A collection snapshot's member ids.
    #[serde(default)]
    pub ids: Count,
    /// A collection diff's entering members.
    #[serde(default)]
    pub added: Count,
    /// A collection diff's leaving members.
    #[serde(default)]
    pub removed: Count,
}

impl Payload<'_> {
    /// `{"success": true, ...}`.
    pub fn succeeded(&self) -> bool {
        self.success == Some(true)
    }

    /// A short description of a failed reply, for the report.
    pub fn describe(&self) -> String {
        match (&self.code, &self.error) {
            (Some(code), Some(error)) => format!("{code}: {error}"),
            (Some(code), None) => code.to_string(),
            (None, Some(error)) => error.to_string(),
            (None, None) => "success is not true".into(),
        }
    }
}

/// The fields of the bench's own record values (`{"seq","sent_us","pad"}` and
/// `{"writer","seq"}`); other fields are skipped without being kept.
#[derive(Deserialize, Default, Clone, Copy)]
pub struct Stamp {
    pub seq: Option<u64>,
    pub sent_us: Option<u64>,
}

/// What a patch push says about `/seq` and `/sent_us`. A patch leaves out fields that did
/// not change, so the reader keeps its own copy of the last values.
#[derive(Default, Clone, Copy)]
pub struct PatchStamp {
    pub present: bool,
    pub seq: Option<u64>,
    pub sent_us: Option<u64>,
}

/// An object parsed as `T`, or `None` for any other JSON value, so one odd frame does not
/// fail the parse of the whole frame.
pub struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

/// Visitor methods that accept JSON values of the given kinds and yield `$empty`,
/// consuming nested arrays and objects.
macro_rules! ignore {
    ($de:lifetime, $empty:expr; $($kind:ident)*) => { $( ignore!(@$kind $de $empty); )* };
    (@bool $de:lifetime $e:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($e) }
    };
    (@i64 $de:lifetime $e:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($e) }
    };
    (@u64 $de:lifetime $e:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($e) }
    };
    (@f64 $de:lifetime $e:expr) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($e) }
    };
    (@str $de:lifetime $e:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($e) }
    };
    (@unit $de:lifetime $e:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($e) }
    };
    (@seq $de:lifetime $e:expr) => {
        fn visit_seq<A: SeqAccess<$de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($e)
        }
    };
    (@map $de:lifetime $e:expr) => {
        fn visit_map<A: MapAccess<$de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($e)
        }
    };
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
    }

    ignore!('de, Lenient(None); bool i64 u64 f64 str unit seq);
}

impl<'de> Deserialize<'de> for PatchStamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PatchVisitor)
    }
}

/// One RFC 6902 operation; only `path` and a numeric `value` matter here.
#[derive(Deserialize)]
struct PatchOp<'a> {
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(default)]
    value: Number,
}

struct PatchVisitor;

impl<'de> Visitor<'de> for PatchVisitor {
    type Value = PatchStamp;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON patch")
    }

    /// Walks the operations without collecting them.
    fn visit_seq<A: SeqAccess<'de>>(self, mut ops: A) -> Result<PatchStamp, A::Error> {
        let mut stamp = PatchStamp {
            present: true,
            ..PatchStamp::default()
        };
        while let Some(Lenient(op)) = ops.next_element::<Lenient<PatchOp<'de>>>()? {
            match op {
                Some(op) if op.path == "/seq" => stamp.seq = op.value.0,
                Some(op) if op.path == "/sent_us" => stamp.sent_us = op.value.0,
                _ => {}
            }
        }
        Ok(stamp)
    }

    ignore!('de, PatchStamp::default(); bool i64 u64 f64 str unit map);
}

/// The length of a JSON array, counted without keeping its elements; `None` for any other
/// JSON value (or when absent).
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(pub Option<usize>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CountVisitor)
    }
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Count;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Count(Some(n)))
    }

    ignore!('de, Count(None); bool i64 u64 f64 str unit map);
}

/// A non-negative integer, or `None` for any other JSON value.
#[derive(Default)]
struct Number(Option<u64>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumberVisitor)
    }
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        Ok(Number(Some(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        Ok(Number(u64::try_from(v).ok()))
    }

    ignore!('de, Number(None); bool f64 str unit seq map);
}

/// `mesh/subscribe-record`. Record ids are the bench's own ASCII names: no escaping needed
/// (a test with any id uses [`request`]).
pub fn subscribe(id: u64, record: &str, mode: Mode) -> String {
    format!(
        r#"{{"id":{id},"command":"{SUBSCRIBE}","payload":{{"recordId":"{record}","mode":"{}"}}}}"#,
        mode.as_str()
    )
}

/// `mesh/publish-record-update`; `value` appends the new value as JSON. Like [`subscribe`],
/// for the bench's own record ids.
pub fn publish(id: u64, record: &str, value: impl FnOnce(&mut String)) -> String {
    let mut out = String::with_capacity(128);
    out.push_str(r#"{"id":"#);
    push_number(&mut out, id);
    out.push_str(r#","command":"mesh/publish-record-update","payload":{"recordId":""#);
    out.push_str(record);
    out.push_str(r#"","newValue":"#);
    value(&mut out);
    out.push_str("}}");
    out
}

/// `mesh/subscribe-collection`. Like [`subscribe`], for the bench's own ids.
pub fn subscribe_collection(id: u64, collection: &str, mode: Mode) -> String {
    format!(
        r#"{{"id":{id},"command":"{SUBSCRIBE_COLLECTION}","payload":{{"collectionId":"{collection}","mode":"{}"}}}}"#,
        mode.as_str()
    )
}

/// `mesh/unsubscribe-collection`. Like [`subscribe`], for the bench's own ids.
pub fn unsubscribe_collection(id: u64, collection: &str) -> String {
    format!(
        r#"{{"id":{id},"command":"{UNSUBSCRIBE_COLLECTION}","payload":{{"collectionId":"{collection}"}}}}"#
    )
}

/// The fanout and records value: only `seq` and `sent_us` change between writes, so a
/// patch push stays small whatever the pad.
pub fn stamped_value(out: &mut String, seq: u64, sent_us: u64, pad: &str) {
    out.push_str(r#"{"seq":"#);
    push_number(out, seq);
    out.push_str(r#","sent_us":"#);
    push_number(out, sent_us);
    out.push_str(r#","pad":""#);
    out.push_str(pad);
    out.push_str(r#""}"#);
}

/// The race value.
pub fn race_value(out: &mut String, writer: usize, seq: usize) {
    // Writing into a String cannot fail.
    let _ = write!(out, r#"{{"writer":{writer},"seq":{seq}}}"#);
}

fn push_number(out: &mut String, n: u64) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{n}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Incoming<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn reads_patch_and_full_pushes() {
        let frame = parse(
            r#"{"command":"mesh/record-update","payload":{"recordId":"r","patch":[
            {"op":"add","path":"/pad","value":"xx"},{"op":"replace","path":"/seq","value":7},
            {"op":"replace","path":"/sent_us","value":99}],"version":7}}"#,
        );
        let payload = frame.payload.0.unwrap();
        assert_eq!(payload.version, Some(7));
        assert!(payload.patch.present);
        assert_eq!(
            (payload.patch.seq, payload.patch.sent_us),
            (Some(7), Some(99))
        );
        let frame = parse(
            r#"{"command":"mesh/record-update","payload":{"recordId":"r",
            "full":{"seq":3,"sent_us":5,"pad":"x"},"version":3}}"#,
        );
        let full = frame.payload.0.unwrap().full.0.unwrap();
        assert_eq!((full.seq, full.sent_us), (Some(3), Some(5)));
    }

    #[test]
    fn reads_collection_replies_and_diffs() {
        let reply = parse(
            r#"{"id":2,"command":"mesh/subscribe-collection","payload":{"success":true,
            "ids":["a","b","c"],"records":[{"id":"a","record":{"id":"a","pad":[1,2]}},
            {"id":"b","record":{"id":"b"}},{"id":"c","record":{"id":"c"}}],"version":1}}"#,
        );
        let payload = reply.payload.0.unwrap();
        assert!(payload.succeeded());
        assert_eq!((payload.ids, payload.version), (Count(Some(3)), Some(1)));
        let diff = parse(
            r#"{"command":"mesh/collection-diff","payload":{"collectionId":"l",
            "added":[{"id":"x","seq":1}],"removed":[],"version":5}}"#,
        );
        let payload = diff.payload.0.unwrap();
        assert_eq!(
            (payload.added, payload.removed),
            (Count(Some(1)), Count(Some(0)))
        );
        assert_eq!((payload.version, payload.ids), (Some(5), Count(None)));
        let odd = parse(r#"{"command":"mesh/collection-diff","payload":{"added":{}}}"#);
        assert_eq!(odd.payload.0.unwrap().added, Count(None));
    }

    #[test]
    fn tolerates_other_payloads() {
        assert!(
            parse(r#"{"command":"mesh/assign-id","payload":"abc"}"#)
                .payload
                .0
                .is_none()
        );
        assert!(
            parse(r#"{"command":"latency","payload":12}"#)
                .payload
                .0
                .is_none()
        );
        let reply = parse(
            r#"{"id":4,"command":"mesh/publish-record-update","payload":{"error":"no",
            "code":"EFORBIDDEN","name":"CommandError"}}"#,
        );
        assert_eq!(reply.id, Some(4));
        assert_eq!(reply.payload.0.unwrap().describe(), "EFORBIDDEN: no");
    }

    #[test]
    fn the_first_frame_assigns_an_id() {
        let frame = br#"{"command":"mesh/assign-id","payload":"c-1"}"#;
        assert_eq!(assigned_id(frame).unwrap(), "c-1");
        let frame = br#"{"command":"ping","payload":{}}"#;
        assert_eq!(
            assigned_id(frame).unwrap_err(),
            "first frame is ping, not mesh/assign-id"
        );
        assert!(assigned_id(b"not json").is_err());
    }

    #[test]
    fn value_helpers_read_what_the_server_sends() {
        let ping: serde_json::Value =
            serde_json::from_str(PONG.replace("pong", "ping").as_str()).unwrap();
        assert!(is_ping(&ping));
        assert!(!is_ping(&serde_json::json!({"id": 1, "command": "ping"})));
        let error =
            serde_json::json!({"error": "no", "code": "EFORBIDDEN", "name": "CommandError"});
        assert_eq!(error_code(&error).as_deref(), Some("EFORBIDDEN"));
        assert_eq!(error_code(&serde_json::json!({"success": true})), None);
        let text = request(7, SUBSCRIBE, &serde_json::json!({"recordId": "a\"b"}));
        let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (frame["id"].as_u64(), frame["payload"]["recordId"].as_str()),
            (Some(7), Some("a\"b"))
        );
    }

    #[test]
    fn written_frames_are_json() {
        let text = publish(3, "bench:x", |out| stamped_value(out, 1, 2, "ab"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["payload"]["newValue"]["pad"], "ab");
        let text = publish(4, "bench:x", |out| race_value(out, 2, 9));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["payload"]["newValue"]["seq"], 9);
        let text = subscribe(5, "bench:x", Mode::Patch);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["payload"]["mode"], "patch");
        let text = subscribe_collection(6, "bench:col:1", Mode::Full);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["command"], SUBSCRIBE_COLLECTION);
        assert_eq!(value["payload"]["collectionId"], "bench:col:1");
        let text = unsubscribe_collection(7, "bench:col:1");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["payload"]["collectionId"], "bench:col:1");
    }
}
