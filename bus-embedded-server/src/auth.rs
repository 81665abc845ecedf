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
use std::time::Instant;

use crate::config::{
    Auth, Login, Permissions, ResponsePermission, SubjectPermission, User, is_bcrypt,
};
use crate::replies::ReplyTable;
use crate::subject;

/// The credentials of a CONNECT.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// `user`.
    pub user: Option<&'a str>,
    /// `pass`.
    pub pass: Option<&'a str>,
    /// `auth_token`.
    pub token: Option<&'a str>,
    /// `nkey` (public key).
    pub nkey: Option<&'a str>,
    /// `sig`: the signature of the INFO nonce.
    pub sig: Option<&'a str>,
}

impl Credentials<'_> {
    /// True when the CONNECT carries no user, password, token or nkey
    /// (empty strings count as absent, as in nats-server): the client is
    /// then `no_auth_user`, when one is configured.
    pub fn is_empty(&self) -> bool {
        [self.user, self.pass, self.token, self.nkey]
            .iter()
            .all(|f| f.is_none_or(str::is_empty))
    }
}

impl Auth {
    /// The user `no_auth_user` names, without checking any secret: its
    /// permissions and account. As nats-server, an nkey user of that key
    /// first, then a user of that name. A user whose password is stored as
    /// a bcrypt hash is refused: nats-server checks the stored hash as if
    /// the client had sent it, which never matches (checked side by side).
    pub fn no_auth_identity(&self, name: &str) -> Option<(Option<&Permissions>, Option<&str>)> {
        match self {
            Auth::Token(_) | Auth::Operator(_) => None,
            Auth::Users(users) => users
                .iter()
                .any(|u| u.name == name && !is_bcrypt(&u.password))
                .then_some((None, None)),
            Auth::Identities(ids) => ids
                .iter()
                .find(|i| matches!(&i.login, Login::Nkey(k) if k == name))
                .or_else(|| {
                    ids.iter()
                        .find(|i| matches!(&i.login, Login::Password(u) if u.name == name))
                })
                .filter(|i| !matches!(&i.login, Login::Password(u) if is_bcrypt(&u.password)))
                .map(|i| (i.permissions.as_ref(), i.account.as_deref())),
        }
    }

    /// Whether `no_auth_user` names one of these users (by user name or
    /// nkey), whether or not it can log in that way.
    pub fn has_user(&self, name: &str) -> bool {
        match self {
            Auth::Token(_) | Auth::Operator(_) => false,
            Auth::Users(users) => users.iter().any(|u| u.name == name),
            Auth::Identities(ids) => ids.iter().any(|i| match &i.login {
                Login::Nkey(k) => k == name,
                Login::Password(u) => u.name == name,
            }),
        }
    }

    /// Checks CONNECT's credentials.
    pub fn allows(&self, user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> bool {
        let creds = Credentials {
            user,
            pass,
            token,
            ..Credentials::default()
        };
        self.authenticate(&creds, None).is_some()
    }

    /// Checks CONNECT's credentials (`nonce`: the one sent in INFO); on
    /// success, the user's permissions (`None` = unrestricted). As
    /// nats-server: a CONNECT with an `nkey` is judged by it alone when nkey
    /// users are configured.
    pub fn authenticate(
        &self,
        creds: &Credentials<'_>,
        nonce: Option<&str>,
    ) -> Option<Option<&Permissions>> {
        self.authenticate_account(creds, nonce).map(|(p, _)| p)
    }

    /// As [`Auth::authenticate`], with the user's account (`None` = `$G`).
    pub fn authenticate_account(
        &self,
        creds: &Credentials<'_>,
        nonce: Option<&str>,
    ) -> Option<(Option<&Permissions>, Option<&str>)> {
        let password = |found: Option<&User>| match (found, creds.pass) {
            (Some(u), Some(pass)) => secret_matches(pass, &u.password),
            _ => false,
        };
        match self {
            // Judged by `jwt::Trust::authenticate` (the CONNECT's `jwt`).
            Auth::Operator(_) => None,
            Auth::Token(expected) => creds
                .token
                .is_some_and(|t| secret_matches(t, expected))
                .then_some((None, None)),
            Auth::Users(users) => {
                let user = creds.user?;
                let found = users.iter().find(|u| u.name == user);
                if found.is_none() {
                    self.as_slow_as_a_known_user(creds.pass);
                }
                password(found).then_some((None, None))
            }
            Auth::Identities(ids) => {
                if let Some(nkey) = creds.nkey.filter(|k| !k.is_empty())
                    && self.needs_nonce()
                {
                    let id = ids
                        .iter()
                        .find(|i| matches!(&i.login, Login::Nkey(k) if k == nkey))?;
                    let (Some(sig), Some(nonce)) = (creds.sig, nonce) else {
                        return None;
                    };
                    return verify_nkey(nkey, nonce.as_bytes(), sig)
                        .then_some((id.permissions.as_ref(), id.account.as_deref()));
                }
                let user = creds.user?;
                let Some(id) = ids
                    .iter()
                    .find(|i| matches!(&i.login, Login::Password(u) if u.name == user))
                else {
                    self.as_slow_as_a_known_user(creds.pass);
                    return None;
                };
                let Login::Password(u) = &id.login else {
                    return None;
                };
                password(Some(u)).then_some((id.permissions.as_ref(), id.account.as_deref()))
            }
        }
    }
}

impl crate::config::ListenerAuth {
    /// Judges a CONNECT that came through the listener whose own
    /// authentication this is, as nats-server's auth override does:
    ///
    /// * with a `user` or `token` (only allowed when the server has no
    ///   `users`), the CONNECT must carry that token, or that user name
    ///   and password; the server's single user or token does not apply;
    /// * otherwise (`no_auth_user` only), a CONNECT without a user name
    ///   (and without an nkey) is that user of `auth`, without checking a
    ///   secret, and any other is judged by `auth`'s users.
    ///
    /// `auth` is the server's (`None`: none configured). On success, the
    /// user's permissions and account, as [`Auth::authenticate_account`].
    pub fn authenticate<'a>(
        &self,
        auth: Option<&'a Auth>,
        creds: &Credentials<'_>,
        nonce: Option<&str>,
    ) -> Option<(Option<&'a Permissions>, Option<&'a str>)> {
        if let Some(token) = &self.token {
            return creds
                .token
                .is_some_and(|t| secret_matches(t, token))
                .then_some((None, None));
        }
        if let Some(user) = &self.user {
            let ok = creds.user == Some(user.name.as_str())
                && creds
                    .pass
                    .is_some_and(|p| secret_matches(p, &user.password));
            return ok.then_some((None, None));
        }
        let auth = auth?;
        let anonymous =
            creds.user.is_none_or(str::is_empty) && creds.nkey.is_none_or(str::is_empty);
        match &self.no_auth_user {
            Some(name) if anonymous => auth.no_auth_identity(name),
            _ => auth.authenticate_account(creds, nonce),
        }
    }

    /// True when checking a password costs a bcrypt verification.
    pub fn bcrypt(&self) -> bool {
        self.user.as_ref().is_some_and(|u| is_bcrypt(&u.password))
    }
}

impl Auth {
    /// For an unknown user: spends what checking a known one's password
    /// would (one bcrypt verification against a configured hash, result
    /// ignored), so the answer's timing does not tell which users exist.
    fn as_slow_as_a_known_user(&self, pass: Option<&str>) {
        if let Some(hash) = self.bcrypt_hash() {
            let _ = bcrypt_verify(pass.unwrap_or(""), hash);
        }
    }
}

#[cfg(test)]
thread_local! {
    /// bcrypt verifications made by this thread (tests count them).
    static BCRYPT_VERIFICATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn bcrypt_verify(given: &str, hash: &str) -> bool {
    #[cfg(test)]
    BCRYPT_VERIFICATIONS.with(|n| n.set(n.get() + 1));
    bcrypt::verify(given, hash).unwrap_or(false)
}

/// Compares a presented secret with a stored one: bcrypt when stored as a
/// hash, otherwise in constant time.
fn secret_matches(given: &str, stored: &str) -> bool {
    if is_bcrypt(stored) {
        bcrypt_verify(given, stored)
    } else {
        use subtle::ConstantTimeEq;
        given.len() == stored.len() && bool::from(given.as_bytes().ct_eq(stored.as_bytes()))
    }
}

/// A user JWT's permissions as the server's types (`None`: unrestricted).
/// A list that is empty in the JWT is absent here (nats-server: an empty
/// allow list allows everything).
pub fn jwt_permissions(p: &crate::jwt::JwtPermissions) -> Option<Permissions> {
    if p.is_empty() {
        return None;
    }
    let list = |s: &crate::jwt::JwtSubjects| {
        (!s.allow.is_empty() || !s.deny.is_empty()).then(|| SubjectPermission {
            allow: (!s.allow.is_empty()).then(|| s.allow.clone()),
            deny: (!s.deny.is_empty()).then(|| s.deny.clone()),
        })
    };
    Some(Permissions {
        publish: list(&p.publish),
        subscribe: list(&p.subscribe),
        allow_responses: p.resp.as_ref().map(|r| {
            let default = ResponsePermission::default();
            ResponsePermission {
                max: usize::try_from(r.max)
                    .ok()
                    .filter(|m| *m > 0)
                    .unwrap_or(default.max),
                expires: u64::try_from(r.ttl)
                    .ok()
                    .filter(|t| *t > 0)
                    .map_or(default.expires, std::time::Duration::from_nanos),
            }
        }),
    })
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
    /// Reply subject -> responses sent so far.
    replies: Mutex<ReplyTable<usize>>,
}

/// Most replies a connection may have open for responses at once; past it
/// the oldest can no longer be answered.
pub(crate) const MAX_OPEN_RESPONSES: usize = 65_536;

impl Responses {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReplyTable<usize>> {
        match self.replies.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A message with `reply` was delivered to the connection.
    pub(crate) fn track(&self, reply: &[u8]) {
        let expires = (!self.limit.expires.is_zero()).then(|| Instant::now() + self.limit.expires);
        self.lock().insert(reply, expires, 0);
    }

    /// Whether one more response to `subject` is allowed (and counts it).
    fn answer(&self, subject: &[u8]) -> bool {
        let mut replies = self.lock();
        let Some(sent) = replies.get_mut(subject) else {
            return false;
        };
        *sent += 1;
        if self.limit.max > 0 && *sent > self.limit.max {
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
                    replies: Mutex::new(ReplyTable::new(MAX_OPEN_RESPONSES)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn creds<'a>(user: Option<&'a str>, pass: Option<&'a str>) -> Credentials<'a> {
        // An MQTT client's password is also its token, as the bridge sends it.
        Credentials {
            user,
            pass,
            token: pass,
            ..Credentials::default()
        }
    }

    #[test]
    fn listener_user_or_token_alone_decides_as_nats_servers_auth_override() {
        use crate::config::ListenerAuth;
        let server_token = Auth::Token("natstok".into());
        let own = ListenerAuth {
            user: Some(User {
                name: "mq".into(),
                password: "mqpw".into(),
            }),
            ..ListenerAuth::default()
        };
        assert!(
            own.authenticate(None, &creds(Some("mq"), Some("mqpw")), None)
                .is_some()
        );
        for (u, p) in [
            (Some("mq"), Some("x")),
            (Some("other"), Some("mqpw")),
            (None, None),
        ] {
            assert!(
                own.authenticate(None, &creds(u, p), None).is_none(),
                "{u:?} {p:?}"
            );
        }
        let own = ListenerAuth {
            token: Some("mqtok".into()),
            ..ListenerAuth::default()
        };
        let auth = Some(&server_token);
        assert!(
            own.authenticate(auth, &creds(Some("any"), Some("mqtok")), None)
                .is_some()
        );
        assert!(
            own.authenticate(auth, &creds(Some("any"), Some("natstok")), None)
                .is_none()
        );
    }

    #[test]
    fn listener_no_auth_user_takes_clients_without_a_user_name() {
        use crate::config::{Identity, ListenerAuth};
        let perms = Permissions {
            publish: Some(SubjectPermission {
                allow: Some(vec!["allowed.>".into()]),
                deny: None,
            }),
            ..Permissions::default()
        };
        let auth = Auth::Identities(vec![
            Identity {
                login: Login::Password(User {
                    name: "alice".into(),
                    password: "secret".into(),
                }),
                permissions: None,
                account: None,
            },
            Identity {
                login: Login::Password(User {
                    name: "bob".into(),
                    password: "pw2".into(),
                }),
                permissions: Some(perms.clone()),
                account: Some("B".into()),
            },
        ]);
        let own = ListenerAuth {
            no_auth_user: Some("bob".into()),
            ..ListenerAuth::default()
        };
        let bob = own.authenticate(Some(&auth), &creds(None, None), None);
        assert_eq!(bob, Some((Some(&perms), Some("B"))));
        // A password without a user name is still the no_auth_user.
        assert!(
            own.authenticate(Some(&auth), &creds(None, Some("zz")), None)
                .is_some()
        );
        let alice = own.authenticate(Some(&auth), &creds(Some("alice"), Some("secret")), None);
        assert_eq!(alice, Some((None, None)));
        assert!(
            own.authenticate(Some(&auth), &creds(Some("alice"), Some("no")), None)
                .is_none()
        );
    }

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
    fn an_unknown_user_costs_one_bcrypt_verification_like_a_known_one() {
        let hash = bcrypt::hash("right", 4).expect("hash");
        let user = |name: &str| User {
            name: name.into(),
            password: hash.clone(),
        };
        let count = || BCRYPT_VERIFICATIONS.with(std::cell::Cell::get);
        for auth in [
            Auth::Users(vec![user("alice")]),
            Auth::Identities(vec![crate::config::Identity {
                login: Login::Password(user("alice")),
                permissions: None,
                account: None,
            }]),
        ] {
            let before = count();
            assert!(!auth.allows(Some("alice"), Some("wrong"), None));
            assert_eq!(count() - before, 1, "a known user with a wrong password");
            let before = count();
            assert!(!auth.allows(Some("mallory"), Some("wrong"), None));
            assert_eq!(count() - before, 1, "an unknown user costs the same");
            assert!(auth.allows(Some("alice"), Some("right"), None));
        }
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
}
