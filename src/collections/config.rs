//! `[[collections.expose]]` rules from the configuration file.

use super::CollectionExposure;
use crate::config::{CollectionExposeConfig, Config};
use crate::error::{Error, Result};

/// The configured collection exposures, in order.
///
/// Fails with [`Error::Config`] naming the rule (`collections.expose[N]`) at fault.
pub fn exposures_from_config(config: &Config) -> Result<Vec<CollectionExposure>> {
    config
        .collections
        .expose
        .iter()
        .enumerate()
        .map(|(n, rule)| {
            exposure(rule).map_err(|e| Error::Config(format!("collections.expose[{n}].{e}")))
        })
        .collect()
}

fn exposure(rule: &CollectionExposeConfig) -> std::result::Result<CollectionExposure, String> {
    let detail = |e: Error| match e {
        Error::Config(message) => message,
        other => other.to_string(),
    };
    if rule.members.is_empty() {
        return Err("members: a glob over record ids is required".into());
    }
    let mut exposure = match (&rule.id, &rule.pattern) {
        (Some(id), None) if !id.is_empty() => CollectionExposure::id(id, &rule.members)
            .map_err(|e| format!("members: {}", detail(e)))?,
        (None, Some(pattern)) if !pattern.is_empty() => {
            CollectionExposure::pattern(pattern, &rule.members)
                .map_err(|e| format!("pattern: {}", detail(e)))?
        }
        _ => return Err("id / pattern: give exactly one, non-empty".into()),
    };
    if let Some(sort) = &rule.sort {
        exposure = exposure
            .sort_by(sort)
            .map_err(|e| format!("sort: {}", detail(e)))?;
    }
    if let Some(limit) = rule.limit {
        if limit == 0 {
            return Err("limit: must be at least 1".into());
        }
        exposure = exposure.limit(limit);
    }
    if let Some(guard) = &rule.guard {
        let guard = guard
            .to_guard(&exposure.matcher)
            .map_err(|e| format!("guard.{e}"))?;
        exposure = exposure.guard(guard);
    }
    Ok(exposure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<CollectionExposure>> {
        exposures_from_config(&Config::parse(text)?)
    }

    #[test]
    fn a_config_collection_becomes_an_exposure() {
        let rules = parse(
            r#"
[[collections.expose]]
pattern = "^list:(\\w+)$"
members = "item:{1}:*"
guard = { require_metadata = "userId" }
sort = "/order"
limit = 10
"#,
        )
        .unwrap();
        let rule = &rules[0];
        assert_eq!(rule.glob_for("list:7").unwrap().as_str(), "item:7:*");
        assert_eq!(
            (rule.sort.as_deref(), rule.limit),
            (Some("/order"), Some(10))
        );
        assert!(rule.guard.is_some());
    }

    #[test]
    fn mistakes_name_the_rule_and_the_key() {
        let bad = [
            (
                "pattern = \"^l:(\\\\w+)$\"\nmembers = \"i:{2}\"",
                "collections.expose[0].pattern",
            ),
            ("id = \"a\"", "collections.expose[0].members"),
            ("members = \"x\"", "collections.expose[0].id / pattern"),
            (
                "id = \"a\"\nmembers = \"x\"\nlimit = 0",
                "collections.expose[0].limit",
            ),
            (
                "id = \"a\"\nmembers = \"x\"\nsort = \"order\"",
                "collections.expose[0].sort",
            ),
        ];
        for (rule, expected) in bad {
            let error = parse(&format!("[[collections.expose]]\n{rule}\n")).unwrap_err();
            assert!(error.to_string().contains(expected), "{error} / {expected}");
        }
    }
}
