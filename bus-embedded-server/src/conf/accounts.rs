//! The `accounts { NAME: { users, jetstream, exports, imports, mappings } }` block,
//! as nats-server reads it, into [`AccountConfig`]s; and [`merge_users`],
//! which adds the accounts' users to the server's authentication. Keys
//! this server cannot enforce refuse the start. Every error names the line
//! (and the key, where there is one).

use std::time::Duration;

use super::authorization::{authorization_from_conf, duration};
use super::error::BlockError;
use super::mappings::mappings_from_conf;
use super::syntax::{Located, Value};
use crate::config::{
    AccountConfig, AccountJetStreamLimits, Auth, Export, ExportKind, GLOBAL_ACCOUNT, Identity,
    Import, Login, ResponseType,
};
use crate::subject;

fn type_name(v: &Located) -> &'static str {
    v.value.type_name()
}

fn invalid(line: usize, key: &str, message: impl Into<String>) -> BlockError {
    BlockError::invalid(line, key, message)
}

/// Reads the `accounts { NAME: { users, jetstream, exports, imports } }`
/// block. Errors name the line and key.
pub fn accounts_from_conf(block: &Located) -> Result<Vec<AccountConfig>, BlockError> {
    let entries = block.as_map().ok_or_else(|| {
        invalid(
            block.line,
            "",
            format!("expected a map of accounts, got {}", type_name(block)),
        )
    })?;
    let mut accounts = Vec::new();
    for (name, body) in entries {
        if name == GLOBAL_ACCOUNT || name.is_empty() || name.contains([' ', '.', '*', '>']) {
            return Err(invalid(
                body.line,
                "",
                format!("invalid account name \"{name}\""),
            ));
        }
        let map = body.as_map().ok_or_else(|| {
            invalid(
                body.line,
                name,
                format!("Expected map entries for accounts, got {}", type_name(body)),
            )
        })?;
        let mut account = AccountConfig {
            name: name.clone(),
            users: Vec::new(),
            jetstream: false,
            jetstream_limits: AccountJetStreamLimits::default(),
            exports: Vec::new(),
            imports: Vec::new(),
            mappings: Vec::new(),
        };
        for (key, value) in map {
            match key.to_ascii_lowercase().as_str() {
                "users" => account.users = users(name, value)?,
                "jetstream" => {
                    (account.jetstream, account.jetstream_limits) = jetstream(name, value)?;
                }
                "exports" => {
                    for item in list("exports", value)? {
                        account.exports.push(export(item)?);
                    }
                }
                "imports" => {
                    for item in list("imports", value)? {
                        account.imports.push(import(item)?);
                    }
                }
                "mappings" | "maps" => account.mappings = mappings_from_conf(value)?,
                // Keys nats-server knows that this server does not build.
                "nkey" | "default_permissions" | "limits" | "msg_trace" | "trace_dest" => {
                    return Err(BlockError::Unsupported {
                        line: value.line,
                        context: format!("{name}: "),
                        key: key.clone(),
                    });
                }
                _ if value.used_as_variable => {}
                // nats-server refuses keys it does not know (`no_auth_user`
                // among them: it is a top-level option only).
                _ => {
                    return Err(invalid(
                        value.line,
                        name,
                        format!("unknown field \"{key}\""),
                    ));
                }
            }
        }
        accounts.push(account);
    }
    check(&accounts)?;
    Ok(accounts)
}

fn list<'a>(key: &str, v: &'a Located) -> Result<&'a [Located], BlockError> {
    v.as_array().ok_or_else(|| {
        invalid(
            v.line,
            key,
            format!("expected an array, got {}", type_name(v)),
        )
    })
}

/// The `users` of an account, read as `authorization { users }` reads them.
fn users(account: &str, v: &Located) -> Result<Vec<Identity>, BlockError> {
    let block = Located::new(Value::Map(vec![("users".to_owned(), v.clone())]), v.line);
    let (auth, _) = authorization_from_conf(&block)?;
    let mut ids = match auth {
        None | Some(Auth::Token(_) | Auth::Operator(_)) => Vec::new(),
        Some(Auth::Users(users)) => users
            .into_iter()
            .map(|u| Identity {
                login: Login::Password(u),
                permissions: None,
                account: None,
            })
            .collect(),
        Some(Auth::Identities(ids)) => ids,
    };
    for id in &mut ids {
        id.account = Some(account.to_owned());
    }
    Ok(ids)
}

/// An account's `jetstream`: `enabled`/`disabled`, a bool, or a map of
/// limits (nats-server's keys and aliases; an unknown key refuses the
/// start, as a limit it would silently not enforce).
fn jetstream(account: &str, v: &Located) -> Result<(bool, AccountJetStreamLimits), BlockError> {
    let unlimited = AccountJetStreamLimits::default();
    match &v.value {
        Value::Bool(b) => Ok((*b, unlimited)),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "enabled" | "enable" | "true" => Ok((true, unlimited)),
            "disabled" | "disable" | "false" => Ok((false, unlimited)),
            _ => Err(invalid(
                v.line,
                "jetstream",
                format!("Expected 'enabled' or 'disabled' for string value, got '{s}'"),
            )),
        },
        Value::Map(entries) => {
            let mut limits = unlimited;
            for (key, value) in entries {
                let size = || match value.value {
                    Value::Integer(i) => Ok(i),
                    _ => Err(invalid(
                        value.line,
                        key,
                        format!(
                            "Expected a parseable size for \"{key}\", got {}",
                            type_name(value)
                        ),
                    )),
                };
                match key.to_ascii_lowercase().as_str() {
                    "max_memory" | "max_mem" | "mem" | "memory" => limits.max_memory = size()?,
                    "max_store" | "max_file" | "max_disk" | "store" | "disk" => {
                        limits.max_store = size()?;
                    }
                    "max_streams" | "streams" => limits.max_streams = size()?,
                    "max_consumers" | "consumers" => limits.max_consumers = size()?,
                    "max_ack_pending" => limits.max_ack_pending = size()?,
                    "mem_max_stream_bytes" | "memory_max_stream_bytes" => {
                        limits.memory_max_stream_bytes = size()?;
                    }
                    "disk_max_stream_bytes" | "store_max_stream_bytes" => {
                        limits.store_max_stream_bytes = size()?;
                    }
                    "max_bytes_required" | "max_stream_bytes" | "max_bytes" => {
                        limits.max_bytes_required = match value.value {
                            Value::Bool(b) => b,
                            _ => {
                                return Err(invalid(
                                    value.line,
                                    key,
                                    format!(
                                        "Expected a parseable bool for \"{key}\", got {}",
                                        type_name(value)
                                    ),
                                ));
                            }
                        };
                    }
                    _ => {
                        return Err(BlockError::Unsupported {
                            line: value.line,
                            context: format!("{account}: jetstream: "),
                            key: key.clone(),
                        });
                    }
                }
            }
            Ok((true, limits))
        }
        _ => Err(invalid(
            v.line,
            "jetstream",
            format!(
                "Expected map, bool or string to define JetStream, got {}",
                type_name(v)
            ),
        )),
    }
}

fn subject_of(key: &str, v: &Located) -> Result<String, BlockError> {
    let s = v.as_str().ok_or_else(|| {
        invalid(
            v.line,
            key,
            format!("Expected {key} name to be string, got {}", type_name(v)),
        )
    })?;
    if !subject::valid_filter(s) {
        return Err(invalid(v.line, key, format!("invalid subject \"{s}\"")));
    }
    Ok(s.to_owned())
}

fn export(item: &Located) -> Result<Export, BlockError> {
    let map = item.as_map().ok_or_else(|| {
        invalid(
            item.line,
            "exports",
            format!(
                "expected a map such as {{stream: \"a.>\"}}, got {}",
                type_name(item)
            ),
        )
    })?;
    let mut kind_subject = None;
    let mut accounts = None;
    let mut response_type = ResponseType::Singleton;
    let mut response_threshold = Duration::from_secs(120);
    for (key, value) in map {
        match key.to_ascii_lowercase().as_str() {
            "stream" => kind_subject = Some((ExportKind::Stream, subject_of("stream", value)?)),
            "service" => kind_subject = Some((ExportKind::Service, subject_of("service", value)?)),
            "accounts" => {
                let names = list("accounts", value)?
                    .iter()
                    .map(|n| {
                        n.as_str().map(str::to_owned).ok_or_else(|| {
                            invalid(
                                n.line,
                                "",
                                format!("expected account names, got {}", type_name(n)),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                accounts = Some(names);
            }
            "response" | "response_type" => {
                response_type = match value.as_str().map(str::to_ascii_lowercase).as_deref() {
                    Some("singleton") => ResponseType::Singleton,
                    Some("stream") => ResponseType::Stream,
                    Some("chunked") => ResponseType::Chunked,
                    _ => {
                        return Err(invalid(
                            value.line,
                            key,
                            format!(
                                "Unknown response type: {}",
                                value.as_str().unwrap_or(type_name(value))
                            ),
                        ));
                    }
                }
            }
            "threshold" | "response_threshold" | "response_thresh" => {
                response_threshold = duration(key, value)?;
            }
            // Message tracing across accounts stops at the import (what
            // nats-server does without it); going on is not built.
            "allow_trace" if value.as_bool() == Some(false) => {}
            "allow_trace" => {
                return Err(BlockError::Unsupported {
                    line: value.line,
                    context: "exports: ".to_owned(),
                    key: key.clone(),
                });
            }
            _ => {
                return Err(invalid(
                    value.line,
                    "exports",
                    format!("unknown field \"{key}\""),
                ));
            }
        }
    }
    let (kind, subject) = kind_subject.ok_or_else(|| {
        invalid(
            item.line,
            "exports",
            "an export needs `stream` or `service`",
        )
    })?;
    Ok(Export {
        kind,
        subject,
        accounts,
        response_type,
        response_threshold,
    })
}

fn import(item: &Located) -> Result<Import, BlockError> {
    let map = item.as_map().ok_or_else(|| {
        invalid(
            item.line,
            "imports",
            format!(
                "expected a map such as {{stream: {{account: B, subject: \"b.>\"}}}}, got {}",
                type_name(item)
            ),
        )
    })?;
    let mut source = None;
    let mut to = None;
    let mut prefix = None;
    for (key, value) in map {
        match key.to_ascii_lowercase().as_str() {
            k @ ("stream" | "service") => {
                let kind = if k == "stream" {
                    ExportKind::Stream
                } else {
                    ExportKind::Service
                };
                let inner = value.as_map().ok_or_else(|| {
                    invalid(
                        value.line,
                        key,
                        format!(
                            "expected a map such as {{account: B, subject: \"b.>\"}}, got {}",
                            type_name(value)
                        ),
                    )
                })?;
                let mut account = None;
                let mut imported = None;
                for (k2, v2) in inner {
                    match k2.to_ascii_lowercase().as_str() {
                        "account" => {
                            account = Some(v2.as_str().map(str::to_owned).ok_or_else(|| {
                                invalid(
                                    v2.line,
                                    "account",
                                    format!("expected an account name, got {}", type_name(v2)),
                                )
                            })?);
                        }
                        "subject" => imported = Some(subject_of("subject", v2)?),
                        _ => {
                            return Err(invalid(v2.line, key, format!("unknown field \"{k2}\"")));
                        }
                    }
                }
                let (Some(account), Some(imported)) = (account, imported) else {
                    return Err(invalid(
                        value.line,
                        key,
                        "an import needs `account` and `subject`",
                    ));
                };
                source = Some((kind, account, imported, value.line));
            }
            "to" | "local_subject" => to = Some(subject_of(key, value)?),
            // As for exports: tracing stops at the import.
            "allow_trace" if value.as_bool() == Some(false) => {}
            "allow_trace" => {
                return Err(BlockError::Unsupported {
                    line: value.line,
                    context: "imports: ".to_owned(),
                    key: key.clone(),
                });
            }
            "prefix" => {
                let p = value.as_str().ok_or_else(|| {
                    invalid(
                        value.line,
                        "prefix",
                        format!("expected a string, got {}", type_name(value)),
                    )
                })?;
                if !subject::valid_literal(p) {
                    return Err(invalid(
                        value.line,
                        "prefix",
                        format!("invalid prefix \"{p}\""),
                    ));
                }
                prefix = Some(p.to_owned());
            }
            _ => {
                return Err(invalid(
                    value.line,
                    "imports",
                    format!("unknown field \"{key}\""),
                ));
            }
        }
    }
    let (kind, account, imported, line) = source.ok_or_else(|| {
        invalid(
            item.line,
            "imports",
            "an import needs `stream` or `service`",
        )
    })?;
    if prefix.is_some() && to.is_some() {
        return Err(invalid(
            line,
            "",
            "Stream import can not have a 'prefix' and a 'to' property",
        ));
    }
    if kind == ExportKind::Service && prefix.is_some() {
        return Err(invalid(line, "prefix", "only stream imports take a prefix"));
    }
    if let Some(to) = &to
        && !subject::wildcards(to).eq(subject::wildcards(&imported))
    {
        return Err(invalid(
            line,
            "to",
            format!("\"{to}\" must use the same wildcards as \"{imported}\""),
        ));
    }
    Ok(Import {
        kind,
        account,
        subject: imported,
        to,
        prefix,
    })
}

/// Cross-checks imports against the exporters' exports.
fn check(accounts: &[AccountConfig]) -> Result<(), BlockError> {
    for a in accounts {
        for i in &a.imports {
            let Some(exporter) = accounts.iter().find(|e| e.name == i.account) else {
                return Err(BlockError::UnknownAccount {
                    account: a.name.clone(),
                    exporter: i.account.clone(),
                    kind: i.kind,
                });
            };
            let allowed = exporter.exports.iter().any(|e| {
                e.kind == i.kind
                    && subject::covers(&e.subject, &i.subject)
                    && e.accounts
                        .as_ref()
                        .is_none_or(|names| names.contains(&a.name))
            });
            if !allowed {
                return Err(BlockError::ImportNotAuthorized {
                    account: a.name.clone(),
                    subject: i.subject.clone(),
                    kind: i.kind,
                });
            }
        }
    }
    Ok(())
}

/// Adds the accounts' users to the server's `auth` (from `authorization
/// {}`), as identities naming their account. A user name or nkey defined
/// twice is refused, as nats-server does.
pub fn merge_users(
    auth: Option<Auth>,
    accounts: &[AccountConfig],
) -> Result<Option<Auth>, BlockError> {
    let users: Vec<Identity> = accounts.iter().flat_map(|a| a.users.clone()).collect();
    if users.is_empty() {
        return Ok(auth);
    }
    let mut ids = match auth {
        None => Vec::new(),
        Some(Auth::Users(users)) => users
            .into_iter()
            .map(|u| Identity {
                login: Login::Password(u),
                permissions: None,
                account: None,
            })
            .collect(),
        Some(Auth::Identities(ids)) => ids,
        Some(Auth::Token(_)) => {
            return Err(BlockError::Conflict(
                "users in accounts cannot be combined with an authorization token",
            ));
        }
        Some(Auth::Operator(_)) => {
            return Err(BlockError::Conflict(
                "users in accounts cannot be combined with operator mode",
            ));
        }
    };
    for user in users {
        let duplicate = ids.iter().any(|i| match (&i.login, &user.login) {
            (Login::Password(a), Login::Password(b)) => a.name == b.name,
            (Login::Nkey(a), Login::Nkey(b)) => a == b,
            _ => false,
        });
        if duplicate {
            let name = match &user.login {
                Login::Password(u) => u.name.clone(),
                Login::Nkey(k) => k.clone(),
            };
            return Err(BlockError::Duplicate {
                line: None,
                kind: "user",
                name,
            });
        }
        ids.push(user);
    }
    Ok(Some(Auth::Identities(ids)))
}
