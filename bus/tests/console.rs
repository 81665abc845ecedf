//! The operator console on the embedded server's monitoring port
//! (`[bus.embedded] console = true`): over plain HTTP, that it asks for the
//! server's credentials, guards the redrive with a CSRF token and never
//! shows a secret; and in a real browser (headless Chromium driven through
//! chromedriver by `tests/browser/console_browser.py`), that every page
//! loads with data, live figures update without a reload, and a dead letter
//! clicked through to and redriven reaches its consumer.
//!
//! The browser test needs `chromium` and `chromium-driver` (Debian;
//! `scripts/test.sh` installs them) and python3; without them it fails,
//! never skips. Screenshots of each page go to `target/console-screenshots/`.

use std::sync::Arc;
use std::time::Duration;

use bus::{BusConfig, ConsumerConfig, EmbeddedBus, EventEnvelope};
use bus_core::Bus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn embedded(dir: &std::path::Path, extra: &str) -> BusConfig {
    BusConfig::parse(
        &format!(
            "[bus]\nbackend = \"embedded\"\n[bus.embedded]\nport = 0\nhttp_port = 0\nconsole = true\n\
             data_dir = {:?}\n{extra}",
            dir.display().to_string()
        ),
        "test",
    )
    .expect("config")
}

/// One HTTP/1.1 request; (status, head, body).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the monitoring port");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("answer within 20 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

fn deposit(player: &str, sequence: u64, amount: u64) -> EventEnvelope {
    let mut e = bus_core::testkit::deposit(player, sequence);
    if let Some(p) = e.payload.as_mut() {
        p.value = format!("{{\"amount\":{amount}}}").into_bytes();
    }
    e
}

/// Publishes a few events; `projector` terminates the one of `poison`,
/// `audit` acknowledges everything. Returns the poison event's position.
async fn with_data(bus: &Arc<dyn Bus>, poison: &str) -> (u64, bus::Consumer, bus::Consumer) {
    for (i, p) in ["alice", poison, "bob"].iter().enumerate() {
        bus.publish(deposit(p, 1, 100 + 25 * i as u64))
            .await
            .expect("publish");
    }
    let all = bus.layout().all();
    let mut audit = bus
        .consumer(ConsumerConfig::new("audit", all.clone()))
        .await
        .expect("consumer");
    let mut projector = bus
        .consumer(ConsumerConfig::new("projector", all).max_deliver(2))
        .await
        .expect("consumer");
    // A consumer that reads nothing: its lag is all three events.
    drop(
        bus.consumer(ConsumerConfig::new("laggard", bus.layout().all()))
            .await
            .expect("consumer"),
    );
    let mut poison_position = 0;
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(10), audit.next())
            .await
            .expect("delivery")
            .expect("next");
        d.ack().await.expect("ack");
        let d = tokio::time::timeout(Duration::from_secs(10), projector.next())
            .await
            .expect("delivery")
            .expect("next");
        if d.envelope().aggregate_id == poison {
            poison_position = d.event.position;
            d.term("card declined").await.expect("term");
        } else {
            d.ack().await.expect("ack");
        }
    }
    (poison_position, audit, projector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_asks_for_the_servers_credentials_and_guards_the_redrive() {
    let dir = tempfile::tempdir().expect("dir");
    let config = embedded(dir.path(), "user = \"ops\"\npassword = \"s3cret-pw\"\n");
    let embedded = EmbeddedBus::start(&config).await.expect("start");
    let port = embedded.monitor_port().expect("monitoring port");
    let bus: Arc<dyn Bus> = Arc::new(embedded);
    let (position, _audit, _projector) = with_data(&bus, "carol").await;

    let (status, head, _) = http(port, "GET", "/console/streams", &[], "").await;
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("www-authenticate: basic"), "{head}");
    let wrong = format!("Basic {}", b64("ops:nope"));
    assert_eq!(
        http(
            port,
            "GET",
            "/console/streams",
            &[("authorization", &wrong)],
            ""
        )
        .await
        .0,
        401
    );

    let auth = format!("Basic {}", b64("ops:s3cret-pw"));
    let a = [("authorization", auth.as_str())];
    for page in [
        "/console/streams",
        "/console/consumers",
        "/console/dead-letters",
        "/console/events",
        "/console/api/live",
    ] {
        let (status, head, body) = http(port, "GET", page, &a, "").await;
        assert_eq!(status, 200, "{page}: {head}\n{body}");
        assert!(head.contains("content-security-policy"), "{page}: {head}");
        assert!(!body.contains("s3cret-pw"), "{page} shows the password");
    }
    let (_, _, body) = http(
        port,
        "GET",
        "/console/dead-letters?consumer=projector",
        &a,
        "",
    )
    .await;
    assert!(body.contains("card declined"), "{body}");

    // The event browser: by position, by time, by filter, by aggregate.
    let events = |body: &str| -> Vec<String> {
        body.split("class=\"event\" href=\"/console/events/")
            .skip(1)
            .filter_map(|r| r.split('"').next().map(str::to_owned))
            .collect()
    };
    let (_, _, body) = http(port, "GET", "/console/events?position=2", &a, "").await;
    assert_eq!(events(&body), ["2", "3"], "{body}");
    let (_, _, body) = http(port, "GET", "/console/events?time=1h&limit=2", &a, "").await;
    assert_eq!(events(&body), ["1", "2"], "{body}");
    assert!(body.contains("search from position 3 for more"), "{body}");
    let (_, _, body) = http(
        port,
        "GET",
        "/console/events?filter=player.*&aggregate_id=bob",
        &a,
        "",
    )
    .await;
    assert_eq!(events(&body), ["3"], "{body}");
    let (_, _, body) = http(port, "GET", "/console/events?aggregate_type=hand", &a, "").await;
    assert!(events(&body).is_empty(), "{body}");
    let (status, _, _) = http(port, "GET", "/console/events?time=yesterday", &a, "").await;
    assert_eq!(status, 400);
    let (status, _, body) = http(port, "GET", "/console/events/2", &a, "").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("carol") && body.contains("&quot;amount&quot;: 125"),
        "{body}"
    );
    assert_eq!(http(port, "GET", "/console/events/99", &a, "").await.0, 404);
    let (_, _, live) = http(port, "GET", "/console/api/live", &a, "").await;
    let live: serde_json::Value = serde_json::from_str(&live).expect("live JSON");
    assert_eq!(live["values"]["stream.angzarr-events.messages"], "3");
    assert_eq!(live["values"]["consumer.laggard.pending"], "3");
    assert_eq!(live["values"]["consumer.projector.dead_lettered"], "1");
    // The monitoring endpoints are unchanged beside it.
    assert_eq!(http(port, "GET", "/varz", &[], "").await.0, 200);

    // A redrive without the page's token, or from another site, is refused.
    let form = format!("consumer=projector&position={position}");
    let (status, _, _) = http(port, "POST", "/console/dead-letters/redrive", &a, &form).await;
    assert_eq!(status, 403);
    let (_, _, page) = http(
        port,
        "GET",
        "/console/dead-letters?consumer=projector",
        &a,
        "",
    )
    .await;
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page carries a CSRF token")
        .to_owned();
    let evil = [
        ("authorization", auth.as_str()),
        ("origin", "http://evil.example"),
    ];
    let signed = format!("csrf={token}&{form}");
    let (status, _, _) = http(
        port,
        "POST",
        "/console/dead-letters/redrive",
        &evil,
        &signed,
    )
    .await;
    assert_eq!(status, 403, "a cross-site POST must be refused");
    assert_eq!(
        bus.dead_letters(Some("projector")).await.expect("dl").len(),
        1
    );
    let (status, head, _) = http(port, "POST", "/console/dead-letters/redrive", &a, &signed).await;
    assert_eq!(status, 303, "{head}");
    assert!(
        head.contains("location: /console/dead-letters?consumer=projector&done=redriven%201"),
        "{head}"
    );
    bus.close().await.expect("close");
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser_redrives_a_dead_letter_to_its_consumer() {
    let dir = tempfile::tempdir().expect("dir");
    let embedded = EmbeddedBus::start(&embedded(dir.path(), ""))
        .await
        .expect("start");
    let port = embedded.monitor_port().expect("monitoring port");
    let bus: Arc<dyn Bus> = Arc::new(embedded);
    let (position, mut audit, mut projector) = with_data(&bus, "carol").await;

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/console_browser.py"
    );
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/console-screenshots");
    let base = format!("http://127.0.0.1:{port}/console");
    let out = tokio::process::Command::new("python3")
        .args([script, &base, shots, "projector", "carol"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("the browser run finished within 3 minutes")
        .expect("python3 runs (needed for the browser test)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("\"done\": true"),
        "the browser run failed (chromium and chromium-driver are needed: \
         apt-get install -y chromium chromium-driver):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.matches("\"screenshot\"").count() >= 6, "{stdout}");

    // The click redrove it: the projector receives it again, the audit does not.
    let d = tokio::time::timeout(Duration::from_secs(15), projector.next())
        .await
        .expect("the redriven event within 15 s")
        .expect("next");
    assert_eq!((d.event.position, d.attempt), (position, 1));
    assert_eq!(d.envelope().aggregate_id, "carol");
    d.ack().await.expect("ack");
    let none = audit
        .fetch(1, Duration::from_millis(1500))
        .await
        .expect("fetch");
    assert!(none.is_empty(), "the audit consumer got a second copy");
    let mut gone = false;
    for _ in 0..100 {
        if bus
            .dead_letters(Some("projector"))
            .await
            .expect("dl")
            .is_empty()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the acknowledged dead letter is still listed");
    bus.close().await.expect("close");
}
