//! Differential tests of the versioning stamps in stream and consumer
//! metadata (nats-server 2.11+, ADR-44) against nats-server 2.15.1:
//! `_nats.req.level` (the API level the config needs, stored, compared
//! as is), `_nats.ver` and `_nats.level` (the server's, shown in create,
//! update and info answers only; the harness masks their values, not
//! their presence). The harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "stream metadata: the level each feature needs, server keys in answers only",
            vec![
                create("P", r#""subjects":["p"]"#),
                api("STREAM.INFO.P", ""),
                create("T", r#""subjects":["t"],"allow_msg_ttl":true"#),
                create(
                    "T2",
                    r#""subjects":["t2"],"allow_msg_ttl":true,"subject_delete_marker_ttl":2000000000"#,
                ),
                create("A", r#""subjects":["a"],"allow_atomic":true"#),
                create("C", r#""subjects":["c"],"allow_msg_counter":true"#),
                create("SC", r#""subjects":["sc.>"],"allow_msg_schedules":true"#),
                create("B", r#""subjects":["b"],"allow_batched":true"#),
                create(
                    "M",
                    r#""subjects":["m"],"storage":"memory","allow_msg_ttl":true"#,
                ),
                api("STREAM.LIST", "{}"),
                api("STREAM.NAMES", "{}"),
            ],
        ),
        (
            "stream metadata: a request's own _nats keys are overwritten or dropped, others kept",
            vec![
                create(
                    "U",
                    r#""subjects":["u"],"metadata":{"x":"1","_nats.req.level":"9","_nats.ver":"0.0.1","_nats.level":"77","_nats.other":"z"}"#,
                ),
                api("STREAM.INFO.U", ""),
                api("STREAM.LIST", "{}"),
                // The same config again, whatever it says its level is.
                create("T", r#""subjects":["t"],"allow_msg_ttl":true"#),
                create(
                    "T",
                    r#""subjects":["t"],"allow_msg_ttl":true,"metadata":{"_nats.req.level":"0"}"#,
                ),
                create(
                    "T",
                    r#""subjects":["t"],"allow_msg_ttl":true,"metadata":{"_nats.ver":"1.0.0","_nats.level":"1"}"#,
                ),
                // User metadata does make it differ.
                create(
                    "T",
                    r#""subjects":["t"],"allow_msg_ttl":true,"metadata":{"x":"y"}"#,
                ),
            ],
        ),
        (
            "stream metadata: an update that adds a feature raises the level",
            vec![
                create("P", r#""subjects":["p"]"#),
                api(
                    "STREAM.UPDATE.P",
                    r#"{"name":"P","subjects":["p"],"allow_msg_ttl":true}"#,
                ),
                api("STREAM.INFO.P", ""),
                api(
                    "STREAM.UPDATE.P",
                    r#"{"name":"P","subjects":["p"],"allow_msg_ttl":true,"allow_atomic":true,"metadata":{"k":"v","_nats.req.level":"0"}}"#,
                ),
                api(
                    "STREAM.UPDATE.P",
                    r#"{"name":"P","subjects":["p"],"allow_msg_ttl":true,"allow_atomic":true,"allow_batched":true}"#,
                ),
                api("STREAM.LIST", "{}"),
                // A refused update leaves the stored level alone.
                api(
                    "STREAM.UPDATE.P",
                    r#"{"name":"P","subjects":["p"],"allow_msg_ttl":false}"#,
                ),
                api("STREAM.INFO.P", ""),
            ],
        ),
        (
            "consumer metadata: pause and priority groups need level 1, lists show the stored keys",
            vec![
                create("P", r#""subjects":["p"]"#),
                api(
                    "CONSUMER.CREATE.P.c1",
                    r#"{"stream_name":"P","config":{"durable_name":"c1","ack_policy":"explicit"}}"#,
                ),
                api("CONSUMER.INFO.P.c1", ""),
                api(
                    "CONSUMER.CREATE.P.c2",
                    r#"{"stream_name":"P","config":{"durable_name":"c2","ack_policy":"explicit","priority_policy":"pinned_client","priority_groups":["g"],"priority_timeout":60000000000}}"#,
                ),
                api(
                    "CONSUMER.CREATE.P.c3",
                    r#"{"stream_name":"P","config":{"durable_name":"c3","ack_policy":"explicit","priority_policy":"overflow","priority_groups":["g"]}}"#,
                ),
                api(
                    "CONSUMER.CREATE.P.c4",
                    r#"{"stream_name":"P","config":{"durable_name":"c4","ack_policy":"explicit","pause_until":"2999-01-01T00:00:00Z"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.P.c5",
                    r#"{"stream_name":"P","config":{"durable_name":"c5","ack_policy":"explicit","pause_until":"2000-01-01T00:00:00Z"}}"#,
                ),
                api(
                    "CONSUMER.DURABLE.CREATE.P.d1",
                    r#"{"stream_name":"P","config":{"durable_name":"d1","ack_policy":"explicit"}}"#,
                ),
                api("CONSUMER.LIST.P", "{}"),
                api("CONSUMER.NAMES.P", "{}"),
            ],
        ),
        (
            "consumer metadata: pause and resume restamp, an update keeps the pause; own _nats keys do not count",
            vec![
                create("P", r#""subjects":["p"]"#),
                api(
                    "CONSUMER.CREATE.P.c1",
                    r#"{"stream_name":"P","config":{"durable_name":"c1","ack_policy":"explicit"}}"#,
                ),
                api(
                    "CONSUMER.PAUSE.P.c1",
                    r#"{"pause_until":"2999-01-01T00:00:00Z"}"#,
                ),
                api("CONSUMER.INFO.P.c1", ""),
                api("CONSUMER.PAUSE.P.c1", ""),
                api("CONSUMER.INFO.P.c1", ""),
                api(
                    "CONSUMER.CREATE.P.c1",
                    r#"{"stream_name":"P","action":"update","config":{"durable_name":"c1","ack_policy":"explicit","pause_until":"2999-01-01T00:00:00Z"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.P.c4",
                    r#"{"stream_name":"P","config":{"durable_name":"c4","ack_policy":"explicit","pause_until":"2999-01-01T00:00:00Z"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.P.c4",
                    r#"{"stream_name":"P","action":"update","config":{"durable_name":"c4","ack_policy":"explicit","description":"d"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.P.c6",
                    r#"{"stream_name":"P","config":{"durable_name":"c6","ack_policy":"explicit","metadata":{"a":"b","_nats.req.level":"3","_nats.ver":"x","_nats.mine":"y"}}}"#,
                ),
                api("CONSUMER.INFO.P.c6", ""),
                api(
                    "CONSUMER.CREATE.P.c6",
                    r#"{"stream_name":"P","action":"create","config":{"durable_name":"c6","ack_policy":"explicit","metadata":{"a":"b","_nats.mine":"y"}}}"#,
                ),
                api(
                    "CONSUMER.CREATE.P.c6",
                    r#"{"stream_name":"P","action":"create","config":{"durable_name":"c6","ack_policy":"explicit","metadata":{"a":"c"}}}"#,
                ),
                api("CONSUMER.RESET.P.c6", ""),
                api("CONSUMER.LIST.P", "{}"),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_consumer_metadata_stamps_match_nats_server() {
    check(scenarios()).await;
}
