"""paho-mqtt (MQTT 3.1.1) against an `mqtt {}` listener with its own
`tls {}`, `authorization {}` or `no_auth_user`, with nats-py beside it.
Run by tests/compat_mqtt_tls_auth.rs against ours and nats-server 2.15.1
with the same configuration:

    python3 mqtt_tls_auth.py <mode> <mqtt port> <nats url> <pki dir>

<pki dir> holds ca.pem, client-cert.pem/client-key.pem (signed by the CA)
and stranger-cert.pem/stranger-key.pem (another CA). Modes and the
configuration each expects:

- tls: `mqtt { tls { cert_file, key_file } }`, no authentication.
  Scenarios: paho_over_tls_publishes_and_subscribes,
  plain_client_on_tls_port_gets_no_connack
- mtls: `mqtt { tls { ..., ca_file, verify: true } }`.
  Scenarios: client_certificate_from_the_ca_connects,
  no_client_certificate_is_refused, stranger_certificate_is_refused
- user: no server authentication;
  `mqtt { authorization { user: mq, password: mqpw, timeout: 1 } }`.
  Scenarios: block_user_and_password_connect,
  wrong_password_gets_not_authorized, other_user_gets_not_authorized,
  no_credentials_get_not_authorized,
  nats_clients_need_no_credentials,
  silent_client_is_closed_after_the_block_timeout
- token: server `authorization { token: natstok }`;
  `mqtt { authorization { token: mqtok } }`.
  Scenarios: token_in_the_password_field_connects,
  token_with_any_user_name_connects, server_token_is_refused_on_mqtt,
  wrong_token_gets_not_authorized
- noauth: users alice/secret (all) and bob/pw2 (only `allowed.>`),
  top-level `no_auth_user: alice`, `mqtt { no_auth_user: bob }`.
  Scenarios: no_credentials_are_the_blocks_no_auth_user,
  named_user_logs_in_with_its_password,
  wrong_password_of_a_user_gets_not_authorized,
  nats_clients_keep_the_top_level_no_auth_user

Prints `ok <name>` / `FAIL <name>: <why>` and `N passed, M failed` last;
exits 3 when paho-mqtt or nats-py is missing.
"""

import asyncio
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from mqtt_support import run_scenarios, wait_for

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    import nats
except ImportError as e:  # pragma: no cover
    print(f"missing client library: {e}", file=sys.stderr)
    sys.exit(3)

MODE = sys.argv[1]
PORT = int(sys.argv[2])
NATS_URL = sys.argv[3]
PKI = sys.argv[4]
HOST = "127.0.0.1"


def pki(name):
    return os.path.join(PKI, name)


class Client:
    """A paho client with its events collected."""

    def __init__(self, user=None, pw=None, tls=None):
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="c" + uuid.uuid4().hex[:10],
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if user is not None or pw is not None:
            self.c.username_pw_set(user, pw)
        if tls is not None:
            self.c.tls_set_context(tls)
        self.connack = threading.Event()
        self.rc = None
        self.subacks = {}
        self.msgs = []
        self.lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message

    def _on_connect(self, cl, u, flags, rc, props):
        self.rc = rc
        self.connack.set()

    def _on_subscribe(self, cl, u, mid, rcs, props):
        self.subacks[mid] = [r.value for r in rcs]

    def _on_message(self, cl, u, msg):
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload)))

    def connect(self):
        """Connects; returns the MQTT 3.1.1 CONNACK return code (0:
        accepted, 4: bad user name or password, 5: not authorized)."""
        self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        assert self.connack.wait(5), "no CONNACK"
        # paho reports 3.1.1 return codes as MQTT 5 reason codes.
        return {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}[self.rc.value]

    def subscribe(self, topic):
        rc, mid = self.c.subscribe([(topic, 0)])
        assert rc == 0
        wait_for(lambda: mid in self.subacks, "SUBACK")
        return self.subacks[mid]

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=0).wait_for_publish(5)

    def got(self):
        with self.lock:
            return list(self.msgs)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def tls_context(cert=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pki("ca.pem"))
    if cert is not None:
        ctx.load_cert_chain(pki(f"{cert}-cert.pem"), pki(f"{cert}-key.pem"))
    return ctx


def round_trip(tls=None, user=None, pw=None):
    """A subscriber and a publisher with these settings: the message arrives."""
    sub = Client(user, pw, tls)
    assert sub.connect() == 0, "subscriber refused"
    assert sub.subscribe("rt/x") == [0]
    pub = Client(user, pw, tls)
    assert pub.connect() == 0, "publisher refused"
    pub.publish("rt/x", b"hello")
    wait_for(lambda: sub.got() == [("rt/x", b"hello")], "the message")
    sub.close()
    pub.close()


def raw_connect_packet(cid):
    body = b"\x00\x04MQTT\x04\x02\x00\x1e" + len(cid).to_bytes(2, "big") + cid.encode()
    return bytes([0x10, len(body)]) + body


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


# ------------------------------------------------------------------ tls


def paho_over_tls_publishes_and_subscribes():
    round_trip(tls=tls_context())


def plain_client_on_tls_port_gets_no_connack():
    s = socket.create_connection((HOST, PORT))
    s.sendall(raw_connect_packet("plain"))
    assert closed_without_connack(s), "a plain CONNECT was answered"


# ----------------------------------------------------------------- mtls


def client_certificate_from_the_ca_connects():
    round_trip(tls=tls_context("client"))


def refused_handshake(cert):
    """The TLS handshake (or the first read after it, with TLS 1.3) fails."""
    raw = socket.create_connection((HOST, PORT), timeout=5)
    try:
        s = tls_context(cert).wrap_socket(raw, server_hostname="127.0.0.1")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    try:
        s.sendall(raw_connect_packet("nocert"))
        return closed_without_connack(s)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def no_client_certificate_is_refused():
    assert refused_handshake(None), "connected without a client certificate"


def stranger_certificate_is_refused():
    assert refused_handshake("stranger"), "connected with another CA's certificate"


# ----------------------------------------------------------------- user


def block_user_and_password_connect():
    round_trip(user="mq", pw="mqpw")


def wrong_password_gets_not_authorized():
    assert Client("mq", "nope").connect() == 5


def other_user_gets_not_authorized():
    assert Client("alice", "mqpw").connect() == 5


def no_credentials_get_not_authorized():
    assert Client().connect() == 5


def nats_clients_need_no_credentials():
    async def go():
        nc = await nats.connect(NATS_URL, allow_reconnect=False, max_reconnect_attempts=0)
        await nc.close()

    asyncio.run(go())


def silent_client_is_closed_after_the_block_timeout():
    s = socket.create_connection((HOST, PORT))
    started = time.time()
    assert closed_without_connack(s, timeout=4), "not closed"
    took = time.time() - started
    # `timeout: 1` in the block (the server's default is 2 s).
    assert 0.7 < took < 1.8, f"closed after {took:.2f}s"


# ---------------------------------------------------------------- token


def token_in_the_password_field_connects():
    # paho (as MQTT 3.1.1 requires) sends a password only with a user name.
    round_trip(user="t", pw="mqtok")


def token_with_any_user_name_connects():
    assert Client("whoever", "mqtok").connect() == 0


def server_token_is_refused_on_mqtt():
    assert Client("t", "natstok").connect() == 5


def wrong_token_gets_not_authorized():
    assert Client("t", "bad").connect() == 5


# --------------------------------------------------------------- noauth


def no_credentials_are_the_blocks_no_auth_user():
    # bob may only use allowed.> (allowed/# in MQTT).
    c = Client()
    assert c.connect() == 0
    assert c.subscribe("secret/x") == [0x80]
    assert c.subscribe("allowed/x") == [0]
    c.close()


def named_user_logs_in_with_its_password():
    c = Client("alice", "secret")
    assert c.connect() == 0
    assert c.subscribe("secret/x") == [0]
    c.close()


def wrong_password_of_a_user_gets_not_authorized():
    assert Client("alice", "wrong").connect() == 5


def nats_clients_keep_the_top_level_no_auth_user():
    async def go():
        nc = await nats.connect(NATS_URL, allow_reconnect=False, max_reconnect_attempts=0)
        # alice: may subscribe anywhere (bob could not).
        sub = await nc.subscribe("secret.x")
        await nc.publish("secret.x", b"m")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"m"
        await nc.close()

    asyncio.run(go())


SCENARIOS = {
    "tls": [paho_over_tls_publishes_and_subscribes, plain_client_on_tls_port_gets_no_connack],
    "mtls": [
        client_certificate_from_the_ca_connects,
        no_client_certificate_is_refused,
        stranger_certificate_is_refused,
    ],
    "user": [
        block_user_and_password_connect,
        wrong_password_gets_not_authorized,
        other_user_gets_not_authorized,
        no_credentials_get_not_authorized,
        nats_clients_need_no_credentials,
        silent_client_is_closed_after_the_block_timeout,
    ],
    "token": [
        token_in_the_password_field_connects,
        token_with_any_user_name_connects,
        server_token_is_refused_on_mqtt,
        wrong_token_gets_not_authorized,
    ],
    "noauth": [
        no_credentials_are_the_blocks_no_auth_user,
        named_user_logs_in_with_its_password,
        wrong_password_of_a_user_gets_not_authorized,
        nats_clients_keep_the_top_level_no_auth_user,
    ],
}


def main():
    run_scenarios(SCENARIOS[MODE], timeout=20)


if __name__ == "__main__":
    main()
