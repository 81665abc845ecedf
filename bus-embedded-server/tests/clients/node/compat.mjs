// nats.js v3 (@nats-io/transport-node), unchanged, against a NATS server: the
// core scenarios a real client depends on (the JavaScript twin of
// tests/compat_async_nats.rs and tests/clients/python/compat.py).
//
// Usage: node compat.mjs nats://127.0.0.1:PORT
//
// Each scenario prints `ok <name>` or `FAIL <name>: <reason>`; the last line
// is `N passed, N failed` and the exit code is 0 only when every scenario
// passed. Every wait is bounded. Run by tests/compat_other_clients.rs against
// our server and against the reference nats-server.

let nats;
try {
  nats = await import("@nats-io/transport-node");
} catch (e) {
  // The Rust test looks for this marker.
  console.error(
    `@nats-io/transport-node is not installed (${e.message}); run \`bash scripts/test.sh\`, ` +
      "which runs `npm ci` in bus-embedded-server/tests/clients/node",
  );
  process.exit(3);
}
const { connect, headers: newHeaders, createInbox, errors } = nats;

// Per wait for a message that must arrive.
const MSG_TIMEOUT = 5000;
// How long to wait to be sure a message does NOT arrive.
const QUIET = 300;
// Per scenario, all waits included.
const SCENARIO_TIMEOUT = 30000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function check(cond, msg) {
  if (!cond) {
    throw new AssertionFailed(msg);
  }
}

class AssertionFailed extends Error {}

/** Rejects after `ms` with `what`, unless `promise` settles first. */
async function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new AssertionFailed(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The connections of one scenario: closes them all at the end and records
 * every asynchronous error (e.g. a server -ERR) they report.
 */
class Conns {
  constructor(url) {
    this.url = url;
    this.conns = [];
    this.errors = [];
  }

  async connect(name, opts = {}) {
    const nc = await connect({
      servers: this.url,
      name,
      timeout: 5000,
      reconnect: false,
      ...opts,
    });
    this.conns.push(nc);
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === "error" || s.type === "disconnect" || s.type === "slowConsumer") {
          this.errors.push(`${name}: ${s.type} ${JSON.stringify(s, (_, v) => (v instanceof Error ? v.message : v))}`);
        }
      }
    })().catch((e) => this.errors.push(`${name}: status iterator: ${e}`));
    nc.closed().then((err) => {
      if (err) {
        this.errors.push(`${name}: closed with ${err}`);
      }
    });
    return nc;
  }

  async close() {
    for (const nc of this.conns) {
      if (!nc.isClosed()) {
        await within(5000, nc.close(), "close").catch(() => {});
      }
    }
  }
}

/** Collects a subscription's messages (through its callback). */
class Collector {
  constructor(nc, subject, opts = {}) {
    this.msgs = [];
    this.waiters = [];
    this.sub = nc.subscribe(subject, {
      ...opts,
      callback: (err, msg) => {
        if (err) {
          this.error = err;
        } else {
          this.msgs.push(msg);
        }
        this.waiters.forEach((w) => w());
      },
    });
  }

  /** Waits until at least `n` messages arrived. */
  async waitFor(n, what) {
    const deadline = Date.now() + MSG_TIMEOUT;
    while (this.msgs.length < n) {
      const left = deadline - Date.now();
      check(left > 0, `${what}: ${this.msgs.length} of ${n} messages within ${MSG_TIMEOUT} ms`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
      this.waiters = [];
    }
    return this.msgs;
  }

  /** Every message that arrives until the subscription is quiet for QUIET ms. */
  async quiet() {
    let seen = -1;
    while (seen !== this.msgs.length) {
      seen = this.msgs.length;
      await sleep(QUIET);
    }
    return this.msgs;
  }
}

/**
 * Waits until the server has processed everything `nc` sent so far: a
 * message to ourselves queues behind it. (nats.js's flush() would do, since
 * its PING goes out in order; this mirrors the Python script.)
 */
async function barrier(nc) {
  const inbox = createInbox();
  const c = new Collector(nc, inbox, { max: 1 });
  nc.publish(inbox, "barrier");
  await c.waitFor(1, `barrier message on ${inbox}`);
}

const text = (m) => m.string();

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async function pubsubWildcards(c) {
  const nc = await c.connect("wildcards");
  const exact = new Collector(nc, "a.b.c");
  const star = new Collector(nc, "a.*.c");
  const gt = new Collector(nc, "a.>");
  await barrier(nc);
  // a.b.c -> all three; a.x -> `>` only; a.b.c.d -> `>` only (`*` is one
  // token); a -> none (`a.>` needs at least one more token); b.b.c -> none.
  for (const [subject, payload] of [
    ["a.b.c", "one"],
    ["a.x", "two"],
    ["a.b.c.d", "three"],
    ["a", "four"],
    ["b.b.c", "five"],
  ]) {
    nc.publish(subject, payload);
  }
  await barrier(nc);
  const seen = async (col) => (await col.quiet()).map((m) => `${m.subject}=${text(m)}`).join(",");
  const gotExact = await seen(exact);
  const gotStar = await seen(star);
  const gotGt = await seen(gt);
  check(gotExact === "a.b.c=one", `a.b.c got ${gotExact}`);
  check(gotStar === "a.b.c=one", `a.*.c got ${gotStar}`);
  check(gotGt === "a.b.c=one,a.x=two,a.b.c.d=three", `a.> got ${gotGt} (in order)`);
}

async function queueGroup(c) {
  const nc = await c.connect("queue-members");
  const pub = await c.connect("queue-publisher");
  const members = [0, 1, 2].map(() => new Collector(nc, "work", { queue: "workers" }));
  const plain = new Collector(nc, "work");
  await barrier(nc);
  for (let i = 0; i < 30; i++) {
    pub.publish("work", String(i));
  }
  await barrier(pub);
  const perMember = [];
  for (const m of members) {
    perMember.push((await m.quiet()).map(text));
  }
  const everything = perMember.flat().map(Number).sort((a, b) => a - b);
  check(
    JSON.stringify(everything) === JSON.stringify([...Array(30).keys()]),
    `each of 30 messages to exactly one member; members got ${perMember.map((g) => g.length)}: ` +
      JSON.stringify(perMember),
  );
  const plainGot = await plain.quiet();
  check(plainGot.length === 30, `a plain subscriber on the same subject gets all 30, got ${plainGot.length}`);
  return `distribution ${perMember.map((g) => g.length).join("/")}`;
}

async function requestReply(c) {
  const responder = await c.connect("responder");
  const requester = await c.connect("requester");
  responder.subscribe("svc.echo", {
    callback: (err, msg) => {
      if (!err) {
        msg.respond(`pong:${msg.string()}`);
      }
    },
  });
  await barrier(responder);
  for (let i = 0; i < 3; i++) {
    const reply = await requester.request("svc.echo", `ping${i}`, { timeout: MSG_TIMEOUT });
    check(reply.string() === `pong:ping${i}`, `request ${i} answered with ${reply.string()}`);
  }
}

async function noResponders(c) {
  const nc = await c.connect("requester");
  const started = Date.now();
  let msg;
  try {
    msg = await nc.request("svc.nobody", "?", { timeout: MSG_TIMEOUT });
  } catch (e) {
    const elapsed = Date.now() - started;
    // nats.js v3 rejects with a RequestError whose cause is a NoRespondersError.
    const noResp = e instanceof errors.NoRespondersError ||
      e.cause instanceof errors.NoRespondersError ||
      (e instanceof errors.RequestError && e.isNoResponders());
    if (!noResp) {
      const timedOut = e instanceof errors.TimeoutError || e.cause instanceof errors.TimeoutError;
      throw new AssertionFailed(
        timedOut
          ? "request to a subject without subscribers timed out instead of failing with " +
            "NoRespondersError (no 503 status message from the server?)"
          : `request to a subject without subscribers failed with ${e.name}: ${e.message} ` +
            `(cause ${e.cause}), not NoRespondersError`,
      );
    }
    check(elapsed < MSG_TIMEOUT / 2, `no-responders took ${elapsed} ms (should be immediate)`);
    return `${e.name}(cause ${e.cause?.name}) after ${elapsed} ms`;
  }
  throw new AssertionFailed(`request to a subject without subscribers returned ${msg.string()}`);
}

async function headers(c) {
  const nc = await c.connect("headers");
  const col = new Collector(nc, "h");
  await barrier(nc);
  const h = newHeaders();
  h.set("Nats-Msg-Id", "abc");
  h.append("X-Multi", "1");
  h.append("X-Multi", "2");
  h.append("X-Multi", "3");
  h.set("X-Custom", "value with spaces");
  h.set("x-lower-case", "Mixed Case Value");
  nc.publish("h", "body", { headers: h });
  const only = newHeaders();
  only.set("Only", "headers");
  nc.publish("h", "", { headers: only });
  nc.publish("h", "no headers");
  const [withHdrs, onlyHdrs, plain] = await col.waitFor(3, "three messages on h");
  const dump = (hdrs) => JSON.stringify(hdrs ? [...hdrs] : null);
  check(dump(withHdrs.headers) === dump(h), `headers changed: sent ${dump(h)}, got ${dump(withHdrs.headers)}`);
  check(
    JSON.stringify(withHdrs.headers.values("X-Multi")) === '["1","2","3"]',
    `repeated key X-Multi got ${JSON.stringify(withHdrs.headers.values("X-Multi"))}`,
  );
  check(withHdrs.string() === "body", `payload changed: ${withHdrs.string()}`);
  check(dump(onlyHdrs.headers) === dump(only), `headers-only message has headers ${dump(onlyHdrs.headers)}`);
  check(onlyHdrs.data.length === 0, `headers-only message has payload ${onlyHdrs.string()}`);
  check(!plain.headers, `plain message got headers ${dump(plain.headers)}`);
  check(plain.string() === "no headers", `payload changed: ${plain.string()}`);
}

async function unsubscribeAfterN(c) {
  const nc = await c.connect("auto-unsub");
  const col = new Collector(nc, "m");
  col.sub.unsubscribe(2);
  // SUB, `UNSUB <sid> 2` and the PUBs go out in this order on one connection.
  for (let i = 0; i < 5; i++) {
    nc.publish("m", String(i));
  }
  await barrier(nc);
  // The barrier's message follows every MSG the server sent for the PUBs
  // before it, so inMsgs (minus the barrier's) counts what the server
  // delivered. The client drops messages beyond the limit itself, so this is
  // what proves that the server honoured `UNSUB <sid> 2`.
  let delivered = nc.stats().inMsgs - 1;
  check(delivered === 2, `server delivered ${delivered} messages after UNSUB with max 2`);
  const got = (await col.quiet()).map(text).join(",");
  check(got === "0,1", `subscription got ${got}`);
  await within(MSG_TIMEOUT, col.sub.closed, "subscription closes after 2 messages");
  check(col.sub.isClosed(), "subscription is closed");
  nc.publish("m", "later");
  await barrier(nc);
  delivered = nc.stats().inMsgs - 2;
  check(delivered === 2, `server delivered ${delivered} messages after the subscription ended`);
}

async function drain(c) {
  const nc = await c.connect("drainer");
  const pub = await c.connect("drain-publisher");
  // An iterator consumed slowly, so messages queue up in the client.
  const sub = nc.subscribe("d");
  const got = [];
  const consumer = (async () => {
    for await (const m of sub) {
      await sleep(10);
      got.push(Number(m.string()));
    }
  })();
  await barrier(nc);
  for (let i = 0; i < 50; i++) {
    pub.publish("d", String(i));
  }
  // The server has queued all 50 for the drainer before this returns.
  await barrier(pub);
  const pending = 50 - got.length;
  await within(20000, nc.drain(), "connection drain");
  await within(MSG_TIMEOUT, consumer, "the subscription's iterator ends after the drain");
  check(
    JSON.stringify(got) === JSON.stringify([...Array(50).keys()]),
    `drain delivered ${got.length} of 50 in order: ${got}`,
  );
  check(nc.isClosed(), "connection is closed after drain");
  const closedWith = await within(MSG_TIMEOUT, nc.closed(), "closed() resolves");
  check(!closedWith, `connection closed with error ${closedWith}`);
  // Messages published after the drain reach nobody and break nothing.
  pub.publish("d", "after");
  await barrier(pub);
  return `${pending} of 50 still pending when drain started`;
}

async function echoOff(c) {
  const quiet = await c.connect("no-echo", { noEcho: true });
  const other = await c.connect("other");
  const own = new Collector(quiet, "e");
  const theirs = new Collector(other, "e");
  await quiet.flush();
  await barrier(other);
  quiet.publish("e", "from quiet");
  const [m] = await theirs.waitFor(1, "the other connection gets the no-echo connection's message");
  check(m.string() === "from quiet", `other got ${m.string()}`);
  // Causally after the no-echo connection's PUB: had the server echoed it,
  // that MSG would reach `own` before this one.
  other.publish("e", "from other");
  const ownGot = (await own.waitFor(1, "the no-echo connection gets other connections' messages")).map(text);
  check(ownGot[0] === "from other", `the no-echo connection received its own message: ${ownGot}`);
  check(quiet.stats().inMsgs === 1, `the no-echo connection received ${quiet.stats().inMsgs} messages, not 1`);
  check((await own.quiet()).length === 1, "the no-echo connection got more messages");
}

const SCENARIOS = [
  ["pubsub_wildcards", pubsubWildcards],
  ["queue_group", queueGroup],
  ["request_reply", requestReply],
  ["no_responders", noResponders],
  ["headers", headers],
  ["unsubscribe_after_n", unsubscribeAfterN],
  ["drain", drain],
  ["echo_off", echoOff],
];

async function run(url) {
  let passed = 0;
  let failed = 0;
  for (const [name, scenario] of SCENARIOS) {
    const c = new Conns(url);
    try {
      const note = await within(SCENARIO_TIMEOUT, scenario(c), "scenario");
      // Let late status events (e.g. an -ERR) land before judging.
      await sleep(20);
      check(c.errors.length === 0, `asynchronous errors: ${c.errors.join("; ")}`);
      passed++;
      console.log(`ok ${name}${note ? ` (${note})` : ""}`);
    } catch (e) {
      failed++;
      let reason = e instanceof AssertionFailed ? e.message : `${e.name}: ${e.message}`;
      if (e.cause) {
        reason += ` (cause: ${e.cause})`;
      }
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
