// Helpers shared by the nats.js scripts (jetstream.mjs, fast_ingest.mjs,
// kv_purge_deletes.mjs): assertions, bounded waits and a set of
// connections closed together. Imports nothing at load time, so each script
// still reports a missing nats.js itself.

/** Bound on one message or reply, in ms. */
export const MSG_TIMEOUT = 5000;

/** A scenario's own failure (not a crash of the script). */
export class AssertionFailed extends Error {}

export function check(cond, msg) {
  if (!cond) {
    throw new AssertionFailed(msg);
  }
}

/** `promise`, or an AssertionFailed naming `what` after `ms`. */
export async function within(ms, promise, what) {
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
export async function nextOf(it, what) {
  const r = await within(MSG_TIMEOUT, it.next(), what);
  check(!r.done, `${what}: iterator ended`);
  return r.value;
}

/** Connections of one scenario, with the errors their status reported. */
export class Conns {
  constructor(url) {
    this.url = url;
    this.conns = [];
    this.errors = [];
  }

  async connect(name) {
    const { connect } = await import("@nats-io/transport-node");
    const nc = await connect({ servers: this.url, name, timeout: 5000, reconnect: false });
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

  async close() {
    for (const nc of this.conns) {
      if (!nc.isClosed()) {
        await within(5000, nc.close(), "close").catch(() => {});
      }
    }
  }
}
