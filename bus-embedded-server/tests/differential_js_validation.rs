//! Differential tests of stream configuration validation against
//! nats-server 2.15.1 (issue #13's validation cases); the harness is
//! `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![(
        "discard_new_per_subject needs discard new and max_msgs_per_subject",
        vec![
            create(
                "V1",
                r#""subjects":["v1.>"],"discard":"new","discard_new_per_subject":true"#,
            ),
            create(
                "V2",
                r#""subjects":["v2.>"],"discard":"old","discard_new_per_subject":true,"max_msgs_per_subject":1"#,
            ),
            create(
                "V4",
                r#""subjects":["v4.>"],"discard_new_per_subject":true"#,
            ),
            create(
                "V3",
                r#""subjects":["v3.>"],"discard":"new","discard_new_per_subject":true,"max_msgs_per_subject":1"#,
            ),
            raw("v3.a", "1"),
            raw("v3.a", "2"),
            raw("v3.b", "3"),
            api(
                "STREAM.UPDATE.V3",
                r#"{"name":"V3","subjects":["v3.>"],"discard":"new","discard_new_per_subject":true,"max_msgs_per_subject":0}"#,
            ),
        ],
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_config_validation_matches_nats_server() {
    check(scenarios()).await;
}
