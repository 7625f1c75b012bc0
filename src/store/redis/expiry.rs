//! Records that expire, on Redis: [`Store::set_expiry`](crate::store::Store::set_expiry),
//! [`Store::expire_due`](crate::store::Store::expire_due) and the expiry index they keep.
//!
//! # Where a deadline lives
//! A record's deadline is in its own `record-expires` key (see `keys.rs`), in Redis's clock,
//! set by `write.lua` (a write with a ttl) or `set_expiry.lua`, dropped by `delete.lua`,
//! `expire.lua` and a restored tombstone. Those scripts hold every key of the record, so the
//! deadline changes atomically with the value, and only `expire.lua` decides that it has
//! passed, by reading it at the moment it deletes.
//!
//! # The index
//! To find due records without reading every deadline, each record with one has an entry in
//! an expiry index set (one per node, [`EXPIRY_INDEX_SHARDS`](super::EXPIRY_INDEX_SHARDS) on a
//! cluster), scored with a hint of its deadline. It is kept under one rule: **a record with a
//! deadline always has an entry at or before it, or one a live sweep holds.**
//! - Filing (`file_hint` in `common.lua`), for every write with a ttl and every `set_expiry`
//!   with one. On one node the record's own script files it, with the deadline it sets,
//!   atomically. On a cluster the index is not in the record's slot, so `index_hint.lua` files
//!   it before the record's script: a crash in between leaves an entry without a deadline,
//!   which costs one check, never a deadline without an entry; and when that filing moved
//!   nothing, it files again after the script (see [`file_again`]). Filing only moves an entry
//!   earlier, so a write that lost its race (a conflict, an older ttl) cannot push a hint past
//!   the deadline another write set.
//! - A sweep claims due entries (`index_claim.lua`): it moves them to its claim score, now +
//!   [`LEASE`] + .5, where no other sweep sees them until the lease runs out. A sweep that dies
//!   leaves its claims, and they come back due when their lease ends.
//! - For each claimed record it runs `expire.lua` on the record's keys: deleted, not due yet
//!   (its deadline is returned), or nothing to do (no deadline, no live record).
//! - Then it settles (`index_settle.lua`): each entry still at its claim score is removed, or
//!   moved to the deadline the record reported. Filing always changes a claimed entry (to the
//!   new hint when earlier, else to the claim score - .25), so a write that files during a
//!   claim keeps its entry: settling leaves what it no longer recognises.
//!
//! Whole milliseconds are hints, halves are claims, quarters are claims a write touched; the
//! scores stay exact (an f64 holds milliseconds to the year 285,000 with room for quarters).
//!
//! Each record is deleted once however many instances sweep: the deletion is `expire.lua`'s
//! alone, and it finds no deadline the second time. A record whose deadline moved later since
//! its entry came due is not deleted: the script reads the deadline itself, and the entry is
//! moved to it.
//!
//! # Precision
//! A record outlives its deadline by up to the caller's sweep interval, by up to [`LEASE`] when
//! the sweep that claimed it died (or lost the answer), and on a cluster by the clock skew
//! between the index's master and the record's.

use super::codec::{outcome_unknown, parse_version, unavailable};
use super::transport::Transport;
use super::{KeyLayout, RedisKeys, RedisStore};
use crate::model::RecordId;
use crate::store::{ExpiredBatch, OpId, StoreError, StoreFuture, ready};
use futures_util::StreamExt;
use futures_util::future::join_all;
use redis::ScriptInvocation;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a sweep's claim on due entries keeps other sweeps off them: far longer than a sweep
/// takes, short enough that a dead sweep's records wait little.
const LEASE: Duration = Duration::from_secs(10);

/// Records expired at once by one sweep.
const CONCURRENCY: usize = 16;

/// The longest ttl given to Redis: longer means "practically never" and must stay exact in a
/// score.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A ttl as the scripts take it: whole milliseconds, or "" for none.
pub(super) fn ttl_arg(ttl: Option<Duration>) -> String {
    ttl.map(|ttl| ttl.min(LONGEST).as_millis().to_string())
        .unwrap_or_default()
}

/// Files a record in its expiry index (the invocation from [`RedisStore::index_hint`]). Its
/// failure stops the write or `set_expiry` before the record's script, so nothing was changed.
///
/// Answers whether the entry moved. When it did not (an entry at or before the new hint was
/// there already), that entry may be a stale one a sweep is about to claim and settle away,
/// having found no deadline yet: the caller files again once the record's script has set the
/// deadline ([`file_again`]).
pub(super) async fn file(
    conn: &Transport,
    hint: &ScriptInvocation<'static>,
) -> Result<bool, StoreError> {
    conn.invoke::<i64>(hint)
        .await
        .map(|moved| moved == 1)
        .map_err(|err| unavailable("expiry index", &err))
}

/// Files again after the record's script set its deadline, when the first filing moved nothing:
/// the entry is then at or before the deadline, or claimed (and so touched: the sweep holding it
/// leaves it), or re-added. Only an instance dying between the two calls leaves the gap open. A
/// failure is logged: the write itself is done.
pub(super) async fn file_again(conn: &Transport, hint: &ScriptInvocation<'static>, id: &str) {
    if let Err(e) = conn.invoke::<i64>(hint).await {
        log::warn!("record {id}: filing its deadline in the expiry index failed: {e}");
    }
}

/// Where a record's deadline is filed in the expiry index ([`RedisStore::filing`]).
pub(super) enum Filing {
    /// No deadline is set.
    Nowhere,
    /// By the record's own script, given this index key (one node).
    InScript(String),
    /// By this call, before the record's script (a cluster).
    Before(ScriptInvocation<'static>),
}

/// What `expire.lua` said of one record.
enum Outcome {
    Deleted(u64),
    /// The deadline is ahead: the entry moves there (the score, as text).
    NotDue(String),
    /// No deadline or no live record: the entry goes.
    Nothing,
    /// Sent, but the answer was lost: the caller is told, and the claim stays.
    Unknown,
    /// Refused, or the record is unreadable: the claim stays, and its lease brings the entry
    /// back for another try.
    Left,
}

/// How a sweep of `max` records divides among `sets` index sets: evenly, the remainder to
/// sets that take turns from one call to the next, so none is always last.
fn shares(max: usize, sets: usize) -> Vec<usize> {
    static TURN: AtomicUsize = AtomicUsize::new(0);
    if sets == 0 {
        return Vec::new();
    }
    let first = TURN.fetch_add(1, Ordering::Relaxed) % sets;
    (0..sets)
        .map(|n| max / sets + usize::from((n + sets - first) % sets < max % sets))
        .collect()
}

impl RedisStore {
    /// Where a script that sets `id`'s deadline (`ttl`, if any) files it in the expiry index:
    /// on one node the script does it (it is given the index key, after the record's keys);
    /// on a cluster, where the index is in another slot, a call made before the script
    /// ([`file`]).
    pub(super) fn filing(&self, id: &RecordId, ttl: Option<Duration>) -> Filing {
        match ttl {
            None => Filing::Nowhere,
            Some(ttl) if self.keys.layout() == KeyLayout::Tagged => {
                Filing::Before(self.index_hint(id, ttl))
            }
            Some(_) => Filing::InScript(self.keys.expiry_index(id)),
        }
    }

    /// The call that files `id` in its expiry index with a deadline `ttl` from now.
    pub(super) fn index_hint(&self, id: &RecordId, ttl: Duration) -> ScriptInvocation<'static> {
        let mut hint = self.commands.scripts().index_hint.prepare_invoke();
        hint.key(self.keys.expiry_index(id))
            .arg(ttl_arg(Some(ttl)))
            .arg(id.as_str());
        hint
    }

    /// [`Store::set_expiry`](crate::store::Store::set_expiry): files the entry (with a ttl),
    /// then runs `set_expiry.lua`.
    pub(super) fn set_expiry_now(&self, id: &RecordId, ttl: Option<Duration>) -> StoreFuture<bool> {
        if let Some(problem) = self.keys.slot_problem(Some(id)) {
            return ready(Err(StoreError::Unavailable(problem)));
        }
        let mut invocation = self.commands.scripts().set_expiry.prepare_invoke();
        invocation
            .key(self.keys.value(id))
            .key(self.keys.version(id))
            .key(self.keys.expires(id));
        let hint = match self.filing(id, ttl) {
            Filing::Nowhere => None,
            Filing::InScript(index) => {
                invocation.key(index);
                None
            }
            Filing::Before(hint) => Some(hint),
        };
        invocation.arg(ttl_arg(ttl)).arg(id.as_str());
        let conn = self.commands.clone();
        let record = id.as_str().to_owned();
        Box::pin(async move {
            let moved = match &hint {
                Some(hint) => file(&conn, hint).await?,
                None => true,
            };
            let done: i64 = conn
                .invoke(&invocation)
                .await
                .map_err(|err| outcome_unknown("set expiry", &err))?;
            if let Some(hint) = hint.filter(|_| done == 1 && !moved) {
                file_again(&conn, &hint, &record).await;
            }
            Ok(done == 1)
        })
    }

    /// [`Store::expire_due`](crate::store::Store::expire_due): one [`Sweep`].
    pub(super) fn expire_due_now(&self, max: usize) -> StoreFuture<ExpiredBatch> {
        let sweep = Sweep {
            conn: self.commands.clone(),
            keys: Arc::clone(&self.keys),
            feed: self.feed_arg(),
        };
        Box::pin(async move { sweep.run(max).await })
    }
}

/// One `expire_due` call.
struct Sweep {
    conn: Transport,
    keys: Arc<RedisKeys>,
    feed: String,
}

/// One index set's claim: its score and the ids it holds.
struct Claim {
    index: String,
    score: String,
    ids: Vec<String>,
}

impl Sweep {
    async fn run(&self, max: usize) -> Result<ExpiredBatch, StoreError> {
        let indexes = self.keys.expiry_indexes();
        let shares = shares(max, indexes.len());
        let claims = join_all(
            indexes
                .into_iter()
                .zip(shares)
                .map(|(index, share)| self.claim(index, share)),
        )
        .await;
        let mut batch = ExpiredBatch::default();
        let mut held = Vec::new();
        let mut failure = None;
        for claim in claims {
            match claim {
                Ok((claim, more)) => {
                    batch.more |= more;
                    held.push(claim);
                }
                Err(err) => failure = Some(err),
            }
        }
        // A set that could not be asked is asked again next time; only when none answered is
        // there nothing to report.
        if held.is_empty()
            && let Some(err) = failure
        {
            return Err(err);
        }
        self.finish(held, &mut batch).await;
        Ok(batch)
    }

    /// Claims up to `max` due entries of one set; says whether more were due.
    async fn claim(&self, index: String, max: usize) -> Result<(Claim, bool), StoreError> {
        let mut invocation = self.conn.scripts().index_claim.prepare_invoke();
        invocation
            .key(&index)
            .arg(max)
            .arg(LEASE.as_millis().to_string());
        let (score, more, ids): (String, i64, Vec<String>) = self
            .conn
            .invoke(&invocation)
            .await
            .map_err(|err| unavailable("expiry claim", &err))?;
        Ok((Claim { index, score, ids }, more == 1))
    }

    /// Expires the claimed records, a few at a time, then settles each set's entries.
    async fn finish(&self, claims: Vec<Claim>, batch: &mut ExpiredBatch) {
        let work: Vec<(usize, String)> = claims
            .iter()
            .enumerate()
            .flat_map(|(n, claim)| claim.ids.iter().map(move |raw| (n, raw.clone())))
            .collect();
        let outcomes: Vec<(usize, String, Outcome)> = futures_util::stream::iter(work)
            .map(|(n, raw)| async move {
                let outcome = self.expire(&raw).await;
                (n, raw, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut settles: Vec<_> = claims
            .iter()
            .map(|claim| {
                let mut settle = self.conn.scripts().index_settle.prepare_invoke();
                settle.key(&claim.index).arg(&claim.score);
                (settle, 0)
            })
            .collect();
        for (n, raw, outcome) in outcomes {
            let score = match outcome {
                Outcome::Deleted(version) => {
                    if let Ok(id) = RecordId::parse(&raw, usize::MAX) {
                        batch.deleted.push((id, version));
                    }
                    String::new()
                }
                Outcome::NotDue(deadline) => deadline,
                Outcome::Nothing => String::new(),
                Outcome::Unknown => {
                    if let Ok(id) = RecordId::parse(&raw, usize::MAX) {
                        batch.unknown.push(id);
                    }
                    continue;
                }
                Outcome::Left => continue,
            };
            settles[n].0.arg(raw).arg(score);
            settles[n].1 += 1;
        }
        let settled = settles
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(settle, _)| self.conn.invoke::<i64>(settle));
        // A failure here only leaves entries claimed: their lease brings them back, and the
        // next check finds nothing to do.
        for failed in join_all(settled).await.into_iter().filter_map(Result::err) {
            log::warn!("expiry index: settling a sweep's claim failed: {failed}");
        }
    }

    /// Runs `expire.lua` on one record named by an index entry.
    async fn expire(&self, raw: &str) -> Outcome {
        let id = match RecordId::parse(raw, usize::MAX) {
            Ok(id) if self.keys.slot_problem(Some(&id)).is_none() => id,
            // Not an id any write could have filed: the entry only needs to go.
            _ => return Outcome::Nothing,
        };
        let keys = &self.keys;
        let mut invocation = self.conn.scripts().expire.prepare_invoke();
        invocation
            .key(keys.value(&id))
            .key(keys.version(&id))
            .key(keys.last_op(&id))
            .key(keys.history(&id))
            .key(keys.history_bytes(&id))
            .key(keys.expires(&id))
            .arg(keys.channel(&id))
            .arg(OpId::next().0.to_string())
            .arg(&self.feed)
            .arg(id.as_str());
        let answer: Result<(i64, String), _> = self.conn.invoke(&invocation).await;
        match answer {
            Ok((1, version)) => match parse_version(&id, &version) {
                Ok(version) => Outcome::Deleted(version),
                Err(err) => {
                    log::warn!("expiring {id}: {err}");
                    Outcome::Left
                }
            },
            Ok((2, deadline)) => Outcome::NotDue(deadline),
            Ok((0, _)) => Outcome::Nothing,
            Ok((_, raw)) => {
                log::warn!("expiring {id}: its version {raw:?} is not a number; left for now");
                Outcome::Left
            }
            Err(err) => match outcome_unknown("expire", &err) {
                StoreError::Indeterminate(_) => Outcome::Unknown,
                err => {
                    log::warn!("expiring {id}: {err}");
                    Outcome::Left
                }
            },
        }
    }
}
