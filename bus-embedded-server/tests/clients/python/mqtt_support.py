"""What the MQTT scenario scripts (mqtt.py, mqtt_tls_auth.py, mqtt_qos2.py,
mqtt_operator.py) share: waiting for a condition, raw MQTT 3.1.1 packet
building and reading, and the scenario runner whose last line
("N passed, M failed") the Rust tests check."""

import struct
import sys
import threading
import time
import traceback


def wait_for(cond, what, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def mqtt_str(s):
    """An MQTT UTF-8 string: two-byte big-endian length, then the bytes."""
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def packet(first, body):
    """A packet: the first byte, the remaining length (variable-length
    encoding, seven bits per byte), then the body."""
    n, enc = len(body), b""
    while True:
        d, n = n % 128, n // 128
        enc += bytes([d | (0x80 if n else 0)])
        if not n:
            break
    return bytes([first]) + enc + body


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise AssertionError(f"connection closed after {out!r}")
        out += chunk
    return out


def run_scenarios(scenarios, keep=lambda name: True, timeout=30):
    """Runs each scenario `keep` accepts in a thread of its own (a hung
    scenario fails after `timeout` seconds instead of hanging the script),
    prints `ok <name>` or `FAIL <name>: <why>` and the summary line, and
    exits 0 only if every scenario passed."""
    passed = failed = 0
    for scenario in scenarios:
        if not keep(scenario.__name__):
            continue
        result = {}

        def body():
            try:
                scenario()
                result["ok"] = True
            except BaseException as e:  # noqa: BLE001
                result["err"] = f"{e!r}\n{traceback.format_exc()}"

        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(timeout)
        if result.get("ok"):
            passed += 1
            print(f"ok {scenario.__name__}")
        else:
            failed += 1
            print(f"FAIL {scenario.__name__}: {result.get('err', 'timed out')}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)
