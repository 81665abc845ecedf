//! Differential tests of counter streams (ADR-49: `allow_msg_counter`,
//! `Nats-Incr`) against nats-server 2.15.1; the harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "counter: stream options and their checks",
            vec![
                create("C", r#""subjects":["c.>"],"allow_msg_counter":true"#),
                api("STREAM.INFO.C", ""),
                create(
                    "C2",
                    r#""subjects":["c2.>"],"allow_msg_counter":true,"discard":"new""#,
                ),
                create(
                    "C3",
                    r#""subjects":["c3.>"],"allow_msg_counter":true,"allow_msg_ttl":true"#,
                ),
                create(
                    "C4",
                    r#""subjects":["c4.>"],"allow_msg_counter":true,"retention":"workqueue""#,
                ),
                create(
                    "C5",
                    r#""subjects":["c5.>"],"allow_msg_counter":true,"retention":"interest""#,
                ),
                create(
                    "C6",
                    r#""subjects":["c6.>"],"allow_msg_counter":true,"allow_atomic":true"#,
                ),
                create(
                    "C7",
                    r#""subjects":["c7.>"],"allow_msg_counter":true,"subject_delete_marker_ttl":1000000000"#,
                ),
                create(
                    "C7b",
                    r#""subjects":["c7b.>"],"allow_msg_counter":true,"allow_msg_ttl":true,"subject_delete_marker_ttl":1000000000"#,
                ),
                create(
                    "C8",
                    r#""subjects":["c8.>"],"allow_msg_counter":true,"allow_rollup_hdrs":true"#,
                ),
                create(
                    "C9",
                    r#""subjects":["c9.>"],"allow_msg_counter":true,"max_msgs_per_subject":1"#,
                ),
                api(
                    "STREAM.UPDATE.C",
                    r#"{"name":"C","subjects":["c.>"],"allow_msg_counter":false}"#,
                ),
                create("N", r#""subjects":["n.>"]"#),
                api(
                    "STREAM.UPDATE.N",
                    r#"{"name":"N","subjects":["n.>"],"allow_msg_counter":true}"#,
                ),
            ],
        ),
        (
            "counter: increments, totals, refusals",
            vec![
                create("C", r#""subjects":["c.>"],"allow_msg_counter":true"#),
                raw("c.a", "").hdr("Nats-Incr", "1"),
                raw("c.a", "").hdr("Nats-Incr", "+5"),
                raw("c.a", "").hdr("Nats-Incr", "-10"),
                raw("c.a", "").hdr("Nats-Incr", "0"),
                raw("c.b", "").hdr("Nats-Incr", "123456789012345678901234567890"),
                raw("c.b", "").hdr("Nats-Incr", "123456789012345678901234567890"),
                raw("c.a", "payload").hdr("Nats-Incr", "1"),
                raw("c.a", ""),
                raw("c.a", "x"),
                raw("c.a", "").hdr("Nats-Incr", ""),
                raw("c.a", "").hdr("Nats-Incr", "x"),
                raw("c.a", "").hdr("Nats-Incr", "1.5"),
                raw("c.a", "").hdr("Nats-Incr", " 2"),
                raw("c.a", "")
                    .hdr("Nats-Incr", "1")
                    .hdr("Nats-Msg-Id", "m1"),
                raw("c.a", "")
                    .hdr("Nats-Incr", "1")
                    .hdr("Nats-Msg-Id", "m1"),
                raw("c.a", "")
                    .hdr("Nats-Incr", "1")
                    .hdr("Nats-Expected-Stream", "C"),
                raw("c.a", "")
                    .hdr("Nats-Incr", "1")
                    .hdr("Nats-Expected-Last-Sequence", "8"),
                raw("c.a", "")
                    .hdr("Nats-Incr", "1")
                    .hdr("Nats-Expected-Last-Subject-Sequence", "8"),
                raw("c.a", "")
                    .hdr("Nats-Incr", "1")
                    .hdr("Nats-Expected-Last-Msg-Id", "m1"),
                raw("c.a", "")
                    .hdr("Nats-Incr", "1")
                    .hdr("Nats-Rollup", "sub"),
                raw("c.a", "").hdr("Nats-Incr", "1").hdr("Nats-TTL", "1m"),
                raw("c.a", "").hdr("Nats-Incr", "1").hdr("Other", "kept"),
                api("STREAM.INFO.C", ""),
                api("STREAM.MSG.GET.C", r#"{"last_by_subj":"c.a"}"#),
                api("STREAM.MSG.GET.C", r#"{"last_by_subj":"c.b"}"#),
                api("STREAM.MSG.DELETE.C", r#"{"seq":1}"#),
                api("STREAM.PURGE.C", r#"{"filter":"c.b"}"#),
                raw("c.b", "").hdr("Nats-Incr", "2"),
                create("N", r#""subjects":["n.>"]"#),
                raw("n.a", "").hdr("Nats-Incr", "1"),
                raw("n.a", "").hdr("Nats-Incr", "x"),
            ],
        ),
        (
            "counter: increments inside an atomic batch",
            vec![
                create(
                    "C",
                    r#""subjects":["c.>"],"allow_msg_counter":true,"allow_atomic":true"#,
                ),
                raw("c.a", "").hdr("Nats-Incr", "1"),
                batch("c.a", "b1", 1, None).hdr("Nats-Incr", "2"),
                batch("c.a", "b1", 2, Some("1")).hdr("Nats-Incr", "3"),
                batch("c.a", "b2", 1, Some("1")),
                raw("c.a", "")
                    .hdr("Nats-Batch-Id", "b3")
                    .hdr("Nats-Batch-Sequence", "1")
                    .hdr("Nats-Incr", "2"),
                raw("c.b", "")
                    .hdr("Nats-Batch-Id", "b3")
                    .hdr("Nats-Batch-Sequence", "2")
                    .hdr("Nats-Incr", "7"),
                raw("c.a", "")
                    .hdr("Nats-Batch-Id", "b3")
                    .hdr("Nats-Batch-Sequence", "3")
                    .hdr("Nats-Batch-Commit", "1")
                    .hdr("Nats-Incr", "3"),
                raw("c.a", "")
                    .hdr("Nats-Batch-Id", "b4")
                    .hdr("Nats-Batch-Sequence", "1")
                    .hdr("Nats-Batch-Commit", "1")
                    .hdr("Nats-Incr", "x"),
                api("STREAM.INFO.C", ""),
                api("STREAM.MSG.GET.C", r#"{"seq":2}"#),
                api("STREAM.MSG.GET.C", r#"{"seq":3}"#),
                api("STREAM.MSG.GET.C", r#"{"seq":4}"#),
                raw("c.a", "").hdr("Nats-Incr", "1"),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_counters_match_nats_server() {
    check(scenarios()).await;
}
