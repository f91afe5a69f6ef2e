// SSE with independent clients: Chromium's EventSource (the reference: reconnects with
// Last-Event-ID, honours retry:) and npm's eventsource package.
import { chromium } from "playwright-core";
import { EventSource } from "eventsource";
import { startServer, run, assert } from "./lib.mjs";

const chromiumArgs = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

await run({
  async chromium_eventsource_receives_and_resumes_across_reconnects() {
    // Streams end every 700 ms; Chromium reconnects after retry (50 ms) with Last-Event-ID.
    const s = await startServer(["--max-stream-ms", "700", "--retry-ms", "50"]);
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: chromiumArgs });
    try {
      const page = await browser.newPage();
      await page.goto(`${s.url}/healthz`);  // same origin as the stream
      await page.evaluate(() => {
        window.got = [];
        window.ids = [];
        const es = new EventSource("/topics/browser");
        es.onmessage = (e) => { window.got.push(e.data); window.ids.push(e.lastEventId); };
      });
      await s.waitMetric("streams", (v) => v === 1);
      // Publish continuously until Chromium has reconnected at least twice.
      const sent = [];
      while ((await s.metric("streams_opened_total")) < 3) {
        const body = `m${sent.length}\nline two`;
        sent.push(body);
        await s.publish("browser", body);
      }
      await page.waitForFunction((n) => window.got.length >= n, sent.length, { timeout: 15000 });
      const got = await page.evaluate(() => window.got);
      const ids = await page.evaluate(() => window.ids);
      assert(got.length === sent.length, `got ${got.length} of ${sent.length}`);
      assert(JSON.stringify(got) === JSON.stringify(sent), "messages differ or are out of order");
      const seqs = ids.map((i) => Number(i.split(":")[1]));
      assert(seqs.every((q, i) => i === 0 || q === seqs[i - 1] + 1), "ids not consecutive");
    } finally {
      await browser.close();
      await s.stop();
    }
  },

  async chromium_sees_gap_event_and_binary() {
    const s = await startServer(["--history-messages", "2"]);
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: chromiumArgs });
    try {
      const ids = [];
      for (let i = 0; i < 5; i++) ids.push(await s.publish("g", `v${i}`));
      const page = await browser.newPage();
      await page.goto(`${s.url}/healthz`);
      await page.evaluate((since) => {
        window.events = [];
        const es = new EventSource(`/topics/g?since=${since}`);
        es.onmessage = (e) => window.events.push(["message", e.data]);
        es.addEventListener("gap", (e) => window.events.push(["gap", JSON.parse(e.data).missed]));
        es.addEventListener("binary", (e) => window.events.push(["binary", e.data]));
      }, ids[0]);
      await page.waitForFunction(() => window.events.length >= 3);
      await s.publish("g", new Uint8Array([0, 255, 1]));
      await page.waitForFunction(() => window.events.length >= 4);
      const ev = await page.evaluate(() => window.events);
      assert(JSON.stringify(ev) === JSON.stringify([["gap", 2], ["message", "v3"], ["message", "v4"], ["binary", "AP8B"]]),
        JSON.stringify(ev));
    } finally {
      await browser.close();
      await s.stop();
    }
  },

  async npm_eventsource_receives_in_order() {
    const s = await startServer();
    try {
      const es = new EventSource(`${s.url}/topics/npm`);
      const got = [];
      const done = new Promise((resolve, reject) => {
        es.onmessage = (e) => { got.push(e.data); if (got.length === 20) resolve(); };
        setTimeout(() => reject(new Error(`timeout with ${got.length}`)), 10000);
      });
      await s.waitMetric("streams", (v) => v === 1);
      for (let i = 0; i < 20; i++) await s.publish("npm", `n${i}`);
      await done;
      es.close();
      assert(got.join(",") === Array.from({ length: 20 }, (_, i) => `n${i}`).join(","), got.join(","));
    } finally {
      await s.stop();
    }
  },
});
