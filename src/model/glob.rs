//! [`Glob`]: Redis-style glob patterns over record ids, the selector of a collection.
//!
//! The syntax is Redis's (`KEYS`, `SCAN MATCH`), so a pattern means the same to a Mesh client
//! and to us: `*` any run of characters, `?` one character, `[abc]` one of a set, `[a-z]` a
//! range, `[^a]` or `[!a]` anything but, `\x` the character `x` itself. Where Redis is odd we
//! pick the ordinary reading: `?` and classes take one *character* (Redis: one byte), `-`
//! before the closing `]` is a literal (`[a-]` is `a` or `-`), and a pattern Redis would accept
//! half-open (an unterminated `[`, a trailing `\`) is refused.
//!
//! Matching is the greedy two-pointer algorithm: on a mismatch it only ever goes back to the
//! last `*`, so its cost is at most ids × pattern, never exponential (`*a*a*a*b` against a long
//! run of `a` included). The literal text before the first special character is kept apart
//! and checked with one `starts_with`, the common case (`item:42:*`) costing little more.

use std::fmt;

/// A parsed glob over record ids. Cheap to match; clone it rather than parse again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    /// The pattern as given.
    pattern: String,
    /// Every match starts with this (escapes resolved).
    prefix: String,
    /// What follows the prefix; starts with a non-literal token (or is empty).
    rest: Vec<Token>,
}

/// One element of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// This character.
    Literal(char),
    /// `*`: any run of characters, possibly empty (consecutive stars are one token).
    Any,
    /// `?`: one character.
    One,
    /// `[...]`: one character in (or, negated, not in) the set.
    Class(Class),
}

/// The set of a `[...]`: inclusive ranges (a single character is a range of one).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

impl Token {
    /// Whether this single-character token takes `c` (`Any` is handled by the matcher).
    fn takes(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::One => true,
            Token::Class(class) => class.matches(c),
            Token::Any => false,
        }
    }
}

/// The characters with a meaning outside a class; [`Glob::escape`] escapes them.
const SPECIAL: [char; 5] = ['*', '?', '[', ']', '\\'];

impl Glob {
    /// Parses a Redis-style glob.
    ///
    /// Fails with the reason on an unterminated `[` or a trailing `\`.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&Token::Any) {
                        continue;
                    }
                    Token::Any
                }
                '?' => Token::One,
                '\\' => match chars.next() {
                    Some(escaped) => Token::Literal(escaped),
                    None => return Err(format!("glob {pattern:?} ends with a lone '\\'")),
                },
                '[' => Token::Class(parse_class(&mut chars).ok_or_else(|| {
                    format!("glob {pattern:?} has a '[' without its closing ']'")
                })?),
                other => Token::Literal(other),
            };
            tokens.push(token);
        }
        let prefix: String = tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect();
        tokens.drain(..prefix.chars().count());
        Ok(Glob {
            pattern: pattern.to_string(),
            prefix,
            rest: tokens,
        })
    }

    /// The pattern as it was given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The literal text every match starts with: everything up to the first special
    /// character, escapes resolved (`"item:42:*"` → `"item:42:"`).
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the whole of `id` matches.
    pub fn matches(&self, id: &str) -> bool {
        match id.strip_prefix(self.prefix.as_str()) {
            Some(rest) => match_tokens(&self.rest, rest),
            None => false,
        }
    }

    /// `literal` with every special character escaped, so that it matches only itself when
    /// put in a glob: `Glob::escape("a*b") == "a\\*b"`.
    pub fn escape(literal: &str) -> String {
        let mut out = String::with_capacity(literal.len() + 4);
        for c in literal.chars() {
            if SPECIAL.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// The pattern for Redis's `SCAN MATCH`: it matches every text this glob matches, and
    /// usually nothing more (check each result with [`Glob::matches`]).
    ///
    /// Not always exactly this glob, because Redis matches bytes: its `?` and classes take
    /// one byte, and an id character outside ASCII is several. So a `?`, a negated class or a
    /// class naming a non-ASCII character becomes "one byte, then anything" (`?*`, `[^..]*`),
    /// which still takes every character it took; ASCII classes are kept, ranges spelled out
    /// member by member so no escape or range quirk of Redis's parser matters.
    pub fn redis_pattern(&self) -> String {
        let mut out = Glob::escape(&self.prefix);
        // Whether `out` ends with an unescaped `*` (then a `*` token adds nothing).
        let mut star = false;
        for token in &self.rest {
            match token {
                Token::Literal(c) => {
                    if SPECIAL.contains(c) {
                        out.push('\\');
                    }
                    out.push(*c);
                    star = false;
                }
                Token::Any => {
                    if !star {
                        out.push('*');
                    }
                    star = true;
                }
                Token::One => {
                    out.push_str("?*");
                    star = true;
                }
                Token::Class(class) => match ascii_members(class) {
                    Some(members) if !class.negated => {
                        out.push('[');
                        push_members(&mut out, &members);
                        out.push(']');
                        star = false;
                    }
                    Some(members) if !members.is_empty() => {
                        out.push_str("[^");
                        push_members(&mut out, &members);
                        out.push_str("]*");
                        star = true;
                    }
                    _ => {
                        out.push_str("?*");
                        star = true;
                    }
                },
            }
        }
        out
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Parses a class after its `[`, through its `]`; `None` when the pattern ends first.
///
/// As in Redis, `]` right after `[` (or `[^`) closes an empty class, and `\x` is the character
/// `x` (never part of a range). `a-z` is a range, in either order; a `-` first or just before
/// the closing `]` is itself.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Class> {
    let negated = matches!(chars.peek(), Some('^' | '!'));
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    loop {
        let c = chars.next()?;
        let low = match c {
            ']' => return Some(Class { negated, ranges }),
            '\\' => {
                ranges.push(chars.next().map(|e| (e, e))?);
                continue;
            }
            other => other,
        };
        let mut ahead = chars.clone();
        match (ahead.next(), ahead.next()) {
            (Some('-'), Some(high)) if high != ']' => {
                chars.next();
                chars.next();
                ranges.push((low.min(high), low.max(high)));
            }
            _ => ranges.push((low, low)),
        }
    }
}

/// Matches `text` against `tokens` whole: greedy, going back only to the last `*`.
fn match_tokens(tokens: &[Token], text: &str) -> bool {
    let (mut t, mut s) = (0, 0);
    // After the last `*` seen: the token after it, and where in `text` its run ends now.
    let mut star: Option<(usize, usize)> = None;
    while s < text.len() {
        // `s` is always at a character boundary: it only moves by whole characters.
        let c = text[s..].chars().next().unwrap_or_default();
        match tokens.get(t) {
            Some(Token::Any) => {
                star = Some((t + 1, s));
                t += 1;
            }
            Some(token) if token.takes(c) => {
                t += 1;
                s += c.len_utf8();
            }
            _ => match star {
                // Let the last star take one more character and try again after it.
                Some((after, run_end)) => {
                    let skipped = text[run_end..].chars().next().unwrap_or_default();
                    let next = run_end + skipped.len_utf8();
                    star = Some((after, next));
                    t = after;
                    s = next;
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Any)
}

/// The members of a class when they are all ASCII, in order; `None` otherwise.
fn ascii_members(class: &Class) -> Option<Vec<u8>> {
    let mut set = [false; 128];
    for &(lo, hi) in &class.ranges {
        if !hi.is_ascii() {
            return None;
        }
        for b in lo as u8..=hi as u8 {
            set[b as usize] = true;
        }
    }
    Some((0u8..128).filter(|&b| set[b as usize]).collect())
}

/// Each member escaped, so Redis reads it as itself whatever it is.
fn push_members(out: &mut String, members: &[u8]) {
    for &b in members {
        out.push('\\');
        out.push(b as char);
    }
}

#[cfg(test)]
#[path = "glob_tests.rs"]
mod tests;
