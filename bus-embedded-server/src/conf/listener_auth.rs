//! The `authorization { user, password | token, timeout }` block inside
//! a listener's block (`mqtt { }`, `websocket { }`), as nats-server's
//! "simple auth" reads it, into a [`ListenerAuthConf`]. Whether it fits the
//! server's users is checked by `options`.

use std::time::Duration;

use super::error::ConfError;
use super::server_conf::Reader;
use super::syntax::{Located, Value};

/// A listener's `authorization { }` block as written (nats-server reads
/// only these keys there; `users` and the rest are unknown fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenerAuthConf {
    /// `user` / `username`.
    pub user: Option<String>,
    /// `password` / `pass`.
    pub password: Option<String>,
    /// `token`.
    pub token: Option<String>,
    /// `timeout`: seconds (integer or fractional).
    pub timeout: Option<Duration>,
}

impl Reader {
    /// `authorization { user, password | token, timeout }`.
    pub(super) fn listener_authorization(
        &mut self,
        at: &str,
        value: &Located,
    ) -> Result<ListenerAuthConf, ConfError> {
        let Value::Map(entries) = &value.value else {
            return self.wrong_type(at, value, "a map");
        };
        let mut a = ListenerAuthConf::default();
        for (k, v) in entries {
            let name = format!("{at}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "user" | "username" => a.user = Some(self.string(&name, v)?),
                "pass" | "password" => a.password = Some(self.string(&name, v)?),
                "token" => a.token = Some(self.string(&name, v)?),
                "timeout" => {
                    // Seconds, as nats-server reads it here (a string
                    // would silently be 1 s there: refused instead).
                    let secs = match v.value {
                        Value::Integer(i) => i as f64,
                        Value::Float(f) => f,
                        _ => return self.wrong_type(&name, v, "a number of seconds"),
                    };
                    match Duration::try_from_secs_f64(secs) {
                        Ok(d) => a.timeout = Some(d),
                        Err(_) => {
                            return self.invalid(
                                &name,
                                v,
                                format!("invalid timeout {secs}: must be a number of seconds >= 0"),
                            );
                        }
                    }
                }
                _ if v.used_as_variable => {}
                _ => return self.invalid(&name, v, format!("unknown field \"{k}\"")),
            }
        }
        Ok(a)
    }
}
