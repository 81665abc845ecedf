"""paho-mqtt (MQTT 3.1.1) against a server in operator mode (decentralized
JWT authentication), or with a top-level `no_auth_user`. Run by
tests/compat_mqtt_operator.rs against ours and nats-server 2.15.1 with the
same configuration:

    python3 mqtt_operator.py <mode> <mqtt port>

Modes:

- operator: operator JWT, `resolver: MEMORY`, one account with JetStream.
  The environment variable MQTT_JWTS holds a JSON object of user JWTs
  signed by the test (names below). An MQTT client logs in with a user
  JWT as its password; nats-server takes only bearer JWTs (MQTT has no
  nonce to sign) and wants a user name, any non-empty one.
  Scenarios: bearer_jwt_as_password_publishes_and_subscribes_qos1,
  bearer_jwt_persistent_session_resumes,
  jwt_permissions_apply_to_mqtt, non_bearer_jwt_gets_not_authorized,
  expired_jwt_gets_not_authorized, revoked_jwt_gets_not_authorized,
  garbage_password_gets_not_authorized,
  no_credentials_get_not_authorized,
  jwt_without_user_name_is_closed_without_connack,
  jwt_with_empty_user_name_gets_bad_user_name_or_password,
  allowed_connection_types_mqtt_connects,
  allowed_connection_types_standard_gets_not_authorized
  (JWTs: bearer, plain, expired, revoked, restricted, mqtt_only,
  standard_only; `restricted` may publish and subscribe only `ok.>`).
- noauth_top: users alice/apw and bob/bpw, top-level `no_auth_user: bob`,
  no `mqtt` authorization.
  Scenarios: no_credentials_are_the_no_auth_user,
  password_without_user_name_is_closed_without_connack,
  named_user_logs_in_with_its_password,
  wrong_password_gets_not_authorized

Prints `ok <name>` / `FAIL <name>: <why>` and `N passed, M failed` last;
exits 3 when paho-mqtt is missing.
"""

import json
import os
import socket
import sys
import threading
import time
import uuid
from mqtt_support import run_scenarios, wait_for

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError as e:  # pragma: no cover
    print(f"missing client library: {e}", file=sys.stderr)
    sys.exit(3)

MODE = sys.argv[1]
PORT = int(sys.argv[2])
HOST = "127.0.0.1"
JWTS = json.loads(os.environ.get("MQTT_JWTS", "{}"))


class Client:
    """A paho client with its events collected."""

    def __init__(self, user=None, pw=None, client_id=None, clean=True):
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or "c" + uuid.uuid4().hex[:10],
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        if user is not None or pw is not None:
            self.c.username_pw_set(user, pw)
        self.connack = threading.Event()
        self.rc = None
        self.present = None
        self.subacks = {}
        self.msgs = []
        self.lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message

    def _on_connect(self, cl, u, flags, rc, props):
        self.rc = rc
        self.present = flags.session_present
        self.connack.set()

    def _on_subscribe(self, cl, u, mid, rcs, props):
        self.subacks[mid] = [r.value for r in rcs]

    def _on_message(self, cl, u, msg):
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload), msg.qos))

    def connect(self):
        """Connects; returns the MQTT 3.1.1 CONNACK return code."""
        self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        assert self.connack.wait(5), "no CONNACK"
        return {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}[self.rc.value]

    def subscribe(self, topic, qos=0):
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


def raw_connect(user, pw):
    """A raw CONNECT (paho will not send a password without a user name):
    the socket, after sending it."""

    def field(b):
        return len(b).to_bytes(2, "big") + b

    flags = 0x02 | (0x80 if user is not None else 0) | (0x40 if pw is not None else 0)
    body = field(b"MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big")
    body += field(("r" + uuid.uuid4().hex[:8]).encode())
    if user is not None:
        body += field(user.encode())
    if pw is not None:
        body += field(pw.encode())
    assert len(body) < 16384
    header = bytes([0x10])
    n = len(body)
    while True:
        d, n = n % 128, n // 128
        header += bytes([d | (0x80 if n else 0)])
        if not n:
            break
    s = socket.create_connection((HOST, PORT))
    s.sendall(header + body)
    return s


def closed_without_connack(s, timeout=5.0):
    """True when the server closes `s` (reset or EOF) sending nothing."""
    s.settimeout(timeout)
    try:
        data = s.recv(16)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return data == b""


def connack_code(s, timeout=5.0):
    s.settimeout(timeout)
    data = b""
    while len(data) < 4:
        chunk = s.recv(4 - len(data))
        if not chunk:
            break
        data += chunk
    assert len(data) == 4 and data[0] == 0x20, f"not a CONNACK: {data!r}"
    return data[3]


def refused_with(jwt, code, user="mqttuser"):
    c = Client(user, jwt)
    try:
        got = c.connect()
    finally:
        c.c.loop_stop()
    assert got == code, f"CONNACK {got}, want {code}"


# ------------------------------------------------------------- operator


def bearer_jwt_as_password_publishes_and_subscribes_qos1():
    sub = Client("anyone", JWTS["bearer"])
    assert sub.connect() == 0, "subscriber refused"
    assert sub.subscribe("op/q1", 1) == [1]
    assert sub.subscribe("op/q0", 0) == [0]
    pub = Client("someone-else", JWTS["bearer"])
    assert pub.connect() == 0, "publisher refused"
    pub.publish("op/q1", b"one", 1)
    pub.publish("op/q0", b"zero", 0)
    wait_for(lambda: len(sub.got()) == 2, "both messages")
    assert sorted(sub.got()) == [("op/q0", b"zero", 0), ("op/q1", b"one", 1)], sub.got()
    sub.close()
    pub.close()


def bearer_jwt_persistent_session_resumes():
    cid = "p" + uuid.uuid4().hex[:10]
    first = Client("u", JWTS["bearer"], client_id=cid, clean=False)
    assert first.connect() == 0
    assert first.subscribe("op/persist", 1) == [1]
    first.close()
    pub = Client("u", JWTS["bearer"])
    assert pub.connect() == 0
    pub.publish("op/persist", b"while away", 1)
    pub.close()
    again = Client("u", JWTS["bearer"], client_id=cid, clean=False)
    assert again.connect() == 0
    assert again.present, "session not present"
    wait_for(lambda: again.got() == [("op/persist", b"while away", 1)], "the stored message")
    again.close()
    wipe = Client("u", JWTS["bearer"], client_id=cid, clean=True)
    assert wipe.connect() == 0
    wipe.close()


def jwt_permissions_apply_to_mqtt():
    c = Client("r", JWTS["restricted"])
    assert c.connect() == 0
    assert c.subscribe("ok/x") == [0]
    assert c.subscribe("bad/x") == [0x80]
    watcher = Client("w", JWTS["bearer"])
    assert watcher.connect() == 0
    assert watcher.subscribe("bad/x") == [0]
    c.publish("bad/x", b"denied")
    c.publish("ok/x", b"fine")
    wait_for(lambda: c.got() == [("ok/x", b"fine", 0)], "the allowed message")
    time.sleep(0.3)
    assert watcher.got() == [], f"a denied publish arrived: {watcher.got()}"
    c.close()
    watcher.close()


def non_bearer_jwt_gets_not_authorized():
    refused_with(JWTS["plain"], 5)


def expired_jwt_gets_not_authorized():
    refused_with(JWTS["expired"], 5)


def revoked_jwt_gets_not_authorized():
    refused_with(JWTS["revoked"], 5)


def garbage_password_gets_not_authorized():
    refused_with("eyJnot.a.jwt", 5)


def no_credentials_get_not_authorized():
    c = Client()
    try:
        assert c.connect() == 5
    finally:
        c.c.loop_stop()


def jwt_without_user_name_is_closed_without_connack():
    s = raw_connect(None, JWTS["bearer"])
    assert closed_without_connack(s), "answered a password without a user name"
    s.close()


def jwt_with_empty_user_name_gets_bad_user_name_or_password():
    s = raw_connect("", JWTS["bearer"])
    assert connack_code(s) == 4
    s.close()


def allowed_connection_types_mqtt_connects():
    c = Client("m", JWTS["mqtt_only"])
    assert c.connect() == 0
    assert c.subscribe("op/t") == [0]
    c.close()


def allowed_connection_types_standard_gets_not_authorized():
    refused_with(JWTS["standard_only"], 5)


# ------------------------------------------------------------ noauth_top


def no_credentials_are_the_no_auth_user():
    sub = Client()
    assert sub.connect() == 0
    assert sub.subscribe("na/x") == [0]
    pub = Client("alice", "apw")
    assert pub.connect() == 0
    pub.publish("na/x", b"hi")
    wait_for(lambda: sub.got() == [("na/x", b"hi", 0)], "the message")
    sub.close()
    pub.close()


def password_without_user_name_is_closed_without_connack():
    for pw in ["bpw", "apw", "whatever"]:
        s = raw_connect(None, pw)
        assert closed_without_connack(s), f"answered password {pw!r} without a user name"
        s.close()


def named_user_logs_in_with_its_password():
    c = Client("alice", "apw")
    assert c.connect() == 0
    c.close()


def wrong_password_gets_not_authorized():
    refused_with("nope", 5, user="alice")


SCENARIOS = {
    "operator": [
        bearer_jwt_as_password_publishes_and_subscribes_qos1,
        bearer_jwt_persistent_session_resumes,
        jwt_permissions_apply_to_mqtt,
        non_bearer_jwt_gets_not_authorized,
        expired_jwt_gets_not_authorized,
        revoked_jwt_gets_not_authorized,
        garbage_password_gets_not_authorized,
        no_credentials_get_not_authorized,
        jwt_without_user_name_is_closed_without_connack,
        jwt_with_empty_user_name_gets_bad_user_name_or_password,
        allowed_connection_types_mqtt_connects,
        allowed_connection_types_standard_gets_not_authorized,
    ],
    "noauth_top": [
        no_credentials_are_the_no_auth_user,
        password_without_user_name_is_closed_without_connack,
        named_user_logs_in_with_its_password,
        wrong_password_gets_not_authorized,
    ],
}


def main():
    run_scenarios(SCENARIOS[MODE], timeout=20)


if __name__ == "__main__":
    main()
