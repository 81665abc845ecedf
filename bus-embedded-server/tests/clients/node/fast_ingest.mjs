// nats.js v3 fast-ingest batch publishing (`startFastIngest` of
// @nats-io/jetstream/internal, ADR-50 "fast batch", nats-server 2.14+),
// unchanged, against a NATS server with JetStream.
//
// Usage: node fast_ingest.mjs nats://127.0.0.1:PORT
//
// Scenarios: fast_ingest_last (500 messages through flow control, the batch
// committed with last(): every message stored in order, the terminal ack's
// batch/count/seq), fast_ingest_end (end() commits without storing, ping
// reports progress), fast_ingest_refused (a stream without allow_batched:
// the start is refused with 10205), fast_ingest_two_batches (two batches at
// once on one stream, both complete).
//
// Each scenario prints `ok <name>` or `FAIL <name>: <reason>`; the last line
// is `N passed, N failed` and the exit code is 0 only when every scenario
// passed. Every wait is bounded. Run by tests/compat_other_clients.rs against
// our server and against the reference nats-server.

import { AssertionFailed, check, within } from "./lib.mjs";

let nats;
let js;
let jsInternal;
try {
  nats = await import("@nats-io/transport-node");
  js = await import("@nats-io/jetstream");
  jsInternal = await import("@nats-io/jetstream/internal");
} catch (e) {
  // The Rust test looks for this marker.
  console.error(
    `nats.js (@nats-io/transport-node, @nats-io/jetstream) is not installed ` +
      `(${e.message}); run \`bash scripts/test.sh\`, which runs \`npm ci\` in ` +
      "bus-embedded-server/tests/clients/node",
  );
  process.exit(3);
}
const { connect } = nats;
const { jetstreamManager } = js;
const { startFastIngest } = jsInternal;

const SCENARIO_TIMEOUT = 30000;

async function fastStream(nc, name, subjects, allowBatched = true) {
  const jsm = await jetstreamManager(nc);
  const cfg = { name, subjects };
  if (allowBatched) {
    cfg.allow_batched = true;
  }
  const si = await jsm.streams.add(cfg);
  check(
    !!si.config.allow_batched === allowBatched,
    `stream config allow_batched ${si.config.allow_batched}, asked ${allowBatched}`,
  );
  return jsm;
}

/** The stream's messages 1..n, in order, as strings. */
async function bodies(jsm, stream, n) {
  const out = [];
  for (let seq = 1; seq <= n; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    out.push(m ? m.string() : null);
  }
  return out;
}

async function fastIngestLast(nc) {
  const jsm = await fastStream(nc, "FI_LAST", ["fil.>"]);
  const n = 500;
  const fi = await startFastIngest(nc, "fil.a", "m1", { ackInterval: 50, allowGaps: false });
  let lastProgress;
  for (let i = 2; i < n; i++) {
    lastProgress = await fi.add("fil.a", `m${i}`);
    check(lastProgress.batchSeq === i, `batchSeq ${lastProgress.batchSeq}, expected ${i}`);
  }
  check(lastProgress.ackSeq > 0, `flow acks came back (ackSeq ${lastProgress.ackSeq})`);
  const ack = await fi.last("fil.b", `m${n}`);
  check(ack.batch === fi.batch, `ack batch ${ack.batch}, expected ${fi.batch}`);
  check(ack.count === n, `ack count ${ack.count}, expected ${n}`);
  check(ack.seq === n, `ack seq ${ack.seq}, expected ${n}`);
  check(ack.stream === "FI_LAST", `ack stream ${ack.stream}`);
  const si = await jsm.streams.info("FI_LAST");
  check(si.state.messages === n, `stream holds ${si.state.messages}, expected ${n}`);
  const got = await bodies(jsm, "FI_LAST", n);
  for (let i = 0; i < n; i++) {
    check(got[i] === `m${i + 1}`, `message ${i + 1} is ${got[i]}`);
  }
  const done = await fi.done();
  check(done.count === n, `done() count ${done.count}`);
  return `${n} messages, last flow ack at ${lastProgress.ackSeq}`;
}

async function fastIngestEnd(nc) {
  const jsm = await fastStream(nc, "FI_END", ["fie.>"]);
  const fi = await startFastIngest(nc, "fie.a", "first", { ackInterval: 4, allowGaps: true });
  for (let i = 2; i <= 20; i++) {
    await fi.add("fie.a", `m${i}`);
  }
  const p = await fi.ping();
  check(p.batchSeq === 20, `ping batchSeq ${p.batchSeq}`);
  check(p.ackSeq > 0 && p.ackSeq <= 20, `ping ackSeq ${p.ackSeq}`);
  const ack = await fi.end();
  check(ack.count === 20, `end() count ${ack.count}, expected 20`);
  check(ack.seq === 20, `end() seq ${ack.seq}, expected 20 (the last stored message)`);
  const si = await jsm.streams.info("FI_END");
  check(si.state.messages === 20, `end() stored nothing more: ${si.state.messages}`);
}

async function fastIngestRefused(nc) {
  await fastStream(nc, "FI_NO", ["fin.>"], false);
  try {
    await startFastIngest(nc, "fin.a", "x", { ackInterval: 10, allowGaps: false });
  } catch (e) {
    const code = e.code ?? e.apiError?.()?.err_code ?? e.api_error?.err_code;
    check(
      code === 10205 || `${e.message}`.includes("batch publish is disabled"),
      `refusal ${e.name}: ${e.message} (code ${code})`,
    );
    return;
  }
  throw new AssertionFailed("a fast batch on a stream without allow_batched was accepted");
}

async function fastIngestTwoBatches(nc) {
  const jsm = await fastStream(nc, "FI_TWO", ["fit.>"]);
  const run = async (name) => {
    const fi = await startFastIngest(nc, `fit.${name}`, `${name}1`, {
      ackInterval: 20,
      allowGaps: false,
    });
    for (let i = 2; i <= 100; i++) {
      await fi.add(`fit.${name}`, `${name}${i}`);
    }
    return fi.end();
  };
  const [a, b] = await Promise.all([run("a"), run("b")]);
  check(a.count === 100 && b.count === 100, `counts ${a.count} ${b.count}`);
  const si = await jsm.streams.info("FI_TWO", { subjects_filter: ">" });
  check(si.state.messages === 200, `stream holds ${si.state.messages}`);
  check(
    si.state.subjects["fit.a"] === 100 && si.state.subjects["fit.b"] === 100,
    `per subject ${JSON.stringify(si.state.subjects)}`,
  );
}

const SCENARIOS = [
  ["fast_ingest_last", fastIngestLast],
  ["fast_ingest_end", fastIngestEnd],
  ["fast_ingest_refused", fastIngestRefused],
  ["fast_ingest_two_batches", fastIngestTwoBatches],
];

async function run(url) {
  let passed = 0;
  let failed = 0;
  for (const [name, scenario] of SCENARIOS) {
    let nc;
    try {
      nc = await connect({ servers: url, name, timeout: 5000, reconnect: false });
      const note = await within(SCENARIO_TIMEOUT, scenario(nc), "scenario");
      passed++;
      console.log(`ok ${name}${note ? ` (${note})` : ""}`);
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
