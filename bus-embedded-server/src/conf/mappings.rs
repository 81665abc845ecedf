//! `mappings {}` (top level, for `$G`, or inside an account) as nats-server
//! reads it: `"src": "dest"`, `"src": {destination: "dest", weight: 50%}`
//! or `"src": [{destination, weight}, ...]`, into [`SubjectMapping`]s.
//! Every mapping is checked (by `mapping`) as nats-server checks it when
//! it adds it, so a bad one stops the start naming its line and subject.
//! Cluster-scoped destinations (`cluster:`) are refused: this server has no
//! cluster to scope them to.

use super::error::BlockError;
use super::syntax::{Located, Value};
use crate::config::{MapDestination, SubjectMapping};
use crate::{mapping, subject};

fn invalid(line: usize, message: impl Into<String>) -> BlockError {
    BlockError::invalid(line, "mappings", message)
}

/// Reads a `mappings` block. A source given twice keeps its last entry.
pub fn mappings_from_conf(block: &Located) -> Result<Vec<SubjectMapping>, BlockError> {
    let entries = block.as_map().ok_or_else(|| {
        invalid(
            block.line,
            format!(
                "expected a map of subject mappings, got {}",
                block.value.type_name()
            ),
        )
    })?;
    let mut out: Vec<SubjectMapping> = Vec::new();
    for (source, value) in entries {
        if !subject::valid_filter(source) {
            return Err(invalid(
                value.line,
                format!("Subject \"{source}\" is not a valid subject"),
            ));
        }
        let (destinations, to) = match &value.value {
            Value::String(dest) => (
                vec![MapDestination {
                    subject: dest.clone(),
                    weight: 100,
                }],
                Some(dest.clone()),
            ),
            Value::Array(items) => (
                items
                    .iter()
                    .map(destination)
                    .collect::<Result<Vec<_>, _>>()?,
                None,
            ),
            _ => (vec![destination(value)?], None),
        };
        let m = SubjectMapping {
            source: source.clone(),
            destinations,
        };
        mapping::check(&m).map_err(|error| BlockError::Mapping {
            line: value.line,
            subject: source.clone(),
            to,
            error,
        })?;
        out.retain(|o| o.source != m.source);
        out.push(m);
    }
    Ok(out)
}

/// `{destination: "d", weight: 50%}`.
fn destination(item: &Located) -> Result<MapDestination, BlockError> {
    let map = item
        .as_map()
        .ok_or_else(|| invalid(item.line, "Expected an entry for the mapping destination"))?;
    let mut subject = None;
    let mut weight = None;
    for (key, v) in map {
        match key.to_ascii_lowercase().as_str() {
            "dest" | "destination" => {
                subject = Some(v.as_str().map(str::to_owned).ok_or_else(|| {
                    invalid(
                        v.line,
                        format!(
                            "expected a subject for \"{key}\", got {}",
                            v.value.type_name()
                        ),
                    )
                })?);
            }
            "weight" => {
                let w = match &v.value {
                    Value::String(s) => {
                        let digits = s.strip_suffix('%').unwrap_or(s);
                        digits.parse::<i64>().map_err(|_| {
                            invalid(
                                v.line,
                                format!("Invalid weight \"{digits}\" for mapping destination"),
                            )
                        })?
                    }
                    Value::Integer(i) => *i,
                    other => {
                        return Err(invalid(
                            v.line,
                            format!("Unknown entry type for weight of {}", other.type_name()),
                        ));
                    }
                };
                let w = u8::try_from(w).ok().filter(|w| *w <= 100).ok_or_else(|| {
                    invalid(
                        v.line,
                        format!("Invalid weight {w} for mapping destination"),
                    )
                })?;
                weight = Some(w);
            }
            "cluster" => {
                return Err(BlockError::Unsupported {
                    line: v.line,
                    context: "mappings: ".to_owned(),
                    key: key.clone(),
                });
            }
            _ => {
                return Err(invalid(
                    v.line,
                    format!("Unknown field \"{key}\" for mapping destination"),
                ));
            }
        }
    }
    let subject =
        subject.ok_or_else(|| invalid(item.line, "a mapping destination needs `destination`"))?;
    let weight = weight.ok_or_else(|| {
        invalid(
            item.line,
            format!("Missing weight for mapping destination \"{subject}\""),
        )
    })?;
    Ok(MapDestination { subject, weight })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::syntax::tests::p;

    fn read(text: &str) -> Result<Vec<SubjectMapping>, String> {
        let root = p(text);
        let block = root.get("mappings").expect("mappings");
        mappings_from_conf(block).map_err(|e| e.to_string())
    }

    #[test]
    fn the_three_forms_are_read() {
        let m = read(
            "mappings {\n  a: b\n  \"c.*\": {destination: \"d.$1\", weight: 100%}\n  e: [\n    {destination: f, weight: 40}\n    {dest: g, weight: \"60%\"}\n  ]\n}\n",
        )
        .expect("valid");
        assert_eq!(m[0], SubjectMapping::new("a", "b"));
        assert_eq!(m[1], SubjectMapping::new("c.*", "d.$1"));
        assert_eq!(
            m[2].destinations,
            [
                MapDestination {
                    subject: "f".into(),
                    weight: 40
                },
                MapDestination {
                    subject: "g".into(),
                    weight: 60
                }
            ]
        );
    }

    #[test]
    fn bad_mappings_are_named_as_nats_server_names_them() {
        assert_eq!(
            read("mappings {\n  a: \"b.*\"\n}").expect_err("refused"),
            "line 2: mappings: Error adding mapping for \"a\" to \"b.*\" : invalid subject"
        );
        assert_eq!(
            read("mappings {\n  \"a..b\": b\n}").expect_err("refused"),
            "line 2: mappings: Subject \"a..b\" is not a valid subject"
        );
        assert_eq!(
            read("mappings {\n  \"a.*\": [{destination: \"b.$1\", weight: 60%}, {destination: \"c.$1\", weight: 50%}]\n}").expect_err("refused"),
            "line 2: mappings: Error adding mapping for \"a.*\" : total weight needs to be <= 100"
        );
        assert_eq!(
            read("mappings {\n  \"a.*\": {destination: \"b.$1\"}\n}").expect_err("refused"),
            "line 2: mappings: Missing weight for mapping destination \"b.$1\""
        );
        assert_eq!(
            read("mappings {\n  \"a.*\": 5\n}").expect_err("refused"),
            "line 2: mappings: Expected an entry for the mapping destination"
        );
        assert_eq!(
            read("mappings {\n  a: {destination: b, weight: 101}\n}").expect_err("refused"),
            "line 2: mappings: Invalid weight 101 for mapping destination"
        );
        assert_eq!(
            read("mappings {\n  a: {destination: b, weight: 100, cluster: east}\n}")
                .expect_err("refused"),
            "line 2: mappings: cluster is not supported yet by this server; refusing to start"
        );
    }
}
