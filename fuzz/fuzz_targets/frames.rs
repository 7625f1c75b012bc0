//! Fuzzes what a client controls on the socket: frame decoding, command decoding, and what a
//! decoded write does (strategies, diff, patch, push frames). Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_records::protocol::{Command, decode_command, error_frame, parse_request};
use mesh_records_fuzz::check_write;
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
            value, strategy, ..
        }) => {
            let incoming = Arc::new(value);
            let current = Arc::new(json!({"a": {"b": [1, 2]}, "c": "x", "n": null}));
            check_write(Some(&current), Arc::clone(&incoming), strategy);
            check_write(None, incoming, strategy);
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
