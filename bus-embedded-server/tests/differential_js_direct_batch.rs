//! Differential tests of direct get beyond one message (nats-server 2.11+,
//! ADR-31: `batch`, `max_bytes`, `start_time`, `next_by_subj` with
//! wildcards, `multi_last` with `up_to_seq` / `up_to_time`, `no_hdr`)
//! against nats-server 2.15.1; the harness is `js_diff/`. Every message of
//! a batch carries `Nats-Num-Pending` and `Nats-Last-Sequence`, and the
//! batch ends with a `204 EOB` status.

mod js_diff;

use js_diff::*;

const DIRECT: &str = r#""subjects":["d.>"],"allow_direct":true"#;

/// Seven messages over three subjects, one deleted (seq 4), one with headers.
fn seeded() -> Vec<Step> {
    vec![
        create("D", DIRECT),
        raw("d.a", "a1"),
        raw("d.b", "b1"),
        raw("d.a", "a2"),
        raw("d.c", "c1"),
        raw("d.b", "b2").hdr("X-Own", "kept"),
        raw("d.a", "a3"),
        raw("d.c.x", "cx1"),
        api("STREAM.MSG.DELETE.D", r#"{"seq":4}"#),
    ]
}

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "direct get batches: from a sequence, over a deleted one, limited by count and bytes",
            concat(vec![
                seeded(),
                vec![
                    api("DIRECT.GET.D", r#"{"seq":1,"batch":3}"#),
                    api("DIRECT.GET.D", r#"{"seq":3,"batch":10}"#),
                    api("DIRECT.GET.D", r#"{"seq":4,"batch":1}"#),
                    api("DIRECT.GET.D", r#"{"seq":2,"batch":5,"max_bytes":10}"#),
                    api("DIRECT.GET.D", r#"{"seq":1,"batch":2,"max_bytes":-1}"#),
                    api("DIRECT.GET.D", r#"{"seq":99,"batch":2}"#),
                    api("DIRECT.GET.D", r#"{"seq":1,"batch":-1}"#),
                    api("DIRECT.GET.D", r#"{"seq":1,"batch":2,"no_hdr":true}"#),
                    api("DIRECT.GET.D", r#"{"seq":5,"no_hdr":true}"#),
                ],
            ]),
        ),
        (
            "direct get batches: next_by_subj with wildcards and start_time",
            concat(vec![
                seeded(),
                vec![
                    api("DIRECT.GET.D", r#"{"next_by_subj":"d.a","batch":5}"#),
                    api(
                        "DIRECT.GET.D",
                        r#"{"next_by_subj":"d.*","seq":2,"batch":3}"#,
                    ),
                    api(
                        "DIRECT.GET.D",
                        r#"{"next_by_subj":"d.>","seq":6,"batch":9}"#,
                    ),
                    api("DIRECT.GET.D", r#"{"next_by_subj":"d.zz","batch":2}"#),
                    api(
                        "DIRECT.GET.D",
                        r#"{"start_time":"2000-01-01T00:00:00Z","batch":2}"#,
                    ),
                    api("DIRECT.GET.D", r#"{"start_time":"2000-01-01T00:00:00Z"}"#),
                    api(
                        "DIRECT.GET.D",
                        r#"{"start_time":"2100-01-01T00:00:00Z","batch":2}"#,
                    ),
                    api(
                        "DIRECT.GET.D",
                        r#"{"start_time":"2000-01-01T00:00:00Z","next_by_subj":"d.c","batch":4}"#,
                    ),
                ],
            ]),
        ),
        (
            "direct get multi_last: last per subject, up to a sequence or time, limits",
            concat(vec![
                seeded(),
                vec![
                    api("DIRECT.GET.D", r#"{"multi_last":["d.a","d.b"]}"#),
                    api("DIRECT.GET.D", r#"{"multi_last":["d.>"]}"#),
                    api("DIRECT.GET.D", r#"{"multi_last":["d.*"],"up_to_seq":3}"#),
                    api("DIRECT.GET.D", r#"{"multi_last":["d.>"],"batch":2}"#),
                    api("DIRECT.GET.D", r#"{"multi_last":["d.>"],"seq":5}"#),
                    api("DIRECT.GET.D", r#"{"multi_last":["d.>"],"max_bytes":3}"#),
                    api("DIRECT.GET.D", r#"{"multi_last":["d.a"],"no_hdr":true}"#),
                    api("DIRECT.GET.D", r#"{"multi_last":["nope.>"]}"#),
                    api(
                        "DIRECT.GET.D",
                        r#"{"multi_last":["d.>"],"up_to_time":"2000-01-01T00:00:00Z"}"#,
                    ),
                    api(
                        "DIRECT.GET.D",
                        r#"{"multi_last":["d.>"],"up_to_time":"2100-01-01T00:00:00Z"}"#,
                    ),
                ],
            ]),
        ),
        (
            "direct get requests that conflict or say nothing",
            concat(vec![
                seeded(),
                vec![
                    api("DIRECT.GET.D", r#"{"seq":1,"last_by_subj":"d.a"}"#),
                    api(
                        "DIRECT.GET.D",
                        r#"{"seq":1,"start_time":"2000-01-01T00:00:00Z"}"#,
                    ),
                    api("DIRECT.GET.D", r#"{"last_by_subj":"d.a","batch":2}"#),
                    api(
                        "DIRECT.GET.D",
                        r#"{"last_by_subj":"d.a","next_by_subj":"d.a"}"#,
                    ),
                    api(
                        "DIRECT.GET.D",
                        r#"{"last_by_subj":"d.a","multi_last":["d.a"]}"#,
                    ),
                    api(
                        "DIRECT.GET.D",
                        r#"{"next_by_subj":"d.a","multi_last":["d.a"]}"#,
                    ),
                    api(
                        "DIRECT.GET.D",
                        r#"{"multi_last":["d.a"],"up_to_seq":2,"up_to_time":"2100-01-01T00:00:00Z"}"#,
                    ),
                    api("DIRECT.GET.D", r#"{"batch":2}"#),
                    api("DIRECT.GET.D", r#"{"start_time":"yesterday"}"#),
                    api("DIRECT.GET.D", r#"{"seq":"1"}"#),
                    api("DIRECT.GET.D.d.a", r#"{"no_hdr":true}"#),
                    api("DIRECT.GET.D.d.a", r#"{"batch":2}"#),
                    api("DIRECT.GET.D.d.a", "{}"),
                    api("DIRECT.GET.D.d.a", "nope"),
                    api("DIRECT.GET.D.d.a", " "),
                    api("DIRECT.GET.D", " "),
                    api("DIRECT.GET.D", " null "),
                ],
            ]),
        ),
        (
            "direct get multi_last over more than 1024 subjects is refused",
            concat(vec![
                vec![create("D", DIRECT)],
                (0..1030)
                    .map(|i| raw(&format!("d.k{i}"), "v").no_reply())
                    .collect(),
                vec![
                    sleep(300),
                    api("DIRECT.GET.D", r#"{"multi_last":["d.*"]}"#),
                    api("DIRECT.GET.D", r#"{"multi_last":["d.k1"]}"#),
                ],
            ]),
        ),
    ]
}

#[tokio::test]
async fn direct_get_batches_match_nats_server() {
    check(scenarios()).await;
}
