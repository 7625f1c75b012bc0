//! Collections whose members an app function decides per connection: Mesh's
//! `exposeCollection(pattern, resolver)`.
//!
//! A resolver gets the connection and the collection id and returns member ids. It runs when
//! the connection subscribes and again whenever a record its rule's member glob matches
//! changes (coalesced: one run at a time, the changes meanwhile make the next), or the
//! connection's metadata changes. Members are kept to that glob, so the change feed can route
//! by it like any collection's; ids outside it are dropped. Read guards still filter what the
//! connection sees.

use crate::connection::Connection;
use crate::model::{Glob, RecordId, Versioned};
use crate::store::SharedStore;
use futures_util::future::join_all;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a resolver returns: member record ids, or an error (the subscription is refused).
pub type ResolverResult = Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>;

type ResolverFuture = Pin<Box<dyn Future<Output = ResolverResult> + Send>>;
type ResolverFn = dyn Fn(Connection, RecordId) -> ResolverFuture + Send + Sync;

/// Why a run gave no members.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// The resolver failed or panicked: the subscription is refused.
    #[error("{0}")]
    Resolver(String),
    /// It returned more members than a collection may have.
    #[error("{0}")]
    TooMany(String),
    /// A member could not be loaded.
    #[error("{0}")]
    Store(crate::store::StoreError),
}

/// An async function (connection, collection id) → member ids. Cheap to clone.
#[derive(Clone)]
pub struct Resolver(Arc<ResolverFn>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// A resolver from an async function.
    pub fn new<F, Fut>(resolve: F) -> Self
    where
        F: Fn(Connection, RecordId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ResolverResult> + Send + 'static,
    {
        Resolver(Arc::new(move |conn, id| Box::pin(resolve(conn, id))))
    }

    /// A resolver from a plain function that answers at once.
    pub fn sync<F>(resolve: F) -> Self
    where
        F: Fn(&Connection, &RecordId) -> Vec<String> + Send + Sync + 'static,
    {
        Resolver::new(move |conn, id| std::future::ready(Ok(resolve(&conn, &id))))
    }

    /// Runs the resolver: its ids within `glob`, at most `max` of them. An error or a panic
    /// fails with the reason.
    async fn members(
        &self,
        conn: Connection,
        collection: &RecordId,
        glob: &Glob,
        max: usize,
    ) -> Result<HashSet<RecordId>, RunError> {
        let id = collection.clone();
        let ids = crate::app_code::guarded(|| (self.0)(conn, id))
            .await
            .map_err(|_| RunError::Resolver("the resolver panicked".into()))?
            .map_err(|e| RunError::Resolver(format!("the resolver failed: {e}")))?;
        let members: HashSet<RecordId> = ids
            .iter()
            .filter(|id| glob.matches(id))
            .filter_map(|id| RecordId::parse(id, usize::MAX).ok())
            .collect();
        if members.len() > max {
            return Err(RunError::TooMany(format!(
                "the resolver returned {} members, over the limit of {max}",
                members.len()
            )));
        }
        Ok(members)
    }
}

/// A resolver-driven collection's source: the function and the one connection it serves.
#[derive(Clone)]
pub(crate) struct PerConnection {
    pub resolver: Resolver,
    pub connection: Connection,
}

/// What a run should load besides the members that entered.
pub(crate) struct Rerun {
    /// The members held before the run.
    pub held: HashSet<RecordId>,
    /// Records that changed since the last run (their values are loaded again).
    pub changed: HashSet<RecordId>,
    /// Load every member again (first run, or changes may have been missed).
    pub everything: bool,
}

impl PerConnection {
    /// Runs the resolver and loads what changed: the batch for `Membership::apply` (members
    /// that left as `None`).
    pub(crate) async fn run(
        self,
        (collection, glob, max): (RecordId, Glob, usize),
        store: SharedStore,
        rerun: Rerun,
    ) -> Result<Vec<(RecordId, Option<Versioned>)>, RunError> {
        let now = self
            .resolver
            .members(self.connection, &collection, &glob, max)
            .await?;
        let mut batch: Vec<(RecordId, Option<Versioned>)> = rerun
            .held
            .difference(&now)
            .map(|id| (id.clone(), None))
            .collect();
        let load: Vec<RecordId> = now
            .into_iter()
            .filter(|id| rerun.everything || !rerun.held.contains(id) || rerun.changed.contains(id))
            .collect();
        let loads = load.iter().map(|id| store.load(id)).collect::<Vec<_>>();
        for (id, loaded) in load.into_iter().zip(join_all(loads).await) {
            let state = loaded.map_err(RunError::Store)?;
            batch.push((id, state.versioned()));
        }
        Ok(batch)
    }
}
