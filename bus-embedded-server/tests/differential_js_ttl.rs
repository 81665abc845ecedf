//! Differential tests of per-message TTL (`allow_msg_ttl`, `Nats-TTL`) and
//! subject delete markers (`subject_delete_marker_ttl`, the KV "limit
//! markers") against nats-server 2.15.1; the harness is `js_diff/`.

mod js_diff;

use js_diff::*;
use serde_json::json;

const SEC: i64 = 1_000_000_000;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "ttl: stream options, their checks and what an update may change",
            vec![
                create("T", r#""subjects":["t.>"],"allow_msg_ttl":true"#),
                create(
                    "M1",
                    &format!(r#""subjects":["m1.>"],"subject_delete_marker_ttl":{}"#, SEC),
                ),
                create(
                    "M2",
                    r#""subjects":["m2.>"],"subject_delete_marker_ttl":500000000"#,
                ),
                create(
                    "M3",
                    r#""subjects":["m3.>"],"subject_delete_marker_ttl":-1"#,
                ),
                create(
                    "M4",
                    &format!(
                        r#""subjects":["m4.>"],"subject_delete_marker_ttl":{},"allow_rollup_hdrs":false,"deny_purge":true"#,
                        SEC
                    ),
                ),
                create(
                    "M5",
                    &format!(
                        r#""subjects":["m5.>"],"subject_delete_marker_ttl":{},"allow_msg_ttl":false"#,
                        SEC
                    ),
                ),
                api(
                    "STREAM.UPDATE.T",
                    r#"{"name":"T","subjects":["t.>"],"allow_msg_ttl":false}"#,
                ),
                api(
                    "STREAM.UPDATE.T",
                    &format!(
                        r#"{{"name":"T","subjects":["t.>"],"allow_msg_ttl":true,"subject_delete_marker_ttl":{}}}"#,
                        2 * SEC
                    ),
                ),
                api(
                    "STREAM.UPDATE.T",
                    r#"{"name":"T","subjects":["t.>"],"allow_msg_ttl":true,"subject_delete_marker_ttl":0}"#,
                ),
                create("N", r#""subjects":["n.>"]"#),
                api(
                    "STREAM.UPDATE.N",
                    r#"{"name":"N","subjects":["n.>"],"allow_msg_ttl":true}"#,
                ),
                api("STREAM.INFO.M1", ""),
            ],
        ),
        (
            "ttl: header values, refusals and what is stored",
            vec![
                create("N", r#""subjects":["n.>"]"#),
                raw("n.a", "x").hdr("Nats-TTL", "1s"),
                raw("n.a", "x").hdr("Nats-TTL", "never"),
                raw("n.a", "x").hdr("Nats-TTL", "bogus"),
                raw("n.a", "x").hdr("Nats-TTL", "0"),
                raw("n.a", "x").hdr("Nats-TTL", ""),
                create("T", r#""subjects":["t.>"],"allow_msg_ttl":true"#),
                raw("t.a", "x").hdr("Nats-TTL", "1m"),
                raw("t.a", "x").hdr("Nats-TTL", "1s"),
                raw("t.a", "x").hdr("Nats-TTL", "never"),
                raw("t.a", "x").hdr("Nats-TTL", "NEVER"),
                raw("t.a", "x").hdr("Nats-TTL", "30"),
                raw("t.a", "x").hdr("Nats-TTL", "1h2m"),
                raw("t.a", "x").hdr("Nats-TTL", "1.5s"),
                raw("t.a", "x").hdr("Nats-TTL", "500ms"),
                raw("t.a", "x").hdr("Nats-TTL", "0"),
                raw("t.a", "x").hdr("Nats-TTL", "-1"),
                raw("t.a", "x").hdr("Nats-TTL", "-1s"),
                raw("t.a", "x").hdr("Nats-TTL", "abc"),
                raw("t.a", "x").hdr("Nats-TTL", "1d"),
                raw("t.a", "x").hdr("Nats-TTL", ""),
                raw("t.a", "x").hdr("Nats-TTL", " 5s"),
                raw("t.a", "x").hdr("Nats-TTL", "00"),
                // Ten stored, the 1s and 1.5s ones expired (the next
                // expiry, " 5s", is seconds away).
                until(
                    api("STREAM.INFO.T", ""),
                    &[
                        ("/state/last_seq", json!(10)),
                        ("/state/messages", json!(8)),
                    ],
                ),
                api("STREAM.MSG.GET.T", r#"{"seq":1}"#),
                api("STREAM.MSG.GET.T", r#"{"seq":5}"#),
                api("STREAM.MSG.GET.T", r#"{"seq":6}"#),
            ],
        ),
        (
            // The 1s TTL ends at 1, max_age at 4: the state between is
            // waited for, then the one after.
            "ttl: messages expire, never outlives max_age, others stay",
            vec![
                create(
                    "T",
                    &format!(
                        r#""subjects":["t.>"],"allow_msg_ttl":true,"max_age":{}"#,
                        4 * SEC
                    ),
                ),
                raw("t.a", "short").hdr("Nats-TTL", "1s"),
                raw("t.b", "never").hdr("Nats-TTL", "never"),
                raw("t.c", "plain"),
                raw("t.d", "long").hdr("Nats-TTL", "1m"),
                until(
                    api("STREAM.INFO.T", ""),
                    &[
                        ("/state/first_seq", json!(2)),
                        ("/state/messages", json!(3)),
                    ],
                ),
                api("STREAM.MSG.GET.T", r#"{"seq":1}"#),
                until(api("STREAM.INFO.T", ""), &[("/state/messages", json!(1))]),
                api("STREAM.MSG.GET.T", r#"{"seq":2}"#),
                api("STREAM.MSG.GET.T", r#"{"seq":3}"#),
                api("STREAM.MSG.GET.T", r#"{"seq":4}"#),
            ],
        ),
        (
            // Timeline (seconds): TTL markers at 2 (living to 4), max_age
            // markers at 4 (living to 6), m.never kept: each of the three
            // states is waited for (it lasts two seconds), then looked at.
            "ttl: delete markers on max_age and TTL expiry, raised TTLs",
            vec![
                create(
                    "M",
                    &format!(
                        r#""subjects":["m.>"],"allow_msg_ttl":true,"max_age":{},"subject_delete_marker_ttl":{}"#,
                        4 * SEC,
                        2 * SEC
                    ),
                ),
                raw("m.aged", "1"),
                raw("m.two", "1"),
                raw("m.two", "2"),
                raw("m.raised", "x").hdr("Nats-TTL", "1s").hdr("Other", "y"),
                raw("m.ttl", "x").hdr("Nats-TTL", "2s"),
                raw("m.never", "x").hdr("Nats-TTL", "never"),
                api("STREAM.MSG.GET.M", r#"{"seq":4}"#),
                api("STREAM.MSG.GET.M", r#"{"seq":5}"#),
                until(
                    api("STREAM.INFO.M", ""),
                    &[("/state/last_seq", json!(8)), ("/state/messages", json!(6))],
                ),
                api("STREAM.MSG.GET.M", r#"{"last_by_subj":"m.raised"}"#),
                api("STREAM.MSG.GET.M", r#"{"last_by_subj":"m.ttl"}"#),
                until(
                    api("STREAM.INFO.M", ""),
                    &[
                        ("/state/first_seq", json!(6)),
                        ("/state/last_seq", json!(10)),
                        ("/state/messages", json!(3)),
                    ],
                ),
                api("STREAM.MSG.GET.M", r#"{"last_by_subj":"m.aged"}"#),
                api("STREAM.MSG.GET.M", r#"{"last_by_subj":"m.two"}"#),
                api("STREAM.MSG.GET.M", r#"{"last_by_subj":"m.ttl"}"#),
                until(
                    api("STREAM.INFO.M", ""),
                    &[
                        ("/state/last_seq", json!(10)),
                        ("/state/messages", json!(1)),
                    ],
                ),
                api("STREAM.MSG.GET.M", r#"{"last_by_subj":"m.never"}"#),
            ],
        ),
        (
            // A marker TTL shorter than max_age on a stream keeping one
            // message per subject: the TTL is not raised. The marker is
            // waited for; the clock stream C (max_age 4s, below the 5s a
            // raised TTL would give) must still hold its message then.
            "ttl: a TTL is not raised where one message per subject is kept",
            vec![
                create(
                    "K",
                    &format!(
                        r#""subjects":["k.>"],"max_msgs_per_subject":1,"subject_delete_marker_ttl":{}"#,
                        5 * SEC
                    ),
                ),
                create("C", &format!(r#""subjects":["c.>"],"max_age":{}"#, 4 * SEC)),
                raw("k.a", "x").hdr("Nats-TTL", "1s"),
                raw("c.x", "clock"),
                api("STREAM.MSG.GET.K", r#"{"seq":1}"#),
                until(
                    api("STREAM.MSG.GET.K", r#"{"last_by_subj":"k.a"}"#),
                    &[("/message/seq", json!(2))],
                ),
                api("STREAM.INFO.C", ""),
            ],
        ),
        (
            // m.ttl's 1s is raised to the 2s marker TTL: its marker lives
            // from 2 to 4 and is waited for.
            "ttl: markers are not left for deletes and purges; a consumer sees them",
            vec![
                create(
                    "M",
                    &format!(
                        r#""subjects":["m.>"],"subject_delete_marker_ttl":{}"#,
                        2 * SEC
                    ),
                ),
                api(
                    "CONSUMER.CREATE.M.C",
                    r#"{"stream_name":"M","config":{"durable_name":"C","ack_policy":"none","deliver_policy":"all"}}"#,
                ),
                raw("m.del", "x"),
                raw("m.purge", "x"),
                raw("m.ttl", "x").hdr("Nats-TTL", "1s"),
                api("STREAM.MSG.DELETE.M", r#"{"seq":1}"#),
                api("STREAM.PURGE.M", r#"{"filter":"m.purge"}"#),
                until(
                    api("STREAM.INFO.M", ""),
                    &[("/state/last_seq", json!(4)), ("/state/messages", json!(1))],
                ),
                pull("M", "C", r#"{"batch":10,"no_wait":true}"#).replies(2),
            ],
        ),
        (
            // The key's and the purge's 1s TTLs are not raised: the state
            // after both is waited for, and the clock stream C (max_age 4s)
            // must still hold its message then.
            "ttl: KV limit markers, per-key TTL on create and purge with TTL",
            vec![
                create("C", &format!(r#""subjects":["c.>"],"max_age":{}"#, 4 * SEC)),
                create(
                    "KV_b",
                    &format!(
                        r#""subjects":["$KV.b.>"],"max_msgs_per_subject":1,"allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true,"allow_msg_ttl":true,"subject_delete_marker_ttl":{},"discard":"new""#,
                        5 * SEC
                    ),
                ),
                raw("$KV.b.k", "v1")
                    .hdr("Nats-Expected-Last-Subject-Sequence", "0")
                    .hdr("Nats-TTL", "1s"),
                raw("$KV.b.p", "v1"),
                raw("$KV.b.p", "")
                    .hdr("KV-Operation", "PURGE")
                    .hdr("Nats-Rollup", "sub")
                    .hdr("Nats-TTL", "1s"),
                raw("c.x", "clock"),
                until(
                    api("STREAM.INFO.KV_b", ""),
                    &[("/state/last_seq", json!(4)), ("/state/messages", json!(1))],
                ),
                api("STREAM.INFO.C", ""),
                api("STREAM.MSG.GET.KV_b", r#"{"last_by_subj":"$KV.b.k"}"#),
                api("STREAM.MSG.GET.KV_b", r#"{"last_by_subj":"$KV.b.p"}"#),
                raw("$KV.b.k", "v2").hdr("Nats-Expected-Last-Subject-Sequence", "4"),
            ],
        ),
        (
            // B's TTL raised to 2s and MEM's 1s are waited for; WQ's,
            // raised to 6s, are looked at before.
            "ttl: in atomic batches, in memory streams, in work queues, added by an update",
            vec![
                create(
                    "B",
                    &format!(
                        r#""subjects":["b.>"],"allow_atomic":true,"subject_delete_marker_ttl":{}"#,
                        2 * SEC
                    ),
                ),
                batch("b.x", "t1", 1, None).hdr("Nats-TTL", "1s"),
                batch("b.y", "t1", 2, Some("1")).hdr("Nats-TTL", "1m"),
                batch("b.x", "t2", 1, Some("1")).hdr("Nats-TTL", "bad"),
                api("STREAM.MSG.GET.B", r#"{"seq":1}"#),
                create("NB", r#""subjects":["nb.>"],"allow_atomic":true"#),
                batch("nb.x", "t3", 1, Some("1")).hdr("Nats-TTL", "1s"),
                create(
                    "MEM",
                    r#""subjects":["mem.>"],"storage":"memory","allow_msg_ttl":true"#,
                ),
                raw("mem.a", "x").hdr("Nats-TTL", "1s"),
                raw("mem.b", "x"),
                create(
                    "WQ",
                    &format!(
                        r#""subjects":["wq.>"],"retention":"workqueue","subject_delete_marker_ttl":{}"#,
                        6 * SEC
                    ),
                ),
                api(
                    "CONSUMER.CREATE.WQ.C",
                    r#"{"stream_name":"WQ","config":{"durable_name":"C","ack_policy":"explicit","filter_subject":"wq.a"}}"#,
                ),
                raw("wq.a", "x").hdr("Nats-TTL", "1s"),
                raw("wq.b", "x").hdr("Nats-TTL", "1s"),
                create("U", r#""subjects":["u.>"]"#),
                api(
                    "STREAM.UPDATE.U",
                    &format!(
                        r#"{{"name":"U","subjects":["u.>"],"subject_delete_marker_ttl":{}}}"#,
                        2 * SEC
                    ),
                ),
                until(
                    api("STREAM.INFO.B", ""),
                    &[
                        ("/state/first_seq", json!(2)),
                        ("/state/last_seq", json!(3)),
                        ("/state/messages", json!(2)),
                    ],
                ),
                until(
                    api("STREAM.INFO.MEM", ""),
                    &[
                        ("/state/first_seq", json!(2)),
                        ("/state/messages", json!(1)),
                    ],
                ),
                api("STREAM.INFO.WQ", ""),
                api("STREAM.MSG.GET.WQ", r#"{"last_by_subj":"wq.a"}"#),
                pull("WQ", "C", r#"{"batch":5,"no_wait":true}"#).replies(2),
            ],
        ),
        (
            // The 1 s TTLs are raised to the 2 s marker TTL: the marker
            // kept (at 2, living to 4) is waited for.
            "ttl: markers in an interest stream are kept for the consumers interested",
            vec![
                create(
                    "I",
                    &format!(
                        r#""subjects":["i.>"],"retention":"interest","subject_delete_marker_ttl":{}"#,
                        2 * SEC
                    ),
                ),
                api(
                    "CONSUMER.CREATE.I.C",
                    r#"{"stream_name":"I","config":{"durable_name":"C","ack_policy":"explicit","filter_subject":"i.a"}}"#,
                ),
                raw("i.a", "x").hdr("Nats-TTL", "1s"),
                raw("i.b", "x").hdr("Nats-TTL", "1s"),
                api("STREAM.MSG.GET.I", r#"{"seq":1}"#),
                until(
                    api("STREAM.INFO.I", ""),
                    &[
                        ("/state/first_seq", json!(3)),
                        ("/state/last_seq", json!(3)),
                        ("/state/messages", json!(1)),
                    ],
                ),
                pull("I", "C", r#"{"batch":5,"no_wait":true}"#).replies(2),
            ],
        ),
        (
            "publish: empty expectation headers and roll-up spellings",
            vec![
                create("R", r#""subjects":["r.>"],"allow_rollup_hdrs":true"#),
                raw("r.a", "x").hdr("Nats-Expected-Stream", ""),
                raw("r.a", "x").hdr("Nats-Expected-Last-Msg-Id", ""),
                raw("r.a", "x").hdr("Nats-Expected-Last-Subject-Sequence-Subject", "r.*"),
                raw("r.a", "x").hdr("Nats-Expected-Last-Subject-Sequence-Subject", ""),
                raw("r.a", "x").hdr("Nats-Rollup", ""),
                raw("r.a", "x").hdr("Nats-Rollup", "SUB"),
                raw("r.b", "x").hdr("Nats-Rollup", "All"),
                raw("r.b", "x").hdr("Nats-Rollup", "nope"),
                api("STREAM.INFO.R", ""),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ttl_and_delete_markers_match_nats_server() {
    check(answered(scenarios())).await;
}
