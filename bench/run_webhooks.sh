#!/usr/bin/env bash
# Webhook delivery: deliveries/s and latency from crier to keep-alive loopback receivers, and
# isolation of healthy subscriptions from hanging and refusing ones.  Loopback only.
#
#   bench/run_webhooks.sh                        # everything (~3 min quiet, <= 6.5)
#   bench/run_webhooks.sh --quick                # shorter runs, no Python-receiver comparison (~1.5 min)
#   bench/run_webhooks.sh --only throughput,isolation   # a subset: throughput, latency, isolation, batching
#   CRIER_SERVER=/path/to/crier_server bench/run_webhooks.sh
#
# Every run starts a fresh crier_server (--webhook-allow 127.0.0.0/8), creates its
# subscriptions through the REST API, publishes on one keep-alive connection and measures at
# the receivers (bench/webhook_receiver.cpp, built with g++; the Python one in
# bench/webhook_bench.py for comparison).  Writes bench/results/webhooks-<date>.md (+ one JSON
# per run in bench/results/webhooks-<date>/) and prints it.  Stops only what it started, by
# PID.  Knobs: see bench/README.md ("Webhook delivery").
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build-bench}"
PY=/usr/bin/python3

QUICK=0
ONLY="throughput,latency,isolation,batching"
usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) shift; ONLY="${1:-}" ;;
    --only=*) ONLY="${1#--only=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for s in ${ONLY//,/ }; do
  case "$s" in throughput|latency|isolation|batching) ;; *) echo "unknown part '$s' (throughput, latency, isolation, batching)" >&2; exit 2 ;; esac
done

if [ "$QUICK" = 1 ]; then
  COUNT1="${COUNT1:-5000}"; COUNT10="${COUNT10:-3000}"
  LAT_SECONDS="${LAT_SECONDS:-3}"; ISO_SECONDS="${ISO_SECONDS:-12}"; ISO_COUNT="${ISO_COUNT:-1000}"
  COMPARE_PY="${COMPARE_PY:-0}"; ISO_REPEAT="${ISO_REPEAT:-1}"; TOTAL_BUDGET="${TOTAL_BUDGET:-240}"
else
  COUNT1="${COUNT1:-8000}"; COUNT10="${COUNT10:-5000}"
  LAT_SECONDS="${LAT_SECONDS:-5}"; ISO_SECONDS="${ISO_SECONDS:-15}"; ISO_COUNT="${ISO_COUNT:-2000}"
  COMPARE_PY="${COMPARE_PY:-1}"; ISO_REPEAT="${ISO_REPEAT:-3}"; TOTAL_BUDGET="${TOTAL_BUDGET:-390}"
fi
LAT_RATE1="${LAT_RATE1:-2000}"        # msgs/s, 1 subscription
LAT_RATE10="${LAT_RATE10:-1000}"      # msgs/s, 10 subscriptions (10,000 deliveries/s)
ISO_RATE="${ISO_RATE:-200}"           # msgs/s, 50 healthy subscriptions (10,000 deliveries/s)
ISO_HEALTHY="${ISO_HEALTHY:-50}"
ISO_HANG="${ISO_HANG:-25}"
ISO_REFUSE="${ISO_REFUSE:-25}"
BAD_RETRY_MS="${BAD_RETRY_MS:-0,1000}"
BATCH_MAX="${BATCH_MAX:-100}"         # batching part: batch_max of the "on" runs (2..1000)
BATCH_10="${BATCH_10:-1}"             # batching part: also the 10-subscription / 10-origin pair
BATCH_REPEAT="${BATCH_REPEAT:-1}"     # batching part: off/on pairs per shape (the report takes medians)
SIZE="${SIZE:-128}"
WINDOW="${WINDOW:-64}"                # pipelined publishes in flight
RUN_MAX="${RUN_MAX:-60}"              # per run: the helper's --max-seconds (+ a 30 s kill timeout)
QUIET_WAIT="${QUIET_WAIT:-10}"        # per run: wait up to this long for other processes to use < 0.3 cores
CRIER_FLAGS="${CRIER_FLAGS:---webhook-allow 127.0.0.0/8}"
# PIN=1: crier on CPU 0, publisher + receiver on the other CPUs (taskset). Unpinned, the
# scheduler often puts crier and the receiver on one CPU, and latency doubles and flips
# between two levels from run to run.
NCPU="$(nproc 2>/dev/null || echo 1)"
PIN="${PIN:-$([ "$NCPU" -ge 2 ] && command -v taskset >/dev/null && echo 1 || echo 0)}"
if [ "$PIN" = 1 ]; then PIN_SERVER=(taskset -c 0); PIN_CLIENT=(taskset -c "1-$((NCPU - 1))"); else PIN_SERVER=(); PIN_CLIENT=(); fi
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="${OUT_DIR:-$HERE/results/webhooks-$STAMP}"
MD="${OUT%/}.md"
RECV_SRC="$HERE/webhook_receiver.cpp"
RECV="${WEBHOOK_RECEIVER:-$BUILD/webhook-receiver/webhook_receiver}"

mkdir -p "$OUT"
log() { echo "[run_webhooks $(date +%H:%M:%S)] $*" >&2; }
DEADLINE=$(( $(date +%s) + TOTAL_BUDGET ))
ulimit -n 4096 2>/dev/null || true

# ---------------------------------------------------------------- cleanup ---
SERVER_PID=""
HELPER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
}
cleanup() {
  if [ -n "$HELPER_PID" ] && kill -0 "$HELPER_PID" 2>/dev/null; then
    kill -TERM "$HELPER_PID" 2>/dev/null; wait "$HELPER_PID" 2>/dev/null
  fi
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build ---
if [ -z "${WEBHOOK_RECEIVER:-}" ]; then
  mkdir -p "$(dirname "$RECV")"
  if [ ! -x "$RECV" ] || [ "$RECV_SRC" -nt "$RECV" ]; then
    log "building webhook_receiver"
    ${CXX:-g++} -O2 -std=c++20 -Wall -Wextra -o "$RECV" "$RECV_SRC" || { log "webhook_receiver build failed"; exit 1; }
  fi
fi
[ -x "$RECV" ] || { log "no webhook_receiver at $RECV"; exit 1; }

if [ -n "${CRIER_SERVER:-}" ]; then
  SERVER="$CRIER_SERVER"
  CRIER_COMMIT="$(git -C "$(dirname "$SERVER")" rev-parse --short HEAD 2>/dev/null || echo '?') (CRIER_SERVER)"
else
  SERVER="$BUILD/examples/crier_server"
  CRIER_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  if ! git -C "$ROOT" diff --quiet HEAD -- include examples 2>/dev/null; then CRIER_COMMIT+=" + uncommitted changes"; fi
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCRIER_BUILD_TESTS=OFF >"$OUT/cmake.log" 2>&1 \
      || { log "cmake configure failed, see $OUT/cmake.log"; exit 1; }
  fi
  cmake --build "$BUILD" --target crier_server -j2 >>"$OUT/cmake.log" 2>&1 \
    || { log "building crier_server failed, see $OUT/cmake.log"; exit 1; }
fi
[ -x "$SERVER" ] || { log "no crier_server at $SERVER"; exit 1; }

"$PY" - "$OUT/meta.json" "$STAMP" "$CRIER_COMMIT" "$CRIER_FLAGS" "$PIN" <<'EOF'
import json, os, sys, socket
out, stamp, commit, flags, pin = sys.argv[1:]
json.dump({"date": stamp, "host": socket.gethostname(), "cpus": os.cpu_count(),
           "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
           "crier_commit": commit, "crier_cmd": "crier_server --listen 127.0.0.1:0 " + flags,
           "pinned": pin == "1"}, open(out, "w"))
EOF

# ------------------------------------------------------------------- runs ---
start_server() {
  "${PIN_SERVER[@]}" "$SERVER" --listen 127.0.0.1:0 $CRIER_FLAGS >"$OUT/crier_server-$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do grep -q "crier listening" "$OUT/crier_server-$1.log" 2>/dev/null && break; sleep 0.1; done
  BASE="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$OUT/crier_server-$1.log" | head -1)"
  [ -n "$BASE" ] || { log "crier_server did not start:"; cat "$OUT/crier_server-$1.log" >&2; stop_server; return 1; }
}

# run NAME GROUP [helper args...]: one measurement on a fresh crier_server.
run() {
  local name="$1" group="$2"; shift 2
  if [ $(( $(date +%s) + 20 )) -ge "$DEADLINE" ]; then log "time budget used up, skipping $name"; return 0; fi
  start_server "$name" || return 0
  log "$name: crier pid $SERVER_PID at $BASE (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  "${PIN_CLIENT[@]}" timeout -k 5 $(( RUN_MAX + 30 )) "$PY" "$HERE/webhook_bench.py" run --base "$BASE" --server-pid "$SERVER_PID" \
    --name "$name" --group "$group" --size "$SIZE" --window "$WINDOW" --max-seconds "$RUN_MAX" \
    --quiet-wait "$QUIET_WAIT" --bad-retry-ms "$BAD_RETRY_MS" --out "$OUT/$name.json" "$@" 2>>"$OUT/$name.err" &
  HELPER_PID=$!
  wait "$HELPER_PID" || log "$name: helper exited with $? (see $OUT/$name.err)"
  HELPER_PID=""
  tail -n 1 "$OUT/$name.err" >&2
  kill -0 "$SERVER_PID" 2>/dev/null || log "WARNING: crier_server (pid $SERVER_PID) died during $name"
  stop_server
}
want() { case ",$ONLY," in *",$1,"*) return 0;; *) return 1;; esac; }
CPP=(--receiver "$RECV")

log "parts: $ONLY; budget ${TOTAL_BUDGET}s; out $OUT"
if want throughput; then
  run burst-1       throughput "${CPP[@]}" --count "$COUNT1"
  run burst-10      throughput "${CPP[@]}" --count "$COUNT10" --origins 10
  run burst-10x1    throughput "${CPP[@]}" --count "$COUNT10" --origins 1 --paths 10
  if [ "$COMPARE_PY" = 1 ]; then
    run burst-1-py  throughput --count "$COUNT1"
    run burst-10-py throughput --count "$COUNT10" --origins 10
  fi
fi
if want latency; then
  run paced-1       latency "${CPP[@]}" --rate "$LAT_RATE1" --seconds "$LAT_SECONDS"
  run paced-10      latency "${CPP[@]}" --rate "$LAT_RATE10" --seconds "$LAT_SECONDS" --origins 10
fi
if want batching; then   # the burst-1 (and burst-10) load, batch_max 1 vs BATCH_MAX, alternating
  for r in $(seq 1 "$BATCH_REPEAT"); do
    sfx=""; [ "$BATCH_REPEAT" -gt 1 ] && sfx="-$r"
    run "batch-1-b1$sfx"             batching "${CPP[@]}" --count "$COUNT1"
    run "batch-1-b$BATCH_MAX$sfx"    batching "${CPP[@]}" --count "$COUNT1" --batch-max "$BATCH_MAX"
    if [ "$BATCH_10" = 1 ]; then
      run "batch-10-b1$sfx"          batching "${CPP[@]}" --count "$COUNT10" --origins 10
      run "batch-10-b$BATCH_MAX$sfx" batching "${CPP[@]}" --count "$COUNT10" --origins 10 --batch-max "$BATCH_MAX"
    fi
  done
fi
if want isolation; then
  ISO=("${CPP[@]}" --origins "$ISO_HEALTHY")
  BAD=(--hang "$ISO_HANG" --refuse "$ISO_REFUSE")
  for r in $(seq 1 "$ISO_REPEAT"); do   # base and mixed alternate; the report takes medians
    run "iso-paced-base-$r"  isolation "${ISO[@]}" --rate "$ISO_RATE" --seconds "$ISO_SECONDS"
    run "iso-paced-mixed-$r" isolation "${ISO[@]}" --rate "$ISO_RATE" --seconds "$ISO_SECONDS" "${BAD[@]}"
  done
  for r in $(seq 1 "$ISO_REPEAT"); do
    run "iso-burst-base-$r"  isolation "${ISO[@]}" --count "$ISO_COUNT"
    run "iso-burst-mixed-$r" isolation "${ISO[@]}" --count "$ISO_COUNT" "${BAD[@]}"
  done
fi
log "total ${SECONDS}s"

# ---------------------------------------------------------------- summary ---
"$PY" "$HERE/webhook_bench.py" report --out-dir "$OUT" --md "$MD" --rel-to "$ROOT"
log "report: $MD"
