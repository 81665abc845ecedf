//! Differential tests of the JetStream API level (ADR-44): the level in
//! `$JS.API.INFO` (masked by the harness: ours is lower) and the refusal
//! of a request whose `Nats-Required-Api-Level` asks for more, against
//! nats-server 2.15.1; the harness is `js_diff/`.

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![(
        "api level: requests needing a higher level are refused in their response type",
        vec![
            create("S", r#""subjects":["s.>"],"allow_direct":true"#),
            raw("s.a", "x"),
            api(
                "CONSUMER.CREATE.S.C",
                r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"none"}}"#,
            ),
            api("INFO", "").hdr("Nats-Required-Api-Level", "0"),
            api("INFO", "").hdr("Nats-Required-Api-Level", "1"),
            api("INFO", "").hdr("Nats-Required-Api-Level", ""),
            api("INFO", "").hdr("Nats-Required-Api-Level", "-1"),
            api("INFO", "").hdr("Nats-Required-Api-Level", "99"),
            api("INFO", "").hdr("Nats-Required-Api-Level", "abc"),
            api("STREAM.NAMES", "").hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.LIST", "").hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.INFO.S", "").hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.INFO.NOPE", "").hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.CREATE.X", r#"{"name":"X"}"#).hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.UPDATE.S", r#"{"name":"S"}"#).hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.PURGE.S", "").hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.MSG.GET.S", r#"{"seq":1}"#).hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.MSG.DELETE.S", r#"{"seq":1}"#).hdr("Nats-Required-Api-Level", "99"),
            api("CONSUMER.INFO.S.C", "").hdr("Nats-Required-Api-Level", "99"),
            api("CONSUMER.NAMES.S", "").hdr("Nats-Required-Api-Level", "99"),
            api("CONSUMER.LIST.S", "").hdr("Nats-Required-Api-Level", "99"),
            api("DIRECT.GET.S", r#"{"seq":1}"#).hdr("Nats-Required-Api-Level", "99"),
            pull("S", "C", r#"{"batch":1,"no_wait":true}"#).hdr("Nats-Required-Api-Level", "99"),
            api("CONSUMER.DELETE.S.C", "").hdr("Nats-Required-Api-Level", "99"),
            api(
                "CONSUMER.CREATE.S.D",
                r#"{"stream_name":"S","config":{"durable_name":"D","ack_policy":"none"}}"#,
            )
            .hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.DELETE.S", "").hdr("Nats-Required-Api-Level", "99"),
            api("STREAM.INFO.S", ""),
            api("INFO", ""),
        ],
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_api_level_matches_nats_server() {
    check(scenarios()).await;
}
