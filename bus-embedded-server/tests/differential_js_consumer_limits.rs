//! Differential tests of a stream's `consumer_limits` against nats-server
//! 2.15.1: the defaults and ceilings it gives consumers, and a stream
//! update that would break an existing consumer. The harness is
//! `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![(
        "consumer_limits: defaults, ceilings and updates",
        vec![
            create(
                "L",
                r#""subjects":["l.>"],"consumer_limits":{"max_ack_pending":10,"inactive_threshold":5000000000}"#,
            ),
            api(
                "CONSUMER.CREATE.L.D",
                r#"{"stream_name":"L","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
            ),
            api(
                "CONSUMER.CREATE.L.OVER",
                r#"{"stream_name":"L","config":{"durable_name":"OVER","ack_policy":"explicit","max_ack_pending":20}}"#,
            ),
            api(
                "CONSUMER.CREATE.L.IDLE",
                r#"{"stream_name":"L","config":{"durable_name":"IDLE","ack_policy":"explicit","inactive_threshold":9000000000}}"#,
            ),
            api(
                "CONSUMER.CREATE.L.OK",
                r#"{"stream_name":"L","config":{"durable_name":"OK","ack_policy":"explicit","max_ack_pending":5,"inactive_threshold":1000000000}}"#,
            ),
            // One consumer over the new limit: nats-server lists several in
            // its map's (random) order, so a scenario with two would not be
            // repeatable.
            api(
                "STREAM.UPDATE.L",
                r#"{"name":"L","subjects":["l.>"],"consumer_limits":{"max_ack_pending":7}}"#,
            ),
            api(
                "STREAM.UPDATE.L",
                r#"{"name":"L","subjects":["l.>"],"consumer_limits":{"max_ack_pending":50}}"#,
            ),
            api("STREAM.INFO.L", ""),
        ],
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_consumer_limits_match_nats_server() {
    check(scenarios()).await;
}
