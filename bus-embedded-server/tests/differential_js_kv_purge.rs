//! Differential tests of the stream purges a KV client's
//! `purge_deletes(olderthan)` / `purgeDeletes(olderMillis)` sends, against
//! nats-server 2.15.1 (the harness is `js_diff/`): per key, `filter` alone
//! for an old delete or purge marker, `filter` with `keep: 1` for a recent
//! one (`keep: 0` from nats.js), on a KV-shaped stream. The clients
//! themselves run in `compat_other_clients.rs` (`kv_purge_deletes.*`).

mod js_diff;

use js_diff::*;

const KV: &str = r#""subjects":["$KV.B.>"],"max_msgs_per_subject":5,"allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true,"discard":"new""#;

fn put(key: &str, value: &str) -> Step {
    raw(&format!("$KV.B.{key}"), value)
}

fn del(key: &str) -> Step {
    raw(&format!("$KV.B.{key}"), "").hdr("KV-Operation", "DEL")
}

fn purge_marker(key: &str) -> Step {
    raw(&format!("$KV.B.{key}"), "")
        .hdr("KV-Operation", "PURGE")
        .hdr("Nats-Rollup", "sub")
}

fn purge(body: &str) -> Step {
    api("STREAM.PURGE.KV_B", body)
}

fn last_of(key: &str) -> Step {
    api(
        "STREAM.MSG.GET.KV_B",
        &format!(r#"{{"last_by_subj":"$KV.B.{key}"}}"#),
    )
}

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "kv purge deletes: old markers go with their key, recent ones stay alone",
            vec![
                create("KV_B", KV),
                put("old", "1"),
                put("old", "2"),
                del("old"),
                put("gone", "1"),
                purge_marker("gone"),
                put("live", "stays"),
                put("recent", "1"),
                put("recent", "2"),
                del("recent"),
                // An old marker: the whole key.
                purge(r#"{"filter":"$KV.B.old"}"#),
                purge(r#"{"filter":"$KV.B.gone","keep":0}"#),
                // A recent marker: it alone stays.
                purge(r#"{"filter":"$KV.B.recent","keep":1}"#),
                purge(r#"{"filter":"$KV.B.recent","keep":1}"#),
                last_of("recent"),
                last_of("old"),
                last_of("live"),
                api("STREAM.INFO.KV_B", r#"{"subjects_filter":">"}"#),
                // Then every marker (olderthan 0).
                purge(r#"{"filter":"$KV.B.recent"}"#),
                api("STREAM.INFO.KV_B", r#"{"subjects_filter":">"}"#),
            ],
        ),
        (
            "kv purge deletes: keep on a wildcard filter, keep above the count, keep with seq",
            vec![
                create("KV_B", KV),
                put("a.1", "1"),
                put("a.1", "2"),
                put("a.2", "1"),
                del("a.2"),
                put("b", "1"),
                purge(r#"{"filter":"$KV.B.a.*","keep":1}"#),
                purge(r#"{"filter":"$KV.B.b","keep":5}"#),
                purge(r#"{"filter":"$KV.B.b","keep":1,"seq":3}"#),
                purge(r#"{"keep":1}"#),
                api("STREAM.INFO.KV_B", r#"{"subjects_filter":">"}"#),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_purge_deletes_purges_match_nats_server() {
    check(scenarios()).await;
}
