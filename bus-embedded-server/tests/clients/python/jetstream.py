#!/usr/bin/env python3
"""nats-py's JetStream and KV APIs, unchanged, against a NATS server with
JetStream (the Python twin of tests/compat_jetstream.rs).

Usage: python3 jetstream.py nats://127.0.0.1:PORT

Scenarios: publish_ack (PubAck stream/seq, Nats-Msg-Id duplicate, expected
last sequence conflict), pull_fetch_ack (fetch, ack_sync, consumer info
counters), consumer_info (pending/ack floor, names), ordered_push (an ordered
consumer replaying 2000 messages in order, then a live one), push_durable
(a durable push consumer with acks), kv (put/get/create/update conflicts,
history, keys, delete, purge, watch with live updates), kv_ttl (a bucket with
limit markers: create with a TTL and purge with a TTL, the expiry seen by a
watcher as a purge, the key created again), atomic_batch (ADR-50 headers on
plain requests: one PubAck with batch and count; a stale expectation on the
first message stores none of the batch; a stream without allow_atomic refuses),
kv_republish (a bucket created
with `republish`: a plain subscriber to the republished subjects sees puts,
deletes and purges with the Nats-Stream/-Subject/-Sequence/-Last-Sequence
headers, and headers_only copies carry Nats-Msg-Size and no payload),
mirror_sources (a mirror and a
filtered and a transformed source catch up and follow, with their lag and
the Nats-Stream-Source header).

Each scenario prints `ok <name>` or `FAIL <name>: <reason>`; the last line is
`N passed, N failed` and the exit code is 0 only when every scenario passed.
Every wait is bounded; each scenario uses its own stream or bucket. Run by
tests/compat_other_clients.rs against our server and against nats-server.
"""

import asyncio
import json
import sys
import traceback

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.js.api import AckPolicy, ConsumerConfig, RePublish
except ImportError as e:  # the Rust test looks for this marker
    print(
        f"nats-py is not installed ({e}); run `bash scripts/test.sh`, which installs "
        "bus-embedded-server/tests/clients/python/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)

MSG_TIMEOUT = 5.0
SCENARIO_TIMEOUT = 30.0


class Conns:
    """The connections of one scenario, closed at the end; asynchronous
    errors they report are recorded."""

    def __init__(self, url):
        self.url = url
        self.conns = []
        self.errors = []

    async def connect(self, name):
        async def error_cb(e):
            self.errors.append(f"{name}: {type(e).__name__}: {e}")

        nc = await nats.connect(
            self.url, name=name, connect_timeout=5, allow_reconnect=False, error_cb=error_cb
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


async def publish_ack(c):
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    await js.add_stream(name="PY_PUB", subjects=["pypub.>"])
    for expected in (1, 2, 3):
        ack = await js.publish(f"pypub.{expected}", b"x")
        check(ack.stream == "PY_PUB", f"ack stream {ack.stream}")
        check(ack.seq == expected, f"ack seq {ack.seq}, expected {expected}")
        check(not ack.duplicate, "not a duplicate")
    first = await js.publish("pypub.d", b"d", headers={"Nats-Msg-Id": "id-1"})
    again = await js.publish("pypub.d", b"d", headers={"Nats-Msg-Id": "id-1"})
    check(first.seq == 4 and again.seq == 4, f"dedup seqs {first.seq} {again.seq}")
    check(again.duplicate, "second publish flagged duplicate")
    try:
        await js.publish("pypub.e", b"e", headers={"Nats-Expected-Last-Sequence": "1"})
        raise AssertionError("expected-last-sequence conflict accepted")
    except nats.js.errors.APIError as e:
        check(e.err_code == 10071, f"err_code {e.err_code}: {e}")
    try:
        await js.publish("nostream.here", b"x")
        raise AssertionError("publish without a stream acknowledged")
    except nats.js.errors.NoStreamResponseError:
        pass
    info = await js.stream_info("PY_PUB")
    check(info.state.messages == 4, f"messages {info.state.messages}")


async def pull_fetch_ack(c):
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    await js.add_stream(name="PY_PULL", subjects=["pypull"])
    for i in range(10):
        await js.publish("pypull", str(i).encode())
    psub = await js.pull_subscribe("pypull", durable="worker", stream="PY_PULL")
    msgs = await psub.fetch(4, timeout=MSG_TIMEOUT)
    check([m.data for m in msgs] == [b"0", b"1", b"2", b"3"], f"first batch {[m.data for m in msgs]}")
    md = msgs[0].metadata
    check(md.sequence.stream == 1 and md.sequence.consumer == 1, f"metadata {md}")
    check(md.num_delivered == 1 and md.num_pending == 9, f"metadata {md}")
    for m in msgs:
        await m.ack_sync(timeout=MSG_TIMEOUT)
    ci = await js.consumer_info("PY_PULL", "worker")
    check(ci.num_ack_pending == 0, f"num_ack_pending {ci.num_ack_pending}")
    check(ci.num_pending == 6, f"num_pending {ci.num_pending}")
    check(ci.ack_floor.stream_seq == 4, f"ack floor {ci.ack_floor}")
    # Asking for more than is left returns what is left.
    rest = await psub.fetch(100, timeout=1)
    check(len(rest) == 6, f"rest {len(rest)}")
    # Nak one: it comes back with num_delivered 2.
    await rest[0].nak()
    for m in rest[1:]:
        await m.ack_sync(timeout=MSG_TIMEOUT)
    again = await psub.fetch(1, timeout=MSG_TIMEOUT)
    check(again[0].metadata.sequence.stream == 5, f"redelivered {again[0].metadata}")
    check(again[0].metadata.num_delivered == 2, f"redelivered {again[0].metadata}")
    await again[0].ack_sync(timeout=MSG_TIMEOUT)
    try:
        extra = await psub.fetch(1, timeout=0.5)
        raise AssertionError(f"nothing left, got {extra}")
    except nats.errors.TimeoutError:
        pass


async def consumer_info(c):
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    await js.add_stream(name="PY_CI", subjects=["pyci.>"])
    for i in range(3):
        await js.publish("pyci.a", str(i).encode())
    await js.add_consumer(
        "PY_CI",
        ConsumerConfig(durable_name="a", ack_policy=AckPolicy.EXPLICIT, filter_subject="pyci.a"),
    )
    ci = await js.consumer_info("PY_CI", "a")
    check(ci.stream_name == "PY_CI" and ci.name == "a", f"names {ci.stream_name} {ci.name}")
    check(ci.num_pending == 3, f"num_pending {ci.num_pending}")
    check(ci.config.filter_subject == "pyci.a", f"filter {ci.config.filter_subject}")
    check(ci.config.ack_policy == AckPolicy.EXPLICIT, f"ack policy {ci.config.ack_policy}")
    si = await js.stream_info("PY_CI")
    check(si.state.consumer_count == 1, f"consumer_count {si.state.consumer_count}")
    await js.delete_consumer("PY_CI", "a")
    try:
        await js.consumer_info("PY_CI", "a")
        raise AssertionError("deleted consumer still has info")
    except nats.js.errors.NotFoundError:
        pass


async def ordered_push(c):
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    await js.add_stream(name="PY_ORD", subjects=["pyord.*"])
    n = 2000
    acks = [await js.publish_async("pyord.a", str(i).encode()) for i in range(n)]
    await asyncio.wait_for(asyncio.gather(*acks), MSG_TIMEOUT * 2)
    sub = await js.subscribe("pyord.a", ordered_consumer=True)
    for i in range(n):
        m = await sub.next_msg(timeout=MSG_TIMEOUT)
        check(m.data == str(i).encode(), f"message {i}: {m.data}")
        check(m.metadata.sequence.stream == i + 1, f"seq {m.metadata.sequence.stream}")
    await js.publish("pyord.a", b"live")
    m = await sub.next_msg(timeout=MSG_TIMEOUT)
    check(m.data == b"live", f"live {m.data}")
    return f"{n} in order"


async def push_durable(c):
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    await js.add_stream(name="PY_PUSH", subjects=["pypush"])
    for i in range(20):
        await js.publish("pypush", str(i).encode())
    sub = await js.subscribe("pypush", durable="pusher", stream="PY_PUSH", manual_ack=True)
    for i in range(20):
        m = await sub.next_msg(timeout=MSG_TIMEOUT)
        check(m.data == str(i).encode(), f"message {i}: {m.data}")
        await m.ack_sync(timeout=MSG_TIMEOUT)
    await js.publish("pypush", b"live")
    m = await sub.next_msg(timeout=MSG_TIMEOUT)
    check(m.data == b"live", f"live {m.data}")
    await m.ack_sync(timeout=MSG_TIMEOUT)
    ci = await js.consumer_info("PY_PUSH", "pusher")
    check(ci.ack_floor.stream_seq == 21, f"ack floor {ci.ack_floor}")
    check(ci.num_ack_pending == 0, f"num_ack_pending {ci.num_ack_pending}")


async def kv(c):
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    kv = await js.create_key_value(bucket="PYKV", history=5)
    r1 = await kv.put("color", b"red")
    check(r1 == 1, f"revision {r1}")
    e = await kv.get("color")
    check(e.value == b"red" and e.revision == 1, f"get {e}")
    try:
        await kv.create("color", b"green")
        raise AssertionError("create over an existing key")
    except nats.js.errors.KeyWrongLastSequenceError:
        pass
    r2 = await kv.update("color", b"blue", last=r1)
    check(r2 == 2, f"update revision {r2}")
    try:
        await kv.update("color", b"pink", last=r1)
        raise AssertionError("update at a stale revision")
    except nats.js.errors.KeyWrongLastSequenceError:
        pass
    await kv.put("size", b"L")
    hist = await kv.history("color")
    check([h.value for h in hist] == [b"red", b"blue"], f"history {[h.value for h in hist]}")
    keys = sorted(await kv.keys())
    check(keys == ["color", "size"], f"keys {keys}")

    watcher = await kv.watchall()
    initial = []
    while True:
        e = await watcher.updates(timeout=MSG_TIMEOUT)
        if e is None:
            break
        initial.append((e.key, e.value))
    check(sorted(initial) == [("color", b"blue"), ("size", b"L")], f"initial {initial}")
    await kv.put("color", b"black")
    await kv.delete("size")
    e = await watcher.updates(timeout=MSG_TIMEOUT)
    check(e is not None and (e.key, e.value) == ("color", b"black"), f"live put {e}")
    e = await watcher.updates(timeout=MSG_TIMEOUT)
    check(e is not None and e.key == "size" and e.operation == "DEL", f"live delete {e}")
    await watcher.stop()

    try:
        await kv.get("size")
        raise AssertionError("deleted key still readable")
    except (nats.js.errors.KeyDeletedError, nats.js.errors.KeyNotFoundError):
        pass
    keys = await kv.keys()
    check(keys == ["color"], f"keys after delete {keys}")
    await kv.purge("color")
    try:
        await kv.get("color")
        raise AssertionError("purged key still readable")
    except (nats.js.errors.KeyDeletedError, nats.js.errors.KeyNotFoundError):
        pass
    hist = await kv.history("color")
    check(len(hist) == 1 and hist[0].operation == "PURGE", f"history after purge {hist}")
    status = await kv.status()
    check(status.bucket == "PYKV" and status.history == 5, f"status {status}")
    await js.delete_key_value("PYKV")


async def kv_ttl(c):
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    kv = await js.create_key_value(bucket="PYKVTTL", history=1, limit_marker_ttl=2.0)
    si = await js.stream_info("KV_PYKVTTL")
    check(si.config.allow_msg_ttl, f"allow_msg_ttl {si.config.allow_msg_ttl}")
    watcher = await kv.watchall()
    e = await watcher.updates(timeout=MSG_TIMEOUT)
    check(e is None, f"empty bucket, initial {e}")
    await kv.create("short", b"v", msg_ttl=1.0)
    await kv.put("gone", b"v")
    seen = []

    async def watched(n):
        while len(seen) < n:
            e = await watcher.updates(timeout=MSG_TIMEOUT)
            check(e is not None, f"watch ended after {seen}")
            seen.append((e.key, e.operation))

    # Seen before the purge, which would otherwise roll it up first.
    await watched(2)
    await kv.purge("gone", msg_ttl=1.0)
    await watched(4)
    # The TTL marker of "short" comes about a second after its create.
    check(
        seen == [("short", None), ("gone", None), ("gone", "PURGE"), ("short", "PURGE")],
        f"watched {seen}",
    )
    await watcher.stop()
    # nats-py reads the server's marker as an entry without a value.
    try:
        e = await kv.get("short")
        check(e.value is None, f"an expired key is still readable: {e}")
    except (nats.js.errors.KeyDeletedError, nats.js.errors.KeyNotFoundError):
        pass
    # The key lives again (nats-py's create() does not take a server marker
    # for a deleted key, on either server: a put does).
    rev = await kv.put("short", b"again")
    check(rev == 5, f"put again at revision {rev}")
    e = await kv.get("short")
    check(e.value == b"again", f"get after the put {e}")
    await js.delete_key_value("PYKVTTL")


async def atomic_batch(c):
    """nats-py has no batch API: the ADR-50 headers on its plain requests
    and publishes, as an application would send them."""
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    await js.add_stream(name="PY_BATCH", subjects=["pybatch.>"], allow_atomic=True)
    await js.add_stream(name="PY_NOBATCH", subjects=["pynobatch.>"])

    async def batch(bid, events, first_headers=None):
        n = len(events)
        replies = []
        for i, (subject, data) in enumerate(events, start=1):
            h = {"Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(i)}
            if i == 1 and first_headers:
                h.update(first_headers)
            if i == n:
                h["Nats-Batch-Commit"] = "1"
            if i == 1 or i == n:
                m = await nc.request(subject, data, timeout=MSG_TIMEOUT, headers=h)
                replies.append(json.loads(m.data) if m.data else None)
            else:
                await nc.publish(subject, data, headers=h)
        return replies

    events = [("pybatch.player.Joined", b"1"), ("pybatch.player.Scored", b"2"), ("pybatch.player.Left", b"3")]
    first, commit = await batch("b1", events)
    check(first is None, f"reply to the first message {first}")
    check(
        commit.get("stream") == "PY_BATCH" and commit.get("seq") == 3
        and commit.get("batch") == "b1" and commit.get("count") == 3,
        f"commit ack {commit}",
    )
    # A stale expectation on the first message: nothing of the batch stored.
    _, refused = await batch("b2", events, {"Nats-Expected-Last-Sequence": "1"})
    check(refused.get("error", {}).get("err_code") == 10071, f"stale batch answered {refused}")
    info = await js.stream_info("PY_BATCH")
    check(info.state.messages == 3 and info.state.last_seq == 3, f"after the refusal {info.state}")
    _, ok = await batch("b3", events[:2], {"Nats-Expected-Last-Sequence": "3"})
    check(ok.get("seq") == 5 and ok.get("count") == 2, f"second batch {ok}")
    stored = [(await js.get_msg("PY_BATCH", seq)).subject.split(".")[2] for seq in range(1, 6)]
    check(stored == ["Joined", "Scored", "Left", "Joined", "Scored"], f"stored {stored}")
    # A stream without allow_atomic refuses the first message.
    m = await nc.request(
        "pynobatch.x", b"a", timeout=MSG_TIMEOUT, headers={"Nats-Batch-Id": "b4", "Nats-Batch-Sequence": "1"}
    )
    err = json.loads(m.data).get("error", {})
    check(err.get("err_code") == 10174, f"batch on a stream without allow_atomic: {err}")
    info = await js.stream_info("PY_NOBATCH")
    check(info.state.messages == 0, f"stream without allow_atomic has {info.state.messages}")


async def kv_republish(c):
    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    kv = await js.create_key_value(
        bucket="PYKVRP",
        history=3,
        republish=RePublish(src="$KV.PYKVRP.>", dest="mirror.PYKVRP.>"),
    )
    si = await js.stream_info("KV_PYKVRP")
    check(
        si.config.republish is not None and si.config.republish.dest == "mirror.PYKVRP.>",
        f"stream republish {si.config.republish}",
    )
    sub = await nc.subscribe("mirror.PYKVRP.>")
    await nc.flush()
    await kv.put("a", b"one")
    await kv.put("b", b"two")
    await kv.put("a", b"three")
    await kv.delete("b")
    await kv.purge("a")
    got = []
    for _ in range(5):
        m = await sub.next_msg(timeout=MSG_TIMEOUT)
        h = m.headers or {}
        got.append(
            (
                m.subject,
                m.data,
                h.get("Nats-Stream"),
                h.get("Nats-Subject"),
                h.get("Nats-Sequence"),
                h.get("Nats-Last-Sequence"),
                h.get("KV-Operation"),
            )
        )
        check(h.get("Nats-Time-Stamp"), f"no Nats-Time-Stamp on {m.subject}")
    want = [
        ("mirror.PYKVRP.a", b"one", "KV_PYKVRP", "$KV.PYKVRP.a", "1", "0", None),
        ("mirror.PYKVRP.b", b"two", "KV_PYKVRP", "$KV.PYKVRP.b", "2", "0", None),
        ("mirror.PYKVRP.a", b"three", "KV_PYKVRP", "$KV.PYKVRP.a", "3", "1", None),
        ("mirror.PYKVRP.b", b"", "KV_PYKVRP", "$KV.PYKVRP.b", "4", "2", "DEL"),
        ("mirror.PYKVRP.a", b"", "KV_PYKVRP", "$KV.PYKVRP.a", "5", "3", "PURGE"),
    ]
    check(got == want, f"republished {got}")
    await sub.unsubscribe()
    await js.delete_key_value("PYKVRP")

    # Headers only: the size instead of the value.
    kv = await js.create_key_value(
        bucket="PYKVRPH",
        republish=RePublish(src=">", dest="sizes.>", headers_only=True),
    )
    sub = await nc.subscribe("sizes.>")
    await nc.flush()
    await kv.put("k", b"12345")
    m = await sub.next_msg(timeout=MSG_TIMEOUT)
    h = m.headers or {}
    check(m.subject == "sizes.$KV.PYKVRPH.k", f"subject {m.subject}")
    check(m.data == b"" and h.get("Nats-Msg-Size") == "5", f"headers only {m.data} {h}")
    await js.delete_key_value("PYKVRPH")


async def wait_messages(js, name, n):
    for _ in range(200):
        info = await js.stream_info(name)
        if info.state.messages == n:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} holds {info.state.messages} messages, not {n}")


async def mirror_sources(c):
    from nats.js.api import StreamSource, SubjectTransform

    nc = await c.connect("js")
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    await js.add_stream(name="PY_ORIG", subjects=["pyorig.>"])
    for subject, body in (("pyorig.a", b"1"), ("pyorig.b", b"2"), ("pyorig.a", b"3")):
        await js.publish(subject, body)
    await js.add_stream(name="PY_MIRROR", mirror=StreamSource(name="PY_ORIG"))
    await js.add_stream(
        name="PY_SRC",
        sources=[
            StreamSource(name="PY_ORIG", filter_subject="pyorig.a"),
            StreamSource(
                name="PY_ORIG",
                subject_transforms=[SubjectTransform(src="pyorig.b", dest="pyt.b")],
            ),
        ],
    )
    info = await wait_messages(js, "PY_MIRROR", 3)
    check(info.mirror is not None and info.mirror.name == "PY_ORIG", f"mirror info {info.mirror}")
    await wait_messages(js, "PY_SRC", 3)
    await js.publish("pyorig.b", b"4")
    info = await wait_messages(js, "PY_MIRROR", 4)
    check(info.mirror.lag == 0, f"mirror lag {info.mirror.lag}")
    m = await js.get_msg("PY_MIRROR", 4)
    check((m.subject, m.data) == ("pyorig.b", b"4"), f"mirrored message {m.subject} {m.data}")
    info = await wait_messages(js, "PY_SRC", 4)
    check(len(info.sources) == 2 and all(s.lag == 0 for s in info.sources), f"sources {info.sources}")
    got = []
    for seq in range(1, 5):
        m = await js.get_msg("PY_SRC", seq)
        src = (m.headers or {}).get("Nats-Stream-Source", "")
        check(src.startswith("PY_ORIG "), f"source header {src!r}")
        got.append((m.subject, m.data))
    check(
        sorted(got) == [("pyorig.a", b"1"), ("pyorig.a", b"3"), ("pyt.b", b"2"), ("pyt.b", b"4")],
        f"sourced messages {got}",
    )
    for name in ("PY_SRC", "PY_MIRROR", "PY_ORIG"):
        await js.delete_stream(name)


SCENARIOS = [
    ("publish_ack", publish_ack),
    ("pull_fetch_ack", pull_fetch_ack),
    ("consumer_info", consumer_info),
    ("ordered_push", ordered_push),
    ("push_durable", push_durable),
    ("kv", kv),
    ("kv_ttl", kv_ttl),
    ("atomic_batch", atomic_batch),
    ("kv_republish", kv_republish),
    ("mirror_sources", mirror_sources),
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
