//! The `mqtt { }` block: the MQTT listener's address, its `tls {}`, its
//! own `authorization { user, password | token, timeout }` and
//! `no_auth_user`, the QoS 1 settings and the QoS 2 switches, into an
//! [`MqttConf`]. Every other key nats-server knows there (the JetStream
//! settings) changes how clients are served, and this server does not
//! implement it yet: it refuses the start naming the key. Unknown keys are
//! errors, as in nats-server. Whether the authorization fits the server's
//! users is checked by `options`.

use super::error::ConfError;
use super::listener_auth::ListenerAuthConf;
use super::server_conf::{Reader, TlsConf, Warning};
use super::syntax::{Located, Value};

/// The `mqtt { }` block as written; `None` when unset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MqttConf {
    /// `host` / `net`, or the host of `listen`.
    pub host: Option<String>,
    /// `port`, or the port of `listen`; -1 means a free port, 0 (or unset)
    /// means no listener, as in nats-server.
    pub port: Option<i32>,
    /// Line of the block.
    pub line: usize,
    /// `ack_wait`: how long a QoS 1 delivery waits for its PUBACK before
    /// it is sent again (unset or 0: nats-server's 30 s).
    pub ack_wait: Option<std::time::Duration>,
    /// `max_ack_pending`: QoS 1 deliveries in flight per subscription
    /// (unset or 0: nats-server's 1024).
    pub max_ack_pending: Option<u16>,
    /// The `tls { }` block inside.
    pub tls: Option<TlsConf>,
    /// `authorization { }` (or `authentication { }`) inside.
    pub authorization: Option<ListenerAuthConf>,
    /// `no_auth_user` inside.
    pub no_auth_user: Option<String>,
    /// `reject_qos2_publish`: a QoS 2 PUBLISH closes the connection, a
    /// CONNECT with a QoS 2 will gets CONNACK 0x10 (nats-server's code).
    pub reject_qos2_publish: bool,
    /// `downgrade_qos2_subscribe`: a QoS 2 SUBSCRIBE is granted QoS 1.
    pub downgrade_qos2_subscribe: bool,
}

/// Keys nats-server knows inside `mqtt { }` that this server does not
/// implement yet (see the README's MQTT section).
const REFUSED_MQTT: &[&str] = &[
    "js_api_timeout",
    "api_timeout",
    "js_domain",
    "stream_replicas",
    "consumer_replicas",
    "consumer_memory_storage",
    "consumer_inactive_threshold",
    "consumer_auto_cleanup",
];

/// Reads an `mqtt { }` block (kept raw by `server_conf`).
pub fn mqtt_from_conf(block: &Located) -> Result<(MqttConf, Vec<Warning>), ConfError> {
    let mut r = Reader {
        warnings: Vec::new(),
    };
    let m = r.mqtt(block)?;
    Ok((m, r.warnings))
}

impl Reader {
    fn mqtt(&mut self, value: &Located) -> Result<MqttConf, ConfError> {
        let Value::Map(entries) = &value.value else {
            return self.wrong_type("mqtt", value, "a map");
        };
        let mut m = MqttConf {
            line: value.line,
            ..MqttConf::default()
        };
        for (k, v) in entries {
            let name = format!("mqtt.{k}");
            match k.to_ascii_lowercase().as_str() {
                "listen" => {
                    let (host, port) = self.host_port(&name, v)?;
                    if let Some(host) = host {
                        m.host = host;
                    }
                    m.port = Some(port);
                }
                "port" => m.port = Some(self.port(&name, v)?),
                "host" | "net" => m.host = Some(self.string(&name, v)?),
                "ack_wait" | "ackwait" => m.ack_wait = Some(self.duration(&name, v)?),
                "max_ack_pending" | "max_pending" | "max_inflight" => {
                    let n = self.integer(&name, v)?;
                    match u16::try_from(n) {
                        Ok(n) => m.max_ack_pending = Some(n),
                        Err(_) => {
                            return self.invalid(
                                &name,
                                v,
                                format!("invalid value {n}, should in [0..65535] range"),
                            );
                        }
                    }
                }
                "tls" => m.tls = Some(self.tls(v)?),
                "authorization" | "authentication" => {
                    m.authorization = Some(self.listener_authorization(&name, v)?);
                }
                "no_auth_user" => m.no_auth_user = Some(self.string(&name, v)?),
                "reject_qos2_publish" => m.reject_qos2_publish = self.boolean(&name, v)?,
                "downgrade_qos2_subscribe" => {
                    m.downgrade_qos2_subscribe = self.boolean(&name, v)?;
                }
                lower if REFUSED_MQTT.contains(&lower) => {
                    return self.invalid(
                        &name,
                        v,
                        format!("{k} is not supported yet by this server; refusing to start"),
                    );
                }
                _ if v.used_as_variable => {}
                _ => return self.invalid(&name, v, format!("unknown field \"{k}\"")),
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::super::server_conf::server_conf;
    use super::super::syntax::tests::p;
    use super::*;

    fn mqtt(text: &str) -> Result<MqttConf, String> {
        let (c, _) = server_conf(&p(text)).map_err(|e| e.to_string())?;
        let block = c.mqtt.ok_or("no mqtt block")?;
        mqtt_from_conf(&block)
            .map(|(m, _)| m)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn mqtt_block_reads_host_and_port() {
        let m = mqtt("mqtt { host: 127.0.0.1, port: 1883 }").unwrap();
        assert_eq!(m.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(m.port, Some(1883));
        let m = mqtt("mqtt { listen: \"0.0.0.0:1884\" }").unwrap();
        assert_eq!(m.port, Some(1884));
    }

    #[test]
    fn mqtt_keys_not_served_yet_refuse_naming_the_key() {
        for key in ["consumer_replicas: 1", "js_domain: x"] {
            let err = mqtt(&format!("mqtt {{ port: 1883, {key} }}")).unwrap_err();
            let name = key.split([':', ' ']).next().unwrap();
            assert!(err.contains(&format!("mqtt.{name}")), "{key}: {err}");
            assert!(err.contains("not supported yet"), "{key}: {err}");
        }
    }

    #[test]
    fn qos2_switches_are_read() {
        let m = mqtt("mqtt { port: 1883 }").unwrap();
        assert!(!m.reject_qos2_publish && !m.downgrade_qos2_subscribe);
        let m =
            mqtt("mqtt { port: 1883, reject_qos2_publish: true, downgrade_qos2_subscribe: true }")
                .unwrap();
        assert!(m.reject_qos2_publish && m.downgrade_qos2_subscribe);
        assert!(mqtt("mqtt { port: 1883, reject_qos2_publish: 3 }").is_err());
    }

    #[test]
    fn ack_wait_and_max_ack_pending_are_read_and_checked_as_nats_server() {
        let m = mqtt("mqtt { port: 1883, ack_wait: \"2s\", max_ack_pending: 7 }").unwrap();
        assert_eq!(m.ack_wait, Some(std::time::Duration::from_secs(2)));
        assert_eq!(m.max_ack_pending, Some(7));
        for bad in ["70000", "-1"] {
            let err = mqtt(&format!("mqtt {{ port: 1883, max_ack_pending: {bad} }}")).unwrap_err();
            assert!(
                err.contains(&format!("invalid value {bad}, should in [0..65535] range")),
                "{err}"
            );
        }
    }

    #[test]
    fn mqtt_tls_authorization_and_no_auth_user_are_read() {
        let m = mqtt(
            "mqtt { port: 1883, no_auth_user: bob, tls { cert_file: c.pem, key_file: k.pem, verify: true, ca_file: ca.pem, timeout: 3 }, authorization { username: u, pass: p, token: t, timeout: 1.5 } }",
        )
        .unwrap();
        assert_eq!(m.no_auth_user.as_deref(), Some("bob"));
        let tls = m.tls.unwrap();
        assert!(tls.verify && tls.ca_file.is_some() && tls.cert_file.is_some());
        assert_eq!(tls.timeout, Some(std::time::Duration::from_secs(3)));
        let a = m.authorization.unwrap();
        assert_eq!(
            (a.user.as_deref(), a.password.as_deref(), a.token.as_deref()),
            (Some("u"), Some("p"), Some("t"))
        );
        assert_eq!(a.timeout, Some(std::time::Duration::from_millis(1500)));
    }

    #[test]
    fn mqtt_authorization_refuses_users_and_string_timeouts() {
        let err = mqtt("mqtt { port: 1883, authorization { users: [{user: a, password: b}] } }")
            .unwrap_err();
        assert!(err.contains("mqtt.authorization.users"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
        let err = mqtt("mqtt { port: 1883, authorization { timeout: \"2s\" } }").unwrap_err();
        assert!(err.contains("mqtt.authorization.timeout"), "{err}");
        let err =
            mqtt("mqtt { port: 1883, tls { cert_file: c, key_file: k, min_version: \"1.3\" } }")
                .unwrap_err();
        assert!(err.contains("min_version"), "{err}");
    }

    #[test]
    fn unknown_mqtt_key_is_an_error() {
        let err = mqtt("mqtt { port: 1883, bogus: 1 }").unwrap_err();
        assert!(err.contains("mqtt.bogus"), "{err}");
    }
}
