// WebSocket with npm's ws (strict: WS_ERR_* on any protocol violation) and Chromium's WebSocket:
// raw topic streams on /topics/{t} and the multiplexed JSON protocol on /ws (docs/protocol.md),
// including permessage-deflate, binary frames and resume with `since` after a reconnect.
import net from "node:net";
import WebSocket from "ws";
import { chromium } from "playwright-core";
import { startServer, run, assert } from "./lib.mjs";

const chromiumArgs = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const ID = /^[0-9a-f]{8}:[1-9][0-9]*$/;
const seq = (id) => Number(id.split(":")[1]);
const epoch = (id) => id.split(":")[0];
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
// JSON values equal regardless of object key order (the server re-serializes JSON data).
const canon = (v) => Array.isArray(v) ? v.map(canon) : v && typeof v === "object"
  ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v;
const sameJson = (a, b) => same(canon(a), canon(b));
const show = (v) => { const s = String(JSON.stringify(v)); return s.length > 1500 ? s.slice(0, 1500) + "…" : s; };

// The /ws binary frame: version 1, big-endian u16 header length, JSON header, payload.
function encodeBinary(header, bytes) {
  const h = Buffer.from(JSON.stringify(header));
  return Buffer.concat([Buffer.from([1, h.length >> 8, h.length & 255]), h, Buffer.from(bytes)]);
}
function decodeBinary(buf) {
  assert(buf.length >= 3 && buf[0] === 1, `binary frame version ${buf[0]}`);
  const n = buf.readUInt16BE(1);
  assert(buf.length >= 3 + n, `binary frame header length ${n} > ${buf.length - 3}`);
  return { frame: "binary", ...JSON.parse(buf.subarray(3, 3 + n).toString()), binary: [...buf.subarray(3 + n)] };
}

// An npm ws client; `raw` keeps frames as they come (for /topics/…), else each frame is decoded
// as a /ws text (JSON) or binary frame into `log`. `until` awaits a state of the log, failing
// after a timeout or when the connection closes first.
async function connect(url, { protocols, raw = false } = {}) {
  let sock = null;
  const ws = new WebSocket(url, protocols, {
    perMessageDeflate: true,
    createConnection: (o) => (sock = net.connect(o)),  // to count the bytes on the wire
  });
  const c = { ws, log: [], errors: [], closed: null, upgrade: null, waiters: new Set() };
  const wake = () => { for (const w of c.waiters) w(); };
  ws.on("upgrade", (res) => { c.upgrade = res; });
  ws.on("message", (data, isBinary) => {
    try {
      c.log.push(raw ? (isBinary ? { binary: [...data] } : data.toString())
                     : isBinary ? decodeBinary(data) : { frame: "text", ...JSON.parse(data.toString()) });
    } catch (e) { c.errors.push(e); }
    wake();
  });
  ws.on("error", (e) => { c.errors.push(e); wake(); });
  ws.on("close", (code) => { c.closed = code; wake(); });
  c.send = (obj) => ws.send(JSON.stringify(obj));
  c.sendBinary = (header, bytes) => ws.send(encodeBinary(header, bytes));
  c.bytes = () => ({ read: sock.bytesRead, written: sock.bytesWritten });
  c.until = (pred, what, ms = 5000) => new Promise((resolve, reject) => {
    const check = () => {
      let v;
      try { v = pred(c.log); } catch (e) { done(); return reject(e); }
      if (v) { done(); resolve(v); }
      else if (c.errors.length || c.closed !== null) {
        done();
        reject(new Error(`${what}: connection ${c.closed !== null ? "closed " + c.closed : "failed: " + c.errors[0]} with ${show(c.log)}`));
      }
    };
    const timer = setTimeout(() => { done(); reject(new Error(`timeout waiting for ${what}; got ${show(c.log)}`)); }, ms);
    const done = () => { clearTimeout(timer); c.waiters.delete(check); };
    c.waiters.add(check);
    check();
  });
  c.close = async (code = 1000) => {
    if (c.closed !== null) return c.closed;
    const closed = new Promise((resolve) => ws.once("close", resolve));
    ws.close(code);
    const t = setTimeout(() => ws.terminate(), 5000);
    const got = await closed;
    clearTimeout(t);
    return got;
  };
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout opening ${url}`)), 5000);
    ws.once("open", () => { clearTimeout(t); resolve(); });
    ws.once("error", (e) => { clearTimeout(t); reject(e); });
  });
  return c;
}

const wsUrl = (s, path) => s.url.replace(/^http/, "ws") + path;
const acked = (ref) => (log) => log.find((m) => m.type === "ack" && m.ref === ref);
const messages = (log, topic) => log.filter((m) => m.type === "message" && (topic === undefined || m.topic === topic));
const ids = (log, topic) => messages(log, topic).map((m) => m.id);
// Ids from several overlapping subscriptions: each subscription delivers in publish order, so
// the k-th copies of the ids must each come in increasing order.
function assertCopiesInOrder(got, expected, copies, what) {
  const count = new Map();
  const kth = Array.from({ length: copies }, () => []);
  for (const id of got) {
    const k = count.get(id) ?? 0;
    assert(k < copies, `${what}: ${id} more than ${copies} times in ${show(got)}`);
    count.set(id, k + 1);
    kth[k].push(id);
  }
  for (let k = 0; k < copies; k++) {
    assert(same(kth[k], expected), `${what}: copy ${k + 1} is ${show(kth[k])}, want ${show(expected)} (all: ${show(got)})`);
  }
}
function assertAck(log, ref, topic) {
  const a = acked(ref)(log);
  assert(a, `no ack for ref ${show(ref)}`);
  assert(a.op === "publish" && a.topic === topic && ID.test(a.id), `ack ${show(a)}`);
  return a.id;
}

await run({
  async npm_ws_subscribes_publishes_and_closes_cleanly() {
    const s = await startServer();
    try {
      const ws = new WebSocket(`${s.url.replace("http", "ws")}/topics/nodews`);
      const got = [];
      let protocolError = null;
      ws.on("error", (e) => { protocolError = e; });
      const done = new Promise((resolve) => ws.on("message", (data, isBinary) => {
        got.push(isBinary ? [...data] : data.toString());
        if (got.length === 3) resolve();
      }));
      await new Promise((resolve) => ws.on("open", resolve));
      await s.waitMetric("subscriptions", (v) => v === 1);
      await s.publish("nodews", "one");
      ws.send("two");  // a client message publishes to the topic
      await s.waitMetric("published_total", (v) => v >= 2);
      await s.publish("nodews", new Uint8Array([1, 2, 3]), { "Content-Type": "application/octet-stream" });
      await done;
      const closed = new Promise((resolve) => ws.on("close", (code) => resolve(code)));
      ws.close(1000);
      assert((await closed) === 1000, "close code echoed");
      assert(protocolError === null, `ws reported ${protocolError}`);
      assert(JSON.stringify(got) === JSON.stringify(["one", "two", [1, 2, 3]]), JSON.stringify(got));
    } finally {
      await s.stop();
    }
  },

  async chromium_websocket_receives_and_publishes() {
    const s = await startServer();
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: chromiumArgs });
    try {
      const page = await browser.newPage();
      await page.goto(`${s.url}/healthz`);
      await page.evaluate(() => new Promise((resolve) => {
        window.got = [];
        const ws = new WebSocket(`ws://${location.host}/topics/chrome`);
        ws.binaryType = "arraybuffer";
        ws.onmessage = (e) => window.got.push(typeof e.data === "string" ? e.data : [...new Uint8Array(e.data)]);
        ws.onopen = () => { ws.send("from the page"); resolve(); };
        window.ws = ws;
      }));
      await s.publish("chrome", "from the server");
      await s.publish("chrome", new Uint8Array([0, 255]));  // not UTF-8: a binary frame
      await page.waitForFunction(() => window.got.length >= 3);
      const got = await page.evaluate(() => window.got);
      assert(JSON.stringify(got) === JSON.stringify(["from the page", "from the server", [0, 255]]), JSON.stringify(got));
      const code = await page.evaluate(() => new Promise((resolve) => { window.ws.onclose = (e) => resolve(e.code); window.ws.close(1000); }));
      assert(code === 1000, `close ${code}`);
    } finally {
      await browser.close();
      await s.stop();
    }
  },

  async npm_ws_multiplexed_protocol_deflate_and_resume() {
    const s = await startServer();
    const conns = [];
    try {
      const pre = [await s.publish("chat/lobby", "before 1"), await s.publish("chat/lobby", "before 2")];
      const c = await connect(wsUrl(s, "/ws"), { protocols: "crier.v1" });
      conns.push(c);
      assert(c.ws.protocol === "crier.v1", `subprotocol ${show(c.ws.protocol)}`);
      assert(/\bpermessage-deflate\b/.test(c.ws.extensions), `extensions ${show(c.ws.extensions)}`);
      assert(/^permessage-deflate\b/.test(c.upgrade.headers["sec-websocket-extensions"] ?? ""),
        `Sec-WebSocket-Extensions ${show(c.upgrade.headers["sec-websocket-extensions"])}`);

      // A topic with since=0 (replays the history after its ack) and a pattern (live only).
      c.send({ type: "subscribe", ref: 1, topic: "chat/lobby", since: "0" });
      c.send({ type: "subscribe", ref: "pat", topic: "chat/*" });
      await c.until((log) => acked(1)(log) && acked("pat")(log) && messages(log).length >= 2, "subscribe acks and replay");
      const ack1 = c.log.indexOf(acked(1)(c.log));
      assert(same(c.log[ack1], { frame: "text", type: "ack", ref: 1, op: "subscribe", topic: "chat/lobby" }), show(c.log[ack1]));
      assert(same(acked("pat")(c.log), { frame: "text", type: "ack", ref: "pat", op: "subscribe", topic: "chat/*" }), show(c.log));
      assert(c.log.findIndex((m) => m.type === "message") > ack1, `a message before the subscribe ack: ${show(c.log)}`);
      assert(same(messages(c.log).map((m) => [m.id, m.data]), [[pre[0], "before 1"], [pre[1], "before 2"]]), show(c.log));

      // Publish: text (with an event), JSON, and two binary frames (one with the default type).
      c.send({ type: "publish", ref: "t", topic: "chat/lobby", event: "say", data: "héllo ✓" });
      const json = { x: 1, y: [true, null], s: "é" };
      c.send({ type: "publish", ref: 7, topic: "chat/lobby", data: json });
      const png = [0x89, 0x50, 0x4e, 0x47, 0, 255, 0xfe, 10, 13];
      c.sendBinary({ type: "publish", ref: "b", topic: "chat/lobby", content_type: "image/png" }, png);
      const octets = [0, 1, 2, 0xc3, 0x28, 255];
      c.sendBinary({ type: "publish", ref: "o", topic: "chat/cam" }, octets);
      await c.until((log) => ["t", 7, "b", "o"].every((r) => acked(r)(log)), "publish acks");
      const [idT, idJ, idB, idO] = [["t", "chat/lobby"], [7, "chat/lobby"], ["b", "chat/lobby"], ["o", "chat/cam"]]
        .map(([r, t]) => assertAck(c.log, r, t));
      assert(same([idT, idJ, idB].map(seq), [3, 4, 5]) && [idT, idJ, idB].every((i) => epoch(i) === epoch(pre[0])),
        `ids ${show([pre, idT, idJ, idB])}`);
      assert(seq(idO) === 1 && epoch(idO) !== epoch(idB), `chat/cam id ${idO}`);
      const idH = await s.publish("chat/lobby", "from http");
      const idOther = await s.publish("chat/other", '{"k":2}', { "Content-Type": "application/json" });

      const lobby = [pre[0], pre[1], idT, idJ, idB, idH];
      await c.until((log) => ids(log, "chat/lobby").length >= 2 + 4 * 2 && ids(log, "chat/cam").length >= 1
        && ids(log, "chat/other").length >= 1, "messages");
      const byId = (id) => messages(c.log).filter((m) => m.id === id);
      const t = byId(idT)[0];
      assert(t.frame === "text" && t.topic === "chat/lobby" && t.event === "say" && t.data === "héllo ✓"
        && Math.abs(t.time - Date.now()) < 60000, `text message ${show(t)}`);
      const j = byId(idJ)[0];
      assert(j.frame === "text" && j.content_type === "application/json" && sameJson(JSON.parse(j.data), json), `JSON message ${show(j)}`);
      for (const b of byId(idB)) {
        assert(b.frame === "binary" && b.topic === "chat/lobby" && b.content_type === "image/png" && same(b.binary, png)
          && b.data === undefined && typeof b.time === "number", `binary message ${show(b)}`);
      }
      const o = byId(idO);
      assert(o.length === 1 && o[0].frame === "binary" && o[0].content_type === "application/octet-stream"
        && same(o[0].binary, octets), `default binary content type ${show(o)}`);
      const other = byId(idOther);
      assert(other.length === 1 && other[0].data === '{"k":2}' && other[0].content_type === "application/json", show(other));
      assert(byId(idH).every((m) => m.data === "from http"), show(byId(idH)));
      // The topic subscription replayed the history and both subscriptions got every live one.
      assert(same(ids(c.log, "chat/lobby").slice(0, 2), pre), show(c.log));
      assertCopiesInOrder(ids(c.log, "chat/lobby").slice(2), lobby.slice(2), 2, "chat/lobby live");

      // permessage-deflate in both directions: 240 kB of text crosses the wire in a few kB
      // (ws compresses what it sends over 1 kB; the server inflates it and deflates both copies).
      const big = "crier ".repeat(40000);
      const before = c.bytes();
      c.send({ type: "publish", ref: "big", topic: "chat/lobby", data: big });
      await c.until((log) => acked("big")(log), "ack of the big publish");
      const idBig = assertAck(c.log, "big", "chat/lobby");
      await c.until((log) => messages(log).filter((m) => m.id === idBig).length === 2, "the big message twice");
      assert(messages(c.log).filter((m) => m.id === idBig).every((m) => m.data === big), "big message corrupted");
      const after = c.bytes();
      assert(after.written - before.written < 20000, `sent ${after.written - before.written} bytes for ${big.length}`);
      assert(after.read - before.read < 20000, `received ${after.read - before.read} bytes for 2 × ${big.length}`);
      lobby.push(idBig);

      // Disconnect; publish while away; reconnect and resume from the last ids seen.
      const seen = (topic) => ids(c.log, topic).at(-1);
      const last = { lobby: seen("chat/lobby"), cam: seen("chat/cam"), other: seen("chat/other") };
      assert(last.lobby === idBig, `last lobby id ${last.lobby}`);
      assert((await c.close(1000)) === 1000, "close code echoed");
      assert(c.errors.length === 0, `ws reported ${c.errors[0]}`);
      const missed = [];
      for (let i = 0; i < 3; i++) missed.push(await s.publish("chat/lobby", `missed ${i}`));
      const camMissed = await s.publish("chat/cam", new Uint8Array([9, 0, 255]), { "Content-Type": "application/octet-stream" });

      const c2 = await connect(wsUrl(s, "/ws"), { protocols: "crier.v1" });
      conns.push(c2);
      c2.send({ type: "subscribe", ref: "r1", topic: "chat/lobby", since: last.lobby });
      c2.send({ type: "subscribe", ref: "r2", topic: "chat/*",
        since: `chat/lobby=${last.lobby},chat/cam=${last.cam},chat/other=${last.other}` });
      await c2.until((log) => acked("r1")(log) && acked("r2")(log), "resubscribe acks");
      // A sentinel published after the resubscribe: everything before it has arrived with it.
      c2.send({ type: "publish", ref: "s", topic: "chat/lobby", data: "sentinel" });
      await c2.until(acked("s"), "sentinel ack");
      const idS = assertAck(c2.log, "s", "chat/lobby");
      await c2.until((log) => messages(log).filter((m) => m.id === idS).length === 2, "the sentinel twice");
      assert(c2.log.filter((m) => m.type === "gap").length === 0, `unexpected gap ${show(c2.log)}`);
      // Each ack precedes its subscription's messages: r1's before the first copy of anything,
      // the pattern's (r2) before the second copy of the first missed message and before chat/cam.
      const at = (pred) => c2.log.findIndex(pred);
      const isMissed0 = (m) => m.type === "message" && m.id === missed[0];
      const secondCopy = c2.log.findIndex((m, i) => isMissed0(m) && i > at(isMissed0));
      const ackAt = (ref) => at((m) => m.type === "ack" && m.ref === ref);
      assert(ackAt("r1") < at((m) => m.type === "message"), `a message before the ack of r1: ${show(c2.log)}`);
      assert(ackAt("r2") < secondCopy && ackAt("r2") < at((m) => m.topic === "chat/cam"),
        `a message of chat/* before its ack: ${show(c2.log)}`);
      assertCopiesInOrder(ids(c2.log, "chat/lobby"), [...missed, idS], 2, "chat/lobby after resume");
      assert(messages(c2.log, "chat/lobby").every((m) => m.data === (m.id === idS ? "sentinel" : `missed ${missed.indexOf(m.id)}`)),
        show(c2.log));
      const cam = messages(c2.log, "chat/cam");
      assert(cam.length === 1 && cam[0].id === camMissed && cam[0].frame === "binary" && same(cam[0].binary, [9, 0, 255]),
        `chat/cam after resume ${show(cam)}`);
      assert(messages(c2.log, "chat/other").length === 0, `chat/other replayed: ${show(c2.log)}`);
      assert((await c2.close(1000)) === 1000 && c2.errors.length === 0, `c2 ${c2.errors[0]}`);
    } finally {
      for (const c of conns) c.ws.terminate();
      await s.stop();
    }
  },

  async npm_ws_resume_reports_trimmed_and_reset_gaps() {
    const s = await startServer(["--history-messages", "3"]);
    const conns = [];
    try {
      const c = await connect(wsUrl(s, "/ws"), { protocols: "crier.v1" });
      conns.push(c);
      c.send({ type: "subscribe", ref: 1, topic: "g/x" });
      await c.until(acked(1), "subscribe ack");
      const id1 = await s.publish("g/x", "g1");
      await c.until((log) => messages(log).length === 1, "g1");
      const lastSeen = ids(c.log, "g/x").at(-1);
      assert(lastSeen === id1, `saw ${lastSeen}, published ${id1}`);
      assert((await c.close()) === 1000, "close");
      const later = [];
      for (let i = 2; i <= 7; i++) later.push(await s.publish("g/x", `g${i}`));  // history: g5 g6 g7

      const c2 = await connect(wsUrl(s, "/ws"), { protocols: "crier.v1" });
      conns.push(c2);
      c2.send({ type: "subscribe", ref: 2, topic: "g/x", since: lastSeen });
      await c2.until((log) => messages(log).length === 3, "the three still in history");
      const g8 = await s.publish("g/x", "g8");  // the sentinel: nothing else may come before it
      await c2.until((log) => messages(log).length === 4, "g8");
      const expect = [
        { frame: "text", type: "ack", ref: 2, op: "subscribe", topic: "g/x" },
        { frame: "text", type: "gap", topic: "g/x", reason: "trimmed", after: id1, next: later[3], missed: 3 },
        ...[[later[3], "g5"], [later[4], "g6"], [later[5], "g7"], [g8, "g8"]].map(([id, data]) => ["message", id, data]),
      ];
      const got = c2.log.map((m) => m.type === "message" ? [m.type, m.id, m.data] : m);
      assert(same(got, expect), `got ${show(got)}\nwant ${show(expect)}`);

      // An id from another life of the topic: a reset gap (count unknown), then all the history.
      const n = c2.log.length;
      const foreign = ((parseInt(epoch(id1), 16) ^ 1) >>> 0).toString(16).padStart(8, "0") + ":5";
      c2.send({ type: "subscribe", ref: 3, topic: "g/x", since: foreign });
      await c2.until((log) => messages(log.slice(n)).length === 3, "the history after a reset");
      const g9 = await s.publish("g/x", "g9");
      await c2.until((log) => messages(log.slice(n)).length === 4, "g9");
      const got2 = c2.log.slice(n).map((m) => m.type === "message" ? [m.type, m.id, m.data] : m);
      const expect2 = [
        { frame: "text", type: "ack", ref: 3, op: "subscribe", topic: "g/x" },
        { frame: "text", type: "gap", topic: "g/x", reason: "reset", after: foreign, next: later[4], missed: 0 },
        ...[[later[4], "g6"], [later[5], "g7"], [g8, "g8"], [g9, "g9"]].map(([id, data]) => ["message", id, data]),
      ];
      assert(same(got2, expect2), `got ${show(got2)}\nwant ${show(expect2)}`);
      assert((await c2.close()) === 1000 && c2.errors.length === 0, `c2 ${c2.errors[0]}`);
    } finally {
      for (const c of conns) c.ws.terminate();
      await s.stop();
    }
  },

  async npm_ws_raw_topic_stream_resumes_with_since() {
    const s = await startServer(["--history-messages", "3"]);
    const conns = [];
    try {
      const id = [];
      for (let i = 1; i <= 5; i++) id.push(await s.publish("raw/t", `r${i}`));  // history: r3 r4 r5
      // Exactly what came after r3, then a live message.
      const a = await connect(wsUrl(s, `/topics/raw/t?since=${encodeURIComponent(id[2])}`), { raw: true });
      conns.push(a);
      assert(/\bpermessage-deflate\b/.test(a.ws.extensions), `extensions ${show(a.ws.extensions)}`);
      await a.until((log) => log.length === 2, "r4 r5");
      id.push(await s.publish("raw/t", "r6"));
      await a.until((log) => log.length === 3, "r6");
      assert(same(a.log, ["r4", "r5", "r6"]), show(a.log));
      // From r1: r2 and r3 are gone — a gap envelope as a text frame, then r4…
      const b = await connect(wsUrl(s, `/topics/raw/t?since=${encodeURIComponent(id[0])}`), { raw: true });
      conns.push(b);
      await b.until((log) => log.length === 4, "gap r4 r5 r6");
      await s.publish("raw/t", new Uint8Array([0, 255, 7]), { "Content-Type": "application/octet-stream" });
      await b.until((log) => log.length === 5, "the binary sentinel");
      await a.until((log) => log.length === 4, "the binary sentinel on the first stream");
      const gap = JSON.parse(b.log[0]);
      assert(same(gap, { type: "gap", topic: "raw/t", reason: "trimmed", after: id[0], next: id[3], missed: 2 }), show(b.log[0]));
      assert(same(b.log.slice(1), ["r4", "r5", "r6", { binary: [0, 255, 7] }]), show(b.log));
      assert(same(a.log, ["r4", "r5", "r6", { binary: [0, 255, 7] }]), show(a.log));
      for (const c of [a, b]) assert((await c.close()) === 1000 && c.errors.length === 0, `${c.errors[0]}`);
    } finally {
      for (const c of conns) c.ws.terminate();
      await s.stop();
    }
  },

  async chromium_ws_multiplexed_binary_and_resume() {
    const s = await startServer();
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: chromiumArgs });
    try {
      const page = await browser.newPage();
      await page.goto(`${s.url}/healthz`);
      const wait = (fn, arg) => page.waitForFunction(fn, arg, { timeout: 10000 });
      // In the page: open /ws with crier.v1, decode every frame (binary ones by their header).
      await page.evaluate(() => {
        window.connect = (name) => new Promise((resolve, reject) => {
          const ws = new WebSocket(`ws://${location.host}/ws`, "crier.v1");
          ws.binaryType = "arraybuffer";
          const c = { ws, log: [], errors: [] };
          window[name] = c;
          ws.onmessage = (e) => {
            if (typeof e.data === "string") { c.log.push({ frame: "text", ...JSON.parse(e.data) }); return; }
            if (!(e.data instanceof ArrayBuffer)) { c.errors.push("not an ArrayBuffer"); return; }
            const b = new Uint8Array(e.data);
            const n = (b[1] << 8) | b[2];
            const h = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(3, 3 + n)));
            c.log.push({ frame: "binary", version: b[0], ...h, binary: [...b.subarray(3 + n)] });
          };
          ws.onerror = () => { c.errors.push("error"); reject(new Error("WebSocket error")); };
          ws.onopen = () => resolve({ protocol: ws.protocol, extensions: ws.extensions });
        });
        window.send = (name, obj) => window[name].ws.send(JSON.stringify(obj));
        window.sendBinary = (name, header, bytes) => {
          const h = new TextEncoder().encode(JSON.stringify(header));
          const f = new Uint8Array(3 + h.length + bytes.length);
          f.set([1, h.length >> 8, h.length & 255]);
          f.set(h, 3);
          f.set(bytes, 3 + h.length);
          window[name].ws.send(f.buffer);
        };
        window.closeWs = (name) => new Promise((resolve) => {
          window[name].ws.onclose = (e) => resolve([e.code, e.wasClean]);
          window[name].ws.close(1000);
        });
      });
      const log = (name) => page.evaluate((n) => window[n].log, name);
      const hs = await page.evaluate(() => window.connect("c1"));
      assert(hs.protocol === "crier.v1", `ws.protocol ${show(hs.protocol)}`);
      assert(/\bpermessage-deflate\b/.test(hs.extensions), `ws.extensions ${show(hs.extensions)}`);
      await page.evaluate(() => window.send("c1", { type: "subscribe", ref: 1, topic: "br/room" }));
      await wait(() => window.c1.log.some((m) => m.type === "ack" && m.ref === 1));

      // The page publishes 20 texts, JSON, 60 kB of text (compressed by Chromium) and a binary
      // frame; then the test publishes a binary payload and a text over HTTP.
      const big = "chromium ".repeat(7000);
      const png = [0x89, 0x50, 0, 255, 0xfe, 0xff, 13, 10];
      await page.evaluate(([big, png]) => {
        for (let i = 0; i < 20; i++) window.send("c1", { type: "publish", ref: 100 + i, topic: "br/room", data: `p${i}` });
        window.send("c1", { type: "publish", ref: 200, topic: "br/room", data: { n: [1, 2] } });
        window.send("c1", { type: "publish", ref: 201, topic: "br/room", data: big });
        window.sendBinary("c1", { type: "publish", ref: 202, topic: "br/room", content_type: "image/png" }, png);
      }, [big, png]);
      const refs = [...Array.from({ length: 20 }, (_, i) => 100 + i), 200, 201, 202];
      await wait((refs) => refs.every((r) => window.c1.log.some((m) => m.type === "ack" && m.ref === r)), refs);
      const idBin = await s.publish("br/room", new Uint8Array([0, 255, 1, 2]), { "Content-Type": "application/octet-stream" });
      const idTxt = await s.publish("br/room", "from http");
      await wait(() => window.c1.log.filter((m) => m.type === "message").length >= 25);
      const l1 = await log("c1");
      const ackIds = refs.map((r) => assertAck(l1, r, "br/room"));
      const msgs = messages(l1);
      assert(msgs.length === 25, `got ${msgs.length} messages`);
      assert(same(msgs.map((m) => m.id), [...ackIds, idBin, idTxt]), `ids ${show(msgs.map((m) => m.id))} acks ${show(ackIds)}`);
      assert(msgs.every((m, i) => i === 0 || seq(m.id) === seq(msgs[i - 1].id) + 1), "ids not consecutive");
      assert(same(msgs.slice(0, 20).map((m) => m.data), Array.from({ length: 20 }, (_, i) => `p${i}`)), show(msgs));
      assert(msgs[20].content_type === "application/json" && sameJson(JSON.parse(msgs[20].data), { n: [1, 2] }), show(msgs[20]));
      assert(msgs[21].frame === "text" && msgs[21].data === big, `big message: ${msgs[21].data?.length} chars`);
      const [pb, hb] = [msgs[22], msgs[23]];
      assert(pb.frame === "binary" && pb.version === 1 && pb.type === "message" && pb.topic === "br/room"
        && pb.content_type === "image/png" && same(pb.binary, png) && pb.data === undefined, `page binary ${show(pb)}`);
      assert(hb.frame === "binary" && hb.content_type === "application/octet-stream" && same(hb.binary, [0, 255, 1, 2]),
        `http binary ${show(hb)}`);
      assert(msgs[24].frame === "text" && msgs[24].data === "from http", show(msgs[24]));
      assert(l1.findIndex((m) => m.type === "message") > l1.findIndex((m) => m.type === "ack" && m.ref === 1), "message before ack");

      // Close; the test publishes three; a new WebSocket resumes from the last id the page saw.
      const lastSeen = await page.evaluate(() => window.c1.log.filter((m) => m.type === "message").at(-1).id);
      assert(lastSeen === idTxt, `last seen ${lastSeen}`);
      const [code, clean] = await page.evaluate(() => window.closeWs("c1"));
      assert(code === 1000 && clean, `close ${code} clean=${clean}`);
      const missed = [await s.publish("br/room", "m1"), await s.publish("br/room", new Uint8Array([255, 0]),
        { "Content-Type": "application/octet-stream" }), await s.publish("br/room", "m3")];
      await page.evaluate(() => window.connect("c2"));
      await page.evaluate((since) => window.send("c2", { type: "subscribe", ref: "again", topic: "br/room", since }), lastSeen);
      await wait(() => window.c2.log.filter((m) => m.type === "message").length >= 3);
      await page.evaluate(() => window.send("c2", { type: "publish", ref: "s", topic: "br/room", data: "sentinel" }));
      await wait(() => window.c2.log.filter((m) => m.type === "message").length >= 4
        && window.c2.log.some((m) => m.type === "ack" && m.ref === "s"));
      const l2 = await log("c2");
      const idS = assertAck(l2, "s", "br/room");
      const got = l2.filter((m) => m.type !== "ack" || m.ref === "again")
        .map((m) => m.type === "message" ? [m.frame, m.id, m.data ?? m.binary] : m);
      const expect = [
        { frame: "text", type: "ack", ref: "again", op: "subscribe", topic: "br/room" },
        ["text", missed[0], "m1"], ["binary", missed[1], [255, 0]], ["text", missed[2], "m3"], ["text", idS, "sentinel"],
      ];
      assert(same(got, expect), `got ${show(got)}\nwant ${show(expect)}`);
      const errors = await page.evaluate(() => [...window.c1.errors, ...window.c2.errors]);
      assert(errors.length === 0, show(errors));
      const [code2] = await page.evaluate(() => window.closeWs("c2"));
      assert(code2 === 1000, `close ${code2}`);
    } finally {
      await browser.close();
      await s.stop();
    }
  },
});
