//! NATS subjects: their syntax, and every way the server compares them.
//!
//! A subject is a list of tokens separated by `.`. A *literal* subject (what
//! a message is published to) has no wildcards; a *pattern* (a subscription
//! filter, a permission entry, a stream's subjects, an export) may use `*`
//! (exactly one token) and `>` (one or more tokens, last only).
//!
//! This module is the only place that knows these rules; the subscription
//! trie (`sublist`), permissions, accounts' imports and exports,
//! streams and consumers all ask it. It is pure: no state, no allocation
//! except where a function returns a new subject.
//!
//! Following nats-server, [`matches()`] takes its second argument *literally*:
//! a `*` or `>` token in it is just a token that the pattern's wildcards can
//! match (so a permission `foo.*` allows `SUB foo.*` and `SUB foo.>`, but
//! `foo.bar` allows neither). Use [`covers`] to ask whether one pattern
//! includes everything another one matches, and [`overlaps`] whether some
//! literal subject matches both.

/// The single-token wildcard.
pub const STAR: &str = "*";
/// The tail wildcard: one or more tokens, only as the last token.
pub const TAIL: &str = ">";

/// True when `token` is a wildcard token (`*` or `>`).
pub fn is_wildcard(token: &str) -> bool {
    token == STAR || token == TAIL
}

/// True when some token of `subject` is a wildcard.
pub fn has_wildcards(subject: &str) -> bool {
    subject.split('.').any(is_wildcard)
}

/// The wildcard tokens of a pattern, in order.
pub fn wildcards(pattern: &str) -> impl Iterator<Item = &str> {
    pattern.split('.').filter(|t| is_wildcard(t))
}

/// True when `subject` has an empty token (`a..b`, `.a`, `a.`, or is empty):
/// such a subject can match nothing.
pub fn has_empty_token(subject: &str) -> bool {
    subject.split('.').any(str::is_empty)
}

/// True when `subject` is a valid subscription subject (pattern): non-empty
/// tokens without white space, wildcards only as whole tokens, `>` only last.
pub fn valid_filter(subject: &str) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(t) = tokens.next() {
        if t.is_empty()
            || t.bytes()
                .any(|b| b == b' ' || b == b'\t' || b == b'\r' || b == b'\n')
        {
            return false;
        }
        if t.len() > 1 && (t.contains('*') || t.contains('>')) {
            return false;
        }
        if t == TAIL && tokens.peek().is_some() {
            return false;
        }
    }
    true
}

/// True when `subject` is a valid literal publish subject (no wildcards).
///
/// The same as `valid_filter(subject) && !has_wildcards(subject)` in one
/// pass over the bytes (every publish is checked): a `*` or `>` anywhere
/// fails it, as a whole token (a wildcard) or inside one (an invalid
/// filter), so it comes down to non-empty tokens without white space,
/// `*` or `>`.
pub fn valid_literal(subject: &str) -> bool {
    let mut token_len = 0usize;
    for &b in subject.as_bytes() {
        match b {
            b'.' => {
                if token_len == 0 {
                    return false;
                }
                token_len = 0;
            }
            b' ' | b'\t' | b'\r' | b'\n' | b'*' | b'>' => return false,
            _ => token_len += 1,
        }
    }
    token_len > 0
}

/// Whether `pattern` matches `subject`, whose tokens are taken literally
/// (see the module docs). `>` needs at least one token.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut s = subject.split('.');
    for p in pattern.split('.') {
        match p {
            TAIL => return s.next().is_some(),
            STAR => {
                if s.next().is_none() {
                    return false;
                }
            }
            literal => {
                if s.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    s.next().is_none()
}

/// Whether every subject `inner` matches is also matched by `outer` (both
/// patterns): `a.>` covers `a.b.*` and `a.>`; `a.*` does not cover `a.>`.
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('.');
    let mut i = inner.split('.');
    loop {
        match (o.next(), i.next()) {
            // `>` takes one or more tokens: whatever `inner` has left (at
            // least one token, itself possibly `*` or `>`).
            (Some(TAIL), Some(_)) => return true,
            (Some(_), Some(TAIL)) => return false,
            (Some(STAR), Some(_)) => {}
            (Some(_), Some(STAR)) => return false,
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some literal subject matches both patterns.
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (Some(TAIL), Some(_)) | (Some(_), Some(TAIL)) => return true,
            (Some(p), Some(q)) if p == STAR || q == STAR || p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Maps a literal `subject` matched by `from` onto `to` (a pattern with the
/// same wildcards, in the same order): the tokens each wildcard of `from`
/// matched take the place of the corresponding wildcard of `to`. A `to`
/// without wildcards is returned as it is.
pub fn map(from: &str, to: &str, subject: &str) -> String {
    let tokens: Vec<&str> = subject.split('.').collect();
    let mut captured: Vec<String> = Vec::new();
    for (n, f) in from.split('.').enumerate() {
        match f {
            STAR => captured.push(tokens.get(n).copied().unwrap_or_default().to_owned()),
            TAIL => captured.push(tokens.get(n..).map(|t| t.join(".")).unwrap_or_default()),
            _ => {}
        }
    }
    let mut captured = captured.into_iter();
    to.split('.')
        .map(|t| {
            if is_wildcard(t) {
                captured.next().unwrap_or_default()
            } else {
                t.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `valid_literal`'s one-pass form answers as its definition does, on
    /// every subject of up to 4 bytes over the characters that matter.
    #[test]
    fn valid_literal_is_a_valid_filter_without_wildcards() {
        let alphabet = [b'a', b'.', b'*', b'>', b' ', b'\t', b'\r', b'\n', b'Z'];
        let mut subjects = vec![Vec::new()];
        let mut frontier = vec![Vec::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &frontier {
                for &c in &alphabet {
                    let mut t: Vec<u8> = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            subjects.extend(next.iter().cloned());
            frontier = next;
        }
        for s in subjects {
            let s = String::from_utf8(s).expect("ascii");
            assert_eq!(
                valid_literal(&s),
                valid_filter(&s) && !has_wildcards(&s),
                "{s:?}"
            );
        }
        assert!(valid_literal("orders.eu.42"));
        assert!(!valid_literal("orders..42"));
        assert!(!valid_literal("orders.*"));
        assert!(!valid_literal("ord*ers"));
        assert!(!valid_literal(""));
    }

    #[test]
    fn filters_and_literals_are_validated_like_nats_server() {
        for ok in ["a", "a.b", "a.*", "a.>", "*", ">", "*.b.>", "$JS.API.>"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in [
            "", "a..b", ".a", "a.", "a.>.b", "a*", "a.b>", "a b", "a\tb", "a.\r", ">.a",
        ] {
            assert!(!valid_filter(bad), "{bad:?}");
        }
        assert!(valid_literal("a.b"));
        assert!(!valid_literal("a.*"));
        assert!(!valid_literal("a.>"));
        assert!(!valid_literal(""));
        assert!(has_empty_token("a..b") && has_empty_token("") && !has_empty_token("a.b"));
        assert!(has_wildcards("a.*.c") && !has_wildcards("a.b*"));
        assert_eq!(wildcards("a.*.b.>").collect::<Vec<_>>(), ["*", ">"]);
    }

    #[test]
    fn matching_takes_the_subject_literally() {
        assert!(matches("foo.*", "foo.bar"));
        assert!(matches("foo.*", "foo.*"));
        assert!(matches("foo.*", "foo.>"));
        assert!(matches("foo.>", "foo.a.b"));
        assert!(matches(">", "a"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("foo.>", "foo"), "> needs a token");
        assert!(
            !matches("foo.bar", "foo.*"),
            "a literal pattern matches a literal only"
        );
        assert!(!matches("foo.*", "foo.a.b"));
        assert!(!matches("foo.*", "foo"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
    }

    #[test]
    fn covering_is_inclusion_of_everything_matched() {
        assert!(covers("a.>", "a.b.c"));
        assert!(covers("a.>", "a.*"));
        assert!(covers("a.>", "a.>"));
        assert!(covers(">", "*"));
        assert!(covers(">", ">"));
        assert!(covers("a.*", "a.b"));
        assert!(covers("a.*", "a.*"));
        assert!(covers("*.*", "a.b"));
        assert!(!covers("a.*", "a.>"), "a.> also matches a.b.c");
        assert!(!covers("a.b", "a.*"));
        assert!(!covers("a.b", "a.c"));
        assert!(!covers("a.>", "a"), "a.> needs a token after a");
        assert!(!covers("*", "a.b"));
        assert!(!covers("a.b.c", "a.b"));
        assert!(covers("foo.*", "foo.x"));
        assert!(covers(">", "foo.x.y"));
        assert!(!covers("*.x", "foo.*"));
        assert!(!covers("foo.*", "bar.x"));
    }

    #[test]
    fn overlapping_needs_one_subject_matching_both() {
        assert!(overlaps("a.*", "a.b"));
        assert!(overlaps("a.>", "a.b.c"));
        assert!(overlaps("*.b", "a.*"));
        assert!(overlaps(">", "x"));
        assert!(overlaps("a.b", "a.b"));
        assert!(!overlaps("a.b", "a.c"));
        assert!(!overlaps("a.*", "a.b.c"));
        assert!(!overlaps("a.>", "a"));
        assert!(!overlaps("a.*.c", "a.b.d"));
    }

    #[test]
    fn mapping_moves_the_wildcard_tokens_across() {
        assert_eq!(map("b.*.x", "l.*.y", "b.q.x"), "l.q.y");
        assert_eq!(map("b.>", "l.>", "b.q.x"), "l.q.x");
        assert_eq!(map("b.*.>", "l.*.m.>", "b.1.2.3"), "l.1.m.2.3");
        assert_eq!(map("b.svc", "local.svc", "b.svc"), "local.svc");
    }
}
