//! `[bus.embedded] user` / `password` (or `token`): the bundled server
//! requires them from every client. The in-process adapter connects with
//! them; a second client without them (plain async-nats) is refused; a
//! `backend = "nats"` bus given them through `NATS_USER` / `NATS_PASSWORD`
//! (via `BusConfig::load_with_env`) shares the server.

use std::time::Duration;

use bus::{BusConfig, EmbeddedBus};
use bus_core::Bus;
use bus_core::config::{ENV_NATS_PASSWORD, ENV_NATS_TOKEN, ENV_NATS_USER};
use bus_core::testkit::deposit;

/// A plain async-nats connection with these options must be refused.
async fn refused(url: &str, options: async_nats::ConnectOptions, what: &str) {
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        options
            .connection_timeout(Duration::from_secs(3))
            .connect(url),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: connect did not finish within 10 s"));
    match result {
        Ok(client) => {
            // Some failures only show on the first round trip.
            let flushed = tokio::time::timeout(Duration::from_secs(3), client.flush()).await;
            assert!(
                !matches!(flushed, Ok(Ok(()))),
                "{what}: the server accepted a client without valid credentials"
            );
        }
        Err(err) => {
            let text = err.to_string().to_lowercase();
            assert!(
                text.contains("authorization") || text.contains("auth"),
                "{what}: refused, but not for authorization: {err}"
            );
        }
    }
}

/// A `backend = "nats"` file pointing at `url`, without credentials.
fn nats_file(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("shared.toml");
    std::fs::write(
        &path,
        format!("[bus]\nbackend = \"nats\"\n[bus.nats]\nurl = {url:?}\nconnect_timeout = \"3s\"\n"),
    )
    .expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_with_a_password_refuses_unauthenticated_clients() {
    let dir = tempfile::tempdir().expect("dir");
    let config = BusConfig::parse(
        &format!(
            "[bus]\nbackend = \"embedded\"\n[bus.embedded]\nport = 0\ndata_dir = {:?}\n\
             user = \"app\"\npassword = \"s3cret\"\n",
            dir.path().join("data").display().to_string()
        ),
        "embedded-auth.toml",
    )
    .expect("config");
    let embedded = EmbeddedBus::start(&config)
        .await
        .expect("embedded starts and its adapter authenticates");
    let url = embedded.url().to_owned();
    let r = embedded.publish(deposit("auth", 1)).await.expect("publish");
    assert_eq!(r.position, 1);

    // Other clients: without credentials, and with a wrong password.
    refused(&url, async_nats::ConnectOptions::new(), "no credentials").await;
    refused(
        &url,
        async_nats::ConnectOptions::with_user_and_password("app".into(), "wrong".into()),
        "wrong password",
    )
    .await;

    // A shared `backend = "nats"` bus without credentials cannot open...
    let file = nats_file(dir.path(), &url);
    let no_creds = BusConfig::load_with_env(&file, |_| None).expect("config");
    assert!(
        bus::open(&no_creds).await.is_err(),
        "a bus without credentials opened"
    );
    // ...and with NATS_USER / NATS_PASSWORD from the environment it publishes.
    let with_creds = BusConfig::load_with_env(&file, |k| match k {
        ENV_NATS_USER => Some("app".to_owned()),
        ENV_NATS_PASSWORD => Some("s3cret".to_owned()),
        _ => None,
    })
    .expect("config");
    let shared = bus::open(&with_creds)
        .await
        .expect("the nats backend authenticates with NATS_USER / NATS_PASSWORD");
    assert_eq!(shared.backend(), "nats");
    let r = shared.publish(deposit("auth", 2)).await.expect("publish");
    assert_eq!(r.position, 2, "both buses write the same stream");
    assert_eq!(embedded.stream_info().await.expect("info").messages, 2);
    shared.close().await.expect("close");
    embedded.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_with_a_token_requires_it() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = BusConfig::default();
    config.embedded.port = 0;
    config.embedded.data_dir = dir.path().join("data");
    config.embedded.token = Some("tok-123".to_owned());
    let embedded = EmbeddedBus::start(&config).await.expect("embedded starts");
    embedded.publish(deposit("auth", 1)).await.expect("publish");
    let url = embedded.url().to_owned();
    refused(&url, async_nats::ConnectOptions::new(), "no token").await;
    refused(
        &url,
        async_nats::ConnectOptions::with_token("nope".into()),
        "wrong token",
    )
    .await;
    let file = nats_file(dir.path(), &url);
    let shared = BusConfig::load_with_env(&file, |k| {
        (k == ENV_NATS_TOKEN).then(|| "tok-123".to_owned())
    })
    .expect("config");
    let shared = bus::open(&shared).await.expect("opens with NATS_TOKEN");
    shared.publish(deposit("auth", 2)).await.expect("publish");
    shared.close().await.expect("close");
    embedded.close().await.expect("close");
}
