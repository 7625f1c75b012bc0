//! The actors. Each file starts with what its actor owns, who talks to it and the invariants
//! it keeps, then its messages.

pub mod persistence;
pub mod record;
pub mod registry;
