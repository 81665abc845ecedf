#!/usr/bin/env python3
"""nats-py, unchanged, against a NATS server: the core scenarios a real
client depends on (the Python twin of tests/compat_async_nats.rs).

Usage: python3 compat.py nats://127.0.0.1:PORT

Each scenario prints `ok <name>` or `FAIL <name>: <reason>`; the last line is
`N passed, N failed` and the exit code is 0 only when every scenario passed.
Every wait is bounded. Run by tests/compat_other_clients.rs against our
server and against the reference nats-server.
"""

import asyncio
import sys
import time
import traceback

try:
    import nats
    import nats.errors
except ImportError as e:  # the Rust test looks for this marker
    print(
        f"nats-py is not installed ({e}); run `bash scripts/test.sh`, which installs "
        "bus-embedded-server/tests/clients/python/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)

# Per wait for a message that must arrive.
MSG_TIMEOUT = 5.0
# How long to wait to be sure a message does NOT arrive.
QUIET = 0.3
# Per scenario, all waits included.
SCENARIO_TIMEOUT = 30.0


class Conns:
    """The connections of one scenario: closes them all at the end and
    records every asynchronous error (e.g. a server -ERR) they report."""

    def __init__(self, url):
        self.url = url
        self.conns = []
        self.errors = []

    async def connect(self, name, **opts):
        async def error_cb(e):
            self.errors.append(f"{name}: {type(e).__name__}: {e}")

        nc = await nats.connect(
            self.url,
            name=name,
            connect_timeout=5,
            allow_reconnect=False,
            error_cb=error_cb,
            **opts,
        )
        self.conns.append(nc)
        return nc

    async def close(self):
        for nc in self.conns:
            if not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), 5)
                except Exception:  # noqa: BLE001 - best-effort cleanup
                    pass


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


async def next_msg(sub, what):
    try:
        return await sub.next_msg(timeout=MSG_TIMEOUT)
    except nats.errors.TimeoutError:
        raise AssertionError(f"no message within {MSG_TIMEOUT}s: {what}") from None


async def barrier(nc):
    """Wait until the server has processed everything `nc` sent so far.

    `nc.flush()` is not such a barrier in nats-py 2.16: its PING is written
    straight to the socket, ahead of PUBs still in the client's pending
    buffer. A message to ourselves queues behind them instead.
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(inbox, b"barrier")
    await next_msg(sub, f"barrier message on {inbox}")
    await sub.unsubscribe()


async def drain_sub(sub):
    """Every message that arrives until the subscription is quiet for QUIET s."""
    got = []
    while True:
        try:
            got.append(await sub.next_msg(timeout=QUIET))
        except nats.errors.TimeoutError:
            return got


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------


async def pubsub_wildcards(c):
    nc = await c.connect("wildcards")
    exact = await nc.subscribe("a.b.c")
    star = await nc.subscribe("a.*.c")
    gt = await nc.subscribe("a.>")
    await barrier(nc)
    # a.b.c -> all three; a.x -> `>` only; a.b.c.d -> `>` only (`*` is one
    # token); a -> none (`a.>` needs at least one more token); b.b.c -> none.
    for subject, payload in [
        ("a.b.c", b"one"),
        ("a.x", b"two"),
        ("a.b.c.d", b"three"),
        ("a", b"four"),
        ("b.b.c", b"five"),
    ]:
        await nc.publish(subject, payload)
    await barrier(nc)

    def seen(msgs):
        return [(m.subject, m.data) for m in msgs]

    got_exact = seen(await drain_sub(exact))
    got_star = seen(await drain_sub(star))
    got_gt = seen(await drain_sub(gt))
    check(got_exact == [("a.b.c", b"one")], f"a.b.c got {got_exact}")
    check(got_star == [("a.b.c", b"one")], f"a.*.c got {got_star}")
    check(
        got_gt == [("a.b.c", b"one"), ("a.x", b"two"), ("a.b.c.d", b"three")],
        f"a.> got {got_gt} (in order)",
    )


async def queue_group(c):
    nc = await c.connect("queue-members")
    pub = await c.connect("queue-publisher")
    members = [await nc.subscribe("work", queue="workers") for _ in range(3)]
    plain = await nc.subscribe("work")
    await barrier(nc)
    for i in range(30):
        await pub.publish("work", str(i).encode())
    await barrier(pub)
    per_member = [[m.data.decode() for m in await drain_sub(s)] for s in members]
    everything = sorted(int(p) for got in per_member for p in got)
    check(
        everything == list(range(30)),
        "each of 30 messages to exactly one member; members got "
        f"{[len(g) for g in per_member]}: {per_member}",
    )
    plain_got = [m.data for m in await drain_sub(plain)]
    check(
        len(plain_got) == 30,
        f"a plain subscriber on the same subject gets all 30, got {len(plain_got)}",
    )
    return "distribution " + "/".join(str(len(g)) for g in per_member)


async def request_reply(c):
    responder = await c.connect("responder")
    requester = await c.connect("requester")

    async def answer(msg):
        await msg.respond(b"pong:" + msg.data)

    await responder.subscribe("svc.echo", cb=answer)
    await barrier(responder)
    for i in range(3):
        reply = await requester.request("svc.echo", f"ping{i}".encode(), timeout=MSG_TIMEOUT)
        check(reply.data == f"pong:ping{i}".encode(), f"request {i} answered with {reply.data!r}")


async def no_responders(c):
    nc = await c.connect("requester")
    started = time.monotonic()
    try:
        msg = await nc.request("svc.nobody", b"?", timeout=MSG_TIMEOUT)
    except nats.errors.NoRespondersError:
        elapsed = time.monotonic() - started
        check(elapsed < MSG_TIMEOUT / 2, f"no-responders took {elapsed:.2f}s (should be immediate)")
        return f"after {elapsed * 1000:.0f} ms"
    except nats.errors.TimeoutError:
        raise AssertionError(
            "request to a subject without subscribers timed out instead of raising "
            "NoRespondersError (no 503 status message from the server?)"
        ) from None
    raise AssertionError(f"request to a subject without subscribers returned {msg!r}")


async def headers(c):
    nc = await c.connect("headers")
    sub = await nc.subscribe("h")
    await barrier(nc)
    # nats-py takes headers as Dict[str, str], so a repeated key cannot be
    # published with it (and a received repeated key keeps its last value).
    sent = {
        "Nats-Msg-Id": "abc",
        "X-Custom": "value with spaces",
        "X-Empty-Looking": "-",
        "x-lower-case": "Mixed Case Value",
    }
    await nc.publish("h", b"body", headers=sent)
    await nc.publish("h", b"", headers={"Only": "headers"})
    await nc.publish("h", b"no headers")
    m = await next_msg(sub, "message with headers")
    check(m.headers == sent, f"headers changed: sent {sent}, got {m.headers}")
    check(m.data == b"body", f"payload changed: {m.data!r}")
    m = await next_msg(sub, "headers-only message")
    check(m.headers == {"Only": "headers"}, f"headers-only message has headers {m.headers}")
    check(m.data == b"", f"headers-only message has payload {m.data!r}")
    m = await next_msg(sub, "message without headers")
    check(not m.headers, f"plain message got headers {m.headers}")
    check(m.data == b"no headers", f"payload changed: {m.data!r}")


async def unsubscribe_after_n(c):
    nc = await c.connect("auto-unsub")
    sub = await nc.subscribe("m")
    await sub.unsubscribe(limit=2)
    # SUB, `UNSUB <sid> 2` and the PUBs go out in this order on one
    # connection, so no barrier is needed in between.
    for i in range(5):
        await nc.publish("m", str(i).encode())
    await barrier(nc)
    # The barrier's message follows every MSG the server sent for the PUBs
    # before it, so in_msgs (minus the barrier's message) counts what the
    # server delivered. The client drops messages beyond the limit itself, so
    # this is what proves that the server honoured `UNSUB <sid> 2`.
    delivered = nc.stats["in_msgs"] - 1
    check(delivered == 2, f"server delivered {delivered} messages after UNSUB with max 2")
    got = []
    async for m in sub.messages:
        got.append(m.data)
        if len(got) > 2:
            break
    check(got == [b"0", b"1"], f"subscription yielded {got}")
    await nc.publish("m", b"later")
    await barrier(nc)
    delivered = nc.stats["in_msgs"] - 2
    check(delivered == 2, f"server delivered {delivered} messages after the subscription ended")


async def drain(c):
    closed = asyncio.Event()

    async def closed_cb():
        closed.set()

    nc = await c.connect("drainer", closed_cb=closed_cb)
    pub = await c.connect("drain-publisher")
    got = []

    async def slow(msg):
        await asyncio.sleep(0.01)
        got.append(int(msg.data))

    await nc.subscribe("d", cb=slow)
    await barrier(nc)
    for i in range(50):
        await pub.publish("d", str(i).encode())
    # The server has queued all 50 for the drainer before this returns.
    await barrier(pub)
    # The slow callback has handled at most a few of them by now.
    pending = 50 - len(got)
    await asyncio.wait_for(nc.drain(), 20)
    check(got == list(range(50)), f"drain delivered {len(got)} of 50 in order: {got}")
    check(nc.is_closed, "connection is closed after drain")
    await asyncio.wait_for(closed.wait(), MSG_TIMEOUT)
    # Messages published after the drain reach nobody and break nothing.
    await pub.publish("d", b"after")
    await barrier(pub)
    return f"{pending} of 50 still pending when drain started"


async def echo_off(c):
    quiet = await c.connect("no-echo", no_echo=True)
    other = await c.connect("other")
    own = await quiet.subscribe("e")
    theirs = await other.subscribe("e")
    await quiet.flush(timeout=MSG_TIMEOUT)
    await barrier(other)
    await quiet.publish("e", b"from quiet")
    await quiet.flush(timeout=MSG_TIMEOUT)
    m = await next_msg(theirs, "the other connection gets the no-echo connection's message")
    check(m.data == b"from quiet", f"other got {m.data!r}")
    check(quiet.stats["in_msgs"] == 0, "the no-echo connection received its own message")
    check(not await drain_sub(own), "the no-echo connection's subscription got its own message")
    # It still receives other connections' messages.
    await other.publish("e", b"from other")
    await barrier(other)
    m = await next_msg(own, "the no-echo connection gets other connections' messages")
    check(m.data == b"from other", f"no-echo connection got {m.data!r}")


SCENARIOS = [
    ("pubsub_wildcards", pubsub_wildcards),
    ("queue_group", queue_group),
    ("request_reply", request_reply),
    ("no_responders", no_responders),
    ("headers", headers),
    ("unsubscribe_after_n", unsubscribe_after_n),
    ("drain", drain),
    ("echo_off", echo_off),
]


async def run(url):
    passed = failed = 0
    for name, scenario in SCENARIOS:
        c = Conns(url)
        try:
            note = await asyncio.wait_for(scenario(c), SCENARIO_TIMEOUT)
            check(not c.errors, f"asynchronous errors: {c.errors}")
        except Exception as e:  # noqa: BLE001 - report every failure, go on
            failed += 1
            if isinstance(e, asyncio.TimeoutError):
                reason = f"did not finish within {SCENARIO_TIMEOUT}s"
            else:
                reason = f"{type(e).__name__}: {e}"
            if c.errors:
                reason += f" (asynchronous errors: {c.errors})"
            print(f"FAIL {name}: {reason}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok {name}" + (f" ({note})" if note else ""), flush=True)
        finally:
            await c.close()
    print(f"{passed} passed, {failed} failed", flush=True)
    return failed == 0


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} nats://HOST:PORT", file=sys.stderr)
        sys.exit(2)
    ok = asyncio.run(run(sys.argv[1]))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
