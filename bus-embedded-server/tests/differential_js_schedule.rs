//! Differential tests of message schedules (ADR-51, `allow_msg_schedules`,
//! `Nats-Schedule*`) against nats-server 2.15.1: stream options, publish
//! checks, what a fired schedule stores and when; the harness is
//! `js_diff/` (it masks `Nats-Schedule-Next` times, which come from each
//! server's clock).

mod js_diff;

use std::time::{Duration, SystemTime};

use js_diff::*;

/// RFC 3339 (whole seconds, UTC) of now plus `secs`.
fn in_secs(secs: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(secs)).to_string()
}

const SCHED: &str = r#""subjects":["s.>"],"allow_msg_schedules":true"#;

fn last(stream: &str, subject: &str) -> Step {
    api(
        &format!("STREAM.MSG.GET.{stream}"),
        &format!(r#"{{"last_by_subj":"{subject}"}}"#),
    )
}

fn info(stream: &str) -> Step {
    api(
        &format!("STREAM.INFO.{stream}"),
        r#"{"subjects_filter":">"}"#,
    )
}

fn schedule(subject: &str, pattern: &str, target: &str) -> Step {
    raw(subject, "payload")
        .hdr("Nats-Schedule", pattern)
        .hdr("Nats-Schedule-Target", target)
}

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "schedules: headers on a stream without schedules",
            vec![
                create("N", r#""subjects":["n.>"]"#),
                raw("n.s", "x")
                    .hdr("Nats-Schedule", "@at 2099-01-01T00:00:00Z")
                    .hdr("Nats-Schedule-Target", "n.t"),
                raw("n.s", "x").hdr("Nats-Schedule", "@every 1s"),
                raw("n.s", "x").hdr("Nats-Schedule", "@every 1ms"),
                raw("n.s", "x").hdr("Nats-Schedule", ""),
                raw("n.s", "x").hdr("Nats-Schedule-Target", "n.t"),
                raw("n.s", "x").hdr("Nats-Schedule-TTL", "5s"),
                raw("n.s", "x").hdr("Nats-Schedule-Source", "n.src"),
                raw("n.s", "x").hdr("Nats-Schedule-Rollup", "sub"),
                raw("n.s", "x").hdr("Nats-Schedule-Time-Zone", ""),
                raw("n.s", "x").hdr("Nats-Scheduler", "n.s"),
                raw("n.s", "x").hdr("Nats-Schedule-Next", "purge"),
                raw("n.s", "x")
                    .hdr("Nats-Schedule-Next", "purge")
                    .hdr("Nats-Scheduler", "n.other"),
                raw("n.s", "x").hdr("Nats-Scheduler", ""),
                api("STREAM.INFO.N", ""),
            ],
        ),
        (
            "schedules: stream options, their checks and updates",
            vec![
                create("S", SCHED),
                create(
                    "DN",
                    r#""subjects":["dn.>"],"allow_msg_schedules":true,"discard":"new""#,
                ),
                create(
                    "C",
                    r#""subjects":["c.>"],"allow_msg_schedules":true,"allow_msg_counter":true"#,
                ),
                create(
                    "R",
                    r#""subjects":["r.>"],"allow_msg_schedules":true,"allow_rollup_hdrs":false,"deny_purge":true"#,
                ),
                api(
                    "STREAM.UPDATE.S",
                    r#"{"name":"S","subjects":["s.>"],"allow_msg_schedules":false}"#,
                ),
                create("P", r#""subjects":["p.>"]"#),
                api(
                    "STREAM.UPDATE.P",
                    r#"{"name":"P","subjects":["p.>"],"allow_msg_schedules":true}"#,
                ),
                schedule("p.s", "@at 2099-01-01T00:00:00Z", "p.t"),
                last("P", "p.s"),
            ],
        ),
        (
            "schedules: publish checks",
            vec![
                create("S", SCHED),
                create("NT", r#""subjects":["nt.>"],"allow_msg_schedules":true"#),
                schedule("s.a", "@every 500ms", "s.t"),
                schedule("s.a", "@every 1", "s.t"),
                schedule("s.a", "@at tomorrow", "s.t"),
                schedule("s.a", "@at 2099-01-01 00:00:00", "s.t"),
                schedule("s.a", "0 0 * * *", "s.t"),
                schedule("s.a", "0 0 * * * * 2030", "s.t"),
                schedule("s.a", "0 0 L * * *", "s.t"),
                schedule("s.a", "0 0 0 * * 7", "s.t"),
                schedule("s.a", "0 0 0 30 2 *", "s.t"),
                schedule("s.a", "@reboot", "s.t"),
                raw("s.a", "x").hdr("Nats-Schedule", "@every 1s"),
                schedule("s.a", "@every 1s", "s.a"),
                schedule("s.a", "@every 1s", "s.*"),
                schedule("s.a", "@every 1s", "other.t"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-TTL", "1ms"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-TTL", "5s"),
                schedule("nt.a", "@every 1s", "nt.t").hdr("Nats-Schedule-TTL", "x"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-Rollup", "all"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Rollup", "all"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-Source", "s.t"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-Source", "s.a"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-Source", "s.>"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-Source", "x.y"),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-Time-Zone", ""),
                schedule("s.a", "@every 1s", "s.t").hdr("Nats-Schedule-Time-Zone", "UTC"),
                schedule("s.a", "@at 2099-01-01T00:00:00Z", "s.t")
                    .hdr("Nats-Schedule-Time-Zone", "UTC"),
                schedule("s.z", "0 0 0 1 1 *", "s.t").hdr("Nats-Schedule-Time-Zone", "UTC"),
                schedule("s.z", "0 0 9 * * *", "s.t")
                    .hdr("Nats-Schedule-Time-Zone", "Europe/Amsterdam"),
                schedule("s.z", "0 0 9 * * *", "s.t")
                    .hdr("Nats-Schedule-Time-Zone", "America/New_York"),
                schedule("s.z", "0 0 9 * * *", "s.t").hdr("Nats-Schedule-Time-Zone", "Nowhere/X"),
                schedule("s.z", "0 0 9 * * *", "s.t").hdr("Nats-Schedule-Time-Zone", "utc"),
                schedule("s.z", "@every 2s", "s.t")
                    .hdr("Nats-Schedule-Time-Zone", "Europe/Amsterdam"),
                raw("s.z2", "x").hdr("Nats-Schedule-Time-Zone", "Europe/Amsterdam"),
                raw("s.z3", "x").hdr("Nats-Schedule-Time-Zone", "Nowhere/X"),
                raw("s.a", "x").hdr("Nats-Scheduler", "s.b"),
                raw("s.a", "x").hdr("Nats-Schedule-Next", "2099-01-01T00:00:00Z"),
                raw("s.a", "x").hdr("Nats-Schedule-Next", "purge"),
                raw("s.a", "x")
                    .hdr("Nats-Schedule-Next", "purge")
                    .hdr("Nats-Scheduler", "s.a"),
                raw("s.plain", "x"),
                raw("s.a", "x")
                    .hdr("Nats-Schedule-Next", "purge")
                    .hdr("Nats-Scheduler", "s.plain"),
                // Valid ones: stored with `Nats-Rollup: sub` added.
                schedule("s.h", "@hourly", "s.t").hdr("Foo", "bar"),
                last("S", "s.h"),
                schedule("s.c", "*/5 10-20 1,2 ? jan-mar mon-fri", "s.t").hdr("Nats-Rollup", "sub"),
                last("S", "s.c"),
                schedule("s.d", "@at 0001-01-01T00:00:00Z", "s.t"),
                last("S", "s.d"),
                info("S"),
            ],
        ),
        (
            "schedules: an @at in the past fires at once and is removed",
            vec![
                create("S", SCHED),
                schedule("s.once", "@at 2020-01-01T00:00:00+02:00", "s.t")
                    .hdr("Foo", "bar")
                    .hdr("Nats-Msg-Id", "m1")
                    .hdr("Nats-Expected-Last-Sequence", "0"),
                sleep(1200),
                last("S", "s.t"),
                last("S", "s.once"),
                info("S"),
            ],
        ),
        (
            "schedules: @every 2s fires repeatedly and stays",
            vec![
                create("S", SCHED),
                // Both servers round the schedule's time to the nearest
                // second and fire every 2 s from there (plus up to 250 ms
                // of timer lag): stored 50 ms past a whole second, it fires
                // 1.95 s, 3.95 s and 5.95 s later, so at 4.9 s it has fired
                // twice on either server, with about a second of margin on
                // each side (an unaligned `@every 1s` fired twice or three
                // times in 2.6 s depending on the phase).
                align_to_second(50),
                schedule("s.rep", "@every 2s", "s.t"),
                sleep(4900),
                last("S", "s.t"),
                last("S", "s.rep"),
                // A plain message on the schedule's subject cancels it.
                raw("s.rep", "stop"),
                sleep(1500),
                api("STREAM.PURGE.S", r#"{"filter":"s.t"}"#),
                sleep(1500),
                info("S"),
            ],
        ),
        (
            "schedules: target TTL, rollup and source",
            vec![
                create("S", &format!("{SCHED},\"allow_msg_ttl\":true")),
                raw("s.src", "from source").hdr("Src", "yes"),
                raw("s.t", "old 1"),
                raw("s.t", "old 2"),
                schedule("s.x", "@at 2020-01-01T00:00:00Z", "s.t")
                    .hdr("Nats-Schedule-Source", "s.src")
                    .hdr("Nats-Schedule-TTL", "5s")
                    .hdr("Nats-Schedule-Rollup", "sub"),
                // No message on the source subject: its own payload.
                schedule("s.y", "@at 2020-01-01T00:00:00Z", "s.u")
                    .hdr("Nats-Schedule-Source", "s.none")
                    .hdr("Own", "1"),
                sleep(1200),
                last("S", "s.t"),
                last("S", "s.u"),
                info("S"),
            ],
        ),
        (
            "schedules: a new schedule on a subject replaces the old, a purge request cancels",
            vec![
                create("S", SCHED),
                schedule("s.x", "@at 2099-01-01T00:00:00Z", "s.t1"),
                schedule("s.x", "@at 2020-01-01T00:00:00Z", "s.t2"),
                schedule("s.z", "@at 2099-01-01T00:00:00Z", "s.t3"),
                raw("s.cancel", "c")
                    .hdr("Nats-Schedule-Next", "purge")
                    .hdr("Nats-Scheduler", "s.z"),
                sleep(1200),
                info("S"),
                last("S", "s.t2"),
                last("S", "s.cancel"),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_schedules_match_nats_server() {
    check(scenarios()).await;
}

/// Built when it runs: its `@at` time is three seconds from then.
fn near_future() -> Vec<Scenario> {
    vec![(
        "schedules: an @at in the near future fires when due",
        vec![
            create("S", SCHED),
            schedule("s.soon", &format!("@at {}", in_secs(3)), "s.t"),
            last("S", "s.t"),
            sleep(3500),
            last("S", "s.t"),
            last("S", "s.soon"),
            info("S"),
        ],
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_schedule_in_the_near_future_matches_nats_server() {
    check(near_future()).await;
}
