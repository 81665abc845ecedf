//! Differential tests of `persist_mode` (ADR-56, nats-server 2.12) against
//! nats-server 2.15.1: which values a stream config takes, where `async`
//! is refused, that it is fixed at create, how info shows it and the API
//! level it needs. The harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "persist mode: accepted values and how info shows them",
            vec![
                create("D", r#""subjects":["d"],"persist_mode":"default""#),
                create("E", r#""subjects":["e"],"persist_mode":"""#),
                create("A", r#""subjects":["a"],"persist_mode":"async""#),
                api("STREAM.INFO.A", ""),
                raw("a", "stored, acknowledged"),
                api("STREAM.INFO.A", ""),
                create(
                    "MD",
                    r#""subjects":["md"],"persist_mode":"default","storage":"memory""#,
                ),
                create(
                    "AB",
                    r#""subjects":["ab"],"persist_mode":"async","allow_batched":true"#,
                ),
                create(
                    "AW",
                    r#""subjects":["aw"],"persist_mode":"async","retention":"workqueue""#,
                ),
                api("STREAM.LIST", "{}"),
                create("AM", r#""mirror":{"name":"A"},"persist_mode":"async""#),
            ],
        ),
        (
            "persist mode: invalid values and where async is refused",
            vec![
                create("B1", r#""subjects":["b1"],"persist_mode":"ASYNC""#),
                create("B2", r#""subjects":["b2"],"persist_mode":"bogus""#),
                create("B3", r#""subjects":["b3"],"persist_mode":1"#),
                create("B4", r#""subjects":["b4"],"persist_mode":null"#),
                create(
                    "M",
                    r#""subjects":["m"],"persist_mode":"async","storage":"memory""#,
                ),
                create(
                    "R",
                    r#""subjects":["r"],"persist_mode":"async","num_replicas":3"#,
                ),
                create(
                    "MR",
                    r#""subjects":["mr"],"persist_mode":"async","storage":"memory","num_replicas":3"#,
                ),
                create(
                    "X",
                    r#""subjects":["x"],"persist_mode":"async","allow_atomic":true"#,
                ),
                api("STREAM.NAMES", "{}"),
            ],
        ),
        (
            "persist mode: fixed at create",
            vec![
                create("N", r#""subjects":["n"]"#),
                create("A", r#""subjects":["a"],"persist_mode":"async""#),
                api(
                    "STREAM.UPDATE.N",
                    r#"{"name":"N","subjects":["n"],"persist_mode":"async"}"#,
                ),
                api(
                    "STREAM.UPDATE.A",
                    r#"{"name":"A","subjects":["a"],"persist_mode":"default"}"#,
                ),
                api("STREAM.UPDATE.A", r#"{"name":"A","subjects":["a"]}"#),
                api(
                    "STREAM.UPDATE.A",
                    r#"{"name":"A","subjects":["a"],"persist_mode":"async","max_msgs":5}"#,
                ),
                api(
                    "STREAM.UPDATE.N",
                    r#"{"name":"N","subjects":["n"],"persist_mode":"default"}"#,
                ),
                // Create again: the same mode is the same stream.
                create(
                    "A",
                    r#""subjects":["a"],"persist_mode":"async","max_msgs":5"#,
                ),
                create("A", r#""subjects":["a"],"max_msgs":5"#),
                create("N", r#""subjects":["n"],"persist_mode":"default""#),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_mode_config_matches_nats_server() {
    check(scenarios()).await;
}
