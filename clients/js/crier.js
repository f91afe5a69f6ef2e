// crier.js: the browser (and Node) client of a crier hub. No dependencies.
//
//   const c = connect("https://hub.example", { transports: ["websocket", "sse", "longpoll"] });
//   const sub = c.subscribe("chat/lobby", (m) => console.log(m.id, m.data));
//   await c.publish("chat/lobby", "hello");
//   const { url } = await c.relay((req) => ({ status: 200, body: "ok" }));
//
// Wire protocols: docs/protocol.md (/ws), docs/protocol-http.md (SSE, long-poll, publish),
// docs/relay.md (/relay). The design in one paragraph: every subscription keeps, per topic,
// the id of the last message it delivered (its cursor). Whatever transport is in use, and
// after every reconnect or switch, subscriptions resume from those cursors; a message is
// handed to the application only if its id is after the cursor, so overlaps between an old
// and a new connection are dropped, and what the hub can no longer give arrives as a gap.

const TRANSPORTS = ["websocket", "sse", "longpoll"];
const enc = new TextEncoder();
const dec = new TextDecoder();

// ---------------------------------------------------------------------------------------
// Small helpers

function crierError(code, message, status) {
  const e = new Error(message || code);
  e.code = code;
  if (status) e.status = status;
  return e;
}

// The hub answers errors as {"error":{"code","message"}}; keep its code for the caller.
async function httpError(res) {
  let code = `http_${res.status}`, message = `HTTP ${res.status}`;
  try {
    const j = await res.json();
    if (j && j.error) ({ code = code, message = message } = j.error);
  } catch { /* not JSON: keep the status */ }
  return crierError(code, message, res.status);
}

function defer() {
  const d = {};
  d.promise = new Promise((resolve, reject) => Object.assign(d, { resolve, reject }));
  return d;
}

function delay(ms, holder) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (holder) holder.wake = () => { clearTimeout(t); resolve(); };
  });
}

// Exponential backoff with "equal jitter": half fixed, half random, so that many clients
// that lost the same server do not all come back at the same instant.
function backoff(o, failures) {
  const d = Math.min(o.max, o.initial * 2 ** Math.min(failures, 30));
  return d / 2 + Math.random() * (d / 2);
}

function toBytes(x) {
  if (x instanceof Uint8Array) return x;
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  return null;
}

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function toBase64(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

// Binary frames of /ws and /relay: version 1, big-endian u16 header length, JSON header, body.
function frame(header, body) {
  const h = enc.encode(JSON.stringify(header));
  const out = new Uint8Array(3 + h.length + body.length);
  out[0] = 1;
  out[1] = h.length >> 8;
  out[2] = h.length & 255;
  out.set(h, 3);
  out.set(body, 3 + h.length);
  return out;
}

function unframe(data) {
  const b = toBytes(data);
  if (!b || b.length < 3 || b[0] !== 1) throw crierError("bad_frame", "unknown binary frame");
  const n = (b[1] << 8) | b[2];
  return [JSON.parse(dec.decode(b.subarray(3, 3 + n))), b.slice(3 + n)];
}

// Content types the hub treats as bytes even when they are valid UTF-8 (it sends them as
// binary WebSocket frames); the HTTP transports give them as text, so convert for consistency.
const BINARY_TYPES = ["application/octet-stream", "image/", "audio/", "video/", "application/protobuf",
  "application/x-protobuf", "application/cbor", "application/msgpack"];
const isBinaryType = (ct) => !!ct && BINARY_TYPES.some((b) => ct.startsWith(b));

// ---------------------------------------------------------------------------------------
// Topics, patterns, ids

const SEG = "[A-Za-z0-9._~-]+";
const NAME = new RegExp(`^${SEG}(/${SEG})*$`);
const PATTERN = new RegExp(`^(\\*\\*|(${SEG}|\\*)(/(${SEG}|\\*))*(/\\*\\*)?)$`);
const URL_TOPIC = /^https?:\/\/[^\s,*]+$/;
const ID = "[0-9a-f]{1,8}:[0-9]+";
const SINCE = new RegExp(`^(0|${ID}|[^,=]+(=[^,=]*)*=${ID}(,[^,=]+(=[^,=]*)*=${ID})*)$`);

function checkTopic(topic, pattern) {
  const ok = typeof topic === "string" && topic.length > 0 && enc.encode(topic).length <= 255 &&
    (NAME.test(topic) || URL_TOPIC.test(topic) || (pattern && PATTERN.test(topic)));
  if (!ok) throw crierError("invalid_topic", `invalid topic ${JSON.stringify(topic)}`);
}

// `a/*` matches one segment, a final `**` one or more (URL topics never contain `*`).
function matches(key, topic) {
  if (key === topic) return true;
  if (!key.includes("*") || URL_TOPIC.test(key)) return false;
  const k = key.split("/"), t = topic.split("/");
  for (let i = 0; i < k.length; i++) {
    if (k[i] === "**") return i === k.length - 1 && t.length > i;
    if (i >= t.length || (k[i] !== "*" && k[i] !== t[i])) return false;
  }
  return k.length === t.length;
}

// Plain names and patterns go into paths as they are; URL topics percent-encoded whole.
const pathTopic = (t) => (NAME.test(t) || PATTERN.test(t) ? t : encodeURIComponent(t));

function splitId(id) {
  const i = typeof id === "string" ? id.indexOf(":") : -1;
  return i > 0 ? [id.slice(0, i), Number(id.slice(i + 1))] : null;
}

// Is `id` after `cur`? Another epoch counts as after: the hub announced it with a reset gap.
function isAfter(id, cur) {
  const a = splitId(id), b = splitId(cur);
  return !a || !b || a[0] !== b[0] || a[1] > b[1];
}

// "topic=id,topic=id" (URL topics may contain '=', ids never do).
function parseCursorList(s, into, onlyNew) {
  for (const item of s.split(",")) {
    const eq = item.lastIndexOf("=");
    if (eq > 0 && !(onlyNew && into.has(item.slice(0, eq)))) into.set(item.slice(0, eq), item.slice(eq + 1));
  }
}

// Resume position of one subscription: its cursors, "0" when it has none (an anchored
// subscription without cursors wants whatever its topics got since), undefined = live.
function sinceOf(e) {
  if (!e.anchored && !e.cursors.size) return undefined;
  return [...e.cursors].map(([t, id]) => `${t}=${id}`).join(",") || "0";
}

// One resume position for several subscriptions sharing an HTTP request: per topic the
// oldest cursor; a topic that some matching subscription has no cursor for is left out,
// which asks the hub for all of its history (that subscription has seen none of it).
function sinceOfAll(entries) {
  const best = new Map();
  for (const e of entries)
    for (const [t, id] of e.cursors) if (!best.has(t) || !isAfter(id, best.get(t))) best.set(t, id);
  const parts = [];
  for (const [t, id] of best) if (!entries.some((e) => matches(e.key, t) && !e.cursors.has(t))) parts.push(`${t}=${id}`);
  return parts.join(",") || "0";
}

// A message envelope (JSON, or the header of a binary frame plus its body) as the app sees it.
function toMessage(env, bytes) {
  let data = bytes ?? (env.encoding === "base64" ? fromBase64(env.data) : env.data);
  if (typeof data === "string" && isBinaryType(env.content_type)) data = enc.encode(data);
  return { id: env.id, topic: env.topic, event: env.event ?? null, data, contentType: env.content_type ?? null,
    time: env.time ?? null };
}

// The data lines of a Server-Sent Events stream, event by event. crier's envelope mode puts
// the whole message (topic, id, event name, encoding) in `data:`, so the other fields are not
// needed. Read with fetch rather than EventSource: EventSource only hands events with an
// `event:` name to listeners registered for that very name, which a client cannot know.
async function readSSE(body, onData, onChunk) {
  const reader = body.getReader();
  const td = new TextDecoder();
  let buf = "", data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onChunk();
    buf += td.decode(value, { stream: true });
    let start = 0, nl;
    while ((nl = buf.indexOf("\n", start)) >= 0) {
      let line = buf.slice(start, nl);
      start = nl + 1;
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length) onData(data.join("\n"));
        data = [];
      } else if (line.startsWith("data:")) {
        data.push(line.slice(line[5] === " " ? 6 : 5));
      }
    }
    buf = buf.slice(start);
  }
}

// A transport or relay connection: `ready` settles once (usable, or failed before that),
// `done` resolves when it ends for any reason; end() is idempotent.
function link(name) {
  const ready = defer(), done = defer();
  const t = { name, closed: false, ready: ready.promise, done: done.promise };
  t.ready.catch(() => {});
  t.opened = () => ready.resolve(t);
  t.end = (err) => {
    if (t.closed) return;
    t.closed = true;
    ready.reject(err || crierError("closed", "closed"));
    if (t.cleanup) t.cleanup();
    done.resolve(err);
  };
  return t;
}

// Ends `c` if it has not opened within `ms`; gives its `ready`.
function within(c, ms) {
  const timer = setTimeout(() => c.end(crierError("timeout", `${c.name} did not open within ${ms} ms`)), ms);
  c.ready.then(() => clearTimeout(timer), () => clearTimeout(timer));
  return c.ready;
}

// ---------------------------------------------------------------------------------------
// The client

class Client {
  constructor(url, options = {}) {
    const loc = globalThis.location;
    this.url = new URL(url ?? loc.origin, loc && loc.href).href.replace(/\/+$/, "");
    this._wsUrl = this.url.replace(/^http/, "ws");
    const o = (this._o = {
      transports: TRANSPORTS, probeDelay: 1500, connectTimeout: 10000, upgradeInterval: 60000,
      maxFailures: Infinity, heartbeat: 25000, sseIdle: 45000, longPollWait: 25, ...options,
      backoff: { initial: 500, max: 30000, ...options.backoff },
    });
    // Looked up at each connection, not now: polyfills and test hooks may replace it later.
    this._ws = () => o.WebSocket ?? globalThis.WebSocket;
    const f = o.fetch ?? globalThis.fetch;
    this._fetch = (u, init) => f.call(globalThis, u, { cache: "no-store", ...init });
    o.transports = o.transports.filter((n) => TRANSPORTS.includes(n) && (n !== "websocket" || this._ws()));
    // Remember the transport that worked (localStorage by default) to start with it next time.
    const s = o.storage ?? true;
    this._storeKey = s === false ? null : typeof s === "string" ? s : s.key ?? `crier.transport ${this.url}`;
    try {
      this._store = this._storeKey ? (s && s.store) || globalThis.localStorage || null : null;
    } catch { this._store = null; }  // sandboxed frames throw on localStorage access

    this.state = "connecting";
    this.transport = null;
    this._entries = new Map();  // subscribed topic or pattern -> {key, subs, cursors, anchored}
    this._handlers = new Map();
    this._live = new Set();     // every transport not ended yet, chosen or still trying
    this._t = null;             // the transport in use
    this._pauser = {};
    this._closed = false;
    Promise.resolve().then(() => this._run());  // after the caller had a chance to call on()
  }

  // --- events -------------------------------------------------------------------------

  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this._handlers.get(event)?.delete(fn);
    return this;
  }

  _emit(event, arg) {
    const hs = this._handlers.get(event);
    if (event === "error" && !hs?.size) return console.error("crier:", arg);
    for (const fn of hs || []) this._call(fn, arg);
  }

  // Application callbacks must not break the client: their exceptions become 'error' events.
  _call(fn, arg) {
    if (!fn) return;
    try {
      fn(arg);
    } catch (e) {
      if (this._handlers.get("error")?.has(fn)) console.error("crier:", e);  // no loop
      else this._emit("error", e);
    }
  }

  _setState(s) {
    if (this.state !== s) this._emit("state", (this.state = s));
  }

  _setTransport(name) {
    if (this.transport !== name) this._emit("transport", (this.transport = name));
  }

  // --- public API -------------------------------------------------------------------------

  subscribe(topic, onMessage, options = {}) {
    checkTopic(topic, true);
    if (this._closed) throw crierError("closed", "client closed");
    let e = this._entries.get(topic);
    if (!e) {
      e = { key: topic, subs: new Set(), cursors: new Map(), anchored: false, anchoring: null, ready: defer() };
      e.ready.promise.catch(() => {});
      if (options.since != null) {
        // A given position is where to start: nothing to ask the hub. Checked here, since a
        // bad one would make every SSE or long-poll request of the client fail.
        const since = String(options.since);
        if (!SINCE.test(since) || (!since.includes("=") && since !== "0" && PATTERN.test(topic) && !NAME.test(topic)))
          throw crierError("invalid_id", `invalid since ${JSON.stringify(since)}`);
        if (since.includes("=")) parseCursorList(since, e.cursors);
        else if (since !== "0") e.cursors.set(topic, since);
        e.anchored = true;
        e.ready.resolve();
      }
      this._entries.set(topic, e);
      this._changed();
    }
    const sub = {
      topic, onMessage, onGap: options.onGap, onError: options.onError,
      ready: e.ready.promise,  // resolves once the hub has fixed where this subscription starts
      unsubscribe: () => {
        if (!e.subs.delete(sub) || e.subs.size || this._entries.get(topic) !== e) return;
        this._entries.delete(topic);
        this._changed();
      },
    };
    e.subs.add(sub);
    return sub;
  }

  async publish(topic, data, options = {}) {
    checkTopic(topic, false);
    if (this._closed) throw crierError("closed", "client closed");
    const t = this._t;
    if (t && t.publish && this.state === "open") return t.publish(topic, data, options);
    return this._post(topic, data, options);
  }

  // Drops the current connection and connects again at once (e.g. after a network change).
  reconnect() {
    if (this._closed) return;
    this._now = true;
    if (this._pauser.wake) this._pauser.wake();
    if (this.state === "failed") {
      this._setState("reconnecting");
      this._run();
    }
    else if (this._t) this._t.end(crierError("reconnect", "reconnect requested"));
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._upgradeTimer);
    if (this._pauser.wake) this._pauser.wake();
    for (const t of this._live) t.end(crierError("closed", "client closed"));
    if (this._relay) this._relay.close();
    this._setTransport(null);
    this._setState("closed");
  }

  // --- connection management ------------------------------------------------------------

  async _run() {
    // failures: attempts in a row that opened nothing (maxFailures counts these); flaps:
    // connections in a row that died within seconds, which must slow reconnects down too.
    let failures = 0, flaps = 0;
    while (!this._closed) {
      try {
        this._use(await this._establish());
        failures = 0;
        const opened = Date.now();
        // An upgrade may replace the transport in use: follow whichever is current.
        while (this._t && !this._closed) {
          const cur = this._t;
          await cur.done;
          if (this._t === cur) this._t = null;
        }
        flaps = Date.now() - opened < 5000 ? flaps + 1 : 0;
      } catch (e) {
        if (this._closed) return;
        if (++failures >= this._o.maxFailures) {
          this._setTransport(null);
          this._setState("failed");
          this._emit("error", crierError("failed", `gave up after ${failures} failed attempts: ${e.message}`));
          return;
        }
      }
      if (this._closed) return;
      clearTimeout(this._upgradeTimer);
      this._setTransport(null);
      this._setState("reconnecting");
      if (!this._now) await delay(backoff(this._o.backoff, failures + flaps), this._pauser);
      this._now = false;
    }
  }

  // Transports to try, in preference order, the one that worked last time first.
  _order() {
    const names = this._o.transports;
    let last = null;
    try { last = this._store && this._store.getItem(this._storeKey); } catch { /* storage disabled */ }
    return names.includes(last) ? [last, ...names.filter((n) => n !== last)] : [...names];
  }

  // Starts the first transport; when it has not opened within probeDelay (or failed), the
  // others start in parallel. The first to open wins, except that a more preferred one still
  // trying (other than the slow first) gets another probeDelay/2 to open too.
  _establish() {
    const names = this._order();
    if (!names.length) return Promise.reject(crierError("no_transport", "no usable transport"));
    return new Promise((resolve, reject) => {
      const tries = [];
      let done = false, probeTimer = null, holdTimer = null, lastErr = null;
      const finish = (winner) => {
        done = true;
        clearTimeout(probeTimer);
        clearTimeout(holdTimer);
        for (const a of tries) if (a.t !== winner) a.t.end(crierError("closed", "not chosen"));
        if (winner) resolve(winner);
        else reject(lastErr);
      };
      const start = (name) => {
        const a = { name, state: "pending", t: this._open(name) };
        tries.push(a);
        a.t.ready.then(() => { a.state = "open"; decide(); }, (e) => { a.state = "failed"; lastErr = e; decide(); });
      };
      const startRest = () => {
        clearTimeout(probeTimer);
        for (const n of names) if (!tries.some((a) => a.name === n)) start(n);
      };
      const decide = () => {
        if (done) return;
        if (tries[0].state === "failed" && tries.length < names.length) return startRest();
        const i = tries.findIndex((a) => a.state === "open");
        if (i === 0 || (i > 0 && tries.slice(1, i).every((a) => a.state === "failed"))) return finish(tries[i].t);
        if (i > 0 && !holdTimer)
          holdTimer = setTimeout(() => finish(tries.find((a) => a.state === "open").t), this._o.probeDelay / 2);
        if (tries.length === names.length && tries.every((a) => a.state === "failed")) finish(null);
      };
      start(names[0]);
      probeTimer = setTimeout(startRest, this._o.probeDelay);
    });
  }

  // A new transport, ended if it has not opened within connectTimeout.
  _open(name) {
    const t = name === "websocket" ? this._websocket() : name === "sse" ? this._sse() : this._longpoll();
    this._live.add(t);
    t.done.then(() => this._live.delete(t));
    within(t, this._o.connectTimeout).catch(() => {});
    return t;
  }

  _use(t) {
    this._t = t;
    this._setTransport(t.name);
    this._setState("open");
    try { if (this._store) this._store.setItem(this._storeKey, t.name); } catch { /* quota, disabled */ }
    t.sync();  // subscriptions made while it was opening
    clearTimeout(this._upgradeTimer);
    const o = this._o;
    if (t.name !== "websocket" && o.transports.includes("websocket") && o.upgradeInterval > 0)
      this._upgradeTimer = setTimeout(() => this._upgrade(t), o.upgradeInterval);
  }

  // On a fallback: try WebSocket again and switch when it works. The new connection resumes
  // from the cursors while the old one still runs, so the overlap is deduplicated, not lost.
  async _upgrade(old) {
    const t = this._open("websocket");
    try {
      await t.ready;
    } catch {
      if (this._t === old) this._use(old);  // schedules the next try
      return;
    }
    if (this._t !== old || this._closed) return t.end(crierError("closed", "not needed"));
    this._use(t);
    old.end(crierError("closed", "upgraded to websocket"));
  }

  // Subscriptions changed: let the transport in use follow, once per burst of calls.
  _changed() {
    if (this._syncQueued) return;
    this._syncQueued = true;
    queueMicrotask(() => {
      this._syncQueued = false;
      if (this._t && !this._t.closed) this._t.sync();
    });
  }

  // --- subscriptions: positions, delivery, gaps -----------------------------------------

  // A subscription made without `since` starts "now". To be able to resume it exactly after
  // a reconnect, even before its first message, ask the hub where "now" is: a zero-wait poll
  // answers 204 with the topic's (or the pattern's topics') position in Crier-Cursor.
  _anchor(e) {
    if (e.anchored) return Promise.resolve();
    if (!e.key.includes("*") && e.cursors.has(e.key)) {  // a message came first: that is the position
      e.anchored = true;
      e.ready.resolve();
      return Promise.resolve();
    }
    return (e.anchoring ??= (async () => {
      let res;
      try {
        res = await this._fetch(`${this.url}/topics/${pathTopic(e.key)}?wait=0`);
      } catch (err) {
        throw crierError("network", `cannot reach the hub: ${err.message}`);
      } finally {
        e.anchoring = null;
      }
      if (!res.ok) throw await httpError(res);  // e.g. forbidden: the subscription cannot work
      const cur = res.headers.get("crier-cursor") || "0";
      if (cur.includes("=")) parseCursorList(cur, e.cursors, true);
      else if (cur !== "0" && !cur.startsWith("00000000:") && !e.cursors.has(e.key)) e.cursors.set(e.key, cur);
      e.anchored = true;
      e.ready.resolve();
    })());
  }

  // Anchors every subscription; a refused one is dropped, a network failure fails the caller.
  _anchorAll() {
    return Promise.all([...this._entries.values()].map((e) => this._anchor(e).catch((err) => {
      if (!err.status) throw err;
      this._refused(e, err);
    })));
  }

  // The hub refused a subscription (invalid topic, forbidden...): end it and say so.
  _refused(e, err) {
    if (this._entries.get(e.key) !== e) return;
    this._entries.delete(e.key);
    err.topic = e.key;
    e.ready.reject(err);
    for (const s of e.subs) this._call(s.onError, err);
    this._emit("error", err);
    this._changed();
  }

  // Every message and gap of every transport comes through here.
  _envelope(env, bytes) {
    if (env.type === "gap") return this._gap(env);
    if (env.type !== "message") return;
    let msg = null;
    for (const e of [...this._entries.values()]) {
      if (!matches(e.key, env.topic)) continue;
      const cur = e.cursors.get(env.topic);
      if (cur && !isAfter(env.id, cur)) continue;  // already delivered (overlap of connections)
      e.cursors.set(env.topic, env.id);
      msg ??= toMessage(env, bytes);
      for (const s of [...e.subs]) this._call(s.onMessage, msg);
    }
  }

  _gap(env) {
    const next = splitId(env.next);
    const gap = { topic: env.topic, reason: env.reason, after: env.after ?? null, next: env.next ?? null,
      missed: env.missed ?? 0 };
    let any = false;
    for (const e of [...this._entries.values()]) {
      if (!matches(e.key, env.topic)) continue;
      const cur = splitId(e.cursors.get(env.topic));
      if (cur && next && cur[0] === next[0] && cur[1] >= next[1] - 1) continue;  // already past it
      // Resume from just before `next`: the same gap is not reported again after a reconnect.
      if (next) e.cursors.set(env.topic, `${next[0]}:${Math.max(0, next[1] - 1)}`);
      any = true;
      for (const s of [...e.subs]) this._call(s.onGap, gap);
    }
    if (any) this._emit("gap", gap);
  }

  // `/topics/a,b?since=…` for the HTTP transports.
  _topicsUrl(entries, query) {
    const q = new URLSearchParams({ ...query, since: sinceOfAll(entries) });
    return `${this.url}/topics/${entries.map((e) => pathTopic(e.key)).join(",")}?${q}`;
  }

  _keys() {
    return [...this._entries.keys()].sort().join(",");
  }

  // HTTP transports with nothing to subscribe to: show at least that the hub answers.
  async _probe(signal) {
    const res = await this._fetch(`${this.url}/healthz`, { signal });
    if (!res.ok) throw await httpError(res);
  }

  // POST /topics/{topic}: used by the HTTP transports, and whenever no WebSocket is open.
  async _post(topic, data, options) {
    let body = toBytes(data), type = options.contentType;
    if (typeof data === "string") body = enc.encode(data);  // no implicit text/plain type
    else if (!body) body = enc.encode(JSON.stringify(data)), type ??= "application/json";
    else type ??= "application/octet-stream";
    const q = options.event ? `?event=${encodeURIComponent(options.event)}` : "";
    let res;
    try {
      res = await this._fetch(`${this.url}/topics/${pathTopic(topic)}${q}`,
        { method: "POST", body, headers: type ? { "content-type": type } : {} });
    } catch (err) {
      throw crierError("network", `publish failed: ${err.message}`);
    }
    if (!res.ok) throw await httpError(res);
    return { id: (await res.json()).id };
  }

  // --- transports ---------------------------------------------------------------------------

  // /ws: one connection, one server-side subscription per subscribed topic or pattern.
  _websocket() {
    const t = link("websocket"), pending = new Map(), subscribed = new Set();
    let ws, ref = 0, hb = null, unanswered = 0;
    try {
      ws = new (this._ws())(`${this._wsUrl}/ws`, "crier.v1");
    } catch (e) {
      t.end(e);
      return t;
    }
    ws.binaryType = "arraybuffer";
    const call = (cmd, bytes) => new Promise((resolve, reject) => {
      cmd.ref = ++ref;
      pending.set(cmd.ref, { resolve, reject });
      ws.send(bytes ? frame(cmd, bytes) : JSON.stringify(cmd));
    });
    t.cleanup = () => {
      clearInterval(hb);
      for (const p of pending.values()) p.reject(crierError("disconnected", "connection lost before the answer"));
      pending.clear();
      try { ws.close(1000); } catch { /* not open yet */ }
    };
    ws.onerror = () => t.end(crierError("network", "websocket error"));
    ws.onclose = (ev) => t.end(crierError("closed", `websocket closed (${ev.code})`));
    ws.onmessage = (ev) => {
      if (t.closed) return;
      let m;
      try {
        if (typeof ev.data !== "string") return this._envelope(...unframe(ev.data));
        m = JSON.parse(ev.data);
      } catch (e) {
        return t.end(crierError("bad_frame", `unreadable frame: ${e.message}`));  // not a crier hub?
      }
      if (m.type === "message" || m.type === "gap") return this._envelope(m);
      const p = pending.get(m.ref);
      if (p) pending.delete(m.ref);
      if (m.type === "error") {
        const err = crierError(m.code, m.message);
        if (p) p.reject(err);
        else this._emit("error", err);
      } else if (p) {
        p.resolve(m);
      }
    };
    ws.onopen = async () => {
      try {
        // Something that accepts the upgrade but does not speak /ws (a proxy, a mock) fails here.
        await call({ type: "ping" });
        await this._anchorAll();
        await t.sync();
        t.opened();
        hb = setInterval(() => {  // a silent peer (half-open TCP) is noticed within two periods
          if (unanswered++ >= 1) return t.end(crierError("timeout", "no pong"));
          call({ type: "ping" }).then(() => { unanswered = 0; }, () => {});
        }, this._o.heartbeat);
      } catch (e) {
        t.end(e);
      }
    };
    t.sync = () => {
      const jobs = [];
      for (const [key, e] of this._entries) {
        if (subscribed.has(key)) continue;
        subscribed.add(key);
        jobs.push(this._anchor(e).catch((err) => { if (err.status) throw err; }).then(() => {
          if (this._entries.get(key) !== e || t.closed) return;
          return call({ type: "subscribe", topic: key, since: sinceOf(e) });
        }).catch((err) => {
          subscribed.delete(key);
          if (!t.closed) this._refused(e, err);
        }));
      }
      for (const key of subscribed) {
        if (this._entries.has(key)) continue;
        subscribed.delete(key);
        call({ type: "unsubscribe", topic: key }).catch(() => {});
      }
      return Promise.all(jobs);
    };
    t.publish = async (topic, data, options) => {
      const cmd = { type: "publish", topic };
      if (options.event) cmd.event = options.event;
      if (options.contentType) cmd.content_type = options.contentType;
      const bytes = toBytes(data);
      if (!bytes) cmd.data = data;  // a string, or any JSON value (published as JSON)
      const ack = await call(cmd, bytes);
      return { id: ack.id };
    };
    return t;
  }

  // SSE: one stream for every subscription, opened again whenever the set changes.
  _sse() {
    const t = link("sse");
    let ctl = null, gen = 0, keys = null;
    const open = async () => {
      const my = ++gen;
      if (ctl) ctl.abort();
      const ac = (ctl = new AbortController());
      let idle = null;
      const watchdog = () => {  // the hub sends heartbeats; silence means a dead connection
        clearTimeout(idle);
        idle = setTimeout(() => ac.abort(), this._o.sseIdle);
      };
      try {
        await this._anchorAll();
        if (my !== gen || t.closed) return;
        const entries = [...this._entries.values()];
        keys = this._keys();
        if (!entries.length) {
          await this._probe(ac.signal);
          return t.opened();
        }
        const startedAt = Date.now();
        watchdog();
        const res = await this._fetch(this._topicsUrl(entries, { envelope: "1" }),
          { headers: { accept: "text/event-stream" }, signal: ac.signal });
        if (!res.ok || !/^text\/event-stream/.test(res.headers.get("content-type") || "")) throw await httpError(res);
        t.opened();
        await readSSE(res.body, (data) => { if (my === gen) this._envelope(JSON.parse(data)); }, watchdog);
        if (my !== gen || t.closed) return;
        // The hub ended the stream (its stream time limit, a slow-consumer disconnect): go on
        // at once from the cursors, unless streams keep ending right away.
        if (Date.now() - startedAt < 1000) throw crierError("closed", "event stream ended");
        open();
      } catch (e) {
        if (my === gen) t.end(e);
      } finally {
        clearTimeout(idle);
      }
    };
    t.sync = () => { if (keys !== this._keys()) open(); };
    t.cleanup = () => { gen++; if (ctl) ctl.abort(); };
    open();
    return t;
  }

  // Long-poll: GET /topics/a,b?wait=25&since=… in a loop; the first request does not wait,
  // so that the transport is known to work at once.
  _longpoll() {
    const t = link("longpoll");
    let ctl = null, keys = null, restart = false, idle = {};
    t.sync = () => {
      if (keys === this._keys()) return;
      restart = true;
      if (ctl) ctl.abort();
      if (idle.wake) idle.wake();
    };
    t.cleanup = () => { if (ctl) ctl.abort(); if (idle.wake) idle.wake(); };
    (async () => {
      let wait = 0;
      while (!t.closed) {
        const ac = (ctl = new AbortController());
        restart = false;
        let timer = null;
        try {
          await this._anchorAll();
          const entries = [...this._entries.values()];
          keys = this._keys();
          if (!entries.length) {
            await this._probe(ac.signal);
            t.opened();
            if (!restart) await new Promise((r) => { idle.wake = r; });
            continue;
          }
          timer = setTimeout(() => ac.abort(), (wait + 15) * 1000);
          const res = await this._fetch(this._topicsUrl(entries, { wait }), { signal: ac.signal });
          if (res.status === 200) for (const m of (await res.json()).messages) this._envelope(m);
          else if (res.status !== 204) throw await httpError(res);
          t.opened();
          wait = this._o.longPollWait;
        } catch (e) {
          if (!restart || t.closed) return t.end(e);
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return t;
  }

  // --- relay ------------------------------------------------------------------------------

  // A public URL whose HTTP requests this client answers (docs/relay.md). One relay per
  // client; calling again replaces the handler and returns the same relay.
  relay(handler) {
    if (typeof handler !== "function") throw new TypeError("relay(handler): handler must be a function");
    if (this._closed) return Promise.reject(crierError("closed", "client closed"));
    this._relayHandler = handler;
    return (this._relayPromise ??= this._relayRun());
  }

  _relayRun() {
    const first = defer(), pauser = {};
    let conn = null;
    const r = (this._relay = {
      url: null, token: null, secret: null, transport: null, closed: false,
      close: () => {
        r.closed = true;
        if (conn) conn.end(crierError("closed", "relay closed"));
        if (pauser.wake) pauser.wake();
      },
    });
    (async () => {
      let failures = 0;
      while (!r.closed && !this._closed) {
        try {
          conn = await this._relayConnect(r);
          if (r.closed || this._closed) return conn.end(crierError("closed", "relay closed"));
          failures = 0;
          first.resolve(r);
          const err = await conn.done;
          if (err && err.code === "replaced") throw err;
        } catch (e) {
          if (e.code === "replaced" || ++failures >= this._o.maxFailures) {
            r.closed = true;
            first.reject(e);
            this._emit("error", crierError(e.code || "failed", `relay: ${e.message}`));
            return;
          }
        }
        if (!r.closed) await delay(backoff(this._o.backoff, failures), pauser);
      }
    })();
    return first.promise;
  }

  // WebSocket when allowed and it answers within probeDelay, else the long-poll pair.
  async _relayConnect(r) {
    if (this._o.transports.includes("websocket")) {
      try {
        return await within(this._relayWebSocket(r), this._o.probeDelay);
      } catch (e) {
        if (e.code === "replaced") throw e;
      }
    }
    return within(this._relayLongPoll(r), this._o.connectTimeout);
  }

  // token+secret are kept so that a reconnect gets the same URL back ("resumed").
  // 'relay' event on every (re)connection; `resumed` false with a new url if the token expired.
  _relayReady(r, m, transport) {
    Object.assign(r, { url: m.url, token: m.token, secret: m.secret, transport });
    this._emit("relay", { url: m.url, transport, resumed: !!m.resumed });
  }

  _relayWebSocket(r) {
    const c = link("websocket");
    let ws, hb = null, unanswered = 0;
    try {
      ws = new (this._ws())(`${this._wsUrl}/relay`);
    } catch (e) {
      c.end(e);
      return c;
    }
    ws.binaryType = "arraybuffer";
    c.cleanup = () => { clearInterval(hb); try { ws.close(1000); } catch { /* not open yet */ } };
    ws.onerror = () => c.end(crierError("network", "relay websocket error"));
    ws.onclose = (ev) => c.end(ev.code === 4000 ? crierError("replaced", "another connection took this relay over")
      : crierError("closed", `relay websocket closed (${ev.code})`));
    ws.onopen = () => ws.send(JSON.stringify(r.token ? { type: "hello", token: r.token, secret: r.secret } : { type: "hello" }));
    ws.onmessage = (ev) => {
      if (c.closed) return;
      let m, body;
      try {
        [m, body] = typeof ev.data === "string" ? [JSON.parse(ev.data)] : unframe(ev.data);
      } catch (e) {
        return c.end(crierError("bad_frame", `relay: unreadable frame: ${e.message}`));
      }
      if (m.type === "request") {
        this._relayServe(m, body, (res) => {
          if (!c.closed) ws.send(frame({ type: "response", id: m.id, status: res.status, headers: res.headers }, res.body));
        });
      } else if (m.type === "ready") {
        this._relayReady(r, m, "websocket");
        c.opened();
        clearInterval(hb);
        hb = setInterval(() => {
          if (unanswered++ >= 1) return c.end(crierError("timeout", "no pong"));
          ws.send('{"type":"ping"}');
        }, this._o.heartbeat);
      } else if (m.type === "pong") {
        unanswered = 0;
      } else if (m.type === "error") {
        this._emit("error", crierError(m.code, `relay: ${m.message}`));
      }
    };
    return c;
  }

  _relayLongPoll(r) {
    const c = link("longpoll");
    let ctl = null;
    c.cleanup = () => { if (ctl) ctl.abort(); };
    (async () => {
      try {
        const res = await this._fetch(`${this.url}/relay`, {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify(r.token ? { token: r.token, secret: r.secret } : {}),
        });
        if (!res.ok) throw await httpError(res);
        this._relayReady(r, await res.json(), "longpoll");
        c.opened();
        const base = `${this.url}/relay/${r.token}/.well-known/crier-relay`;
        const headers = { "crier-relay-secret": r.secret };
        while (!c.closed) {
          const ac = (ctl = new AbortController());
          const timer = setTimeout(() => ac.abort(), 40000);
          let q;
          try {
            q = await this._fetch(`${base}/requests?wait=25`, { headers, signal: ac.signal });
            if (!q.ok) throw await httpError(q);
            q = await q.json();
          } finally {
            clearTimeout(timer);
          }
          for (const h of q.requests || []) {
            this._relayServe(h, null, (res) => this._fetch(`${base}/responses`, {
              method: "POST", headers: { ...headers, "content-type": "application/json" },
              body: JSON.stringify({ id: h.id, status: res.status, headers: res.headers, body_base64: toBase64(res.body) }),
            }).then(async (a) => { if (!a.ok) throw await httpError(a); })
              .catch((e) => this._emit("error", crierError(e.code || "network", `relay answer failed: ${e.message}`))));
          }
        }
      } catch (e) {
        c.end(e);
      }
    })();
    return c;
  }

  // Runs the handler for one relayed request; its answer (or a 500) goes back via `reply`.
  _relayServe(h, body, reply) {
    body ??= h.body_base64 != null ? fromBase64(h.body_base64) : enc.encode(h.body ?? "");  // JSON requests
    const headers = {};
    for (const [k, v] of h.headers || []) headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    const req = { id: h.id, method: h.method, path: h.path, headers, body,
      text: () => dec.decode(body), json: () => JSON.parse(dec.decode(body)) };
    Promise.resolve().then(() => this._relayHandler(req)).then((res) => {
      res = res || {};
      let out = res.body == null ? new Uint8Array(0) : typeof res.body === "string" ? enc.encode(res.body) : toBytes(res.body);
      const hs = Array.isArray(res.headers) ? res.headers : Object.entries(res.headers || {});
      if (!out) {  // any other value: JSON
        out = enc.encode(JSON.stringify(res.body));
        if (!hs.some(([k]) => k.toLowerCase() === "content-type")) hs.push(["content-type", "application/json"]);
      }
      return { status: res.status ?? 200, headers: hs.map(([k, v]) => [String(k), String(v)]), body: out };
    }, (e) => {
      this._emit("error", e);
      return { status: 500, headers: [["content-type", "text/plain"]], body: enc.encode("relay handler failed") };
    }).then(reply).catch((e) => this._emit("error", e));
  }
}

function connect(url, options) {
  return new Client(url, options);
}

// @crier-exports
export { connect, Client };
export default { connect, Client };
