//! Guards that see the value: the app decides a client's write from what it would store.

use crate::connection::Connection;
use crate::model::RecordId;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A client's write as its record would take it: the value it would store (after a merge)
/// and the one it would replace.
#[derive(Clone, Debug)]
pub struct ProposedWrite {
    /// Who writes.
    pub connection: Connection,
    /// The record.
    pub id: RecordId,
    /// The value now (`None`: the write creates the record).
    pub current: Option<Arc<Value>>,
    /// The value the write would store.
    pub proposed: Arc<Value>,
}

/// What a value guard returns: allow (`Ok(true)`), refuse (`Ok(false)`), or an error (refuses);
/// the same as [`crate::access::GuardResult`].
pub type ValueGuardResult = Result<bool, Box<dyn std::error::Error + Send + Sync>>;

type GuardFuture = Pin<Box<dyn Future<Output = ValueGuardResult> + Send>>;
type SyncFn = dyn Fn(&ProposedWrite) -> bool + Send + Sync;
type AsyncFn = dyn Fn(ProposedWrite) -> GuardFuture + Send + Sync;

/// A check of a client's proposed value: allow (`true`) or refuse with `EFORBIDDEN`. An error,
/// a panic or (async) no answer within [`ValueGuard::TIMEOUT`] refuses. Cheap to clone.
///
/// The sync form runs inside the record's actor between two writes, so it must be quick; the
/// async form may wait (a database lookup), and the record's later writes wait behind it,
/// because each must be judged on the value the one before it leaves.
#[derive(Clone)]
pub enum ValueGuard {
    /// Answers at once.
    Sync(Arc<SyncFn>),
    /// Answers later.
    Async(Arc<AsyncFn>),
}

impl std::fmt::Debug for ValueGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueGuard::Sync(_) => "ValueGuard::Sync",
            ValueGuard::Async(_) => "ValueGuard::Async",
        })
    }
}

impl ValueGuard {
    /// How long an async guard may take before the write is refused.
    pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

    /// A guard from a plain function.
    pub fn sync<F>(check: F) -> Self
    where
        F: Fn(&ProposedWrite) -> bool + Send + Sync + 'static,
    {
        ValueGuard::Sync(Arc::new(check))
    }

    /// A guard from an async function.
    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn(ProposedWrite) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ValueGuardResult> + Send + 'static,
    {
        ValueGuard::Async(Arc::new(move |write| Box::pin(check(write))))
    }

    /// The sync guard's answer (a panic refuses); `None` for an async guard.
    pub(crate) fn decide_now(&self, write: &ProposedWrite) -> Option<bool> {
        let ValueGuard::Sync(check) = self else {
            return None;
        };
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(write)));
        Some(answer.unwrap_or_else(|_| {
            log::warn!("value guard panicked for record {}; refusing", write.id);
            false
        }))
    }

    /// The guard's answer, sync or async: an error, a panic or a timeout refuses.
    pub(crate) async fn allows(&self, write: ProposedWrite) -> bool {
        if let Some(answer) = self.decide_now(&write) {
            return answer;
        }
        let ValueGuard::Async(check) = self else {
            unreachable!("a sync guard answered above");
        };
        let id = write.id.clone();
        let run = crate::app_code::guarded(|| check(write));
        match tokio::time::timeout(Self::TIMEOUT, run).await {
            Ok(Ok(Ok(allowed))) => allowed,
            Ok(Ok(Err(e))) => {
                log::warn!("value guard failed for record {id}: {e}; refusing");
                false
            }
            Ok(Err(_)) => {
                log::warn!("value guard panicked for record {id}; refusing");
                false
            }
            Err(_) => {
                log::warn!("value guard for record {id} did not answer in time; refusing");
                false
            }
        }
    }
}
