//! Differential tests of fast-ingest batch publish (`allow_batched`,
//! reply subjects `<prefix>.<id>.<flow>.<gap>.<seq>.<op>.$FI`, ADR-50,
//! nats-server 2.14 semantics) against nats-server 2.15.1; the harness is
//! `js_diff/`. Each message's replies (flow acks, gap and error notices,
//! the final pub ack) are compared on its own reply subject.

mod js_diff;

use js_diff::*;

/// Ops of the reply subject.
const START: u8 = 0;
const APPEND: u8 = 1;
const COMMIT: u8 = 2;
const EOB: u8 = 3;
const PING: u8 = 4;

/// One fast batch message: body `<id>-<seq>`, reply tail
/// `<id>.<flow>.<gap>.<seq>.<op>.$FI`. It waits for one reply (flow and
/// pub acks go out once the message is durable, which can take seconds
/// on a loaded machine); [`two`] for a message that gets two, [`quiet`]
/// for one that gets none.
fn fb(subject: &str, id: &str, flow: u16, gap: &str, seq: u64, op: u8) -> Step {
    raw(subject, &format!("{id}-{seq}"))
        .reply_tail(format!("{id}.{flow}.{gap}.{seq}.{op}.$FI"))
        .replies(1)
}

/// A message that gets two replies: a notice or a first flow ack at once,
/// then an ack once it is durable. Waiting for a pause after the first
/// instead let a slow fsync push the second past the step.
fn two(step: Step) -> Step {
    step.replies(2)
}

/// A message that gets no reply at once (between flow acks); a reply
/// that comes later is still compared (as late).
fn quiet(step: Step) -> Step {
    step.collect(150)
}

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "fast batch: refused unless the stream allows it; the option shows in the config",
            vec![
                create("N", r#""subjects":["n.>"]"#),
                fb("n.x", "b1", 10, "ok", 1, START),
                fb("n.x", "b1", 10, "ok", 1, COMMIT),
                raw("n.x", "plain").reply_tail("not.a.fast.batch"),
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                api("STREAM.INFO.F", ""),
                raw("f.x", "plain publish"),
                api(
                    "STREAM.UPDATE.N",
                    r#"{"name":"N","subjects":["n.>"],"allow_batched":true}"#,
                ),
                fb("n.x", "b2", 10, "ok", 1, COMMIT),
                api("STREAM.UPDATE.N", r#"{"name":"N","subjects":["n.>"]}"#),
                fb("n.x", "b3", 10, "ok", 1, COMMIT),
                api("STREAM.INFO.N", ""),
            ],
        ),
        (
            "fast batch: reply subjects outside the grammar, long and unknown ids",
            vec![
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                raw("f.x", "bad op").reply_tail("g1.10.ok.1.5.$FI"),
                raw("f.x", "op not a number").reply_tail("g1.10.ok.1.x.$FI"),
                raw("f.x", "bad gap mode").reply_tail("g1.10.maybe.1.0.$FI"),
                raw("f.x", "start at 2").reply_tail("g1.10.ok.2.0.$FI"),
                raw("f.x", "append at 1").reply_tail("g1.10.ok.1.1.$FI"),
                raw("f.x", "eob at 1").reply_tail("g1.10.ok.1.3.$FI"),
                raw("f.x", "sequence 0").reply_tail("g1.10.ok.0.2.$FI"),
                fb("f.x", &"x".repeat(65), 10, "ok", 1, COMMIT),
                fb("f.x", &"y".repeat(64), 10, "ok", 1, COMMIT),
                fb("f.x", "unknown", 10, "ok", 2, APPEND),
                fb("f.x", "unknown", 10, "ok", 5, COMMIT),
                fb("f.x", "unknown", 10, "fail", 3, EOB),
                raw("f.x", "no flow").reply_tail("g2.x.ok.1.2.$FI"),
                api("STREAM.INFO.F", ""),
            ],
        ),
        (
            "fast batch: flow acks every n messages, then the commit's pub ack",
            vec![
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                fb("f.x", "c1", 2, "fail", 1, START),
                fb("f.x", "c1", 2, "fail", 2, APPEND),
                quiet(fb("f.x", "c1", 2, "fail", 3, APPEND)),
                fb("f.x", "c1", 2, "fail", 4, APPEND),
                quiet(fb("f.x", "c1", 2, "fail", 5, APPEND)),
                fb("f.x", "c1", 2, "fail", 6, COMMIT),
                fb("f.x", "c1", 2, "fail", 7, APPEND),
                two(fb("f.x", "c2", 1, "ok", 1, START)),
                fb("f.x", "c2", 1, "ok", 2, APPEND),
                fb("f.x", "c2", 1, "ok", 3, EOB),
                fb("f.x", "c3", 600, "ok", 1, COMMIT),
                api("STREAM.INFO.F", ""),
                api("STREAM.MSG.GET.F", r#"{"seq":6}"#),
            ],
        ),
        (
            "fast batch: a gap ends a fail batch and is skipped by an ok batch",
            vec![
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                fb("f.x", "d1", 10, "fail", 1, START),
                quiet(fb("f.x", "d1", 10, "fail", 2, APPEND)),
                two(fb("f.x", "d1", 10, "fail", 4, APPEND)),
                fb("f.x", "d1", 10, "fail", 5, APPEND),
                fb("f.x", "d2", 10, "ok", 1, START),
                fb("f.x", "d2", 10, "ok", 5, APPEND),
                two(fb("f.x", "d2", 10, "ok", 5, APPEND)),
                fb("f.x", "d3", 10, "ok", 1, START),
                two(fb("f.x", "d3", 10, "ok", 4, COMMIT)),
                api("STREAM.INFO.F", ""),
            ],
        ),
        (
            "fast batch: a failed check is a plain error first, a notice later",
            vec![
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                raw("f.s", "stored").hdr("Nats-Msg-Id", "m1"),
                two(fb("f.x", "e1", 10, "fail", 1, START).hdr("Nats-Expected-Last-Sequence", "9")),
                fb("f.x", "e1", 10, "fail", 2, APPEND),
                two(fb("f.x", "e2", 10, "ok", 1, START).hdr("Nats-Expected-Last-Sequence", "9")),
                quiet(fb("f.x", "e2", 10, "ok", 2, APPEND)),
                two(fb("f.x", "e2", 10, "ok", 3, COMMIT).hdr("Nats-Expected-Last-Sequence", "1")),
                two(fb("f.x", "e3", 10, "fail", 1, START).hdr("Nats-Expected-Last-Sequence", "3")),
                fb("f.x", "e3", 10, "fail", 2, APPEND).hdr("Nats-Expected-Last-Sequence", "3"),
                fb("f.x", "e3", 10, "fail", 3, APPEND),
                fb("f.x", "e4", 10, "ok", 1, START),
                fb("f.x", "e4", 10, "ok", 2, APPEND).hdr("Nats-Expected-Last-Sequence", "1"),
                fb("f.x", "e4", 10, "ok", 3, COMMIT),
                api("STREAM.INFO.F", ""),
            ],
        ),
        (
            "fast batch: duplicates inside a batch and a one-message duplicate",
            vec![
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                raw("f.s", "stored").hdr("Nats-Msg-Id", "m1"),
                fb("f.x", "u1", 2, "fail", 1, START),
                fb("f.x", "u1", 2, "fail", 2, APPEND).hdr("Nats-Msg-Id", "m1"),
                quiet(fb("f.x", "u1", 2, "fail", 3, APPEND)),
                two(fb("f.x", "u1", 2, "fail", 4, COMMIT).hdr("Nats-Msg-Id", "m1")),
                fb("f.x", "u2", 10, "fail", 1, COMMIT).hdr("Nats-Msg-Id", "m1"),
                fb("f.x", "u3", 10, "ok", 1, COMMIT).hdr("Nats-Msg-Id", "m1"),
                api("STREAM.INFO.F", ""),
            ],
        ),
        (
            "fast batch: pings resend the flow ack and report lost messages",
            vec![
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                fb("f.x", "p1", 10, "ok", 1, START),
                quiet(fb("f.x", "p1", 10, "ok", 2, APPEND)),
                fb("f.x", "p1", 10, "ok", 2, PING),
                two(fb("f.x", "p1", 10, "ok", 4, PING)),
                fb("f.x", "p1", 10, "ok", 5, COMMIT),
                fb("f.x", "p2", 10, "fail", 1, START),
                two(fb("f.x", "p2", 10, "fail", 3, PING)),
                fb("f.x", "p2", 10, "fail", 4, APPEND),
                fb("f.x", "p3", 10, "ok", 1, PING),
                fb("f.x", "p4", 10, "ok", 2, PING),
                api("STREAM.INFO.F", ""),
            ],
        ),
        (
            "fast batch: a second batch on the stream starts at one ack per message",
            vec![
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                fb("f.x", "r1", 100, "fail", 1, START),
                two(fb("f.x", "r2", 100, "fail", 1, START)),
                quiet(fb("f.x", "r2", 100, "fail", 2, APPEND)),
                fb("f.x", "r2", 100, "fail", 3, APPEND),
                quiet(fb("f.x", "r2", 100, "fail", 4, APPEND)),
                quiet(fb("f.x", "r2", 100, "fail", 5, APPEND)),
                quiet(fb("f.x", "r2", 100, "fail", 6, APPEND)),
                fb("f.x", "r2", 100, "fail", 7, APPEND),
                quiet(fb("f.x", "r1", 100, "fail", 2, APPEND)),
                fb("f.x", "r1", 100, "fail", 3, EOB),
                fb("f.x", "r2", 100, "fail", 8, EOB),
            ],
        ),
        (
            "fast batch: required api level, sealed stream, size limit",
            vec![
                create(
                    "F",
                    r#""subjects":["f.>"],"allow_batched":true,"max_msg_size":64"#,
                ),
                fb("f.x", "l1", 10, "ok", 1, START).hdr("Nats-Required-Api-Level", "99"),
                fb("f.x", "l1", 10, "ok", 2, APPEND),
                fb("f.x", "l2", 10, "ok", 1, COMMIT).hdr("Nats-Required-Api-Level", "0"),
                api("STREAM.MSG.GET.F", r#"{"seq":1}"#),
                raw("f.x", &"z".repeat(100)).reply_tail("l3.10.ok.1.0.$FI"),
                api(
                    "STREAM.UPDATE.F",
                    r#"{"name":"F","subjects":["f.>"],"allow_batched":true,"max_msg_size":64,"sealed":true}"#,
                ),
                fb("f.x", "l4", 10, "ok", 1, START),
            ],
        ),
        (
            "fast batch: turning allow_batched off mid-batch forgets the batch",
            vec![
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                fb("f.x", "o1", 10, "fail", 1, START),
                api("STREAM.UPDATE.F", r#"{"name":"F","subjects":["f.>"]}"#),
                fb("f.x", "o1", 10, "fail", 2, APPEND),
                api(
                    "STREAM.UPDATE.F",
                    r#"{"name":"F","subjects":["f.>"],"allow_batched":true}"#,
                ),
                fb("f.x", "o1", 10, "fail", 3, APPEND),
                fb("f.x", "o1", 10, "fail", 1, COMMIT),
                api("STREAM.DELETE.F", ""),
                create("F", r#""subjects":["f.>"],"allow_batched":true"#),
                fb("f.x", "o1", 10, "fail", 2, APPEND),
            ],
        ),
        (
            "fast batch: a no-ack stream still sends flow acks and the pub ack",
            vec![
                create(
                    "F",
                    r#""subjects":["f.>"],"allow_batched":true,"no_ack":true"#,
                ),
                fb("f.x", "q1", 1, "fail", 1, START),
                fb("f.x", "q1", 1, "fail", 2, COMMIT),
                quiet(fb("f.x", "q2", 1, "fail", 2, APPEND)),
                api("STREAM.INFO.F", ""),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_batch_publish_matches_nats_server() {
    check(answered(scenarios())).await;
}
