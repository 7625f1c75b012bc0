//! The integration tests by subject, one module each (see `tests/integration.rs`).

mod admin;
mod auth;
mod binary;
mod cluster;
mod connection;
mod extensions;
mod faults;
mod hostile;
mod layout;
mod lean_socket;
mod limits;
mod load_report;
mod origin;
mod persistence_actor;
mod persistence_adapters;
mod persistence_faults;
mod persistence_server;
mod persistence_startup;
mod persistence_truth;
mod records;
mod redis_cluster;
mod redis_memory;
mod redis_store;
mod resume;
mod slow_consumers;
mod store_faults;
