//! Subject mappings, as nats-server's `mappings {}` (top level for `$G`, or
//! inside an account): a message a client publishes on a subject matched by
//! a mapping's source is routed as if published on the destination, before
//! permissions, subscribers and JetStream see it.
//!
//! A destination is a subject whose tokens may be literal, `$N` (the token
//! the N-th `*` of the source matched) or a function in `{{ }}`:
//! `wildcard(N)`, `partition(n, N...)` (FNV-1a of the named tokens, or of the
//! whole subject, modulo `n`), `splitFromLeft(N, p)`, `splitFromRight(N, p)`,
//! `sliceFromLeft(N, s)`, `sliceFromRight(N, s)`, `split(N, delim)`,
//! `left(N, s)`, `right(N, s)` and `random(n)`. A trailing `>` carries the
//! tokens the source's `>` matched. Several destinations carry weights
//! (percent); when they add up to less than 100 and the source is not one
//! of them, the rest keeps the subject as published.
//!
//! This module owns compiling and applying mappings; it must not know about
//! accounts, connections or the configuration file (the `conf` reader and
//! the account call it). Applying a mapping allocates only when the subject
//! is mapped.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::SubjectMapping;
use crate::subject;

/// Why a mapping cannot be used; texts as nats-server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The source or destination is not a valid subject for a mapping (a
    /// `*` token in the destination, `>` on one side only, empty tokens).
    #[error("invalid subject")]
    BadSubject,
    /// A destination token is wrong; `token` is the token (empty when the
    /// whole destination is at fault).
    #[error("invalid mapping destination: {problem}{}", in_token(token))]
    Destination {
        /// What is wrong.
        problem: DestinationProblem,
        /// The token concerned.
        token: String,
    },
    /// The same destination twice.
    #[error("duplicate entry for \"{0}\"")]
    Duplicate(String),
    /// A weight over 100.
    #[error("individual weights need to be <= 100")]
    Weight,
    /// Weights adding up to more than 100.
    #[error("total weight needs to be <= 100")]
    TotalWeight,
}

fn in_token(token: &str) -> String {
    if token.is_empty() {
        String::new()
    } else {
        format!(" in {token}")
    }
}

/// What is wrong with a destination token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationProblem {
    /// An empty token, a token after `>`, or white space.
    InvalidTransform,
    /// `{{name(...)}}` with a name nats-server does not know.
    UnknownFunction,
    /// A wildcard number the source does not have.
    IndexOutOfRange,
    /// Too few arguments.
    NotEnoughArgs,
    /// An argument that is not a number (or a bad delimiter).
    InvalidArg,
    /// Too many arguments.
    TooManyArgs,
}

impl fmt::Display for DestinationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DestinationProblem::InvalidTransform => "invalid transform",
            DestinationProblem::UnknownFunction => "unknown function",
            DestinationProblem::IndexOutOfRange => "wildcard index out of range",
            DestinationProblem::NotEnoughArgs => "not enough arguments passed to the function",
            DestinationProblem::InvalidArg => "function argument is invalid or in the wrong format",
            DestinationProblem::TooManyArgs => "too many arguments passed to the function",
        })
    }
}

fn bad(problem: DestinationProblem, token: impl Into<String>) -> MappingError {
    MappingError::Destination {
        problem,
        token: token.into(),
    }
}

/// One destination token, compiled. Token positions are positions in the
/// published subject.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Wildcard(usize),
    /// `from` empty: the whole subject is hashed.
    Partition {
        buckets: i64,
        from: Vec<usize>,
    },
    SplitFromLeft(usize, i64),
    SplitFromRight(usize, i64),
    SliceFromLeft(usize, i64),
    SliceFromRight(usize, i64),
    Split(usize, String),
    Left(usize, i64),
    Right(usize, i64),
    Random(i64),
}

/// A parsed `{{function(args)}}` token before its wildcard numbers are
/// resolved against the source.
enum Function {
    Wildcard(i64),
    Partition(i64, Vec<i64>),
    TwoInts(fn(usize, i64) -> Part, i64, i64),
    Split(i64, String),
    Random(i64),
}

/// Whether `name` spells `canonical` the way nats-server accepts it: the
/// first letter and each inner capital in either case, the rest as written.
fn name_is(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .chars()
            .zip(canonical.chars())
            .enumerate()
            .all(|(i, (n, c))| {
                n == c || ((i == 0 || c.is_ascii_uppercase()) && n.eq_ignore_ascii_case(&c))
            })
}

/// A whole-token `{{ name ( args ) }}`, or `None` when the token is not
/// written as a function at all.
fn function(token: &str) -> Option<Result<Function, MappingError>> {
    if token.len() <= 4 || !token.starts_with("{{") || !token.ends_with("}}") {
        return None;
    }
    let inner = &token[2..token.len() - 2];
    let unknown = || Some(Err(bad(DestinationProblem::UnknownFunction, token)));
    let Some(open) = inner.find('(') else {
        return unknown();
    };
    let Some(close) = inner.rfind(')') else {
        return unknown();
    };
    if close < open || !inner[close + 1..].trim().is_empty() {
        return unknown();
    }
    let name = inner[..open].trim();
    let args: Vec<&str> = split_args(&inner[open + 1..close]);
    let int = |s: &str| -> Result<i64, MappingError> {
        s.trim_matches(' ')
            .parse::<i64>()
            .map_err(|_| bad(DestinationProblem::InvalidArg, token))
    };
    let int32 = |s: &str| -> Result<i64, MappingError> {
        int(s).and_then(|n| {
            if i32::try_from(n).is_ok() {
                Ok(n)
            } else {
                Err(bad(DestinationProblem::InvalidArg, token))
            }
        })
    };
    let two = |make: fn(usize, i64) -> Part| -> Result<Function, MappingError> {
        match args.len() {
            0 | 1 => Err(bad(DestinationProblem::NotEnoughArgs, token)),
            2 => Ok(Function::TwoInts(make, int(args[0])?, int32(args[1])?)),
            _ => Err(bad(DestinationProblem::TooManyArgs, token)),
        }
    };
    let f = if name_is(name, "wildcard") {
        match args.as_slice() {
            [""] => Err(bad(DestinationProblem::NotEnoughArgs, token)),
            [one] => int(one).map(Function::Wildcard),
            _ => Err(bad(DestinationProblem::TooManyArgs, token)),
        }
    } else if name_is(name, "partition") {
        (|| {
            let buckets = int32(args[0])?;
            let from = args[1..].iter().map(|a| int(a)).collect::<Result<_, _>>()?;
            Ok(Function::Partition(buckets, from))
        })()
    } else if name_is(name, "splitFromLeft") {
        two(Part::SplitFromLeft)
    } else if name_is(name, "splitFromRight") {
        two(Part::SplitFromRight)
    } else if name_is(name, "sliceFromLeft") {
        two(Part::SliceFromLeft)
    } else if name_is(name, "sliceFromRight") {
        two(Part::SliceFromRight)
    } else if name_is(name, "right") {
        two(Part::Right)
    } else if name_is(name, "left") {
        two(Part::Left)
    } else if name_is(name, "split") {
        match args.len() {
            0 | 1 => Err(bad(DestinationProblem::NotEnoughArgs, token)),
            2 => {
                let delim = args[1];
                if delim.contains(' ') || delim.contains('.') {
                    Err(bad(DestinationProblem::InvalidArg, token))
                } else {
                    int(args[0]).map(|n| Function::Split(n, delim.to_owned()))
                }
            }
            _ => Err(bad(DestinationProblem::TooManyArgs, token)),
        }
    } else if name_is(name, "random") {
        match args.as_slice() {
            [one] => int32(one).map(Function::Random),
            _ => Err(bad(DestinationProblem::NotEnoughArgs, token)),
        }
    } else {
        return unknown();
    };
    Some(f)
}

/// Arguments split at commas (with the spaces after them dropped).
fn split_args(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        match rest.find(',') {
            Some(i) => {
                out.push(&rest[..i]);
                rest = rest[i + 1..].trim_start_matches(char::is_whitespace);
            }
            None => {
                out.push(rest);
                return out;
            }
        }
    }
}

/// A compiled destination: how to build the new subject from the tokens of
/// the published one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    parts: Vec<Part>,
    /// Position of the source's `>`, when the destination ends in `>`.
    tail_from: Option<usize>,
    /// The destination, when every part is literal (no work to do).
    constant: Option<String>,
}

impl Transform {
    /// Compiles `dest` for subjects matched by `source` (nats-server's
    /// checks, in its order).
    pub fn new(source: &str, dest: &str) -> Result<Transform, MappingError> {
        // The destination's form first.
        let mut after_tail = false;
        for t in dest.split('.') {
            if t.is_empty() || after_tail {
                return Err(bad(DestinationProblem::InvalidTransform, t));
            }
            // Only the function's name counts here; its arguments are
            // checked once the source is known (nats-server's order).
            if let Some(f) = function(t) {
                if let Err(
                    e @ MappingError::Destination {
                        problem: DestinationProblem::UnknownFunction,
                        ..
                    },
                ) = f
                {
                    return Err(e);
                }
                continue;
            }
            if t == ">" {
                after_tail = true;
            } else if t.contains(['\t', '\n', '\x0c', '\r', ' ']) {
                return Err(bad(DestinationProblem::InvalidTransform, ""));
            }
        }
        if !subject::valid_filter(source) {
            return Err(MappingError::BadSubject);
        }
        let stars: Vec<usize> = source
            .split('.')
            .enumerate()
            .filter(|(_, t)| *t == "*")
            .map(|(i, _)| i)
            .collect();
        let source_tail = source.split('.').position(|t| t == ">");
        let dest_tokens: Vec<&str> = dest.split('.').collect();
        if dest_tokens.contains(&"*") || source_tail.is_some() != dest_tokens.contains(&">") {
            return Err(MappingError::BadSubject);
        }
        let with_wildcards = !stars.is_empty() || source_tail.is_some();
        // Wildcard number `n` (1-based) to its position in the subject;
        // nats-server takes 0 and below as the first token.
        let position = |n: i64, token: &str, show_index: bool| -> Result<usize, MappingError> {
            if n > stars.len() as i64 {
                let token = if show_index {
                    format!("{token}: [{n}]")
                } else {
                    token.to_owned()
                };
                return Err(bad(DestinationProblem::IndexOutOfRange, token));
            }
            Ok(usize::try_from(n - 1)
                .ok()
                .and_then(|i| stars.get(i).copied())
                .unwrap_or(0))
        };
        let mut parts = Vec::new();
        for t in &dest_tokens {
            if *t == ">" {
                break;
            }
            let dollar = t
                .strip_prefix('$')
                .filter(|_| t.len() > 1)
                .and_then(|n| n.parse::<i64>().ok());
            let f = match (dollar, function(t)) {
                (Some(n), _) => Function::Wildcard(n),
                (None, Some(f)) => f?,
                (None, None) => {
                    parts.push(Part::Literal((*t).to_owned()));
                    continue;
                }
            };
            let part = match f {
                Function::Random(n) => Part::Random(n),
                Function::Partition(buckets, _) if !with_wildcards => Part::Partition {
                    buckets,
                    from: Vec::new(),
                },
                _ if !with_wildcards => {
                    return Err(bad(DestinationProblem::IndexOutOfRange, *t));
                }
                Function::Wildcard(n) => Part::Wildcard(position(n, t, true)?),
                Function::Partition(buckets, from) => Part::Partition {
                    buckets,
                    from: from
                        .into_iter()
                        .map(|n| position(n, t, true))
                        .collect::<Result<_, _>>()?,
                },
                Function::TwoInts(make, n, arg) => make(position(n, t, true)?, arg),
                Function::Split(n, delim) => Part::Split(position(n, t, true)?, delim),
            };
            parts.push(part);
        }
        let constant = (source_tail.is_none()
            && parts.iter().all(|p| matches!(p, Part::Literal(_))))
        .then(|| dest.to_owned());
        Ok(Transform {
            parts,
            tail_from: source_tail,
            constant,
        })
    }

    /// The identity for `source` (wildcards carried over), for the share
    /// of weight no destination takes.
    fn identity(source: &str) -> Transform {
        let mut n = 0;
        let dest: Vec<String> = source
            .split('.')
            .map(|t| {
                if t == "*" {
                    n += 1;
                    format!("${n}")
                } else {
                    t.to_owned()
                }
            })
            .collect();
        Transform::new(source, &dest.join(".")).unwrap_or(Transform {
            parts: Vec::new(),
            tail_from: None,
            constant: Some(source.to_owned()),
        })
    }

    /// The destination for `subject` (which the source matched).
    pub fn apply(&self, subject: &str, rng: &Rng) -> String {
        if let Some(c) = &self.constant {
            return c.clone();
        }
        let tokens: Vec<&str> = subject.split('.').collect();
        let token = |i: usize| tokens.get(i).copied().unwrap_or_default();
        let mut out: Vec<u8> = Vec::with_capacity(subject.len() + 16);
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            match part {
                Part::Literal(l) => out.extend_from_slice(l.as_bytes()),
                Part::Wildcard(p) => out.extend_from_slice(token(*p).as_bytes()),
                Part::Partition { buckets, from } => {
                    let hash = if from.is_empty() {
                        fnv1a(subject.as_bytes().iter())
                    } else {
                        fnv1a(from.iter().flat_map(|p| token(*p).as_bytes()))
                    };
                    let n = if *buckets == 0 {
                        0
                    } else {
                        hash % (*buckets as u32)
                    };
                    out.extend_from_slice(n.to_string().as_bytes());
                }
                Part::SplitFromLeft(p, at) => {
                    let t = token(*p).as_bytes();
                    match cut(*at, t.len()) {
                        Some(at) => join(&mut out, &[&t[..at], &t[at..]]),
                        None => out.extend_from_slice(t),
                    }
                }
                Part::SplitFromRight(p, at) => {
                    let t = token(*p).as_bytes();
                    match cut(*at, t.len()) {
                        Some(at) => join(&mut out, &[&t[..t.len() - at], &t[t.len() - at..]]),
                        None => out.extend_from_slice(t),
                    }
                }
                Part::SliceFromLeft(p, size) => {
                    let t = token(*p).as_bytes();
                    match cut(*size, t.len()) {
                        Some(size) => join(&mut out, &t.chunks(size).collect::<Vec<_>>()),
                        None => out.extend_from_slice(t),
                    }
                }
                Part::SliceFromRight(p, size) => {
                    let t = token(*p).as_bytes();
                    match cut(*size, t.len()) {
                        Some(size) => {
                            let first = t.len() % size;
                            let mut pieces: Vec<&[u8]> = Vec::new();
                            if first > 0 {
                                pieces.push(&t[..first]);
                            }
                            pieces.extend(t[first..].chunks(size));
                            join(&mut out, &pieces);
                        }
                        None => out.extend_from_slice(t),
                    }
                }
                Part::Split(p, delim) => split(&mut out, token(*p), delim),
                Part::Left(p, size) => {
                    let t = token(*p).as_bytes();
                    out.extend_from_slice(cut(*size, t.len()).map_or(t, |s| &t[..s]));
                }
                Part::Right(p, size) => {
                    let t = token(*p).as_bytes();
                    out.extend_from_slice(cut(*size, t.len()).map_or(t, |s| &t[t.len() - s..]));
                }
                Part::Random(n) => {
                    let n = n.unsigned_abs();
                    let v = if n == 0 { 0 } else { rng.next() % n };
                    out.extend_from_slice(v.to_string().as_bytes());
                }
            }
        }
        if let Some(from) = self.tail_from {
            if !self.parts.is_empty() {
                out.push(b'.');
            }
            let rest: Vec<&str> = tokens.get(from..).unwrap_or_default().to_vec();
            out.extend_from_slice(rest.join(".").as_bytes());
        }
        match String::from_utf8(out) {
            Ok(s) => s,
            // Byte positions may cut a multi-byte character, as nats-server
            // cuts them.
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

/// `n` as a cut position or slice size inside a token of `len` bytes, when
/// it is strictly inside (otherwise the token is left whole).
fn cut(n: i64, len: usize) -> Option<usize> {
    usize::try_from(n).ok().filter(|n| *n > 0 && *n < len)
}

fn join(out: &mut Vec<u8>, pieces: &[&[u8]]) {
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(p);
    }
}

/// `split(N, delim)`: the token's pieces as tokens, empty pieces dropped
/// (a dot goes before a non-empty piece unless only empty text precedes
/// it at the very start, as nats-server writes them).
fn split(out: &mut Vec<u8>, token: &str, delim: &str) {
    let pieces: Vec<&str> = if delim.is_empty() {
        token
            .char_indices()
            .map(|(i, c)| &token[i..i + c.len_utf8()])
            .collect()
    } else {
        token.split(delim).collect()
    };
    for (j, piece) in pieces.iter().enumerate() {
        out.extend_from_slice(piece.as_bytes());
        let next_filled = pieces.get(j + 1).is_some_and(|n| !n.is_empty());
        if next_filled && !(j == 0 && piece.is_empty()) {
            out.push(b'.');
        }
    }
}

/// 32-bit FNV-1a.
fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A small lock-free random source (xorshift) for weighted picks and
/// `random(n)`: not for secrets.
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Rng {
    pub(crate) fn new() -> Rng {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        Rng(AtomicU64::new(seed))
    }

    fn next(&self) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x >> 11
    }
}

/// One compiled mapping: its source and destinations with cumulative
/// weights (ascending).
#[derive(Debug)]
struct Compiled {
    source: String,
    literal: bool,
    /// (cumulative weight, destination).
    dests: Vec<(u8, Transform)>,
}

/// An account's mappings, compiled; the first whose source matches a
/// published subject decides.
#[derive(Debug)]
pub struct Mappings {
    list: Vec<Compiled>,
    rng: Rng,
}

impl Mappings {
    /// Compiles mappings (nats-server's checks); `None` when there are none.
    pub fn new(mappings: &[SubjectMapping]) -> Result<Option<Mappings>, MappingError> {
        let list = mappings
            .iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!list.is_empty()).then(|| Mappings {
            list,
            rng: Rng::new(),
        }))
    }

    /// The subject a publish on `subject` goes to, when a mapping takes
    /// it. An empty subject: the weights picked no destination (the
    /// message goes nowhere).
    pub fn map(&self, subject: &str) -> Option<String> {
        let m = self.list.iter().find(|m| {
            if m.literal {
                m.source == subject
            } else {
                subject::matches(&m.source, subject)
            }
        })?;
        let dest = match m.dests.as_slice() {
            [(100, only)] => Some(only),
            dests => {
                let w = (self.rng.next() % 100) as u8;
                dests.iter().find(|(upto, _)| w < *upto).map(|(_, t)| t)
            }
        };
        Some(dest.map_or_else(String::new, |t| t.apply(subject, &self.rng)))
    }
}

/// Checks one mapping as nats-server checks it when adding it.
pub fn check(m: &SubjectMapping) -> Result<(), MappingError> {
    compile(m).map(|_| ())
}

/// Checks one mapping (as nats-server adds it) and compiles it.
fn compile(m: &SubjectMapping) -> Result<Compiled, MappingError> {
    if !subject::valid_filter(&m.source) {
        return Err(MappingError::BadSubject);
    }
    let mut dests: Vec<(u8, Transform)> = Vec::new();
    let mut total: u32 = 0;
    let mut seen: Vec<&str> = Vec::new();
    for d in &m.destinations {
        if seen.contains(&d.subject.as_str()) {
            return Err(MappingError::Duplicate(d.subject.clone()));
        }
        seen.push(&d.subject);
        if d.weight > 100 {
            return Err(MappingError::Weight);
        }
        total += u32::from(d.weight);
        if total > 100 {
            return Err(MappingError::TotalWeight);
        }
        dests.push((d.weight, Transform::new(&m.source, &d.subject)?));
    }
    if total != 100 && !seen.contains(&m.source.as_str()) {
        let rest = if dests.is_empty() { 100 } else { 100 - total };
        // Weight fits in u8: total < 100 here.
        dests.push((rest as u8, Transform::identity(&m.source)));
    }
    dests.sort_by_key(|(w, _)| *w);
    let mut upto: u8 = 0;
    for (w, _) in &mut dests {
        upto = upto.saturating_add(*w);
        *w = upto;
    }
    Ok(Compiled {
        source: m.source.clone(),
        literal: !subject::has_wildcards(&m.source),
        dests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapDestination;

    fn one(source: &str, dest: &str) -> Mappings {
        Mappings::new(&[SubjectMapping::new(source, dest)])
            .expect("valid")
            .expect("some")
    }

    fn err(source: &str, dest: &str) -> String {
        match Transform::new(source, dest) {
            Ok(t) => panic!("{dest} accepted: {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn wildcards_and_dollar_tokens_reorder_tokens() {
        let m = one("a.*.*", "b.$2.{{wildcard(1)}}");
        assert_eq!(m.map("a.x.y").as_deref(), Some("b.y.x"));
        assert_eq!(m.map("a.x"), None);
        let m = one("a.>", "b.>");
        assert_eq!(m.map("a.x.y.z").as_deref(), Some("b.x.y.z"));
        let m = one("a.*.>", "b.$1.>");
        assert_eq!(m.map("a.x.y.z").as_deref(), Some("b.x.y.z"));
        let m = one("x", "y.z");
        assert_eq!(m.map("x").as_deref(), Some("y.z"));
        assert_eq!(m.map("x.y"), None);
    }

    #[test]
    fn functions_cut_tokens_as_nats_server_does() {
        let m = one("a.*", "{{splitFromLeft(1,2)}}");
        assert_eq!(m.map("a.abcdef").as_deref(), Some("ab.cdef"));
        let m = one("a.*", "{{SplitFromRight(1, 2)}}");
        assert_eq!(m.map("a.abcdef").as_deref(), Some("abcd.ef"));
        let m = one("a.*", "{{sliceFromLeft(1,3)}}");
        assert_eq!(m.map("a.abcdefg").as_deref(), Some("abc.def.g"));
        let m = one("a.*", "{{sliceFromRight(1,3)}}");
        assert_eq!(m.map("a.abcdefg").as_deref(), Some("a.bcd.efg"));
        let m = one("a.*", "{{split(1,-)}}");
        assert_eq!(m.map("a.x-y--z").as_deref(), Some("x.y.z"));
        assert_eq!(m.map("a.-x").as_deref(), Some("x"));
        assert_eq!(m.map("a.--x").as_deref(), Some(".x"));
        let m = one("a.*", "{{left(1,2)}}.{{right(1,2)}}");
        assert_eq!(m.map("a.abcdef").as_deref(), Some("ab.ef"));
        assert_eq!(m.map("a.ab").as_deref(), Some("ab.ab"));
    }

    #[test]
    fn partition_is_fnv1a_of_the_named_tokens() {
        // FNV-1a("x") = 0xfd0c2a9c... checked against the known vector for "a".
        assert_eq!(fnv1a(b"a".iter()), 0xe40c_292c);
        let m = one("p.*.*", "p.{{partition(7,1,2)}}.$1.$2");
        let expected = fnv1a(b"xy".iter()) % 7;
        assert_eq!(m.map("p.x.y"), Some(format!("p.{expected}.x.y")));
        let m = one("q", "q.{{partition(5)}}");
        assert_eq!(m.map("q"), Some(format!("q.{}", fnv1a(b"q".iter()) % 5)));
    }

    #[test]
    fn bad_destinations_get_nats_servers_messages() {
        assert_eq!(err("a", "b.*"), "invalid subject");
        // The subject's form is judged before a function's arguments.
        assert_eq!(err("a", "b.*.{{wildcard()}}"), "invalid subject");
        assert_eq!(err("a.>", "b"), "invalid subject");
        assert_eq!(
            err("a", "b.{{wildcard(1)}}"),
            "invalid mapping destination: wildcard index out of range in {{wildcard(1)}}"
        );
        assert_eq!(
            err("a.*", "b.{{wildcard(2)}}"),
            "invalid mapping destination: wildcard index out of range in {{wildcard(2)}}: [2]"
        );
        assert_eq!(
            err("a.*", "b.{{foo(1)}}"),
            "invalid mapping destination: unknown function in {{foo(1)}}"
        );
        assert_eq!(
            err("a.*", "b.{{wildcard()}}"),
            "invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}"
        );
        assert_eq!(
            err("a.*", "b.{{split(1,a b)}}"),
            "invalid mapping destination: function argument is invalid or in the wrong format in {{split(1,a b)}}"
        );
        assert_eq!(
            err("a.*", "b.{{left(1,2,3)}}"),
            "invalid mapping destination: too many arguments passed to the function in {{left(1,2,3)}}"
        );
        assert_eq!(
            err("a.*", "b..c"),
            "invalid mapping destination: invalid transform"
        );
        assert_eq!(
            err("a.*", "b.{{WILDCARD(1)}}"),
            "invalid mapping destination: unknown function in {{WILDCARD(1)}}"
        );
    }

    #[test]
    fn weights_share_out_and_the_rest_keeps_the_subject() {
        let m = Mappings::new(&[SubjectMapping {
            source: "w".into(),
            destinations: vec![MapDestination {
                subject: "w1".into(),
                weight: 50,
            }],
        }])
        .expect("valid")
        .expect("some");
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..2000 {
            *seen.entry(m.map("w").expect("mapped")).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen["w1"] > 800 && seen["w"] > 800, "{seen:?}");
        let total = Mappings::new(&[SubjectMapping {
            source: "w".into(),
            destinations: vec![
                MapDestination {
                    subject: "a".into(),
                    weight: 60,
                },
                MapDestination {
                    subject: "b".into(),
                    weight: 50,
                },
            ],
        }]);
        assert_eq!(total.err(), Some(MappingError::TotalWeight));
    }

    #[test]
    fn weights_that_leave_a_gap_with_the_source_listed_drop_the_rest() {
        let m = Mappings::new(&[SubjectMapping {
            source: "w".into(),
            destinations: vec![MapDestination {
                subject: "w".into(),
                weight: 10,
            }],
        }])
        .expect("valid")
        .expect("some");
        let dropped = (0..1000)
            .filter(|_| m.map("w").as_deref() == Some(""))
            .count();
        assert!(dropped > 700, "{dropped}");
    }
}
