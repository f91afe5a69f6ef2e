// crier.js in headless Chromium: WebSocket, then SSE when WebSocket is blocked, then long-poll
// when SSE is blocked too, with messages published all along and none lost or repeated;
// reconnecting after the hub restarts (a reset gap for the lost epoch); and the relay
// answering a webhook delivered to the page's URL; the classic-script build.
//
// The page is on the hub's origin and imports /crier.js from it.
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer, run, assert } from "./lib.mjs";

const chromiumArgs = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"];
const crierJs = fileURLToPath(new URL("../../clients/js/crier.js", import.meta.url));
const show = (v) => { const s = String(JSON.stringify(v)); return s.length > 1500 ? s.slice(0, 1500) + "…" : s; };
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// One browser per test, closed in its `finally` (run() exits the process at the end).
let browser;
const launch = async () => (browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: chromiumArgs }));

// A page on the hub's origin with crier.js imported as window.crier and a client window.c
// whose deliveries, gaps, states and transports are logged in window.log.
async function openPage(s, options = {}) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log("page error:", e.message));
  await page.goto("about:blank");
  // The hub's copy must be this file (scripts/gen-client-js not run: old code under test).
  const served = await fetch(`${s.url}/crier.js`);
  assert(served.status === 200 && /javascript/.test(served.headers.get("content-type")), `GET /crier.js: ${served.status}`);
  assert((await served.text()) === fs.readFileSync(crierJs, "utf8"),
    "the hub serves another crier.js than clients/js/crier.js: run scripts/gen-client-js and rebuild");
  await page.goto(`${s.url}/healthz`);
  await page.evaluate(async (options) => {
    window.crier = await import("/crier.js");
    const log = (window.log = { got: [], ids: [], gaps: [], states: [], transports: [], errors: [] });
    const c = (window.c = window.crier.connect(location.origin, options));
    c.on("state", (s) => log.states.push(s));
    c.on("transport", (t) => { if (t) log.transports.push(t); });
    c.on("error", (e) => log.errors.push(`${e.code}: ${e.message}`));
  }, { storage: false, probeDelay: 500, backoff: { initial: 50, max: 300 }, upgradeInterval: 600000, ...options });
  return page;
}

// Subscribes the page's client to `topic`, logging data and gaps; resolves when in effect.
const subscribe = (page, topic) => page.evaluate(async (topic) => {
  const sub = window.c.subscribe(topic, (m) => { window.log.got.push(m.data); window.log.ids.push(m.id); },
    { onGap: (g) => window.log.gaps.push(g) });
  await sub.ready;
}, topic);

// Waits for a condition in the page; on timeout says what the client was doing.
async function waitFor(page, fn, arg, ms = 15000) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: "raf" });
  } catch (e) {
    const st = await page.evaluate(() => ({ state: window.c?.state, transport: window.c?.transport,
      got: window.log?.got.length, log: { ...window.log, got: undefined, ids: undefined } })).catch((x) => x.message);
    throw new Error(`${e.message.split("\n")[0]} waiting for ${fn}: ${show(st)}`);
  }
}

await run({
  async falls_back_websocket_to_sse_to_longpoll_without_loss() {
    const s = await startServer();
    await launch();
    const page = await openPage(s);
    const sent = [];
    let stop = false, publisher = null;
    try {
      await subscribe(page, "seq");
      await waitFor(page, () => window.c.transport === "websocket");
      // Publish continuously from here on, while the page changes transports twice.
      publisher = (async () => {
        while (!stop) {
          const body = `m${sent.length}`;
          sent.push(body);
          await s.publish("seq", body);
        }
      })();
      const received = () => page.evaluate(() => window.log.got.length);
      await waitFor(page, () => window.log.got.length >= 20);

      // WebSocket blocked: the handshake of any new /ws connection is refused.
      await page.routeWebSocket(/\/ws$/, (ws) => ws.close());
      await page.evaluate(() => window.c.reconnect());
      await waitFor(page, () => window.c.transport === "sse");
      const onSse = await received();
      await waitFor(page, (n) => window.log.got.length >= n + 20, onSse);

      // SSE blocked too: requests for event streams fail.
      await page.route(/\/topics\//, (route) =>
        /text\/event-stream/.test(route.request().headers().accept ?? "") ? route.abort() : route.continue());
      await page.evaluate(() => window.c.reconnect());
      await waitFor(page, () => window.c.transport === "longpoll");
      const onPoll = await received();
      await waitFor(page, (n) => window.log.got.length >= n + 20, onPoll);

      stop = true;
      await publisher;
      await waitFor(page, (n) => window.log.got.length >= n, sent.length);
      const log = await page.evaluate(() => window.log);
      assert(log.got.length === sent.length, `got ${log.got.length} of ${sent.length}`);
      const firstBad = log.got.findIndex((m, i) => m !== sent[i]);
      assert(firstBad === -1, `sequence differs at ${firstBad}: ${show(log.got.slice(firstBad, firstBad + 5))}`);
      assert(new Set(log.ids).size === log.ids.length, "an id delivered twice");
      assert(same(log.transports, ["websocket", "sse", "longpoll"]), show(log.transports));
      assert(log.gaps.length === 0 && log.errors.length === 0, show(log));
      console.log(`  ${sent.length} messages; ${onSse} before SSE, ${onPoll} before long-poll`);
    } finally {
      stop = true;
      await publisher?.catch(() => {});
      await browser.close();
      await s.stop();
    }
  },

  async reconnects_and_resumes_after_hub_restart() {
    let s = await startServer();
    const port = new URL(s.url).port;
    await launch();
    const page = await openPage(s);
    try {
      await subscribe(page, "r");
      await waitFor(page, () => window.c.state === "open");
      const r1 = await s.publish("r", "r1");
      await waitFor(page, () => window.log.got.length === 1);
      await s.stop();
      await waitFor(page, () => window.c.state === "reconnecting");
      s = await startServer(["--listen", `127.0.0.1:${port}`]);
      await waitFor(page, () => window.c.state === "open");
      await s.publish("r", "r2");
      await waitFor(page, () => window.log.got.length === 2);
      const log = await page.evaluate(() => window.log);
      assert(same(log.got, ["r1", "r2"]), show(log.got));
      assert(log.gaps.length === 1 && log.gaps[0].reason === "reset" && log.gaps[0].after === r1, show(log.gaps));
      assert(log.ids[1].split(":")[0] !== r1.split(":")[0], `same epoch after the restart: ${show(log.ids)}`);
      assert(log.transports.at(-1) === "websocket" && log.states.includes("reconnecting"), show(log));
    } finally {
      await browser.close();
      await s.stop();
    }
  },

  async classic_script_defines_global() {
    const s = await startServer();
    await launch();
    const page = await browser.newPage();
    try {
      await page.goto(`${s.url}/healthz`);
      await page.addScriptTag({ url: "/crier.classic.js" });
      const kind = await page.evaluate(() => typeof globalThis.crier?.connect);
      assert(kind === "function", `crier.connect is ${kind}`);
      await page.evaluate(() => new Promise((resolve, reject) => {
        const c = globalThis.crier.connect(location.origin, { storage: false });
        c.on("state", (st) => { if (st === "open") { c.close(); resolve(); } });
        setTimeout(() => reject(new Error(`state ${c.state}`)), 5000);
      }));
    } finally {
      await browser.close();
      await s.stop();
    }
  },

  async relay_answers_a_webhook_delivered_to_the_page() {
    const s = await startServer();  // no --webhook-allow: relay targets are delivered in-process
    await launch();
    const page = await openPage(s);
    try {
      const url = await page.evaluate(async () => {
        window.hooks = [];
        const r = await window.c.relay((req) => {
          window.hooks.push({ method: req.method, path: req.path, headers: req.headers, body: req.text() });
          return { status: 204 };
        });
        return r.url;
      });
      assert(/\/relay\/[0-9a-f]{32}$/.test(url), `relay url ${url}`);
      const created = await fetch(`${s.url}/api/v1/subscriptions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ target_url: `${url}/hook`, topics: ["orders/*"] }),
      });
      const createdText = await created.text();
      assert(created.status === 201, `create subscription: ${created.status} ${createdText}`);
      const sub = JSON.parse(createdText);
      const id = await s.publish("orders/1", JSON.stringify({ n: 1 }), { "content-type": "application/json" });
      await waitFor(page, () => window.hooks.length >= 1);
      const hooks = await page.evaluate(() => window.hooks);
      const h = hooks[0];
      assert(h.method === "POST" && h.path === "/hook" && h.body === '{"n":1}', show(h));
      assert(h.headers["crier-topic"] === "orders/1" && h.headers["crier-id"] === id, show(h.headers));
      // The hub counts it delivered (the page answered 204). The counter has no event to
      // await: poll it (bounded).
      let stats;
      for (const t0 = Date.now(); Date.now() - t0 < 5000;) {
        stats = await (await fetch(`${s.url}/api/v1/subscriptions/${sub.id}`)).json();
        if (stats.stats?.delivered === 1) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert(stats.stats?.delivered === 1, `subscription stats ${show(stats)}`);
    } finally {
      await browser.close();
      await s.stop();
    }
  },
});
