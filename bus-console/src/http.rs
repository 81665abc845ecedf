//! Plain HTTP types, form and query decoding, and the two guards every
//! request passes: authentication (HTTP Basic, or a bearer token) and, for
//! anything that changes state, the CSRF check.

use base64::Engine;
use subtle::ConstantTimeEq;

/// One request (body read whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path (mount prefix included).
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (the security headers are added by [`crate::Console::handle`]).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with this status, content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// An HTML page.
    pub fn html(status: u16, body: String) -> Self {
        Self::new(status, "text/html; charset=utf-8", body)
    }

    /// A plain-text message.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// A redirect after a POST (303 See Other).
    pub fn see_other(location: &str) -> Self {
        let mut r = Self::text(303, "see other\n");
        r.headers.push(("location".to_owned(), location.to_owned()));
        r
    }
}

/// What a browser must present, when the server requires credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP Basic with this user and password.
    UserPassword {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A token: HTTP Basic with any user name and the token as password,
    /// or `Authorization: Bearer <token>`.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .finish_non_exhaustive(),
            Credentials::Token(_) => f.write_str("Token(..)"),
        }
    }
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Credentials {
    /// True when `authorization` (the header's value) matches.
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let value = value.trim();
        if let Some(token) = value.strip_prefix("Bearer ") {
            return matches!(self, Credentials::Token(t) if same(t, token.trim()));
        }
        let Some(encoded) = value.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        match self {
            Credentials::UserPassword {
                user: u,
                password: p,
            } => same(u, user) & same(p, password),
            Credentials::Token(t) => same(t, password),
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text (also a query string).
pub fn form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The first value of `key` in decoded form fields, if not empty.
pub fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes `s` for a query string value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The CSRF guard of a state-changing request: a POST whose form carries
/// the console's token, and, when the browser says where the request comes
/// from, coming from this console's own origin.
pub fn csrf_ok(request: &Request, fields: &[(String, String)], token: &str) -> bool {
    if request.method != "POST" {
        return false;
    }
    let Some(sent) = field(fields, "csrf") else {
        return false;
    };
    if !same(sent, token) {
        return false;
    }
    if let Some(site) = request.header("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    if let (Some(origin), Some(host)) = (request.header("origin"), request.header("host")) {
        let without_scheme = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if without_scheme != host {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn credentials_accept_only_the_configured_secret() {
        let up = Credentials::UserPassword {
            user: "ops".into(),
            password: "s3cret".into(),
        };
        assert!(up.accepts(Some(&basic("ops", "s3cret"))));
        assert!(!up.accepts(Some(&basic("ops", "s3cre"))));
        assert!(!up.accepts(Some(&basic("other", "s3cret"))));
        assert!(!up.accepts(None));
        assert!(!up.accepts(Some("Basic !!!")));
        assert!(!up.accepts(Some("Bearer s3cret")));
        let t = Credentials::Token("tok".into());
        assert!(t.accepts(Some("Bearer tok")));
        assert!(t.accepts(Some(&basic("anyone", "tok"))));
        assert!(!t.accepts(Some(&basic("tok", "x"))));
        assert!(!format!("{up:?}{t:?}").contains("s3cret"));
        assert!(!format!("{t:?}").contains("tok"));
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let f = form("a=1+2&b=%2Fx%3D&c=&bad=%zz&end=%4");
        assert_eq!(field(&f, "a"), Some("1 2"));
        assert_eq!(field(&f, "b"), Some("/x="));
        assert_eq!(field(&f, "c"), None);
        assert_eq!(field(&f, "bad"), Some("%zz"));
        assert_eq!(field(&f, "end"), Some("%4"));
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn csrf_needs_post_the_token_and_the_same_origin() {
        let fields = form("csrf=abc");
        let mut r = Request {
            method: "POST".into(),
            headers: vec![
                ("host".into(), "127.0.0.1:8222".into()),
                ("origin".into(), "http://127.0.0.1:8222".into()),
            ],
            ..Default::default()
        };
        assert!(csrf_ok(&r, &fields, "abc"));
        assert!(!csrf_ok(&r, &form("csrf=abd"), "abc"));
        assert!(!csrf_ok(&r, &form("x=1"), "abc"));
        r.headers[1].1 = "http://evil.example".into();
        assert!(!csrf_ok(&r, &fields, "abc"));
        r.headers.truncate(1);
        r.headers
            .push(("sec-fetch-site".into(), "cross-site".into()));
        assert!(!csrf_ok(&r, &fields, "abc"));
        r.headers.truncate(1);
        r.method = "GET".into();
        assert!(!csrf_ok(&r, &fields, "abc"));
    }
}
