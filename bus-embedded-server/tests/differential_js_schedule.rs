//! Message schedules (ADR-51, `allow_msg_schedules`) are not built: a
//! stream asking for them is refused (tested in `compat_js_messages.rs`),
//! and what a stream without them does with schedule headers is checked
//! here against nats-server 2.15.1; the harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![(
        "schedules: headers on a stream without schedules",
        vec![
            create("N", r#""subjects":["n.>"]"#),
            raw("n.s", "x")
                .hdr("Nats-Schedule", "@at 2099-01-01T00:00:00Z")
                .hdr("Nats-Schedule-Target", "n.t"),
            raw("n.s", "x").hdr("Nats-Schedule", "@every 1s"),
            raw("n.s", "x").hdr("Nats-Schedule", ""),
            raw("n.s", "x").hdr("Nats-Schedule-Target", "n.t"),
            raw("n.s", "x").hdr("Nats-Schedule-TTL", "5s"),
            raw("n.s", "x").hdr("Nats-Schedule-Source", "n.src"),
            raw("n.s", "x").hdr("Nats-Schedule-Rollup", "sub"),
            raw("n.s", "x").hdr("Nats-Scheduler", "n.s"),
            raw("n.s", "x").hdr("Nats-Schedule-Next", "purge"),
            raw("n.s", "x").hdr("Nats-Scheduler", ""),
            api("STREAM.INFO.N", ""),
        ],
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_headers_without_schedules_match_nats_server() {
    check(scenarios()).await;
}
