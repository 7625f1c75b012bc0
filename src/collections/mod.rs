//! Collections: live lists of records, as Mesh's `mesh/subscribe-collection` serves them.
//!
//! A collection id (such as `list:42`) is covered by a [`CollectionExposure`] whose member
//! glob (`item:{1}:*`) names the records it holds. [`Collections`] is the server's hub: it
//! resolves a subscription (rule, then the collection's guard), starts one
//! `CollectionActor` per collection id with subscribers on this instance, and routes
//! the store's change feed to the actors whose glob matches the changed id ([`index`]), so a
//! write costs nothing in collections that cannot hold it.
//!
//! A rule with a [`Resolver`] instead serves each subscribing connection its own members
//! (Mesh's `exposeCollection(pattern, resolver)`): one actor per subscription.
//!
//! Parts: [`rule`] (exposures, pure), [`membership`] (members in order and the window shown,
//! pure), [`index`] (feed routing, pure), [`frames`] (the wire shapes), [`resolver`]
//! (per-connection members), `actor`.

pub(crate) mod actor;
mod config;
pub mod frames;
pub mod index;
pub mod membership;
pub mod resolver;
pub mod rule;
mod visible;

pub use config::exposures_from_config;
pub use resolver::{Resolver, ResolverResult};
pub use rule::{CollectionExposure, CollectionTable};

use crate::actors::registry::Directory;
use crate::error::Error;
use crate::model::{Glob, RecordId};
use crate::store::{FeedEvent, SharedStore, StoreError, WatchToken};
use actix::prelude::*;
use actor::{Admission, CollectionActor, Feed, Join};
use index::GlobIndex;
use membership::Membership;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

/// Members one collection may have (more fails the subscription with `ELIMIT`), unless
/// configured otherwise.
pub const DEFAULT_MAX_MEMBERS: usize = 10_000;

/// Why a subscription was not made.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No exposure covers the id, or its guard said no: Mesh's `success: false` reply.
    Refused,
    /// The collection's actor refused it and has answered the client itself.
    Answered,
    /// Could not be served (the actor could not be reached).
    Failed(Error),
}

/// The server's collections (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Collections {
    hub: Arc<Hub>,
}

struct Hub {
    table: RwLock<CollectionTable>,
    actors: Mutex<HashMap<RecordId, Addr<CollectionActor>>>,
    index: RwLock<GlobIndex<Addr<CollectionActor>, Addr<CollectionActor>>>,
    store: SharedStore,
    directory: Arc<Directory>,
    max_members: usize,
    /// Largest snapshot reply (`[server] max_frame_bytes`): no frame the server sends is
    /// larger than a frame it would accept.
    max_snapshot_bytes: usize,
    feed: Mutex<Option<WatchToken>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is a single insert or remove: a poisoned one is consistent.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Collections {
    pub(crate) fn new(
        store: SharedStore,
        directory: Arc<Directory>,
        table: CollectionTable,
        (max_members, max_snapshot_bytes): (usize, usize),
    ) -> Self {
        Collections {
            hub: Arc::new(Hub {
                table: RwLock::new(table),
                actors: Mutex::new(HashMap::new()),
                index: RwLock::new(GlobIndex::default()),
                store,
                directory,
                max_members,
                max_snapshot_bytes,
                feed: Mutex::new(None),
            }),
        }
    }

    /// Adds a collection exposure after the existing ones; subscriptions from now on see it.
    pub fn expose(&self, rule: CollectionExposure) {
        self.hub
            .table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(rule);
    }

    /// Whether any collection is exposed.
    pub fn any_exposed(&self) -> bool {
        !self
            .hub
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Starts following the store's change feed (once; later calls do nothing). Until it
    /// runs, collections do not see changes.
    pub(crate) async fn start_feed(&self) -> Result<(), StoreError> {
        if lock(&self.hub.feed).is_some() {
            return Ok(());
        }
        let weak: Weak<Hub> = Arc::downgrade(&self.hub);
        let sink = Arc::new(move |event: FeedEvent| {
            let Some(hub) = weak.upgrade() else { return };
            match event {
                FeedEvent::Changed(id) => {
                    let index = hub.index.read().unwrap_or_else(|p| p.into_inner());
                    if index.is_empty() {
                        return;
                    }
                    for addr in index.lookup(id.as_str()) {
                        addr.do_send(Feed::Changed(id.clone()));
                    }
                }
                FeedEvent::Resync => {
                    // Every live actor is filed in the index, per-connection ones included.
                    let index = hub.index.read().unwrap_or_else(|p| p.into_inner());
                    for addr in index.entries() {
                        addr.do_send(Feed::Resync);
                    }
                }
            }
        });
        let token = self.hub.store.watch_all(sink).await?;
        let mut feed = lock(&self.hub.feed);
        if feed.is_some() {
            self.hub.store.unwatch_all(token);
        } else {
            *feed = Some(token);
        }
        Ok(())
    }

    /// Subscribes a session to collection `id`: checks the rule and its guard, then hands
    /// `join` to the collection's actor (started if need be), which replies to the client.
    pub(crate) async fn join(
        &self,
        id: &RecordId,
        join: Join,
    ) -> Result<Addr<CollectionActor>, Refusal> {
        let resolved = self
            .hub
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .resolve(id)
            .ok_or(Refusal::Refused)?;
        if let Some(guard) = &resolved.guard
            && !guard.allows(join.connection.clone(), id.clone()).await
        {
            return Err(Refusal::Refused);
        }
        // A retiring actor refuses; the next attempt finds it forgotten and starts another.
        // A per-connection collection gets an actor of its own (never shared, never retiring).
        let per_connection = resolved.resolver.as_ref().map(|resolver| {
            let connection = join.connection.clone();
            resolver::PerConnection {
                resolver: resolver.clone(),
                connection,
            }
        });
        for _ in 0..3 {
            let addr = match &per_connection {
                Some(source) => self.start_actor(id, &resolved, Some(source.clone())),
                None => self.actor_for(id, &resolved),
            };
            match addr.send(join.clone()).await {
                Ok(Admission::Admitted) => return Ok(addr),
                Ok(Admission::Refused) => return Err(Refusal::Answered),
                Ok(Admission::Retry) | Err(_) => self.forget_addr(id, &addr),
            }
        }
        Err(Refusal::Failed(Error::Unavailable))
    }

    fn actor_for(&self, id: &RecordId, resolved: &rule::Resolved) -> Addr<CollectionActor> {
        let mut actors = lock(&self.hub.actors);
        if let Some(addr) = actors.get(id).filter(|a| a.connected()) {
            return addr.clone();
        }
        let addr = self.start_actor(id, resolved, None);
        actors.insert(id.clone(), addr.clone());
        addr
    }

    fn start_actor(
        &self,
        id: &RecordId,
        resolved: &rule::Resolved,
        per_connection: Option<resolver::PerConnection>,
    ) -> Addr<CollectionActor> {
        let membership = Membership::new(resolved.sort.clone(), resolved.limit);
        let rule = (resolved.glob.clone(), resolved.guard.clone());
        let mut actor = CollectionActor::new(id.clone(), rule, membership, self.clone());
        if let Some(source) = per_connection {
            actor = actor.per_connection(source);
        }
        actor.start()
    }

    fn forget_addr(&self, id: &RecordId, addr: &Addr<CollectionActor>) {
        let mut actors = lock(&self.hub.actors);
        if actors.get(id) == Some(addr) {
            actors.remove(id);
        }
    }

    /// Called by a stopping actor: not handed out, not fed any more.
    pub(crate) fn forget(&self, id: &RecordId, glob: &Glob, addr: &Addr<CollectionActor>) {
        self.forget_addr(id, addr);
        self.hub
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr, glob);
    }

    /// Called by a starting actor: feed it the changes its glob matches.
    pub(crate) fn index(&self, glob: &Glob, addr: Addr<CollectionActor>) {
        self.hub
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr.clone(), glob.clone(), addr);
    }

    pub(crate) fn store(&self) -> SharedStore {
        self.hub.store.clone()
    }

    pub(crate) fn directory(&self) -> Arc<Directory> {
        self.hub.directory.clone()
    }

    pub(crate) fn max_members(&self) -> usize {
        self.hub.max_members
    }

    pub(crate) fn max_snapshot_bytes(&self) -> usize {
        self.hub.max_snapshot_bytes
    }

    /// The records whose id matches `glob` (Redis glob syntax: `*`, `?`, `[a-z]`, `\\x`),
    /// ordered as a collection orders them (by the value at JSON pointer `sort`, else by id),
    /// skipping `offset` and returning at most `count`: Mesh's `listRecordsMatching`, on
    /// every store.
    ///
    /// Fails with [`Error::Invalid`] on a bad glob, [`Error::Limit`] when more than
    /// `[collections] max_members` records match, [`Error::Unavailable`] when the store
    /// cannot be read.
    pub async fn list_records_matching(
        &self,
        glob: &str,
        sort: Option<&str>,
        offset: usize,
        count: usize,
    ) -> crate::Result<Vec<(RecordId, crate::model::Versioned)>> {
        let glob = Glob::new(glob).map_err(Error::Invalid)?;
        let listed = self
            .hub
            .store
            .list_matching(&glob, self.hub.max_members)
            .await
            .map_err(|e| match e {
                StoreError::TooMany { .. } => Error::Limit(e.to_string()),
                _ => Error::Unavailable,
            })?;
        let mut ordered = Membership::new(sort.map(str::to_owned), None);
        ordered.apply(listed.into_iter().map(|(id, r)| (id, Some(r))).collect());
        Ok(ordered
            .window()
            .into_iter()
            .skip(offset)
            .take(count)
            .filter_map(|id| {
                let m = ordered.get(&id)?;
                let record = crate::model::Versioned {
                    value: m.value.clone(),
                    version: m.version,
                };
                Some((id, record))
            })
            .collect())
    }

    /// The members of collection `id` now (sorted and limited as its rule says, no read
    /// filtering: for the admin API), or `None` when no rule covers it. Fails with
    /// [`Error::Invalid`] for a collection whose members a resolver decides per connection.
    pub async fn members(
        &self,
        id: &str,
    ) -> crate::Result<Option<Vec<(RecordId, crate::model::Versioned)>>> {
        let Ok(id) = RecordId::parse(id, usize::MAX) else {
            return Ok(None);
        };
        let resolved = self
            .hub
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .resolve(&id);
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        if resolved.resolver.is_some() {
            return Err(Error::Invalid(format!(
                "collection {id}: its members are decided per connection"
            )));
        }
        let count = resolved.limit.unwrap_or(usize::MAX);
        let listed = self
            .list_records_matching(resolved.glob.as_str(), resolved.sort.as_deref(), 0, count)
            .await?;
        Ok(Some(listed))
    }

    /// How many collection actors run on this instance: one per collection with
    /// subscribers (or lingering), plus one per subscription to a per-connection collection.
    pub fn live_collections(&self) -> usize {
        let index = self.hub.index.read().unwrap_or_else(|p| p.into_inner());
        index.entries().count()
    }
}
