//! Differential tests of atomic batch publish (`allow_atomic`,
//! `Nats-Batch-*`, nats-server 2.12 semantics) against nats-server 2.15.1;
//! the harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        // ------------------------------------------------ atomic batch publish
        (
            "atomic batches: commit, eob, gaps and the batch's own errors",
            vec![
                create("A", r#""subjects":["a.>"],"allow_atomic":true"#),
                create("N", r#""subjects":["n.>"]"#),
                batch("n.x", "b1", 1, Some("1")),
                batch("a.x", "b2", 1, None),
                batch("a.y", "b2", 2, Some("1")),
                batch("a.z", "b3", 1, Some("1")),
                batch("a.x", "b4", 1, None),
                batch("a.x", "b4", 3, Some("1")),
                batch("a.x", "b5", 2, Some("1")),
                batch("a.x", &"x".repeat(65), 1, Some("1")),
                batch("a.x", &"x".repeat(64), 1, Some("1")),
                batch("a.x", "b8", 1, Some("yes")),
                batch("a.x", "b8b", 1, None),
                batch("a.x", "b8b", 2, Some("eob")),
                batch("a.x", "b8c", 1, Some("eob")),
                batch("a.x", "b9", 1, Some("1")).hdr("Nats-Expected-Last-Msg-Id", "zz"),
                raw("a.x", "no batch sequence")
                    .hdr("Nats-Batch-Id", "b10")
                    .hdr("Nats-Batch-Commit", "1"),
                batch("a.x", "b11", 1, None),
                batch("a.x", "b11", 1, None),
                batch("a.x", "b11", 2, Some("1")),
                batch("a.x", "b12", 1, None),
                batch("a.x", "b12", 2, None).hdr("Nats-Batch-Sequence", "x"),
                batch("a.x", "b12", 3, Some("1")),
                batch("a.x", "b13", 1, None).no_reply(),
                batch("a.x", "b13", 2, Some("1")),
                api("STREAM.INFO.A", ""),
                api("STREAM.MSG.GET.A", r#"{"seq":2}"#),
            ],
        ),
        (
            "atomic batches: expectations are checked as if the batch's messages before were stored",
            vec![
                create("A", r#""subjects":["a.>"],"allow_atomic":true"#),
                raw("a.s", "stored").hdr("Nats-Msg-Id", "stored-id"),
                batch("a.x", "e1", 1, None).hdr("Nats-Expected-Last-Sequence", "1"),
                batch("a.x", "e1", 2, Some("1")),
                batch("a.x", "e2", 1, None).hdr("Nats-Expected-Last-Sequence", "1"),
                batch("a.x", "e2", 2, Some("1")),
                batch("a.x", "e3", 1, None),
                batch("a.x", "e3", 2, Some("1")).hdr("Nats-Expected-Last-Sequence", "4"),
                batch("a.x", "e3b", 1, None),
                batch("a.x", "e3b", 2, Some("1")).hdr("Nats-Expected-Last-Sequence", "5"),
                batch("a.agg.1", "e4", 1, None).hdr("Nats-Expected-Last-Subject-Sequence", "0"),
                batch("a.ev", "e4", 2, Some("1")),
                batch("a.agg.1", "e5", 1, None).hdr("Nats-Expected-Last-Subject-Sequence", "0"),
                batch("a.ev", "e5", 2, Some("1")),
                batch("a.m", "e6", 1, None),
                batch("a.m", "e6", 2, Some("1")).hdr("Nats-Expected-Last-Subject-Sequence", "0"),
                batch("a.o.1", "e7", 1, None)
                    .hdr("Nats-Expected-Last-Subject-Sequence", "0")
                    .hdr("Nats-Expected-Last-Subject-Sequence-Subject", "a.o.*"),
                batch("a.o.2", "e7", 2, Some("1"))
                    .hdr("Nats-Expected-Last-Subject-Sequence", "0")
                    .hdr("Nats-Expected-Last-Subject-Sequence-Subject", "a.o.*"),
                batch("a.x", "e8", 1, None).hdr("Nats-Msg-Id", "d1"),
                batch("a.x", "e8", 2, Some("1")).hdr("Nats-Msg-Id", "d1"),
                batch("a.x", "e9", 1, None).hdr("Nats-Msg-Id", "stored-id"),
                batch("a.x", "e9", 2, Some("1")).hdr("Nats-Msg-Id", "d9"),
                batch("a.x", "e10", 1, Some("1")).hdr("Nats-TTL", "10s"),
                raw("a.w.1", "plain")
                    .hdr("Nats-Expected-Last-Subject-Sequence", "0")
                    .hdr("Nats-Expected-Last-Subject-Sequence-Subject", "a.w.*"),
                raw("a.w.2", "plain")
                    .hdr("Nats-Expected-Last-Subject-Sequence", "0")
                    .hdr("Nats-Expected-Last-Subject-Sequence-Subject", "a.w.*"),
                api("STREAM.INFO.A", ""),
            ],
        ),
        (
            "atomic batches: limits, rollups, too large and too many in flight",
            concat(vec![
                vec![
                    create(
                        "R",
                        r#""subjects":["r.>"],"allow_atomic":true,"allow_rollup_hdrs":true"#,
                    ),
                    batch("r.x", "r1", 1, None),
                    batch("r.x", "r1", 2, Some("1")).hdr("Nats-Rollup", "sub"),
                    create(
                        "L",
                        r#""subjects":["l.>"],"allow_atomic":true,"max_msgs":3,"discard":"new""#,
                    ),
                    batch("l.x", "l1", 1, None),
                    batch("l.x", "l1", 2, None),
                    batch("l.x", "l1", 3, None),
                    batch("l.x", "l1", 4, Some("1")),
                    create(
                        "P",
                        r#""subjects":["p.>"],"allow_atomic":true,"max_msgs_per_subject":1,"discard":"new","discard_new_per_subject":true"#,
                    ),
                    batch("p.x", "p1", 1, None),
                    batch("p.x", "p1", 2, Some("1")),
                    create("B", r#""subjects":["b.>"],"allow_atomic":true"#),
                ],
                (1..=1000)
                    .map(|i| batch("b.big", "big", i, None).no_reply())
                    .collect(),
                vec![batch("b.big", "big", 1001, Some("1"))],
                (1..=999)
                    .map(|i| batch("b.big", "big2", i, None).no_reply())
                    .collect(),
                vec![batch("b.big", "big2", 1000, Some("1"))],
                (1..=51)
                    .map(|i| batch("b.x", &format!("inflight{i}"), 1, None))
                    .collect(),
                vec![
                    batch("b.x", "inflight51", 2, Some("1")),
                    batch("b.x", "inflight1", 2, Some("1")),
                    api("STREAM.INFO.B", ""),
                    api("STREAM.INFO.L", ""),
                    api("STREAM.INFO.P", ""),
                ],
            ]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_batch_publish_matches_nats_server() {
    check(scenarios()).await;
}
