//! Differential tests of idle heartbeats on pull requests against
//! nats-server 2.15.1: a waiting pull gets `100 Idle Heartbeat` statuses
//! while nothing arrives (what a client's missed-heartbeat check relies
//! on) and the request's end. The harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![(
        "pull with idle heartbeats",
        vec![
            create("H", r#""subjects":["h.>"]"#),
            api(
                "CONSUMER.CREATE.H.C",
                r#"{"stream_name":"H","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
            ),
            pull(
                "H",
                "C",
                r#"{"batch":1,"expires":1600000000,"idle_heartbeat":500000000}"#,
            )
            .collect(2200),
            api(
                "CONSUMER.MSG.NEXT.H.C",
                r#"{"batch":1,"expires":1000000000,"idle_heartbeat":2000000000}"#,
            ),
        ],
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_idle_heartbeats_match_nats_server() {
    check(scenarios()).await;
}
