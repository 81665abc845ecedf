//! Differential tests of a stream's `subject_transform` (the subject a
//! message is stored under is rewritten on ingest) against nats-server
//! 2.15.1; the harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "subject transform: configuration errors and what the config shows",
            vec![
                create(
                    "T1",
                    r#""subjects":["a.>"],"subject_transform":{"src":"a.>","dest":"b.>"}"#,
                ),
                create(
                    "T2",
                    r#""subjects":["c.>"],"subject_transform":{"dest":"d.>"}"#,
                ),
                create(
                    "T3",
                    r#""subjects":["e.>"],"subject_transform":{"src":"","dest":"f.>"}"#,
                ),
                create(
                    "T4",
                    r#""subjects":["g.>"],"subject_transform":{"src":"g..x","dest":"h"}"#,
                ),
                create(
                    "T5",
                    r#""subjects":["g.>"],"subject_transform":{"src":"g.*","dest":"h.{{wildcard(3)}}"}"#,
                ),
                create(
                    "T6",
                    r#""subjects":["g.>"],"subject_transform":{"src":"g.*","dest":"h.*"}"#,
                ),
                create(
                    "T7",
                    r#""subjects":["g.>"],"subject_transform":{"src":"g.*","dest":"h.{{foo(1)}}"}"#,
                ),
                create(
                    "T8",
                    r#""subjects":["g.>"],"subject_transform":{"src":"g.*","dest":""}"#,
                ),
                create(
                    "T9",
                    r#""subjects":["i.>"],"subject_transform":{"src":"x.*","dest":"y.$1"}"#,
                ),
                create(
                    "T10",
                    r#""subjects":["g.>"],"subject_transform":{"src":"g.>","dest":"h"}"#,
                ),
                create("T11", r#""subjects":["g.>"],"subject_transform":"bad""#),
                create(
                    "T12",
                    r#""subjects":["g.>"],"subject_transform":{"src":"g.*","dest":"h.{{partition(0)}}.$1"}"#,
                ),
                create(
                    "T13",
                    r#""subjects":["j.>"],"subject_transform":{"src":"j.*","dest":"k.{{partition(3,1)}}.$1"}"#,
                ),
                api("STREAM.INFO.T1", ""),
                api("STREAM.INFO.T2", ""),
                api("STREAM.INFO.T8", ""),
                api("STREAM.INFO.T13", ""),
            ],
        ),
        (
            "subject transform: messages are stored under the transformed subject",
            vec![
                create(
                    "T",
                    r#""subjects":["a.>"],"subject_transform":{"src":"a.*.*","dest":"b.{{wildcard(2)}}.$1"}"#,
                ),
                raw("a.x.y", "one"),
                raw("a.q", "not matched: kept"),
                raw("a.x.y", "two"),
                raw("b.y.x", "the stored subject is not one of the stream's"),
                raw("a.x.y", "three").hdr("Nats-Expected-Last-Subject-Sequence", "3"),
                raw("a.x.y", "stale").hdr("Nats-Expected-Last-Subject-Sequence", "1"),
                api("STREAM.MSG.GET.T", r#"{"seq":1}"#),
                api("STREAM.MSG.GET.T", r#"{"seq":2}"#),
                api("STREAM.MSG.GET.T", r#"{"last_by_subj":"b.y.x"}"#),
                api("STREAM.MSG.GET.T", r#"{"last_by_subj":"a.x.y"}"#),
                api("STREAM.INFO.T", r#"{"subjects_filter":">"}"#),
                api(
                    "CONSUMER.CREATE.T.C",
                    r#"{"stream_name":"T","config":{"name":"C","ack_policy":"none","filter_subject":"b.>"}}"#,
                ),
                pull("T", "C", r#"{"batch":5,"no_wait":true}"#),
            ],
        ),
        (
            "subject transform: partition and split functions, and a source matching everything",
            vec![
                create(
                    "P",
                    r#""subjects":["p.*"],"subject_transform":{"src":"p.*","dest":"q.{{partition(4,1)}}.{{splitFromLeft(1,2)}}"}"#,
                ),
                raw("p.alpha", "1"),
                raw("p.beta", "2"),
                raw("p.gamma", "3"),
                create(
                    "E",
                    r#""subjects":["e.>"],"subject_transform":{"dest":"all.>"}"#,
                ),
                raw("e.one.two", "4"),
                api("STREAM.INFO.P", r#"{"subjects_filter":">"}"#),
                api("STREAM.INFO.E", r#"{"subjects_filter":">"}"#),
            ],
        ),
        (
            "subject transform: added, changed and removed by updates",
            vec![
                create("U", r#""subjects":["u.>"]"#),
                raw("u.1", "plain"),
                api(
                    "STREAM.UPDATE.U",
                    r#"{"name":"U","subjects":["u.>"],"subject_transform":{"src":"u.*","dest":"v.$1"}}"#,
                ),
                raw("u.2", "transformed"),
                api(
                    "STREAM.UPDATE.U",
                    r#"{"name":"U","subjects":["u.>"],"subject_transform":{"src":"u.*","dest":"w.$1"}}"#,
                ),
                raw("u.3", "changed"),
                api(
                    "STREAM.UPDATE.U",
                    r#"{"name":"U","subjects":["u.>"],"subject_transform":{"src":"u.*","dest":"w.*"}}"#,
                ),
                api("STREAM.UPDATE.U", r#"{"name":"U","subjects":["u.>"]}"#),
                raw("u.4", "plain again"),
                api("STREAM.INFO.U", r#"{"subjects_filter":">"}"#),
            ],
        ),
        (
            "subject transform: an atomic batch is stored under the transformed subjects",
            vec![
                create(
                    "B",
                    r#""subjects":["a.>"],"allow_atomic":true,"subject_transform":{"src":"a.*","dest":"b.$1"}"#,
                ),
                batch("a.x", "b1", 1, None),
                batch("a.y", "b1", 2, None),
                batch("a.x", "b1", 3, Some("1")),
                api("STREAM.INFO.B", r#"{"subjects_filter":">"}"#),
                api("STREAM.MSG.GET.B", r#"{"seq":3}"#),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_subject_transform_matches_nats_server() {
    check(scenarios()).await;
}
