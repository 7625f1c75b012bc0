//! Exposure rules: which records clients may read or write, and the guards that decide per
//! connection. Pure code; the `RegistryActor` runs it.
//!
//! Reads: the first matching read-only exposure decides with its guard; if none matches, the
//! first matching writable exposure decides with its *read* guard (`guard`). Writes: the first
//! matching writable exposure decides with its `write_guard`. No match means no access. A guard
//! that returns an error or panics denies.

use crate::connection::Connection;
use crate::model::RecordId;
use crate::rules::{Schema, ValueGuard, WriteRules};
use regex::Regex;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a guard returns: allow (`Ok(true)`), deny (`Ok(false)`), or an error (denies).
pub type GuardResult = Result<bool, Box<dyn std::error::Error + Send + Sync>>;

type GuardFuture = Pin<Box<dyn Future<Output = GuardResult> + Send>>;
type GuardFn = dyn Fn(Connection, RecordId) -> GuardFuture + Send + Sync;

/// An async check (connection, record id) → allow. Cheap to clone.
#[derive(Clone)]
pub struct Guard(Arc<GuardFn>);

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard")
    }
}

impl Guard {
    /// A guard from an async function.
    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn(Connection, RecordId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = GuardResult> + Send + 'static,
    {
        Guard(Arc::new(move |conn, id| Box::pin(check(conn, id))))
    }

    /// A guard from a plain function that answers at once.
    pub fn sync<F>(check: F) -> Self
    where
        F: Fn(&Connection, &RecordId) -> bool + Send + Sync + 'static,
    {
        Guard::new(move |conn, id| std::future::ready(Ok(check(&conn, &id))))
    }

    /// Runs the guard; an error or a panic (while building or polling the future) denies.
    pub async fn allows(&self, conn: Connection, id: RecordId) -> bool {
        let record = id.clone();
        match crate::app_code::guarded(|| (self.0)(conn, id)).await {
            Ok(Ok(allowed)) => allowed,
            Ok(Err(e)) => {
                log::warn!("guard failed for record {record}: {e}; denying");
                false
            }
            Err(_) => {
                log::warn!("guard panicked for record {record}; denying");
                false
            }
        }
    }
}

/// Which ids an exposure covers.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Exactly this id (never a prefix).
    Exact(String),
    /// Ids the regex matches (unanchored unless the pattern anchors itself, as in Rust's `regex`).
    Pattern(Regex),
}

impl Matcher {
    /// Whether the id is covered.
    pub fn matches(&self, id: &str) -> bool {
        match self {
            Matcher::Exact(exact) => exact == id,
            Matcher::Pattern(re) => re.is_match(id),
        }
    }

    /// The regex's capture groups for the id (exact matchers have only group 0).
    pub fn capture(&self, id: &str, group: usize) -> Option<String> {
        match self {
            Matcher::Exact(exact) => (group == 0 && exact == id).then(|| id.to_owned()),
            Matcher::Pattern(re) => re
                .captures(id)
                .and_then(|c| c.get(group))
                .map(|m| m.as_str().to_owned()),
        }
    }
}

/// One rule exposing records to clients.
#[derive(Clone, Debug)]
pub struct Exposure {
    /// Which ids.
    pub matcher: Matcher,
    /// Whether clients may write (writable implies readable).
    pub writable: bool,
    /// Guard for reads (subscribe); none = allow.
    pub guard: Option<Guard>,
    /// Guard for writes; none = allow. Ignored for reads.
    pub write_guard: Option<Guard>,
    /// What every value stored under a writable exposure must satisfy (schema, value guard,
    /// expiry, size); ignored on a read-only one.
    pub rules: WriteRules,
}

impl Exposure {
    /// Exposes exactly one id, read-only.
    pub fn id(id: impl Into<String>) -> Self {
        Exposure {
            matcher: Matcher::Exact(id.into()),
            writable: false,
            guard: None,
            write_guard: None,
            rules: WriteRules::default(),
        }
    }

    /// Exposes the ids a regex matches, read-only. Fails with [`crate::Error::Config`] on a bad
    /// regex.
    pub fn pattern(pattern: &str) -> crate::Result<Self> {
        let re = Regex::new(pattern)
            .map_err(|e| crate::Error::Config(format!("invalid regex {pattern:?}: {e}")))?;
        Ok(Exposure {
            matcher: Matcher::Pattern(re),
            writable: false,
            guard: None,
            write_guard: None,
            rules: WriteRules::default(),
        })
    }

    /// Makes the exposure writable.
    pub fn writable(mut self) -> Self {
        self.writable = true;
        self
    }

    /// Sets the read guard.
    pub fn guard(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Sets the write guard.
    pub fn write_guard(mut self, guard: Guard) -> Self {
        self.write_guard = Some(guard);
        self
    }

    /// Every value stored under this (writable) exposure must satisfy `schema` (`ESCHEMA`).
    pub fn schema(mut self, schema: Schema) -> Self {
        self.rules.schema = Some(Arc::new(schema));
        self
    }

    /// Clients' writes must pass `guard`, which sees the proposed and the current value.
    pub fn value_guard(mut self, guard: ValueGuard) -> Self {
        self.rules.value_guard = Some(guard);
        self
    }

    /// A record not written for `ttl` is deleted.
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.rules.ttl = Some(ttl);
        self
    }

    /// Values stored under this exposure may be up to `bytes` long, serialized, instead of
    /// `server.max_value_bytes` (never more than `server.max_frame_bytes`: the builder caps it).
    /// Sessions measure a value before parsing it against the largest limit of the exposures
    /// the server was built with: an exposure added later with `Records::expose` can lower the
    /// limit but not raise it for clients.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.rules.max_value_bytes = Some(bytes);
        self
    }
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Subscribe / read.
    Read,
    /// Publish / write.
    Write,
}

/// The outcome of matching, before the guard runs.
#[derive(Debug)]
pub enum Decision {
    /// No exposure covers the id for this operation.
    NotExposed,
    /// Exposed with no guard.
    Allowed,
    /// Exposed; this guard decides.
    Guarded(Guard),
}

/// All exposures, in the order they were declared.
#[derive(Clone, Debug, Default)]
pub struct ExposureTable {
    exposures: Vec<Exposure>,
    /// Every matcher in one `RegexSet`, so a decision is one pass over the id whatever the
    /// number of rules (a linear scan took 346 µs with 1,000 rules). `None` when the set could
    /// not be built (size limits): then matchers are tried one by one.
    index: Option<regex::RegexSet>,
}

impl ExposureTable {
    /// A table of these exposures.
    pub fn new(exposures: Vec<Exposure>) -> Self {
        let mut table = ExposureTable {
            exposures,
            index: None,
        };
        table.reindex();
        table
    }

    /// Adds an exposure after the existing ones.
    pub fn push(&mut self, exposure: Exposure) {
        self.exposures.push(exposure);
        self.reindex();
    }

    fn reindex(&mut self) {
        let patterns = self.exposures.iter().map(|e| match &e.matcher {
            Matcher::Exact(id) => format!("^(?:{})$", regex::escape(id)),
            Matcher::Pattern(re) => re.as_str().to_owned(),
        });
        self.index = regex::RegexSet::new(patterns).ok();
    }

    /// Which rule decides `op` on `id` (see the module docs for the order).
    pub fn decide(&self, id: &str, op: Operation) -> Decision {
        let matched = self.matches(id);
        let first = |writable: bool| self.first(id, &matched, writable);
        let found = match op {
            Operation::Read => first(false)
                .or_else(|| first(true))
                .map(|e| e.guard.clone()),
            Operation::Write => first(true).map(|e| e.write_guard.clone()),
        };
        match found {
            None => Decision::NotExposed,
            Some(None) => Decision::Allowed,
            Some(Some(guard)) => Decision::Guarded(guard),
        }
    }

    /// The write rules for `id`: those of the writable exposure that decides its writes
    /// (none when no writable exposure covers it).
    pub fn write_rules(&self, id: &str) -> WriteRules {
        self.first(id, &self.matches(id), true)
            .map(|e| e.rules.clone())
            .unwrap_or_default()
    }

    /// The largest value any exposure lets a write store, if one raises the server's limit.
    pub fn largest_value_limit(&self) -> Option<usize> {
        self.exposures
            .iter()
            .filter(|e| e.writable)
            .filter_map(|e| e.rules.max_value_bytes)
            .max()
    }

    /// Which exposures cover `id`, in one pass (`None`: no index, test them one by one).
    fn matches(&self, id: &str) -> Option<regex::SetMatches> {
        self.index.as_ref().map(|set| set.matches(id))
    }

    /// The first exposure covering `id` (as `matched` says) that is writable (or read-only).
    fn first(
        &self,
        id: &str,
        matched: &Option<regex::SetMatches>,
        writable: bool,
    ) -> Option<&Exposure> {
        self.exposures
            .iter()
            .enumerate()
            .find(|(i, e)| {
                e.writable == writable
                    && match matched {
                        Some(matched) => matched.matched(*i),
                        None => e.matcher.matches(id),
                    }
            })
            .map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn deny() -> Guard {
        Guard::sync(|_, _| false)
    }

    #[test]
    fn exact_ids_are_never_prefixes() {
        let table = ExposureTable::new(vec![Exposure::id("user:1")]);
        assert!(matches!(
            table.decide("user:1", Operation::Read),
            Decision::Allowed
        ));
        assert!(matches!(
            table.decide("user:10", Operation::Read),
            Decision::NotExposed
        ));
        assert!(matches!(
            table.decide("user:1", Operation::Write),
            Decision::NotExposed
        ));
    }

    #[test]
    fn writable_grants_read_with_its_read_guard_only() {
        let table = ExposureTable::new(vec![
            Exposure::pattern("^doc:")
                .unwrap()
                .writable()
                .write_guard(deny()),
        ]);
        assert!(matches!(
            table.decide("doc:1", Operation::Read),
            Decision::Allowed
        ));
        assert!(matches!(
            table.decide("doc:1", Operation::Write),
            Decision::Guarded(_)
        ));
    }

    #[test]
    fn read_only_exposures_decide_reads_first() {
        let table = ExposureTable::new(vec![
            Exposure::pattern("^doc:").unwrap().writable(),
            Exposure::pattern("^doc:secret").unwrap().guard(deny()),
        ]);
        assert!(matches!(
            table.decide("doc:secret", Operation::Read),
            Decision::Guarded(_)
        ));
        assert!(matches!(
            table.decide("doc:secret", Operation::Write),
            Decision::Allowed
        ));
    }

    #[actix_rt::test]
    async fn failing_and_panicking_guards_deny() {
        let conn = Connection::new("c", serde_json::Value::Null);
        let id = RecordId::parse("a", 10).unwrap();
        let erroring = Guard::new(|_, _| async { Err("boom".into()) });
        let panicking = Guard::new(|_, _| async { panic!("guard bug") });
        let panicking_early = Guard::sync(|_, _| panic!("guard bug"));
        assert!(!erroring.allows(conn.clone(), id.clone()).await);
        assert!(!panicking.allows(conn.clone(), id.clone()).await);
        assert!(!panicking_early.allows(conn.clone(), id.clone()).await);
        assert!(Guard::sync(|_, _| true).allows(conn, id).await);
    }

    proptest! {
        #[test]
        fn exact_matches_only_itself(a in "[a-z:0-9]{1,8}", b in "[a-z:0-9]{1,8}") {
            let m = Matcher::Exact(a.clone());
            prop_assert_eq!(m.matches(&b), a == b);
        }

        #[test]
        fn the_regex_set_decides_like_a_linear_scan(
            rules in prop::collection::vec(("[ab]{1,3}", any::<bool>(), any::<bool>()), 1..12),
            id in "[ab:]{0,6}",
        ) {
            let exposures: Vec<Exposure> = rules
                .iter()
                .map(|(text, exact, writable)| {
                    let e = if *exact { Exposure::id(text.clone()) }
                        else { Exposure::pattern(&format!("^{text}")).unwrap() };
                    if *writable { e.writable() } else { e }
                })
                .collect();
            let indexed = ExposureTable::new(exposures.clone());
            let linear = ExposureTable { exposures, index: None };
            for op in [Operation::Read, Operation::Write] {
                let a = matches!(indexed.decide(&id, op), Decision::NotExposed);
                let b = matches!(linear.decide(&id, op), Decision::NotExposed);
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn anchored_pattern_agrees_with_prefix_test(prefix in "[a-z]{1,5}", id in "[a-z]{0,8}") {
            let m = Matcher::Pattern(Regex::new(&format!("^{}", regex::escape(&prefix))).unwrap());
            prop_assert_eq!(m.matches(&id), id.starts_with(&prefix));
        }
    }
}
