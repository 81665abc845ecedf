#!/usr/bin/env python3
"""nats-py, unchanged, over TLS: connects with an ssl.SSLContext trusting the
test CA (and presenting a client certificate when given), then publishes and
receives a message.

Usage: python3 tls.py tls://127.0.0.1:PORT CA_FILE [--cert CERT --key KEY]
       [--handshake-first]

Prints `ok <name>` or `FAIL <name>: <reason>`, then `N passed, N failed`;
exits 0 only when every scenario passed, 3 when nats-py is missing. Run by
tests/tls.rs against our server and against the reference nats-server.
"""

import argparse
import asyncio
import ssl
import sys
import traceback

try:
    import nats
except ImportError as e:  # the Rust test looks for this exit code
    print(
        f"nats-py is not installed ({e}); run `bash scripts/test.sh`, which installs "
        "bus-embedded-server/tests/clients/python/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)

TIMEOUT = 5.0


async def pubsub_over_tls(args):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    errors = []

    async def error_cb(e):
        errors.append(f"{type(e).__name__}: {e}")

    nc = await nats.connect(
        args.url,
        tls=ctx,
        tls_handshake_first=args.handshake_first,
        connect_timeout=5,
        allow_reconnect=False,
        error_cb=error_cb,
    )
    try:
        # nats-py keeps the INFO it received in `_server_info`.
        info = getattr(nc, "_server_info", {})
        if not info.get("tls_required"):
            raise AssertionError(f"INFO lacks tls_required: {info}")
        sub = await nc.subscribe("tls.py")
        await nc.flush()
        await nc.publish("tls.py", b"over tls")
        msg = await sub.next_msg(timeout=TIMEOUT)
        if msg.data != b"over tls":
            raise AssertionError(f"got {msg.data!r}")
        # A reply round trip too.
        async def answer(m):
            await m.respond(b"pong:" + m.data)

        await nc.subscribe("tls.svc", cb=answer)
        reply = await nc.request("tls.svc", b"ping", timeout=TIMEOUT)
        if reply.data != b"pong:ping":
            raise AssertionError(f"reply {reply.data!r}")
        if errors:
            raise AssertionError(f"asynchronous errors: {errors}")
    finally:
        await nc.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--handshake-first", action="store_true")
    args = parser.parse_args()
    passed = failed = 0
    for scenario in [pubsub_over_tls]:
        name = scenario.__name__
        try:
            await asyncio.wait_for(scenario(args), 30)
            print(f"ok {name}")
            passed += 1
        except Exception as e:  # noqa: BLE001 - report every failure
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
