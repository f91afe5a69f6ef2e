// crier.js in Node, with npm's ws as its WebSocket and Node's fetch: every transport alone
// (messages of several topics incl. binary, publish, resume after the network drops, gaps),
// giving up after maxFailures, probing past a WebSocket that hangs, remembering the transport,
// upgrading back to WebSocket without loss, and the relay (both ways of connecting).
//
// The "network" below wraps WebSocket and fetch so that a test can cut every connection of
// the client (and refuse new ones) while the hub keeps running and messages keep coming.
import WebSocket from "ws";
import { startServer, run, assert } from "./lib.mjs";
import { connect } from "../../clients/js/crier.js";

const ID = /^[0-9a-f]{8}:[1-9][0-9]*$/;
const show = (v) => { const s = String(JSON.stringify(v)); return s.length > 1500 ? s.slice(0, 1500) + "…" : s; };
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function network() {
  const net = { offline: false, ws: "ok", sockets: new Set(), hanging: [], opened: 0, fetches: 0, ctl: new AbortController() };
  // A WebSocket that never opens nor fails: what a black-holing proxy looks like.
  class Hanging {
    constructor() { this.readyState = 0; net.hanging.push(this); }
    send() { throw new Error("not open"); }
    close() { if (this.readyState !== 3) { this.readyState = 3; setTimeout(() => this.onclose?.({ code: 1006 })); } }
  }
  net.WebSocket = class extends WebSocket {
    constructor(url, protocols) {
      if (net.ws === "hang" && !net.offline) return new Hanging();
      // Refused: port 9 on loopback has no listener.
      super(net.offline || net.ws === "fail" ? "ws://127.0.0.1:9/" : url, protocols);
      net.opened++;
      net.sockets.add(this);
      this.addEventListener("close", () => net.sockets.delete(this));
    }
  };
  net.fetch = (url, init = {}) => {
    net.fetches++;
    if (net.offline) return Promise.reject(new TypeError("network offline"));
    const signal = init.signal ? AbortSignal.any([init.signal, net.ctl.signal]) : net.ctl.signal;
    return fetch(url, { ...init, signal });
  };
  // Cuts every connection the client has (WebSockets, streams, polls).
  net.drop = () => {
    net.ctl.abort();
    net.ctl = new AbortController();
    for (const s of net.sockets) s.terminate();
  };
  return net;
}

// Records what a client reports; until() waits for a condition on it, event-driven.
function recorder(c) {
  const log = { msgs: [], gaps: [], states: [], transports: [], errors: [], waiters: new Set() };
  const wake = () => { for (const w of log.waiters) w(); };
  log.onMessage = (m) => { log.msgs.push(m); wake(); };
  log.onGap = (g) => { log.gaps.push(g); wake(); };
  c.on("state", (s) => { log.states.push(s); wake(); });
  c.on("transport", (t) => { if (t) log.transports.push(t); wake(); });
  c.on("error", (e) => { log.errors.push(e); wake(); });
  log.data = (topic) => log.msgs.filter((m) => m.topic === topic).map((m) => m.data);
  log.until = (pred, what, ms = 10000) => new Promise((resolve, reject) => {
    const check = () => { if (pred(log)) { done(); resolve(); } };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timeout waiting for ${what}; state ${c.state}, transport ${c.transport}, msgs ${show(log.msgs.map((m) => [m.topic, typeof m.data === "string" ? m.data : [...m.data]]))}, gaps ${show(log.gaps)}, errors ${log.errors.map((e) => e.message)}`));
    }, ms);
    const done = () => { clearTimeout(timer); log.waiters.delete(check); };
    log.waiters.add(check);
    check();
  });
  return log;
}

const fast = { storage: false, backoff: { initial: 20, max: 200 }, probeDelay: 400 };

function assertNoDuplicates(log) {
  const seen = new Set();
  for (const m of log.msgs) {
    const k = `${m.topic} ${m.id}`;
    assert(!seen.has(k), `delivered twice: ${k}`);
    seen.add(k);
  }
}

// Ids of one topic strictly increase (within an epoch).
function assertOrdered(log, topic) {
  const seqs = log.msgs.filter((m) => m.topic === topic).map((m) => Number(m.id.split(":")[1]));
  assert(seqs.every((q, i) => i === 0 || q > seqs[i - 1]), `${topic} out of order: ${seqs}`);
}

async function transportAlone(name) {
  const s = await startServer();
  const net = network();
  const c = connect(s.url, { ...fast, transports: [name], WebSocket: net.WebSocket, fetch: net.fetch });
  const log = recorder(c);
  try {
    c.subscribe("news/a", log.onMessage, { onGap: log.onGap });
    c.subscribe("prices/*", log.onMessage, { onGap: log.onGap });
    c.subscribe("bin", log.onMessage, { onGap: log.onGap });
    const feed = "https://example.com/feed?a=1&b=%7E";  // a URL topic: percent-encoded in paths
    c.subscribe(feed, log.onMessage);
    await log.until(() => c.state === "open", "open");
    assert(c.transport === name && same(log.transports, [name]), `transport ${c.transport} ${log.transports}`);

    // Several topics (one through a pattern), an event name, binary; then publishes by the client.
    await s.publish("news/a", "a1");
    await s.publish("prices/x", "p1", { "Crier-Event": "quote" });
    await s.publish("bin", new Uint8Array([0, 255, 1, 2]), { "Content-Type": "application/octet-stream" });
    const own = await c.publish("news/a", "from the client", { event: "say" });
    assert(ID.test(own.id), `publish answer ${show(own)}`);
    const ownBin = await c.publish("bin", new Uint8Array([9, 8, 7]), { contentType: "image/x-test" });
    assert(ID.test(ownBin.id), `binary publish answer ${show(ownBin)}`);
    await c.publish("prices/y", { q: 1 });
    await s.publish(encodeURIComponent(feed), "f1");
    await log.until((l) => l.msgs.length >= 7, "7 messages");
    assert(same(log.data(feed), ["f1"]), show(log.data(feed)));
    const byTopic = (t) => log.msgs.filter((m) => m.topic === t);
    assert(same(log.data("news/a"), ["a1", "from the client"]), show(log.data("news/a")));
    assert(byTopic("news/a")[1].id === own.id && byTopic("news/a")[1].event === "say", show(byTopic("news/a")[1]));
    assert(byTopic("prices/x")[0].event === "quote" && byTopic("prices/x")[0].data === "p1", show(byTopic("prices/x")));
    assert(JSON.parse(byTopic("prices/y")[0].data).q === 1 && byTopic("prices/y")[0].contentType === "application/json",
      show(byTopic("prices/y")));
    const bins = byTopic("bin");
    assert(bins.every((m) => m.data instanceof Uint8Array), `binary data not bytes: ${show(bins)}`);
    assert(same(bins.map((m) => [...m.data]), [[0, 255, 1, 2], [9, 8, 7]]), show(bins.map((m) => [...m.data])));
    assert(bins[1].contentType === "image/x-test" && bins[1].id === ownBin.id, show(bins[1]));

    // A subscription added while open, then removed.
    const late = c.subscribe("late", log.onMessage);
    await late.ready;
    await s.publish("late", "l1");
    await log.until((l) => l.data("late").length === 1, "late message");
    late.unsubscribe();

    // The network drops; messages published meanwhile (a new topic under the pattern too)
    // arrive after the reconnect, in order, once each.
    net.offline = true;
    net.drop();
    await log.until(() => c.state === "reconnecting", "reconnecting");
    for (let i = 2; i <= 6; i++) await s.publish("news/a", `a${i}`);
    await s.publish("prices/z", "z1");
    await s.publish("bin", new Uint8Array([7, 7]), { "Content-Type": "application/octet-stream" });
    await s.publish("late", "l2");  // unsubscribed: must not arrive
    await s.publish(encodeURIComponent(feed), "f2");
    const refused = await c.publish(feed, "lost").then(() => null, (e) => e);  // the client is offline
    assert(refused && refused.code === "network", `publish while offline: ${refused && refused.code}`);
    net.offline = false;
    await log.until((l) => l.data("news/a").length >= 7 && l.data("prices/z").length >= 1 && l.data("bin").length >= 3,
      "the messages published while offline");
    await s.publish("news/a", "a7");
    await log.until((l) => l.data("news/a").length >= 8, "a7");
    assert(same(log.data("news/a"), ["a1", "from the client", "a2", "a3", "a4", "a5", "a6", "a7"]), show(log.data("news/a")));
    assert(same(log.data("prices/z"), ["z1"]), show(log.data("prices/z")));
    await log.until((l) => l.data(feed).length >= 2, "f2");
    assert(same(log.data(feed), ["f1", "f2"]), show(log.data(feed)));
    assert(same(log.data("late"), ["l1"]), `unsubscribed topic delivered: ${show(log.data("late"))}`);
    assertNoDuplicates(log);
    for (const t of ["news/a", "prices/x", "bin"]) assertOrdered(log, t);
    assert(log.gaps.length === 0, `gaps ${show(log.gaps)}`);
    await log.until(() => c.state === "open", "open again");
    assert(c.transport === name && same(log.states, ["open", "reconnecting", "open"]), `${c.transport} ${show(log.states)}`);
    assert(log.errors.length === 0, `errors: ${log.errors.map((e) => e.stack)}`);
  } finally {
    c.close();
    await s.stop();
  }
  assert(c.state === "closed", c.state);
}

// History trimmed while disconnected: a "trimmed" gap, then what the hub still holds.
async function trimmedGap(name) {
  const s = await startServer(["--history-messages", "3"]);
  const net = network();
  const c = connect(s.url, { ...fast, transports: [name], WebSocket: net.WebSocket, fetch: net.fetch });
  const log = recorder(c);
  const gapEvents = [];
  c.on("gap", (g) => gapEvents.push(g));
  try {
    c.subscribe("t", log.onMessage, { onGap: log.onGap });
    await log.until(() => c.state === "open", "open");
    const first = await s.publish("t", "t1");
    await log.until((l) => l.msgs.length === 1, "t1");
    net.offline = true;
    net.drop();
    await log.until(() => c.state === "reconnecting", "reconnecting");
    for (let i = 2; i <= 7; i++) await s.publish("t", `t${i}`);
    net.offline = false;
    await log.until((l) => l.msgs.length === 4, "t5..t7");
    assert(same(log.data("t"), ["t1", "t5", "t6", "t7"]), show(log.data("t")));
    assert(log.gaps.length === 1, `gaps ${show(log.gaps)}`);
    const g = log.gaps[0];
    assert(g.topic === "t" && g.reason === "trimmed" && g.after === first && g.missed === 3, show(g));
    assert(gapEvents.length === 1 && gapEvents[0].reason === "trimmed", show(gapEvents));
    // Another drop: the gap is not reported twice.
    net.drop();
    await log.until(() => c.state === "reconnecting", "reconnecting");
    await s.publish("t", "t8");
    await log.until((l) => l.msgs.length === 5, "t8");
    assert(log.gaps.length === 1, `gap repeated: ${show(log.gaps)}`);
    assertNoDuplicates(log);
  } finally {
    c.close();
    await s.stop();
  }
}

// The hub restarts on the same port: a new epoch, so a "reset" gap, then new messages.
async function restartGap(name) {
  let s = await startServer();
  const port = new URL(s.url).port;
  const c = connect(s.url, { ...fast, transports: [name], WebSocket, fetch });
  const log = recorder(c);
  try {
    c.subscribe("r", log.onMessage, { onGap: log.onGap });
    await log.until(() => c.state === "open", "open");
    const r1 = await s.publish("r", "r1");
    await log.until((l) => l.msgs.length === 1, "r1");
    await s.stop();
    await log.until(() => c.state === "reconnecting", "reconnecting");
    s = await startServer(["--listen", `127.0.0.1:${port}`]);
    await log.until(() => c.state === "open", "open again");
    await s.publish("r", "r2");
    await log.until((l) => l.msgs.length === 2 && l.gaps.length >= 1, "r2 and the gap");
    assert(same(log.data("r"), ["r1", "r2"]), show(log.data("r")));
    assert(log.gaps.length === 1 && log.gaps[0].reason === "reset" && log.gaps[0].after === r1, show(log.gaps));
    assert(log.msgs[1].id.split(":")[0] !== r1.split(":")[0], `same epoch after a restart: ${log.msgs[1].id} ${r1}`);
  } finally {
    c.close();
    await s.stop();
  }
}

const tests = {};
for (const name of ["websocket", "sse", "longpoll"]) {
  tests[`${name}_alone_receives_publishes_and_resumes`] = () => transportAlone(name);
  tests[`${name}_trimmed_gap_after_reconnect`] = () => trimmedGap(name);
  tests[`${name}_reset_gap_after_server_restart`] = () => restartGap(name);
}

Object.assign(tests, {
  async refuses_bad_arguments_and_off_removes_listeners() {
    const s = await startServer();
    const c = connect(s.url, { ...fast, transports: ["sse"] });
    const log = recorder(c);
    try {
      const code = (fn) => { try { fn(); } catch (e) { return e.code; } return "no error"; };
      assert(code(() => c.subscribe("a b", () => {})) === "invalid_topic", "topic with a space");
      assert(code(() => c.subscribe("a//b", () => {})) === "invalid_topic", "empty segment");
      assert(code(() => c.subscribe("a", () => {}, { since: "garbage" })) === "invalid_id", "since garbage");
      assert(code(() => c.subscribe("a/*", () => {}, { since: "9f3a01bc:1" })) === "invalid_id", "pattern with one id");
      assert((await c.publish("a/*", "x").then(() => "no error", (e) => e.code)) === "invalid_topic", "publish to a pattern");
      const states = [];
      const fn = (st) => states.push(st);
      c.on("state", fn).off("state", fn);
      await log.until(() => c.state === "open", "open");
      assert(states.length === 0, `a removed listener was called: ${states}`);
      // Valid positions are accepted: "0" replays the history.
      await s.publish("h", "h1");
      c.subscribe("h", log.onMessage, { since: "0" });
      await log.until((l) => l.data("h").length === 1, "h1 replayed");
    } finally {
      c.close();
      await s.stop();
    }
  },

  async gives_up_after_max_failures() {
    // A port with nothing listening: take a free one from a server and stop it.
    const s = await startServer();
    const url = s.url;
    await s.stop();
    const net = network();
    const c = connect(url, { storage: false, backoff: { initial: 10, max: 20 }, maxFailures: 3,
      transports: ["websocket", "longpoll"], WebSocket: net.WebSocket, fetch: net.fetch });
    const log = recorder(c);
    await log.until(() => c.state === "failed" && log.errors.length > 0, "failed");
    assert(log.errors[0].code === "failed", `error ${log.errors[0].code} ${log.errors[0].message}`);
    assert(same(log.states, ["reconnecting", "failed"]), show(log.states));  // changes only
    assert(net.opened === 3, `${net.opened} WebSocket attempts for 3 failures`);
    let threw = null;
    await c.publish("x", "y").catch((e) => { threw = e; });
    assert(threw && threw.code === "network", `publish to a dead hub: ${threw && threw.code}`);
    c.close();
  },

  async probes_fallbacks_when_websocket_hangs_and_remembers() {
    const s = await startServer();
    const net = network();
    net.ws = "hang";
    const mem = new Map();
    const store = { getItem: (k) => mem.get(k) ?? null, setItem: (k, v) => mem.set(k, v) };
    const opts = { ...fast, probeDelay: 500, storage: { key: "k", store }, WebSocket: net.WebSocket, fetch: net.fetch };
    const t0 = Date.now();
    const c = connect(s.url, opts);
    const log = recorder(c);
    try {
      c.subscribe("p", log.onMessage);
      await log.until(() => c.state === "open", "open");
      const took = Date.now() - t0;
      assert(c.transport === "sse", `fell back to ${c.transport}`);
      // Not before probeDelay (WebSocket had its head start), long before connectTimeout (10 s).
      assert(took >= 450 && took < 3000, `fallback after ${took} ms (probeDelay 500)`);
      assert(net.hanging.length === 1 && net.hanging[0].readyState === 3, "the hanging WebSocket was not given up");
      await s.publish("p", "p1");
      await log.until((l) => l.msgs.length === 1, "p1");
      assert(mem.get("k") === "sse", `remembered ${mem.get("k")}`);

      // Next time SSE comes first: open without trying WebSocket.
      const t1 = Date.now();
      const c2 = connect(s.url, { ...opts, upgradeInterval: 0 });
      const log2 = recorder(c2);
      c2.subscribe("p", log2.onMessage);
      await log2.until(() => c2.state === "open", "second client open");
      assert(c2.transport === "sse", `second client: ${c2.transport} after ${Date.now() - t1} ms`);
      assert(net.hanging.length === 1, `second client tried WebSocket first (${net.hanging.length})`);
      c2.close();
    } finally {
      c.close();
      await s.stop();
    }
  },

  async upgrades_back_to_websocket_without_loss() {
    const s = await startServer();
    const net = network();
    net.ws = "fail";
    const c = connect(s.url, { ...fast, probeDelay: 300, upgradeInterval: 250, WebSocket: net.WebSocket, fetch: net.fetch });
    const log = recorder(c);
    try {
      c.subscribe("u", log.onMessage, { onGap: log.onGap });
      await log.until(() => c.state === "open", "open");
      assert(c.transport === "sse", `first transport ${c.transport}`);
      const sent = [];
      const pub = async (n) => { for (let i = 0; i < n; i++) { sent.push(`u${sent.length}`); await s.publish("u", sent.at(-1)); } };
      await pub(10);
      net.ws = "ok";
      // Publish continuously while the client switches.
      while (c.transport !== "websocket") {
        await pub(1);
        if (sent.length > 5000) throw new Error("no upgrade");
      }
      await pub(20);
      await log.until((l) => l.msgs.length >= sent.length, `${sent.length} messages`);
      assert(same(log.data("u"), sent), `sequence differs: got ${log.msgs.length} of ${sent.length}`);
      assertNoDuplicates(log);
      assert(same(log.transports, ["sse", "websocket"]), show(log.transports));
      assert(log.gaps.length === 0 && c.state === "open", show(log.gaps));
      // The SSE stream was closed after the switch: only the WebSocket's subscription is left.
      await s.waitMetric("subscriptions", (v) => v === 1);
    } finally {
      c.close();
      await s.stop();
    }
  },
});

// The relay over WebSocket, and over the long-poll pair (a client not allowed WebSocket).
for (const mode of ["websocket", "longpoll"]) {
  tests[`relay_${mode}_round_trip_concurrency_and_reconnect`] = async () => {
    const s = await startServer();
    const net = network();
    const transports = mode === "websocket" ? ["websocket", "sse"] : ["sse"];
    const c = connect(s.url, { ...fast, transports, WebSocket: net.WebSocket, fetch: net.fetch });
    const seen = [];
    const errors = [];
    c.on("error", (e) => errors.push(e));
    try {
      const r = await c.relay(async (req) => {
        seen.push(req);
        if (req.path.startsWith("/slow")) await new Promise((res) => setTimeout(res, 200));  // answers out of order
        if (req.path.startsWith("/bin")) return { status: 201, headers: { "content-type": "application/octet-stream", "x-n": String(req.body.length) }, body: req.body.map((b) => 255 - b) };
        return { status: 200, headers: { "content-type": "text/plain" }, body: `${req.method} ${req.path} ${req.text()}` };
      });
      assert(/^http:\/\/127\.0\.0\.1:\d+\/relay\/[0-9a-f]{32}$/.test(r.url), `relay url ${r.url}`);
      assert(r.transport === mode, `relay over ${r.transport}`);
      const bytes = new Uint8Array(70000).map((_, i) => (i * 7) & 255);
      const res = await fetch(`${r.url}/bin?x=1`, { method: "PUT", body: bytes, headers: { "x-hello": "there" } });
      const back = new Uint8Array(await res.arrayBuffer());
      assert(res.status === 201 && res.headers.get("x-n") === "70000", `status ${res.status} ${res.headers.get("x-n")}`);
      assert(back.length === bytes.length && back.every((b, i) => b === 255 - bytes[i]), "binary body differs");
      const req = seen.at(-1);
      assert(req.method === "PUT" && req.path === "/bin?x=1" && req.headers["x-hello"] === "there", show(req.headers));
      // Concurrent requests, the first answered last.
      const answers = await Promise.all(["/slow", "/a", "/b", "/c"].map((p, i) =>
        fetch(r.url + p, { method: "POST", body: `n${i}` }).then(async (x) => [x.status, await x.text()])));
      assert(same(answers, [[200, "POST /slow n0"], [200, "POST /a n1"], [200, "POST /b n2"], [200, "POST /c n3"]]), show(answers));
      // The connection drops: the client comes back with the same URL.
      assert(errors.length === 0, errors.map((e) => e.message).join("; "));
      // (An answer's POST may still be in flight when the network drops: an error event then.)
      const url = r.url;
      const reconnected = new Promise((res) => c.on("relay", res));
      net.drop();
      const ev = await reconnected;
      assert(ev.resumed === true && ev.url === url && r.url === url, `after reconnect: ${show(ev)} (was ${url})`);
      const after = await fetch(`${url}/again`, { method: "POST", body: "x" });
      assert(after.status === 200 && (await after.text()) === "POST /again x", `after reconnect: ${after.status}`);
    } finally {
      c.close();
      await s.stop();
    }
  };
}

await run(tests);
