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

    /// `Ok` when `value` satisfies the schema, else its first [`MAX_VIOLATIONS`] violations.
    pub fn check(&self, value: &Value) -> Result<(), Vec<Violation>> {
        // The boolean check is the fast path: errors are only collected for a refusal.
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(value)
            .take(MAX_VIOLATIONS)
            .map(|error| Violation {
                path: error.instance_path().to_string(),
                message: error.to_string(),
            })
            .collect();
        Err(violations)
    }
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
    fn a_schema_that_does_not_compile_says_why() {
        let err = Schema::compile(&json!({"type": "no-such-type"}), "bad.json").unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
        let err =
            Schema::compile(&json!({"$ref": "https://example.com/x.json"}), "remote").unwrap_err();
        assert!(err.to_string().contains("remote"), "{err}");
    }
}
