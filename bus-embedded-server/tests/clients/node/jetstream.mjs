// nats.js v3 JetStream and KV (@nats-io/jetstream, @nats-io/kv), unchanged,
// against a NATS server with JetStream (the JavaScript twin of
// tests/compat_jetstream.rs and tests/clients/python/jetstream.py).
//
// Usage: node jetstream.mjs nats://127.0.0.1:PORT
//
// Scenarios: publish_ack (PubAck stream/seq, msgID duplicate, expected last
// sequence conflict), pull_fetch_ack (fetch, ackAck, nak redelivery, consumer
// info counters), consumer_info (pending, filter, list, delete), ordered_consume
// (ordered pull consumer replaying 2000 messages in order, then a live one),
// push_consume (durable push consumer with acks, and an ordered push consumer),
// kv (put/get/create/update conflicts, history, keys, delete, purge, watch with
// live updates), kv_ttl (a bucket with markerTTL: create with a TTL and purge
// with a TTL, the expiry seen by a watcher as a purge, the key created again),
// atomic_batch (startBatch/add/commit: one PubAck with batch and count; a
// stale expectation on the first message stores none of the batch; a stream
// without allow_atomic refuses it),
// kv_republish (a bucket created with `republish`: a plain subscriber to the
// republished subjects sees puts and deletes with the Nats-Stream/-Subject/
// -Sequence/-Last-Sequence headers and the KV operation),
// mirror_sources (a mirror and a filtered and a transformed source catch up
// and follow, with their lag and the Nats-Stream-Source header).
//
// Each scenario prints `ok <name>` or `FAIL <name>: <reason>`; the last line
// is `N passed, N failed` and the exit code is 0 only when every scenario
// passed. Every wait is bounded. Run by tests/compat_other_clients.rs against
// our server and against the reference nats-server.

import { MSG_TIMEOUT, AssertionFailed, check, within, nextOf, Conns } from "./lib.mjs";

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
const { jetstream, jetstreamManager, AckPolicy, JetStreamApiError } = js;
const { Kvm } = kvlib;

const SCENARIO_TIMEOUT = 30000;

async function expectApiError(promise, errCode, what) {
  try {
    await promise;
  } catch (e) {
    check(e instanceof JetStreamApiError, `${what}: ${e.name}: ${e.message}`);
    check(e.code === errCode, `${what}: err_code ${e.code}, expected ${errCode} (${e.message})`);
    return;
  }
  throw new AssertionFailed(`${what}: succeeded`);
}

async function publishAck(c) {
  const nc = await c.connect("js");
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "JS_PUB", subjects: ["jspub.>"] });
  const client = jetstream(nc);
  for (const expected of [1, 2, 3]) {
    const pa = await client.publish(`jspub.${expected}`, "x");
    check(pa.stream === "JS_PUB", `stream ${pa.stream}`);
    check(pa.seq === expected, `seq ${pa.seq}, expected ${expected}`);
    check(!pa.duplicate, "not a duplicate");
  }
  const first = await client.publish("jspub.d", "d", { msgID: "id-1" });
  const again = await client.publish("jspub.d", "d", { msgID: "id-1" });
  check(first.seq === 4 && again.seq === 4, `dedup seqs ${first.seq} ${again.seq}`);
  check(again.duplicate, "second publish flagged duplicate");
  await expectApiError(
    client.publish("jspub.e", "e", { expect: { lastSequence: 1 } }),
    10071,
    "expected last sequence 1",
  );
  const ok = await client.publish("jspub.e", "e", { expect: { lastSequence: 4 } });
  check(ok.seq === 5, `seq ${ok.seq}`);
  const si = await jsm.streams.info("JS_PUB");
  check(si.state.messages === 5, `messages ${si.state.messages}`);
}

async function pullFetchAck(c) {
  const nc = await c.connect("js");
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "JS_PULL", subjects: ["jspull"] });
  const client = jetstream(nc);
  for (let i = 0; i < 10; i++) {
    await client.publish("jspull", `${i}`);
  }
  await jsm.consumers.add("JS_PULL", { durable_name: "worker", ack_policy: AckPolicy.Explicit });
  const consumer = await client.consumers.get("JS_PULL", "worker");
  const got = [];
  for await (const m of await consumer.fetch({ max_messages: 4, expires: 2000 })) {
    got.push(m);
  }
  check(got.map((m) => m.string()).join(",") === "0,1,2,3", `first batch ${got.map((m) => m.string())}`);
  check(got[0].info.streamSequence === 1 && got[0].info.deliveryCount === 1, "delivery info");
  check(got[0].info.pending === 9, `pending ${got[0].info.pending}`);
  for (const m of got) {
    check(await within(MSG_TIMEOUT, m.ackAck(), "ackAck"), "ack confirmed");
  }
  let ci = await consumer.info();
  check(ci.num_ack_pending === 0, `num_ack_pending ${ci.num_ack_pending}`);
  check(ci.num_pending === 6, `num_pending ${ci.num_pending}`);
  check(ci.ack_floor.stream_seq === 4, `ack floor ${JSON.stringify(ci.ack_floor)}`);

  // More than is left: the fetch ends at its expiry with what is left.
  const rest = [];
  for await (const m of await consumer.fetch({ max_messages: 100, expires: 1000 })) {
    rest.push(m);
  }
  check(rest.length === 6, `rest ${rest.length}`);
  rest[0].nak();
  for (const m of rest.slice(1)) {
    await within(MSG_TIMEOUT, m.ackAck(), "ackAck");
  }
  const again = await within(MSG_TIMEOUT, consumer.next({ expires: 2000 }), "redelivery");
  check(again !== null, "nak'd message redelivered");
  check(again.info.streamSequence === 5 && again.info.deliveryCount === 2, `redelivery ${JSON.stringify(again.info)}`);
  await within(MSG_TIMEOUT, again.ackAck(), "ackAck");
  const none = await within(MSG_TIMEOUT, consumer.next({ expires: 1000 }), "empty next");
  check(none === null, "nothing left");
  ci = await consumer.info();
  check(ci.ack_floor.stream_seq === 10, `final ack floor ${JSON.stringify(ci.ack_floor)}`);
}

async function consumerInfo(c) {
  const nc = await c.connect("js");
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "JS_CI", subjects: ["jsci.>"] });
  const client = jetstream(nc);
  for (let i = 0; i < 3; i++) {
    await client.publish("jsci.a", `${i}`);
  }
  await client.publish("jsci.b", "b");
  const ci = await jsm.consumers.add("JS_CI", {
    durable_name: "a",
    ack_policy: AckPolicy.Explicit,
    filter_subject: "jsci.a",
  });
  check(ci.name === "a" && ci.stream_name === "JS_CI", `names ${ci.name} ${ci.stream_name}`);
  check(ci.num_pending === 3, `num_pending ${ci.num_pending}`);
  check(ci.config.filter_subject === "jsci.a", `filter ${ci.config.filter_subject}`);
  const listed = await jsm.consumers.list("JS_CI").next();
  check(listed.length === 1 && listed[0].name === "a", `list ${JSON.stringify(listed.map((i) => i.name))}`);
  check(await jsm.consumers.delete("JS_CI", "a"), "deleted");
  await expectApiError(jsm.consumers.info("JS_CI", "a"), 10014, "info of a deleted consumer");
  await expectApiError(jsm.streams.info("JS_NOPE"), 10059, "info of a missing stream");
}

async function orderedConsume(c) {
  const nc = await c.connect("js");
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "JS_ORD", subjects: ["jsord.*"] });
  const client = jetstream(nc);
  const n = 2000;
  const acks = [];
  for (let i = 0; i < n; i++) {
    acks.push(client.publish("jsord.a", `${i}`));
  }
  await within(MSG_TIMEOUT * 2, Promise.all(acks), "publish acks");
  await client.publish("jsord.b", "other subject");
  const ordered = await client.consumers.get("JS_ORD", { filter_subjects: ["jsord.a"] });
  const msgs = await ordered.consume();
  const it = msgs[Symbol.asyncIterator]();
  for (let i = 0; i < n; i++) {
    const m = await nextOf(it, `ordered message ${i}`);
    check(m.string() === `${i}`, `message ${i}: ${m.string()}`);
    check(m.info.streamSequence === i + 1, `seq ${m.info.streamSequence}`);
  }
  await client.publish("jsord.a", "live");
  const m = await nextOf(it, "live message");
  check(m.string() === "live", `live ${m.string()}`);
  // close() waits for the iterator to be consumed to its end: just stop.
  msgs.stop();
  return `${n} in order`;
}

async function pushConsume(c) {
  const nc = await c.connect("js");
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "JS_PUSH", subjects: ["jspush"] });
  const client = jetstream(nc);
  for (let i = 0; i < 20; i++) {
    await client.publish("jspush", `${i}`);
  }
  await jsm.consumers.add("JS_PUSH", {
    durable_name: "pusher",
    deliver_subject: nc.options.inboxPrefix ? `${nc.options.inboxPrefix}.push` : "push.deliver.js",
    ack_policy: AckPolicy.Explicit,
  });
  const consumer = await client.consumers.getPushConsumer("JS_PUSH", "pusher");
  const msgs = await consumer.consume();
  const it = msgs[Symbol.asyncIterator]();
  for (let i = 0; i < 20; i++) {
    const m = await nextOf(it, `push message ${i}`);
    check(m.string() === `${i}`, `message ${i}: ${m.string()}`);
    await within(MSG_TIMEOUT, m.ackAck(), "ackAck");
  }
  await client.publish("jspush", "live");
  const live = await nextOf(it, "live push message");
  check(live.string() === "live", `live ${live.string()}`);
  await within(MSG_TIMEOUT, live.ackAck(), "ackAck");
  const ci = await jsm.consumers.info("JS_PUSH", "pusher");
  check(ci.ack_floor.stream_seq === 21, `ack floor ${JSON.stringify(ci.ack_floor)}`);
  msgs.stop();

  // An ordered push consumer.
  const ordered = await client.consumers.getPushConsumer("JS_PUSH");
  const omsgs = await ordered.consume();
  const oit = omsgs[Symbol.asyncIterator]();
  for (let i = 0; i < 20; i++) {
    const m = await nextOf(oit, `ordered push message ${i}`);
    check(m.string() === `${i}`, `ordered push ${i}: ${m.string()}`);
  }
  const m = await nextOf(oit, "ordered push live");
  check(m.string() === "live", `ordered push live ${m.string()}`);
  omsgs.stop();
}

async function kv(c) {
  const nc = await c.connect("js");
  const kvm = new Kvm(nc);
  const b = await kvm.create("JSKV", { history: 5 });
  const r1 = await b.put("color", "red");
  check(r1 === 1, `revision ${r1}`);
  let e = await b.get("color");
  check(e !== null && e.string() === "red" && e.revision === 1, `get ${e && e.string()}`);
  check((await b.get("missing")) === null, "missing key");
  let failed = false;
  try {
    await b.create("color", "green");
  } catch {
    failed = true;
  }
  check(failed, "create over an existing key succeeded");
  const r2 = await b.update("color", "blue", r1);
  check(r2 === 2, `update revision ${r2}`);
  failed = false;
  try {
    await b.update("color", "pink", r1);
  } catch {
    failed = true;
  }
  check(failed, "update at a stale revision succeeded");
  await b.put("size", "L");

  const hist = [];
  for await (const h of await b.history({ key: "color" })) {
    hist.push(h.string());
  }
  check(hist.join(",") === "red,blue", `history ${hist}`);
  const keys = [];
  for await (const k of await b.keys()) {
    keys.push(k);
  }
  check(keys.sort().join(",") === "color,size", `keys ${keys}`);

  const w = await b.watch({ key: ">" });
  const wit = w[Symbol.asyncIterator]();
  const initial = [];
  for (let i = 0; i < 2; i++) {
    const x = await nextOf(wit, "initial watch entry");
    initial.push(`${x.key}=${x.string()}`);
  }
  check(initial.sort().join(",") === "color=blue,size=L", `initial ${initial}`);
  await b.put("color", "black");
  await b.delete("size");
  let x = await nextOf(wit, "live put");
  check(x.key === "color" && x.string() === "black" && x.operation === "PUT", `live put ${x.key} ${x.operation}`);
  x = await nextOf(wit, "live delete");
  check(x.key === "size" && x.operation === "DEL", `live delete ${x.key} ${x.operation}`);
  w.stop();

  e = await b.get("size");
  check(e === null || e.operation === "DEL", "deleted key reads as deleted");
  await b.purge("color");
  const after = [];
  for await (const h of await b.history({ key: "color" })) {
    after.push(h.operation);
  }
  check(after.join(",") === "PURGE", `history after purge ${after}`);
  const status = await b.status();
  check(status.bucket === "JSKV" && status.history === 5, `status ${status.bucket} ${status.history}`);
  check(await b.destroy(), "bucket destroyed");
}

async function kvTtl(c) {
  const nc = await c.connect("js");
  const kvm = new Kvm(nc);
  const b = await kvm.create("JSKVTTL", { history: 1, markerTTL: 2000 });
  const w = await b.watch({ key: ">" });
  const wit = w[Symbol.asyncIterator]();
  await b.create("short", "v", "1s");
  await b.put("gone", "v");
  const seen = [];
  const next = async () => {
    const x = await nextOf(wit, `watch entry after ${seen}`);
    seen.push(`${x.key}:${x.operation}`);
  };
  // Seen before the purge, which would otherwise roll it up first.
  await next();
  await next();
  await b.purge("gone", { ttl: "1s" });
  await next();
  await next();
  // The TTL marker of "short" comes about a second after its create.
  check(
    seen.join(",") === "short:PUT,gone:PUT,gone:PURGE,short:PURGE",
    `watched ${seen}`,
  );
  w.stop();
  const e = await b.get("short");
  check(e === null || e.operation === "PURGE", `expired key reads as ${e && e.operation}`);
  const rev = await b.create("short", "again");
  check(rev === 5, `created again at revision ${rev}`);
  check(await b.destroy(), "bucket destroyed");
}

async function atomicBatch(c) {
  const nc = await c.connect("js");
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "JS_BATCH", subjects: ["jsbatch.>"], allow_atomic: true });
  await jsm.streams.add({ name: "JS_NOBATCH", subjects: ["jsnobatch.>"] });
  const client = jetstream(nc);
  // An aggregate's three events, stored together under one PubAck.
  const b = await client.startBatch("jsbatch.player.Joined", "1");
  b.add("jsbatch.player.Scored", "2");
  const ack = await b.commit("jsbatch.player.Left", "3");
  check(ack.stream === "JS_BATCH" && ack.seq === 3, `commit ack ${JSON.stringify(ack)}`);
  check(ack.count === 3 && ack.batch === b.id, `batch ${ack.batch} (${b.id}), count ${ack.count}`);
  // A stale expectation on the first message refuses the whole batch:
  // none of its messages is stored.
  const stale = await client.startBatch("jsbatch.player.Joined", "4", {
    expect: { lastSequence: 1 },
  });
  stale.add("jsbatch.player.Scored", "5");
  let refused = false;
  await stale.commit("jsbatch.player.Left", "6").catch(() => {
    refused = true;
  });
  check(refused, "a batch with a stale expectation was committed");
  let si = await jsm.streams.info("JS_BATCH");
  check(si.state.messages === 3 && si.state.last_seq === 3, `after the refusal ${si.state.messages} msgs`);
  // The expectation met: stored.
  const fresh = await client.startBatch("jsbatch.player.Joined", "7", {
    expect: { lastSequence: 3 },
  });
  const ok = await fresh.commit("jsbatch.player.Left", "8");
  check(ok.seq === 5 && ok.count === 2, `second batch ${JSON.stringify(ok)}`);
  const subjects = [];
  for (let seq = 1; seq <= 5; seq++) {
    subjects.push((await jsm.streams.getMessage("JS_BATCH", { seq })).subject.split(".")[2]);
  }
  check(subjects.join(",") === "Joined,Scored,Left,Joined,Left", `stored ${subjects}`);
  // A stream without allow_atomic refuses a batch.
  await expectApiError(client.startBatch("jsnobatch.x", "a"), 10174, "batch on a stream without allow_atomic");
  si = await jsm.streams.info("JS_NOBATCH");
  check(si.state.messages === 0, `stream without allow_atomic has ${si.state.messages}`);
}

async function kvRepublish(c) {
  const nc = await c.connect("js");
  const kvm = new Kvm(nc);
  const b = await kvm.create("JSKVRP", {
    history: 3,
    republish: { src: "$KV.JSKVRP.>", dest: "mirror.JSKVRP.>" },
  });
  const status = await b.status();
  check(status.republish?.dest === "mirror.JSKVRP.>", `status republish ${JSON.stringify(status.republish)}`);
  const sub = nc.subscribe("mirror.JSKVRP.>");
  const it = sub[Symbol.asyncIterator]();
  await nc.flush();
  await b.put("a", "one");
  await b.put("a", "two");
  await b.delete("a");
  const got = [];
  for (let i = 0; i < 3; i++) {
    const m = await nextOf(it, `republished copy ${i}`);
    const h = m.headers;
    check(h && h.get("Nats-Time-Stamp"), `no Nats-Time-Stamp on ${m.subject}`);
    got.push(
      [
        m.subject,
        m.string(),
        h.get("Nats-Stream"),
        h.get("Nats-Subject"),
        h.get("Nats-Sequence"),
        h.get("Nats-Last-Sequence"),
        h.get("KV-Operation"),
      ].join("|"),
    );
  }
  const want = [
    "mirror.JSKVRP.a|one|KV_JSKVRP|$KV.JSKVRP.a|1|0|",
    "mirror.JSKVRP.a|two|KV_JSKVRP|$KV.JSKVRP.a|2|1|",
    "mirror.JSKVRP.a||KV_JSKVRP|$KV.JSKVRP.a|3|2|DEL",
  ];
  check(JSON.stringify(got) === JSON.stringify(want), `republished ${JSON.stringify(got)}`);
  sub.unsubscribe();
  check(await b.destroy(), "bucket destroyed");
}

async function waitMessages(jsm, name, n) {
  let si;
  for (let i = 0; i < 200; i++) {
    si = await jsm.streams.info(name);
    if (si.state.messages === n) {
      return si;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new AssertionFailed(`${name} holds ${si.state.messages} messages, not ${n}`);
}

async function mirrorSources(c) {
  const nc = await c.connect("js");
  const jsm = await jetstreamManager(nc);
  const client = jetstream(nc);
  await jsm.streams.add({ name: "JS_ORIG", subjects: ["jsorig.>"] });
  for (const [subject, body] of [["jsorig.a", "1"], ["jsorig.b", "2"], ["jsorig.a", "3"]]) {
    await client.publish(subject, body);
  }
  await jsm.streams.add({ name: "JS_MIRROR", mirror: { name: "JS_ORIG" } });
  await jsm.streams.add({
    name: "JS_SRC",
    sources: [
      { name: "JS_ORIG", filter_subject: "jsorig.a" },
      { name: "JS_ORIG", subject_transforms: [{ src: "jsorig.b", dest: "jst.b" }] },
    ],
  });
  let si = await waitMessages(jsm, "JS_MIRROR", 3);
  check(si.mirror && si.mirror.name === "JS_ORIG", `mirror info ${JSON.stringify(si.mirror)}`);
  await waitMessages(jsm, "JS_SRC", 3);
  await client.publish("jsorig.b", "4");
  si = await waitMessages(jsm, "JS_MIRROR", 4);
  check(si.mirror.lag === 0, `mirror lag ${si.mirror.lag}`);
  const m = await jsm.streams.getMessage("JS_MIRROR", { seq: 4 });
  check(m.subject === "jsorig.b" && m.string() === "4", `mirrored ${m.subject} ${m.string()}`);
  si = await waitMessages(jsm, "JS_SRC", 4);
  check(
    si.sources.length === 2 && si.sources.every((s) => s.lag === 0),
    `sources ${JSON.stringify(si.sources)}`,
  );
  const got = [];
  for (let seq = 1; seq <= 4; seq++) {
    const sm = await jsm.streams.getMessage("JS_SRC", { seq });
    const src = sm.header.get("Nats-Stream-Source");
    check(src.startsWith("JS_ORIG "), `source header ${src}`);
    got.push(`${sm.subject}=${sm.string()}`);
  }
  got.sort();
  check(
    JSON.stringify(got) === JSON.stringify(["jsorig.a=1", "jsorig.a=3", "jst.b=2", "jst.b=4"]),
    `sourced ${got}`,
  );
  for (const name of ["JS_SRC", "JS_MIRROR", "JS_ORIG"]) {
    await jsm.streams.delete(name);
  }
}

const SCENARIOS = [
  ["publish_ack", publishAck],
  ["pull_fetch_ack", pullFetchAck],
  ["consumer_info", consumerInfo],
  ["ordered_consume", orderedConsume],
  ["push_consume", pushConsume],
  ["kv", kv],
  ["kv_ttl", kvTtl],
  ["atomic_batch", atomicBatch],
  ["kv_republish", kvRepublish],
  ["mirror_sources", mirrorSources],
];

async function run(url) {
  let passed = 0;
  let failed = 0;
  for (const [name, scenario] of SCENARIOS) {
    const c = new Conns(url);
    try {
      const note = await within(SCENARIO_TIMEOUT, scenario(c), "scenario");
      check(c.errors.length === 0, `asynchronous errors: ${c.errors.join("; ")}`);
      passed++;
      console.log(`ok ${name}${note ? ` (${note})` : ""}`);
    } catch (e) {
      failed++;
      let reason = e instanceof AssertionFailed ? e.message : `${e.name}: ${e.message}`;
      if (c.errors.length && !reason.includes("asynchronous errors")) {
        reason += ` (asynchronous errors: ${c.errors.join("; ")})`;
      }
      console.log(`FAIL ${name}: ${reason}`);
      if (!(e instanceof AssertionFailed)) {
        console.error(e);
      }
    } finally {
      await c.close();
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
