//! The integration tests in one binary: a real server on a free port (or the built
//! `mesh-records` binary), real WebSockets, real Redis / PostgreSQL / SQLite. One binary
//! instead of one per file because linking was most of an incremental `cargo test` build
//! (touching src/lib.rs: about 130 s with 21 test binaries, about 40 s with one).
//!
//! Two files stay binaries of their own because they read process-wide figures that tests
//! running beside them would move: `metrics.rs` (the process's Prometheus registry) and
//! `soak.rs` (the process's RSS and open descriptors; `scripts/soak.sh` runs it long).
//!
//! Run one subject with a filter: `cargo test --test integration records::`.

#[macro_use]
mod common;
mod suites;
