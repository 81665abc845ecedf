//! Subject layout `<prefix>.events.<aggregate>.<EventType>` and NATS-style filters.
//!
//! Every name that becomes a subject token is validated here, so no other layer
//! can build a malformed subject. Filters follow NATS semantics: `*` matches
//! exactly one token, `>` matches one or more tokens and may only be last, and
//! wildcards are whole tokens.

use crate::error::{BusError, NameKind, Result};

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "angzarr";
/// The fixed token after the prefix.
pub const EVENTS_TOKEN: &str = "events";
/// The token after the prefix of the append markers NATS backends store
/// beside the events (`<prefix>.aggregates.<aggregate>.<aggregate key>`).
pub const AGGREGATES_TOKEN: &str = "aggregates";

/// Why `token` is not a valid single subject token, or `None` when it is.
pub fn token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        return Some("must not be empty");
    }
    for c in token.chars() {
        match c {
            '.' => return Some("must not contain '.'"),
            '*' | '>' => return Some("must not contain the wildcards '*' or '>'"),
            c if c.is_whitespace() => return Some("must not contain whitespace"),
            c if c.is_control() => return Some("must not contain control characters"),
            _ => {}
        }
    }
    None
}

/// Validates one subject token, naming it in the error.
pub fn validate_token(kind: NameKind, token: &str) -> Result<()> {
    match token_problem(token) {
        None => Ok(()),
        Some(reason) => Err(BusError::InvalidName {
            kind,
            token: token.to_owned(),
            reason,
        }),
    }
}

/// Validates a durable consumer name (one token, at most 128 bytes like
/// JetStream durable names, no path separators since stores may use it as a
/// file name).
pub fn validate_consumer_name(name: &str) -> Result<()> {
    validate_token(NameKind::ConsumerName, name)?;
    let bad = |reason| {
        Err(BusError::InvalidName {
            kind: NameKind::ConsumerName,
            token: name.to_owned(),
            reason,
        })
    };
    if name.len() > 128 {
        return bad("must be at most 128 bytes");
    }
    if name.contains(['/', '\\']) {
        return bad("must not contain '/' or '\\'");
    }
    Ok(())
}

/// The subject layout of one bus: `<prefix>.events.<aggregate>.<EventType>`.
///
/// The prefix may have several tokens (`acme.prod`); each is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectLayout {
    prefix: String,
    prefix_tokens: usize,
}

impl Default for SubjectLayout {
    fn default() -> Self {
        SubjectLayout {
            prefix: DEFAULT_PREFIX.to_owned(),
            prefix_tokens: 1,
        }
    }
}

impl SubjectLayout {
    /// A layout with the given prefix, validated token by token.
    pub fn new(prefix: &str) -> Result<Self> {
        if prefix.is_empty() {
            return Err(BusError::InvalidName {
                kind: NameKind::SubjectPrefix,
                token: String::new(),
                reason: "must not be empty",
            });
        }
        let mut count = 0;
        for token in prefix.split('.') {
            if let Some(reason) = token_problem(token) {
                return Err(BusError::InvalidName {
                    kind: NameKind::SubjectPrefix,
                    token: prefix.to_owned(),
                    reason: if token.is_empty() {
                        "must not have empty tokens (leading, trailing or double '.')"
                    } else {
                        reason
                    },
                });
            }
            count += 1;
        }
        Ok(SubjectLayout {
            prefix: prefix.to_owned(),
            prefix_tokens: count,
        })
    }

    /// The prefix, e.g. `angzarr`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject of one event, validating both names.
    pub fn event_subject(&self, aggregate_type: &str, event_type: &str) -> Result<String> {
        validate_token(NameKind::AggregateType, aggregate_type)?;
        validate_token(NameKind::EventType, event_type)?;
        let mut s = String::with_capacity(
            self.prefix.len() + EVENTS_TOKEN.len() + aggregate_type.len() + event_type.len() + 3,
        );
        s.push_str(&self.prefix);
        s.push('.');
        s.push_str(EVENTS_TOKEN);
        s.push('.');
        s.push_str(aggregate_type);
        s.push('.');
        s.push_str(event_type);
        Ok(s)
    }

    /// `<prefix>.aggregates.<aggregate>.<key>`: where NATS backends keep the
    /// append markers of one aggregate instance, `key` being
    /// [`aggregate_key`] of its id. Outside
    /// `<prefix>.events.>`, so no event filter ever matches a marker.
    pub fn marker_subject(&self, aggregate_type: &str, aggregate_id: &str) -> Result<String> {
        validate_aggregate(aggregate_type, aggregate_id)?;
        Ok(format!(
            "{}.{AGGREGATES_TOKEN}.{aggregate_type}.{}",
            self.prefix,
            aggregate_key(aggregate_id)
        ))
    }

    /// `<prefix>.aggregates.>`: every append marker (NATS backends).
    pub fn all_markers(&self) -> String {
        format!("{}.{AGGREGATES_TOKEN}.>", self.prefix)
    }

    /// `<prefix>.events.>`: every event of this bus. This is what a stream captures.
    pub fn all(&self) -> Filter {
        Filter::from_valid(format!("{}.{EVENTS_TOKEN}.>", self.prefix))
    }

    /// `<prefix>.events.<aggregate>.*`: every event of one aggregate type.
    pub fn aggregate(&self, aggregate_type: &str) -> Result<Filter> {
        validate_token(NameKind::AggregateType, aggregate_type)?;
        Ok(Filter::from_valid(format!(
            "{}.{EVENTS_TOKEN}.{aggregate_type}.*",
            self.prefix
        )))
    }

    /// `<prefix>.events.*.<EventType>`: one event type of any aggregate.
    pub fn event_type(&self, event_type: &str) -> Result<Filter> {
        validate_token(NameKind::EventType, event_type)?;
        Ok(Filter::from_valid(format!(
            "{}.{EVENTS_TOKEN}.*.{event_type}",
            self.prefix
        )))
    }

    /// Parses `filter` and checks that it lies inside `<prefix>.events.>`, the
    /// only subjects this bus ever stores (so a consumer on it can match events).
    pub fn filter(&self, filter: &str) -> Result<Filter> {
        let parsed = Filter::parse(filter)?;
        if !parsed.is_subset_of(&self.all()) {
            return Err(BusError::InvalidFilter {
                filter: filter.to_owned(),
                reason: format!("outside the bus namespace {}", self.all().as_str()),
            });
        }
        Ok(parsed)
    }

    /// Number of tokens in the prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.prefix_tokens
    }
}

/// A validated subject filter with NATS wildcard semantics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    text: String,
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Filter {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self> {
        Filter::parse(s)
    }
}

impl Filter {
    fn from_valid(text: String) -> Self {
        Filter { text }
    }

    /// Parses and validates a filter: tokens separated by `.`, none empty, no
    /// whitespace, `*` and `>` only as whole tokens, `>` only last.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| {
            Err(BusError::InvalidFilter {
                filter: text.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if text.is_empty() {
            return bad("must not be empty");
        }
        let mut tokens = text.split('.').peekable();
        while let Some(token) = tokens.next() {
            let last = tokens.peek().is_none();
            match token {
                "" => return bad("empty token (leading, trailing or double '.')"),
                "*" => {}
                ">" if last => {}
                ">" => return bad("'>' may only be the last token"),
                t if t.contains(['*', '>']) => {
                    return bad("wildcards '*' and '>' must be whole tokens");
                }
                t if t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    return bad("must not contain whitespace or control characters");
                }
                _ => {}
            }
        }
        Ok(Filter {
            text: text.to_owned(),
        })
    }

    /// The filter text, e.g. `angzarr.events.player.*`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the filter contains no wildcard.
    pub fn is_literal(&self) -> bool {
        !self.text.split('.').any(|t| t == "*" || t == ">")
    }

    /// Does this filter match the (literal) subject? NATS semantics.
    pub fn matches(&self, subject: &str) -> bool {
        let mut f = self.text.split('.');
        let mut s = subject.split('.');
        loop {
            match (f.next(), s.next()) {
                (None, None) => return true,
                (Some(">"), Some(st)) => return !st.is_empty(),
                (Some("*"), Some(st)) => {
                    if st.is_empty() {
                        return false;
                    }
                }
                (Some(ft), Some(st)) => {
                    if ft != st {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }

    /// True when every subject this filter matches is also matched by `other`.
    pub fn is_subset_of(&self, other: &Filter) -> bool {
        let mut a = self.text.split('.');
        let mut b = other.text.split('.');
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(_), Some(">")) => return true,
                (Some(">"), _) => return false,
                (Some(_), Some("*")) => {}
                (Some("*"), Some(_)) => return false,
                (Some(x), Some(y)) => {
                    if x != y {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }

    /// True when some subject matches both filters.
    pub fn overlaps(&self, other: &Filter) -> bool {
        let mut a = self.text.split('.');
        let mut b = other.text.split('.');
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
                (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
                (Some(x), Some(y)) => {
                    if x != y {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
}

// Aggregate ids as subject tokens (used by the aggregate module and by
// `SubjectLayout::marker_subject`).

/// The longest aggregate id, in bytes of its key (see [`aggregate_key`]).
pub const MAX_AGGREGATE_KEY_LEN: usize = 1024;

/// Checks an aggregate type and id as the bus's load, append and
/// snapshots take them.
pub fn validate_aggregate(aggregate_type: &str, aggregate_id: &str) -> Result<()> {
    validate_token(NameKind::AggregateType, aggregate_type)?;
    if aggregate_id.is_empty() {
        return Err(BusError::InvalidArgument(
            "the aggregate id must not be empty".to_owned(),
        ));
    }
    let len = aggregate_key(aggregate_id).len();
    if len > MAX_AGGREGATE_KEY_LEN {
        return Err(BusError::InvalidArgument(format!(
            "aggregate id is too long: its key has {len} bytes, at most {MAX_AGGREGATE_KEY_LEN}"
        )));
    }
    Ok(())
}

/// An aggregate id (or any text) as one subject token and key-value key:
/// ASCII letters, digits, `-` and `_` stay as they are; every other byte of
/// the UTF-8 text becomes `=` and two uppercase hex digits. The mapping is
/// one-to-one (`=` itself is escaped), so two ids never share a key, and
/// the usual ids (UUIDs, `p-1`) read as themselves.
///
/// ```
/// # use bus_core::subject::aggregate_key;
/// assert_eq!(aggregate_key("p-1"), "p-1");
/// assert_eq!(aggregate_key("a.b c"), "a=2Eb=20c");
/// assert_eq!(aggregate_key("x=y"), "x=3Dy");
/// ```
pub fn aggregate_key(id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(id.len());
    for &b in id.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push('=');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The id an [`aggregate_key`] was made from, or `None` when `key` is not one.
pub fn aggregate_id_from_key(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            let hex = key.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if hex.bytes().any(|c| c.is_ascii_lowercase()) {
                return None;
            }
            out.push(v);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Filter {
        Filter::parse(s).expect("valid filter")
    }

    #[test]
    fn event_subject_has_four_tokens_in_order() {
        let l = SubjectLayout::default();
        assert_eq!(
            l.event_subject("player", "PlayerRegistered").unwrap(),
            "angzarr.events.player.PlayerRegistered"
        );
    }

    #[test]
    fn bad_tokens_are_rejected_naming_the_token() {
        let l = SubjectLayout::default();
        for (agg, ev) in [
            ("", "X"),
            ("pla.yer", "X"),
            ("pla yer", "X"),
            ("play*", "X"),
            ("player", "Funds>"),
            ("player", "Funds\tDeposited"),
            ("player", ""),
        ] {
            match l.event_subject(agg, ev) {
                Err(BusError::InvalidName { token, kind, .. }) => {
                    let expected = if token_problem(agg).is_some() {
                        agg
                    } else {
                        ev
                    };
                    assert_eq!(token, expected);
                    let expected_kind = if token_problem(agg).is_some() {
                        NameKind::AggregateType
                    } else {
                        NameKind::EventType
                    };
                    assert_eq!(kind, expected_kind);
                }
                other => panic!("{agg:?}/{ev:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn error_message_names_the_bad_token() {
        let err = SubjectLayout::default()
            .event_subject("pla.yer", "X")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"pla.yer\""), "{text}");
        assert!(text.contains("aggregate type"), "{text}");
    }

    #[test]
    fn prefix_may_have_several_valid_tokens() {
        let l = SubjectLayout::new("acme.prod").unwrap();
        assert_eq!(l.event_subject("a", "B").unwrap(), "acme.prod.events.a.B");
        assert!(SubjectLayout::new("acme..prod").is_err());
        assert!(SubjectLayout::new("").is_err());
        assert!(SubjectLayout::new("acme.*").is_err());
    }

    #[test]
    fn marker_subjects_stay_outside_every_event_filter() {
        let l = SubjectLayout::default();
        let m = l.marker_subject("player", "p.1 *").unwrap();
        assert_eq!(m, "angzarr.aggregates.player.p=2E1=20=2A");
        for filter in [
            "angzarr.events.>",
            "angzarr.events.*.>",
            "angzarr.events.player.*",
        ] {
            assert!(!f(filter).matches(&m), "{filter} matches {m}");
        }
        assert!(f(&l.all_markers()).matches(&m));
        assert!(l.marker_subject("pla.yer", "p").is_err());
        assert!(l.marker_subject("player", "").is_err());
    }

    #[test]
    fn star_matches_exactly_one_token() {
        let filter = f("angzarr.events.player.*");
        assert!(filter.matches("angzarr.events.player.FundsDeposited"));
        assert!(!filter.matches("angzarr.events.hand.CardsDealt"));
        assert!(!filter.matches("angzarr.events.player"));
        assert!(!filter.matches("angzarr.events.player.X.Y"));
    }

    #[test]
    fn gt_matches_one_or_more_tokens() {
        let all = f("angzarr.events.*.>");
        assert!(all.matches("angzarr.events.player.PlayerRegistered"));
        assert!(all.matches("angzarr.events.hand.CardsDealt"));
        assert!(!all.matches("angzarr.events.player"));
        let hand = f("angzarr.events.hand.>");
        assert!(hand.matches("angzarr.events.hand.CardsDealt"));
        assert!(hand.matches("angzarr.events.hand.a.b"));
        assert!(!hand.matches("angzarr.events.hand"));
        assert!(!hand.matches("angzarr.events.player.X"));
    }

    #[test]
    fn malformed_filters_are_rejected() {
        for bad in [
            "",
            "angzarr..events",
            ".angzarr",
            "angzarr.",
            "angzarr.>.x",
            "angzarr.ev*",
            "angzarr.events.pl>",
            "angzarr events",
        ] {
            assert!(
                matches!(Filter::parse(bad), Err(BusError::InvalidFilter { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn layout_filter_rejects_filters_outside_the_namespace() {
        let l = SubjectLayout::default();
        assert!(l.filter("angzarr.events.player.*").is_ok());
        assert!(l.filter("angzarr.events.*.>").is_ok());
        assert!(l.filter("angzarr.events.>").is_ok());
        assert!(l.filter("other.events.>").is_err());
        assert!(l.filter("angzarr.>").is_err());
        assert!(l.filter("*.events.>").is_err());
    }

    #[test]
    fn subset_and_overlap_follow_nats_semantics() {
        assert!(f("a.b.c").is_subset_of(&f("a.*.c")));
        assert!(f("a.b.c").is_subset_of(&f("a.>")));
        assert!(f("a.*.>").is_subset_of(&f("a.>")));
        assert!(!f("a.>").is_subset_of(&f("a.*")));
        assert!(!f("a").is_subset_of(&f("a.>")));
        assert!(f("a.*").overlaps(&f("a.b")));
        assert!(f("a.>").overlaps(&f("*.b.c")));
        assert!(!f("a.b").overlaps(&f("a.c")));
        assert!(!f("a.b").overlaps(&f("a.b.c")));
    }

    #[test]
    fn consumer_names_are_single_safe_tokens() {
        assert!(validate_consumer_name("player-projector").is_ok());
        assert!(validate_consumer_name("a.b").is_err());
        assert!(validate_consumer_name("a/b").is_err());
        assert!(validate_consumer_name("").is_err());
        assert!(validate_consumer_name(&"x".repeat(129)).is_err());
    }
}
