//! The docs name only what exists: README.md and docs/*.md are read as text, and every
//! reference they make to the code is checked against the repository. Simple rules, on purpose:
//!
//! - **Paths.** Every `src/…`, `tests/…` or `examples/…` path (backticked or not, not preceded
//!   by another path character, trailing punctuation dropped) must exist, file or folder.
//! - **Symbols.** A backticked span is a symbol when, up to its first space, `(`, `{`, `<`,
//!   `[` or `!`, it is
//!   - a path `A::b::C` (a leading `mesh_records::` or `crate::` is dropped; a path whose first
//!     segment is lowercase and not a top-level module of `src/`, such as `std::…` or
//!     `serde_json::…`, is another crate's and skipped),
//!   - one capitalised identifier (`RecordServerBuilder`, `Outbox`), or
//!   - a snake_case identifier followed by `(` (`update_record(id, f)`; camelCase calls are
//!     the JavaScript client's).
//!
//!   Each segment must be defined somewhere in `src/`: a capitalised one as `struct`, `enum`,
//!   `trait`, `type`, `const`, `static` or an enum variant (a line starting with it followed by
//!   `(`, `{`, `,` or nothing); a lowercase one as `fn`, `mod`, a `pub` field or a top-level
//!   module. It checks that a name exists, not that it is the right one.
//! - Wire error names (`ForbiddenError`, …) are names in `mesh_records::error::CODE_NAMES`,
//!   not Rust types: they count as defined.
//! - [`EXCEPTIONS`]: names that are not ours, each with the reason.
//! - **Environment.** Every `MESH_*` variable the docs name is one the server reads
//!   (`config::ENV_VARS`; `MESH_TEST_*` belong to the test suite), and docs/config.md's table
//!   lists each of them with the key it overrides: that table is the one list the README
//!   points to.

use crate::common::rust_files;
use regex::Regex;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Capitalised names the docs use that are not defined in `src/`, and why.
const EXCEPTIONS: [(&str, &str); 9] = [
    ("WebSocket", "the browser's and Node's client class"),
    (
        "HttpServer",
        "actix-web's server, which an embedding app runs",
    ),
    ("Session", "actix-ws's session, which the server skips"),
    ("RwLock", "std's lock"),
    (
        "Deliver",
        "the first design sketch's message, named as what is not done",
    ),
    ("Host", "an HTTP header"),
    ("Authorization", "an HTTP header"),
    ("ETag", "an HTTP header"),
    ("LimitNOFILE", "a systemd setting"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, with their text.
fn docs() -> Vec<(String, String)> {
    let mut names = vec![PathBuf::from("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            names.push(path.strip_prefix(root()).unwrap().to_owned());
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root().join(&name)).unwrap();
            (name.display().to_string(), text)
        })
        .collect()
}

/// Every name `src/` defines (plus the exceptions and wire error names), and its top-level
/// modules.
fn definitions() -> (BTreeSet<String>, BTreeSet<String>) {
    let item = Regex::new(r"\b(?:fn|struct|enum|trait|type|const|static|mod)\s+(\w+)").unwrap();
    let field = Regex::new(r"^\s*pub(?:\([a-z]+\))?\s+([a-z_][a-z0-9_]*)\s*:").unwrap();
    let variant = Regex::new(r"^\s*([A-Z]\w*)\s*(?:[({,]|$)").unwrap();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut names = BTreeSet::new();
    for file in files {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            names.extend(item.captures_iter(line).map(|c| c[1].to_owned()));
            for re in [&field, &variant] {
                names.extend(re.captures(line).map(|c| c[1].to_owned()));
            }
        }
    }
    let modules: BTreeSet<String> = std::fs::read_dir(root().join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .map(|name| name.trim_end_matches(".rs").to_owned())
        .collect();
    names.extend(modules.iter().cloned());
    names.extend(EXCEPTIONS.iter().map(|(name, _)| name.to_string()));
    let wire = mesh_records::error::CODE_NAMES;
    names.extend(wire.iter().map(|(_, name)| name.to_string()));
    (names, modules)
}

#[test]
fn every_path_the_docs_name_exists() {
    let path = Regex::new(r"(?:^|[^\w./-])((?:src|tests|examples)/[\w./-]*)").unwrap();
    let mut missing = Vec::new();
    for (doc, text) in docs() {
        for found in path.captures_iter(&text) {
            let named = found[1].trim_end_matches(['.', ',', ':', ';', '-']);
            if !root().join(named).exists() {
                missing.push(format!("{doc}: {named}"));
            }
        }
    }
    assert!(missing.is_empty(), "named but missing: {missing:#?}");
}

#[test]
fn every_symbol_the_docs_name_is_defined_in_src() {
    let (defined, modules) = definitions();
    let span = Regex::new(r"`([^`\n]+)`").unwrap();
    let head = Regex::new(r"^[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*").unwrap();
    let mut missing = Vec::new();
    for (doc, text) in docs() {
        for found in span.captures_iter(&text) {
            let span = &found[1];
            let Some(name) = head.find(span) else {
                continue;
            };
            let rest = &span[name.end()..];
            if !(rest.is_empty() || rest.starts_with([' ', '(', '{', '<', '[', '!'])) {
                continue;
            }
            let mut segments: Vec<&str> = name.as_str().split("::").collect();
            if segments.len() == 1 {
                let one = segments[0];
                let capitalised = one.starts_with(|c: char| c.is_ascii_uppercase())
                    && one.chars().any(|c| c.is_ascii_lowercase());
                let called = one.starts_with(|c: char| c.is_ascii_lowercase())
                    && one
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && rest.starts_with('(');
                if !(capitalised || called) {
                    continue;
                }
            } else {
                if matches!(segments[0], "mesh_records" | "crate") {
                    segments.remove(0);
                }
                let first = segments[0];
                if first.starts_with(|c: char| c.is_ascii_lowercase()) && !modules.contains(first) {
                    continue; // another crate's path
                }
            }
            if let Some(unknown) = segments.iter().find(|s| !defined.contains(**s)) {
                missing.push(format!("{doc}: `{span}` ({unknown})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not defined in src/ (fix the doc, or add to EXCEPTIONS with a reason): {missing:#?}"
    );
}

#[test]
fn the_docs_name_the_environment_variables_the_server_reads() {
    let variable = Regex::new(r"MESH_[A-Z_]*[A-Z]").unwrap();
    let known: BTreeSet<&str> = mesh_records::config::ENV_VARS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    for (doc, text) in docs() {
        for found in variable.find_iter(&text) {
            let name = found.as_str();
            assert!(
                known.contains(name) || name.starts_with("MESH_TEST_"),
                "{doc} names {name}, which the server does not read"
            );
        }
    }
    let config = std::fs::read_to_string(root().join("docs/config.md")).unwrap();
    for (name, key) in mesh_records::config::ENV_VARS {
        assert!(
            config.contains(&format!("| `{name}` | `{key}` |")),
            "docs/config.md's table lacks {name} → {key}"
        );
    }
}
