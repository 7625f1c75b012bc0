//! A compiled JSON Schema and the violations it reports, as clients see them.

use crate::error::Violation;
use serde_json::Value;

/// Most violations a refusal lists: enough to fix a form, bounded so that a huge invalid value
/// cannot make a huge error frame.
pub const MAX_VIOLATIONS: usize = 5;

/// A JSON Schema (draft 2020-12), compiled once.
pub struct Schema {
    validator: jsonschema::Validator,
    /// Where it came from (a file name, or `inline`), for logs and errors.
    source: String,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schema({})", self.source)
    }
}

impl Schema {
    /// Compiles `schema`; fails with the reason when it is not a valid draft 2020-12 schema
    /// (or references a document other than itself: nothing is fetched).
    pub fn compile(schema: &Value, source: impl Into<String>) -> crate::Result<Schema> {
        let source = source.into();
        let validator = jsonschema::draft202012::new(schema)
            .map_err(|e| crate::Error::Config(format!("schema {source}: {e}")))?;
        Ok(Schema { validator, source })
    }

    /// Reads and compiles a schema file.
    pub fn load(path: &std::path::Path) -> crate::Result<Schema> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::Config(format!("cannot read schema {name}: {e}")))?;
        let schema: Value = serde_json::from_str(&text)
            .map_err(|e| crate::Error::Config(format!("schema {name} is not JSON: {e}")))?;
        Schema::compile(&schema, name)
    }

    /// Where the schema came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `Ok` when `value` satisfies the schema, else its first [`MAX_VIOLATIONS`] violations
    /// (only the first one for a value over [`LISTED_UP_TO`] bytes).
    ///
    /// What a refusal costs stays bounded whatever a client sends: the validator builds every
    /// error before handing out the first (100,000 bad items make 300,000 errors), so only a
    /// small value has them all collected; a larger one stops at its first. Messages never
    /// quote the value (it may hold what the writer may not read, after a merge) and are cut
    /// at [`MAX_TEXT`] bytes, as are paths.
    pub fn check(&self, value: &Value) -> Result<(), Vec<Violation>> {
        // The boolean check is the fast path: errors are only made for a refusal.
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let violation = |error: &jsonschema::ValidationError<'_>| Violation {
            path: cut(error.instance_path().to_string()),
            message: cut(error.masked().to_string()),
        };
        if crate::model::serializes_longer_than(value, LISTED_UP_TO) {
            return Err(match self.validator.validate(value) {
                Err(error) => vec![violation(&error)],
                Ok(()) => Vec::new(),
            });
        }
        Err(self
            .validator
            .iter_errors(value)
            .take(MAX_VIOLATIONS)
            .map(|error| violation(&error))
            .collect())
    }
}

/// Values up to this size, serialized, have up to [`MAX_VIOLATIONS`] violations listed.
pub const LISTED_UP_TO: usize = 16 * 1024;

/// Longest message or path in a violation, in bytes.
pub const MAX_TEXT: usize = 256;

/// `text` cut to [`MAX_TEXT`] bytes (at a character boundary), marked when cut.
fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn todo() -> Schema {
        let schema = json!({
            "type": "object",
            "required": ["title"],
            "properties": {
                "title": {"type": "string", "maxLength": 10},
                "done": {"type": "boolean"}
            },
            "additionalProperties": false
        });
        Schema::compile(&schema, "todo").unwrap()
    }

    #[test]
    fn a_valid_value_passes_and_violations_name_their_paths() {
        let schema = todo();
        assert_eq!(schema.check(&json!({"title": "milk"})), Ok(()));
        let violations = schema
            .check(&json!({"title": 3, "done": "yes"}))
            .unwrap_err();
        let mut paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, vec!["/done", "/title"]);
        assert!(violations.iter().all(|v| !v.message.is_empty()));
    }

    #[test]
    fn at_most_a_few_violations_are_listed() {
        let schema = Schema::compile(&json!({"items": {"type": "string"}}), "list").unwrap();
        let many = Value::Array((0..100).map(|n| json!(n)).collect());
        assert_eq!(schema.check(&many).unwrap_err().len(), MAX_VIOLATIONS);
    }

    #[test]
    fn a_refusal_stays_small_and_never_quotes_the_value() {
        let schema = Schema::compile(
            &json!({"type": "object", "maxProperties": 2,
                    "additionalProperties": {"type": "object", "required": ["text"]}}),
            "items",
        )
        .unwrap();
        let secret = "secret-".repeat(10);
        let many: serde_json::Map<String, Value> = (0..20_000)
            .map(|n| (format!("{secret}{n}"), json!({})))
            .collect();
        let violations = schema.check(&Value::Object(many)).unwrap_err();
        assert_eq!(
            violations.len(),
            1,
            "a large value stops at its first violation"
        );
        let small = json!({"a": {}, "b": {"text": 1}, "c": {}});
        let listed = schema.check(&small).unwrap_err();
        assert!(listed.len() > 1);
        for v in violations.iter().chain(&listed) {
            assert!(v.message.len() <= MAX_TEXT + 3 && v.path.len() <= MAX_TEXT + 3);
            assert!(!v.message.contains("secret"), "{v:?}");
        }
    }

    #[test]
    fn a_schema_that_does_not_compile_says_why() {
        let err = Schema::compile(&json!({"type": "no-such-type"}), "bad.json").unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
        let err =
            Schema::compile(&json!({"$ref": "https://example.com/x.json"}), "remote").unwrap_err();
        assert!(err.to_string().contains("remote"), "{err}");
    }
}
