//! Tests of [`Glob`](super::Glob): Redis's syntax, the matcher against a plain recursive
//! reference, its cost on adversarial patterns, and `redis_pattern` against a port of Redis's
//! own byte matcher (`stringmatchlen` in util.c).

use super::*;
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn glob(pattern: &str) -> Glob {
    Glob::new(pattern).unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
}

fn all(pattern: &str, ids: &[&str]) -> Vec<bool> {
    let g = glob(pattern);
    ids.iter().map(|id| g.matches(id)).collect()
}

#[test]
fn the_redis_syntax() {
    assert_eq!(
        all("user:*", &["user:", "user:1", "users:1", "user"]),
        [true, true, false, false]
    );
    assert_eq!(
        all("a?c", &["abc", "ac", "abbc", "aéc"]),
        [true, false, false, true]
    );
    assert_eq!(all("*", &["", "anything"]), [true, true]);
    assert_eq!(
        all("h[ae]llo", &["hello", "hallo", "hillo"]),
        [true, true, false]
    );
    assert_eq!(
        all("h[^e]llo", &["hello", "hallo", "héllo"]),
        [false, true, true]
    );
    assert_eq!(all("h[!e]llo", &["hello", "hallo"]), [false, true]);
    assert_eq!(
        all("h[a-b]llo", &["hallo", "hbllo", "hcllo"]),
        [true, true, false]
    );
    assert_eq!(
        all("h[b-a]llo", &["hallo", "hbllo", "hcllo"]),
        [true, true, false]
    );
    assert_eq!(all(r"a\*b", &["a*b", "axb"]), [true, false]);
    assert_eq!(all(r"a\?b\[\]\\", &[r"a?b[]\", "axb[]\\"]), [true, false]);
    assert_eq!(all("x]y", &["x]y"]), [true]);
    // Inside a class: `\]` and `\-` are themselves, `-` first or last is itself.
    assert_eq!(all(r"[\]]", &["]", "\\"]), [true, false]);
    assert_eq!(all("[a-]", &["a", "-", "b"]), [true, true, false]);
    assert_eq!(all("[-a]", &["a", "-", "b"]), [true, true, false]);
    assert_eq!(
        all(r"[a\-c]", &["a", "-", "c", "b"]),
        [true, true, true, false]
    );
    // `]` right after `[` closes an empty class (Redis): it matches nothing.
    assert_eq!(all("[]x", &["x", "]x"]), [false, false]);
    assert_eq!(all("[^]", &["a", "é", ""]), [true, true, false]);
    assert_eq!(all("[é-ë]", &["é", "ê", "e"]), [true, true, false]);
    assert_eq!(all("**a***", &["a", "bab", "b"]), [true, true, false]);
}

#[test]
fn unterminated_patterns_are_refused() {
    for bad in ["[abc", "a[", "[", "a\\", "[\\", "[^", "x[a-"] {
        assert!(Glob::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_literal_prefix() {
    assert_eq!(glob("item:42:*").literal_prefix(), "item:42:");
    assert_eq!(glob(r"a\*b*").literal_prefix(), "a*b");
    assert_eq!(glob("exact").literal_prefix(), "exact");
    assert_eq!(glob("*x").literal_prefix(), "");
    assert_eq!(glob("ab[c]d").literal_prefix(), "ab");
    assert_eq!(glob("ab?").literal_prefix(), "ab");
    assert_eq!(glob("ab?").as_str(), "ab?");
    assert_eq!(glob("ab?").to_string(), "ab?");
}

#[test]
fn escaping() {
    assert_eq!(Glob::escape("a*b"), "a\\*b");
    assert_eq!(Glob::escape(r"[x]?\"), r"\[x\]\?\\");
    assert_eq!(Glob::escape("plain:é-^!"), "plain:é-^!");
    let built = glob(&format!("{}:*", Glob::escape("room[1]*")));
    assert!(built.matches("room[1]*:a"));
    assert!(!built.matches("room1x:a"));
    assert_eq!(built.literal_prefix(), "room[1]*:");
}

#[test]
fn adversarial_patterns_take_linear_time() {
    let long = "a".repeat(100_000);
    let started = Instant::now();
    assert!(!glob("*a*a*a*a*a*a*a*a*a*a*a*a*b").matches(&long));
    assert!(!glob("*aaaaaaaaaaaaaaaaaab").matches(&long));
    assert!(!glob("*?*?*?*?*?*?*?*?*?*?*[b]").matches(&long));
    assert!(glob("*a*a*a*a*a*a*a*a*a*a*a*a").matches(&long));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn redis_patterns() {
    assert_eq!(glob("item:42:*").redis_pattern(), "item:42:*");
    assert_eq!(glob(r"a\*b[c]").redis_pattern(), r"a\*b[\c]");
    assert_eq!(glob("a[b-d]").redis_pattern(), r"a[\b\c\d]");
    assert_eq!(glob("a[]]").redis_pattern(), r"a[]\]");
    assert_eq!(glob("a?b").redis_pattern(), "a?*b");
    assert_eq!(glob("a?*").redis_pattern(), "a?*");
    assert_eq!(glob("a[^x]b").redis_pattern(), r"a[^\x]*b");
    assert_eq!(glob("a[!x]*").redis_pattern(), r"a[^\x]*");
    assert_eq!(glob("a[é]").redis_pattern(), "a?*");
    assert_eq!(glob("a[^é]").redis_pattern(), "a?*");
    assert_eq!(glob("é*").redis_pattern(), "é*");
    assert_eq!(glob(r"\**").redis_pattern(), r"\**");
}

/// Reference matcher: plain recursion over tokens (exponential, fine on tiny inputs).
fn reference(tokens: &[Token], text: &[char]) -> bool {
    match tokens.split_first() {
        None => text.is_empty(),
        Some((Token::Any, rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
        Some((token, rest)) => match text.split_first() {
            Some((c, more)) => token.takes(*c) && reference(rest, more),
            None => false,
        },
    }
}

/// Redis's `stringmatchlen` (case-sensitive), byte for byte, for well-formed patterns.
fn redis_match(pattern: &[u8], string: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    while p < pattern.len() && s < string.len() {
        match pattern[p] {
            b'*' => {
                while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                    p += 1;
                }
                if p + 1 == pattern.len() {
                    return true;
                }
                return (s..string.len())
                    .any(|from| redis_match(&pattern[p + 1..], &string[from..]));
            }
            b'?' => s += 1,
            b'[' => {
                p += 1;
                let not = pattern[p] == b'^';
                if not {
                    p += 1;
                }
                let mut matched = false;
                loop {
                    if pattern[p] == b'\\' && pattern.len() - p >= 2 {
                        p += 1;
                        matched |= pattern[p] == string[s];
                    } else if pattern[p] == b']' {
                        break;
                    } else if pattern.len() - p >= 3 && pattern[p + 1] == b'-' {
                        let (a, b) = (
                            pattern[p].min(pattern[p + 2]),
                            pattern[p].max(pattern[p + 2]),
                        );
                        matched |= a <= string[s] && string[s] <= b;
                        p += 2;
                    } else {
                        matched |= pattern[p] == string[s];
                    }
                    p += 1;
                }
                if matched == not {
                    return false;
                }
                s += 1;
            }
            other => {
                let literal = if other == b'\\' && pattern.len() - p >= 2 {
                    p += 1;
                    pattern[p]
                } else {
                    other
                };
                if literal != string[s] {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == string.len() {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
        }
    }
    p == pattern.len() && s == string.len()
}

#[test]
fn the_redis_port_agrees_with_redis_on_known_cases() {
    assert!(redis_match(b"h?llo", b"hello"));
    assert!(redis_match(b"h*llo", b"heeeello"));
    assert!(redis_match(b"h[^e]llo", b"hallo"));
    assert!(!redis_match(b"h[^e]llo", b"hello"));
    assert!(redis_match(b"h[a-b]llo", b"hbllo"));
    assert!(redis_match(br"a\*", b"a*"));
    assert!(
        !redis_match(b"a?", "aé".as_bytes()),
        "Redis's ? takes one byte"
    );
}

fn patterns() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop::sample::select(vec!['a', 'b', 'é', '*', '?', '[', ']', '^', '!', '-', '\\']),
        0..9,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn ids() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop::sample::select(vec!['a', 'b', 'é', '-', ']', '*', '\\']),
        1..9,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #[test]
    fn matching_agrees_with_the_reference(pattern in patterns(), id in ids()) {
        if let Ok(g) = Glob::new(&pattern) {
            let mut tokens: Vec<Token> = g.prefix.chars().map(Token::Literal).collect();
            tokens.extend(g.rest.iter().cloned());
            let text: Vec<char> = id.chars().collect();
            let want = reference(&tokens, &text);
            prop_assert_eq!(g.matches(&id), want, "{:?} {:?}", pattern, id);
        }
    }

    #[test]
    fn redis_finds_every_match(pattern in patterns(), id in ids()) {
        if let Ok(g) = Glob::new(&pattern)
            && g.matches(&id)
        {
            let redis = g.redis_pattern();
            let found = redis_match(redis.as_bytes(), id.as_bytes());
            prop_assert!(found, "{:?} as {:?} misses {:?}", pattern, redis, id);
        }
    }

    #[test]
    fn an_escaped_text_matches_itself_only(text in ids(), other in ids()) {
        let g = Glob::new(&Glob::escape(&text)).expect("escaped text parses");
        prop_assert!(g.matches(&text));
        prop_assert_eq!(g.literal_prefix(), text.as_str());
        prop_assert_eq!(g.matches(&other), other == text);
    }
}
