//! The `authorization {}` block, as nats-server reads it: `token`, or
//! `user`/`password` and/or a `users` list of `{user, password}` and
//! `{nkey}` entries with `permissions` (else `default_permissions`), and
//! `timeout`; into [`Auth`]. Keys this server cannot enforce refuse the
//! start, never ignored. Every error names the line (and the key, where
//! there is one).

use std::time::Duration;

use super::error::{BlockError, ConfError};
use super::syntax::{Located, Value, as_duration};
use crate::auth::valid_user_nkey;
use crate::config::{
    Auth, Identity, Login, Permissions, ResponsePermission, SubjectPermission, User,
};
use crate::subject;

/// A duration in a block, with the block's error: the line and `key`.
pub(super) fn duration(key: &str, value: &Located) -> Result<Duration, BlockError> {
    as_duration(value).map_err(|e| match e {
        ConfError::Invalid { message, .. } => BlockError::invalid(value.line, key, message),
        other => BlockError::invalid(value.line, key, other.to_string()),
    })
}

/// The user names and nkeys of the block's `users` list (not the single
/// `user`/`password` pair): the users nats-server lets `no_auth_user` name.
pub fn listed_users(block: &Located) -> Vec<String> {
    let Some(items) = block.get("users").and_then(Located::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            item.get("user")
                .or_else(|| item.get("nkey"))
                .and_then(Located::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// Reads an `authorization { ... }` block: `token`, or `user`/`password`
/// and/or a `users` list of `{user, password}` and `{nkey}` entries, each
/// with optional `permissions` (else the block's `default_permissions`), and
/// `timeout`. Returns the auth (None when the block sets no credentials) and
/// the timeout. Errors name the line; keys this server cannot enforce are
/// refused, never ignored.
pub fn authorization_from_conf(
    block: &Located,
) -> Result<(Option<Auth>, Option<Duration>), BlockError> {
    let text = |key: &str| block.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    // Anything we cannot enforce must stop the start: running with less
    // protection than configured is never right.
    let refuse = |entry: &Located, allowed: &[&str], at: &str| -> Result<(), BlockError> {
        for (key, value) in entry.as_map().unwrap_or_default() {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(key)) {
                return Err(BlockError::Unsupported {
                    line: value.line,
                    context: at.to_owned(),
                    key: key.clone(),
                });
            }
        }
        Ok(())
    };
    refuse(
        block,
        &[
            "token",
            "user",
            "password",
            "pass",
            "users",
            "timeout",
            "permissions",
            "default_permissions",
        ],
        "",
    )?;
    let timeout = match block.get("timeout") {
        Some(t) => Some(duration("timeout", t)?),
        None => None,
    };
    let defaults = match block.get("default_permissions") {
        Some(p) => Some(permissions_from_conf(p)?),
        None => None,
    };
    let token = text("token");
    let user = text("user");
    let password = text("password").or_else(|| text("pass"));
    let mut identities = Vec::new();
    let mut any_permissions = defaults.is_some();
    if let Some(list) = block.get("users") {
        let items = list.as_array().ok_or_else(|| {
            BlockError::invalid(
                list.line,
                "",
                format!("users must be an array, got {}", list.value.type_name()),
            )
        })?;
        for item in items {
            if item.as_map().is_none() {
                return Err(BlockError::invalid(
                    item.line,
                    "users",
                    format!(
                        "expected a map such as {{user: a, password: b}}, got {}",
                        item.value.type_name()
                    ),
                ));
            }
            refuse(
                item,
                &["user", "password", "pass", "nkey", "permissions"],
                "users: ",
            )?;
            let permissions = match item.get("permissions") {
                Some(p) => {
                    any_permissions = true;
                    Some(permissions_from_conf(p)?)
                }
                None => defaults.clone(),
            };
            let login = if let Some(nkey) = item.get("nkey") {
                if item.get("user").is_some()
                    || item.get("password").is_some()
                    || item.get("pass").is_some()
                {
                    return Err(BlockError::invalid(
                        item.line,
                        "",
                        "Nkey users do not take usernames or passwords",
                    ));
                }
                let key = nkey
                    .as_str()
                    .filter(|k| valid_user_nkey(k))
                    .ok_or_else(|| {
                        BlockError::invalid(nkey.line, "nkey", "Not a valid public nkey for a user")
                    })?;
                let duplicate = identities
                    .iter()
                    .any(|i: &Identity| matches!(&i.login, Login::Nkey(k) if k == key));
                if duplicate {
                    return Err(BlockError::Duplicate {
                        line: Some(nkey.line),
                        kind: "nkey",
                        name: key.to_owned(),
                    });
                }
                Login::Nkey(key.to_owned())
            } else {
                let name = item.get("user").and_then(|v| v.as_str()).ok_or_else(|| {
                    BlockError::invalid(item.line, "", "a user needs `user` or `nkey`")
                })?;
                let pass = item
                    .get("password")
                    .or_else(|| item.get("pass"))
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| {
                        BlockError::invalid(item.line, "", format!("user {name} needs `password`"))
                    })?;
                Login::Password(User {
                    name: name.to_owned(),
                    password: pass.to_owned(),
                })
            };
            identities.push(Identity {
                login,
                permissions,
                account: None,
            });
        }
    }
    match (&user, &password) {
        (Some(u), Some(p)) => {
            let permissions = match block.get("permissions") {
                Some(perms) => {
                    any_permissions = true;
                    Some(permissions_from_conf(perms)?)
                }
                None => defaults.clone(),
            };
            identities.push(Identity {
                login: Login::Password(User {
                    name: u.clone(),
                    password: p.clone(),
                }),
                permissions,
                account: None,
            });
        }
        (None, None) => {
            if let Some(p) = block.get("permissions") {
                return Err(BlockError::invalid(
                    p.line,
                    "",
                    "permissions here need user and password (or go in a users entry)",
                ));
            }
        }
        _ => return Err(BlockError::Conflict("user and password go together")),
    }
    let nkeys = identities.iter().any(|i| matches!(i.login, Login::Nkey(_)));
    let auth = match (token, identities.is_empty()) {
        (Some(_), false) => {
            return Err(BlockError::Conflict(
                "use either a token or users, not both",
            ));
        }
        (Some(t), true) => Some(Auth::Token(t)),
        (None, false) if !nkeys && !any_permissions => Some(Auth::Users(
            identities
                .into_iter()
                .filter_map(|i| match i.login {
                    Login::Password(u) => Some(u),
                    Login::Nkey(_) => None,
                })
                .collect(),
        )),
        (None, false) => Some(Auth::Identities(identities)),
        (None, true) => None,
    };
    Ok((auth, timeout))
}

/// Reads a `permissions { publish, subscribe, allow_responses }` map.
pub fn permissions_from_conf(v: &Located) -> Result<Permissions, BlockError> {
    let Value::Map(entries) = &v.value else {
        return Err(BlockError::invalid(
            v.line,
            "",
            format!(
                "Expected permissions to be a map/struct, got {}",
                v.value.type_name()
            ),
        ));
    };
    let mut p = Permissions::default();
    for (key, value) in entries {
        match key.to_ascii_lowercase().as_str() {
            "publish" | "pub" => p.publish = Some(subject_permission(key, value)?),
            "subscribe" | "sub" => p.subscribe = Some(subject_permission(key, value)?),
            "allow_responses" | "publish_allow_responses" => {
                p.allow_responses = response_permission(key, value)?;
            }
            _ => {
                return Err(BlockError::invalid(
                    value.line,
                    "",
                    format!("Unknown field \"{key}\" parsing permissions"),
                ));
            }
        }
    }
    Ok(p)
}

/// `"subj"`, `["a", "b"]` (an allow list) or `{allow: .., deny: ..}`.
fn subject_permission(key: &str, v: &Located) -> Result<SubjectPermission, BlockError> {
    match &v.value {
        Value::Map(entries) => {
            let mut p = SubjectPermission::default();
            for (k, value) in entries {
                match k.to_ascii_lowercase().as_str() {
                    "allow" => p.allow = Some(subjects(k, value)?),
                    "deny" => p.deny = Some(subjects(k, value)?),
                    _ => {
                        return Err(BlockError::invalid(
                            value.line,
                            key,
                            format!(
                                "Unknown field name \"{k}\" parsing subject permissions, only 'allow' or 'deny' are permitted"
                            ),
                        ));
                    }
                }
            }
            Ok(p)
        }
        _ => Ok(SubjectPermission {
            allow: Some(subjects(key, v)?),
            deny: None,
        }),
    }
}

fn subjects(key: &str, v: &Located) -> Result<Vec<String>, BlockError> {
    let one = |item: &Located| -> Result<String, BlockError> {
        let Some(s) = item.as_str() else {
            return Err(BlockError::invalid(
                item.line,
                key,
                format!(
                    "Expected subject permissions to be a subject, or array of subjects, got {}",
                    item.value.type_name()
                ),
            ));
        };
        let valid = match s.split_once(' ') {
            Some((subject, queue)) => {
                subject::valid_filter(subject)
                    && !queue.trim().is_empty()
                    && !queue.trim().contains(' ')
            }
            None => subject::valid_filter(s),
        };
        if !valid {
            return Err(BlockError::invalid(
                item.line,
                key,
                format!("subject \"{s}\" is not a valid subject"),
            ));
        }
        Ok(s.to_owned())
    };
    match &v.value {
        Value::Array(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(v)?]),
    }
}

/// `true` / `false` or `{max: N, expires: "1m"}`.
fn response_permission(key: &str, v: &Located) -> Result<Option<ResponsePermission>, BlockError> {
    match &v.value {
        Value::Bool(true) => Ok(Some(ResponsePermission::default())),
        Value::Bool(false) => Ok(None),
        Value::Map(entries) => {
            let mut r = ResponsePermission::default();
            for (k, value) in entries {
                match k.to_ascii_lowercase().as_str() {
                    "max" | "max_msgs" | "max_messages" | "max_responses" => {
                        r.max = value
                            .as_i64()
                            .and_then(|n| usize::try_from(n).ok())
                            .ok_or_else(|| {
                                BlockError::invalid(
                                    value.line,
                                    &format!("{key}: {k}"),
                                    format!(
                                        "expected a non-negative integer, got {}",
                                        value.value.type_name()
                                    ),
                                )
                            })?;
                    }
                    "expires" | "ttl" => {
                        r.expires = duration(k, value).map_err(|e| match e {
                            BlockError::Invalid { line, message, .. } => BlockError::Invalid {
                                line,
                                key: key.to_owned(),
                                message: format!("error parsing {k}: {message}"),
                            },
                            other => other,
                        })?;
                    }
                    _ => {
                        return Err(BlockError::invalid(
                            value.line,
                            key,
                            format!("Unknown field \"{k}\" parsing response permissions"),
                        ));
                    }
                }
            }
            Ok(Some(r))
        }
        other => Err(BlockError::invalid(
            v.line,
            key,
            format!(
                "error parsing response permissions, expected a boolean or a map, got {}",
                other.type_name()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str) -> Result<(Option<Auth>, Option<Duration>), String> {
        let root =
            crate::conf::parse(text, std::path::Path::new("test.conf"), &|_| None).expect("parses");
        authorization_from_conf(root.get("authorization").expect("block"))
            .map_err(|e| e.to_string())
    }

    const NKEY: &str = "UCI2RKP4HOQDGOEJCOF2UEPQBRNSIZNBENTP6UCIYX3NFTUTYZX2APGJ";

    #[test]
    fn users_nkeys_and_permissions_are_read() {
        let (a, timeout) = auth(&format!(
            "authorization {{\n timeout: 3\n default_permissions: {{ publish: \"def.>\", subscribe: [\"def.>\"] }}\n users: [\n  {{ nkey: {NKEY} }}\n  {{ user: a, password: b, permissions: {{ publish: {{ allow: [\"foo.>\"], deny: \"foo.x\" }}, sub: \"q grp\", allow_responses: {{ max: 3, expires: \"1m\" }} }} }}\n ]\n}}"
        ))
        .expect("valid");
        assert_eq!(timeout, Some(Duration::from_secs(3)));
        let Some(Auth::Identities(ids)) = a else {
            panic!("identities expected: {a:?}");
        };
        assert_eq!(ids[0].login, Login::Nkey(NKEY.into()));
        let defaults = ids[0].permissions.as_ref().expect("defaults apply");
        assert_eq!(
            defaults.publish.as_ref().and_then(|p| p.allow.clone()),
            Some(vec!["def.>".to_owned()])
        );
        let p = ids[1].permissions.as_ref().expect("own permissions");
        assert_eq!(
            p.publish,
            Some(SubjectPermission {
                allow: Some(vec!["foo.>".into()]),
                deny: Some(vec!["foo.x".into()])
            })
        );
        assert_eq!(
            p.subscribe.as_ref().and_then(|s| s.allow.clone()),
            Some(vec!["q grp".to_owned()])
        );
        assert_eq!(
            p.allow_responses,
            Some(ResponsePermission {
                max: 3,
                expires: Duration::from_secs(60)
            })
        );
    }

    #[test]
    fn single_user_with_permissions_and_plain_users_stay_plain() {
        let (a, _) =
            auth("authorization {\n user: a\n password: b\n permissions: { publish: x }\n}")
                .expect("valid");
        assert!(matches!(a, Some(Auth::Identities(ref ids)) if ids[0].permissions.is_some()));
        let (a, _) = auth("authorization {\n users: [ {user: a, password: b} ]\n}").expect("valid");
        assert!(matches!(a, Some(Auth::Users(ref u)) if u[0].name == "a"));
        let (a, _) =
            auth("authorization {\n allow_responses: true\n users: []\n}").unwrap_or_default();
        assert!(a.is_none());
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let err = |t: &str| auth(t).expect_err("invalid");
        assert_eq!(
            err("authorization {\n users: [\n  {nkey: UBAD}\n ]\n}"),
            "line 3: nkey: Not a valid public nkey for a user"
        );
        assert_eq!(
            err(&format!(
                "authorization {{\n users: [\n  {{user: a, nkey: {NKEY}}}\n ]\n}}"
            )),
            "line 3: Nkey users do not take usernames or passwords"
        );
        assert_eq!(
            err(&format!(
                "authorization {{\n users: [\n  {{nkey: {NKEY}}}\n  {{nkey: {NKEY}}}\n ]\n}}"
            )),
            format!("line 4: Duplicate nkey \"{NKEY}\" detected")
        );
        assert_eq!(
            err(
                "authorization {\n users: [\n  {user: a, password: b, permissions: {\n   publish: 1\n  }}\n ]\n}"
            ),
            "line 4: publish: Expected subject permissions to be a subject, or array of subjects, got integer"
        );
        assert_eq!(
            err(
                "authorization {\n users: [\n  {user: a, password: b, permissions: {\n   publsh: x\n  }}\n ]\n}"
            ),
            "line 4: Unknown field \"publsh\" parsing permissions"
        );
        assert_eq!(
            err(
                "authorization {\n users: [\n  {user: a, password: b, permissions: {\n   subscribe: {allw: x}\n  }}\n ]\n}"
            ),
            "line 4: subscribe: Unknown field name \"allw\" parsing subject permissions, only 'allow' or 'deny' are permitted"
        );
        assert_eq!(
            err(
                "authorization {\n users: [\n  {user: a, password: b, permissions: {\n   publish: \"foo..bar\"\n  }}\n ]\n}"
            ),
            "line 4: publish: subject \"foo..bar\" is not a valid subject"
        );
        assert_eq!(
            err(
                "authorization {\n users: [\n  {user: a, password: b, permissions: {\n   allow_responses: \"x\"\n  }}\n ]\n}"
            ),
            "line 4: allow_responses: error parsing response permissions, expected a boolean or a map, got string"
        );
        assert_eq!(
            err(
                "authorization {\n users: [\n  {user: a, password: b, permissions: {\n   allow_responses: {max: \"x\"}\n  }}\n ]\n}"
            ),
            "line 4: allow_responses: max: expected a non-negative integer, got string"
        );
        assert!(
            err("authorization {\n users: [\n  {user: a, password: b, permissions: {\n   allow_responses: {expires: \"zz\"}\n  }}\n ]\n}")
                .starts_with("line 4: allow_responses: error parsing expires:")
        );
        assert_eq!(
            err("authorization {\n default_permissions: 3\n users: [ {user: a, password: b} ]\n}"),
            "line 2: Expected permissions to be a map/struct, got integer"
        );
        assert_eq!(
            err("authorization {\n users: [\n  {user: a, password: b, account: A}\n ]\n}"),
            "line 3: users: account is not supported yet by this server; refusing to start"
        );
        assert_eq!(
            err("authorization {\n token: t\n auth_callout {\n  issuer: x\n }\n}"),
            "line 3: auth_callout is not supported yet by this server; refusing to start"
        );
        assert_eq!(
            err(&format!(
                "authorization {{\n token: t\n users: [ {{nkey: {NKEY}}} ]\n}}"
            )),
            "use either a token or users, not both"
        );
    }
}
