//! The actors. Each file starts with what its actor owns, who talks to it and the invariants
//! it keeps, then its messages. Only the `PersistenceActor` is public: an app may batch
//! writes to a database of its own with it (see `persistence::PersistenceAdapter`).

pub(crate) mod clock;
pub(crate) mod expiry;
pub mod persistence;
pub(crate) mod record;
pub(crate) mod registry;
pub(crate) mod route;
