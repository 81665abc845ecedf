"""QoS 2 subscriptions (PUBLISH QoS 2 to the client, PUBREC, PUBREL,
PUBCOMP), a resumed session's redeliveries, and the `mqtt {}` QoS 2
switches: raw MQTT 3.1.1 packets and paho-mqtt against an `mqtt {}`
listener. Run by tests/compat_mqtt_qos2.rs against ours and nats-server
2.15.1 with the same configuration:

    python3 mqtt_qos2.py <mode> <mqtt port> <nats url>

Modes:

- qos2: `mqtt { ack_wait: "1s" }`, no authentication.
  Scenarios: qos2_subscription_gets_each_message_at_its_published_qos,
  qos2_delivery_is_released_and_completed_once,
  unacknowledged_qos2_delivery_comes_again_with_dup,
  pubrel_owed_before_a_reconnection_is_sent_again,
  resumed_session_redelivers_with_dup (QoS 1 and 2),
  clean_session_forgets_the_pubrels_it_owed,
  clean_session_has_a_record_only_while_connected (read with nats-py
  from `$MQTT_sess`)
- switches: `mqtt { reject_qos2_publish: true,
  downgrade_qos2_subscribe: true }`.
  Scenarios: qos2_subscribe_is_granted_qos1,
  qos2_publish_closes_the_connection,
  qos2_will_gets_connack_0x10, qos1_still_works

Prints `ok <name>` / `FAIL <name>: <why>` and `N passed, M failed` last;
exits 3 when paho-mqtt is missing.
"""

import socket
import struct
import sys
import threading
import time
import uuid
from mqtt_support import mqtt_str, packet, recv_exact, run_scenarios, wait_for

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError as e:  # pragma: no cover
    print(f"missing client library: {e}", file=sys.stderr)
    sys.exit(3)

MODE = sys.argv[1]
PORT = int(sys.argv[2])
NATS_URL = sys.argv[3]
HOST = "127.0.0.1"


def raw_connect(cid, clean=True, will=None, will_qos=0, expect=0):
    """A raw CONNECT; returns (socket, session present)."""
    flags = 0x02 if clean else 0
    payload = mqtt_str(cid)
    if will:
        flags |= 0x04 | (will_qos << 3)
        payload += mqtt_str(will[0]) + mqtt_str(will[1])
    body = mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + payload
    s = socket.create_connection((HOST, PORT), timeout=5)
    s.sendall(packet(0x10, body))
    ack = recv_exact(s, 4)
    assert ack[0] == 0x20 and ack[3] == expect, f"CONNACK {ack!r}, want code {expect}"
    return s, ack[2] == 1


def read_packet(s, timeout=5.0):
    """One packet: (first byte, body)."""
    s.settimeout(timeout)
    first = recv_exact(s, 1)[0]
    n, shift = 0, 0
    while True:
        b = recv_exact(s, 1)[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, recv_exact(s, n)


def read_publish(s, timeout=5.0):
    """One PUBLISH: (first byte, topic, packet id, payload)."""
    first, body = read_packet(s, timeout)
    assert first & 0xF0 == 0x30, f"not a PUBLISH: {first:#x} {body!r}"
    tlen = struct.unpack("!H", body[:2])[0]
    topic = body[2 : 2 + tlen].decode()
    rest = body[2 + tlen :]
    pid = None
    if first & 0x06:
        pid = struct.unpack("!H", rest[:2])[0]
        rest = rest[2:]
    return first, topic, pid, rest


def expect_pubrel(s, pid, timeout=5.0):
    first, body = read_packet(s, timeout)
    assert (first, body) == (0x62, struct.pack("!H", pid)), f"not PUBREL {pid}: {first:#x} {body!r}"


def silent(s, seconds):
    s.settimeout(seconds)
    try:
        extra = s.recv(1)
    except socket.timeout:
        return True
    raise AssertionError(f"unexpected traffic: {extra!r}")


def subscribe(s, topic, qos, pid=1):
    s.sendall(packet(0x82, struct.pack("!H", pid) + mqtt_str(topic) + bytes([qos])))
    first, body = read_packet(s)
    assert first == 0x90, f"not a SUBACK: {first:#x}"
    return body[2:]


def ack(s, kind, pid):
    s.sendall(bytes([kind, 2]) + struct.pack("!H", pid))


PUBREC, PUBCOMP, PUBACK = 0x50, 0x70, 0x40


class Client:
    """A paho client with its events collected."""

    def __init__(self, client_id=None, clean=True):
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or "c" + uuid.uuid4().hex[:10],
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        self.connack = threading.Event()
        self.subacks = {}
        self.msgs = []
        self.lock = threading.Lock()
        self.c.on_connect = lambda cl, u, f, rc, p: self.connack.set()
        self.c.on_subscribe = lambda cl, u, mid, rcs, p: self.subacks.__setitem__(
            mid, [r.value for r in rcs]
        )
        self.c.on_message = self._on_message

    def _on_message(self, cl, u, msg):
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload), msg.qos))

    def connect(self):
        self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        assert self.connack.wait(5), "no CONNACK"
        return self

    def subscribe(self, topic, qos):
        rc, mid = self.c.subscribe([(topic, qos)])
        assert rc == 0
        wait_for(lambda: mid in self.subacks, "SUBACK")
        return self.subacks[mid]

    def publish(self, topic, payload, qos=0):
        self.c.publish(topic, payload, qos=qos).wait_for_publish(5)

    def got(self):
        with self.lock:
            return list(self.msgs)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def cid(prefix):
    return prefix + uuid.uuid4().hex[:8]


# ------------------------------------------------------------------ qos2


def qos2_subscription_gets_each_message_at_its_published_qos():
    sub = Client().connect()
    assert sub.subscribe("q2/each", 2) == [2]
    pub = Client().connect()
    pub.publish("q2/each", b"two", 2)
    pub.publish("q2/each", b"one", 1)
    pub.publish("q2/each", b"zero", 0)
    wait_for(lambda: len(sub.got()) == 3, "three messages")
    time.sleep(1.5)
    assert sorted(sub.got()) == [
        ("q2/each", b"one", 1),
        ("q2/each", b"two", 2),
        ("q2/each", b"zero", 0),
    ], sub.got()
    sub.close()
    pub.close()


def qos2_delivery_is_released_and_completed_once():
    s, _ = raw_connect(cid("rel"))
    assert subscribe(s, "q2/rel", 2) == bytes([2])
    pub = Client().connect()
    pub.publish("q2/rel", b"exactly once", 2)
    first, topic, pid, payload = read_publish(s)
    assert (first, topic, payload) == (0x34, "q2/rel", b"exactly once"), (first, topic, payload)
    ack(s, PUBREC, pid)
    expect_pubrel(s, pid)
    ack(s, PUBCOMP, pid)
    # ack_wait is 1 s: neither the message nor the PUBREL comes again.
    silent(s, 2.5)
    s.close()
    pub.close()


def unacknowledged_qos2_delivery_comes_again_with_dup():
    s, _ = raw_connect(cid("dup"))
    assert subscribe(s, "q2/dup", 2) == bytes([2])
    pub = Client().connect()
    pub.publish("q2/dup", b"again", 2)
    first, _, pid, _ = read_publish(s)
    assert first == 0x34, hex(first)
    first2, topic2, pid2, payload2 = read_publish(s, timeout=4)
    assert (first2, topic2, pid2, payload2) == (0x3C, "q2/dup", pid, b"again"), (first2, pid2, pid)
    ack(s, PUBREC, pid)
    expect_pubrel(s, pid)
    # The PUBREL is sent again until the PUBCOMP.
    expect_pubrel(s, pid, timeout=4)
    ack(s, PUBCOMP, pid)
    silent(s, 2.5)
    s.close()
    pub.close()


def pubrel_owed_before_a_reconnection_is_sent_again():
    c = cid("owed")
    s, present = raw_connect(c, clean=False)
    assert not present
    assert subscribe(s, "q2/owed", 2) == bytes([2])
    pub = Client().connect()
    pub.publish("q2/owed", b"released", 2)
    _, _, pid, payload = read_publish(s)
    assert payload == b"released"
    ack(s, PUBREC, pid)
    expect_pubrel(s, pid)
    s.close()  # no PUBCOMP
    time.sleep(0.3)
    s, present = raw_connect(c, clean=False)
    assert present, "session not present"
    # The PUBREL again (not the message: it was PUBRECed).
    expect_pubrel(s, pid, timeout=4)
    ack(s, PUBCOMP, pid)
    silent(s, 2.5)
    s.close()
    s, _ = raw_connect(c, clean=True)
    s.close()
    pub.close()


def resumed_session_redelivers_with_dup():
    c = cid("resume")
    s, _ = raw_connect(c, clean=False)
    assert subscribe(s, "q2/resume/#", 2) == bytes([2])
    pub = Client().connect()
    pub.publish("q2/resume/one", b"q1", 1)
    pub.publish("q2/resume/two", b"q2", 2)
    got = sorted(read_publish(s)[1:] for _ in range(2))
    assert [(t, p) for t, _, p in got] == [("q2/resume/one", b"q1"), ("q2/resume/two", b"q2")], got
    s.close()  # neither acknowledged
    time.sleep(0.3)
    s, present = raw_connect(c, clean=False)
    assert present
    again = sorted(
        (f, t, p) for f, t, _, p in (read_publish(s, timeout=4) for _ in range(2))
    )
    assert again == [(0x3A, "q2/resume/one", b"q1"), (0x3C, "q2/resume/two", b"q2")], again
    s.close()
    s, _ = raw_connect(c, clean=True)
    s.close()
    pub.close()


def clean_session_forgets_the_pubrels_it_owed():
    c = cid("forget")
    s, _ = raw_connect(c, clean=False)
    assert subscribe(s, "q2/forget", 2) == bytes([2])
    pub = Client().connect()
    pub.publish("q2/forget", b"x", 2)
    _, _, pid, _ = read_publish(s)
    ack(s, PUBREC, pid)
    expect_pubrel(s, pid)
    s.close()
    time.sleep(0.3)
    s, present = raw_connect(c, clean=True)
    assert not present
    silent(s, 2.5)
    s.close()
    s, present = raw_connect(c, clean=False)
    assert not present
    silent(s, 2.5)
    s.close()
    s, _ = raw_connect(c, clean=True)
    s.close()
    pub.close()


def session_records(client_id):
    """The `$MQTT_sess` records of `client_id` (decoded JSON)."""
    import asyncio
    import json

    import nats

    async def read():
        nc = await nats.connect(NATS_URL)
        js = nc.jsm()
        found = []
        try:
            info = await js.stream_info("$MQTT_sess")
        except nats.js.errors.NotFoundError:
            await nc.close()
            return found
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                m = await js.get_msg("$MQTT_sess", seq)
            except nats.js.errors.NotFoundError:
                continue
            rec = json.loads(m.data)
            if rec.get("id") == client_id:
                found.append(rec)
        await nc.close()
        return found

    return asyncio.run(read())


def clean_session_has_a_record_only_while_connected():
    c = cid("cleanrec")
    s, _ = raw_connect(c, clean=True)
    assert subscribe(s, "q2/cleanrec", 1) == bytes([1])
    recs = session_records(c)
    assert len(recs) == 1, recs
    assert recs[0].get("clean") is True and recs[0].get("subs") == {"q2.cleanrec": 1}, recs
    s.sendall(bytes([0xE0, 0]))
    s.close()
    wait_for(lambda: session_records(c) == [], "the record to go")


# -------------------------------------------------------------- switches


def qos2_subscribe_is_granted_qos1():
    s, _ = raw_connect(cid("down"))
    assert subscribe(s, "sw/down", 2) == bytes([1])
    pub = Client().connect()
    pub.publish("sw/down", b"one", 1)
    first, _, pid, payload = read_publish(s)
    assert (first, payload) == (0x32, b"one"), (first, payload)
    ack(s, PUBACK, pid)
    s.close()
    pub.close()


def qos2_publish_closes_the_connection():
    s, _ = raw_connect(cid("rej"))
    s.sendall(packet(0x34, mqtt_str("sw/rej") + struct.pack("!H", 7) + b"no"))
    s.settimeout(5)
    try:
        data = s.recv(16)
    except ConnectionResetError:
        data = b""
    assert data == b"", f"answered a rejected QoS 2 PUBLISH: {data!r}"
    s.close()


def qos2_will_gets_connack_0x10():
    s, _ = raw_connect(cid("will"), will=("sw/will", "bye"), will_qos=2, expect=0x10)
    s.close()


def qos1_still_works():
    sub = Client().connect()
    assert sub.subscribe("sw/one", 1) == [1]
    pub = Client().connect()
    pub.publish("sw/one", b"fine", 1)
    wait_for(lambda: sub.got() == [("sw/one", b"fine", 1)], "the QoS 1 message")
    sub.close()
    pub.close()


SCENARIOS = {
    "qos2": [
        qos2_subscription_gets_each_message_at_its_published_qos,
        qos2_delivery_is_released_and_completed_once,
        unacknowledged_qos2_delivery_comes_again_with_dup,
        pubrel_owed_before_a_reconnection_is_sent_again,
        resumed_session_redelivers_with_dup,
        clean_session_forgets_the_pubrels_it_owed,
        clean_session_has_a_record_only_while_connected,
    ],
    "switches": [
        qos2_subscribe_is_granted_qos1,
        qos2_publish_closes_the_connection,
        qos2_will_gets_connack_0x10,
        qos1_still_works,
    ],
}


def main():
    only = sys.argv[4:]
    run_scenarios(SCENARIOS[MODE], lambda name: not only or name in only)


if __name__ == "__main__":
    main()
