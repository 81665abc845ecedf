//! Differential tests of pull requests against a consumer's request limits
//! (`max_waiting`, `max_batch`, `max_expires`, `max_bytes`) and of what a
//! fetch returns when fewer messages than asked are pending or some are
//! being redelivered, against nats-server 2.15.1. The harness is
//! `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "pull request limits as clients set and read them",
            concat(vec![
                vec![
                    create("P", r#""subjects":["p.>"]"#),
                    api(
                        "CONSUMER.CREATE.P.C",
                        r#"{"stream_name":"P","config":{"durable_name":"C","ack_policy":"explicit","max_waiting":2,"max_batch":3,"max_expires":2000000000,"max_bytes":1000}}"#,
                    ),
                ],
                publish_n("p.x", 5),
                vec![
                    pull("P", "C", r#"{"batch":4,"no_wait":true}"#).collect(300),
                    pull("P", "C", r#"{"batch":2,"expires":3000000000}"#).collect(300),
                    pull("P", "C", r#"{"batch":2,"max_bytes":2000,"no_wait":true}"#).collect(300),
                    pull("P", "C", r#"{"batch":3,"no_wait":true}"#).collect(300),
                    pull("P", "C", r#"{"batch":3,"no_wait":true}"#).collect(300),
                    api("CONSUMER.INFO.P.C", ""),
                ],
            ]),
        ),
        (
            "a fetch with fewer pending than asked, and redeliveries first",
            concat(vec![
                vec![
                    create("R", r#""subjects":["r.>"]"#),
                    api(
                        "CONSUMER.CREATE.R.C",
                        r#"{"stream_name":"R","config":{"durable_name":"C","ack_policy":"explicit","ack_wait":500000000}}"#,
                    ),
                ],
                publish_n("r.x", 3),
                vec![
                    pull("R", "C", r#"{"batch":2,"no_wait":true}"#).collect(300),
                    sleep(700),
                    pull("R", "C", r#"{"batch":5,"no_wait":true}"#).collect(300),
                    pull("R", "C", r#"{"batch":5,"expires":400000000}"#).collect(700),
                    api("CONSUMER.INFO.R.C", ""),
                ],
            ]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_limits_and_short_fetches_match_nats_server() {
    check(scenarios()).await;
}
