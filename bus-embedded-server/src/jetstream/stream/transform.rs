//! A stream's own subject transforms, as nats-server 2.15.1 applies them:
//! `subject_transform` (the subject a message is stored under is rewritten
//! on ingest) and `republish` (once stored, a copy of the message goes to a
//! subject built from its stored subject, with `Nats-Stream`,
//! `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp` and
//! `Nats-Last-Sequence` headers; with `headers_only`, `Nats-Msg-Size` and
//! no payload).
//!
//! This module owns checking those two options and building subjects and
//! header blocks; it uses the crate's `mapping` transforms and must not
//! store, route or lock anything: the stream does that with what it returns.
//! A stream with neither option has no [`Transforms`] at all, so its
//! publish path pays one `Option` check.

use crate::jetstream::errors::ApiError;
use crate::jetstream::types::{StreamConfig, rfc3339};
use crate::mapping::{Rng, Transform};
use crate::subject;

/// The transform (and republish) of one stream, compiled.
#[derive(Debug)]
pub(crate) struct Transforms {
    ingest: Option<Matcher>,
    republish: Option<(Matcher, bool)>,
    rng: Rng,
}

/// A transform with the subjects it applies to.
#[derive(Debug)]
struct Matcher {
    /// `None`: every subject.
    src: Option<String>,
    /// `None`: the subject is kept as it is.
    transform: Option<Transform>,
}

impl Matcher {
    /// As nats-server's `NewSubjectTransform`: an empty destination means
    /// no transform; an empty source means `>`.
    fn new(src: &str, dest: &str) -> Result<Option<Matcher>, crate::mapping::MappingError> {
        if dest.is_empty() {
            return Ok(None);
        }
        let src = if src.is_empty() { ">" } else { src };
        let identity = src == ">" && dest == ">";
        let transform = if identity {
            None
        } else {
            Some(Transform::new(src, dest)?)
        };
        Ok(Some(Matcher {
            src: (src != ">").then(|| src.to_owned()),
            transform,
        }))
    }

    /// The new subject for `subject`, or `None` when the source does not
    /// match it. `Some(None)`: matched, kept as it is.
    fn apply(&self, subject: &str, rng: &Rng) -> Option<Option<String>> {
        if let Some(src) = &self.src
            && !subject::matches(src, subject)
        {
            return None;
        }
        Some(self.transform.as_ref().map(|t| t.apply(subject, rng)))
    }
}

/// The stream configuration checks of both options (on a configuration
/// `StreamConfig::normalize` has seen), nats-server's texts in its order.
pub(crate) fn check_config(cfg: &StreamConfig) -> Result<(), ApiError> {
    if let Some(st) = &cfg.subject_transform {
        if !st.src.is_empty() && !subject::valid_filter(&st.src) {
            return Err(ApiError::transform_invalid_source(format!(
                "invalid subject {}",
                st.src
            )));
        }
        if !st.dest.is_empty() {
            let src = if st.src.is_empty() { ">" } else { &st.src };
            Transform::new(src, &st.dest)
                .map_err(|e| ApiError::transform_invalid_destination(e.to_string()))?;
        }
    }
    if let Some(rp) = &cfg.republish {
        let (src, dest) = (&rp.src, &rp.dest);
        if !dest.is_empty() && cfg.subjects.iter().any(|s| subject::overlaps(dest, s)) {
            return Err(ApiError::invalid_config(
                "stream configuration for republish destination forms a cycle",
            ));
        }
        if Matcher::new(src, dest).is_err() {
            return Err(ApiError::invalid_config(format!(
                "stream configuration for republish with transform from '{src}' to '{dest}' not valid"
            )));
        }
    }
    Ok(())
}

/// Compiles a (checked) configuration; `None` when it uses neither option
/// (or neither does anything).
pub(crate) fn compile(cfg: &StreamConfig) -> Option<Box<Transforms>> {
    let ingest = cfg
        .subject_transform
        .as_ref()
        .and_then(|st| Matcher::new(&st.src, &st.dest).ok().flatten());
    let republish = cfg.republish.as_ref().and_then(|rp| {
        Matcher::new(&rp.src, &rp.dest)
            .ok()
            .flatten()
            .map(|m| (m, rp.headers_only))
    });
    if ingest.is_none() && republish.is_none() {
        return None;
    }
    Some(Box::new(Transforms {
        ingest,
        republish,
        rng: Rng::new(),
    }))
}

/// A republished copy, ready to route.
#[derive(Debug)]
pub(crate) struct Republished {
    pub subject: String,
    pub hdr: Vec<u8>,
    pub data: Vec<u8>,
}

impl Transforms {
    /// The subject a message published on `subject` is stored under, when
    /// the transform changes it.
    pub(crate) fn ingest(&self, subject: &str) -> Option<String> {
        self.ingest.as_ref()?.apply(subject, &self.rng).flatten()
    }

    /// Where a message stored under `subject` is republished, if it is
    /// (a destination that is not a valid publish subject stops it, as in
    /// nats-server).
    pub(crate) fn republish_to(&self, subject: &str) -> Option<String> {
        let (m, _) = self.republish.as_ref()?;
        let to = m
            .apply(subject, &self.rng)?
            .unwrap_or_else(|| subject.to_owned());
        subject::valid_literal(&to).then_some(to)
    }

    /// The copy of a stored message for `to`: the stored header lines
    /// first, then the republish headers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn republished(
        &self,
        to: String,
        stream: &str,
        subject: &str,
        seq: u64,
        ts: i64,
        last_seq: u64,
        hdr: &[u8],
        data: &[u8],
    ) -> Republished {
        let headers_only = self.republish.as_ref().is_some_and(|(_, h)| *h);
        let mut out = Vec::with_capacity(hdr.len() + 160 + stream.len() + subject.len());
        match hdr.strip_suffix(b"\r\n\r\n") {
            Some(lines) if !hdr.is_empty() => {
                out.extend_from_slice(lines);
                out.extend_from_slice(b"\r\n");
            }
            _ => out.extend_from_slice(b"NATS/1.0\r\n"),
        }
        let mut line = |k: &str, v: &str| {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        line("Nats-Stream", stream);
        line("Nats-Subject", subject);
        line("Nats-Sequence", &seq.to_string());
        line("Nats-Time-Stamp", &go_rfc3339_nano(ts));
        line("Nats-Last-Sequence", &last_seq.to_string());
        if headers_only {
            line("Nats-Msg-Size", &data.len().to_string());
        }
        out.extend_from_slice(b"\r\n");
        Republished {
            subject: to,
            hdr: out,
            data: if headers_only {
                Vec::new()
            } else {
                data.to_vec()
            },
        }
    }
}

/// A time as Go's `RFC3339Nano` prints it (trailing zeros of the
/// fraction dropped), which nats-server uses for `Nats-Time-Stamp`.
fn go_rfc3339_nano(ts: i64) -> String {
    let full = rfc3339(ts);
    match full.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::types::{RePublish, SubjectTransformConfig};

    fn cfg(subjects: &[&str]) -> StreamConfig {
        StreamConfig {
            name: "S".into(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            ..StreamConfig::default()
        }
    }

    #[test]
    fn a_stream_without_either_option_compiles_to_nothing() {
        assert!(compile(&cfg(&["a.>"])).is_none());
    }

    #[test]
    fn the_ingest_transform_rewrites_matching_subjects_only() {
        let mut c = cfg(&["a.>"]);
        c.subject_transform = Some(SubjectTransformConfig {
            src: "a.*.*".into(),
            dest: "b.{{wildcard(2)}}.$1".into(),
        });
        let t = compile(&c).expect("compiled");
        assert_eq!(t.ingest("a.x.y").as_deref(), Some("b.y.x"));
        assert_eq!(t.ingest("a.x"), None);
    }

    #[test]
    fn republish_headers_follow_the_stored_ones_and_headers_only_drops_the_payload() {
        let mut c = cfg(&["a.>"]);
        c.republish = Some(RePublish {
            src: "a.*".into(),
            dest: "r.$1".into(),
            headers_only: true,
        });
        let t = compile(&c).expect("compiled");
        assert_eq!(t.republish_to("a.x").as_deref(), Some("r.x"));
        assert_eq!(t.republish_to("a.x.y"), None);
        let r = t.republished(
            "r.x".into(),
            "S",
            "a.x",
            7,
            1,
            3,
            b"NATS/1.0\r\nK: v\r\n\r\n",
            b"hello",
        );
        let text = String::from_utf8(r.hdr).expect("utf8");
        assert!(
            text.starts_with(
                "NATS/1.0\r\nK: v\r\nNats-Stream: S\r\nNats-Subject: a.x\r\nNats-Sequence: 7\r\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("Nats-Last-Sequence: 3\r\nNats-Msg-Size: 5\r\n\r\n"),
            "{text}"
        );
        assert!(r.data.is_empty());
    }

    #[test]
    fn time_stamps_drop_trailing_zeros_as_go_prints_them() {
        assert_eq!(go_rfc3339_nano(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(go_rfc3339_nano(2_000_000_000), "1970-01-01T00:00:02Z");
        assert_eq!(
            go_rfc3339_nano(1_000_000_123),
            "1970-01-01T00:00:01.000000123Z"
        );
    }

    #[test]
    fn a_republish_into_the_streams_own_subjects_is_a_cycle() {
        let mut c = cfg(&["a.>"]);
        c.republish = Some(RePublish {
            src: ">".into(),
            dest: "a.x.>".into(),
            headers_only: false,
        });
        let e = check_config(&c).expect_err("cycle");
        assert_eq!(e.err_code, 10052);
        assert_eq!(
            e.description,
            "stream configuration for republish destination forms a cycle"
        );
    }
}
