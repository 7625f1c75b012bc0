//! Running code the embedding app supplies (guards, collection resolvers, command handlers):
//! a panic while building or polling its future becomes an error at the call site instead of
//! taking a worker thread down.

use futures_util::FutureExt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The app's code panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Panicked;

/// Calls `start` now (it builds the app's future) and returns a future that runs what it
/// built: `Err(Panicked)` if either step panicked.
pub(crate) fn guarded<T, F>(start: impl FnOnce() -> F) -> impl Future<Output = Result<T, Panicked>>
where
    F: Future<Output = T>,
{
    let started = catch_unwind(AssertUnwindSafe(start));
    async move {
        let future = started.map_err(|_| Panicked)?;
        AssertUnwindSafe(future)
            .catch_unwind()
            .await
            .map_err(|_| Panicked)
    }
}
