#!/usr/bin/env bash
# TCP feed vs crier's WebSocket: the same fan-out shape as run_ws.sh (1 topic, 2,000
# subscribers, 128-byte messages, HTTP publishing with 16 pipelined POSTs), against ONE
# crier_tcp_feed_server process (crier::server + the TCP feed of examples/tcp_feed/ on one
# hub), in the same run.  Loopback only; bounded; stops only what it started, by PID.
#
#   bench/run_tcp_feed.sh                    # sweeps + alternating head-to-head runs (~6-15 min)
#   bench/run_tcp_feed.sh --quick            # fewer steps and repeats (~4-6 min)
#   ORDER=feed,ws bench/run_tcp_feed.sh      # sweep the feed first (run it both ways)
#
# 1. sweep: bench/ws_sweep.py finds the highest publish rate each transport sustains (no
#    loss, p99 < P99_MS, publisher and deliveries within 10 % of schedule): WebSocket with
#    fanout-meter (ws://.../topics/{topic}, as run_ws.sh), the feed with
#    crier_tcp_feed_loadgen (same CLI, same JSON, same pass criteria);
# 2. head to head, alternating trials: both at each sweep's sustained rate (h2h), as fast as the
#    publish window allows (max), and at FIXED_RATE msgs/s far below capacity (fixed);
# 3. writes bench/results/tcp-feed-<date>.md (+ every report in bench/results/tcp-feed-<date>/)
#    and prints it.  Ratios are feed / WebSocket.
# Knobs (environment): SUBS, SIZE, WINDOW, ORDER, TRIAL_SECONDS, BISECT, RETRIES, P99_MS,
# KEEPUP, SWEEP_BUDGET (per transport, s), H2H_REPEAT, MAX_COUNT, MAX_REPEAT, FIXED_RATE,
# FIXED_SECONDS, FIXED_REPEAT, H2H_BUDGET (s), FEED_POLICY, SERVER_FLAGS, FEED_SERVER,
# FEED_LOADGEN, FANOUT_METER, BUILD_DIR, OUT_DIR.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${CRIER_SHARED:-$ROOT/../shared}"
BUILD="${BUILD_DIR:-$ROOT/build-bench}"
PY=/usr/bin/python3

QUICK=0
usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  BISECT="${BISECT:-2}"; RETRIES="${RETRIES:-0}"; TRIAL_SECONDS="${TRIAL_SECONDS:-3}"
  SWEEP_BUDGET="${SWEEP_BUDGET:-150}"; H2H_REPEAT="${H2H_REPEAT:-1}"; MAX_REPEAT="${MAX_REPEAT:-1}"
  FIXED_REPEAT="${FIXED_REPEAT:-1}"; H2H_BUDGET="${H2H_BUDGET:-240}"
else
  BISECT="${BISECT:-3}"; RETRIES="${RETRIES:-1}"; TRIAL_SECONDS="${TRIAL_SECONDS:-4}"
  SWEEP_BUDGET="${SWEEP_BUDGET:-300}"; H2H_REPEAT="${H2H_REPEAT:-2}"; MAX_REPEAT="${MAX_REPEAT:-3}"
  FIXED_REPEAT="${FIXED_REPEAT:-3}"; H2H_BUDGET="${H2H_BUDGET:-480}"
fi
SUBS="${SUBS:-2000}"
SIZE="${SIZE:-128}"
WINDOW="${WINDOW:-16}"
ORDER="${ORDER:-ws,feed}"
P99_MS="${P99_MS:-500}"
KEEPUP="${KEEPUP:-0.9}"
FIXED_RATE="${FIXED_RATE:-25}"          # msgs/s: 50,000 deliveries/s at 2,000 subscribers
FIXED_SECONDS="${FIXED_SECONDS:-5}"
MAX_COUNT="${MAX_COUNT:-4000}"          # messages per max-rate trial (8 M deliveries at 2,000 subscribers)
MUX="${MUX:-1}"                         # 1 = also /ws (JSON envelopes with ids) in the max and fixed runs
FEED_POLICY="${FEED_POLICY:-disconnect}" # what the feed subscribers ask for (crier's WebSocket runs with disconnect)
# crier's settings as run_ws.sh spells them out, for the HTTP transports (WebSocket).
SERVER_FLAGS="${SERVER_FLAGS:---queue-messages 4096 --queue-bytes 33554432 --policy disconnect --heartbeat 15000 --history-messages 1000}"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="${OUT_DIR:-$HERE/results/tcp-feed-$STAMP}"
MD="${OUT%/}.md"
FM_SRC="$SHARED/tools/fanout-meter"
FM="${FANOUT_METER:-$BUILD/fanout-meter/fanout-meter}"
SERVER="${FEED_SERVER:-$BUILD/examples/tcp_feed/crier_tcp_feed_server}"
LOADGEN="${FEED_LOADGEN:-$BUILD/examples/tcp_feed/crier_tcp_feed_loadgen}"

for s in ${ORDER//,/ }; do case "$s" in ws|feed) ;; *) echo "ORDER: ws and feed only" >&2; exit 2 ;; esac; done
mkdir -p "$OUT"
log() { echo "[run_tcp_feed $(date +%H:%M:%S)] $*" >&2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- cleanup ---
SERVER_PID=""
CHILD_PID=""
cleanup() {
  if [ -n "$CHILD_PID" ] && kill -0 "$CHILD_PID" 2>/dev/null; then
    kill -TERM "$CHILD_PID" 2>/dev/null; wait "$CHILD_PID" 2>/dev/null
  fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    log "crier_tcp_feed_server (pid $SERVER_PID) stopped"
  fi
  SERVER_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Runs a command in the background and waits, so a signal reaches the trap at once.
child() { "$@" & CHILD_PID=$!; wait "$CHILD_PID"; local rc=$?; CHILD_PID=""; return $rc; }

# ------------------------------------------------------------------ build ---
if [ -z "${FANOUT_METER:-}" ]; then
  mkdir -p "$BUILD/fanout-meter"
  if [ ! -x "$FM" ] || [ "$FM_SRC/fanout_meter.cpp" -nt "$FM" ] || [ "$FM_SRC/fm_proto.hpp" -nt "$FM" ]; then
    log "building fanout-meter"
    ${CXX:-g++} -O2 -std=c++17 -DASIO_STANDALONE -DASIO_NO_DEPRECATED -Wall -Wextra \
      -o "$FM" "$FM_SRC/fanout_meter.cpp" -pthread || { log "fanout-meter build failed"; exit 1; }
  fi
fi
if [ -z "${FEED_SERVER:-}" ] || [ -z "${FEED_LOADGEN:-}" ]; then
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCRIER_BUILD_TESTS=OFF >"$OUT/cmake.log" 2>&1 \
      || { log "cmake configure failed, see $OUT/cmake.log"; exit 1; }
  fi
  cmake --build "$BUILD" -j2 --target crier_tcp_feed_server crier_tcp_feed_loadgen >>"$OUT/cmake.log" 2>&1 \
    || { log "build failed, see $OUT/cmake.log"; exit 1; }
fi
for b in "$FM" "$SERVER" "$LOADGEN"; do [ -x "$b" ] || { log "missing $b"; exit 1; }; done

# ----------------------------------------------------------------- server ---
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT="$(free_port)"; FEED_PORT="$(free_port)"
# shellcheck disable=SC2086
"$SERVER" --listen "127.0.0.1:$HTTP_PORT" --feed "127.0.0.1:$FEED_PORT" --feed-policy "$FEED_POLICY" $SERVER_FLAGS \
  >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q "tcp feed listening" "$OUT/server.log" 2>/dev/null && break; sleep 0.1; done
grep -q "tcp feed listening" "$OUT/server.log" || { log "server did not start:"; cat "$OUT/server.log" >&2; exit 1; }
log "crier_tcp_feed_server pid $SERVER_PID: HTTP 127.0.0.1:$HTTP_PORT, feed 127.0.0.1:$FEED_PORT (load average $(cut -d' ' -f1-3 /proc/loadavg))"
PUB="http://127.0.0.1:$HTTP_PORT/topics/{topic}"
WS_URL="ws://127.0.0.1:$HTTP_PORT/topics/{topic}"
FEED_URL="tcp://127.0.0.1:$FEED_PORT"

"$PY" - "$OUT/meta.json" "$STAMP" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
  "$SERVER_FLAGS --feed-policy $FEED_POLICY" "$ORDER" "$QUICK" <<'EOF'
import json, os, sys, socket
out, stamp, commit, flags, order, quick = sys.argv[1:]
json.dump({"date": stamp, "host": socket.gethostname(), "cpus": os.cpu_count(),
           "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]), "commit": commit,
           "server_cmd": "crier_tcp_feed_server --listen 127.0.0.1:P --feed 127.0.0.1:Q " + flags,
           "order": order, "quick": quick == "1"}, open(out, "w"))
EOF

# ----------------------------------------------------------------- sweeps ---
sweep() {  # NAME TOOL SUB_URL
  local deadline=$(( $(date +%s) + SWEEP_BUDGET ))
  log "=== sweep $1 ($SUBS subscribers, budget ${SWEEP_BUDGET}s)"
  child "$PY" "$HERE/ws_sweep.py" sweep --fm "$2" --name "$1" --subs "$SUBS" --sub-url "$3" \
    --pub-url "$PUB" --pub-window "$WINDOW" --server-pid "$SERVER_PID" --size "$SIZE" --out-dir "$OUT" \
    --seconds "$TRIAL_SECONDS" --p99-ms "$P99_MS" --keepup "$KEEPUP" --bisect "$BISECT" --retries "$RETRIES" \
    --deadline "$deadline"
}
for t in ${ORDER//,/ }; do
  case "$t" in
    ws) sweep ws "$FM" "$WS_URL" ;;
    feed) sweep feed "$LOADGEN" "$FEED_URL" ;;
  esac
  kill -0 "$SERVER_PID" 2>/dev/null || { log "the server died"; exit 1; }
done

# ------------------------------------------------------------ head to head ---
# Alternating trials (the order flips every repeat), each after ws_sweep.py's wait for a quiet
# machine, with its own run_fm() and judge(): the sweeps run minutes apart, so other people's
# load may hit one transport's sweep and not the other's.
#   h2h:   each transport at each sweep's sustained rate, H2H_REPEAT times (pass/fail, p99)
#   max:   publish as fast as the 16-deep window allows, MAX_COUNT messages (capacity, CPU/delivery)
#   fixed: FIXED_RATE msgs/s, far below capacity (latency of one fan-out, CPU/delivery)
# max and fixed also run /ws (MUX=1): its frames carry id and topic, as the feed's do, while
# /topics/{t} frames carry the bare payload.
# (Written to a file: a background command's stdin is /dev/null, so no heredoc through child.)
cat >"$OUT/head_to_head.py" <<'EOF'
import argparse, json, os, sys, time
(here, out, subs, size, window, pid, pub, ws_url, feed_url, mux_url, fm, loadgen, order, p99, keepup, seconds,
 h2h_rep, max_count, max_rep, fixed_rate, fixed_seconds, fixed_rep, deadline) = sys.argv[1:]
sys.path.insert(0, here)
import ws_sweep as W  # noqa: E402  (its SIGTERM handler stops the running trial)
subs, size, window, pid = int(subs), int(size), int(window), int(pid)
deadline = float(deadline)
order = order.split(",")
tools = {"ws": (fm, ws_url, []), "feed": (loadgen, feed_url, []),
         "wsmux": (fm, mux_url, ["--ws-send", '{"type":"subscribe","topic":"{topic}"}'])}


def ns(name):
    return argparse.Namespace(fm=tools[name][0], sub_url=tools[name][1], subs=subs, src_ips=8, size=size,
                              server_pid=pid, trial_max=40, pid_tree=False, pub_url=pub, pub_ws="", pub_window=window,
                              p99_ms=float(p99), keepup=float(keepup), noise_cpu=0.3, quiet_wait=20.0)


def trial(name, fname, rate, count, drain):
    if time.time() + 25 > deadline:
        W.log(f"time budget used up: skipping {fname}")
        return None
    a = ns(name)
    W.wait_quiet(a, deadline)
    extra = tools[name][2] + ["--rate", f"{rate:g}", "--count", str(count), "--drain", str(drain), "--settle", "500"]
    path = os.path.join(out, fname)
    d = W.run_fm(a, f"{name} {fname}", path, extra)
    ok, why = W.judge(d, subs, rate, a) if rate > 0 else (bool(d and d.get("exact")), "" if d and d.get("exact") else "not exact")
    if d is not None:
        d["_rate"], d["_passed"], d["_why"] = rate, ok, why
        json.dump(d, open(path, "w"), indent=1)
        W.log(f"{fname}: {'PASS' if ok else 'FAIL'} deliv {d.get('delivered_per_sec', 0):,.0f}/s "
              f"p50 {d['latency_us']['p50'] / 1000:.1f} ms p99 {d['latency_us']['p99'] / 1000:.1f} ms "
              f"server cpu {d.get('server', {}).get('cpu_utilization')} meter cpu "
              f"{d.get('meter', {}).get('cpu_utilization_publish')} other load {d.get('_other_cpu')}"
              + (f"  [{why}]" if why else ""))
    time.sleep(1.5)  # let the server reap the closed connections
    return d


def alternate(rep, mux=False):
    o = order + (["wsmux"] if mux and mux_url else [])
    return o if rep % 2 == 0 else o[::-1]


rates = []
for n in ("ws", "feed"):
    try:
        b = json.load(open(os.path.join(out, f"sweep-{n}-{subs}.json"))).get("best")
        if b:
            rates.append(b["rate"])
    except Exception:
        pass
rates = sorted(set(rates))
if len(rates) == 2 and rates[1] <= rates[0] * 1.03:
    rates = rates[1:]
for rep in range(int(h2h_rep)):
    for rate in rates:
        for n in alternate(rep):
            trial(n, f"h2h-{n}-r{rate:g}-{rep + 1}.json", rate, max(20, round(rate * float(seconds))), 3)
for rep in range(int(max_rep)):
    for n in alternate(rep, True):
        trial(n, f"max-{n}-{rep + 1}.json", 0, int(max_count), 5)
for rep in range(int(fixed_rep)):
    for n in alternate(rep, True):
        trial(n, f"fixed-{n}-{rep + 1}.json", float(fixed_rate),
              max(20, round(float(fixed_rate) * float(fixed_seconds))), 3)
EOF
[ "$MUX" = 1 ] && MUX_URL="ws://127.0.0.1:$HTTP_PORT/ws" || MUX_URL=""
child "$PY" "$OUT/head_to_head.py" "$HERE" "$OUT" "$SUBS" "$SIZE" "$WINDOW" "$SERVER_PID" "$PUB" "$WS_URL" \
  "$FEED_URL" "$MUX_URL" "$FM" "$LOADGEN" "$ORDER" "$P99_MS" "$KEEPUP" "$TRIAL_SECONDS" "$H2H_REPEAT" "$MAX_COUNT" \
  "$MAX_REPEAT" "$FIXED_RATE" "$FIXED_SECONDS" "$FIXED_REPEAT" "$(( $(date +%s) + H2H_BUDGET ))"
log "total ${SECONDS}s"
cleanup

# ---------------------------------------------------------------- summary ---
"$PY" - "$OUT" "$MD" "$SUBS" "$FIXED_RATE" <<'EOF'
import glob, json, math, os, re, statistics, sys
out, md, subs, fixed_rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
meta = json.load(open(os.path.join(out, "meta.json")))
NAMES = {"ws": "WebSocket /topics/{t}", "feed": "TCP feed", "wsmux": "WebSocket /ws"}


def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


def us_per_delivery(d):
    s = d.get("server") or {}
    return s["cpu_seconds_publish"] * 1e6 / d["delivered"] if d.get("delivered") and s.get("cpu_seconds_publish") else None


L = [f"# TCP feed vs crier WebSocket ({meta['date']})", "",
     f"Host {meta['host']}, {meta['cpus']} CPUs, load average at start {meta['loadavg']}; commit {meta['commit']} "
     f"(+ working tree). One server process for both: `{meta['server_cmd']}`. Order: {meta['order']}.", "",
     f"1 topic, {subs:,} subscribers, 128-byte messages, publishing by HTTP POST (16 pipelined). WebSocket "
     "`/topics/{t}` (a 132-byte frame: the bare payload) and `/ws` (a JSON envelope with topic and id, ~260 bytes) "
     "are measured by fanout-meter; the TCP feed (a ~173-byte frame: id, topic, event, content type, payload) by "
     "crier_tcp_feed_loadgen (same CLI, same report, same pass criteria). Ratios are **feed / WebSocket**. "
     "Other load = cores used by other processes on the machine during the trial (> 0.3: read the trial as a "
     "lower bound).", "",
     "## Sustained rate (bench/ws_sweep.py)", "",
     "Highest publish rate whose trial lost nothing, kept p99 < 500 ms and kept the publisher and the deliveries "
     "within 10 % of schedule.", "",
     "| transport | sustained msgs/s | deliveries/s | p50 ms | p99 ms | server CPU | meter CPU | other load | first failure above |",
     "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
best = {}
for n in ("ws", "feed"):
    s = load(os.path.join(out, f"sweep-{n}-{subs}.json"))
    b = s and s.get("best")
    best[n] = b
    h = s and s.get("lowest_fail")
    fail = f"{h['rate']:g}/s: {h['reason']} (other load {h.get('other_cpu')})" if h else ((s or {}).get("stopped") or "none found")
    if b:
        L.append(f"| {NAMES[n]} | {b['rate']:g} | {b['delivered_per_sec']:,.0f} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | "
                 f"{b['server_cpu']} | {b['meter_cpu']} | {b.get('other_cpu')} | {fail} |")
    else:
        L.append(f"| {NAMES[n]} | none | - | - | - | - | - | - | {fail} |")
if best["ws"] and best["feed"]:
    L += ["", f"Sweep ratio, sustained deliveries/s: **{ratio(best['feed']['delivered_per_sec'], best['ws']['delivered_per_sec'])}**."]

# head to head at the sweeps' rates
h2h = {}
for p in glob.glob(os.path.join(out, "h2h-*.json")):
    m = re.match(r"h2h-(ws|feed)-r([\d.]+)-(\d+)\.json", os.path.basename(p))
    d = load(p)
    if m and d:
        h2h.setdefault(float(m.group(2)), {}).setdefault(m.group(1), []).append(d)
if h2h:
    L += ["", "## Head to head at the sweeps' rates (alternating trials, same criteria)", "",
          "| msgs/s | transport | passed | deliveries/s (median) | p50 ms | p99 ms | server CPU | other load | failures |",
          "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for rate in sorted(h2h):
        for n in ("ws", "feed"):
            ds = h2h[rate].get(n, [])
            if not ds:
                continue
            why = "; ".join(sorted({d["_why"] for d in ds if not d["_passed"]}))
            L.append(f"| {rate:g} | {NAMES[n]} | {sum(d['_passed'] for d in ds)}/{len(ds)} | "
                     f"{f(med([d['delivered_per_sec'] for d in ds]), '{:,.0f}')} | "
                     f"{f(med([d['latency_us']['p50'] / 1000 for d in ds]))} | {f(med([d['latency_us']['p99'] / 1000 for d in ds]))} | "
                     f"{f(med([(d.get('server') or {}).get('cpu_utilization') for d in ds]), '{:.2f}')} | "
                     f"{f(med([d.get('_other_cpu') for d in ds]), '{:.2f}')} | {why or '-'} |")

agg = {}
for phase, title, note in [
        ("max", "As fast as the publish window allows (capacity)",
         "`--rate 0`: 16 POSTs in flight, the server's one thread shares its core between publishing and fan-out; "
         "deliveries/s is what it delivered."),
        ("fixed", f"Fixed rate: {fixed_rate:g} msgs/s = {fixed_rate * subs:,.0f} deliveries/s (far below capacity)",
         "The latency of one fan-out to every subscriber, and the server's CPU for the same work.")]:
    runs = {n: [d for d in (load(p) for p in sorted(glob.glob(os.path.join(out, f"{phase}-{n}-*.json")))) if d]
            for n in ("ws", "feed", "wsmux")}
    if not any(runs.values()):
        continue
    L += ["", f"## {title}", "", note + " Medians over the alternating runs.", "",
          "| transport | runs | exact | deliveries/s | p50 ms | p99 ms | max ms | server µs/delivery | server CPU | meter CPU | other load |",
          "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in ("ws", "feed", "wsmux"):
        ds = runs[n]
        if not ds:
            continue
        a = {"dps": med([d["delivered_per_sec"] for d in ds]), "p50": med([d["latency_us"]["p50"] / 1000 for d in ds]),
             "p99": med([d["latency_us"]["p99"] / 1000 for d in ds]), "max": med([d["latency_us"]["max"] / 1000 for d in ds]),
             "us": med([us_per_delivery(d) for d in ds]), "cpu": med([(d.get("server") or {}).get("cpu_utilization") for d in ds]),
             "meter": med([(d.get("meter") or {}).get("cpu_utilization_publish") for d in ds]),
             "other": med([d.get("_other_cpu") for d in ds])}
        agg[(phase, n)] = a
        L.append(f"| {NAMES[n]} | {len(ds)} | {sum(bool(d.get('exact')) for d in ds)}/{len(ds)} | {f(a['dps'], '{:,.0f}')} | "
                 f"{f(a['p50'])} | {f(a['p99'])} | {f(a['max'])} | {f(a['us'], '{:.2f}')} | {f(a['cpu'], '{:.2f}')} | "
                 f"{f(a['meter'], '{:.2f}')} | {f(a['other'], '{:.2f}')} |")
    fe = agg.get((phase, "feed"))
    for ref in ("ws", "wsmux"):
        w = agg.get((phase, ref))
        if w and fe:
            L += ["", f"Ratios ({phase}), feed / {NAMES[ref]}: deliveries/s **{ratio(fe['dps'], w['dps'])}**, "
                      f"p50 **{ratio(fe['p50'], w['p50'])}**, p99 **{ratio(fe['p99'], w['p99'])}**, "
                      f"server µs/delivery **{ratio(fe['us'], w['us'])}**."]

L += ["", "Meter CPU near 1.0 = the load generator, not the server, was the limit. The machine has 2 cores shared "
          "by the server, the meter and everyone else: compare ratios from the same run, repeat before believing a "
          "difference under ~1.5×.", "", f"Raw reports: `{out}/`"]
text = "\n".join(L) + "\n"
open(md, "w").write(text)
sys.stdout.write(text)
EOF
log "report: $MD"
