// nats.js v3 over WebSocket (`wsconnect` from @nats-io/nats-core), unchanged,
// against a NATS server with a `websocket {}` listener and JetStream.
// Node before 22 has no global WebSocket: the `ws` package stands in.
//
// Usage: node websocket.mjs ws://127.0.0.1:WSPORT nats://127.0.0.1:PORT
//
// With NATS_WS_COMPRESSION=on (the server's `websocket { compression: true }`)
// every WebSocket must have negotiated permessage-deflate (the `ws`
// package offers it; its `extensions` property names what the server
// granted, with the parameters on the extension), and a big_text scenario moves 1 MiB of compressible text each
// way (the server needs `max_payload` above 1 MiB: a compressed message
// may not inflate beyond it). Without it, no WebSocket may have it.
//
// Scenarios: pub_sub (WebSocket subscriber and publisher, a TCP client on
// the same subjects both ways, a 200 KB payload, headers), request_reply
// (WebSocket requester, TCP responder, and the reverse; no responders),
// jetstream (stream over WebSocket, publish acks with a duplicate msgID,
// a durable pull consumer fetched and acked, consumer info counters).
//
// Each scenario prints `ok <name>` or `FAIL <name>: <reason>`; the last line
// is `N passed, N failed` and the exit code is 0 only when every scenario
// passed. Every wait is bounded. Run by tests/compat_other_clients.rs against
// our server and against the reference nats-server.

const SOCKETS = [];
const COMPRESSION = process.env.NATS_WS_COMPRESSION === "on";
let core;
let tcp;
let js;
try {
  core = await import("@nats-io/nats-core");
  tcp = await import("@nats-io/transport-node");
  js = await import("@nats-io/jetstream");
  // Always the `ws` package (Node 22's own WebSocket hides the
  // negotiated extensions), recording each socket to check them.
  const Ws = (await import("ws")).WebSocket;
  globalThis.WebSocket = class RecordedWebSocket extends Ws {
    constructor(...args) {
      super(...args);
      SOCKETS.push(this);
    }
  };
} catch (e) {
  // The Rust test looks for this marker.
  console.error(
    `nats.js (@nats-io/nats-core, @nats-io/transport-node, @nats-io/jetstream, ws) is not ` +
      `installed (${e.message}); run \`bash scripts/test.sh\`, which runs \`npm ci\` in ` +
      "bus-embedded-server/tests/clients/node",
  );
  process.exit(3);
}
const { wsconnect, headers: makeHeaders } = core;
const { jetstream, jetstreamManager, AckPolicy } = js;

const MSG_TIMEOUT = 5000;
const SCENARIO_TIMEOUT = 30000;

class AssertionFailed extends Error {}

function check(cond, msg) {
  if (!cond) {
    throw new AssertionFailed(msg);
  }
}

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

/** The next value of an async iterator, bounded. */
async function nextOf(it, what) {
  const r = await within(MSG_TIMEOUT, it.next(), what);
  check(!r.done, `${what}: iterator ended`);
  return r.value;
}

class Conns {
  constructor(wsUrl, natsUrl) {
    this.wsUrl = wsUrl;
    this.natsUrl = natsUrl;
    this.conns = [];
    this.errors = [];
  }

  watch(nc, name) {
    this.conns.push(nc);
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === "error" || s.type === "disconnect" || s.type === "slowConsumer") {
          this.errors.push(`${name}: ${s.type}`);
        }
      }
    })().catch((e) => this.errors.push(`${name}: status iterator: ${e}`));
    return nc;
  }

  async ws(name) {
    const nc = await wsconnect({ servers: this.wsUrl, name, timeout: 5000, reconnect: false });
    return this.watch(nc, name);
  }

  async tcp(name) {
    const nc = await tcp.connect({ servers: this.natsUrl, name, timeout: 5000, reconnect: false });
    return this.watch(nc, name);
  }

  async close() {
    for (const nc of this.conns) {
      if (!nc.isClosed()) {
        await within(5000, nc.close(), "close").catch(() => {});
      }
    }
  }
}

async function pubSub(c) {
  const ws = await c.ws("ws");
  const nc = await c.tcp("tcp");
  const wsSub = ws.subscribe("wsjs.>");
  const tcpSub = nc.subscribe("wsjs.>");
  await ws.flush();
  await nc.flush();
  ws.publish("wsjs.a", "from ws");
  nc.publish("wsjs.b", "from tcp");
  await ws.flush();
  await nc.flush();
  const wsIt = wsSub[Symbol.asyncIterator]();
  const tcpIt = tcpSub[Symbol.asyncIterator]();
  for (const [it, who] of [
    [wsIt, "ws subscriber"],
    [tcpIt, "tcp subscriber"],
  ]) {
    const got = [];
    for (let i = 0; i < 2; i++) {
      const m = await nextOf(it, who);
      got.push(`${m.subject}=${m.string()}`);
    }
    got.sort();
    check(
      got.join(",") === "wsjs.a=from ws,wsjs.b=from tcp",
      `${who} got ${got.join(",")}`,
    );
  }
  const big = new Uint8Array(200 * 1024);
  for (let i = 0; i < big.length; i++) {
    big[i] = i % 251;
  }
  const h = makeHeaders();
  h.set("X-Test", "over-ws");
  ws.publish("wsjs.big", big, { headers: h });
  const m = await nextOf(tcpIt, "big message");
  check(m.data.length === big.length, `big payload ${m.data.length} bytes`);
  check(
    m.data.every((b, i) => b === big[i]),
    "big payload bytes differ",
  );
  check(m.headers?.get("X-Test") === "over-ws", `header ${m.headers?.get("X-Test")}`);
  await nextOf(wsIt, "big message to the ws subscriber");
}

async function requestReply(c) {
  const ws = await c.ws("ws");
  const nc = await c.tcp("tcp");
  const tcpService = nc.subscribe("wsjs.svc.tcp");
  (async () => {
    for await (const m of tcpService) {
      m.respond(`tcp: ${m.string()}`);
    }
  })().catch(() => {});
  const wsService = ws.subscribe("wsjs.svc.ws");
  (async () => {
    for await (const m of wsService) {
      m.respond(`ws: ${m.string()}`);
    }
  })().catch(() => {});
  await nc.flush();
  await ws.flush();
  const a = await within(MSG_TIMEOUT, ws.request("wsjs.svc.tcp", "hi", { timeout: 3000 }), "ws->tcp");
  check(a.string() === "tcp: hi", `ws->tcp answer ${a.string()}`);
  const b = await within(MSG_TIMEOUT, nc.request("wsjs.svc.ws", "yo", { timeout: 3000 }), "tcp->ws");
  check(b.string() === "ws: yo", `tcp->ws answer ${b.string()}`);
  try {
    await ws.request("wsjs.nobody", "x", { timeout: 3000 });
    throw new AssertionFailed("request without responders succeeded");
  } catch (e) {
    if (e instanceof AssertionFailed) {
      throw e;
    }
    const text = `${e.name} ${e.message} ${e.cause?.name ?? ""} ${e.cause?.message ?? ""}`;
    check(/no responders/i.test(text), `no responders error, got ${text}`);
  }
}

async function jetStream(c) {
  const ws = await c.ws("ws-js");
  const jsm = await jetstreamManager(ws);
  await jsm.streams.add({ name: "WSJS", subjects: ["wsjs.orders.>"] });
  const client = jetstream(ws);
  for (const expected of [1, 2, 3]) {
    const pa = await client.publish(`wsjs.orders.${expected}`, `order ${expected}`);
    check(pa.stream === "WSJS" && pa.seq === expected, `puback ${pa.stream} ${pa.seq}`);
  }
  const first = await client.publish("wsjs.orders.d", "d", { msgID: "m-1" });
  const again = await client.publish("wsjs.orders.d", "d", { msgID: "m-1" });
  check(first.seq === 4 && again.seq === 4 && again.duplicate, "msgID deduplicated");
  await jsm.consumers.add("WSJS", { durable_name: "worker", ack_policy: AckPolicy.Explicit });
  const consumer = await client.consumers.get("WSJS", "worker");
  const iter = await consumer.fetch({ max_messages: 4, expires: 2000 });
  const got = [];
  for await (const m of iter) {
    got.push(m.string());
    check(await m.ackAck(), `ack of ${m.seq} confirmed`);
  }
  check(
    got.join(",") === "order 1,order 2,order 3,d",
    `fetched ${got.join(",")}`,
  );
  const ci = await jsm.consumers.info("WSJS", "worker");
  check(ci.num_ack_pending === 0, `ack pending ${ci.num_ack_pending}`);
  check(ci.delivered.stream_seq === 4, `delivered ${ci.delivered.stream_seq}`);
  check(ci.num_pending === 0, `pending ${ci.num_pending}`);
}

/** 1 MiB of compressible text, WebSocket to TCP and TCP to WebSocket. */
async function bigText(c) {
  const ws = await c.ws("ws-big");
  const nc = await c.tcp("tcp-big");
  const line = "the quick brown fox jumps over the lazy dog 0123456789\n";
  const text = line.repeat(Math.ceil((1024 * 1024) / line.length)).slice(0, 1024 * 1024);
  const wsIt = ws.subscribe("wsjs.text.to-ws")[Symbol.asyncIterator]();
  const tcpIt = nc.subscribe("wsjs.text.to-tcp")[Symbol.asyncIterator]();
  await ws.flush();
  await nc.flush();
  ws.publish("wsjs.text.to-tcp", text);
  const a = await nextOf(tcpIt, "1 MiB from ws");
  check(a.string() === text, `tcp got ${a.data.length} bytes, not the text`);
  nc.publish("wsjs.text.to-ws", text);
  const b = await nextOf(wsIt, "1 MiB to ws");
  check(b.string() === text, `ws got ${b.data.length} bytes, not the text`);
}

const SCENARIOS = [
  ["pub_sub", pubSub],
  ["request_reply", requestReply],
  ["jetstream", jetStream],
  ...(COMPRESSION ? [["big_text", bigText]] : []),
];

/** Every WebSocket opened so far negotiated compression, or none did. */
function checkExtensions() {
  check(SOCKETS.length > 0, "no WebSocket was opened");
  for (const s of SOCKETS) {
    const ext = s.extensions;
    if (COMPRESSION) {
      // `extensions` names them; the accepted parameters are the
      // extension's own (ws keeps them on it).
      const params = s._extensions?.["permessage-deflate"]?.params ?? {};
      check(
        ext === "permessage-deflate" &&
          params.server_no_context_takeover === true &&
          params.client_no_context_takeover === true,
        `negotiated ${JSON.stringify(ext)} ${JSON.stringify(params)}, wanted ` +
          "permessage-deflate without context takeover",
      );
    } else {
      check(ext === "", `negotiated extensions ${JSON.stringify(ext)} without compression`);
    }
  }
}

async function run(wsUrl, natsUrl) {
  let passed = 0;
  let failed = 0;
  for (const [name, scenario] of SCENARIOS) {
    const c = new Conns(wsUrl, natsUrl);
    try {
      await within(SCENARIO_TIMEOUT, scenario(c), "scenario");
      checkExtensions();
      check(c.errors.length === 0, `asynchronous errors: ${c.errors.join("; ")}`);
      passed++;
      console.log(`ok ${name}`);
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

if (process.argv.length !== 4) {
  console.error(`usage: node ${process.argv[1]} ws://HOST:WSPORT nats://HOST:PORT`);
  process.exit(2);
}
const ok = await run(process.argv[2], process.argv[3]);
process.exit(ok ? 0 : 1);
