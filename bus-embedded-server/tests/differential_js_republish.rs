//! Differential tests of a stream's `republish` (each stored message is
//! published again to a transformed subject with `Nats-Stream`,
//! `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp`,
//! `Nats-Last-Sequence` headers) against nats-server 2.15.1; the harness
//! is `js_diff/` (its `watch` step collects what was republished).

mod js_diff;

use js_diff::*;

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "republish: configuration errors and what the config shows",
            vec![
                create(
                    "R1",
                    r#""subjects":["a.>"],"republish":{"src":"a.>","dest":"r.>"}"#,
                ),
                create("R2", r#""subjects":["b.>"],"republish":{"dest":"rb.>"}"#),
                create(
                    "R3",
                    r#""subjects":["c.>"],"republish":{"src":"x.>","dest":"rc.>"}"#,
                ),
                create(
                    "R4",
                    r#""subjects":["d.>"],"republish":{"src":"d.>","dest":"d.x.>"}"#,
                ),
                create(
                    "R5",
                    r#""subjects":["d.>"],"republish":{"src":">","dest":">"}"#,
                ),
                create(
                    "R6",
                    r#""subjects":["d.>"],"republish":{"src":"d.*","dest":"rd.*"}"#,
                ),
                create(
                    "R7",
                    r#""subjects":["e.>"],"republish":{"src":"e.*","dest":"re.{{wildcard(1)}}"}"#,
                ),
                create(
                    "R8",
                    r#""subjects":["d.>"],"republish":{"src":"d.*","dest":"rd.{{wildcard(2)}}"}"#,
                ),
                create(
                    "R9",
                    r#""subjects":["f.>"],"republish":{"src":"f.*","dest":""}"#,
                ),
                create(
                    "R10",
                    r#""subjects":["d.>"],"republish":{"src":"d..b","dest":"rd"}"#,
                ),
                create(
                    "R11",
                    r#""subjects":["g.>"],"republish":{"src":"g.*","dest":"rg.$1","headers_only":true}"#,
                ),
                create(
                    "R12",
                    r#""subjects":["d.>"],"republish":{"src":"d.>","dest":"rd"}"#,
                ),
                create(
                    "R13",
                    r#""subjects":["h"],"subject_transform":{"src":"h","dest":"hh"},"republish":{"src":">","dest":">"}"#,
                ),
                create(
                    "R14",
                    r#""subjects":["d.*"],"subject_transform":{"src":"d.*","dest":"dd.$1"},"republish":{"src":">","dest":">"}"#,
                ),
                create(
                    "R15",
                    r#""subjects":["d.>"],"subject_transform":{"src":"d.>","dest":"x.>"},"republish":{"src":"x.>","dest":"d.x.>"}"#,
                ),
                create("R16", r#""subjects":["i.>"],"republish":{"src":"i.>"}"#),
                create("R17", r#""subjects":["d.>"],"republish":"bad""#),
                api("STREAM.INFO.R2", ""),
                api("STREAM.INFO.R11", ""),
                api("STREAM.INFO.R13", ""),
                api("STREAM.INFO.R16", ""),
            ],
        ),
        (
            "republish: stored messages are republished with the stream's headers, duplicates are not",
            vec![
                watch("r.>"),
                create(
                    "R",
                    r#""subjects":["a.>"],"republish":{"src":"a.>","dest":"r.>"}"#,
                ),
                raw("a.x", "one"),
                raw("a.y", "two").hdr("K", "v"),
                raw("a.x", "three").hdr("Nats-Msg-Id", "m1"),
                raw("a.x", "again").hdr("Nats-Msg-Id", "m1"),
                raw("a.x", "refused").hdr("Nats-Expected-Last-Sequence", "1"),
                raw("a.x", "no reply").no_reply(),
                sleep(100),
                raw("a.y", "").hdr("Nats-Expected-Last-Subject-Sequence", "2"),
                api("STREAM.INFO.R", ""),
            ],
        ),
        (
            "republish: headers only carries the size and no payload",
            vec![
                watch("h.>"),
                create(
                    "H",
                    r#""subjects":["a.*"],"republish":{"src":"a.*","dest":"h.$1","headers_only":true}"#,
                ),
                raw("a.x", "twelve bytes"),
                raw("a.x", "").hdr("K", "v"),
            ],
        ),
        (
            "republish: only subjects matching the source, under a transformed destination",
            vec![
                watch("out.>"),
                create(
                    "S",
                    r#""subjects":["s.>"],"republish":{"src":"s.*.*","dest":"out.{{wildcard(2)}}.{{wildcard(1)}}"}"#,
                ),
                raw("s.a.b", "matched"),
                raw("s.a", "too short"),
                raw("s.a.b.c", "too long"),
                raw("s.c.d", "matched"),
            ],
        ),
        (
            "republish: after a subject transform, of the stored subject, and the implicit republish",
            vec![
                watch("hh"),
                watch("o.>"),
                create(
                    "I",
                    r#""subjects":["h"],"subject_transform":{"src":"h","dest":"hh"},"republish":{"src":">","dest":">"}"#,
                ),
                raw("h", "implicit"),
                create(
                    "T",
                    r#""subjects":["t.*"],"subject_transform":{"src":"t.*","dest":"u.$1"},"republish":{"src":"u.*","dest":"o.$1"}"#,
                ),
                raw("t.1", "transformed then republished"),
                raw("t.1", "second"),
            ],
        ),
        (
            "republish: rollups and KV-style deletes are republished, purges and message deletes are not",
            vec![
                watch("kv.>"),
                create(
                    "KV_b",
                    r#""subjects":["$KV.b.>"],"allow_rollup_hdrs":true,"deny_delete":true,"max_msgs_per_subject":5,"republish":{"src":"$KV.b.>","dest":"kv.b.>"}"#,
                ),
                raw("$KV.b.k1", "v1"),
                raw("$KV.b.k1", "v2"),
                raw("$KV.b.k2", "v1"),
                raw("$KV.b.k1", "").hdr("KV-Operation", "DEL"),
                raw("$KV.b.k2", "")
                    .hdr("KV-Operation", "PURGE")
                    .hdr("Nats-Rollup", "sub"),
                api("STREAM.PURGE.KV_b", r#"{"filter":"$KV.b.k1"}"#),
                create("M", r#""subjects":["m.>"],"republish":{"dest":"kv.m.>"}"#),
                raw("m.1", "x"),
                api("STREAM.MSG.DELETE.M", r#"{"seq":1}"#),
                raw("m.1", "y"),
            ],
        ),
        (
            "republish: an atomic batch republishes each message, with the batch's own last sequences",
            vec![
                watch("rb.>"),
                create(
                    "B",
                    r#""subjects":["b.>"],"allow_atomic":true,"republish":{"src":"b.>","dest":"rb.>"}"#,
                ),
                raw("b.x", "before"),
                batch("b.x", "b1", 1, None),
                batch("b.y", "b1", 2, None),
                batch("b.x", "b1", 3, Some("1")),
            ],
        ),
        (
            "republish: an interest stream without consumers stores and republishes nothing",
            vec![
                watch("ri.>"),
                create(
                    "I",
                    r#""subjects":["i.>"],"retention":"interest","republish":{"src":"i.>","dest":"ri.>"}"#,
                ),
                raw("i.1", "nobody"),
                api(
                    "CONSUMER.CREATE.I.C",
                    r#"{"stream_name":"I","config":{"name":"C","ack_policy":"explicit","filter_subject":"i.2"}}"#,
                ),
                raw("i.1", "still nobody"),
                raw("i.2", "kept"),
            ],
        ),
        (
            "republish: a memory stream republishes as a file stream does",
            vec![
                watch("rmem.>"),
                create(
                    "MEM",
                    r#""subjects":["mem.>"],"storage":"memory","republish":{"src":"mem.*","dest":"rmem.$1","headers_only":true}"#,
                ),
                raw("mem.a", "1"),
                raw("mem.a", "22").hdr("K", "v"),
                raw("mem.b.c", "not matched"),
            ],
        ),
        (
            "republish: counters carry the new total, rollups of the whole stream and raised TTLs as stored",
            vec![
                watch("rc.>"),
                create(
                    "C",
                    r#""subjects":["c.>"],"allow_msg_counter":true,"republish":{"src":"c.>","dest":"rc.>"}"#,
                ),
                raw("c.x", "").hdr("Nats-Incr", "5"),
                raw("c.x", "").hdr("Nats-Incr", "-2"),
                create(
                    "A",
                    r#""subjects":["ra.in.>"],"allow_rollup_hdrs":true,"allow_msg_ttl":true,"subject_delete_marker_ttl":5000000000,"republish":{"src":">","dest":"rc.a.>"}"#,
                ),
                raw("ra.in.1", "first"),
                raw("ra.in.2", "all").hdr("Nats-Rollup", "all"),
                raw("ra.in.3", "ttl raised").hdr("Nats-TTL", "1s"),
            ],
        ),
        (
            "republish: added and removed by updates",
            vec![
                watch("ru.>"),
                create("U", r#""subjects":["u.>"]"#),
                raw("u.1", "before"),
                api(
                    "STREAM.UPDATE.U",
                    r#"{"name":"U","subjects":["u.>"],"republish":{"src":"u.>","dest":"ru.>"}}"#,
                ),
                raw("u.1", "during"),
                api(
                    "STREAM.UPDATE.U",
                    r#"{"name":"U","subjects":["u.>"],"republish":{"src":"u.>","dest":"u.x.>"}}"#,
                ),
                api("STREAM.UPDATE.U", r#"{"name":"U","subjects":["u.>"]}"#),
                raw("u.1", "after"),
                watch("x.>"),
                api(
                    "STREAM.UPDATE.U",
                    r#"{"name":"U","subjects":["u.>"],"republish":{"src":"u.>","dest":""}}"#,
                ),
                raw("u.x.y", "an update's empty destination is '>'"),
            ],
        ),
        (
            // Last: while it ran earlier in the list, nats-server 2.15.1
            // now and then answered a stream create two scenarios later
            // with 10049 "error creating store for stream" (cause not
            // found; not reproduced outside this harness).
            "republish: subject delete markers left by a TTL are republished",
            vec![
                watch("rm.>"),
                create(
                    "M",
                    r#""subjects":["m.>"],"allow_msg_ttl":true,"subject_delete_marker_ttl":1000000000,"republish":{"src":"m.>","dest":"rm.>"}"#,
                ),
                raw("m.1", "short lived").hdr("Nats-TTL", "1s"),
                raw("m.2", "kept"),
                sleep(2500),
                api("STREAM.INFO.M", ""),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_republish_matches_nats_server() {
    check(scenarios()).await;
}
