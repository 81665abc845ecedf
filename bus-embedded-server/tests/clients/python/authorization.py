#!/usr/bin/env python3
"""nats-py, unchanged, against a NATS server with authorization: prints what
the client reports, one line per step, so tests/authorization.rs can compare
our server with the reference nats-server.

Usage:
  python3 authorization.py URL nkey SEED
      connect with an nkey seed (nats-py signs the INFO nonce), flush, close
  python3 authorization.py URL user USER PASS
  python3 authorization.py URL token TOKEN
  python3 authorization.py URL anonymous
      connect with user/password, a token, or nothing; flush, close
  python3 authorization.py URL denied USER PASS SUBJECT
      connect with user/password (`-` `-`: with no credentials at all),
      publish to SUBJECT and subscribe to it, print the asynchronous errors
      the client reported
  python3 authorization.py URL creds FILE SUBJECT
      connect with a `.creds` file (user JWT + seed: operator mode),
      subscribe to SUBJECT, publish to it, print what arrived, then
      publish to `denied.x` and print the asynchronous errors
"""

import asyncio
import sys

try:
    import nats
except ImportError as e:  # the Rust test looks for this marker
    print(f"nats-py is not installed ({e}); run `bash scripts/test.sh`", file=sys.stderr)
    sys.exit(3)


async def main():
    url, mode = sys.argv[1], sys.argv[2]
    errors = []

    async def error_cb(e):
        errors.append(f"{type(e).__name__}: {e}")

    common = dict(connect_timeout=3, allow_reconnect=False, error_cb=error_cb)
    if mode == "nkey":
        try:
            nc = await nats.connect(url, nkeys_seed_str=sys.argv[3], **common)
            await nc.flush(timeout=3)
            print("connected")
            await nc.close()
        except Exception as e:  # what the client raises is the point
            print(f"connect failed: {type(e).__name__}: {e}")
    elif mode in ("user", "token", "anonymous"):
        creds = {}
        if mode == "user":
            creds = dict(user=sys.argv[3], password=sys.argv[4])
        elif mode == "token":
            creds = dict(token=sys.argv[3])
        try:
            nc = await nats.connect(url, **creds, **common)
            await nc.flush(timeout=3)
            print("connected")
            await nc.close()
        except Exception as e:  # what the client raises is the point
            print(f"connect failed: {type(e).__name__}: {e}")
    elif mode == "creds":
        path, subject = sys.argv[3:5]
        try:
            nc = await nats.connect(url, user_credentials=path, **common)
        except Exception as e:  # what the client raises is the point
            print(f"connect failed: {type(e).__name__}: {e}")
        else:
            sub = await nc.subscribe(subject)
            await nc.publish(subject, b"hello")
            msg = await sub.next_msg(timeout=3)
            print(f"received {msg.subject} {msg.data.decode()}")
            await nc.publish("denied.x", b"x")
            await nc.flush(timeout=3)
            await asyncio.sleep(0.3)
            print(f"still connected: {nc.is_connected}")
            await nc.close()
    elif mode == "denied":
        user, password, subject = sys.argv[3:6]
        creds = {} if user == "-" else dict(user=user, password=password)
        nc = await nats.connect(url, **creds, **common)
        await nc.publish(subject, b"x")
        await nc.flush(timeout=3)
        await asyncio.sleep(0.3)
        await nc.subscribe(subject)
        await nc.flush(timeout=3)
        await asyncio.sleep(0.3)
        print(f"still connected: {nc.is_connected}")
        await nc.close()
    for e in errors:
        print(f"error: {e}")


asyncio.run(asyncio.wait_for(main(), 20))
