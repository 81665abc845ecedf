//! Differential tests of the `$JS.API.*` surface: the same requests sent to
//! nats-server 2.15.1 and to ours must get the same answers once volatile
//! values (times, ephemeral names, ...) are masked.
//!
//! The harness (steps, normalisation, the comparison) is in `js_diff/`;
//! other `differential_js_*.rs` files hold the scenarios of newer features.

mod js_diff;

use js_diff::*;

const SA: &str = r#""subjects":["s.>"]"#;

fn scenarios() -> Vec<Scenario> {
    vec![
        // ---------------------------------------------------------------- INFO
        ("account info, empty", vec![api("INFO", "")]),
        (
            "account info with a stream and a consumer",
            vec![
                create("S", SA),
                raw("s.a", "x"),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
                ),
                api("INFO", ""),
                api("INFO", "{\"junk\":1}"),
            ],
        ),
        // ------------------------------------------------------- STREAM.CREATE
        ("create with defaults", vec![create("S", SA)]),
        ("create without subjects", vec![create("S", "")]),
        (
            "create with every limit",
            vec![create(
                "S",
                r#""subjects":["a","b.*"],"description":"d","retention":"limits","max_consumers":5,"max_msgs":100,"max_bytes":100000,"max_age":60000000000,"max_msgs_per_subject":3,"max_msg_size":1024,"discard":"new","storage":"memory","num_replicas":1,"duplicate_window":30000000000,"allow_direct":true,"deny_delete":true,"deny_purge":true,"allow_rollup_hdrs":true,"metadata":{"k":"v"}"#,
            )],
        ),
        (
            "create twice with the same config",
            vec![create("S", SA), create("S", SA)],
        ),
        (
            "create twice, second with different config",
            vec![
                create("S", SA),
                create("S", r#""subjects":["s.>"],"max_msgs":10"#),
            ],
        ),
        (
            "create with overlapping subjects",
            vec![
                create("S1", SA),
                create("S2", r#""subjects":["s.a"]"#),
                create("S3", r#""subjects":["*.b"]"#),
                create("S4", r#""subjects":["t","t"]"#),
                create("S5", r#""subjects":["u.*","u.a"]"#),
            ],
        ),
        (
            "create with invalid subjects",
            vec![
                create("S1", r#""subjects":["a..b"]"#),
                create("S2", r#""subjects":[""]"#),
                create("S3", r#""subjects":["$JS.API.>"]"#),
                create("S4", r#""subjects":[">"]"#),
                create("S5", r#""subjects":["a.>.b"]"#),
            ],
        ),
        (
            "create with invalid JSON",
            vec![
                api("STREAM.CREATE.S", "{bad"),
                api("STREAM.CREATE.S", "[1,2]"),
                api("STREAM.CREATE.S", "null"),
            ],
        ),
        (
            "create with an empty body",
            vec![api("STREAM.CREATE.S", "")],
        ),
        (
            "create with an empty object",
            vec![api("STREAM.CREATE.S", "{}"), api("STREAM.INFO.S", "")],
        ),
        (
            "create with a name mismatch",
            vec![api("STREAM.CREATE.A", r#"{"name":"B"}"#)],
        ),
        (
            "create with bad names",
            vec![
                api("STREAM.CREATE.a/b", r#"{"name":"a/b"}"#),
                api("STREAM.CREATE.a\\b", r#"{"name":"a\\b"}"#),
                api(
                    &format!("STREAM.CREATE.{}", "n".repeat(300)),
                    &format!(r#"{{"name":"{}"}}"#, "n".repeat(300)),
                ),
            ],
        ),
        (
            "create with replicas",
            vec![
                create("S1", r#""num_replicas":3"#),
                create("S2", r#""num_replicas":-1"#),
                create("S3", r#""num_replicas":0"#),
            ],
        ),
        (
            "create with memory storage",
            vec![
                create("S", r#""storage":"memory""#),
                api("STREAM.INFO.S", ""),
            ],
        ),
        (
            "create with max_age and duplicate_window",
            vec![
                create(
                    "S1",
                    r#""max_age":1000000000,"duplicate_window":2000000000"#,
                ),
                create("S2", r#""max_age":1000000000"#),
                create("S3", r#""max_age":-5"#),
                create("S4", r#""duplicate_window":-5"#),
                create("S5", r#""max_age":500000000000"#),
            ],
        ),
        (
            "create with wrong types and absurd values",
            vec![
                create("S1", r#""max_msgs":"ten""#),
                create("S2", r#""max_msgs":99999999999999999999"#),
                // Not compared: nats-server 2.15 rejects unknown fields
                // (10025); we accept them so that clients newer than the
                // 2.10 we advertise keep working.
                create("S4", r#""storage":"disk""#),
                create("S5", r#""retention":"bogus""#),
                create("S6", r#""max_msgs":-7"#),
                create("S7", r#""max_msgs":1.5"#),
                create("S8", r#""subjects":"one""#),
            ],
        ),
        (
            "create with retention policies",
            vec![
                create("S1", r#""subjects":["a"],"retention":"workqueue""#),
                create("S2", r#""subjects":["b"],"retention":"interest""#),
            ],
        ),
        // ------------------------------------------------------- STREAM.UPDATE
        (
            "update allowed changes",
            vec![
                create("S", SA),
                api(
                    "STREAM.UPDATE.S",
                    r#"{"name":"S","subjects":["s.>","t"],"max_msgs":10,"description":"new","allow_direct":true}"#,
                ),
                api("STREAM.UPDATE.S", r#"{"name":"S","subjects":["u"]}"#),
            ],
        ),
        (
            "update refused changes",
            vec![
                create("S", r#""subjects":["s.>"],"deny_delete":true"#),
                create("O", r#""subjects":["o"]"#),
                api("STREAM.UPDATE.S", r#"{"name":"S","storage":"memory"}"#),
                api("STREAM.UPDATE.S", r#"{"name":"S","retention":"workqueue"}"#),
                api("STREAM.UPDATE.S", r#"{"name":"S","subjects":["s.>","o"]}"#),
                api("STREAM.UPDATE.S", r#"{"name":"S","subjects":["s.>"]}"#),
                api("STREAM.UPDATE.S", r#"{"name":"X"}"#),
                api("STREAM.UPDATE.X", r#"{"name":"X"}"#),
                api("STREAM.UPDATE.S", ""),
                api("STREAM.UPDATE.S", "{bad"),
                api("STREAM.UPDATE.S", r#"{"name":"S","num_replicas":3}"#),
            ],
        ),
        // --------------------------------------------------------- STREAM.INFO
        (
            "info with subjects and deleted details",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 3),
                publish_n("s.b", 2),
                vec![
                    api("STREAM.MSG.DELETE.S", r#"{"seq":2}"#),
                    api("STREAM.INFO.S", ""),
                    api("STREAM.INFO.S", r#"{"subjects_filter":">"}"#),
                    api("STREAM.INFO.S", r#"{"subjects_filter":"s.a"}"#),
                    api("STREAM.INFO.S", r#"{"subjects_filter":"nomatch"}"#),
                    api("STREAM.INFO.S", r#"{"deleted_details":true}"#),
                    api("STREAM.INFO.S", "{bad"),
                    api("STREAM.INFO.NOPE", ""),
                ],
            ]),
        ),
        // ------------------------------------------------- STREAM.NAMES / LIST
        (
            "names and list",
            vec![
                create("A", r#""subjects":["a.>"]"#),
                create("B", r#""subjects":["b.>"]"#),
                create("C", r#""subjects":["c.x"]"#),
                api("STREAM.NAMES", ""),
                api("STREAM.NAMES", r#"{"offset":1}"#),
                api("STREAM.NAMES", r#"{"offset":10}"#),
                api("STREAM.NAMES", r#"{"subject":"b.x"}"#),
                api("STREAM.NAMES", r#"{"subject":"c.*"}"#),
                api("STREAM.NAMES", r#"{"subject":"none"}"#),
                api("STREAM.LIST", ""),
                api("STREAM.LIST", r#"{"offset":2}"#),
                api("STREAM.LIST", r#"{"subject":"a.q"}"#),
                api("STREAM.NAMES", "{bad"),
                api("STREAM.NAMES", r#"{"offset":-1}"#),
            ],
        ),
        (
            "names and list, empty",
            vec![api("STREAM.NAMES", ""), api("STREAM.LIST", "")],
        ),
        // -------------------------------------------------------- STREAM.PURGE
        (
            "purge variants",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 4),
                publish_n("s.b", 4),
                vec![
                    api("STREAM.PURGE.S", r#"{"filter":"s.a","keep":1}"#),
                    api("STREAM.INFO.S", ""),
                    api("STREAM.PURGE.S", r#"{"seq":6}"#),
                    api("STREAM.INFO.S", ""),
                    api("STREAM.PURGE.S", r#"{"seq":7,"keep":1}"#),
                    api("STREAM.PURGE.S", r#"{"filter":"s.b"}"#),
                    api("STREAM.INFO.S", ""),
                    api("STREAM.PURGE.S", ""),
                    api("STREAM.INFO.S", ""),
                    api("STREAM.PURGE.S", "{bad"),
                    api("STREAM.PURGE.NOPE", ""),
                ],
            ]),
        ),
        (
            "purge keep and deny_purge",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 5),
                vec![
                    api("STREAM.PURGE.S", r#"{"keep":2}"#),
                    api("STREAM.INFO.S", ""),
                    create("D", r#""subjects":["d"],"deny_purge":true"#),
                    api("STREAM.PURGE.D", ""),
                ],
            ]),
        ),
        // ------------------------------------------------------ STREAM.MSG.GET
        (
            "msg get",
            concat(vec![
                vec![create("S", SA)],
                vec![raw("s.a", "one").hdr("X-Test", "1")],
                publish_n("s.b", 2),
                vec![
                    api("STREAM.MSG.GET.S", r#"{"seq":1}"#),
                    api("STREAM.MSG.GET.S", r#"{"seq":99}"#),
                    api("STREAM.MSG.GET.S", r#"{"last_by_subj":"s.b"}"#),
                    api("STREAM.MSG.GET.S", r#"{"last_by_subj":"s.*"}"#),
                    api("STREAM.MSG.GET.S", r#"{"last_by_subj":"s.zz"}"#),
                    api("STREAM.MSG.GET.S", r#"{"next_by_subj":"s.b"}"#),
                    api("STREAM.MSG.GET.S", r#"{"seq":3,"next_by_subj":"s.b"}"#),
                    api("STREAM.MSG.GET.S", r#"{"seq":4,"next_by_subj":"s.b"}"#),
                    api("STREAM.MSG.GET.S", r#"{"seq":1,"last_by_subj":"s.b"}"#),
                    api("STREAM.MSG.GET.S", "{}"),
                    api("STREAM.MSG.GET.S", ""),
                    api("STREAM.MSG.GET.S", "{bad"),
                    api("STREAM.MSG.GET.S", r#"{"seq":-1}"#),
                    api("STREAM.MSG.GET.NOPE", r#"{"seq":1}"#),
                ],
            ]),
        ),
        // --------------------------------------------------- STREAM.MSG.DELETE
        (
            "msg delete",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 3),
                vec![
                    api("STREAM.MSG.DELETE.S", r#"{"seq":1}"#),
                    api("STREAM.MSG.DELETE.S", r#"{"seq":2,"no_erase":true}"#),
                    api("STREAM.MSG.DELETE.S", r#"{"seq":2}"#),
                    api("STREAM.MSG.DELETE.S", r#"{"seq":99}"#),
                    api("STREAM.MSG.DELETE.S", r#"{"seq":0}"#),
                    api("STREAM.MSG.DELETE.S", ""),
                    api("STREAM.MSG.DELETE.S", "{bad"),
                    api("STREAM.MSG.DELETE.NOPE", r#"{"seq":1}"#),
                    api("STREAM.INFO.S", r#"{"deleted_details":true}"#),
                    create("D", r#""subjects":["d"],"deny_delete":true"#),
                    raw("d", "x"),
                    api("STREAM.MSG.DELETE.D", r#"{"seq":1}"#),
                ],
            ]),
        ),
        // ---------------------------------------------------------- DIRECT.GET
        (
            "direct get",
            concat(vec![
                vec![create("S", r#""subjects":["s.>"],"allow_direct":true"#)],
                vec![raw("s.a", "one").hdr("X-Test", "1")],
                publish_n("s.b", 2),
                vec![
                    api("DIRECT.GET.S", r#"{"seq":1}"#),
                    api("DIRECT.GET.S", r#"{"seq":99}"#),
                    api("DIRECT.GET.S", r#"{"last_by_subj":"s.b"}"#),
                    api("DIRECT.GET.S", r#"{"next_by_subj":"s.b","seq":2}"#),
                    api("DIRECT.GET.S.s.a", ""),
                    api("DIRECT.GET.S.s.zz", ""),
                    api("DIRECT.GET.S", "{bad"),
                    api("DIRECT.GET.S", "{}"),
                    api("DIRECT.GET.S", ""),
                    api("DIRECT.GET.S.s.a", r#"{"seq":1}"#),
                    create("N", r#""subjects":["n"]"#),
                    raw("n", "x"),
                    api("DIRECT.GET.N", r#"{"seq":1}"#),
                    api("DIRECT.GET.NOPE", r#"{"seq":1}"#),
                ],
            ]),
        ),
        // ------------------------------------------------------- STREAM.DELETE
        (
            "stream delete",
            vec![
                create("S", SA),
                api("STREAM.DELETE.S", ""),
                api("STREAM.DELETE.S", ""),
                api("STREAM.INFO.S", ""),
                raw("s.a", "x"),
            ],
        ),
        // ------------------------------------------------------------ publishes
        (
            "publish dedup and expectations",
            vec![
                create("S", SA),
                raw("s.a", "1").hdr("Nats-Msg-Id", "id1"),
                raw("s.a", "1").hdr("Nats-Msg-Id", "id1"),
                raw("s.a", "2").hdr("Nats-Expected-Stream", "S"),
                raw("s.a", "3").hdr("Nats-Expected-Stream", "OTHER"),
                raw("s.a", "4").hdr("Nats-Expected-Last-Sequence", "2"),
                raw("s.a", "5").hdr("Nats-Expected-Last-Sequence", "1"),
                raw("s.a", "5").hdr("Nats-Expected-Last-Sequence", "x"),
                raw("s.b", "6").hdr("Nats-Expected-Last-Subject-Sequence", "0"),
                raw("s.b", "7").hdr("Nats-Expected-Last-Subject-Sequence", "0"),
                raw("s.b", "8").hdr("Nats-Expected-Last-Subject-Sequence", "4"),
                raw("s.c", "9").hdr("Nats-Msg-Id", "id2"),
                raw("s.c", "10").hdr("Nats-Expected-Last-Msg-Id", "id2"),
                raw("s.c", "11").hdr("Nats-Expected-Last-Msg-Id", "id2"),
                raw("s.c", "12").hdr("Nats-Expected-Last-Msg-Id", ""),
                raw("nostream", "x"),
                api("STREAM.INFO.S", ""),
            ],
        ),
        (
            "publish rollups",
            concat(vec![
                vec![create("N", r#""subjects":["n.>"]"#)],
                vec![raw("n.a", "x").hdr("Nats-Rollup", "sub")],
                vec![create(
                    "S",
                    r#""subjects":["s.>"],"allow_rollup_hdrs":true"#,
                )],
                publish_n("s.a", 2),
                publish_n("s.b", 2),
                vec![
                    raw("s.a", "r").hdr("Nats-Rollup", "sub"),
                    api("STREAM.INFO.S", r#"{"subjects_filter":">"}"#),
                    raw("s.b", "r").hdr("Nats-Rollup", "all"),
                    api("STREAM.INFO.S", r#"{"subjects_filter":">"}"#),
                    raw("s.b", "r").hdr("Nats-Rollup", "bogus"),
                ],
            ]),
        ),
        (
            "publish limits",
            concat(vec![
                vec![create(
                    "S",
                    r#""subjects":["s.>"],"max_msgs":2,"discard":"new""#,
                )],
                publish_n("s.a", 3),
                vec![create("M", r#""subjects":["m"],"max_msg_size":10"#)],
                vec![raw("m", "0123456789"), raw("m", "0123456789A")],
                vec![create(
                    "P",
                    r#""subjects":["p.>"],"max_msgs_per_subject":2"#,
                )],
                publish_n("p.a", 3),
                vec![api("STREAM.INFO.P", r#"{"subjects_filter":">"}"#)],
                vec![create(
                    "Q",
                    r#""subjects":["q.>"],"max_msgs_per_subject":1,"discard":"new","discard_new_per_subject":true"#,
                )],
                publish_n("q.a", 2),
                vec![create(
                    "B",
                    r#""subjects":["b"],"max_bytes":100,"discard":"new""#,
                )],
                publish_n("b", 3),
                vec![create("O", r#""subjects":["o"],"max_msgs":2"#)],
                publish_n("o", 3),
                vec![api("STREAM.INFO.O", "")],
            ]),
        ),
        // ----------------------------------------------------- CONSUMER.CREATE
        (
            "consumer create forms",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 2),
                vec![
                    api("CONSUMER.CREATE.S", r#"{"stream_name":"S","config":{}}"#),
                    api(
                        "CONSUMER.CREATE.S",
                        r#"{"stream_name":"S","config":{"ack_policy":"explicit","deliver_subject":"dx"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S.C1",
                        r#"{"stream_name":"S","config":{"name":"C1","ack_policy":"explicit"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S.C2.s.a",
                        r#"{"stream_name":"S","config":{"durable_name":"C2","ack_policy":"explicit"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S.C3.s.a",
                        r#"{"stream_name":"S","config":{"durable_name":"C3","filter_subject":"s.b"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S.C3.s.a",
                        r#"{"stream_name":"S","config":{"durable_name":"C3","filter_subjects":["s.a","s.b"]}}"#,
                    ),
                    api(
                        "CONSUMER.DURABLE.CREATE.S.D1",
                        r#"{"stream_name":"S","config":{"durable_name":"D1","ack_policy":"explicit"}}"#,
                    ),
                    api(
                        "CONSUMER.DURABLE.CREATE.S.D2",
                        r#"{"stream_name":"S","config":{"ack_policy":"explicit"}}"#,
                    ),
                    api(
                        "CONSUMER.DURABLE.CREATE.S.D3",
                        r#"{"stream_name":"S","config":{"durable_name":"OTHER"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S.C4",
                        r#"{"stream_name":"S","config":{"durable_name":"OTHER"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S.C5",
                        r#"{"stream_name":"S","config":{"durable_name":"C5","name":"X5"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S",
                        r#"{"stream_name":"S","config":{"durable_name":"C6"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S",
                        r#"{"stream_name":"S","config":{"name":"C7"}}"#,
                    ),
                    api("CONSUMER.CREATE.S.C8", r#"{"stream_name":"S"}"#),
                    api("CONSUMER.CREATE.S.C8", r#"{"stream_name":"X","config":{}}"#),
                    api(
                        "CONSUMER.CREATE.NOPE.C9",
                        r#"{"stream_name":"NOPE","config":{}}"#,
                    ),
                    api("CONSUMER.CREATE.S.C10", ""),
                    api("CONSUMER.CREATE.S.C10", "{bad"),
                    api("CONSUMER.CREATE.S.C10", r#"{"config":{}}"#),
                    api("STREAM.INFO.S", ""),
                ],
            ]),
        ),
        (
            "consumer create actions",
            vec![
                create("S", SA),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"},"action":"create"}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"},"action":"create"}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_deliver":5},"action":"create"}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_deliver":5},"action":"update"}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.U",
                    r#"{"stream_name":"S","config":{"durable_name":"U"},"action":"update"}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"all"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","deliver_policy":"new"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","deliver_subject":"dx"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.C",
                    r#"{"stream_name":"S","config":{"durable_name":"C"},"action":"bogus"}"#,
                ),
            ],
        ),
        (
            "consumer config errors",
            vec![
                create("S", SA),
                api(
                    "CONSUMER.CREATE.S.E1",
                    r#"{"stream_name":"S","config":{"durable_name":"E1","filter_subject":"t.a"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E2",
                    r#"{"stream_name":"S","config":{"durable_name":"E2","idle_heartbeat":1000000000}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E3",
                    r#"{"stream_name":"S","config":{"durable_name":"E3","flow_control":true}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E4",
                    r#"{"stream_name":"S","config":{"durable_name":"E4","deliver_subject":"d","max_waiting":5}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E5",
                    r#"{"stream_name":"S","config":{"durable_name":"E5","deliver_subject":"d.*"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E6",
                    r#"{"stream_name":"S","config":{"durable_name":"E6","deliver_subject":"d","flow_control":true}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E7",
                    r#"{"stream_name":"S","config":{"durable_name":"E7","deliver_subject":"d","idle_heartbeat":1000}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E8",
                    r#"{"stream_name":"S","config":{"durable_name":"E8","ack_policy":"none","max_ack_pending":5}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E9",
                    r#"{"stream_name":"S","config":{"durable_name":"E9","filter_subject":"s.a","filter_subjects":["s.b"]}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E10",
                    r#"{"stream_name":"S","config":{"durable_name":"E10","filter_subjects":["s.a","s.*"]}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E11",
                    r#"{"stream_name":"S","config":{"durable_name":"E11","deliver_policy":"by_start_sequence"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E12",
                    r#"{"stream_name":"S","config":{"durable_name":"E12","opt_start_seq":5}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E13",
                    r#"{"stream_name":"S","config":{"durable_name":"E13","ack_policy":"explicit","max_deliver":2,"backoff":[1000000000,2000000000]}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E14",
                    r#"{"stream_name":"S","config":{"durable_name":"E14","num_replicas":3}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E15",
                    r#"{"stream_name":"S","config":{"durable_name":"E15","deliver_subject":"s.x"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E16",
                    r#"{"stream_name":"S","config":{"durable_name":"E16","ack_policy":"sometimes"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.a/b",
                    r#"{"stream_name":"S","config":{"durable_name":"a/b"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E17",
                    r#"{"stream_name":"S","config":{"durable_name":"E17","max_waiting":-1}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.E18",
                    r#"{"stream_name":"S","config":{"durable_name":"E18","filter_subjects":["s.a",""]}}"#,
                ),
            ],
        ),
        (
            "consumer defaults and push config",
            vec![
                create("S", SA),
                api(
                    "CONSUMER.CREATE.S.P",
                    r#"{"stream_name":"S","config":{"durable_name":"P","deliver_subject":"push.p","ack_policy":"explicit","idle_heartbeat":5000000000,"flow_control":true}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.N",
                    r#"{"stream_name":"S","config":{"durable_name":"N","ack_policy":"none"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.A",
                    r#"{"stream_name":"S","config":{"durable_name":"A","ack_policy":"all","backoff":[1000000000,5000000000],"max_deliver":4,"description":"x","metadata":{"k":"v"},"max_batch":5,"max_expires":10000000000,"max_bytes":1000,"inactive_threshold":60000000000,"headers_only":true,"replay_policy":"original","deliver_policy":"last_per_subject"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.S.W",
                    r#"{"stream_name":"S","config":{"durable_name":"W","ack_policy":"explicit","deliver_policy":"by_start_sequence","opt_start_seq":3,"mem_storage":true}}"#,
                ),
            ],
        ),
        (
            "workqueue consumers",
            vec![
                create("W", r#""subjects":["w.>"],"retention":"workqueue""#),
                api(
                    "CONSUMER.CREATE.W.A",
                    r#"{"stream_name":"W","config":{"durable_name":"A","ack_policy":"none"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.W.A",
                    r#"{"stream_name":"W","config":{"durable_name":"A","ack_policy":"explicit","deliver_policy":"new"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.W.A",
                    r#"{"stream_name":"W","config":{"durable_name":"A","ack_policy":"explicit"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.W.B",
                    r#"{"stream_name":"W","config":{"durable_name":"B","ack_policy":"explicit"}}"#,
                ),
                api(
                    "CONSUMER.CREATE.W.C",
                    r#"{"stream_name":"W","config":{"durable_name":"C","ack_policy":"explicit","filter_subject":"w.a"}}"#,
                ),
            ],
        ),
        // ------------------------------------- CONSUMER.INFO/DELETE/NAMES/LIST
        (
            "consumer info, delete, names, list",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 3),
                vec![
                    api(
                        "CONSUMER.CREATE.S.A",
                        r#"{"stream_name":"S","config":{"durable_name":"A","ack_policy":"explicit"}}"#,
                    ),
                    api(
                        "CONSUMER.CREATE.S.B",
                        r#"{"stream_name":"S","config":{"durable_name":"B","filter_subject":"s.b"}}"#,
                    ),
                    api("CONSUMER.INFO.S.A", ""),
                    api("CONSUMER.INFO.S.NOPE", ""),
                    api("CONSUMER.INFO.NOPE.A", ""),
                    api("CONSUMER.NAMES.S", ""),
                    api("CONSUMER.NAMES.S", r#"{"offset":1}"#),
                    api("CONSUMER.LIST.S", ""),
                    api("CONSUMER.NAMES.NOPE", ""),
                    api("CONSUMER.NAMES.S", "{bad"),
                    api("CONSUMER.DELETE.S.A", ""),
                    api("CONSUMER.DELETE.S.A", ""),
                    api("CONSUMER.DELETE.NOPE.A", ""),
                    api("CONSUMER.NAMES.S", ""),
                    api("CONSUMER.LIST.S", ""),
                ],
            ]),
        ),
        // -------------------------------------------------- CONSUMER.MSG.NEXT
        (
            // `a.>` covers the stream's `a.>` but not its `a`: the consumer
            // must not be treated as unfiltered.
            "a filter covering only some of the stream's subjects skips the others",
            concat(vec![
                vec![create("S", r#""subjects":["a","a.>"]"#)],
                publish_n("a", 1),
                publish_n("a.b", 1),
                publish_n("a", 1),
                vec![
                    api(
                        "CONSUMER.CREATE.S.C",
                        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"none","filter_subject":"a.>"}}"#,
                    ),
                    pull("S", "C", r#"{"batch":3,"no_wait":true}"#),
                ],
            ]),
        ),
        (
            "pull batches and no_wait",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 3),
                vec![
                    api(
                        "CONSUMER.CREATE.S.C",
                        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
                    ),
                    pull("S", "C", ""),
                    pull("S", "C", r#"{"batch":1}"#),
                    pull("S", "C", r#"{"batch":5,"no_wait":true}"#),
                    pull("S", "C", r#"{"batch":5,"no_wait":true}"#),
                    pull("S", "C", "1"),
                    api("CONSUMER.INFO.S.C", ""),
                    pull(
                        "S",
                        "C",
                        r#"{"batch":2,"no_wait":true,"expires":500000000}"#,
                    )
                    .collect(800),
                    pull("S", "NOPE", r#"{"batch":1,"no_wait":true}"#),
                    pull("NOPE", "C", r#"{"batch":1,"no_wait":true}"#),
                    pull("S", "C", "{bad"),
                    pull("S", "C", r#"{"batch":-3,"no_wait":true}"#),
                ],
            ]),
        ),
        (
            "pull with expires and pending headers",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 2),
                vec![
                    api(
                        "CONSUMER.CREATE.S.C",
                        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
                    ),
                    pull("S", "C", r#"{"batch":5,"expires":300000000}"#).collect(600),
                    pull(
                        "S",
                        "C",
                        r#"{"batch":5,"expires":300000000,"max_bytes":5000}"#,
                    )
                    .collect(600),
                ],
            ]),
        ),
        (
            "pull max_bytes and max_batch",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 3),
                vec![
                    api(
                        "CONSUMER.CREATE.S.C",
                        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_batch":2,"max_expires":2000000000,"max_bytes":10000}}"#,
                    ),
                    pull("S", "C", r#"{"batch":3,"no_wait":true}"#),
                    pull("S", "C", r#"{"batch":1,"expires":5000000000}"#),
                    pull("S", "C", r#"{"batch":1,"max_bytes":20000,"no_wait":true}"#),
                    pull("S", "C", r#"{"batch":2,"max_bytes":5,"no_wait":true}"#),
                    pull("S", "C", r#"{"batch":2,"max_bytes":60,"no_wait":true}"#),
                ],
            ]),
        ),
        (
            "pull idle heartbeat",
            concat(vec![
                vec![create("S", SA)],
                vec![
                    api(
                        "CONSUMER.CREATE.S.C",
                        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
                    ),
                    pull(
                        "S",
                        "C",
                        r#"{"batch":1,"expires":1000000000,"idle_heartbeat":400000000}"#,
                    )
                    .collect(1200),
                    pull(
                        "S",
                        "C",
                        r#"{"batch":1,"expires":1000000000,"idle_heartbeat":800000000}"#,
                    ),
                ],
            ]),
        ),
        (
            "pull on a push consumer and acks",
            concat(vec![
                vec![create("S", SA)],
                publish_n("s.a", 2),
                vec![
                    api(
                        "CONSUMER.CREATE.S.P",
                        r#"{"stream_name":"S","config":{"durable_name":"P","deliver_subject":"push.p"}}"#,
                    ),
                    pull("S", "P", r#"{"batch":1,"no_wait":true}"#),
                    api(
                        "CONSUMER.CREATE.S.C",
                        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
                    ),
                    pull("S", "C", r#"{"batch":1}"#),
                    raw("$JS.ACK.S.C.1.1.1.0.1", "+ACK"),
                    api("CONSUMER.INFO.S.C", ""),
                ],
            ]),
        ),
        // ---------------------------------------------- unknown and malformed
        (
            "unknown API subjects",
            vec![
                api("NOPE", ""),
                api("STREAM.FOO.S", ""),
                api("STREAM.CREATE", "{}"),
                api("STREAM.INFO", ""),
                api("CONSUMER.INFO.S", ""),
                api("CONSUMER.CREATE.S.C.D.E.F", "{}"),
                api("STREAM.INFO.A.B", ""),
            ],
        ),
        (
            "publish without reply and api without reply",
            vec![
                create("S", SA),
                raw("s.a", "x").no_reply(),
                api("STREAM.DELETE.S", "").no_reply(),
                sleep(100),
                api("STREAM.INFO.S", ""),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_api_matches_nats_server() {
    check(scenarios()).await;
}
