//! async-nats, unchanged, against our server: the core scenarios a real
//! client depends on.

use std::time::Duration;

use bus_embedded_server::{ServerConfig, ServerHandle, start};
use bytes::Bytes;
use futures::StreamExt;

async fn server() -> ServerHandle {
    start(ServerConfig {
        port: 0,
        ..ServerConfig::default()
    })
    .await
    .expect("server starts")
}

async fn client(s: &ServerHandle) -> async_nats::Client {
    async_nats::connect(s.client_url()).await.expect("connect")
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message in time")
        .expect("subscription open")
}

async fn nothing(sub: &mut async_nats::Subscriber) {
    let r = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(r.is_err(), "unexpected message {r:?}");
}

#[tokio::test]
async fn publish_subscribe_with_wildcards() {
    let s = server().await;
    let c = client(&s).await;
    let mut exact = c.subscribe("a.b.c").await.expect("sub");
    let mut star = c.subscribe("a.*.c").await.expect("sub");
    let mut gt = c.subscribe("a.>").await.expect("sub");
    c.flush().await.expect("flush");
    c.publish("a.b.c", Bytes::from_static(b"one"))
        .await
        .expect("pub");
    c.publish("a.x", Bytes::from_static(b"two"))
        .await
        .expect("pub");
    c.flush().await.expect("flush");
    assert_eq!(next(&mut exact).await.payload, "one");
    assert_eq!(next(&mut star).await.payload, "one");
    assert_eq!(next(&mut gt).await.payload, "one");
    assert_eq!(next(&mut gt).await.payload, "two");
    nothing(&mut exact).await;
    nothing(&mut star).await;
}

#[tokio::test]
async fn queue_group_delivers_each_message_once() {
    let s = server().await;
    let c = client(&s).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(
            c.queue_subscribe("work", "workers".to_owned())
                .await
                .expect("qsub"),
        );
    }
    let mut plain = c.subscribe("work").await.expect("sub");
    c.flush().await.expect("flush");
    for i in 0..30 {
        c.publish("work", Bytes::from(i.to_string()))
            .await
            .expect("pub");
    }
    c.flush().await.expect("flush");
    let mut total = 0;
    for m in &mut members {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), m.next()).await {
            total += 1;
        }
    }
    assert_eq!(total, 30, "each message to exactly one member");
    for _ in 0..30 {
        next(&mut plain).await;
    }
}

#[tokio::test]
async fn request_reply_and_no_responders() {
    let s = server().await;
    let responder = client(&s).await;
    let requester = client(&s).await;
    let mut service = responder.subscribe("svc.echo").await.expect("sub");
    responder.flush().await.expect("flush");
    let task = tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(reply) = m.reply {
                responder.publish(reply, m.payload).await.expect("reply");
                responder.flush().await.expect("flush");
            }
        }
    });
    let answer = requester
        .request("svc.echo", Bytes::from_static(b"ping"))
        .await
        .expect("request answered");
    assert_eq!(answer.payload, "ping");
    let err = requester
        .request("svc.nobody", Bytes::from_static(b"?"))
        .await
        .expect_err("no responders");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    task.abort();
}

#[tokio::test]
async fn headers_pass_through() {
    let s = server().await;
    let c = client(&s).await;
    let mut sub = c.subscribe("h").await.expect("sub");
    c.flush().await.expect("flush");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "abc");
    headers.insert("X-Multi", "1");
    headers.append("X-Multi", "2");
    c.publish_with_headers("h", headers, Bytes::from_static(b"body"))
        .await
        .expect("pub");
    let m = next(&mut sub).await;
    let h = m.headers.expect("headers");
    assert_eq!(h.get("Nats-Msg-Id").map(|v| v.as_str()), Some("abc"));
    assert_eq!(h.get_all("X-Multi").count(), 2);
    assert_eq!(m.payload, "body");
}

#[tokio::test]
async fn unsubscribe_after_max_messages() {
    let s = server().await;
    let c = client(&s).await;
    let mut sub = c.subscribe("m").await.expect("sub");
    sub.unsubscribe_after(2).await.expect("unsub after");
    c.flush().await.expect("flush");
    for _ in 0..5 {
        c.publish("m", Bytes::from_static(b"x")).await.expect("pub");
    }
    c.flush().await.expect("flush");
    next(&mut sub).await;
    next(&mut sub).await;
    let end = tokio::time::timeout(Duration::from_secs(2), sub.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "subscription ends after 2: {end:?}"
    );
}

#[tokio::test]
async fn drain_delivers_pending_then_closes() {
    let s = server().await;
    let c = client(&s).await;
    let mut sub = c.subscribe("d").await.expect("sub");
    c.flush().await.expect("flush");
    for _ in 0..10 {
        c.publish("d", Bytes::from_static(b"x")).await.expect("pub");
    }
    c.flush().await.expect("flush");
    sub.drain().await.expect("drain");
    let mut got = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
        got += 1;
    }
    assert_eq!(got, 10);
}

#[tokio::test]
async fn client_reconnects_after_a_server_restart_on_the_same_port() {
    let s = server().await;
    let addr = s.addr();
    let c = client(&s).await;
    let mut sub = c.subscribe("r").await.expect("sub");
    c.flush().await.expect("flush");
    s.shutdown(Duration::from_secs(2)).await;
    let s2 = start(ServerConfig {
        port: addr.port(),
        ..ServerConfig::default()
    })
    .await
    .expect("restart on the same port");
    // The client resubscribes on reconnect; publish until the message arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let _ = c.publish("r", Bytes::from_static(b"back")).await;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            assert_eq!(m.payload, "back");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no reconnect");
    }
    s2.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn echo_off_suppresses_own_messages() {
    let s = server().await;
    let quiet = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(s.client_url())
        .await
        .expect("connect");
    let mut own = quiet.subscribe("e").await.expect("sub");
    let other = client(&s).await;
    let mut theirs = other.subscribe("e").await.expect("sub");
    quiet.flush().await.expect("flush");
    other.flush().await.expect("flush");
    quiet
        .publish("e", Bytes::from_static(b"x"))
        .await
        .expect("pub");
    quiet.flush().await.expect("flush");
    next(&mut theirs).await;
    nothing(&mut own).await;
}
