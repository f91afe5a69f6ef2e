// The demo page crier_server serves at "/" (examples/index.html.inc), driven in headless
// Chromium as a visitor would: the transport shown, publishing from the page's form, blocking
// WebSocket (then SSE) and watching the client fall back with no tick lost or repeated, the
// relay URL answering a request from here, and a topic delivered to the page as webhooks.
//
//   CRIER_SERVER=/path/to/crier_server node tests/browser/demo_page.mjs
import { chromium } from "playwright-core";
import { startServer, run, assert } from "./lib.mjs";

const chromiumArgs = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"];
const WAIT = 10000;

// The whole run is bounded: a hang fails instead of waiting for CTest's timeout.
const watchdog = setTimeout(() => {
  console.log("FAIL demo_page: still running after 60 s");
  server?.proc.kill("SIGKILL");
  process.exit(1);
}, 60000);
watchdog.unref();

let server, browser, page;
const pageErrors = [], foreign = [];

const text = (sel) => page.textContent(sel);
// Waits until `fn(arg)` is true in the page; on timeout tells what the page showed.
async function until(fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT });
  } catch (e) {
    const shown = await page.evaluate(() => ({
      state: document.getElementById("state").textContent,
      transport: document.getElementById("transport").textContent,
      messages: [...document.querySelectorAll("#messages > li")].slice(0, 6).map((li) => li.textContent),
      log: [...document.querySelectorAll("#connlog li")].slice(0, 8).map((li) => li.textContent),
    })).catch((x) => x.message);
    throw new Error(`timeout waiting for ${what}: ${JSON.stringify(shown)}`);
  }
}
const transportIs = (t) => until((t) => document.getElementById("transport").textContent === t, t, `transport ${t}`);
// The message row with this payload, once listed: its id and the transport chip shown.
async function listed(data) {
  await until((d) => [...document.querySelectorAll("#messages .msg .data")].some((e) => e.textContent === d), data,
    `message ${JSON.stringify(data)} listed`);
  return page.evaluate((d) => {
    const li = [...document.querySelectorAll("#messages .msg")].find((l) => l.querySelector(".data").textContent === d);
    return { id: li.dataset.id, chip: li.querySelector(".chip.tr").textContent, meta: li.querySelector(".meta").textContent };
  }, data);
}
const stats = () => page.evaluate(() => Object.fromEntries(["sent", "recv", "lost", "dup"]
  .map((k) => [k, Number(document.getElementById("st-" + k).textContent)])));

run({
  async "the page loads from the hub and connects over WebSocket"() {
    server = await startServer();
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: chromiumArgs });
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith(server.url + "/") && !u.startsWith("data:")) foreign.push(u);
    });
    const res = await page.goto(server.url + "/");
    assert(res.status() === 200 && /text\/html/.test(res.headers()["content-type"]), `GET /: ${res.status()}`);
    assert((await page.title()).includes("crier"), `title ${await page.title()}`);
    await transportIs("websocket");
    assert(await text("#state") === "open", `state ${await text("#state")}`);
    assert(await page.getAttribute("#ladder li.active", "data-t") === "websocket", "the ladder shows WebSocket");
    assert((await text("#pub-curl")) === `curl -d hello ${server.url}/topics/demo`, `curl line: ${await text("#pub-curl")}`);
    for (const href of ["metrics", "healthz"]) assert(await page.$(`a[href="${href}"]`), `a link to /${href}`);
  },

  async "a message published from the page's form is listed with its id, topic and transport"() {
    await page.fill("#pub-text", "hello from the form");
    await page.click("#pub-form button");
    const row = await listed("hello from the form");
    assert(/^[0-9a-f]{8}:[1-9]\d*$/.test(row.id), `id ${row.id}`);
    assert(row.chip === "WebSocket", `carried by ${row.chip}`);
    assert(row.meta.includes("demo"), `meta ${row.meta}`);
    assert((await text("#pub-result")).includes(row.id), `publish result: ${await text("#pub-result")}`);
    assert(await page.inputValue("#pub-text") === "", "the form is cleared");
  },

  async "Block WebSocket: the client goes over SSE and gets what is published next"() {
    await page.check("#block-ws", { force: true });  // the checkbox is drawn as a switch
    await transportIs("sse");
    assert(await page.getAttribute("#ladder li.blocked", "data-t") === "websocket", "WebSocket shown as blocked");
    const id = await server.publish("demo", "published while WebSocket is blocked");
    const row = await listed("published while WebSocket is blocked");
    assert(row.id === id && row.chip === "SSE", `row ${JSON.stringify(row)}, published ${id}`);
  },

  async "the relay URL answers a request from here, and the page lists it"() {
    await until(() => document.getElementById("relay-url").textContent.startsWith("http"), null, "relay URL");
    const url = await text("#relay-url");
    assert(url.startsWith(server.url + "/relay/"), `relay url ${url}`);
    assert(await text("#relay-curl") === `curl -d hello ${url}/anything`, `curl line ${await text("#relay-curl")}`);
    const res = await fetch(url + "/from-node?x=1", {
      method: "POST", body: JSON.stringify({ hello: "relay" }),
      headers: { "content-type": "application/json", "x-demo": "yes" },
    });
    const body = await res.text();
    assert(res.status === 200 && /application\/json/.test(res.headers.get("content-type")), `answer ${res.status} ${body}`);
    const answer = JSON.parse(body);
    assert(answer.ok === true && answer.request === 1, `answer ${body}`);
    const sel = '#requests li[data-path="/from-node?x=1"]';
    await until((s) => document.querySelector(s), sel, "the request listed");
    const shown = await page.$eval(sel, (li) => ({
      method: li.dataset.method, body: li.querySelector("pre")?.textContent, all: li.querySelector("details").textContent,
      answer: li.querySelector(".answer").textContent,
    }));
    assert(shown.method === "POST", `method ${shown.method}`);
    assert(JSON.parse(shown.body).hello === "relay", `body ${shown.body}`);
    assert(shown.all.includes("x-demo") && shown.all.includes("yes"), `headers ${shown.all}`);
    assert(shown.answer.includes("200") && shown.answer.includes(body), `answer shown ${shown.answer}`);
  },

  async "Deliver as webhooks: a published message arrives both live and as a signed webhook"() {
    await page.click("#deliver");
    await until(() => document.querySelector("#hooks li"), null, "the webhook subscription listed");
    const subs = await (await fetch(server.url + "/api/v1/subscriptions")).json();
    const relayUrl = await text("#relay-url");
    const mine = subs.data.filter((s) => s.target_url === relayUrl + "/webhook");
    assert(mine.length === 1 && JSON.stringify(mine[0].topics) === '["demo"]' && mine[0].signed,
      `subscriptions ${JSON.stringify(subs)}`);
    const id = await server.publish("demo", "delivered as a webhook");
    await listed("delivered as a webhook");
    const sel = '#requests li[data-path="/webhook"]';
    await until((s) => [...document.querySelectorAll(s)].some((li) => li.querySelector("pre")?.textContent === "delivered as a webhook"),
      sel, "the webhook listed");
    await until((s) => document.querySelector(s + " .sig").textContent !== "checking signature…", sel, "signature checked");
    const hook = await page.$eval(sel, (li) => ({
      kv: Object.fromEntries([...li.querySelectorAll(".kv dt")].map((dt) => [dt.textContent, dt.nextElementSibling.textContent])),
      sig: li.querySelector(".sig").className, badge: li.querySelector(".badge-hook")?.textContent,
    }));
    assert(hook.badge === "webhook", `badge ${hook.badge}`);
    assert(hook.kv["crier-id"] === id && hook.kv["crier-topic"] === "demo", `headers ${JSON.stringify(hook.kv)}`);
    assert(/^msg_/.test(hook.kv["webhook-id"]) && /^v1,/.test(hook.kv["webhook-signature"]), `headers ${JSON.stringify(hook.kv)}`);
    assert(hook.sig === "sig ok", `the page verified the signature: ${hook.sig}`);
    await until((id) => document.querySelector(`#messages .msg[data-id="${id}"] .hooked`), id, "the live row marked as webhooked");
    await page.click("#hooks li button");  // Stop
    await until(() => !document.querySelector("#hooks li"), null, "the subscription gone from the page");
    const left = (await (await fetch(server.url + "/api/v1/subscriptions")).json()).data;
    assert(!left.some((s) => s.target_url === relayUrl + "/webhook"), `Stop deleted it: ${JSON.stringify(left)}`);
  },

  async "Block SSE too: long-poll, with auto-publish running and no tick lost or repeated"() {
    await page.check("#auto", { force: true });
    await until(() => Number(document.getElementById("st-recv").textContent) >= 3, null, "3 ticks received over SSE");
    await page.check("#block-sse", { force: true });
    await transportIs("longpoll");
    const at = (await stats()).recv;
    await until((n) => Number(document.getElementById("st-recv").textContent) >= n + 3, at, "3 more ticks over long-poll");
    await page.uncheck("#block-ws", { force: true });
    await page.uncheck("#block-sse", { force: true });
    await transportIs("websocket");
    const back = (await stats()).recv;
    await until((n) => Number(document.getElementById("st-recv").textContent) >= n + 2, back, "ticks over WebSocket again");
    await page.uncheck("#auto", { force: true });
    await until(() => document.getElementById("st-recv").textContent === document.getElementById("st-sent").textContent,
      null, "every tick sent received");
    const s = await stats();
    assert(s.lost === 0 && s.dup === 0 && s.sent >= 8, `stats ${JSON.stringify(s)}`);
    const chips = await page.$$eval("#messages .msg .chip.tr", (cs) => [...new Set(cs.map((c) => c.textContent))]);
    assert(["WebSocket", "SSE", "long-poll"].every((t) => chips.includes(t)), `transports listed ${chips}`);
    const seqs = await page.$$eval("#messages .msg", (rows) => rows.map((r) => Number(r.dataset.id.split(":")[1])));
    assert(seqs.every((s, i) => i === 0 || s === seqs[i - 1] - 1), `ids newest first without holes: ${seqs}`);
  },

  async "no page errors and nothing loaded from anywhere but the hub"() {
    assert(!pageErrors.length, `page errors: ${pageErrors}`);
    assert(!foreign.length, `requests elsewhere: ${foreign}`);
  },

  async "the hub stops cleanly"() {
    await browser?.close();
    browser = null;
    const code = await server.stop();
    assert(code === 0, `exit code ${code}`);
  },
});
