//! Credentials for operator-mode tests, made here with `nkeys`: operator,
//! account and user key pairs, JWTs signed as NATS JWT v2 (base64url
//! header and claims, ed25519 signature by the issuer), `.creds` files in
//! the armoured format clients read, and a server configuration (`operator`,
//! `system_account`, `resolver: MEMORY`, `resolver_preload`) that both
//! nats-server and ours start from.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A JWT of `claims` signed by `signer` (`iss` is set to the signer).
pub fn sign(mut claims: Value, signer: &KeyPair) -> String {
    claims["iss"] = json!(signer.public_key());
    if claims.get("iat").is_none() {
        claims["iat"] = json!(now());
    }
    if claims.get("jti").is_none() {
        claims["jti"] = json!(uuid_like());
    }
    let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = signer.sign(format!("{h}.{c}").as_bytes()).expect("sign");
    format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn uuid_like() -> String {
    URL_SAFE_NO_PAD.encode(KeyPair::new_user().public_key().as_bytes())
}

/// An operator and its accounts.
pub struct Operator {
    pub key: KeyPair,
    pub jwt: String,
    pub system: Account,
    pub accounts: Vec<Account>,
}

/// An account: its key pair, a signing key and its JWT.
pub struct Account {
    pub name: String,
    pub key: KeyPair,
    pub jwt: String,
}

/// Unlimited NATS and account limits, JetStream off.
pub fn open_limits() -> Value {
    json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
           "wildcards": true, "conn": -1, "leaf": -1})
}

impl Operator {
    /// An operator with a system account.
    pub fn new() -> Operator {
        let key = KeyPair::new_operator();
        let system_key = KeyPair::new_account();
        let jwt = sign(
            json!({"sub": key.public_key(), "name": "OP",
                   "nats": {"type": "operator", "version": 2,
                            "system_account": system_key.public_key()}}),
            &key,
        );
        let system = account_signed(&key, system_key, "SYS", json!({"limits": open_limits()}));
        Operator {
            key,
            jwt,
            system,
            accounts: Vec::new(),
        }
    }

    /// Adds an account whose `nats` claims are `nats` (`type` and
    /// `version` added); returns its index.
    pub fn add_account(&mut self, name: &str, nats: Value) -> usize {
        let a = account_signed(&self.key, KeyPair::new_account(), name, nats);
        self.accounts.push(a);
        self.accounts.len() - 1
    }

    /// The server configuration: operator, system account, MEMORY resolver
    /// preloaded with every account.
    pub fn config(&self) -> String {
        let mut preload = format!("  {}: {}\n", self.system.key.public_key(), self.system.jwt);
        for a in &self.accounts {
            preload.push_str(&format!("  {}: {}\n", a.key.public_key(), a.jwt));
        }
        format!(
            "operator: {}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n{preload}}}\n",
            self.jwt,
            self.system.key.public_key()
        )
    }
}

/// An account JWT for `key` signed by the operator.
pub fn account_signed(op: &KeyPair, key: KeyPair, name: &str, mut nats: Value) -> Account {
    nats["type"] = json!("account");
    nats["version"] = json!(2);
    let jwt = sign(
        json!({"sub": key.public_key(), "name": name, "nats": nats}),
        op,
    );
    Account {
        name: name.to_owned(),
        key,
        jwt,
    }
}

/// A user: its key pair and JWT.
pub struct User {
    pub key: KeyPair,
    pub jwt: String,
}

/// A user JWT signed by `signer` (the account or a signing key) with
/// `nats` claims (`type`/`version` added) and extra top-level claims
/// (`exp`, `iat`).
pub fn user(signer: &KeyPair, nats: Value, top: Value) -> User {
    let key = KeyPair::new_user();
    user_with_key(signer, key, nats, top)
}

/// As [`user`] with a given user key.
pub fn user_with_key(signer: &KeyPair, key: KeyPair, mut nats: Value, top: Value) -> User {
    nats["type"] = json!("user");
    nats["version"] = json!(2);
    let mut claims = json!({"sub": key.public_key(), "name": "u", "nats": nats});
    if let Value::Object(extra) = top {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    let jwt = sign(claims, signer);
    User { key, jwt }
}

impl User {
    /// The `.creds` text (JWT and seed, armoured as nsc writes it).
    pub fn creds(&self) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            self.jwt,
            self.key.seed().expect("seed")
        )
    }

    /// Writes the `.creds` file into `dir`.
    pub fn write_creds(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.creds"));
        std::fs::write(&path, self.creds()).expect("write creds");
        path
    }

    /// CONNECT's `jwt` and `sig` members for `nonce`, signed by `signer`
    /// (normally the user's own key).
    pub fn connect_fields(&self, nonce: &str, signer: &KeyPair) -> String {
        let sig = URL_SAFE_NO_PAD.encode(signer.sign(nonce.as_bytes()).expect("sign"));
        format!("\"jwt\":\"{}\",\"sig\":\"{sig}\"", self.jwt)
    }
}
