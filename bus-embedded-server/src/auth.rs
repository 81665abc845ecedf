//! Authorization beyond a shared secret, as nats-server does it: nkey users
//! (an ed25519 signature over the nonce the server put in INFO) and
//! per-user publish/subscribe permissions, plus the `authorization {}`
//! configuration block that declares them.
//!
//! Matching follows nats-server, which checks a subject against the allow
//! and deny lists as a *literal* subject: a wildcard in the subject is just a
//! token that a list's wildcards can match. So `SUB foo.*` is allowed by
//! `foo.*` or `foo.>` (and, as in nats-server, `SUB foo.>` by `foo.*`), but
//! not by `foo.bar`. Deny wins over allow. A wildcard subscription that
//! covers a denied subject is allowed, and messages on denied subjects are
//! then not delivered to that connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::conf::{self, Located, Value};
use crate::server::{Auth, User};
use crate::subject;

/// What a user may publish and subscribe to (`permissions {}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `publish` (`pub`): `None` = anything.
    pub publish: Option<SubjectPermission>,
    /// `subscribe` (`sub`): `None` = anything.
    pub subscribe: Option<SubjectPermission>,
    /// `allow_responses`: may publish to the reply subjects of messages it
    /// received, even where `publish` says no.
    pub allow_responses: Option<ResponsePermission>,
}

/// Allow and deny lists of subjects (wildcards allowed). For subscriptions
/// an entry may name a queue group after a space: `"foo.* workers"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectPermission {
    /// `None` = everything not denied; `Some(empty)` = nothing.
    pub allow: Option<Vec<String>>,
    /// Denied subjects; deny wins over allow.
    pub deny: Option<Vec<String>>,
}

/// `allow_responses`: how many replies per received request, and for how
/// long after it arrived (zero = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePermission {
    /// Responses allowed per request (nats-server's default: 1).
    pub max: usize,
    /// How long after the request responses are allowed (nats-server's
    /// default: 2 minutes).
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        ResponsePermission {
            max: 1,
            expires: Duration::from_secs(120),
        }
    }
}

/// One entry of [`Auth::Identities`]: how a user logs in, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User/password or nkey.
    pub login: Login,
    /// `None` = no restrictions.
    pub permissions: Option<Permissions>,
    /// The account the user logs into (`accounts { A { users } }`); `None`
    /// = the global account `$G`.
    pub account: Option<String>,
}

/// How an [`Identity`] proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// User name and password (plain or bcrypt).
    Password(User),
    /// A user nkey (public key, `U...`): CONNECT signs the INFO nonce.
    Nkey(String),
}

/// True for a well-formed user public nkey (`U...`, checksum right).
pub fn valid_user_nkey(key: &str) -> bool {
    key.starts_with('U') && nkeys::KeyPair::from_public_key(key).is_ok()
}

/// Checks CONNECT's `sig` (base64url without padding, or standard base64,
/// as nats-server accepts) for `nonce` against the public nkey.
pub fn verify_nkey(public: &str, nonce: &[u8], sig: &str) -> bool {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let Ok(key) = nkeys::KeyPair::from_public_key(public) else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD
        .decode(sig)
        .or_else(|_| STANDARD.decode(sig))
    else {
        return false;
    };
    key.verify(nonce, &sig).is_ok()
}

/// A fresh nonce for INFO (11 random bytes, base64url: 15 characters, like
/// nats-server's).
pub(crate) fn new_nonce() -> String {
    use base64::Engine;
    let random = uuid::Uuid::new_v4();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&random.as_bytes()[..11])
}

// ---------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------

/// A list entry: a subject pattern and an optional queue group pattern.
#[derive(Debug)]
struct Entry {
    pattern: String,
    queue: Option<String>,
}

impl Entry {
    fn new(text: &str) -> Entry {
        let (subject, queue) = match text.split_once(' ') {
            Some((s, q)) => (s, Some(q.trim().to_owned())),
            None => (text, None),
        };
        Entry {
            pattern: subject.to_owned(),
            queue,
        }
    }

    /// Whether this pattern matches `subject` taken literally. A malformed
    /// subject (an empty token) matches nothing, as in nats-server.
    fn matches(&self, subject: &str) -> bool {
        !subject::has_empty_token(subject) && subject::matches(&self.pattern, subject)
    }
}

#[derive(Debug, Default)]
struct List {
    allow: Option<Vec<Entry>>,
    deny: Option<Vec<Entry>>,
}

impl List {
    fn new(p: Option<&SubjectPermission>) -> List {
        let compile = |l: &Option<Vec<String>>| {
            l.as_ref()
                .map(|l| l.iter().map(|s| Entry::new(s)).collect::<Vec<_>>())
        };
        match p {
            Some(p) => List {
                allow: compile(&p.allow),
                deny: compile(&p.deny),
            },
            None => List::default(),
        }
    }

    fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_none()
    }

    /// Publish rule: any matching allow entry, no matching deny entry.
    fn permits(&self, subject: &str) -> bool {
        if let Some(allow) = &self.allow
            && !allow.iter().any(|e| e.matches(subject))
        {
            return false;
        }
        match &self.deny {
            Some(deny) => !deny.iter().any(|e| e.matches(subject)),
            None => true,
        }
    }

    /// Subscribe rule: as nats-server, an entry with a queue group decides
    /// for subscriptions in a matching group.
    fn permits_sub(&self, subject: &str, queue: Option<&str>) -> bool {
        let decide = |list: &[Entry]| -> (bool, bool, bool) {
            // (plain entry matched, queue entry matched, queue name matched)
            let mut plain = false;
            let mut queued = false;
            let mut queue_hit = false;
            for e in list.iter().filter(|e| e.matches(subject)) {
                match (&e.queue, queue) {
                    (None, _) => plain = true,
                    (Some(qp), q) => {
                        queued = true;
                        if q.is_some_and(|q| subject::matches(qp, q)) {
                            queue_hit = true;
                        }
                    }
                }
            }
            (plain, queued, queue_hit)
        };
        let mut allowed = true;
        if let Some(allow) = &self.allow {
            let (plain, queued, hit) = decide(allow);
            allowed = plain;
            if queue.is_some() && queued {
                allowed = hit;
            }
        }
        if allowed && let Some(deny) = &self.deny {
            let (plain, queued, hit) = decide(deny);
            allowed = !plain;
            if queue.is_some() && queued {
                allowed = !hit;
            }
        }
        allowed
    }
}

/// Tracks the reply subjects a connection with `allow_responses` received,
/// so it may answer them. Shared: deliveries to the connection record here.
pub(crate) struct Responses {
    limit: ResponsePermission,
    replies: Mutex<ReplyMap>,
}

/// Reply subject -> (when the request was delivered, responses sent).
type ReplyMap = FxHashMap<Box<[u8]>, (Instant, usize)>;

/// Above this many tracked replies, used-up and expired ones are dropped.
const REPLIES_PRUNE_AT: usize = 4096;

impl Responses {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReplyMap> {
        match self.replies.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A message with `reply` was delivered to the connection.
    pub(crate) fn track(&self, reply: &[u8]) {
        let mut replies = self.lock();
        replies.insert(reply.into(), (Instant::now(), 0));
        if replies.len() > REPLIES_PRUNE_AT {
            let limit = self.limit;
            replies.retain(|_, (at, n)| {
                (limit.max == 0 || *n < limit.max)
                    && (limit.expires.is_zero() || at.elapsed() <= limit.expires)
            });
        }
    }

    /// Whether one more response to `subject` is allowed (and counts it).
    fn answer(&self, subject: &[u8]) -> bool {
        let mut replies = self.lock();
        let Some((at, n)) = replies.get_mut(subject) else {
            return false;
        };
        *n += 1;
        let over = self.limit.max > 0 && *n > self.limit.max;
        let expired = !self.limit.expires.is_zero() && at.elapsed() > self.limit.expires;
        if over || expired {
            replies.remove(subject);
            return false;
        }
        true
    }
}

/// A connection's permissions, compiled.
pub(crate) struct Rules {
    publish: List,
    subscribe: List,
    /// Set when allow_responses is configured.
    pub(crate) responses: Option<Arc<Responses>>,
    /// Set once a wildcard subscription covering a denied subject was made:
    /// deliveries are then checked against the deny list.
    filter_deliveries: AtomicBool,
}

impl Rules {
    pub(crate) fn new(p: &Permissions) -> Rules {
        let mut publish = List::new(p.publish.as_ref());
        if p.allow_responses.is_some() && publish.allow.is_none() {
            // nats-server: responses only; no blanket publish.
            publish.allow = Some(Vec::new());
        }
        Rules {
            publish,
            subscribe: List::new(p.subscribe.as_ref()),
            responses: p.allow_responses.map(|limit| {
                Arc::new(Responses {
                    limit,
                    replies: Mutex::new(FxHashMap::default()),
                })
            }),
            filter_deliveries: AtomicBool::new(false),
        }
    }

    /// True when publishing is restricted at all.
    pub(crate) fn restricts_publish(&self) -> bool {
        !self.publish.is_open()
    }

    /// The allow/deny decision for publishing to `subject` (cacheable).
    pub(crate) fn may_publish(&self, subject: &str) -> bool {
        self.publish.permits(subject)
    }

    /// After [`Rules::may_publish`] said no: whether `subject` is the reply
    /// subject of a received request still open for a response.
    pub(crate) fn may_respond(&self, subject: &[u8]) -> bool {
        self.responses.as_ref().is_some_and(|r| r.answer(subject))
    }

    /// Whether a subscription to `subject` (in `queue`) is allowed.
    pub(crate) fn may_subscribe(&self, subject: &str, queue: Option<&str>) -> bool {
        if self.subscribe.is_open() {
            return true;
        }
        let allowed = self.subscribe.permits_sub(subject, queue);
        if allowed
            && !self.filter_deliveries.load(Ordering::Relaxed)
            && subject::has_wildcards(subject)
            && let Some(deny) = &self.subscribe.deny
            && deny.iter().any(|e| subject::covers(subject, &e.pattern))
        {
            self.filter_deliveries.store(true, Ordering::Relaxed);
        }
        allowed
    }

    /// Whether a message on `subject` must not be delivered to this
    /// connection (a wildcard subscription covered a denied subject).
    pub(crate) fn withholds(&self, subject: &[u8]) -> bool {
        if !self.filter_deliveries.load(Ordering::Relaxed) {
            return false;
        }
        let Some(deny) = &self.subscribe.deny else {
            return false;
        };
        let Ok(subject) = std::str::from_utf8(subject) else {
            return false;
        };
        deny.iter().any(|e| e.matches(subject))
    }
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Reads an `authorization { ... }` block: `token`, or `user`/`password`
/// and/or a `users` list of `{user, password}` and `{nkey}` entries, each
/// with optional `permissions` (else the block's `default_permissions`), and
/// `timeout`. Returns the auth (None when the block sets no credentials) and
/// the timeout. Errors name the line; keys this server cannot enforce are
/// refused, never ignored.
pub fn authorization_from_conf(
    block: &Located,
) -> Result<(Option<Auth>, Option<Duration>), String> {
    let text = |key: &str| block.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    // Anything we cannot enforce must stop the start: running with less
    // protection than configured is never right.
    let refuse = |entry: &Located, allowed: &[&str], at: &str| -> Result<(), String> {
        for (key, value) in entry.as_map().unwrap_or_default() {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(key)) {
                return Err(format!(
                    "line {}: {at}{key} is not supported yet by this server; refusing to start",
                    value.line
                ));
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
        Some(t) => Some(conf::as_duration(t).map_err(|e| e.to_string())?),
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
            format!(
                "line {}: users must be an array, got {}",
                list.line,
                list.value.type_name()
            )
        })?;
        for item in items {
            if item.as_map().is_none() {
                return Err(format!(
                    "line {}: users: expected a map such as {{user: a, password: b}}, got {}",
                    item.line,
                    item.value.type_name()
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
                    return Err(format!(
                        "line {}: Nkey users do not take usernames or passwords",
                        item.line
                    ));
                }
                let key = nkey
                    .as_str()
                    .filter(|k| valid_user_nkey(k))
                    .ok_or_else(|| {
                        format!(
                            "line {}: nkey: Not a valid public nkey for a user",
                            nkey.line
                        )
                    })?;
                let duplicate = identities
                    .iter()
                    .any(|i: &Identity| matches!(&i.login, Login::Nkey(k) if k == key));
                if duplicate {
                    return Err(format!(
                        "line {}: Duplicate nkey \"{key}\" detected",
                        nkey.line
                    ));
                }
                Login::Nkey(key.to_owned())
            } else {
                let name = item
                    .get("user")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("line {}: a user needs `user` or `nkey`", item.line))?;
                let pass = item
                    .get("password")
                    .or_else(|| item.get("pass"))
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("line {}: user {name} needs `password`", item.line))?;
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
                return Err(format!(
                    "line {}: permissions here need user and password (or go in a users entry)",
                    p.line
                ));
            }
        }
        _ => return Err("user and password go together".to_owned()),
    }
    let nkeys = identities.iter().any(|i| matches!(i.login, Login::Nkey(_)));
    let auth = match (token, identities.is_empty()) {
        (Some(_), false) => return Err("use either a token or users, not both".to_owned()),
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
pub fn permissions_from_conf(v: &Located) -> Result<Permissions, String> {
    let Value::Map(entries) = &v.value else {
        return Err(format!(
            "line {}: Expected permissions to be a map/struct, got {}",
            v.line,
            v.value.type_name()
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
                return Err(format!(
                    "line {}: Unknown field \"{key}\" parsing permissions",
                    value.line
                ));
            }
        }
    }
    Ok(p)
}

/// `"subj"`, `["a", "b"]` (an allow list) or `{allow: .., deny: ..}`.
fn subject_permission(key: &str, v: &Located) -> Result<SubjectPermission, String> {
    match &v.value {
        Value::Map(entries) => {
            let mut p = SubjectPermission::default();
            for (k, value) in entries {
                match k.to_ascii_lowercase().as_str() {
                    "allow" => p.allow = Some(subjects(k, value)?),
                    "deny" => p.deny = Some(subjects(k, value)?),
                    _ => {
                        return Err(format!(
                            "line {}: {key}: Unknown field name \"{k}\" parsing subject permissions, only 'allow' or 'deny' are permitted",
                            value.line
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

fn subjects(key: &str, v: &Located) -> Result<Vec<String>, String> {
    let one = |item: &Located| -> Result<String, String> {
        let Some(s) = item.as_str() else {
            return Err(format!(
                "line {}: {key}: Expected subject permissions to be a subject, or array of subjects, got {}",
                item.line,
                item.value.type_name()
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
            return Err(format!(
                "line {}: {key}: subject \"{s}\" is not a valid subject",
                item.line
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
fn response_permission(key: &str, v: &Located) -> Result<Option<ResponsePermission>, String> {
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
                                format!(
                                    "line {}: {key}: {k}: expected a non-negative integer, got {}",
                                    value.line,
                                    value.value.type_name()
                                )
                            })?;
                    }
                    "expires" | "ttl" => {
                        r.expires = conf::as_duration(value).map_err(|e| {
                            format!("line {}: {key}: error parsing {k}: {e}", value.line)
                        })?;
                    }
                    _ => {
                        return Err(format!(
                            "line {}: {key}: Unknown field \"{k}\" parsing response permissions",
                            value.line
                        ));
                    }
                }
            }
            Ok(Some(r))
        }
        other => Err(format!(
            "line {}: {key}: error parsing response permissions, expected a boolean or a map, got {}",
            v.line,
            other.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str) -> Result<(Option<Auth>, Option<Duration>), String> {
        let root = conf::parse(text, std::path::Path::new("test.conf"), &|_| None).expect("parses");
        authorization_from_conf(root.get("authorization").expect("block"))
    }

    const NKEY: &str = "UCI2RKP4HOQDGOEJCOF2UEPQBRNSIZNBENTP6UCIYX3NFTUTYZX2APGJ";

    #[test]
    fn entries_match_subjects_literally_and_never_malformed_ones() {
        assert!(Entry::new("foo.>").matches("foo.x"));
        assert!(Entry::new("foo.*").matches("foo.>"));
        assert!(!Entry::new("foo.>").matches("foo..x"));
        assert!(!Entry::new(">").matches(""));
    }

    #[test]
    fn deny_wins_and_queue_entries_decide_for_their_group() {
        let rules = Rules::new(&Permissions {
            publish: Some(SubjectPermission {
                allow: Some(vec!["foo.>".into()]),
                deny: Some(vec!["foo.secret".into()]),
            }),
            subscribe: Some(SubjectPermission {
                allow: Some(vec!["foo.* grp".into(), "bar".into()]),
                deny: Some(vec!["bar dq".into()]),
            }),
            allow_responses: None,
        });
        assert!(rules.may_publish("foo.a"));
        assert!(!rules.may_publish("foo.secret"));
        assert!(!rules.may_publish("baz"));
        assert!(!rules.may_subscribe("foo.a", None));
        assert!(rules.may_subscribe("foo.a", Some("grp")));
        assert!(!rules.may_subscribe("foo.a", Some("g2")));
        assert!(rules.may_subscribe("bar", None));
        assert!(!rules.may_subscribe("bar", Some("dq")));
        assert!(rules.may_subscribe("bar", Some("dq2")));
    }

    #[test]
    fn responses_are_counted_and_expire() {
        let rules = Rules::new(&Permissions {
            allow_responses: Some(ResponsePermission {
                max: 2,
                expires: Duration::from_millis(50),
            }),
            ..Permissions::default()
        });
        assert!(rules.restricts_publish());
        assert!(!rules.may_publish("_INBOX.1"));
        let responses = rules.responses.clone().expect("tracked");
        responses.track(b"_INBOX.1");
        assert!(rules.may_respond(b"_INBOX.1"));
        assert!(rules.may_respond(b"_INBOX.1"));
        assert!(!rules.may_respond(b"_INBOX.1"));
        responses.track(b"_INBOX.2");
        std::thread::sleep(Duration::from_millis(80));
        assert!(!rules.may_respond(b"_INBOX.2"));
    }

    #[test]
    fn nkey_signature_over_the_nonce_is_verified() {
        let user = nkeys::KeyPair::new_user();
        let other = nkeys::KeyPair::new_user();
        let nonce = new_nonce();
        assert_eq!(nonce.len(), 15);
        use base64::Engine;
        let sig = user.sign(nonce.as_bytes()).expect("sign");
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sig);
        let std = base64::engine::general_purpose::STANDARD.encode(&sig);
        assert!(verify_nkey(&user.public_key(), nonce.as_bytes(), &url));
        assert!(verify_nkey(&user.public_key(), nonce.as_bytes(), &std));
        assert!(!verify_nkey(&other.public_key(), nonce.as_bytes(), &url));
        assert!(!verify_nkey(&user.public_key(), b"other nonce", &url));
        assert!(!verify_nkey(&user.public_key(), nonce.as_bytes(), "!!!"));
        assert!(valid_user_nkey(&user.public_key()));
        assert!(!valid_user_nkey(
            &nkeys::KeyPair::new_account().public_key()
        ));
        assert!(!valid_user_nkey("UBAD"));
    }

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
