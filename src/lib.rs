//! mesh-records: versioned JSON records that many WebSocket clients watch and edit in real
//! time, speaking the Mesh client protocol.
//!
//! # Layout (from the bottom up; `tests/suites/layout.rs` keeps the dependencies one way)
//! - [`error`]: the one error type and its stable wire codes.
//! - [`model`]: the record model: ids, versions, write strategies, push frames, id globs (pure
//!   code).
//! - [`connection`]: a connection's id and metadata as guards and handlers see them, and the
//!   [`MetadataHook`].
//! - [`auth`]: JWT verification (shared secret, PEM key or JWKS) and pluggable authentication
//!   at the upgrade.
//! - [`metrics`]: metrics for `GET /metrics` (OpenMetrics text, scraped by Prometheus).
//! - `protocol` (request/reply/push frames), `inflight` (back-pressure on a connection's
//!   requests in flight), `outbox` (each session's byte-bounded outbound queue), `socket`
//!   (cutting off TCP connections whose peer stopped reading): internal.
//! - [`rules`]: write rules of writable exposures: JSON Schema, guards that see the value,
//!   expiry, size (pure code).
//! - [`access`]: exposure rules and guards (pure code).
//! - `origin`: which web pages may open a WebSocket (`[server] allowed_origins`; pure code,
//!   internal).
//! - [`store`]: the store boundary, `MemoryStore`, and `RedisStore` with its pub/sub router.
//! - [`config`]: the TOML configuration, defaults, environment overrides, validation.
//! - [`database`]: the persistence database boundary, SQLite and PostgreSQL adapters, rules,
//!   restore.
//! - [`actors`]: `RecordActor`, `RegistryActor`, `PersistenceActor` (the engine).
//! - [`collections`]: live lists of records (`mesh/subscribe-collection`): exposures, the
//!   per-collection actor and the change feed that drives it.
//! - [`records`]: [`Records`], the record API server code holds.
//! - [`commands`]: custom commands registered by the embedding app.
//! - `admin` (the bearer-token admin HTTP API), `demo` (the demo page's files), `session`
//!   (`SessionActor` and the server's connections), `ws` (the lean WebSocket path): internal.
//! - [`server`]: [`RecordServer`], its builder, routes, start and stop.

pub mod access;
pub mod actors;
mod admin;
mod app_code;
pub mod auth;
pub mod collections;
pub mod commands;
pub mod config;
pub mod connection;
mod demo;
pub mod error;
mod inflight;
pub mod metrics;
mod origin;
// Public only with the `bench` feature, for the outbox micro-benchmark (benches/hot_path.rs);
// not an extension point.
pub mod database;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod outbox;
#[cfg(not(feature = "bench"))]
mod outbox;
// Public only for the fuzz targets (fuzz/fuzz_targets/frames.rs); not an extension point.
pub mod model;
#[doc(hidden)]
pub mod protocol;
pub mod records;
pub mod rules;
pub mod server;
mod session;
mod socket;
pub mod store;
mod ws;

pub use access::{Exposure, Guard, GuardResult};
pub use actors::record::WriteOutcome;
pub use auth::{AuthRejection, Authenticator, UpgradeRequest};
pub use commands::{CommandContext, CommandRequest, CommandResult};
pub use config::Config;
pub use connection::Connection;
pub use connection::MetadataHook;
pub use database::{PersistOptions, PersistRule};
pub use error::{Error, Result};
pub use model::{Mode, RecordId, Strategy, Version, Versioned};
pub use records::{RecordSubscription, Records};
pub use server::{RecordServer, RunningServer, StopReport, run, start, start_with};
pub use socket::on_connect;

/// The README's Rust snippets, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// docs/extending.md's Rust snippets, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../docs/extending.md")]
pub struct ExtendingDoctests;
