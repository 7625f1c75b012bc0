//! mesh-records: versioned JSON records that many WebSocket clients watch and edit in real
//! time, speaking the Mesh client protocol.
//!
//! # Layout
//! - [`config`]: the TOML configuration, defaults, environment overrides, validation.
//! - [`error`]: the one error type and its stable wire codes.
//! - [`protocol`]: request/reply/push frames of the Mesh wire protocol.
//! - [`record`]: ids, versions, write strategies, push frames (pure code).
//! - [`access`]: exposure rules and guards (pure code).
//! - [`connection`]: a connection's id and metadata as guards and handlers see them.
//! - [`auth`]: HS256 JWT verification and pluggable authentication at the upgrade.
//! - [`commands`]: custom commands registered by the embedding app.
//! - [`store`]: the store boundary, `MemoryStore`, and `RedisStore` with its pub/sub router.
//! - [`persistence`]: the database boundary, SQLite and PostgreSQL adapters, rules, restore.
//! - [`metrics`]: Prometheus metrics for `GET /metrics`.
//! - [`inflight`]: back-pressure on a connection's requests in flight.
//! - [`outbox`]: each session's byte-bounded outbound queue and the response body draining it.
//! - [`socket`]: cutting off TCP connections whose peer stopped reading.
//! - [`actors`]: `SessionActor`, `RecordActor`, `RegistryActor`, `PersistenceActor`.
//! - `admin`: the bearer-token admin HTTP API; `demo`: the demo page's files.
//! - [`server`]: the `RecordServer` handle, its builder, routes, start and stop.

pub mod access;
pub mod actors;
mod admin;
pub mod auth;
pub mod commands;
pub mod config;
pub mod connection;
mod demo;
pub mod error;
pub mod inflight;
pub mod metrics;
pub mod outbox;
pub mod persistence;
pub mod protocol;
pub mod record;
pub mod records;
pub mod server;
mod session;
pub mod socket;
pub mod store;
mod ws;

pub use access::{Exposure, Guard, GuardResult};
pub use actors::record::WriteOutcome;
pub use auth::{AuthRejection, Authenticator, UpgradeRequest};
pub use commands::{CommandContext, CommandRequest, CommandResult};
pub use config::Config;
pub use connection::Connection;
pub use connection::MetadataHook;
pub use error::{Error, Result};
pub use persistence::{PersistOptions, PersistRule};
pub use record::{Mode, RecordId, Strategy, Version, Versioned};
pub use records::Records;
pub use server::{RecordServer, RunningServer, StopReport, run, start, start_with};
pub use socket::on_connect;

/// The README's Rust snippets, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
