//! Fuzzes reading a configuration: TOML text, then environment overrides, then validation, then
//! what the server builds from a valid config (exposures, persist rules, JWT checks, durations).
//! Every step answers with a config error or a value; any panic is a bug.
//!
//! Input: the TOML text, optionally followed by a NUL byte and `NAME=value` lines taken as the
//! environment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_records::{Config, Error, PersistOptions, PersistRule};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, env) = input.split_once('\0').unwrap_or((input, ""));
    let mut config = match Config::parse(text) {
        Ok(config) => config,
        Err(error) => return assert_config_error(&error),
    };
    let var = |name: &str| {
        env.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_owned())
    };
    if let Err(error) = config.apply_env(var) {
        return assert_config_error(&error);
    }
    if let Err(error) = config.validate() {
        return assert_config_error(&error);
    }
    // What `RecordServerBuilder::build` derives from a config that validated must not fail.
    config
        .exposures()
        .expect("a validated config's exposures build");
    for rule in &config.records.persist {
        PersistRule::try_from(rule).expect("a validated persist rule builds");
        let _ = PersistOptions::from(rule);
    }
    // The JWT checks of a config without a key file or a key set (no I/O: ready at the first
    // poll) are a verifier or a config error, never a panic.
    if config.auth.jwt_public_key_file.is_none() && config.auth.jwks_url.is_none() {
        use std::future::Future;
        let mut verifier = std::pin::pin!(config.auth.jwt_verifier());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match verifier.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Err(error)) => assert_config_error(&error),
            std::task::Poll::Ready(Ok(_)) => {}
            std::task::Poll::Pending => panic!("deriving JWT checks from a secret waited"),
        }
    }
    let _ = config.records.history();
    let s = &config.server;
    let _ = (s.ping_interval(), s.record_linger(), s.shutdown_timeout());
});

/// A bad config is reported as a config error with something to read, never another kind.
fn assert_config_error(error: &Error) {
    match error {
        Error::Config(message) => assert!(!message.is_empty(), "empty config error"),
        other => panic!("a config problem reported as {other:?}"),
    }
}
