#!/usr/bin/env bash
# SSE fan-out comparison: crier vs Nchan under the SAME fanout-meter load, plus
# crier's own client (crier_bench_sse_fanout) against both.  Loopback only.
#
#   bench/run_sse.sh                 # everything, < 10 min
#   SUBS_LIST="1000" bench/run_sse.sh
#   RUN_CRIER=0 bench/run_sse.sh     # Nchan half only (e.g. before crier_server exists)
#
# Writes every JSON report into bench/results/<date>/ and prints a summary table
# with crier/Nchan ratios.  Stops only the servers it started, by PID.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${CRIER_SHARED:-$ROOT/../shared}"
BUILD="${BUILD_DIR:-$ROOT/build-bench}"
SUBS_LIST="${SUBS_LIST:-1000 10000}"
DELIV_RATE="${DELIV_RATE:-50000}"         # fixed-rate runs: msgs/s = DELIV_RATE / subs (Nchan max ~130k/s here)
FIXED_SECONDS="${FIXED_SECONDS:-5}"       # fixed-rate runs publish for this long
MAX_DELIVERIES="${MAX_DELIVERIES:-2000000}" # max-rate runs: count = MAX_DELIVERIES / subs
MEM_SUBS="${MEM_SUBS:-10000}"             # idle-connection memory run
SIZE="${SIZE:-128}"
WINDOW="${WINDOW:-16}"                    # pipelined publishes in flight (one connection)
RUN_CRIER="${RUN_CRIER:-1}"
RUN_NCHAN="${RUN_NCHAN:-1}"
RUN_MAX="${RUN_MAX:-90}"                  # per-run bound (--max-seconds); timeout adds 30 s
TOTAL_BUDGET="${TOTAL_BUDGET:-570}"       # whole script, seconds
OUT="${OUT_DIR:-$HERE/results/$(date +%Y%m%d-%H%M%S)}"
NCHAN_DIR="$SHARED/peers/nchan"
FM_SRC="$SHARED/tools/fanout-meter"
FM="$BUILD/fanout-meter/fanout-meter"
CLIENT="$BUILD/bench/crier_bench_sse_fanout"
SERVER="$BUILD/examples/crier_server"

mkdir -p "$OUT"
log() { echo "[run_sse $(date +%H:%M:%S)] $*" >&2; }

# 10,000 connections per side need descriptors: as many as allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "ulimit -n = $(ulimit -n)"

# ---------------------------------------------------------------- cleanup ---
CRIER_PID=""
NCHAN_STARTED=0
cleanup() {
  if [ -n "$CRIER_PID" ] && kill -0 "$CRIER_PID" 2>/dev/null; then
    kill -TERM "$CRIER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$CRIER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$CRIER_PID" 2>/dev/null && kill -KILL "$CRIER_PID" 2>/dev/null
    log "crier_server (pid $CRIER_PID) stopped"
  fi
  if [ "$NCHAN_STARTED" = 1 ]; then "$NCHAN_DIR/stop.sh" >&2 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build ---
# fanout-meter's build.sh writes next to itself (a shared, read-only folder), so
# compile it into the build dir with the same flags build.sh uses.
mkdir -p "$BUILD/fanout-meter"
if [ ! -x "$FM" ] || [ "$FM_SRC/fanout_meter.cpp" -nt "$FM" ] || [ "$FM_SRC/fm_proto.hpp" -nt "$FM" ]; then
  log "building fanout-meter"
  ${CXX:-g++} -O2 -std=c++17 -DASIO_STANDALONE -DASIO_NO_DEPRECATED -Wall -Wextra \
    -o "$FM" "$FM_SRC/fanout_meter.cpp" -pthread || { log "fanout-meter build failed"; exit 1; }
fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCRIER_BUILD_TESTS=OFF >"$OUT/cmake.log" 2>&1 \
    || { log "cmake configure failed, see $OUT/cmake.log"; exit 1; }
fi
cmake --build "$BUILD" --target crier_bench_sse_fanout -j2 >>"$OUT/cmake.log" 2>&1 \
  || { log "building crier_bench_sse_fanout failed, see $OUT/cmake.log"; exit 1; }
if [ "$RUN_CRIER" = 1 ]; then
  if ! cmake --build "$BUILD" --target crier_server -j2 >>"$OUT/cmake.log" 2>&1 || [ ! -x "$SERVER" ]; then
    log "crier_server does not build yet (see $OUT/cmake.log): measuring Nchan only"
    RUN_CRIER=0
  fi
fi

# ---------------------------------------------------------------- servers ---
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [ "$RUN_CRIER" = 1 ]; then
  CRIER_PORT="$(free_port)"
  "$SERVER" --listen "127.0.0.1:$CRIER_PORT" >"$OUT/crier_server.log" 2>&1 &
  CRIER_PID=$!
  for _ in $(seq 1 100); do grep -q "crier listening" "$OUT/crier_server.log" 2>/dev/null && break; sleep 0.1; done
  if ! grep -q "crier listening" "$OUT/crier_server.log"; then
    log "crier_server did not start:"; cat "$OUT/crier_server.log" >&2; exit 1
  fi
  log "crier_server pid $CRIER_PID on 127.0.0.1:$CRIER_PORT"
fi
if [ "$RUN_NCHAN" = 1 ]; then
  if [ -f /tmp/nchan-peer/nginx.pid ] && kill -0 "$(cat /tmp/nchan-peer/nginx.pid)" 2>/dev/null; then
    log "nchan already running (not started by this script; left running)"
  else
    "$NCHAN_DIR/start.sh" >&2 || { log "nchan did not start"; exit 1; }
    NCHAN_STARTED=1
  fi
  NCHAN_PID="$(cat /tmp/nchan-peer/nginx.pid)"
  # nginx.conf: nchan_message_buffer_length 100, 1 h, 2 workers.  Live SSE
  # subscribers get messages as published; the buffer only matters for resume.
fi

sub_url() { case "$1" in crier) echo "http://127.0.0.1:$CRIER_PORT/topics/{topic}";; nchan) echo "http://127.0.0.1:9101/sse/{topic}";; esac; }
pub_url() { case "$1" in crier) echo "http://127.0.0.1:$CRIER_PORT/topics/{topic}";; nchan) echo "http://127.0.0.1:9101/pub/{topic}";; esac; }
pid_args() { case "$1" in crier) echo "--server-pid $CRIER_PID";; nchan) echo "--server-pid $NCHAN_PID --server-pid-tree";; esac; }
servers() { [ "$RUN_CRIER" = 1 ] && echo crier; [ "$RUN_NCHAN" = 1 ] && echo nchan; }
# Past ~28k ephemeral ports (and with many TIME_WAITs from earlier runs) spread
# subscribers over 127.0.0.1..8.
src_ips() { if [ "$1" -ge 5000 ]; then echo "--src-ips 8"; fi; }

budget_ok() { if [ "$SECONDS" -ge "$TOTAL_BUDGET" ]; then log "time budget ($TOTAL_BUDGET s) used up, skipping $1"; return 1; fi; }

# run_fm NAME SERVER SUBS COUNT RATE [extra...]
run_fm() {
  local name="$1" srv="$2" subs="$3" count="$4" rate="$5"; shift 5
  budget_ok "$name" || return 0
  log "$name: fanout-meter → $srv, subs=$subs count=$count rate=$rate"
  # shellcheck disable=SC2046
  timeout $((RUN_MAX + 30)) "$FM" --mode sse --url "$(sub_url "$srv")" --pub-url "$(pub_url "$srv")" \
    --topic-prefix 'r{run}t' --topics 1 --subs "$subs" $(src_ips "$subs") --size "$SIZE" \
    --count "$count" --rate "$rate" --pub-window "$WINDOW" --drain 10 \
    $(pid_args "$srv") --max-seconds "$RUN_MAX" --label "$name" --quiet "$@" \
    >"$OUT/$name.json" 2>"$OUT/$name.err" || log "$name: exit $? (see $OUT/$name.err)"
  sleep 1   # let the server reap the closed connections
}

# run_own NAME SERVER SUBS COUNT RATE [extra...]
run_own() {
  local name="$1" srv="$2" subs="$3" count="$4" rate="$5"; shift 5
  budget_ok "$name" || return 0
  log "$name: crier_bench_sse_fanout → $srv, subs=$subs count=$count rate=$rate"
  # shellcheck disable=SC2046
  timeout $((RUN_MAX + 30)) "$CLIENT" --sub-url "$(sub_url "$srv")" --pub-url "$(pub_url "$srv")" \
    --topic 'bench{run}' --subs "$subs" $(src_ips "$subs") --size "$SIZE" --count "$count" --rate "$rate" \
    --pub-window "$WINDOW" --drain 10 $(pid_args "$srv") --max-seconds "$RUN_MAX" --label "$name" --quiet "$@" \
    >"$OUT/$name.json" 2>"$OUT/$name.err" || log "$name: exit $? (see $OUT/$name.err)"
  sleep 1
}

# ------------------------------------------------------------------- runs ---
# Memory first, on fresh servers (freed memory from earlier runs would hide growth).
for srv in $(servers); do
  run_fm "mem-$srv-$MEM_SUBS" "$srv" "$MEM_SUBS" 0 0 --settle 2000
done
for subs in $SUBS_LIST; do
  fixed_rate=$(( DELIV_RATE / subs )); [ "$fixed_rate" -lt 1 ] && fixed_rate=1
  fixed_count=$(( fixed_rate * FIXED_SECONDS ))
  max_count=$(( MAX_DELIVERIES / subs )); [ "$max_count" -lt 20 ] && max_count=20
  for srv in $(servers); do
    run_fm  "fm-fixed-$srv-$subs"  "$srv" "$subs" "$fixed_count" "$fixed_rate"
    run_fm  "fm-max-$srv-$subs"    "$srv" "$subs" "$max_count" 0
    run_own "own-fixed-$srv-$subs" "$srv" "$subs" "$fixed_count" "$fixed_rate"
    run_own "own-max-$srv-$subs"   "$srv" "$subs" "$max_count" 0
  done
done
if [ "$RUN_CRIER" = 1 ] && ! kill -0 "$CRIER_PID" 2>/dev/null; then log "WARNING: crier_server died during the runs (see $OUT/crier_server.log)"; fi
log "total ${SECONDS}s; reports in $OUT"

# ---------------------------------------------------------------- summary ---
/usr/bin/python3 - "$OUT" <<'EOF'
import json, os, sys, glob
out = sys.argv[1]
R = {}
for f in glob.glob(os.path.join(out, "*.json")):
    try:
        R[os.path.basename(f)[:-5]] = json.load(open(f))
    except Exception:
        pass
def get(name, path):
    d = R.get(name)
    for k in path:
        if not isinstance(d, dict) or k not in d: return None
        d = d[k]
    return d
def fmt(v):
    if v is None: return "-"
    if isinstance(v, bool): return str(v)
    if isinstance(v, float) or isinstance(v, int):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return str(v)
rows = []
subs_levels = sorted({int(k.rsplit("-", 1)[1]) for k in R if k.startswith(("fm-", "own-"))})
mem = [k for k in R if k.startswith("mem-")]
for tool in ("fm", "own"):
    for mode in ("fixed", "max"):
        for s in subs_levels:
            c, n = f"{tool}-{mode}-crier-{s}", f"{tool}-{mode}-nchan-{s}"
            if c not in R and n not in R: continue
            test = f"{'fanout-meter' if tool == 'fm' else 'own client'} {mode} subs={s}"
            for label, path in (("delivered msg/s", ["delivered_per_sec"]),
                                ("latency p50 us", ["latency_us", "p50"]),
                                ("latency p99 us", ["latency_us", "p99"]),
                                ("latency max us", ["latency_us", "max"]),
                                ("server cpu s (publish)", ["server", "cpu_seconds_publish"]),
                                ("server cpu us/delivery", "cpu_per"),
                                ("client cpu util", "client_cpu"),
                                ("delivered/expected", None), ("exact", ["exact"])):
                if path in ("cpu_per", "client_cpu"):
                    def comp(k):
                        if k not in R: return None
                        if path == "client_cpu":
                            return (get(k, ["client", "cpu_utilization_publish"]) or get(k, ["meter", "cpu_utilization_publish"]))
                        c, d = get(k, ["server", "cpu_seconds_publish"]), get(k, ["delivered"])
                        return c * 1e6 / d if c is not None and d else None
                    cv, nv = comp(c), comp(n)
                    ratio = f"{cv / nv:.2f}" if path == "cpu_per" and cv is not None and nv else ""
                    rows.append((test, label, fmt(cv), fmt(nv), ratio)); continue
                if path is None:
                    cv = f"{get(c,['delivered'])}/{get(c,['expected'])}" if c in R else "-"
                    nv = f"{get(n,['delivered'])}/{get(n,['expected'])}" if n in R else "-"
                    rows.append((test, label, cv, nv, "")); continue
                cv, nv = get(c, path), get(n, path)
                ratio = f"{cv / nv:.2f}" if isinstance(cv, (int, float)) and isinstance(nv, (int, float)) and not isinstance(cv, bool) and nv else ""
                rows.append((test, label, fmt(cv), fmt(nv), ratio))
for k in sorted(mem):
    pass
ms = sorted({k.rsplit("-", 1)[1] for k in mem})
for s in ms:
    c, n = f"mem-crier-{s}", f"mem-nchan-{s}"
    for label, path in (("RSS delta per conn (B)", ["server", "rss_delta_per_conn_bytes"]),
                        ("RSS after connect (KB)", ["server", "rss_after_connect_kb"]),
                        ("subs connected", ["subs_connected"]), ("connect s", ["connect_seconds"])):
        cv, nv = get(c, path), get(n, path)
        ratio = f"{cv / nv:.2f}" if isinstance(cv, (int, float)) and isinstance(nv, (int, float)) and nv else ""
        rows.append((f"idle memory subs={s}", label, fmt(cv), fmt(nv), ratio))
w = [max(len(str(r[i])) for r in rows + [("test", "metric", "crier", "nchan", "crier/nchan")]) for i in range(5)]
line = lambda r: "  ".join(str(x).ljust(w[i]) if i < 2 else str(x).rjust(w[i]) for i, x in enumerate(r))
print(line(("test", "metric", "crier", "nchan", "crier/nchan")))
print("  ".join("-" * x for x in w))
prev = None
for r in rows:
    if prev and r[0] != prev: print()
    print(line(r)); prev = r[0]
with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write(line(("test", "metric", "crier", "nchan", "crier/nchan")) + "\n")
    for r in rows: f.write(line(r) + "\n")
print(f"\nratios: crier / Nchan (msg/s: >1 = crier faster; latency and memory: <1 = crier better). Reports: {out}")
EOF
