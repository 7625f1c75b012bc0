//! Collection exposures: which collection ids clients may subscribe to, which records each
//! holds, and the guard that decides per connection. Pure code.

use super::resolver::Resolver;
use crate::access::{Guard, Matcher};
use crate::error::{Error, Result};
use crate::model::{Glob, RecordId};
use regex::Regex;

/// One rule exposing collections to clients.
#[derive(Clone, Debug)]
pub struct CollectionExposure {
    /// Which collection ids.
    pub matcher: Matcher,
    /// The glob over record ids; `{N}` stands for capture group N of the pattern.
    pub members: String,
    /// JSON pointer into each member's value to sort by (ascending, ties by id); none sorts
    /// by id.
    pub sort: Option<String>,
    /// Only the first `limit` members (in sort order) are shown.
    pub limit: Option<usize>,
    /// Who may subscribe (gets the connection and the collection id); none = anyone.
    pub guard: Option<Guard>,
    /// Decides the members per connection, among the records `members` matches; none =
    /// every record it matches, the same for everyone.
    pub resolver: Option<Resolver>,
}

impl CollectionExposure {
    /// Exposes the collections whose id `pattern` (a regex) matches, each holding the records
    /// the glob `members` matches once `{N}` is replaced by capture N of the collection id
    /// (escaped, so a captured `*` matches only itself). Fails with [`Error::Config`] on a bad
    /// regex, glob or capture number.
    ///
    /// ```
    /// # use mesh_records::collections::CollectionExposure;
    /// let lists = CollectionExposure::pattern(r"^list:(\w+)$", "item:{1}:*").unwrap();
    /// ```
    pub fn pattern(pattern: &str, members: &str) -> Result<Self> {
        let re = Regex::new(pattern)
            .map_err(|e| Error::Config(format!("invalid regex {pattern:?}: {e}")))?;
        let exposure = CollectionExposure {
            matcher: Matcher::Pattern(re),
            members: members.to_owned(),
            sort: None,
            limit: None,
            guard: None,
            resolver: None,
        };
        exposure.check()?;
        Ok(exposure)
    }

    /// Exposes exactly one collection id holding the records `members` matches.
    pub fn id(id: &str, members: &str) -> Result<Self> {
        let exposure = CollectionExposure {
            matcher: Matcher::Exact(id.to_owned()),
            members: members.to_owned(),
            sort: None,
            limit: None,
            guard: None,
            resolver: None,
        };
        exposure.check()?;
        Ok(exposure)
    }

    /// Exposes the collections whose id `pattern` matches, with members decided for each
    /// subscribing connection by `resolver` (Mesh's `exposeCollection`). The resolver runs when
    /// the connection subscribes and again whenever a record the member glob matches changes
    /// (`*` unless narrowed with [`within`](Self::within)), so a narrow glob keeps it from
    /// running on unrelated writes. Ids it returns outside the glob are left out; sort and
    /// limit apply as for any collection (by id unless [`sort_by`](Self::sort_by)).
    ///
    /// ```
    /// # use mesh_records::collections::{CollectionExposure, Resolver};
    /// // A user's own documents: `docs:alice` holds the `doc:alice:*` records.
    /// let mine = CollectionExposure::resolved(
    ///     r"^docs:(\w+)$",
    ///     Resolver::sync(|_conn, id| vec![format!("doc:{}:readme", &id.as_str()[5..])]),
    /// )
    /// .unwrap()
    /// .within("doc:{1}:*")
    /// .unwrap();
    /// ```
    pub fn resolved(pattern: &str, resolver: Resolver) -> Result<Self> {
        let mut exposure = CollectionExposure::pattern(pattern, "*")?;
        exposure.resolver = Some(resolver);
        Ok(exposure)
    }

    /// Narrows the records a resolver may return (and whose changes run it again) to the glob
    /// `members`, with `{N}` standing for capture N as in [`pattern`](Self::pattern).
    pub fn within(mut self, members: &str) -> Result<Self> {
        self.members = members.to_owned();
        self.check()?;
        Ok(self)
    }

    /// Sorts members by the value at JSON pointer `pointer` (such as `/order`).
    pub fn sort_by(mut self, pointer: &str) -> Result<Self> {
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(Error::Config(format!(
                "sort: {pointer:?} is not a JSON pointer (it starts with '/')"
            )));
        }
        self.sort = Some(pointer.to_owned());
        Ok(self)
    }

    /// Shows only the first `limit` members.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sets the guard deciding who may subscribe.
    pub fn guard(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The glob of collection `id`, or `None` if this rule does not cover it.
    pub fn glob_for(&self, id: &str) -> Option<Glob> {
        if !self.matcher.matches(id) {
            return None;
        }
        let text = fill(&self.members, |n| self.matcher.capture(id, n))?;
        Glob::new(&text).ok()
    }

    fn check(&self) -> Result<()> {
        let groups = match &self.matcher {
            Matcher::Pattern(re) => re.captures_len(),
            Matcher::Exact(_) => 1,
        };
        let filled =
            fill(&self.members, |n| (n < groups).then(|| "x".to_owned())).ok_or_else(|| {
                Error::Config(format!(
                    "members {:?}: names a capture group the pattern does not have",
                    self.members
                ))
            })?;
        Glob::new(&filled)
            .map_err(|e| Error::Config(format!("members {:?}: {e}", self.members)))?;
        Ok(())
    }
}

/// `template` with each `{N}` replaced by the glob-escaped capture N (`None` if one is
/// missing). `{{` and `}}` stand for literal braces.
fn fill(template: &str, capture: impl Fn(usize) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        let close = tail.find('}')?;
        let n: usize = tail[1..close].parse().ok()?;
        out.push_str(&Glob::escape(&capture(n)?));
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// What subscribing to one collection id means.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Its member glob.
    pub glob: Glob,
    /// Sort pointer.
    pub sort: Option<String>,
    /// How many are shown.
    pub limit: Option<usize>,
    /// Who may subscribe.
    pub guard: Option<Guard>,
    /// Decides the members per connection.
    pub resolver: Option<Resolver>,
}

/// Every collection exposure, in the order declared; the first that covers an id decides.
#[derive(Clone, Debug, Default)]
pub struct CollectionTable {
    rules: Vec<CollectionExposure>,
}

impl CollectionTable {
    /// Adds a rule after the existing ones.
    pub fn push(&mut self, rule: CollectionExposure) {
        self.rules.push(rule);
    }

    /// Whether no collection is exposed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule covering `id`, resolved for it.
    pub fn resolve(&self, id: &RecordId) -> Option<Resolved> {
        self.rules.iter().find_map(|rule| {
            rule.glob_for(id.as_str()).map(|glob| Resolved {
                glob,
                sort: rule.sort.clone(),
                limit: rule.limit,
                guard: rule.guard.clone(),
                resolver: rule.resolver.clone(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> RecordId {
        RecordId::parse(text, 64).unwrap()
    }

    #[test]
    fn captures_fill_the_glob_escaped() {
        let rule = CollectionExposure::pattern(r"^list:(.+)$", "item:{1}:*").unwrap();
        assert_eq!(rule.glob_for("list:42").unwrap().as_str(), "item:42:*");
        let escaped = rule.glob_for("list:a*").unwrap();
        assert!(escaped.matches("item:a*:1"));
        assert!(!escaped.matches("item:ab:1"));
        assert!(rule.glob_for("other:1").is_none());
    }

    #[test]
    fn bad_templates_are_config_errors() {
        assert!(CollectionExposure::pattern(r"^list:(\w+)$", "item:{2}:*").is_err());
        assert!(CollectionExposure::pattern(r"^list:(\w+)$", "item:{x}").is_err());
        assert!(CollectionExposure::pattern(r"^list:(\w+)$", "item:[").is_err());
        assert!(CollectionExposure::pattern(r"^list:(", "item:*").is_err());
        let braces = CollectionExposure::id("all", "a{{b}}*").unwrap();
        assert!(braces.glob_for("all").unwrap().matches("a{b}c"));
    }

    #[test]
    fn the_first_covering_rule_decides() {
        let mut table = CollectionTable::default();
        table.push(CollectionExposure::id("list:special", "special:*").unwrap());
        table.push(
            CollectionExposure::pattern(r"^list:(\w+)$", "item:{1}:*")
                .unwrap()
                .limit(3),
        );
        let special = table.resolve(&id("list:special")).unwrap();
        assert_eq!(special.glob.as_str(), "special:*");
        let other = table.resolve(&id("list:7")).unwrap();
        assert_eq!((other.glob.as_str(), other.limit), ("item:7:*", Some(3)));
        assert!(table.resolve(&id("nope")).is_none());
    }
}
