//! Checks of a stream's `mirror` and `sources` (nats-server 2.15.1's
//! errors, in its order) and what they compile to: each source's index
//! name (how a stored `Nats-Stream-Source` header is matched to its source
//! after a restart) and its filters with their transforms.

use std::sync::Arc;

use crate::jetstream::errors::ApiError;
use crate::jetstream::store::SubjectFilter;
use crate::jetstream::types::{StreamConfig, StreamSource};
use crate::mapping::Transform;
use crate::subject;

/// nats-server's prefix of its own API (an external prefix may not
/// overlap it).
const API_PREFIX: &str = "$JS.API";

/// A stream (or consumer) name nats-server accepts as an asset name.
fn valid_asset_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(['.', '*', '>', '/', '\\'])
        && !name.chars().any(char::is_whitespace)
}

/// True when every subject matching `a` also matches `b`.
pub(crate) fn subset_match(a: &str, b: &str) -> bool {
    let (mut ta, mut tb) = (a.split('.'), b.split('.'));
    loop {
        match (ta.next(), tb.next()) {
            (None, None) => return true,
            (_, Some(">")) => return true,
            (Some(x), Some("*")) if x != ">" => {}
            (Some(x), Some(y)) if x == y && x != "*" && x != ">" => {}
            _ => return false,
        }
    }
}

/// Checks `cfg`'s mirror and sources. `lookup` gives the configuration of
/// another stream of the account (for the cycle check).
pub(crate) fn check(
    cfg: &StreamConfig,
    lookup: &dyn Fn(&str) -> Option<Arc<StreamConfig>>,
) -> Result<(), ApiError> {
    let mut api_prefixes: Vec<&str> = Vec::new();
    let mut deliver_prefixes: Vec<&str> = Vec::new();
    if let Some(m) = &cfg.mirror {
        if cfg.first_seq > 0 {
            return Err(ApiError::mirror_with_first_seq());
        }
        if !cfg.subjects.is_empty() {
            return Err(ApiError::mirror_with_subjects());
        }
        if cfg.sources.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::mirror_with_sources());
        }
        if cfg.allow_msg_counter {
            return Err(ApiError::mirror_with_counters());
        }
        if cfg.allow_atomic {
            return Err(ApiError::mirror_with_atomic());
        }
        if cfg.allow_msg_schedules {
            return Err(ApiError::mirror_with_schedules());
        }
        if !m.filter_subject.is_empty() && !m.subject_transforms.is_empty() {
            return Err(ApiError::mirror_multiple_filters());
        }
        if cfg.subject_delete_marker_ttl > 0 {
            return Err(ApiError::invalid_config(
                "subject delete markers forbidden on mirrors",
            ));
        }
        for (i, tr) in m.subject_transforms.iter().enumerate() {
            if !tr.src.is_empty() && !subject::valid_filter(&tr.src) {
                return Err(ApiError::mirror_invalid_filter(&tr.src));
            }
            check_mapping(&tr.src, &tr.dest).map_err(ApiError::mirror_invalid_transform)?;
            for (j, other) in m.subject_transforms.iter().enumerate() {
                if i != j && subject::overlaps(or_all(&tr.src), or_all(&other.src)) {
                    return Err(ApiError::mirror_overlapping_filters());
                }
            }
        }
        match &m.external {
            None => {
                if !valid_asset_name(&m.name) {
                    return Err(ApiError::mirror_invalid_name());
                }
                if let Some(origin) = lookup(&m.name)
                    && cfg.max_msg_size > 0
                    && origin.max_msg_size > 0
                    && cfg.max_msg_size < origin.max_msg_size
                {
                    return Err(ApiError::mirror_max_msg_size());
                }
            }
            Some(ext) => {
                if !ext.deliver.is_empty() {
                    deliver_prefixes.push(&ext.deliver);
                }
                if !ext.api.is_empty() {
                    api_prefixes.push(&ext.api);
                }
            }
        }
    } else if cfg.mirror_direct {
        return Err(ApiError::invalid_config(
            "stream has no mirror but does have mirror direct",
        ));
    }
    let sources = cfg.sources.as_deref().unwrap_or_default();
    if !sources.is_empty() && cfg.allow_msg_schedules {
        return Err(ApiError::source_with_schedules());
    }
    let mut inames = std::collections::HashSet::new();
    for src in sources {
        if !valid_asset_name(&src.name) {
            return Err(ApiError::source_invalid_name());
        }
        if !inames.insert(index_name(src)) {
            return Err(ApiError::source_duplicate());
        }
        if !src.filter_subject.is_empty() && !src.subject_transforms.is_empty() {
            return Err(ApiError::source_multiple_filters());
        }
        for tr in &src.subject_transforms {
            if !tr.src.is_empty() && !subject::valid_filter(&tr.src) {
                return Err(ApiError::source_invalid_filter(&tr.src));
            }
            check_mapping(&tr.src, &tr.dest).map_err(ApiError::source_invalid_transform)?;
        }
        for (i, tr) in src.subject_transforms.iter().enumerate() {
            for (j, other) in src.subject_transforms.iter().enumerate() {
                if i != j && subset_match(or_all(&tr.src), or_all(&other.src)) {
                    return Err(ApiError::source_overlapping_filters());
                }
            }
        }
        match &src.external {
            None => {
                if let Some(origin) = lookup(&src.name)
                    && cfg.max_msg_size > 0
                    && origin.max_msg_size > 0
                    && cfg.max_msg_size < origin.max_msg_size
                {
                    return Err(ApiError::source_max_msg_size());
                }
            }
            Some(ext) => {
                if !ext.deliver.is_empty() {
                    deliver_prefixes.push(&ext.deliver);
                }
                if !ext.api.is_empty() {
                    api_prefixes.push(&ext.api);
                }
            }
        }
    }
    for pfx in deliver_prefixes {
        if subject::has_wildcards(pfx) || !subject::valid_filter(pfx) {
            return Err(ApiError::external_deliver_invalid(pfx));
        }
    }
    for pfx in api_prefixes {
        if subject::has_wildcards(pfx) || !subject::valid_filter(pfx) {
            return Err(ApiError::invalid_config(format!(
                "stream external api prefix {pfx:?} must be a valid subject without wildcards"
            )));
        }
        if subject::overlaps(pfx, API_PREFIX) {
            return Err(ApiError::external_api_overlap(pfx));
        }
    }
    check_cycles(cfg, lookup)
}

/// A stream that (through its mirror and sources, within the account)
/// ends up reading itself is refused, as nats-server does: a mirror chain
/// back to a visited stream, or a source whose filter meets the subjects of
/// the stream it was reached from.
fn check_cycles(
    cfg: &StreamConfig,
    lookup: &dyn Fn(&str) -> Option<Arc<StreamConfig>>,
) -> Result<(), ApiError> {
    let mut to_visit: std::collections::VecDeque<Arc<StreamConfig>> =
        std::collections::VecDeque::from([Arc::new(cfg.clone())]);
    let mut visited = std::collections::HashSet::new();
    let mut steps = 0usize;
    while let Some(c) = to_visit.pop_front() {
        steps += 1;
        if steps > 10_000 {
            break;
        }
        visited.insert(c.name.clone());
        for src in c.sources.as_deref().unwrap_or_default() {
            if src.external.is_some() {
                continue;
            }
            if visited.contains(&src.name) {
                let overlaps = src.filter_subject.is_empty()
                    || c.subjects
                        .iter()
                        .any(|s| subject::overlaps(s, &src.filter_subject));
                if overlaps {
                    return Err(ApiError::invalid_config("detected cycle"));
                }
            } else if let Some(o) = lookup(&src.name) {
                to_visit.push_back(o);
            }
        }
        if let Some(m) = &c.mirror
            && m.external.is_none()
        {
            if visited.contains(&m.name) {
                return Err(ApiError::invalid_config("detected cycle"));
            }
            if let Some(o) = lookup(&m.name) {
                to_visit.push_back(o);
            }
        }
    }
    Ok(())
}

/// The filter and transform checks nats-server makes when it creates the
/// stream (10049), after the configuration checks.
pub(crate) fn check_at_create(cfg: &StreamConfig) -> Result<(), ApiError> {
    if let Some(m) = &cfg.mirror {
        if m.subject_transforms.is_empty() {
            if !m.filter_subject.is_empty() && !subject::valid_filter(&m.filter_subject) {
                return Err(ApiError::stream_create(format!(
                    "subject filter '{}' for the mirror invalid subject",
                    m.filter_subject
                )));
            }
        } else {
            for st in &m.subject_transforms {
                if !st.src.is_empty() && !subject::valid_filter(&st.src) {
                    return Err(ApiError::stream_create(format!(
                        "invalid subject transform source '{}' for the mirror: invalid subject",
                        st.src
                    )));
                }
            }
        }
    }
    for src in cfg.sources.as_deref().unwrap_or_default() {
        if src.subject_transforms.is_empty() {
            if !src.filter_subject.is_empty() && !subject::valid_filter(&src.filter_subject) {
                return Err(ApiError::stream_create(format!(
                    "subject filter '{}' for the source: invalid subject",
                    src.filter_subject
                )));
            }
        } else {
            for st in &src.subject_transforms {
                if !st.src.is_empty() && !subject::valid_filter(&st.src) {
                    return Err(ApiError::stream_create(format!(
                        "subject filter '{}' for the source: invalid subject",
                        st.src
                    )));
                }
            }
        }
    }
    Ok(())
}

fn or_all(filter: &str) -> &str {
    if filter.is_empty() { ">" } else { filter }
}

/// A transform's destination checked against its source (an empty
/// destination keeps subjects unchanged).
fn check_mapping(src: &str, dest: &str) -> Result<(), crate::mapping::MappingError> {
    if dest.is_empty() {
        return Ok(());
    }
    Transform::new(or_all(src), dest).map(|_| ())
}

/// nats-server's index name of a source: its stream name (and hashed
/// external API prefix), its filters and its destinations, space
/// separated (filters and destinations joined by form feeds).
pub(crate) fn index_name(src: &StreamSource) -> String {
    let mut name = src.name.clone();
    if let Some(ext) = &src.external {
        name.push(':');
        name.push_str(&short_hash(&ext.api));
    }
    let (filters, dests) = if src.subject_transforms.is_empty() {
        (or_all(&src.filter_subject).to_owned(), ">".to_owned())
    } else {
        let f: Vec<&str> = src
            .subject_transforms
            .iter()
            .map(|t| or_all(&t.src))
            .collect();
        let d: Vec<&str> = src
            .subject_transforms
            .iter()
            .map(|t| or_all(&t.dest))
            .collect();
        (f.join("\u{c}"), d.join("\u{c}"))
    };
    format!("{name} {filters} {dests}")
}

/// nats-server's short hash (8 characters of a base-62 digest of
/// SHA-256): names a hashed API prefix and a stream's identity.
pub(crate) fn short_hash(text: &str) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| DIGITS[usize::from(*b) % DIGITS.len()] as char)
        .collect()
}

/// A stream's identity as nats-server stamps it on sourced messages: the
/// short hash of its creation time (RFC 3339, Go's trimmed nanoseconds).
pub(crate) fn identity(created: i64) -> String {
    let full = crate::jetstream::types::rfc3339(created);
    // humantime writes nine fraction digits; Go trims trailing zeros.
    let trimmed = match full.strip_suffix('Z').and_then(|s| s.split_once('.')) {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => full,
    };
    short_hash(&trimmed)
}

/// One filter of a mirror or source with the transform of its subjects.
#[derive(Debug)]
pub(crate) struct Filter {
    /// The filter (`>`: all).
    pub src: String,
    /// Its transform, none when subjects stay as they are.
    pub transform: Option<Transform>,
}

/// What a mirror or source reads and how it renames it.
#[derive(Debug)]
pub(crate) struct Compiled {
    /// The origin messages it takes.
    pub filter: SubjectFilter,
    /// Transforms, tried in order (the first whose filter matches).
    pub filters: Vec<Filter>,
}

impl Compiled {
    /// Compiles a checked mirror or source configuration.
    pub fn new(src: &StreamSource) -> Compiled {
        if src.subject_transforms.is_empty() {
            return Compiled {
                filter: SubjectFilter::from_filters([&src.filter_subject]),
                filters: Vec::new(),
            };
        }
        let filters: Vec<Filter> = src
            .subject_transforms
            .iter()
            .map(|t| Filter {
                src: or_all(&t.src).to_owned(),
                transform: if t.dest.is_empty() {
                    None
                } else {
                    Transform::new(or_all(&t.src), &t.dest).ok()
                },
            })
            .collect();
        Compiled {
            filter: SubjectFilter::from_filters(filters.iter().map(|f| f.src.as_str())),
            filters,
        }
    }

    /// The subject an origin message is stored under.
    pub fn subject(&self, subject: &str, rng: &crate::mapping::Rng) -> Option<String> {
        for f in &self.filters {
            if subject::matches(&f.src, subject) {
                return f.transform.as_ref().map(|t| t.apply(subject, rng));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::types::SubjectTransformConfig;

    #[test]
    fn subset_match_is_one_way() {
        assert!(subset_match("o.a", "o.>"));
        assert!(subset_match("o.*", "o.>"));
        assert!(!subset_match("o.>", "o.a"));
        assert!(subset_match("o.a", "o.*"));
        assert!(!subset_match("o.*", "o.a"));
        assert!(!subset_match("p.a", "o.>"));
    }

    #[test]
    fn index_names_are_nats_servers() {
        let mut s = StreamSource {
            name: "O".into(),
            ..Default::default()
        };
        assert_eq!(index_name(&s), "O > >");
        s.filter_subject = "o.a".into();
        assert_eq!(index_name(&s), "O o.a >");
        s.filter_subject.clear();
        s.subject_transforms = vec![
            SubjectTransformConfig {
                src: "o.b".into(),
                dest: "t.b".into(),
            },
            SubjectTransformConfig {
                src: "o.c".into(),
                dest: String::new(),
            },
        ];
        assert_eq!(index_name(&s), "O o.b\u{c}o.c t.b\u{c}>");
    }

    #[test]
    fn identity_trims_the_fraction_as_go_does() {
        // Go: time.Unix(0, 1_500_000_000).UTC().Format(RFC3339Nano) is
        // "1970-01-01T00:00:01.5Z".
        assert_eq!(
            identity(1_500_000_000),
            short_hash("1970-01-01T00:00:01.5Z")
        );
        assert_eq!(identity(2_000_000_000), short_hash("1970-01-01T00:00:02Z"));
        assert_eq!(short_hash("x").len(), 8);
        // nats-server 2.15.1 wrote `Nats-Stream-Source: O:O98GVIHL 1 > > o.x
        // ...` for a source with external API prefix `$JS.orig.API`.
        assert_eq!(short_hash("$JS.orig.API"), "O98GVIHL");
    }
}
