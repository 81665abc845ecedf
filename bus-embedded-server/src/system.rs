//! The system account's services in operator mode: answers what a client
//! of the system account requests on `$SYS.REQ.SERVER.PING` (and
//! `.STATSZ`): the server's identity and statistics, in nats-server's
//! statsz shape; and on `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` /
//! `$SYS.REQ.CLAIMS.UPDATE` (what `nsc push` sends): a newer account JWT,
//! verified, stored in the directory resolver's directory and applied to
//! the account's trust (revocations, signing keys, limits).
//!
//! It only computes answers (the session delivers them) and writes JWT
//! files; it must not touch connections or subscriptions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::jwt::{self, JwtError, Trust};
use crate::state::{ServerState, VERSION};

/// Sequence of system answers (nats-server's `server.seq`).
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The `server` object every system answer carries.
pub(crate) fn server_info(s: &ServerState) -> Value {
    json!({
        "name": s.server_name,
        "host": s.config.host,
        "id": s.server_id,
        "ver": VERSION,
        "jetstream": s.jetstream.is_some(),
        "flags": 0,
        "seq": SEQ.fetch_add(1, Ordering::Relaxed) + 1,
        "time": crate::monitor::rfc3339(SystemTime::now()),
    })
}

/// `$SYS.REQ.SERVER.PING`: the statsz message.
fn statsz(s: &ServerState) -> Value {
    let uptime = SystemTime::now()
        .duration_since(s.started)
        .unwrap_or_default();
    let (mem, cpu) = crate::monitor::process_usage(uptime);
    let [in_msgs, in_bytes, out_msgs, out_bytes] = s.traffic();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    json!({
        "server": server_info(s),
        "statsz": {
            "start": crate::monitor::rfc3339(s.started),
            "mem": mem,
            "cores": cores,
            "cpu": cpu,
            "connections": s.client_count(),
            "total_connections": s.stats.total_connections.load(Ordering::Relaxed),
            "active_accounts": 1 + s.accounts.all().iter().filter(|a| !a.sublist.is_empty()).count(),
            "subscriptions": s.subscription_count(),
            "sent": {"msgs": out_msgs, "bytes": out_bytes},
            "received": {"msgs": in_msgs, "bytes": in_bytes},
            "slow_consumers": s.stats.slow_consumers.load(Ordering::Relaxed),
            "active_servers": 1,
        }
    })
}

/// A claims update's answer: `data` on success, `error` otherwise.
fn claims_answer(s: &ServerState, account: &str, outcome: Result<&str, String>) -> Value {
    let mut v = json!({"server": server_info(s)});
    match outcome {
        Ok(message) => v["data"] = json!({"account": account, "code": 200, "message": message}),
        Err(description) => {
            v["error"] = json!({"account": account, "code": 500, "description": description});
        }
    }
    v
}

/// Why a pushed JWT is refused, in nats-server's words where it has them.
fn update_error(e: &JwtError) -> String {
    match e {
        JwtError::Malformed(m) if m.starts_with("expected header") => {
            "jwt update resulted in error - expected 3 chunks".to_owned()
        }
        e => format!("jwt update resulted in error - {e}"),
    }
}

/// `…CLAIMS.UPDATE` with `jwt_text`; `subject_key` from the subject
/// (`None` for `$SYS.REQ.CLAIMS.UPDATE`).
fn claims_update(
    s: &ServerState,
    trust: &Trust,
    subject_key: Option<&str>,
    jwt_text: &str,
) -> Option<Value> {
    let Some(dir) = &trust.dir else {
        // nats-server's MEMORY resolver keeps its preloaded accounts.
        let key = subject_key?;
        return Some(match jwt::account(jwt_text, trust.operators()) {
            Ok(_) => claims_answer(s, key, Ok("jwt update skipped")),
            Err(e) => claims_answer(s, key, Err(update_error(&e))),
        });
    };
    let a = match jwt::account(jwt_text, trust.operators()) {
        Ok(a) => a,
        Err(e) => return Some(claims_answer(s, "n/a", Err(update_error(&e)))),
    };
    let key = a.trusted.key.clone();
    if subject_key.is_some_and(|k| k != key) {
        return Some(claims_answer(
            s,
            subject_key.unwrap_or("n/a"),
            Err("jwt update resulted in error - subject does not match jwt content".to_owned()),
        ));
    }
    let path = dir.join(format!("{key}.jwt"));
    if let Err(e) = std::fs::write(&path, jwt_text.trim()) {
        return Some(claims_answer(
            s,
            &key,
            Err(format!(
                "jwt update resulted in error - storing {}: {e}",
                path.display()
            )),
        ));
    }
    let Some(running) = s.accounts.get(&key) else {
        // A new account (`nsc push` of one the server did not know): open
        // it, then trust its users, as nats-server's full resolver serves
        // it from then on.
        let (jetstream, limits) = crate::account::jetstream_of_jwt(&a.limits);
        if let Err(e) = s.accounts.open(&key, jetstream, limits) {
            return Some(claims_answer(
                s,
                &key,
                Err(format!(
                    "jwt stored; opening the account's JetStream failed: {e}"
                )),
            ));
        }
        trust.add(a.trusted);
        return Some(claims_answer(s, &key, Ok("jwt updated")));
    };
    let js_changed = trust
        .account(&key)
        .is_some_and(|old| old.jetstream_limits() != a.limits.jetstream_limits());
    // nats-server ends the connections of users the new JWT revokes.
    for c in s.clients() {
        if c.account.get().is_some_and(|n| **n == *key)
            && let Some((user, iat)) = c.jwt_user.get()
            && a.trusted.revokes(user, *iat)
        {
            c.send(b"-ERR 'User Authentication Revoked'\r\n");
            c.mark_closing(crate::outbound::CloseReason::AuthenticationRevoked);
        }
    }
    let _ = running;
    trust.update(a.trusted);
    if js_changed {
        return Some(claims_answer(
            s,
            &key,
            Err("jwt stored and applied; its JetStream limits take effect after a restart of this server".to_owned()),
        ));
    }
    Some(claims_answer(s, &key, Ok("jwt updated")))
}

/// The answer to a request on `$SYS.REQ.<req>` in the system account, or
/// `None` when this server has no responder there.
pub(crate) fn answer(s: &ServerState, req: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let crate::config::Auth::Operator(trust) = s.config.auth.as_ref()? else {
        return None;
    };
    let v = match req {
        "SERVER.PING" | "SERVER.PING.STATSZ" => statsz(s),
        "CLAIMS.UPDATE" => claims_update(s, trust, None, &String::from_utf8_lossy(payload))?,
        _ => {
            let key = req
                .strip_prefix("ACCOUNT.")?
                .strip_suffix(".CLAIMS.UPDATE")?;
            claims_update(s, trust, Some(key), &String::from_utf8_lossy(payload))?
        }
    };
    Some(v.to_string().into_bytes())
}
