//! Differential tests of consumer priority groups (`priority_groups`,
//! `priority_policy` overflow / pinned_client / prioritized,
//! `priority_timeout`, `$JS.API.CONSUMER.UNPIN`) against nats-server
//! 2.15.1; the harness is `js_diff/` (pin ids are masked as `<pin>`, so a
//! pulled pin id cannot be sent back here: `compat_js_priority.rs` does
//! that with a real client).

mod js_diff;

use js_diff::*;

const STREAM: &str = r#""subjects":["s.>"]"#;

fn consumer(name: &str, extra: &str) -> Step {
    api(
        &format!("CONSUMER.CREATE.S.{name}"),
        &format!(
            r#"{{"stream_name":"S","config":{{"name":"{name}","ack_policy":"explicit"{extra}}}}}"#
        ),
    )
}

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "priority groups: configuration errors and defaults",
            vec![
                create("S", STREAM),
                consumer("C", r#","priority_policy":"overflow""#),
                consumer(
                    "C",
                    r#","priority_policy":"overflow","priority_groups":[""]"#,
                ),
                consumer(
                    "C",
                    r#","priority_policy":"overflow","priority_groups":["a.b"]"#,
                ),
                consumer(
                    "C",
                    r#","priority_policy":"overflow","priority_groups":["abcdefghijklmnopq"]"#,
                ),
                consumer("C", r#","priority_groups":["A"]"#),
                consumer("C", r#","priority_timeout":1000000000"#),
                consumer("C", r#","priority_policy":"bogus","priority_groups":["A"]"#),
                consumer(
                    "C",
                    r#","priority_policy":"overflow","priority_groups":["A"],"deliver_subject":"d.x""#,
                ),
                consumer("N", r#","priority_policy":"none","priority_groups":[]"#),
                consumer(
                    "T",
                    r#","priority_policy":"pinned_client","priority_groups":["A"],"priority_timeout":-5"#,
                ),
                consumer(
                    "Q",
                    r#","priority_policy":"prioritized","priority_groups":["A","b-1/x=y_z"]"#,
                ),
                api("CONSUMER.INFO.S.Q", ""),
                // Updates may change the policy.
                consumer(
                    "Q",
                    r#","priority_policy":"overflow","priority_groups":["A"]"#,
                ),
                api("STREAM.INFO.S", ""),
            ],
        ),
        (
            "priority groups: pull requests checked against the policy",
            vec![
                create("S", STREAM),
                consumer(
                    "P",
                    r#","priority_policy":"pinned_client","priority_groups":["A"]"#,
                ),
                consumer(
                    "O",
                    r#","priority_policy":"overflow","priority_groups":["A"]"#,
                ),
                consumer("N", ""),
                raw("s.1", "one"),
                pull("S", "P", r#"{"batch":1,"expires":200000000}"#),
                pull("S", "P", r#"{"batch":1,"group":"Z","expires":200000000}"#),
                pull("S", "P", r#"{"batch":1,"group":"A","min_pending":3}"#),
                pull("S", "P", r#"{"batch":1,"group":"A","priority":10}"#),
                pull("S", "P", r#"{"batch":1,"group":"A","priority":-1}"#),
                pull("S", "O", r#"{"batch":1,"group":"A","id":"XYZ"}"#),
                pull("S", "O", r#"{"batch":1,"expires":200000000}"#),
                pull("S", "N", r#"{"batch":1,"group":"A","min_ack_pending":1}"#),
                pull("S", "N", r#"{"batch":1,"group":"A","id":"XYZ"}"#),
                // Clients send null for the fields they leave unset.
                pull(
                    "S",
                    "O",
                    r#"{"batch":1,"group":"A","min_pending":null,"id":null,"priority":null,"no_wait":true}"#,
                ),
                // A plain consumer takes a group it does not have.
                pull(
                    "S",
                    "N",
                    r#"{"batch":1,"group":"A","priority":3,"no_wait":true}"#,
                ),
            ],
        ),
        (
            "priority groups: pinned client, 423 for other ids, unpin",
            vec![
                create("S", STREAM),
                consumer(
                    "P",
                    r#","priority_policy":"pinned_client","priority_groups":["A"],"priority_timeout":5000000000"#,
                ),
                raw("s.1", "one"),
                raw("s.2", "two"),
                raw("s.3", "three"),
                raw("s.4", "four"),
                // A bare batch size has no group: served, with an empty pin.
                pull("S", "P", "1"),
                // An id while nobody is pinned: the request ends when served.
                pull("S", "P", r#"{"batch":1,"group":"A","id":"stale"}"#),
                pull("S", "P", r#"{"batch":1,"group":"A","expires":300000000}"#),
                api("CONSUMER.INFO.S.P", ""),
                // Another client (no id) waits while the pin holds.
                pull("S", "P", r#"{"batch":1,"group":"A","expires":300000000}"#).collect(500),
                pull("S", "P", r#"{"batch":1,"group":"A","id":"other"}"#),
                api("CONSUMER.UNPIN.S.P", ""),
                api("CONSUMER.UNPIN.S.P", r#"{"group":"a.b"}"#),
                api("CONSUMER.UNPIN.S.P", r#"{"group":"B"}"#),
                api("CONSUMER.UNPIN.S.NOPE", r#"{"group":"A"}"#),
                api("CONSUMER.UNPIN.NOPE.P", r#"{"group":"A"}"#),
                api("CONSUMER.UNPIN.S.P", r#"{"group":"A"}"#),
                api("CONSUMER.INFO.S.P", ""),
                pull("S", "P", r#"{"batch":1,"group":"A","id":"stale"}"#),
                // After the unpin the next request pins again.
                pull("S", "P", r#"{"batch":1,"group":"A","expires":300000000}"#),
                api("CONSUMER.INFO.S.P", ""),
            ],
        ),
        (
            "priority groups: a pin lapses after priority_timeout without requests",
            vec![
                create("S", STREAM),
                consumer(
                    "P",
                    r#","priority_policy":"pinned_client","priority_groups":["A"],"priority_timeout":300000000"#,
                ),
                raw("s.1", "one"),
                raw("s.2", "two"),
                pull("S", "P", r#"{"batch":1,"group":"A","expires":200000000}"#),
                api("CONSUMER.INFO.S.P", ""),
                sleep(600),
                api("CONSUMER.INFO.S.P", ""),
                pull("S", "P", r#"{"batch":1,"group":"A","expires":200000000}"#),
            ],
        ),
        (
            "priority groups: overflow serves min_pending / min_ack_pending requests only when behind",
            vec![
                create("S", STREAM),
                consumer(
                    "O",
                    r#","priority_policy":"overflow","priority_groups":["A"]"#,
                ),
                raw("s.1", "one"),
                raw("s.2", "two"),
                raw("s.3", "three"),
                // 3 pending: a request for at least 5 waits and times out.
                pull(
                    "S",
                    "O",
                    r#"{"batch":1,"group":"A","min_pending":5,"expires":300000000}"#,
                )
                .collect(500),
                // At least 3: served (3 pending counting the one at hand).
                pull("S", "O", r#"{"batch":1,"group":"A","min_pending":3}"#),
                // 1 awaiting ack now: a request for 1 ack pending is served.
                pull(
                    "S",
                    "O",
                    r#"{"batch":1,"group":"A","min_ack_pending":2,"expires":300000000}"#,
                )
                .collect(500),
                pull("S", "O", r#"{"batch":1,"group":"A","min_ack_pending":1}"#),
                // A request without limits is always served.
                pull("S", "O", r#"{"batch":5,"group":"A","no_wait":true}"#),
                api("CONSUMER.INFO.S.O", ""),
            ],
        ),
        (
            "priority groups: a waiting overflow request is served once the backlog grows",
            vec![
                create("S", STREAM),
                consumer(
                    "O",
                    r#","priority_policy":"overflow","priority_groups":["A"]"#,
                ),
                raw("s.1", "one"),
                pull(
                    "S",
                    "O",
                    r#"{"batch":3,"group":"A","min_pending":3,"expires":1500000000}"#,
                )
                .collect(100),
                raw("s.2", "two"),
                raw("s.3", "three"),
                sleep(100),
                api("CONSUMER.INFO.S.O", ""),
            ],
        ),
        (
            "priority groups: prioritized serves the lowest priority value first",
            vec![
                create("S", STREAM),
                consumer(
                    "Q",
                    r#","priority_policy":"prioritized","priority_groups":["A"]"#,
                ),
                pull(
                    "S",
                    "Q",
                    r#"{"batch":1,"group":"A","priority":5,"expires":1000000000}"#,
                )
                .collect(50),
                pull(
                    "S",
                    "Q",
                    r#"{"batch":1,"group":"A","priority":1,"expires":1000000000}"#,
                )
                .collect(50),
                pull(
                    "S",
                    "Q",
                    r#"{"batch":1,"group":"A","priority":3,"expires":1000000000}"#,
                )
                .collect(50),
                raw("s.1", "first goes to priority 1"),
                sleep(100),
                raw("s.2", "second goes to priority 3"),
            ],
        ),
        (
            "priority groups: prioritized takes turns within one priority",
            vec![
                create("S", STREAM),
                consumer(
                    "Q",
                    r#","priority_policy":"prioritized","priority_groups":["A"]"#,
                ),
                pull(
                    "S",
                    "Q",
                    r#"{"batch":2,"group":"A","priority":1,"expires":1000000000}"#,
                )
                .collect(50),
                pull(
                    "S",
                    "Q",
                    r#"{"batch":2,"group":"A","priority":1,"expires":1000000000}"#,
                )
                .collect(50),
                pull(
                    "S",
                    "Q",
                    r#"{"batch":2,"group":"A","priority":4,"expires":1000000000}"#,
                )
                .collect(50),
                raw("s.1", "a"),
                raw("s.2", "b"),
                raw("s.3", "c"),
                raw("s.4", "d"),
                raw("s.5", "e"),
            ],
        ),
        (
            "waiting pull requests take turns (plain and overflow consumers)",
            vec![
                create("S", STREAM),
                consumer("N", r#","deliver_policy":"new""#),
                consumer(
                    "O",
                    r#","deliver_policy":"new","priority_policy":"overflow","priority_groups":["A"]"#,
                ),
                pull("S", "N", r#"{"batch":2,"expires":1000000000}"#).collect(50),
                pull("S", "N", r#"{"batch":2,"expires":1000000000}"#).collect(50),
                pull("S", "O", r#"{"batch":2,"group":"A","expires":1000000000}"#).collect(50),
                pull("S", "O", r#"{"batch":2,"group":"A","expires":1000000000}"#).collect(50),
                raw("s.1", "a"),
                raw("s.2", "b"),
                raw("s.3", "c"),
                raw("s.4", "d"),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_groups_match_nats_server() {
    check(scenarios()).await;
}
