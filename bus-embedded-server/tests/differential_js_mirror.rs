//! Differential tests of mirrors (`mirror` in a stream configuration,
//! nats-server 2.15.1 semantics) against nats-server 2.15.1; the harness
//! is `js_diff/`. Run one with
//! `SCENARIO=<part of a name> cargo test -p bus-embedded-server --test differential_js_mirror`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "mirror: configuration errors",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                create("M1", r#""subjects":["m.>"],"mirror":{"name":"O"}"#),
                create("M2", r#""mirror":{"name":"O"},"sources":[{"name":"O"}]"#),
                create(
                    "M3",
                    r#""mirror":{"name":"O","filter_subject":"o.a","subject_transforms":[{"src":"o.>","dest":"x.>"}]}"#,
                ),
                create(
                    "M4",
                    r#""mirror":{"name":"O","subject_transforms":[{"src":"o.a","dest":"x.a"},{"src":"o.>","dest":"y.>"}]}"#,
                ),
                create(
                    "M5",
                    r#""mirror":{"name":"O","subject_transforms":[{"src":"o.*","dest":"x.$2"}]}"#,
                ),
                create("M6", r#""first_seq":5,"mirror":{"name":"O"}"#),
                create("M7", r#""mirror":{"name":"M7"}"#),
                create("M8", r#""mirror":{"name":""}"#),
                create(
                    "M9",
                    r#""mirror":{"name":"O","external":{"api":"$JS.API"}}"#,
                ),
                create("M10", r#""subjects":["m10"],"mirror_direct":true"#),
                create("M11", r#""allow_msg_counter":true,"mirror":{"name":"O"}"#),
                create("M12", r#""mirror":{"name":"O","filter_subject":"o..a"}"#),
            ],
        ),
        (
            "mirror: copies every message with its sequence, gaps and time, and shows its lag",
            vec![
                create("O", r#""subjects":["o.>"],"allow_direct":true"#),
                raw("o.a", "m1").hdr("Nats-Msg-Id", "id1"),
                raw("o.b", "m2"),
                raw("o.a", "m3"),
                raw("o.b", "m4"),
                api("STREAM.MSG.DELETE.O", r#"{"seq":2}"#),
                create("M", r#""mirror":{"name":"O"}"#),
                sleep(1500),
                api("STREAM.INFO.M", ""),
                api("STREAM.MSG.GET.M", r#"{"seq":1}"#),
                api("STREAM.MSG.GET.M", r#"{"seq":2}"#),
                api("STREAM.MSG.GET.M", r#"{"seq":4}"#),
                raw("o.c", "m5"),
                sleep(800),
                api("STREAM.INFO.M", r#"{"deleted_details":true}"#),
                api("STREAM.MSG.GET.M", r#"{"seq":5}"#),
            ],
        ),
        (
            "mirror: filtered and transformed",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                raw("o.a", "m1"),
                raw("o.b", "m2"),
                raw("o.a", "m3"),
                create("F", r#""mirror":{"name":"O","filter_subject":"o.a"}"#),
                create(
                    "T",
                    r#""mirror":{"name":"O","subject_transforms":[{"src":"o.b","dest":"t.b"}]}"#,
                ),
                sleep(1500),
                api("STREAM.INFO.F", ""),
                api("STREAM.INFO.T", ""),
                api("STREAM.MSG.GET.F", r#"{"seq":3}"#),
                api("STREAM.MSG.GET.T", r#"{"seq":2}"#),
            ],
        ),
        (
            "mirror: start sequence, an origin that comes later, updates",
            vec![
                create("M", r#""mirror":{"name":"O","opt_start_seq":3}"#),
                create("O", r#""subjects":["o.>"]"#),
                raw("o.a", "m1"),
                raw("o.a", "m2"),
                raw("o.a", "m3"),
                raw("o.a", "m4"),
                sleep(2500),
                api("STREAM.INFO.M", ""),
                api("STREAM.UPDATE.M", r#"{"name":"M","mirror":{"name":"X"}}"#),
                api(
                    "STREAM.UPDATE.M",
                    r#"{"name":"M","mirror":{"name":"O"},"subjects":["m"]}"#,
                ),
            ],
        ),
        (
            "mirror: nothing publishes into it, and a deleted origin",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                raw("o.a", "m1"),
                create("M", r#""mirror":{"name":"O"}"#),
                sleep(1200),
                raw("M", "into the mirror"),
                api("STREAM.DELETE.O", ""),
                sleep(2500),
                api("STREAM.INFO.M", ""),
            ],
        ),
        (
            "mirror: promoted by removing the mirror",
            vec![
                create("O", r#""subjects":["o.>"]"#),
                raw("o.a", "m1"),
                create("M", r#""mirror":{"name":"O"}"#),
                sleep(1200),
                api("STREAM.UPDATE.M", r#"{"name":"M"}"#),
                raw("M", "now a stream"),
                api("STREAM.INFO.M", ""),
            ],
        ),
    ]
}

#[tokio::test]
async fn mirrors_match_nats_server() {
    check(scenarios()).await;
}
