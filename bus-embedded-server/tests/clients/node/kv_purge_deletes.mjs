// nats.js v3 KV `purgeDeletes(olderMillis)` (@nats-io/kv), unchanged,
// against a NATS server with JetStream: delete and purge markers older than
// the threshold are removed entirely (STREAM.PURGE with `filter`, `keep: 0`),
// recent ones are kept as the key's only entry (`filter` and `keep: 1`).
//
// Usage: node kv_purge_deletes.mjs nats://127.0.0.1:PORT
//
// Scenario: kv_purge_deletes_older_than (old DEL and PURGE markers go, a
// recent DEL marker stays, live keys are untouched; then olderMillis 0
// removes every marker).
//
// Prints `ok <name>` or `FAIL <name>: <reason>`, then `N passed, N failed`;
// exit code 0 only when every scenario passed. Run by
// tests/compat_other_clients.rs against our server and against nats-server.

import { AssertionFailed, check, within } from "./lib.mjs";

let nats;
let js;
let kvlib;
try {
  nats = await import("@nats-io/transport-node");
  js = await import("@nats-io/jetstream");
  kvlib = await import("@nats-io/kv");
} catch (e) {
  // The Rust test looks for this marker.
  console.error(
    `nats.js (@nats-io/transport-node, @nats-io/jetstream, @nats-io/kv) is not installed ` +
      `(${e.message}); run \`bash scripts/test.sh\`, which runs \`npm ci\` in ` +
      "bus-embedded-server/tests/clients/node",
  );
  process.exit(3);
}
const { connect } = nats;
const { jetstreamManager } = js;
const { Kvm } = kvlib;

const SCENARIO_TIMEOUT = 30000;

async function historyOps(b, key) {
  const ops = [];
  const it = await b.history({ key });
  for await (const e of it) {
    ops.push(e.operation);
  }
  return ops;
}

async function keysOf(b) {
  const keys = [];
  for await (const k of await b.keys()) {
    keys.push(k);
  }
  return keys.sort();
}

async function kvPurgeDeletesOlderThan(nc) {
  const jsm = await jetstreamManager(nc);
  const b = await new Kvm(nc).create("JSPD", { history: 5 });
  await b.put("old_del", "1");
  await b.put("old_del", "2");
  await b.delete("old_del");
  await b.put("old_purge", "1");
  await b.purge("old_purge");
  await b.put("live", "stays");
  await new Promise((r) => setTimeout(r, 2000));
  await b.put("new_del", "1");
  await b.delete("new_del");
  let si = await jsm.streams.info("KV_JSPD");
  check(si.state.messages === 7, `before: ${si.state.messages} messages`);

  const pr = await b.purgeDeletes(1000);
  check(pr.success, `purgeDeletes: ${JSON.stringify(pr)}`);
  check(pr.purged === 5, `purged ${pr.purged}, expected 5 (old_del's three entries, old_purge's marker, new_del's value)`);
  si = await jsm.streams.info("KV_JSPD");
  check(si.state.messages === 2, `after 1000 ms: ${si.state.messages} messages`);
  check((await historyOps(b, "old_del")).length === 0, "old_del's old marker is gone");
  check((await historyOps(b, "old_purge")).length === 0, "old_purge's old marker is gone");
  const ops = await historyOps(b, "new_del");
  check(ops.length === 1 && ops[0] === "DEL", `new_del keeps only its recent marker: ${ops}`);
  const e = await b.get("live");
  check(e && e.string() === "stays", "live is untouched");
  const keys = await keysOf(b);
  check(keys.length === 1 && keys[0] === "live", `keys ${keys}`);

  const all = await b.purgeDeletes(0);
  check(all.purged === 1, `purgeDeletes(0) purged ${all.purged}`);
  si = await jsm.streams.info("KV_JSPD");
  check(si.state.messages === 1, `after purgeDeletes(0): ${si.state.messages} messages`);
  check(await b.destroy(), "bucket destroyed");
}

const SCENARIOS = [["kv_purge_deletes_older_than", kvPurgeDeletesOlderThan]];

async function run(url) {
  let passed = 0;
  let failed = 0;
  for (const [name, scenario] of SCENARIOS) {
    let nc;
    try {
      nc = await connect({ servers: url, name, timeout: 5000, reconnect: false });
      await within(SCENARIO_TIMEOUT, scenario(nc), "scenario");
      passed++;
      console.log(`ok ${name}`);
    } catch (e) {
      failed++;
      const reason = e instanceof AssertionFailed ? e.message : `${e.name}: ${e.message}`;
      console.log(`FAIL ${name}: ${reason}`);
      if (!(e instanceof AssertionFailed)) {
        console.error(e);
      }
    } finally {
      if (nc && !nc.isClosed()) {
        await within(5000, nc.close(), "close").catch(() => {});
      }
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0;
}

if (process.argv.length !== 3) {
  console.error(`usage: node ${process.argv[1]} nats://HOST:PORT`);
  process.exit(2);
}
const ok = await run(process.argv[2]);
process.exit(ok ? 0 : 1);
