//! Differential tests of what interest and work-queue retention keep at
//! publish time, against nats-server 2.15.1; the harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![(
        "retention: a work queue keeps what no consumer matches yet, an interest stream does not",
        vec![
            create("WQ", r#""subjects":["wq.>"],"retention":"workqueue""#),
            api(
                "CONSUMER.CREATE.WQ.C",
                r#"{"stream_name":"WQ","config":{"durable_name":"C","ack_policy":"explicit","filter_subject":"wq.a"}}"#,
            ),
            raw("wq.a", "x"),
            raw("wq.b", "x"),
            api("STREAM.INFO.WQ", ""),
            create("WQ0", r#""subjects":["wq0.>"],"retention":"workqueue""#),
            raw("wq0.a", "x"),
            create("I0", r#""subjects":["i0.>"],"retention":"interest""#),
            raw("i0.a", "x"),
            api(
                "CONSUMER.CREATE.I0.C",
                r#"{"stream_name":"I0","config":{"durable_name":"C","ack_policy":"explicit","filter_subject":"i0.a"}}"#,
            ),
            raw("i0.b", "x"),
            raw("i0.a", "x"),
            api("STREAM.INFO.WQ0", ""),
            api("STREAM.INFO.I0", ""),
        ],
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_at_publish_matches_nats_server() {
    check(scenarios()).await;
}
