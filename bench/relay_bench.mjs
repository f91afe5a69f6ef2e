#!/usr/bin/env node
// The relay benchmark's helper (bench/run_relay.sh): every process of one measurement, the run
// that starts them, and the markdown report. Node 18+, npm `ws` from tests/browser/node_modules.
// Loopback only; every process ends by itself (--max-seconds) and the run stops the ones it
// started by PID.
//
//   relay_bench.mjs run --kind http --route direct|ws|lp --base URL --server-pid PID --conns N
//                       --size B --seconds S --out FILE.json            # one relayed-HTTP measurement
//   relay_bench.mjs run --kind hook --route relay|http|cpp --base URL --server-pid PID --subs N
//                       --count K | --rate R --seconds S --out FILE.json  # one webhook measurement
//   relay_bench.mjs report --out-dir DIR --md FILE                       # the tables
//
// The parts (each prints one JSON line when ready, reads commands on stdin, prints one JSON
// line with its results and exits; `run` spawns them):
//   origin                    plain Node http server answering like the relay clients (no relay)
//   ws-client --base URL      relay client over WebSocket (binary answers)
//   lp-client --base URL      relay client over the long-poll pair (answers in batches)
//   hook-http --healthy N     N loopback webhook receivers (one port = one subscription)
//   ws-client --hook          the relay client as a webhook receiver
//   load --url U --conns N --size B --seconds S    keep-alive HTTP POST load (http.Agent)
//   publish --base URL --count K [--rate R]      pipelined publisher on one connection
//
// Answer of every relay client / origin to a load request: 200, content-type
// application/octet-stream, the request body echoed back. Webhook receivers answer 200, empty.
// Webhook bodies start with `#<seq>:<t_ns>#` (t_ns = CLOCK_MONOTONIC when written, which is
// what process.hrtime.bigint() reads on Linux, so latencies cross processes); a receiver
// counts a delivery per subscription (the number after the last '/' of the path), dedups on
// webhook-id, counts a seq below the highest seen as reordered.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------- helpers ---
function args(argv) {
  const o = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const k = a.slice(2);
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) o[k] = '1';
      else { o[k] = v; i++; }
    } else o._.push(a);
  }
  return o;
}
const num = (v, d) => (v === undefined ? d : Number(v));
const nowNs = () => process.hrtime.bigint();
const log = (...a) => process.stderr.write(`[relay_bench ${process.argv[2]}] ${a.join(' ')}\n`);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function pct(sorted, p) {  // nearest rank
  if (!sorted.length) return null;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[k];
}
function latSummaryUs(arr) {  // arr: latencies in µs
  const s = Float64Array.from(arr).sort();
  const r = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return { 50: r(pct(s, 50)), 90: r(pct(s, 90)), 99: r(pct(s, 99)), 99.9: r(pct(s, 99.9)), 100: r(pct(s, 100)) };
}
// Self-bound: every part exits by itself after --max-seconds, whatever happens.
function bound(opts, onExpire) {
  const s = num(opts['max-seconds'], 120);
  setTimeout(() => { log(`max-seconds ${s} reached`); onExpire ? onExpire() : process.exit(3); }, s * 1000).unref();
}
function stdinLines(fn) {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', fn);
  rl.on('close', () => fn('quit'));
}
const cpuSelfS = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

// CPU time of a process (all its threads) in ns, from /proc/PID/task/*/schedstat (ns
// resolution); falls back to utime+stime ticks.
function procCpuNs(pid) {
  try {
    let sum = 0;
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      try { sum += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { /* gone */ }
    }
    return sum;
  } catch {
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return (Number(rest[11]) + Number(rest[12])) * 1e7;  // 100 ticks/s
    } catch { return null; }
  }
}
// Time a process's threads spent runnable but waiting for a CPU (schedstat's 2nd field), ns.
function procWaitNs(pid) {
  try {
    let sum = 0;
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      try { sum += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[1]); } catch { /* gone */ }
    }
    return sum;
  } catch { return null; }
}
function procRssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}
function machineBusy() {  // [busy jiffies, total jiffies] over all CPUs
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return [total - idle, total];
}

// `#<seq>:<t_ns>#` at the start of a body.
function marker(buf) {
  if (!buf.length || buf[0] !== 0x23) return null;
  const end = buf.indexOf(0x23, 1);
  if (end < 0) return null;
  const s = buf.toString('latin1', 1, end);
  const c = s.indexOf(':');
  if (c < 0) return null;
  return { seq: Number(s.slice(0, c)), t: BigInt(s.slice(c + 1)) };
}

// Webhook delivery bookkeeping shared by the Node receivers (same JSON as webhook_receiver.cpp).
function hookRecorder() {
  const subs = new Map();
  const lat = [];
  let total = 0, firstNs = 0n, lastNs = 0n, protocolErrors = 0, cpuFirst = null;
  let target = null, deadline = 0n, stallNs = 0n, nextStall = 0n, stallTotal = 0, why = '';
  let finish = null;
  const rec = {
    record(pathStr, headers, body) {
      const now = nowNs();
      if (cpuFirst === null) cpuFirst = cpuSelfS();
      const idx = Number(pathStr.slice(pathStr.lastIndexOf('/') + 1).split('?')[0]);
      const m = marker(body);
      if (!Number.isFinite(idx) || !m) { protocolErrors++; return; }
      let s = subs.get(idx);
      if (!s) subs.set(idx, (s = { n: 0, reordered: 0, dup: 0, last: 0, first_ns: 0n, last_ns: 0n, wids: new Set() }));
      const wid = headers['webhook-id'];
      if (!wid || s.wids.has(wid)) { s.dup++; return; }
      s.wids.add(wid);
      if (m.seq < s.last) s.reordered++; else s.last = m.seq;
      s.n++;
      if (!s.first_ns) s.first_ns = now;
      s.last_ns = now;
      total++;
      if (!firstNs) firstNs = now;
      lastNs = now;
      lat.push(Number(now - m.t) / 1000);
      if (target !== null && total >= target) rec.done('complete');
    },
    expect(line) {
      const [, t, to, st] = line.split(/\s+/);
      target = Number(t);
      deadline = nowNs() + BigInt(Math.round(Number(to) * 1e9));
      stallNs = BigInt(Math.round(Number(st) * 1e9));
      nextStall = nowNs() + stallNs;
      stallTotal = total;
      if (total >= target) return rec.done('complete');
      const iv = setInterval(() => {
        const n = nowNs();
        if (n >= deadline) rec.done('timeout');
        else if (n >= nextStall) {
          if (total === stallTotal) rec.done('stalled');
          stallTotal = total;
          nextStall = n + stallNs;
        }
      }, 20);
      iv.unref();
    },
    onDone(fn) { finish = fn; },
    done(w) {
      if (why) return;
      why = w;
      const subsOut = {};
      for (const [k, s] of [...subs.entries()].sort((a, b) => a[0] - b[0]))
        subsOut[k] = { n: s.n, reordered: s.reordered, dup: s.dup, first_ns: Number(s.first_ns), last_ns: Number(s.last_ns) };
      const res = { why, total, first_ns: Number(firstNs), last_ns: Number(lastNs),
                    cpu_s: cpuFirst === null ? 0 : cpuSelfS() - cpuFirst, lat_us: latSummaryUs(lat), subs: subsOut,
                    protocol_errors: protocolErrors };
      if (finish) finish(res); else { out(res); process.exit(0); }
    },
  };
  return rec;
}

// ---------------------------------------------------------- the answerers ---
function echoAnswer(reqBody) { return reqBody; }

// origin: the no-relay baseline, a plain Node http server on loopback.
function cmdOrigin(o) {
  bound(o);
  let n = 0;
  const srv = http.createServer({ keepAliveTimeout: 30000 }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      n++;
      const b = echoAnswer(Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': b.length });
      res.end(b);
    });
  });
  srv.listen(0, '127.0.0.1', () => out({ pid: process.pid, url: `http://127.0.0.1:${srv.address().port}` }));
  stdinLines((l) => { if (l.startsWith('quit')) { out({ answered: n, cpu_s: cpuSelfS() }); process.exit(0); } });
}

async function loadWs() {
  const require = createRequire(path.join(ROOT, 'tests/browser/package.json'));
  return require('ws');
}

// The relay frame: byte 1, 2-byte big-endian header length, JSON header, body.
function frame(head, body) {
  const h = Buffer.from(JSON.stringify(head));
  const pre = Buffer.allocUnsafe(3);
  pre[0] = 1;
  pre.writeUInt16BE(h.length, 1);
  return body && body.length ? Buffer.concat([pre, h, body]) : Buffer.concat([pre, h]);
}

// ws-client: a relay client on WebSocket that answers every request at once.
async function cmdWsClient(o) {
  const WebSocket = await loadWs();
  const hook = o.hook === '1';
  const rec = hook ? hookRecorder() : null;
  let answered = 0, errors = 0, textFrames = 0;
  const errorSamples = [];
  const ws = new WebSocket(o.base.replace(/^http/, 'ws') + '/relay', { perMessageDeflate: o.deflate === '1' });
  const finish = (extra) => {
    const r = { ...(extra || {}), answered, error_frames: errors, error_samples: errorSamples, text_frames: textFrames,
                cpu_total_s: cpuSelfS(), ws_closed: ws.readyState !== WebSocket.OPEN };
    out(r);
    // Close cleanly (what was sent reaches crier first); exit when closed, or after 1 s.
    setTimeout(() => process.exit(0), 1000);
    ws.on('close', () => process.exit(0));
    try { ws.close(1000); } catch { process.exit(0); }
  };
  bound(o, () => (rec ? rec.done('max-seconds') : finish({ why: 'max-seconds' })));
  if (rec) rec.onDone((res) => finish(res));
  ws.on('open', () => ws.send('{"type":"hello"}'));
  ws.on('error', (e) => { log('ws error', e.message); });
  ws.on('close', (code, reason) => { log(`ws closed ${code} ${reason}`); });
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      textFrames++;
      const m = JSON.parse(data.toString());
      if (m.type === 'ready') out({ pid: process.pid, url: m.url, token: m.token });
      else if (m.type === 'error') { errors++; if (errorSamples.length < 5) errorSamples.push(m); }
      return;
    }
    const hl = data.readUInt16BE(1);
    const head = JSON.parse(data.toString('utf8', 3, 3 + hl));
    const body = data.subarray(3 + hl);
    answered++;
    if (rec) {  // answer first: recording the last delivery ends the run
      ws.send(frame({ type: 'response', id: head.id, status: 200, headers: [] }), { binary: true });
      const h = {};
      for (const [k, v] of head.headers) h[k] = v;
      rec.record(head.path, h, body);
    } else {
      ws.send(frame({ type: 'response', id: head.id, status: 200, headers: [['content-type', 'application/octet-stream']] },
                    echoAnswer(body)), { binary: true });
    }
  });
  stdinLines((l) => {
    if (l.startsWith('expect') && rec) rec.expect(l);
    else if (l.startsWith('quit')) (rec ? rec.done('quit') : finish({}));
  });
}

// lp-client: a relay client on the long-poll pair. One poll waits at a time (a newer one would
// replace it); answers go back in batches: one POST …/responses in flight, the answers that
// arrive meanwhile go in the next one.
async function cmdLpClient(o) {
  bound(o);
  const base = o.base;
  const wait = num(o.wait, 25);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const req = (method, url, body, headers = {}) => new Promise((resolve, reject) => {
    const r = http.request(url, { method, agent, headers: { ...headers, ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) } }, (res) => {
      const c = [];
      res.on('data', (d) => c.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(c).toString() }));
    });
    r.on('error', reject);
    r.setTimeout((wait + 10) * 1000, () => r.destroy(new Error('timeout')));
    r.end(body);
  });
  const ready = JSON.parse((await req('POST', base + '/relay', '{}')).body);
  const auth = { 'crier-relay-secret': ready.secret };
  const ctl = ready.url + '/.well-known/crier-relay/';
  let answered = 0, polls = 0, emptyPolls = 0, posts = 0, badStatus = 0, stopping = false;
  const batchSizes = {};
  const errorSamples = [];
  let pending = [], posting = false;
  const flush = async () => {
    if (posting || !pending.length) return;
    posting = true;
    const batch = pending;
    pending = [];
    batchSizes[batch.length] = (batchSizes[batch.length] || 0) + 1;
    posts++;
    try {
      const r = await req('POST', ctl + 'responses', '[' + batch.join(',') + ']', auth);
      if (r.status !== 204) { badStatus++; if (errorSamples.length < 5) errorSamples.push(r); }
      answered += batch.length;
    } catch (e) { badStatus++; if (errorSamples.length < 5) errorSamples.push(String(e)); }
    posting = false;
    flush();
  };
  out({ pid: process.pid, url: ready.url, token: ready.token });
  (async () => {
    while (!stopping) {
      let r;
      try { r = await req('GET', ctl + `requests?wait=${wait}`, null, auth); } catch (e) {
        log('poll', e.message); badStatus++; await new Promise((z) => setTimeout(z, 100)); continue;
      }
      polls++;
      if (r.status !== 200) { badStatus++; if (errorSamples.length < 5) errorSamples.push(r); await new Promise((z) => setTimeout(z, 100)); continue; }
      const { requests } = JSON.parse(r.body);
      if (!requests.length) { emptyPolls++; continue; }
      for (const q of requests)  // echo: the body goes back as it came (base64 both ways)
        pending.push(`{"id":${q.id},"status":200,"headers":[["content-type","application/octet-stream"]],"body_base64":"${q.body_base64 || ''}"}`);
      flush();
    }
  })();
  stdinLines((l) => {
    if (!l.startsWith('quit')) return;
    stopping = true;
    const hist = Object.entries(batchSizes).map(([k, v]) => [Number(k), v]).sort((a, b) => a[0] - b[0]);
    const n = hist.reduce((a, [, v]) => a + v, 0);
    let acc = 0, p50 = null, p90 = null;
    for (const [k, v] of hist) { acc += v; if (p50 === null && acc >= n * 0.5) p50 = k; if (p90 === null && acc >= n * 0.9) p90 = k; }
    out({ answered, polls, empty_polls: emptyPolls, response_posts: posts, answers_per_post: posts ? answered / posts : null,
          answers_per_post_p50: p50, answers_per_post_p90: p90, answers_per_post_max: hist.length ? hist[hist.length - 1][0] : null,
          bad_status: badStatus, error_samples: errorSamples, cpu_total_s: cpuSelfS() });
    process.exit(0);
  });
}

// hook-http: N loopback webhook receivers (Node http), port i = subscription i.
function cmdHookHttp(o) {
  const n = num(o.healthy, 1);
  const rec = hookRecorder();
  const conns = {};
  bound(o, () => rec.done('max-seconds'));
  // Exit a little later: the answer to the last delivery must reach crier first.
  rec.onDone((res) => { out({ ...res, conns }); setTimeout(() => process.exit(0), 300); });
  const ports = [];
  let up = 0;
  for (let i = 0; i < n; i++) {
    const srv = http.createServer({ keepAliveTimeout: 30000 }, (req, res) => {
      const c = [];
      req.on('data', (d) => c.push(d));
      req.on('end', () => {
        res.writeHead(200, { 'content-length': 0 });
        res.end();
        rec.record(req.url, req.headers, Buffer.concat(c));
      });
    });
    srv.on('connection', (s) => { s.setNoDelay(true); conns[srv.address().port] = (conns[srv.address().port] || 0) + 1; });
    srv.listen(0, '127.0.0.1', () => {
      ports[i] = srv.address().port;
      if (++up === n) out({ pid: process.pid, healthy_ports: ports });
    });
  }
  stdinLines((l) => { if (l.startsWith('expect')) rec.expect(l); else if (l.startsWith('quit')) rec.done('quit'); });
}

// ---------------------------------------------------------- load, publish ---
// load: --conns workers, each POSTs --size bytes and waits for the whole answer, on an
// http.Agent({keepAlive}) with --conns sockets. Measures after --warmup for --seconds or
// --max-requests, whichever first. Prints {"event":"start"} when measuring starts.
async function cmdLoad(o) {
  bound(o, () => finish('max-seconds'));
  const url = new URL(o.url);
  const conns = num(o.conns, 1), size = num(o.size, 128), seconds = num(o.seconds, 3), warmup = num(o.warmup, 0.5);
  const maxReq = num(o['max-requests'], 1e9);
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns, maxFreeSockets: conns, scheduling: 'fifo' });
  const body = Buffer.alloc(size, 0x61);
  const lat = [];
  const status = {};
  let errors = 0, mismatched = 0, measuring = false, stop = false, count = 0, tStart = 0n, tEnd = 0n, cpuStart = 0;
  const errorSamples = [];
  let sockets = 0;
  const one = () => new Promise((resolve) => {
    const t0 = nowNs();
    const r = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent,
                             headers: { 'content-type': 'application/octet-stream', 'content-length': size } }, (res) => {
      let got = 0;
      const c = [];
      res.on('data', (d) => { got += d.length; if (res.statusCode !== 200 && c.length < 4) c.push(d); });
      res.on('end', () => {
        const t1 = nowNs();
        if (measuring && !stop) {
          status[res.statusCode] = (status[res.statusCode] || 0) + 1;
          if (res.statusCode === 200) {
            lat.push(Number(t1 - t0) / 1000);
            count++;
            if (got !== size) mismatched++;
          } else if (errorSamples.length < 5) errorSamples.push(`${res.statusCode} ${Buffer.concat(c).toString().slice(0, 200)}`);
        }
        resolve();
      });
    });
    r.on('socket', (s) => { if (!s.__counted) { s.__counted = true; sockets++; s.setNoDelay(true); } });
    r.setTimeout(15000, () => r.destroy(new Error('request timeout after 15 s')));
    r.on('error', (e) => { if (measuring) { errors++; if (errorSamples.length < 5) errorSamples.push(e.message); } resolve(); });
    r.end(body);
  });
  let finished = false;
  function finish(why) {
    if (finished) return;
    finished = true;
    stop = true;
    if (!tEnd) tEnd = nowNs();
    const secs = Number(tEnd - tStart) / 1e9;
    out({ why, count, seconds: secs, rps: secs > 0 ? count / secs : 0, lat_us: latSummaryUs(lat), status, errors, mismatched,
          error_samples: errorSamples, sockets, cpu_s: cpuSelfS() - cpuStart, conns, size });
    process.exit(0);
  }
  const t0 = nowNs();
  const warmEnd = t0 + BigInt(Math.round(warmup * 1e9));
  let endAt = 0n;
  const worker = async () => {
    while (!stop) {
      await one();
      const n = nowNs();
      if (!measuring && n >= warmEnd && !stop) {
        measuring = true;
        tStart = n;
        cpuStart = cpuSelfS();
        endAt = n + BigInt(Math.round(seconds * 1e9));
        out({ event: 'start' });
      }
      if (measuring && (n >= endAt || count >= maxReq)) { if (!tEnd) tEnd = n; stop = true; }
    }
  };
  await Promise.all(Array.from({ length: conns }, worker));
  finish('done');
}

// publish: --count messages (or --rate msgs/s for --seconds) to POST /topics/{topic} on one
// keep-alive connection, --window pipelined. Body `#<seq>:<t_ns>#` padded to --size.
function cmdPublish(o) {
  const url = new URL(o.base);
  const topic = o.topic || 'bench';
  const size = num(o.size, 128), window = num(o.window, 64), rate = num(o.rate, 0);
  const count = rate > 0 ? Math.round(rate * num(o.seconds, 3)) : num(o.count, 1000);
  const head = `POST /topics/${topic} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: text/plain\r\nContent-Length: ${size}\r\n\r\n`;
  let sent = 0, acked = 0, errs = 0, buf = Buffer.alloc(0), tFirst = 0n, tLastAck = 0n, t0 = 0n;
  const status = {};
  const sock = net.connect(Number(url.port), url.hostname);
  sock.setNoDelay(true);
  const done = (why) => {
    out({ why, sent, acked, errors: errs, status, t_first_ns: Number(tFirst), t_last_ack_ns: Number(tLastAck), cpu_s: cpuSelfS() });
    sock.destroy();
    process.exit(0);
  };
  bound(o, () => done('max-seconds'));
  const msg = (seq) => {
    const m = `#${seq}:${nowNs()}#`;
    return head + (m.length < size ? m + 'x'.repeat(size - m.length) : m);
  };
  const pump = () => {
    const due = rate > 0 ? Math.min(count, Math.floor((Number(nowNs() - t0) * rate) / 1e9) + 1) : count;
    let s = '';
    while (sent < due && sent - acked - errs < window) { s += msg(++sent); }
    if (s) { if (!tFirst) tFirst = nowNs(); sock.write(s, 'latin1'); }
  };
  sock.on('connect', () => {
    out({ event: 'start' });
    t0 = nowNs();
    pump();
    if (rate > 0) setInterval(pump, 1);
  });
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    let pos = 0;
    for (;;) {
      const he = buf.indexOf('\r\n\r\n', pos);
      if (he < 0) break;
      const h = buf.toString('latin1', pos, he).toLowerCase();
      const m = /\r\ncontent-length:\s*(\d+)/.exec(h);
      const cl = m ? Number(m[1]) : 0;
      if (he + 4 + cl > buf.length) break;
      const st = Number(h.slice(9, 12));
      status[st] = (status[st] || 0) + 1;
      if (st >= 200 && st < 300) acked++; else errs++;
      pos = he + 4 + cl;
      tLastAck = nowNs();
    }
    buf = buf.subarray(pos);
    if (acked + errs >= count) return done('complete');
    pump();
  });
  sock.on('error', (e) => { log('publish', e.message); done('error'); });
  sock.on('close', () => done('closed'));
}

// ------------------------------------------------------------------- run ---
// Spawns a part (optionally under taskset), returns {pid, ready (first JSON line), next() -> next JSON line}.
function part(cmd, argv, { pin, stderrFile }) {
  const pre = pin ? ['taskset', '-c', pin] : [];
  const full = [...pre, ...cmd, ...argv];
  const child = spawn(full[0], full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  const waiters = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    let v;
    try { v = JSON.parse(l); } catch { v = { raw: l }; }
    if (waiters.length) waiters.shift()(v); else lines.push(v);
  });
  if (stderrFile) child.stderr.on('data', (d) => fs.appendFileSync(stderrFile, d));
  let exited = false;
  child.on('exit', () => { exited = true; while (waiters.length) waiters.shift()(null); });
  const next = (timeoutS = 60) => new Promise((resolve) => {
    if (lines.length) return resolve(lines.shift());
    if (exited) return resolve(null);
    const t = setTimeout(() => { const i = waiters.indexOf(f); if (i >= 0) waiters.splice(i, 1); resolve(null); }, timeoutS * 1000);
    const f = (v) => { clearTimeout(t); resolve(v); };
    waiters.push(f);
  });
  const send = (l) => { try { child.stdin.write(l + '\n'); } catch { /* gone */ } };
  const stop = async () => {  // by PID: TERM, then KILL
    if (exited) return;
    child.kill('SIGTERM');
    for (let i = 0; i < 30 && !exited; i++) await new Promise((z) => setTimeout(z, 100));
    if (!exited) child.kill('SIGKILL');
  };
  return { child, next, send, stop, get pid() { return child.pid; } };
}
const node = [process.execPath, SELF];

function httpJson(method, url, body) {
  return new Promise((resolve, reject) => {
    const r = http.request(url, { method, headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      const c = [];
      res.on('data', (d) => c.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(c).toString() }));
    });
    r.on('error', reject);
    r.setTimeout(10000, () => r.destroy(new Error('timeout')));
    r.end(body);
  });
}
async function relayMetrics(base) {
  try {
    const r = await httpJson('GET', base + '/metrics');
    const m = {};
    for (const line of r.body.split('\n')) {
      const x = /^crier_(relay_\w+|webhook_\w+|http_\w+|connections\w*)\s+([\d.e+-]+)$/.exec(line);
      if (x) m[x[1]] = Number(x[2]);
    }
    return m;
  } catch (e) { return { error: e.message }; }
}

// Samples CPU (crier, parts, whole machine) and crier's RSS.
function sampler(serverPid, pids) {
  const take = () => ({ t: nowNs(), crier: procCpuNs(serverPid), crierWait: procWaitNs(serverPid), parts: pids.map((p) => procCpuNs(p)), machine: machineBusy(),
                        rss: procRssKb(serverPid) });
  const diff = (a, b) => {
    const wall = Number(b.t - a.t) / 1e9;
    const crier = (b.crier - a.crier) / 1e9;
    const parts = b.parts.map((x, i) => (x === null || a.parts[i] === null ? null : (x - a.parts[i]) / 1e9));
    const [busyA, totA] = a.machine, [busyB, totB] = b.machine;
    const ncpu = os.cpus().length;
    const machineCores = totB > totA ? ((busyB - busyA) / (totB - totA)) * ncpu : null;
    const ours = crier + parts.reduce((s, x) => s + (x || 0), 0);
    const crierWait = a.crierWait === null || b.crierWait === null ? null : (b.crierWait - a.crierWait) / 1e9;
    return { wall_s: wall, crier_cpu_s: crier, crier_runq_wait_s: crierWait, parts_cpu_s: parts, machine_cores: machineCores,
             other_cores: machineCores === null ? null : Math.max(0, machineCores - ours / wall), rss_kb: [a.rss, b.rss] };
  };
  return { take, diff };
}

async function cmdRun(o) {
  const kind = o.kind, route = o.route, base = o.base, serverPid = Number(o['server-pid']);
  const pinServer = o['pin-server'] || '', pinClient = o['pin-client'] || '';
  const errFile = o.out.replace(/\.json$/, '.err');
  const maxS = num(o['max-seconds'], 60);
  const result = { name: o.name, kind, route, group: o.group || kind, started: new Date().toISOString(),
                   loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) };
  const rss0 = procRssKb(serverPid);
  const rssSeries = [];  // crier's VmRSS every 250 ms through the run
  const rssTimer = setInterval(() => rssSeries.push(procRssKb(serverPid)), 250);
  const started = [];
  for (const sig of ['SIGTERM', 'SIGINT'])  // stop what this run started, by PID, then go
    process.on(sig, async () => { for (const p of started) await p.stop(); process.exit(130); });
  const guard = setTimeout(async () => { log('run max-seconds reached, stopping parts'); for (const p of started) await p.stop(); process.exit(3); }, (maxS + 20) * 1000);
  guard.unref();
  try {
    if (kind === 'http') {
      const conns = num(o.conns, 1), size = num(o.size, 128);
      Object.assign(result, { conns, size });
      // The answering side (origin or relay client) runs where crier runs (pin-server): the
      // load generator alone on the other CPU(s).
      const sub = route === 'direct' ? ['origin'] : route === 'ws' ? ['ws-client', '--base', base] : ['lp-client', '--base', base];
      const ans = part([...node, ...sub], ['--max-seconds', String(maxS + 10), ...(o.deflate === '1' ? ['--deflate', '1'] : [])],
                       { pin: pinServer, stderrFile: errFile });
      started.push(ans);
      const ready = await ans.next(15);
      if (!ready || !ready.url) throw new Error('answerer not ready: ' + JSON.stringify(ready));
      const url = ready.url + '/x';
      result.target = route === 'direct' ? 'node http origin' : route;
      result.rss_kb_connected = procRssKb(serverPid);
      const load = part([...node, 'load'], ['--url', url, '--conns', String(conns), '--size', String(size),
                                           '--seconds', o.seconds || '3', '--warmup', o.warmup || '0.5',
                                           '--max-requests', o['max-requests'] || '1000000', '--max-seconds', String(maxS)],
                        { pin: pinClient, stderrFile: errFile });
      started.push(load);
      // direct: the origin stands in crier's place (its CPU in the server columns).
      const pids = route === 'direct' ? [load.pid] : [ans.pid, load.pid];
      const smp = sampler(route === 'direct' ? ans.pid : serverPid, pids);
      const m0 = route === 'direct' ? null : await relayMetrics(base);
      const st = await load.next(maxS + 5);
      if (!st || st.event !== 'start') throw new Error('load did not start: ' + JSON.stringify(st));
      const a = smp.take();
      const lr = await load.next(maxS + 5);
      const b = smp.take();
      if (!lr) throw new Error('load gave no result');
      ans.send('quit');
      const ar = await ans.next(10);
      const m1 = route === 'direct' ? null : await relayMetrics(base);
      const d = smp.diff(a, b);
      result.load = lr;
      result.answerer = ar;
      result.cpu = d;
      result.server_cpu_s = d.crier_cpu_s;
      result.answerer_cpu_s = route === 'direct' ? null : d.parts_cpu_s[0];
      result.load_cpu_s = d.parts_cpu_s[route === 'direct' ? 0 : 1];
      result.metrics = m0 && m1 ? Object.fromEntries(Object.keys(m1).map((k) => [k, m1[k] - (m0[k] || 0)])) : null;
      result.rss_kb = route === 'direct' ? null : { before: rss0, connected: result.rss_kb_connected, measure_start: d.rss_kb[0], measure_end: d.rss_kb[1], after: procRssKb(serverPid) };
    } else if (kind === 'hook') {
      const subs = num(o.subs, 1), size = num(o.size, 128), window = num(o.window, 64), rate = num(o.rate, 0);
      Object.assign(result, { subs, size, window, rate, count: rate > 0 ? Math.round(rate * num(o.seconds, 3)) : num(o.count, 1000) });
      let recv, targets;
      if (route === 'relay') {
        recv = part([...node, 'ws-client', '--hook', '--base', base], ['--max-seconds', String(maxS + 10)], { pin: pinClient, stderrFile: errFile });
        started.push(recv);
        const ready = await recv.next(15);
        if (!ready || !ready.url) throw new Error('relay client not ready: ' + JSON.stringify(ready));
        targets = Array.from({ length: subs }, (_, i) => `${ready.url}/hook/${i}`);
      } else {
        const cmd = route === 'cpp' ? [o.receiver, '--healthy', String(subs), '--hang', '0', '--reserve', String(result.count)]
                                    : [...node, 'hook-http', '--healthy', String(subs), '--max-seconds', String(maxS + 10)];
        recv = part(cmd, [], { pin: pinClient, stderrFile: errFile });
        started.push(recv);
        const ready = await recv.next(15);
        if (!ready || !ready.healthy_ports) throw new Error('receiver not ready: ' + JSON.stringify(ready));
        targets = ready.healthy_ports.map((p, i) => `http://127.0.0.1:${p}/hook/${i}`);
      }
      result.receiver = route === 'relay' ? 'node ws relay client' : route === 'cpp' ? 'C++ webhook_receiver' : 'node http';
      for (const t of targets) {
        const r = await httpJson('POST', base + '/api/v1/subscriptions', JSON.stringify({ target_url: t, topics: ['bench'] }));
        if (r.status !== 201) throw new Error(`subscription for ${t}: ${r.status} ${r.body}`);
      }
      result.rss_kb_connected = procRssKb(serverPid);
      const m0 = await relayMetrics(base);
      const pub = part([...node, 'publish'], ['--base', base, '--size', String(size), '--window', String(window),
                                              ...(rate > 0 ? ['--rate', String(rate), '--seconds', o.seconds || '3'] : ['--count', String(result.count)]),
                                              '--max-seconds', String(maxS)], { pin: pinClient, stderrFile: errFile });
      started.push(pub);
      const smp = sampler(serverPid, [recv.pid, pub.pid]);
      const ps = await pub.next(15);
      if (!ps || ps.event !== 'start') throw new Error('publisher did not start: ' + JSON.stringify(ps));
      const a = smp.take();
      const pr = await pub.next(maxS + 5);
      if (!pr) throw new Error('publisher gave no result');
      recv.send(`expect ${pr.acked * subs} ${Math.max(5, maxS - 10)} 5`);
      const rr = await recv.next(maxS + 5);
      const b = smp.take();
      const m1 = await relayMetrics(base);
      if (!rr) throw new Error('receiver gave no result');
      const d = smp.diff(a, b);
      if (d.other_cores !== null && d.parts_cpu_s[1] === null)  // the publisher had exited: its own count
        d.other_cores = Math.max(0, d.other_cores - pr.cpu_s / d.wall_s);
      const span = (rr.last_ns - rr.first_ns) / 1e9;
      const sList = Object.values(rr.subs || {});
      result.publish = pr;
      result.recv = rr;
      result.deliveries = rr.total;
      result.expected = pr.acked * subs;
      result.dps = span > 0 ? rr.total / span : null;
      result.exact = rr.total === result.expected && pr.errors === 0 && sList.length === subs &&
                     sList.every((s) => s.dup === 0 && s.reordered === 0 && s.n === pr.acked);
      result.dups = sList.reduce((x, s) => x + s.dup, 0);
      result.reordered = sList.reduce((x, s) => x + s.reordered, 0);
      result.cpu = d;
      result.server_cpu_s = d.crier_cpu_s;
      result.receiver_cpu_s = rr.cpu_s;
      result.metrics = Object.fromEntries(Object.keys(m1).map((k) => [k, m1[k] - (m0[k] || 0)]));
      const subsNow = await httpJson('GET', base + '/api/v1/subscriptions');
      try { result.subscription_stats = JSON.parse(subsNow.body).data?.map((s) => s.stats) ?? JSON.parse(subsNow.body); } catch { result.subscription_stats = subsNow.body.slice(0, 500); }
      result.rss_kb = { before: rss0, connected: result.rss_kb_connected, after: procRssKb(serverPid) };
    } else throw new Error('unknown --kind ' + kind);
  } catch (e) {
    result.error = String(e.stack || e);
    log(o.name, 'error:', e.message);
  }
  clearInterval(rssTimer);
  result.rss_series_kb = rssSeries;
  for (const p of started) await p.stop();
  result.server_alive = (() => { try { process.kill(serverPid, 0); return true; } catch { return false; } })();
  fs.writeFileSync(o.out, JSON.stringify(result, null, 1));
  process.stderr.write(`[relay_bench] ${o.name}: ${summaryLine(result)}\n`);
  process.exit(0);
}

function summaryLine(r) {
  if (r.error) return 'ERROR ' + r.error.split('\n')[0];
  if (r.kind === 'http') {
    const l = r.load;
    return `${Math.round(l.rps)} req/s, p50 ${fmt(l.lat_us[50] / 1000, 3)} ms, p99 ${fmt(l.lat_us[99] / 1000, 3)} ms, ` +
           `status ${JSON.stringify(l.status)}, errors ${l.errors}, server cpu ${fmt((r.server_cpu_s / l.count) * 1e6, 1)} µs/req`;
  }
  return `${Math.round(r.dps)} deliveries/s, ${r.deliveries}/${r.expected}, p50 ${fmt(r.recv.lat_us[50] / 1000, 3)} ms, ` +
         `p99 ${fmt(r.recv.lat_us[99] / 1000, 3)} ms, exact ${r.exact}, crier ${fmt((r.server_cpu_s / r.deliveries) * 1e6, 1)} µs/deliv`;
}
function fmt(x, d = 1) {
  if (x === null || x === undefined || Number.isNaN(x) || !Number.isFinite(x)) return '–';
  return Number(x).toFixed(d);
}

// ---------------------------------------------------------------- report ---
function median(a) {
  const s = [...a].sort((x, y) => x - y), n = s.length;
  return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : null;
}

function cmdReport(o) {
  const dir = o['out-dir'];
  const meta = fs.existsSync(path.join(dir, 'meta.json')) ? JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) : {};
  const runs = fs.readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'meta.json')
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')))
    .sort((a, b) => (a.started < b.started ? -1 : 1));
  const L = [];
  L.push(`# Relay benchmark ${meta.date || ''}`, '');
  L.push(`host ${meta.host || '?'}, ${meta.cpus || '?'} CPUs, load average at start ${meta.loadavg || '?'}, crier ${meta.crier_commit || '?'}, ` +
         `node ${meta.node || '?'}, pinned: ${meta.pinned ? 'crier + the answering side on CPU ' + meta.pin_server + ', load / publisher / webhook receiver on CPU ' + meta.pin_client : 'no'}.`, '');
  L.push('Every run: a fresh `' + (meta.crier_cmd || 'crier_server') + '`, loopback only. Ratios are relay ÷ no relay from the same run of the script; ' +
         'the machine is shared, so absolute numbers move by ±30 % between runs; compare ratios, and prefer the CPU-per-request columns.', '');

  const http_ = runs.filter((r) => r.kind === 'http');
  if (http_.length) {
    L.push('## Relayed HTTP requests', '');
    L.push('POSTs of `size` bytes on `conns` keep-alive connections (Node `http.Agent`), each connection one request at a time, ' +
           'to `/relay/{token}/x` (the relay client echoes the body back, 200) or straight to a Node http server that does the same (`direct`). ' +
           'p50/p99 = request written → whole answer read, at the load generator. `server µs/req` = crier\'s CPU (for `direct`: the origin\'s) ÷ requests; ' +
           '`client µs/req` = the relay client\'s CPU ÷ requests; `load cores` = the load generator\'s CPU ÷ wall (near 1.0 = it was the limit); ' +
           '`server runq wait` = time crier\'s (for `direct`: the origin\'s) threads were runnable but waited for a CPU (schedstat), a sign of contention, not of crier; `other` = cores used by everything else meanwhile. `non-2xx/err` = answers other than 200 / transport errors. `RSS Δ` = crier\'s VmRSS end − start of the measured window (KiB, and bytes per request).', '');
    L.push('| run | conns | size | route | req/s | p50 ms | p99 ms | max ms | non-2xx/err | server µs/req | client µs/req | server cores | server runq wait ms | load cores | other | RSS Δ KiB (B/req) |');
    L.push('| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const r of http_) {
      if (r.error || !r.load) { L.push(`| ${r.name} | ${r.conns} | ${r.size} | ${r.route} | error: ${(r.error || '').split('\n')[0]} |||||||||||`); continue; }
      const l = r.load, w = r.cpu.wall_s;
      const non2xx = Object.entries(l.status).filter(([k]) => k !== '200').reduce((s, [, v]) => s + v, 0);
      const st = non2xx || l.errors || l.mismatched ? `**${non2xx}/${l.errors}${l.mismatched ? ` (${l.mismatched} bad len)` : ''}** ${JSON.stringify(l.status)}` : '0/0';
      const rss = r.rss_kb ? `${r.rss_kb.measure_end - r.rss_kb.measure_start} (${fmt(((r.rss_kb.measure_end - r.rss_kb.measure_start) * 1024) / l.count, 0)})` : null;
      L.push(`| ${r.name} | ${r.conns} | ${r.size} | ${r.route} | ${fmt(l.rps, 0)} | ${fmt(l.lat_us[50] / 1000, 3)} | ${fmt(l.lat_us[99] / 1000, 3)} | ${fmt(l.lat_us[100] / 1000, 2)} | ${st} | ` +
             `${fmt((r.server_cpu_s / l.count) * 1e6, 1)} | ${r.answerer_cpu_s === null ? '–' : fmt((r.answerer_cpu_s / l.count) * 1e6, 1)} | ${fmt(r.server_cpu_s / w, 2)} | ${fmt(r.cpu.crier_runq_wait_s * 1000, 0)} | ` +
             `${fmt(r.load_cpu_s / w, 2)} | ${fmt(r.cpu.other_cores, 2)} | ${rss === null ? '–' : rss} |`);
    }
    L.push('');
    // ratios per shape
    const shapes = [...new Set(http_.map((r) => `${r.conns}|${r.size}`))];
    L.push('### Relay ÷ direct', '', 'Medians over the repeats of each shape.', '');
    L.push('| conns | size | ws req/s ÷ direct | ws p50 ÷ direct | ws p99 ÷ direct | lp req/s ÷ direct | lp p50 ÷ direct | lp p99 ÷ direct | crier µs/req ws / lp | lp answers per POST (mean, p50/p90/max) |');
    L.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |');
    for (const s of shapes) {
      const [c, z] = s.split('|').map(Number);
      const get = (route) => http_.filter((r) => r.conns === c && r.size === z && r.route === route && r.load && !r.error);
      const med = (rs, f) => (rs.length ? median(rs.map(f)) : null);
      const d = get('direct'), w = get('ws'), p = get('lp');
      const rps = (rs) => med(rs, (r) => r.load.rps), p50 = (rs) => med(rs, (r) => r.load.lat_us[50]), p99 = (rs) => med(rs, (r) => r.load.lat_us[99]);
      const us = (rs) => med(rs, (r) => (r.server_cpu_s / r.load.count) * 1e6);
      const lpA = p.length && p[0].answerer ? p[0].answerer : null;
      L.push(`| ${c} | ${z} | ${fmt(rps(w) / rps(d), 2)} | ${fmt(p50(w) / p50(d), 2)} | ${fmt(p99(w) / p99(d), 2)} | ${fmt(rps(p) / rps(d), 2)} | ` +
             `${fmt(p50(p) / p50(d), 2)} | ${fmt(p99(p) / p99(d), 2)} | ${fmt(us(w), 1)} / ${fmt(us(p), 1)} | ` +
             `${lpA ? `${fmt(lpA.answers_per_post, 1)} (${lpA.answers_per_post_p50}/${lpA.answers_per_post_p90}/${lpA.answers_per_post_max}), ${lpA.polls} polls` : '–'} |`);
    }
    L.push('');
  }

  const hook = runs.filter((r) => r.kind === 'hook');
  if (hook.length) {
    L.push('## Webhook deliveries through the relay', '');
    L.push('REST subscriptions (`POST /api/v1/subscriptions`, crier\'s defaults: ordered, one delivery in flight each) to `<relay url>/hook/<i>` on a crier **without** `--webhook-allow` ' +
           '(`relay`: only the in-process route can deliver; the Node `ws` relay client answers 200 at once), or to loopback receivers with `--webhook-allow 127.0.0.0/8` ' +
           '(`http`: a Node http server, one port per subscription; `cpp`: `bench/webhook_receiver.cpp`). Publisher: one keep-alive connection, 64 pipelined POSTs (burst) or paced. ' +
           'deliveries/s = distinct deliveries ÷ (last − first at the receiver); latency = publish written → delivery read, at the receiver.', '');
    L.push('| run | subs | load | route | deliveries/s | delivered/expected | p50 ms | p99 ms | max ms | exact | crier µs/deliv | receiver µs/deliv | crier cores | crier runq wait ms | other | attempts/failures | RSS Δ KiB |');
    L.push('| --- | ---: | --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |');
    for (const r of hook) {
      if (r.error || !r.recv) { L.push(`| ${r.name} | ${r.subs} | | ${r.route} | error: ${(r.error || '').split('\n')[0]} |||||||||||`); continue; }
      const w = r.cpu.wall_s;
      const ss = Array.isArray(r.subscription_stats) ? r.subscription_stats : [];
      const att = ss.reduce((s, x) => s + (x?.attempts || 0), 0), fail = ss.reduce((s, x) => s + (x?.failures || 0), 0);
      L.push(`| ${r.name} | ${r.subs} | ${r.rate > 0 ? `${r.rate}/s × ${r.count / r.rate} s` : `burst ${r.count}`} | ${r.route} | ${fmt(r.dps, 0)} | ${r.deliveries}/${r.expected} | ` +
             `${fmt(r.recv.lat_us[50] / 1000, 3)} | ${fmt(r.recv.lat_us[99] / 1000, 3)} | ${fmt(r.recv.lat_us[100] / 1000, 2)} | ${r.exact ? 'yes' : `**no** (${r.recv.why}, dup ${r.dups}, reord ${r.reordered})`} | ` +
             `${fmt((r.server_cpu_s / r.deliveries) * 1e6, 1)} | ${fmt((r.receiver_cpu_s / r.deliveries) * 1e6, 1)} | ${fmt(r.server_cpu_s / w, 2)} | ${fmt(r.cpu.crier_runq_wait_s * 1000, 0)} | ${fmt(r.cpu.other_cores, 2)} | ${att}/${fail} | ` +
             `${r.rss_kb.after - r.rss_kb.connected} |`);
    }
    L.push('');
    const shapes = [...new Set(hook.map((r) => `${r.subs}|${r.rate}|${r.count}`))];
    L.push('### Relay ÷ loopback HTTP (Node receiver)', '');
    L.push('Medians over the repeats.', '');
    L.push('| subs | load | deliveries/s relay ÷ http | p50 relay ÷ http | p99 relay ÷ http | crier µs/deliv relay / http | relay ÷ C++ receiver deliveries/s |');
    L.push('| ---: | --- | ---: | ---: | ---: | --- | ---: |');
    for (const s of shapes) {
      const [n, rate, count] = s.split('|').map(Number);
      const get = (route) => hook.filter((r) => r.subs === n && r.rate === rate && r.count === count && r.route === route && r.recv && !r.error && r.deliveries);
      const med = (rs, f) => (rs.length ? median(rs.map(f)) : null);
      const a = get('relay'), b = get('http'), c = get('cpp');
      if (!a.length || !b.length) continue;
      const dps = (rs) => med(rs, (r) => r.dps), p50 = (rs) => med(rs, (r) => r.recv.lat_us[50]), p99 = (rs) => med(rs, (r) => r.recv.lat_us[99]);
      const us = (rs) => med(rs, (r) => (r.server_cpu_s / r.deliveries) * 1e6);
      L.push(`| ${n} | ${rate > 0 ? `${rate}/s` : `burst ${count}`} | ${fmt(dps(a) / dps(b), 2)} | ${fmt(p50(a) / p50(b), 2)} | ${fmt(p99(a) / p99(b), 2)} | ` +
             `${fmt(us(a), 1)} / ${fmt(us(b), 1)} | ${c.length ? fmt(dps(a) / dps(c), 2) : '–'} |`);
    }
    L.push('');
  }
  const notes = [];
  for (const r of runs) {
    if (r.error) notes.push(`- ${r.name}: error ${r.error.split('\n')[0]}`);
    if (r.server_alive === false) notes.push(`- ${r.name}: **crier_server died**`);
    const m = r.metrics || {};
    if (m.relay_timeouts_total || m.relay_offline_total) notes.push(`- ${r.name}: relay timeouts ${m.relay_timeouts_total}, offline ${m.relay_offline_total}`);
    if (r.kind === 'http' && r.route !== 'direct' && r.metrics && r.load && r.metrics.relay_forwarded_total !== r.metrics.relay_answered_total)
      notes.push(`- ${r.name}: forwarded ${r.metrics.relay_forwarded_total} ≠ answered ${r.metrics.relay_answered_total} over the run`);
    const a = r.answerer || {};
    if (a.error_frames || a.bad_status) notes.push(`- ${r.name}: relay client saw ${a.error_frames || 0} error frames / ${a.bad_status || 0} bad statuses: ${JSON.stringify(a.error_samples)}`);
    if (r.load && r.load.error_samples && r.load.error_samples.length) notes.push(`- ${r.name}: load errors ${JSON.stringify(r.load.error_samples)}`);
    if (r.kind === 'http' && r.rss_kb && r.load && r.load.count) {
      const g = r.rss_kb.measure_end - r.rss_kb.measure_start, per = (g * 1024) / r.load.count;
      if (g > 1024 && per > 100) notes.push(`- ${r.name}: crier's RSS grew ${g} KiB (${fmt(per, 0)} B per request) in the measured window` +
        (r.answerer && r.answerer.polls ? ` (${r.answerer.polls} long polls: ${fmt((g * 1024) / r.answerer.polls, 0)} B per poll)` : '') +
        `; series every 250 ms: ${r.rss_series_kb.filter((_, i) => i % 4 === 0).join(' → ')} KiB`);
    }
    if (r.recv && r.recv.why !== 'complete') notes.push(`- ${r.name}: receiver stopped: ${r.recv.why}`);
    if (r.kind === 'hook' && r.metrics && r.route === 'relay' && r.metrics.relay_forwarded_total !== r.metrics.relay_answered_total)
      notes.push(`- ${r.name}: forwarded ${r.metrics.relay_forwarded_total} ≠ answered ${r.metrics.relay_answered_total}`);
    if (r.kind === 'hook' && Array.isArray(r.subscription_stats) && r.subscription_stats.some((x) => x && (x.failures || x.dead)))
      notes.push(`- ${r.name}: subscription failures ${JSON.stringify(r.subscription_stats.filter((x) => x && (x.failures || x.dead)))}`);
    try {
      const lines = fs.readFileSync(path.join(dir, `crier_server-${r.name}.log`), 'utf8').split('\n').filter((l) => l && !l.startsWith('crier listening') && !l.startsWith('crier stopped'));
      if (lines.length) notes.push(`- ${r.name}: crier_server log: ${lines.length} lines, first: \`${lines[0].slice(0, 200)}\``);
    } catch { /* no log */ }
  }
  if (notes.length) L.push('## Problems seen', '', ...notes, '');
  const md = L.join('\n');
  fs.writeFileSync(o.md, md + '\n');
  process.stdout.write(md + '\n');
}

// ------------------------------------------------------------------ main ---
const o = args(process.argv.slice(3));
const cmds = { origin: cmdOrigin, 'ws-client': cmdWsClient, 'lp-client': cmdLpClient, 'hook-http': cmdHookHttp,
               load: cmdLoad, publish: cmdPublish, run: cmdRun, report: cmdReport };
const c = cmds[process.argv[2]];
if (!c) {
  process.stderr.write(fs.readFileSync(SELF, 'utf8').split('\n').slice(1, 30).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(2);
}
Promise.resolve(c(o)).catch((e) => { log(e.stack || e); process.exit(1); });
