//! The shape of `src/` that docs/architecture.md promises: modules depend on each other one
//! way (no import cycle, at the top level or inside any folder), and no source file is over
//! 500 lines. Checked from the source text:
//! - top level: every `crate::<module>` a file names (outside comments) is an edge from its
//!   top-level module to that one;
//! - inside a folder: every path a file names (`crate::…`, `super::…`, `self::…`, in `use`
//!   trees or inline) is resolved to the module it reaches; when the file's module and that one
//!   are different children of the same folder, it is an edge between those two children. A
//!   folder's `mod.rs` is its face: its children may use what it defines, and it theirs,
//!   without that counting as a cycle.
//!
//! What it does not see (known limits of reading text): `super::` inside an inline `mod x { }`
//! block is resolved from the file's module, one level too high (those blocks are test modules
//! here); a name a child reaches through its parent's imports (`use super::*`) counts as the
//! parent's.

use crate::common::rust_files;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

fn src_files() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    (src, files)
}

/// `src/a/b.rs` and `src/a.rs` belong to `a`.
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The modules named as `crate::name` in code (comment lines skipped).
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn no_source_file_is_over_500_lines() {
    let (_, files) = src_files();
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let (src, files) = src_files();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = top_module(&src, file);
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for to in crate_references(&text) {
            if to != from {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search; a back edge is a cycle, reported with its path.
    fn visit(
        module: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in edges.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `["a", "b"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    if path == ["lib"] || path == ["main"] {
        path.clear();
    }
    path
}

/// Code without comments (line comments and doc comments; block comments are not used here).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` tree names, braces expanded: `a::{b, c::{d}}` gives `a::b`, `a::c::d`.
fn expand_use_tree(tree: &str) -> Vec<String> {
    fn parse(chars: &[char], at: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let mut own = prefix.to_owned();
        while *at < chars.len() {
            match chars[*at] {
                '{' => {
                    *at += 1;
                    loop {
                        parse(chars, at, &own, out);
                        match chars.get(*at) {
                            Some(',') => *at += 1,
                            Some('}') => {
                                *at += 1;
                                return;
                            }
                            _ => return,
                        }
                        if chars.get(*at) == Some(&'}') {
                            *at += 1;
                            return;
                        }
                    }
                }
                ',' | '}' => break,
                c => {
                    own.push(c);
                    *at += 1;
                }
            }
        }
        out.push(own);
    }
    // `x as y` names `x`: drop the rename before the spaces go.
    let tree: String = tree
        .split(',')
        .map(|leaf| match leaf.find(" as ") {
            Some(at) => {
                let closing: String = leaf[at..].chars().filter(|c| *c == '}').collect();
                format!("{}{closing}", &leaf[..at])
            }
            None => leaf.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let chars: Vec<char> = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    parse(&chars, &mut 0, "", &mut out);
    out
}

/// Every module path `code` (in module `me`) names, made absolute (not yet cut to a module).
fn named_paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut raw = Vec::new();
    for statement in code.split(';') {
        if let Some(at) = statement.find("use ") {
            // A `use` item starts a statement, perhaps after a visibility or an attribute.
            let before = statement[..at].trim_end();
            let starts = before.is_empty()
                || before.ends_with("pub")
                || before.ends_with(['{', '}', ')', ']']);
            if starts {
                raw.extend(expand_use_tree(&statement[at + 4..]));
            }
        }
    }
    // Inline paths: `crate::a::b`, `super::x`, `self::y` anywhere.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(start) {
            let preceded = at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':');
            if preceded {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            raw.push(path);
        }
    }
    let mut out = Vec::new();
    for path in raw {
        let mut parts = path.split("::").filter(|p| !p.is_empty()).peekable();
        let mut base: Vec<String> = match parts.peek().copied() {
            Some("crate") => {
                parts.next();
                Vec::new()
            }
            Some("super") | Some("self") => me.to_vec(),
            _ => continue,
        };
        while let Some(&step) = parts.peek() {
            match step {
                "super" => {
                    base.pop();
                }
                "self" => {}
                _ => break,
            }
            parts.next();
        }
        base.extend(parts.map(str::to_owned));
        out.push(base);
    }
    out
}

#[test]
fn modules_inside_each_folder_import_each_other_without_a_cycle() {
    let (src, files) = src_files();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let me = module_path(&src, file);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for named in named_paths(&code, &me) {
            // The longest prefix that is a module of ours.
            let Some(target) = (1..=named.len())
                .rev()
                .map(|n| named[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let shared = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if shared == me.len() || shared == target.len() {
                continue; // a module and its own ancestor or descendant
            }
            let (from, to) = (me[..=shared].to_vec(), target[..=shared].to_vec());
            edges.entry(from).or_default().insert(to);
        }
    }
    fn visit(
        module: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.clone());
            return Some(cycle);
        }
        if !done.insert(module.clone()) {
            return None;
        }
        path.push(module.clone());
        for next in edges.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in edges.keys() {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("import cycle: {}", names.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_check_sees_use_trees_and_relative_paths() {
    let me = vec!["store".to_owned(), "redis".to_owned(), "feed".to_owned()];
    let code = "use super::{pubsub::bounded, CONNECT_TIMEOUT};\nuse crate::store::{changes::parse, StoreError};\nfn f() { super::super::history::x(); }";
    let named = named_paths(code, &me);
    let has = |p: &str| named.iter().any(|n| n.join("::") == p);
    assert!(has("store::redis::pubsub::bounded"), "{named:?}");
    assert!(has("store::redis::CONNECT_TIMEOUT"));
    assert!(has("store::changes::parse"));
    assert!(has("store::history::x"));
    let renamed = named_paths("use super::{pubsub as p, feed::Feed as F};", &me);
    let has = |p: &str| renamed.iter().any(|n| n.join("::") == p);
    assert!(has("store::redis::pubsub"), "{renamed:?}");
    assert!(has("store::redis::feed::Feed"), "{renamed:?}");
}

/// docs/architecture.md: one route to record actors (`src/actors/route.rs`). Only the route,
/// the registry it asks and the record actor itself name the ways to find a record's actor;
/// everything else (sessions, `Records`, the admin API, collections) goes through the route.
#[test]
fn record_actors_are_reached_only_through_the_route() {
    const WAYS_IN: [&str; 5] = [
        "GetRecordActor",
        "ResolveAccess",
        "resolve_now(",
        "directory.lease(",
        "send_to_record",
    ];
    let (src, files) = src_files();
    let allowed = |file: &Path| {
        let relative = file.strip_prefix(&src).unwrap();
        relative.starts_with("actors/record")
            || relative == Path::new("actors/route.rs")
            || relative == Path::new("actors/registry.rs")
    };
    let mut found = Vec::new();
    for file in files.iter().filter(|file| !allowed(file)) {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for way in WAYS_IN.iter().filter(|way| code.contains(**way)) {
            found.push(format!("{}: {way}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "record actors reached around the route: {found:?}"
    );
}
