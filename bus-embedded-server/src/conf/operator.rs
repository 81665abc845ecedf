//! Operator mode's keys, read as text: `operator` (a JWT, or a file
//! holding one, or a list of them), `resolver` (`MEMORY`, or a directory
//! resolver `{ type: full, dir: ... }`), `resolver_preload` (account
//! public key -> account JWT) and `system_account`. Verifying the JWTs is
//! the `jwt` module's job (called by `options`); this one only reads and
//! refuses what this server cannot do, naming the key and line.

use std::path::PathBuf;

use super::error::ConfError;
use super::server_conf::ServerConf;
use super::syntax::{Located, Value};

/// Where account JWTs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolverConf {
    /// `resolver: MEMORY`: only the `resolver_preload` accounts.
    Memory,
    /// `resolver { type: full, dir: ... }`: `<dir>/<account key>.jwt`
    /// files (read at startup), plus `resolver_preload`.
    Dir {
        /// The directory.
        dir: PathBuf,
    },
}

/// Operator mode as the file asks for it; JWTs not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorConf {
    /// The operators' JWTs (files already read).
    pub operators: Vec<String>,
    /// The resolver.
    pub resolver: ResolverConf,
    /// `resolver_preload`: account public key, JWT, line.
    pub preload: Vec<(String, String, usize)>,
    /// `system_account`.
    pub system_account: Option<String>,
}

fn invalid<T>(key: &str, v: &Located, message: impl Into<String>) -> Result<T, ConfError> {
    Err(ConfError::Invalid {
        at: v.loc(),
        key: key.to_owned(),
        message: message.into(),
    })
}

/// The JWT in a file's text: the first line that looks like one (this
/// skips nsc's `-----BEGIN ... JWT-----` armour), else the whole text.
pub fn jwt_in_text(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("eyJ") && l.split('.').count() == 3)
        .map(str::to_owned)
}

/// An `operator` entry: an inline JWT, or the path of a file holding one.
fn operator_jwt(v: &Located) -> Result<String, ConfError> {
    let Value::String(s) = &v.value else {
        return invalid("operator", v, "expected a JWT or a file path");
    };
    if s.starts_with("eyJ") {
        return Ok(s.clone());
    }
    let text = match std::fs::read_to_string(s) {
        Ok(t) => t,
        Err(e) => return invalid("operator", v, format!("error reading {s}: {e}")),
    };
    match jwt_in_text(&text) {
        Some(jwt) => Ok(jwt),
        None => invalid("operator", v, format!("no operator JWT found in {s}")),
    }
}

/// Operator mode's keys of `c`; `None` when `operator` is not set.
/// `resolver` or `resolver_preload` without `operator` is an error (they
/// would do nothing); `system_account` without it is left to `options`
/// (a warning: it is ignored outside operator mode).
pub fn operator_from_conf(c: &ServerConf) -> Result<Option<OperatorConf>, ConfError> {
    let Some(op) = &c.operator else {
        for (key, v) in [
            ("resolver", &c.resolver),
            ("resolver_preload", &c.resolver_preload),
        ] {
            if let Some(v) = v {
                return invalid(key, v, "needs `operator` (JWT authentication)");
            }
        }
        return Ok(None);
    };
    let operators = match &op.value {
        Value::Array(items) => items.iter().map(operator_jwt).collect::<Result<_, _>>()?,
        _ => vec![operator_jwt(op)?],
    };
    if operators.is_empty() {
        return invalid("operator", op, "no operator JWT given");
    }
    let resolver = match &c.resolver {
        None => {
            return invalid(
                "operator",
                op,
                "operator mode needs a `resolver` (MEMORY or { type: full, dir: ... })",
            );
        }
        Some(v) => match &v.value {
            Value::String(s) if s.eq_ignore_ascii_case("MEMORY") => ResolverConf::Memory,
            Value::String(s) => {
                return invalid(
                    "resolver",
                    v,
                    format!(
                        "{s:?} is not supported by this server (MEMORY or {{ type: full, dir: ... }}); \
                         refusing to start"
                    ),
                );
            }
            Value::Map(entries) => {
                let mut kind = None;
                let mut dir = None;
                for (k, e) in entries {
                    match k.to_ascii_lowercase().as_str() {
                        "type" => kind = e.as_str().map(str::to_ascii_lowercase),
                        "dir" => dir = e.as_str().map(PathBuf::from),
                        "allow_delete" | "interval" | "limit" | "timeout" | "ttl" => {}
                        other => {
                            return invalid(
                                &format!("resolver.{other}"),
                                e,
                                "is not supported by this server; refusing to start",
                            );
                        }
                    }
                }
                match (kind.as_deref(), dir) {
                    (Some("full"), Some(dir)) => ResolverConf::Dir { dir },
                    (Some("full"), None) => return invalid("resolver", v, "dir is required"),
                    (other, _) => {
                        return invalid(
                            "resolver",
                            v,
                            format!(
                                "type {:?} is not supported by this server (only full); refusing to start",
                                other.unwrap_or("")
                            ),
                        );
                    }
                }
            }
            _ => return invalid("resolver", v, "expected MEMORY or a map"),
        },
    };
    let mut preload = Vec::new();
    if let Some(v) = &c.resolver_preload
        && let Value::Map(entries) = &v.value
    {
        for (k, e) in entries {
            let Some(jwt) = e.as_str() else {
                return invalid("resolver_preload", e, "expected an account JWT");
            };
            preload.push((k.clone(), jwt.to_owned(), e.line));
        }
    }
    let system_account = c
        .system_account
        .as_ref()
        .and_then(Located::as_str)
        .map(str::to_owned);
    Ok(Some(OperatorConf {
        operators,
        resolver,
        preload,
        system_account,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::server_conf;
    use crate::conf::syntax::tests::p;

    fn op(text: &str) -> Result<Option<OperatorConf>, String> {
        let (c, _) = server_conf(&p(text)).map_err(|e| e.to_string())?;
        operator_from_conf(&c).map_err(|e| e.to_string())
    }

    #[test]
    fn memory_and_full_resolvers_are_read_and_others_refused() {
        let got = op("operator: eyJa.b.c\nresolver: MEMORY\nresolver_preload: { AK: eyJx.y.z }\nsystem_account: AS\n")
            .expect("ok")
            .expect("operator mode");
        assert_eq!(got.operators, ["eyJa.b.c"]);
        assert_eq!(got.resolver, ResolverConf::Memory);
        assert_eq!(got.preload, [("AK".to_owned(), "eyJx.y.z".to_owned(), 3)]);
        assert_eq!(got.system_account.as_deref(), Some("AS"));
        let got = op("operator: eyJa.b.c\nresolver { type: full, dir: /tmp/x }\n")
            .expect("ok")
            .expect("operator mode");
        assert_eq!(
            got.resolver,
            ResolverConf::Dir {
                dir: "/tmp/x".into()
            }
        );
        let e = op("operator: eyJa.b.c\nresolver: URL(http://x)\n").expect_err("refused");
        assert!(
            e.contains("resolver") && e.contains("refusing to start"),
            "{e}"
        );
        let e = op("operator: eyJa.b.c\nresolver { type: cache, dir: /x }\n").expect_err("refused");
        assert!(
            e.contains("resolver") && e.contains("refusing to start"),
            "{e}"
        );
        let e = op("operator: /no/such/op.jwt\nresolver: MEMORY\n").expect_err("refused");
        assert!(e.contains("operator: error reading /no/such/op.jwt"), "{e}");
        let e = op("port: 1\nresolver: MEMORY\n").expect_err("refused");
        assert!(e.contains("resolver: needs `operator`"), "{e}");
        let e = op("operator: eyJa.b.c\n").expect_err("refused");
        assert!(e.contains("needs a `resolver`"), "{e}");
        assert_eq!(op("port: 1\n").expect("ok"), None);
    }

    #[test]
    fn an_armoured_operator_file_yields_its_jwt() {
        let text = "-----BEGIN NATS OPERATOR JWT-----\neyJh.eyJi.c2ln\n------END NATS OPERATOR JWT------\n";
        assert_eq!(jwt_in_text(text).as_deref(), Some("eyJh.eyJi.c2ln"));
        assert_eq!(jwt_in_text("nothing here"), None);
    }
}
