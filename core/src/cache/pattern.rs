//! Compiled key search patterns: globs (`*`, `?`, `[...]`) and regular expressions.
//!
//! A pattern is compiled once into a [`Plan`] that the cache executes against its sorted key map.
//! Whenever the pattern pins down a literal prefix, the plan scans only that key range, so
//! `user:42:*` costs time proportional to the matching keys rather than to the whole cache.

use globset::GlobBuilder;
use serde::{Deserialize, Serialize};

/// The most keys a single search returns, whatever limit the caller asks for. A search result is
/// built in memory and sent in one response, so it needs a hard ceiling.
pub const SEARCH_RESULTS_MAX: usize = 10_000;

/// The longest pattern accepted, in bytes. Longer patterns are rejected before parsing so that
/// compile time and the compiled size stay small.
pub const PATTERN_BYTES_MAX: usize = 1024;

/// The size limit handed to the regex compiler for one pattern's compiled program. Exceeding it
/// yields [`PatternError::TooComplex`] instead of an unbounded allocation.
pub const REGEX_SIZE_BYTES_MAX: usize = 1 << 20;

/// The cache size limit of the lazy DFA of one compiled pattern. When the cache fills, the regex
/// engine falls back to slower (still linear-time) engines rather than growing.
pub const REGEX_DFA_SIZE_BYTES_MAX: usize = 2 << 20;

/// How a search pattern is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SearchMode {
    /// A glob matched against the whole key: `*` matches any run of characters (including `/`),
    /// `?` matches one byte, `[...]` matches one byte of a class, `{a,b}` matches either
    /// alternative, and a backslash makes the next character literal. Like Redis `KEYS`, `?` and
    /// classes work on bytes, so they match non-ASCII characters only as part of a `*`.
    Wildcard,
    /// A regular expression (Rust `regex` syntax) that matches if it matches anywhere in the key,
    /// like Go's `regexp.MatchString`; anchor it with `^` and `$` to match the whole key.
    Regex,
}

/// Why a search pattern was rejected. Every variant is the client's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern of {len} bytes exceeds the limit of {limit} bytes")]
    TooLong { len: usize, limit: usize },
    #[error("invalid glob: {0}")]
    InvalidGlob(String),
    #[error("invalid regular expression: {0}")]
    InvalidRegex(String),
    #[error("pattern too complex: {0}")]
    TooComplex(String),
}

/// A compiled search pattern, ready for [`Cache::search`](super::Cache::search).
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    mode: SearchMode,
    plan: Plan,
}

/// How the cache finds the keys that match a pattern.
#[derive(Clone, Debug)]
pub(super) enum Plan {
    /// The pattern has no metacharacters: it matches exactly this key, found by one lookup.
    Exact(String),
    /// Every matching key starts with `prefix`, so only that key range is scanned. Keys in the
    /// range match if `filter` is `None` (the pattern is `prefix*`) or if the filter matches.
    Scan { prefix: String, filter: Option<Filter> },
}

/// The compiled matcher applied to each key of a scanned range.
#[derive(Clone, Debug)]
pub(super) enum Filter {
    /// A glob translated by globset into a byte regex anchored at both ends.
    Glob(regex::bytes::Regex),
    /// A user regex, unanchored.
    Regex(regex::Regex),
}

impl Filter {
    pub(super) fn is_match(&self, key: &str) -> bool {
        match self {
            Filter::Glob(re) => re.is_match(key.as_bytes()),
            Filter::Regex(re) => re.is_match(key),
        }
    }
}

impl Pattern {
    /// Parses and compiles `pattern`. Compilation is bounded: the pattern length is capped by
    /// [`PATTERN_BYTES_MAX`] and the compiled program by [`REGEX_SIZE_BYTES_MAX`], and matching
    /// with the `regex` crate is linear in the key length, so a hostile pattern can neither
    /// exhaust memory nor hang a search.
    pub fn compile(pattern: &str, mode: SearchMode) -> Result<Pattern, PatternError> {
        if pattern.len() > PATTERN_BYTES_MAX {
            return Err(PatternError::TooLong { len: pattern.len(), limit: PATTERN_BYTES_MAX });
        }
        let plan = match mode {
            SearchMode::Wildcard => compile_glob(pattern)?,
            SearchMode::Regex => compile_regex(pattern)?,
        };
        Ok(Pattern { source: pattern.to_owned(), mode, plan })
    }

    /// The pattern as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// How the pattern is interpreted.
    pub fn mode(&self) -> SearchMode {
        self.mode
    }

    pub(super) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether `key` matches, as a search would decide.
    pub fn matches(&self, key: &str) -> bool {
        match &self.plan {
            Plan::Exact(k) => k == key,
            Plan::Scan { prefix, filter } => {
                key.starts_with(prefix.as_str()) && filter.as_ref().is_none_or(|f| f.is_match(key))
            }
        }
    }
}

fn compile_glob(pattern: &str) -> Result<Plan, PatternError> {
    // Parse with globset even when the fast path will run the search, so that a malformed
    // pattern (say an unclosed class) is rejected the same way whichever plan would execute it.
    let glob = GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| PatternError::InvalidGlob(e.to_string()))?;
    let (prefix, rest) = glob_literal_prefix(pattern);
    if rest.is_empty() {
        return Ok(Plan::Exact(prefix));
    }
    if rest == "*" {
        return Ok(Plan::Scan { prefix, filter: None });
    }
    // globset's own matcher takes paths; building the regex ourselves lets us match key bytes
    // directly and put the same size limits on globs as on user regexes. The regex starts with
    // `(?-u)` and so may match bytes that are not UTF-8, which only the bytes API accepts.
    // `dot_matches_new_line` mirrors globset, so that `*` and `?` also match a newline.
    let re = regex::bytes::RegexBuilder::new(glob.regex())
        .dot_matches_new_line(true)
        .size_limit(REGEX_SIZE_BYTES_MAX)
        .dfa_size_limit(REGEX_DFA_SIZE_BYTES_MAX)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => PatternError::TooComplex(format!(
                "the compiled glob exceeds the limit of {limit} bytes"
            )),
            other => PatternError::InvalidGlob(other.to_string()),
        })?;
    Ok(Plan::Scan { prefix, filter: Some(Filter::Glob(re)) })
}

/// Splits a glob into the literal text before its first metacharacter (with backslash escapes
/// resolved) and the rest, starting at that metacharacter. `]`, `}` and `,` are only special in
/// some positions, but stopping at them too is always safe: it only makes the prefix shorter.
fn glob_literal_prefix(pattern: &str) -> (String, &str) {
    let mut prefix = String::new();
    let mut chars = pattern.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '*' | '?' | '[' | ']' | '{' | '}' | ',' => return (prefix, &pattern[i..]),
            '\\' => match chars.next() {
                Some((_, escaped)) => prefix.push(escaped),
                // A dangling escape was already rejected by globset; keep it in the rest so the
                // plan can never claim an exact match for it.
                None => return (prefix, &pattern[i..]),
            },
            c => prefix.push(c),
        }
    }
    (prefix, "")
}

fn compile_regex(pattern: &str) -> Result<Plan, PatternError> {
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_BYTES_MAX)
        .dfa_size_limit(REGEX_DFA_SIZE_BYTES_MAX)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => PatternError::TooComplex(format!(
                "the compiled regular expression exceeds the limit of {limit} bytes"
            )),
            other => PatternError::InvalidRegex(other.to_string()),
        })?;
    Ok(match regex_anchored_prefix(pattern) {
        Some((prefix, true)) => Plan::Exact(prefix),
        Some((prefix, false)) => Plan::Scan { prefix, filter: Some(Filter::Regex(re)) },
        None => Plan::Scan { prefix: String::new(), filter: Some(Filter::Regex(re)) },
    })
}

/// For a regex anchored at the start (`^literal...`), returns the literal prefix every match
/// must begin with, and whether the regex is exactly `^literal$`. Returns `None` when no safe
/// prefix is known. The analysis is deliberately conservative: any doubt yields a shorter prefix
/// or `None`, which costs speed but never correctness.
fn regex_anchored_prefix(pattern: &str) -> Option<(String, bool)> {
    let body = pattern.strip_prefix('^')?;
    // An alternation anywhere might be at the top level (`^a|b`), where a branch is unanchored.
    if pattern.contains('|') {
        return None;
    }
    const META: &[char] = &['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$'];
    let end = body.find(META).unwrap_or(body.len());
    let (literal, rest) = body.split_at(end);
    if rest.starts_with(['*', '+', '?', '{']) {
        // The quantifier applies to the last literal character, which is therefore optional or
        // repeated and cannot be part of the fixed prefix.
        let cut = literal.char_indices().last().map_or(0, |(i, _)| i);
        return Some((literal[..cut].to_owned(), false));
    }
    // Without multi-line mode `$` matches only at the end of the key.
    Some((literal.to_owned(), rest == "$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(pattern: &str, mode: SearchMode) -> Plan {
        Pattern::compile(pattern, mode).unwrap().plan
    }

    #[test]
    fn glob_plans_use_the_literal_prefix() {
        // A glob is split into its literal prefix and the rest, with escapes resolved.
        assert!(matches!(plan_of("abc", SearchMode::Wildcard), Plan::Exact(k) if k == "abc"));
        assert!(matches!(plan_of(r"a\*b", SearchMode::Wildcard), Plan::Exact(k) if k == "a*b"));
        assert!(matches!(plan_of("", SearchMode::Wildcard), Plan::Exact(k) if k.is_empty()));
        assert!(matches!(
            plan_of("user:*", SearchMode::Wildcard),
            Plan::Scan { prefix, filter: None } if prefix == "user:"
        ));
        assert!(matches!(
            plan_of("*", SearchMode::Wildcard),
            Plan::Scan { prefix, filter: None } if prefix.is_empty()
        ));
        assert!(matches!(
            plan_of("user:*:name", SearchMode::Wildcard),
            Plan::Scan { prefix, filter: Some(_) } if prefix == "user:"
        ));
        assert!(matches!(
            plan_of("ab**", SearchMode::Wildcard),
            Plan::Scan { prefix, filter: Some(_) } if prefix == "ab"
        ));
    }

    #[test]
    fn regex_plans_use_only_anchored_prefixes() {
        // Only a `^`-anchored regex without alternation gets a prefix, minus a quantified char.
        let prefix_of = |p: &str| match plan_of(p, SearchMode::Regex) {
            Plan::Exact(k) => format!("exact:{k}"),
            Plan::Scan { prefix, .. } => prefix,
        };
        assert_eq!(prefix_of("^abc"), "abc");
        assert_eq!(prefix_of("^abc.*x"), "abc");
        assert_eq!(prefix_of("^abc*"), "ab");
        assert_eq!(prefix_of("^abé?"), "ab");
        assert_eq!(prefix_of("^ab{2}"), "a");
        assert_eq!(prefix_of("^ab(c|d)"), "");
        assert_eq!(prefix_of("^ab|cd"), "");
        assert_eq!(prefix_of("abc"), "");
        assert_eq!(prefix_of(r"^a\.b"), "a");
        assert_eq!(prefix_of("^abc$"), "exact:abc");
        assert_eq!(prefix_of("^$"), "exact:");
    }

    #[test]
    fn invalid_patterns_are_typed_errors() {
        // Malformed globs and regexes come back as the matching error variant.
        assert!(matches!(
            Pattern::compile("a[bc", SearchMode::Wildcard),
            Err(PatternError::InvalidGlob(_))
        ));
        assert!(matches!(
            Pattern::compile(r"abc\", SearchMode::Wildcard),
            Err(PatternError::InvalidGlob(_))
        ));
        assert!(matches!(
            Pattern::compile("a(b", SearchMode::Regex),
            Err(PatternError::InvalidRegex(_))
        ));
    }

    #[test]
    fn pattern_too_long_rejected() {
        // A pattern longer than PATTERN_BYTES_MAX is refused before it is parsed.
        let long = "a".repeat(PATTERN_BYTES_MAX + 1);
        for mode in [SearchMode::Wildcard, SearchMode::Regex] {
            assert_eq!(
                Pattern::compile(&long, mode).unwrap_err(),
                PatternError::TooLong { len: PATTERN_BYTES_MAX + 1, limit: PATTERN_BYTES_MAX }
            );
        }
        assert!(Pattern::compile(&long[1..], SearchMode::Wildcard).is_ok());
    }

    #[test]
    fn hostile_regex_rejected_or_bounded() {
        // Patterns whose compiled form would be huge are rejected as TooComplex.
        assert!(matches!(
            Pattern::compile("(a{1000}){1000}", SearchMode::Regex),
            Err(PatternError::TooComplex(_))
        ));
        assert!(matches!(
            Pattern::compile(r"\w{1000}\w{1000}", SearchMode::Regex),
            Err(PatternError::TooComplex(_))
        ));
        // Catastrophic-backtracking shapes compile and match in linear time.
        let re = Pattern::compile("(a+)+$b", SearchMode::Regex).unwrap();
        let key = format!("{}!", "a".repeat(100_000));
        let Plan::Scan { filter: Some(filter), .. } = re.plan() else { panic!("expected a scan") };
        assert!(!filter.is_match(&key));
    }
}
