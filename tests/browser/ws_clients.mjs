// WebSocket with npm's ws (strict: WS_ERR_* on any protocol violation) and Chromium's WebSocket.
import WebSocket from "ws";
import { chromium } from "playwright-core";
import { startServer, run, assert } from "./lib.mjs";

const chromiumArgs = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

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
});
