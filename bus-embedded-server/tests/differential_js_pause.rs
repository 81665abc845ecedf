//! Differential tests of consumer pause and resume (nats-server 2.11)
//! against nats-server 2.15.1: `pause_until` in a consumer's config, the
//! `CONSUMER.PAUSE` call, what a paused consumer delivers (nothing) and
//! what its info says. The harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![(
        "consumer pause and resume",
        concat(vec![
            vec![create("P", r#""subjects":["p.>"]"#)],
            publish_n("p.x", 2),
            vec![
                api(
                    "CONSUMER.CREATE.P.C",
                    r#"{"stream_name":"P","config":{"durable_name":"C","ack_policy":"explicit","pause_until":"2999-01-01T00:00:00Z"}}"#,
                ),
                pull("P", "C", r#"{"batch":1,"no_wait":true}"#).collect(300),
                api("CONSUMER.PAUSE.P.C", ""),
                pull("P", "C", r#"{"batch":1,"no_wait":true}"#).collect(300),
                api(
                    "CONSUMER.PAUSE.P.C",
                    r#"{"pause_until":"2001-01-01T00:00:00Z"}"#,
                ),
                api(
                    "CONSUMER.PAUSE.P.C",
                    r#"{"pause_until":"2999-01-01T00:00:00Z"}"#,
                ),
                api("CONSUMER.INFO.P.C", ""),
                pull("P", "C", r#"{"batch":1,"expires":500000000}"#).collect(900),
                api(
                    "CONSUMER.PAUSE.P.NOPE",
                    r#"{"pause_until":"2999-01-01T00:00:00Z"}"#,
                ),
                api("CONSUMER.PAUSE.P.C", "{bad"),
            ],
        ]),
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_pause_matches_nats_server() {
    check(scenarios()).await;
}
