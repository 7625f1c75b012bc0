//! The frames hostile clients send, as plain functions (tested below without a server). Each
//! is built to make the server work as hard as one frame of its size allows, or to be refused.

use crate::wire::{self, Mode};
use std::fmt::Write as _;

/// The diff bomb's pair: `{K: []}` then `{K: [0, 0, …]}` with `K` a `len`-character key and
/// `len` zeros. A JSON Patch diff that repeats the pointer per array element costs about
/// len² bytes for the second (len = 20,000: ~20 KB and ~60 KB frames, ~400 MB of paths).
pub fn diff_bomb(id: u64, record: &str, len: usize, filled: bool) -> String {
    wire::publish(id, record, |out| {
        out.reserve(3 * len + 16);
        out.push_str("{\"");
        out.extend(std::iter::repeat_n('k', len));
        out.push_str("\":[");
        if filled {
            for i in 0..len {
                out.push_str(if i == 0 { "0" } else { ",0" });
            }
        }
        out.push_str("]}");
    })
}

/// An array of `1e15` filling about `bytes` of frame: each re-serializes as
/// `1000000000000000.0`, so the stored value is about 3.8 times the frame.
pub fn long_numbers(id: u64, record: &str, bytes: usize) -> String {
    wire::publish(id, record, |out| {
        out.reserve(bytes + 8);
        out.push('[');
        for i in 0..bytes / 5 {
            out.push_str(if i == 0 { "1e15" } else { ",1e15" });
        }
        out.push(']');
    })
}

/// `{"a": {"a": … leaf …}}` `depth` levels deep, written with deepMerge: the merge and the
/// diff walk the whole depth. Past the parser's nesting limit (128) the frame is refused.
pub fn deep(id: u64, record: &str, depth: usize, leaf: u64) -> String {
    let mut out = String::with_capacity(64 + depth * 8);
    let _ = write!(
        out,
        r#"{{"id":{id},"command":"{}","payload":{{"recordId":"{record}","options":{{"strategy":"deepMerge"}},"newValue":"#,
        wire::PUBLISH
    );
    out.extend(std::iter::repeat_n("{\"a\":", depth));
    let _ = write!(out, "{leaf}");
    out.extend(std::iter::repeat_n('}', depth));
    out.push_str("}}");
    out
}

/// A text frame of `bytes` bytes (a JSON string inside a publish), for frames over
/// `max_frame_bytes`.
pub fn oversized(id: u64, record: &str, bytes: usize) -> String {
    wire::publish(id, record, |out| {
        out.reserve(bytes + 2);
        out.push('"');
        out.extend(std::iter::repeat_n('x', bytes));
        out.push('"');
    })
}

/// The `n`-th of a rotation of text frames the server must refuse without harm: not JSON, not
/// an object, wrong field types, unknown commands, a record id far over the length limit, a
/// number too large for any type, `newValue: null`, a bad strategy, a subscribe to a record
/// the config does not expose.
pub fn garbage(n: u64) -> String {
    let id = n + 1;
    match n % 10 {
        0 => "not json at all {".to_owned(),
        1 => "[1,2,3]".to_owned(),
        2 => format!(r#"{{"id":{id},"command":17,"payload":{{}}}}"#),
        3 => format!(r#"{{"id":{id},"command":"no/such-command","payload":[]}}"#),
        4 => format!(
            r#"{{"id":{id},"command":"{}","payload":{{"recordId":"{}","mode":"full"}}}}"#,
            wire::SUBSCRIBE,
            "r".repeat(10_000)
        ),
        5 => format!(
            r#"{{"id":{id},"command":"{}","payload":{{"recordId":"bench:g","newValue":1e999999}}}}"#,
            wire::PUBLISH
        ),
        6 => format!(
            r#"{{"id":{id},"command":"{}","payload":{{"recordId":"bench:g","newValue":null}}}}"#,
            wire::PUBLISH
        ),
        7 => format!(
            r#"{{"id":{id},"command":"{}","payload":{{"recordId":"bench:g","newValue":1,"options":{{"strategy":"explode"}}}}}}"#,
            wire::PUBLISH
        ),
        8 => wire::subscribe(id, "not-exposed:x", Mode::Full),
        _ => format!(r#"{{"id":{id},"command":"{}","payload":"#, wire::PUBLISH),
    }
}

/// A tiny publish for the request flood.
pub fn small_write(id: u64, record: &str) -> String {
    wire::publish(id, record, |out| {
        let _ = write!(out, "{id}");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_diff_bomb_is_two_small_frames() {
        let empty = parse(&diff_bomb(1, "bench:b", 20_000, false));
        let key = "k".repeat(20_000);
        assert_eq!(empty["payload"]["newValue"][&key], serde_json::json!([]));
        let text = diff_bomb(2, "bench:b", 20_000, true);
        assert!(text.len() < 64 * 1024, "{} bytes", text.len());
        let filled = parse(&text);
        let zeros = filled["payload"]["newValue"][&key].as_array().unwrap();
        assert_eq!(zeros.len(), 20_000);
        assert!(zeros.iter().all(|z| z == 0));
    }

    #[test]
    fn numbers_and_depth_are_what_they_say() {
        let text = long_numbers(1, "bench:n", 40_000);
        assert!((40_000..40_200).contains(&text.len()), "{}", text.len());
        let stored = serde_json::to_string(&parse(&text)["payload"]["newValue"]).unwrap();
        assert!(
            stored.len() > 3 * 40_000,
            "re-serialized {} bytes",
            stored.len()
        );

        let mut value = &parse(&deep(1, "bench:d", 120, 7))["payload"]["newValue"];
        for _ in 0..120 {
            value = &value["a"];
        }
        assert_eq!(value, 7);
        assert!(serde_json::from_str::<Value>(&deep(1, "bench:d", 5_000, 7)).is_err());
        assert_eq!(oversized(1, "bench:o", 2 << 20).len() / (1 << 20), 2);
    }

    #[test]
    fn garbage_rotates_through_every_kind() {
        let kinds: std::collections::HashSet<String> = (0..10).map(garbage).collect();
        assert_eq!(kinds.len(), 10);
        let json = (0..10)
            .filter(|&n| serde_json::from_str::<Value>(&garbage(n)).is_ok())
            .count();
        // Three are not JSON at all (0, 5: a number past f64, 9: cut short); the rest are
        // JSON the server must refuse for what they say.
        assert_eq!(json, 7);
        assert!(parse(&small_write(5, "bench:f"))["payload"]["newValue"] == 5);
    }
}
