//! MQTT topic names and filters to NATS subjects and back, with the rules
//! nats-server 2.15.1 uses, so that an MQTT client and a NATS client see
//! each other's messages on the same names:
//!
//! - the level separator `/` becomes `.`;
//! - an empty level (a leading `/`, `//`, a trailing `/`) becomes a level
//!   holding `/` (`/a` → `/.a`, `a//b` → `a./.b`, `a/` → `a./`);
//! - a `.` inside a level becomes `//` (NATS uses `.` as its separator);
//! - the wildcards `+` and `#` become `*` and `>` (filters only);
//! - white space and DEL are refused.
//!
//! Pure functions: no I/O, no server state.

use std::fmt;

/// Why a topic or filter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// Empty topic or filter.
    Empty,
    /// White space or DEL (they cannot travel in a NATS subject).
    UnsupportedCharacter,
    /// `+` or `#` in a PUBLISH topic name.
    WildcardInTopicName,
    /// `#` not alone in the last level, or `+` not alone in its level.
    MisplacedWildcard,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicError::Empty => "empty topic",
            TopicError::UnsupportedCharacter => "unsupported character in topic",
            TopicError::WildcardInTopicName => "wildcards not allowed in publish's topic",
            TopicError::MisplacedWildcard => "wildcard must occupy a whole level",
        })
    }
}

impl std::error::Error for TopicError {}

/// A PUBLISH topic name as a NATS subject.
pub fn topic_to_subject(topic: &str) -> Result<String, TopicError> {
    convert(topic, false)
}

/// A SUBSCRIBE topic filter as a NATS subject (with `*` / `>`).
pub fn filter_to_subject(filter: &str) -> Result<String, TopicError> {
    convert(filter, true)
}

fn convert(mqtt: &str, wildcards_ok: bool) -> Result<String, TopicError> {
    if mqtt.is_empty() {
        return Err(TopicError::Empty);
    }
    let levels: Vec<&str> = mqtt.split('/').collect();
    let last = levels.len() - 1;
    let mut out = String::with_capacity(mqtt.len() + 8);
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if level.is_empty() {
            out.push('/');
            continue;
        }
        if level.contains(['+', '#']) {
            if !wildcards_ok {
                return Err(TopicError::WildcardInTopicName);
            }
            match *level {
                "+" => out.push('*'),
                "#" if i == last => out.push('>'),
                _ => return Err(TopicError::MisplacedWildcard),
            }
            continue;
        }
        for c in level.chars() {
            match c {
                ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x7f' => {
                    return Err(TopicError::UnsupportedCharacter);
                }
                '.' => out.push_str("//"),
                c => out.push(c),
            }
        }
    }
    Ok(out)
}

/// A NATS subject as the MQTT topic a subscriber receives (the reverse of
/// [`topic_to_subject`]: `/.` and `./` mark empty levels, `//` is a `.`).
pub fn subject_to_topic(subject: &str) -> String {
    let b = subject.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' => match b.get(i + 1) {
                Some(b'.') => {
                    out.push(b'/');
                    i += 1;
                }
                Some(b'/') => {
                    out.push(b'.');
                    i += 1;
                }
                // A lone `/` is the marker of an empty level: nothing.
                _ => {}
            },
            b'.' => out.push(b'/'),
            c => out.push(c),
        }
        i += 1;
    }
    // Only ASCII bytes were dropped or replaced, so UTF-8 stays valid.
    String::from_utf8(out).unwrap_or_default()
}

/// The subject a `#` filter also needs: MQTT's `a/#` matches `a` itself,
/// NATS's `a.>` does not, so `a` is subscribed as well (as nats-server
/// does). `None` for filters that need nothing more.
pub fn level_up_subject(subject: &str) -> Option<&str> {
    subject
        .strip_suffix(".>")
        .filter(|parent| !parent.is_empty())
}

/// MQTT-4.7.2-1: a filter that starts with a wildcard does not match topics
/// that start with `$`.
pub fn wildcard_skips(filter_subject: &str, subject: &str) -> bool {
    (filter_subject.starts_with('*') || filter_subject.starts_with('>')) && subject.starts_with('$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_levels_become_subject_tokens() {
        assert_eq!(topic_to_subject("foo").unwrap(), "foo");
        assert_eq!(topic_to_subject("foo/bar").unwrap(), "foo.bar");
        assert_eq!(topic_to_subject("a/b/c").unwrap(), "a.b.c");
    }

    #[test]
    fn empty_levels_are_marked_with_a_slash() {
        assert_eq!(topic_to_subject("/foo").unwrap(), "/.foo");
        assert_eq!(topic_to_subject("foo/").unwrap(), "foo./");
        assert_eq!(topic_to_subject("foo//bar").unwrap(), "foo./.bar");
        assert_eq!(topic_to_subject("/").unwrap(), "/./");
        assert_eq!(topic_to_subject("//").unwrap(), "/././");
        assert_eq!(topic_to_subject("/foo/").unwrap(), "/.foo./");
    }

    #[test]
    fn dots_become_double_slashes() {
        assert_eq!(topic_to_subject("foo.bar").unwrap(), "foo//bar");
        assert_eq!(topic_to_subject("a/b.c/d").unwrap(), "a.b//c.d");
        assert_eq!(topic_to_subject(".").unwrap(), "//");
    }

    #[test]
    fn wildcards_map_in_filters_only() {
        assert_eq!(filter_to_subject("foo/+/bar").unwrap(), "foo.*.bar");
        assert_eq!(filter_to_subject("foo/#").unwrap(), "foo.>");
        assert_eq!(filter_to_subject("#").unwrap(), ">");
        assert_eq!(filter_to_subject("+").unwrap(), "*");
        assert_eq!(filter_to_subject("/+").unwrap(), "/.*");
        assert_eq!(
            topic_to_subject("foo/+"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(
            topic_to_subject("foo/#"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(
            filter_to_subject("foo/#/bar"),
            Err(TopicError::MisplacedWildcard)
        );
        assert_eq!(
            filter_to_subject("foo+"),
            Err(TopicError::MisplacedWildcard)
        );
    }

    #[test]
    fn white_space_and_empty_are_refused() {
        for bad in ["foo bar", "a\tb", "a\nb", "a\rb", "a\x7fb"] {
            assert_eq!(
                topic_to_subject(bad),
                Err(TopicError::UnsupportedCharacter),
                "{bad:?}"
            );
        }
        assert_eq!(topic_to_subject(""), Err(TopicError::Empty));
    }

    #[test]
    fn subjects_come_back_as_the_same_topics() {
        for topic in [
            "foo", "foo/bar", "/foo", "foo/", "foo//bar", "/", "//", "a.b", "a/b.c/d", "/a.b/",
            "x//.//y",
        ] {
            let subject = topic_to_subject(topic).unwrap();
            assert_eq!(subject_to_topic(&subject), topic, "via {subject}");
        }
    }

    #[test]
    fn nats_subjects_read_as_topics() {
        assert_eq!(subject_to_topic("foo.bar.baz"), "foo/bar/baz");
        assert_eq!(subject_to_topic("foo"), "foo");
        assert_eq!(subject_to_topic("héllo.wörld"), "héllo/wörld");
    }

    #[test]
    fn hash_filters_also_match_the_parent_level() {
        assert_eq!(level_up_subject("foo.>"), Some("foo"));
        assert_eq!(level_up_subject("a.b.>"), Some("a.b"));
        assert_eq!(level_up_subject(">"), None);
        assert_eq!(level_up_subject("foo.*"), None);
    }

    #[test]
    fn leading_wildcards_skip_dollar_topics() {
        assert!(wildcard_skips(">", "$SYS.x"));
        assert!(wildcard_skips("*.x", "$a.x"));
        assert!(!wildcard_skips("$SYS.>", "$SYS.x"));
        assert!(!wildcard_skips(">", "a.b"));
    }
}
