//! Differential tests of sources (`sources` in a stream configuration,
//! with filters and subject transforms, nats-server 2.15.1 semantics)
//! against nats-server 2.15.1; the harness is `js_diff/`. Run one with
//! `SCENARIO=<part of a name> cargo test -p bus-embedded-server --test differential_js_sources`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "sources: configuration errors",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                create("S1", r#""sources":[{"name":"O"},{"name":"O"}]"#),
                create("S2", r#""sources":[{"name":""}]"#),
                create(
                    "S3",
                    r#""sources":[{"name":"O","filter_subject":"o.a","subject_transforms":[{"src":"o.>","dest":"x.>"}]}]"#,
                ),
                create(
                    "S4",
                    r#""sources":[{"name":"O","subject_transforms":[{"src":"o.*","dest":"x.$2"}]}]"#,
                ),
                create(
                    "S5",
                    r#""sources":[{"name":"O","subject_transforms":[{"src":"o.>","dest":"x.>"},{"src":"o.a","dest":"y.a"}]}]"#,
                ),
                create("S6", r#""subjects":["s6"],"sources":[{"name":"S6"}]"#),
                create("S7", r#""subjects":["o.a"],"sources":[{"name":"O"}]"#),
                create("S8", r#""sources":[{"name":"O","filter_subject":"o..a"}]"#),
                create(
                    "S9",
                    r#""sources":[{"name":"O","subject_transforms":[{"src":"o..a","dest":"x"}]}]"#,
                ),
                create(
                    "S10",
                    r#""sources":[{"name":"O","external":{"api":"$JS.API"}}]"#,
                ),
                create(
                    "S11",
                    r#""sources":[{"name":"O","external":{"api":"x","deliver":"d.*"}}]"#,
                ),
            ],
        ),
        (
            // (That it then picks the origin up is in compat_js_mirror.rs:
            // nats-server's retry backoff is longer than a scenario.)
            "sources: a source that does not exist yet is accepted and reported missing",
            vec![
                create("S", r#""sources":[{"name":"LATER"}]"#),
                sleep(2500),
                api("STREAM.INFO.S", ""),
            ],
        ),
        (
            "sources: whole stream, with own subjects, stored with the source header",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                raw("o.a", "m1").hdr("Nats-Msg-Id", "id1"),
                raw("o.b", "m2"),
                create("S", r#""subjects":["s.>"],"sources":[{"name":"O"}]"#),
                sleep(1500),
                raw("s.own", "own"),
                raw("o.c", "m3"),
                sleep(800),
                api("STREAM.INFO.S", ""),
                api("STREAM.MSG.GET.S", r#"{"seq":1}"#),
                api("STREAM.MSG.GET.S", r#"{"seq":2}"#),
                api("STREAM.MSG.GET.S", r#"{"seq":3}"#),
                api("STREAM.MSG.GET.S", r#"{"seq":4}"#),
            ],
        ),
        (
            "sources: filtered source",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                raw("o.a", "m1"),
                raw("o.b", "m2"),
                raw("o.a", "m3"),
                create("S", r#""sources":[{"name":"O","filter_subject":"o.a"}]"#),
                sleep(1500),
                api("STREAM.INFO.S", ""),
                api("STREAM.MSG.GET.S", r#"{"seq":2}"#),
            ],
        ),
        (
            "sources: transformed source",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                raw("o.a.1", "m1"),
                raw("o.b.2", "m2"),
                raw("o.a.3", "m3"),
                create(
                    "S",
                    r#""sources":[{"name":"O","subject_transforms":[{"src":"o.a.*","dest":"t.$1.a"}]}]"#,
                ),
                sleep(1500),
                api("STREAM.INFO.S", r#"{"subjects_filter":">"}"#),
                api("STREAM.MSG.GET.S", r#"{"seq":1}"#),
                api("STREAM.MSG.GET.S", r#"{"seq":2}"#),
            ],
        ),
        (
            "sources: two origins, start sequence, and an update that removes one",
            vec![
                create("A", r#""subjects":["a.>"]"#),
                create("B", r#""subjects":["b.>"]"#),
                raw("a.1", "a1"),
                raw("a.2", "a2"),
                raw("a.3", "a3"),
                create("S", r#""sources":[{"name":"A","opt_start_seq":2}]"#),
                sleep(1500),
                api("STREAM.INFO.S", ""),
                api(
                    "STREAM.UPDATE.S",
                    r#"{"name":"S","sources":[{"name":"B"}]}"#,
                ),
                raw("b.1", "b1"),
                raw("a.4", "a4"),
                sleep(1500),
                api("STREAM.INFO.S", ""),
                api("STREAM.MSG.GET.S", r#"{"seq":3}"#),
            ],
        ),
        (
            "sources: a deleted origin",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                raw("o.a", "m1"),
                create("S", r#""sources":[{"name":"O"}]"#),
                sleep(1200),
                api("STREAM.DELETE.O", ""),
                sleep(2500),
                api("STREAM.INFO.S", ""),
            ],
        ),
    ]
}

#[tokio::test]
async fn sources_match_nats_server() {
    check(scenarios()).await;
}
