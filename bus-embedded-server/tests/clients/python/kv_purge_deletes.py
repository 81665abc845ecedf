#!/usr/bin/env python3
"""nats-py's KV `purge_deletes(olderthan=...)`, unchanged, against a NATS
server with JetStream: delete and purge markers older than the threshold
are removed entirely (STREAM.PURGE with `filter`), recent ones are kept as
the key's only entry (`filter` and `keep: 1`).

Usage: python3 kv_purge_deletes.py nats://127.0.0.1:PORT

Scenario: kv_purge_deletes_older_than (old DEL and PURGE markers go, a
recent DEL marker stays, live keys are untouched; then olderthan=0 removes
every marker).

Prints `ok <name>` or `FAIL <name>: <reason>`, then `N passed, N failed`;
exit code 0 only when every scenario passed. Run by
tests/compat_other_clients.rs against our server and against nats-server.
"""

import asyncio
import sys
import traceback

try:
    import nats
except ImportError as e:  # the Rust test looks for this marker
    print(
        f"nats-py is not installed ({e}); run `bash scripts/test.sh`, which installs "
        "bus-embedded-server/tests/clients/python/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)

MSG_TIMEOUT = 5.0
SCENARIO_TIMEOUT = 30.0


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


async def history_ops(kv, key):
    try:
        return [e.operation for e in await kv.history(key)]
    except nats.js.errors.NoKeysError:
        return []


async def kv_purge_deletes_older_than(nc):
    js = nc.jetstream(timeout=MSG_TIMEOUT)
    kv = await js.create_key_value(bucket="PYPD", history=5)
    await kv.put("old_del", b"1")
    await kv.put("old_del", b"2")
    await kv.delete("old_del")
    await kv.put("old_purge", b"1")
    await kv.purge("old_purge")
    await kv.put("live", b"stays")
    await asyncio.sleep(2.0)
    await kv.put("new_del", b"1")
    await kv.delete("new_del")
    si = await js.stream_info("KV_PYPD")
    check(si.state.messages == 7, f"before: {si.state.messages} messages")

    await kv.purge_deletes(olderthan=1)
    si = await js.stream_info("KV_PYPD")
    # live's value and new_del's (recent) marker.
    check(si.state.messages == 2, f"after olderthan=1: {si.state.messages} messages")
    check(await history_ops(kv, "old_del") == [], "old_del's old marker is gone")
    check(await history_ops(kv, "old_purge") == [], "old_purge's old marker is gone")
    ops = await history_ops(kv, "new_del")
    check(ops == ["DEL"], f"new_del keeps only its recent marker: {ops}")
    e = await kv.get("live")
    check(e.value == b"stays", f"live is untouched: {e}")
    keys = await kv.keys()
    check(keys == ["live"], f"keys {keys}")

    await kv.purge_deletes(olderthan=0)
    si = await js.stream_info("KV_PYPD")
    check(si.state.messages == 1, f"after olderthan=0: {si.state.messages} messages")
    check(await history_ops(kv, "new_del") == [], "olderthan=0 removes every marker")
    await js.delete_key_value("PYPD")


SCENARIOS = [("kv_purge_deletes_older_than", kv_purge_deletes_older_than)]


async def run(url):
    passed = failed = 0
    for name, scenario in SCENARIOS:
        nc = None
        try:
            nc = await nats.connect(url, name=name, connect_timeout=5, allow_reconnect=False)
            await asyncio.wait_for(scenario(nc), SCENARIO_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - report every failure, go on
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok {name}", flush=True)
        finally:
            if nc is not None and not nc.is_closed:
                await nc.close()
    print(f"{passed} passed, {failed} failed", flush=True)
    return failed == 0


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} nats://HOST:PORT", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if asyncio.run(run(sys.argv[1])) else 1)


if __name__ == "__main__":
    main()
