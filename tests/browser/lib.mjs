// Shared helpers for the Node/Chromium tests: start crier_server on a free loopback port,
// publish, read /metrics, and wait on the server's state rather than on time.
import { spawn } from "node:child_process";
import { once } from "node:events";
import readline from "node:readline";

export async function startServer(args = []) {
  const bin = process.env.CRIER_SERVER;
  if (!bin) throw new Error("set CRIER_SERVER");
  const proc = spawn(bin, ["--listen", "127.0.0.1:0", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const rl = readline.createInterface({ input: proc.stdout });
  const [line] = await once(rl, "line");
  const m = /http:\/\/([\d.]+):(\d+)\//.exec(line);
  if (!m) throw new Error("crier_server did not start: " + line);
  const url = `http://${m[1]}:${m[2]}`;
  return {
    url,
    proc,
    async publish(topic, body, headers = {}) {
      const r = await fetch(`${url}/topics/${topic}`, { method: "POST", body, headers });
      if (r.status !== 200) throw new Error(`publish ${r.status} ${await r.text()}`);
      return (await r.json()).id;
    },
    async metric(name) {
      const text = await (await fetch(`${url}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`crier_${name} `));
      return Number(line.split(" ")[1]);
    },
    async waitMetric(name, pred, timeoutMs = 10000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = await this.metric(name);
        if (pred(v)) return v;
        if (Date.now() > deadline) throw new Error(`metric ${name} stuck at ${v}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill("SIGTERM");
      const [code] = await once(proc, "exit");
      return code;
    },
  };
}

// Runs named async tests, prints "N passed, M failed", exits non-zero on failure.
export async function run(tests) {
  let passed = 0, failed = 0;
  for (const [name, fn] of Object.entries(tests)) {
    const t0 = Date.now();
    try {
      await fn();
      passed++;
      console.log(`PASS ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e.stack || e}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed || !passed ? 1 : 0);
}

export function assert(cond, msg) {
  if (!cond) throw new Error("assertion failed: " + msg);
}
