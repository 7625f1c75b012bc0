//! Fuzzes what a client controls: frame decoding, command decoding, and what a decoded write
//! does (strategies, diff, patch, push frames). Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_records::protocol::{Command, decode_command, error_frame, parse_request};
use mesh_records::record::{apply_strategy, full_frame, patch_frame};
use serde_json::{Value, json};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let request = match parse_request(text) {
        Ok(request) => request,
        Err(bad) => {
            if let Some(id) = bad.id {
                let error = mesh_records::Error::Invalid(bad.reason);
                let frame = error_frame(&id, &bad.command.unwrap_or_default(), &error);
                assert!(serde_json::from_str::<Value>(&frame).is_ok());
            }
            return;
        }
    };
    let command = request.command;
    match decode_command(&command, request.payload, 256) {
        Ok(Command::Publish {
            record_id,
            value,
            strategy,
        }) => {
            let current = Arc::new(json!({"a": {"b": [1, 2]}, "c": "x", "n": null}));
            let next = apply_strategy(Some(&current), &Arc::new(value), strategy);
            let patch = json_patch::diff(&current, &next);
            let mut replayed = (*current).clone();
            json_patch::patch(&mut replayed, &patch).expect("a computed patch applies");
            assert_eq!(&replayed, next.as_ref(), "diff then patch gives the new value");
            let full = full_frame(&record_id, &next, 1);
            let patch = patch_frame(&record_id, &patch, 2);
            assert!(serde_json::from_str::<Value>(&full).is_ok());
            assert!(serde_json::from_str::<Value>(&patch).is_ok());
        }
        Ok(_) => {}
        Err(error) => {
            if let Some(id) = request.id {
                let frame = error_frame(&id, &command, &error);
                assert!(serde_json::from_str::<Value>(&frame).is_ok());
            }
        }
    }
});
