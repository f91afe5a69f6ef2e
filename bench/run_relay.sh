#!/usr/bin/env bash
# The relay (docs/relay.md): relayed HTTP requests/s and latency through a WebSocket and a
# long-poll relay client vs. the same load straight to a Node http server, and webhook
# deliveries down the relay vs. to a loopback HTTP receiver.  Loopback only.
#
#   bench/run_relay.sh                      # everything (~3.5 min; TOTAL_BUDGET caps it)
#   bench/run_relay.sh --quick              # one repeat, shorter runs (~1.5 min)
#   bench/run_relay.sh --only http          # a part: http, hooks
#   CRIER_SERVER=/path/to/crier_server bench/run_relay.sh
#
# Every run starts a fresh crier_server (for webhooks to a loopback receiver with
# --webhook-allow 127.0.0.0/8; for everything else without it, so webhook deliveries to relay
# URLs can only take the relay's in-process route), runs one `relay_bench.mjs run` (Node, npm
# `ws` from tests/browser/node_modules) and stops the server by PID.  Writes
# bench/results/relay-<date>.md (+ one JSON per run in bench/results/relay-<date>/) and prints
# it.  Knobs: see bench/README.md ("Relay").
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BUILD="${BUILD_DIR:-$ROOT/build-bench}"
NODE="${NODE:-node}"
HELPER="$HERE/relay_bench.mjs"

QUICK=0
ONLY="http,hooks"
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
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
  case "$s" in http|hooks) ;; *) echo "unknown part '$s' (http, hooks)" >&2; exit 2 ;; esac
done

if [ "$QUICK" = 1 ]; then
  REPEAT="${REPEAT:-1}"; LOAD_SECONDS="${LOAD_SECONDS:-2}"; HOOK_SECONDS="${HOOK_SECONDS:-2}"
  HOOK_REPEAT="${HOOK_REPEAT:-1}"; TOTAL_BUDGET="${TOTAL_BUDGET:-120}"
else
  REPEAT="${REPEAT:-2}"; LOAD_SECONDS="${LOAD_SECONDS:-3}"; HOOK_SECONDS="${HOOK_SECONDS:-3}"
  HOOK_REPEAT="${HOOK_REPEAT:-2}"; TOTAL_BUDGET="${TOTAL_BUDGET:-225}"
fi
CONNS_LIST="${CONNS_LIST:-1 16 64}"   # HTTP keep-alive connections (each one request at a time)
SIZE="${SIZE:-128}"                   # request body bytes (echoed back)
BIG_SIZE="${BIG_SIZE:-65536}"         # the large-body shape (0 = skip it)
BIG_CONNS="${BIG_CONNS:-16}"
WARMUP="${WARMUP:-0.5}"               # seconds of load before measuring
HOOK_COUNT1="${HOOK_COUNT1:-5000}"    # webhook burst, 1 subscription
HOOK_COUNT10="${HOOK_COUNT10:-2000}"  # webhook burst, 10 subscriptions (x10 deliveries)
HOOK_RATE="${HOOK_RATE:-1000}"        # paced webhook run, msgs/s, 1 subscription
HOOK_CPP="${HOOK_CPP:-1}"             # also the C++ receiver (bench/webhook_receiver.cpp) for burst-1
WINDOW="${WINDOW:-64}"                # pipelined publishes in flight
WS_DEFLATE="${WS_DEFLATE:-0}"         # 1: the WebSocket relay client offers permessage-deflate
RUN_MAX="${RUN_MAX:-30}"              # per run: the helper's bound (its parts get +10 s, the helper is killed at +30 s)
# PIN=1: crier and the answering side (relay client or origin) on CPU 0, the load generator /
# publisher / webhook receiver on the others.
NCPU="$(nproc 2>/dev/null || echo 1)"
PIN="${PIN:-$([ "$NCPU" -ge 2 ] && command -v taskset >/dev/null && echo 1 || echo 0)}"
if [ "$PIN" = 1 ]; then PIN_S=0; PIN_C="1-$((NCPU - 1))"; PIN_SERVER=(taskset -c "$PIN_S"); else PIN_S=""; PIN_C=""; PIN_SERVER=(); fi
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="${OUT_DIR:-$HERE/results/relay-$STAMP}"
MD="${OUT%/}.md"
RECV_SRC="$HERE/webhook_receiver.cpp"
RECV="${WEBHOOK_RECEIVER:-$BUILD/webhook-receiver/webhook_receiver}"

mkdir -p "$OUT"
log() { echo "[run_relay $(date +%H:%M:%S)] $*" >&2; }
DEADLINE=$(( $(date +%s) + TOTAL_BUDGET ))
ulimit -n 4096 2>/dev/null || true

command -v "$NODE" >/dev/null || { log "no node"; exit 1; }
[ -d "$ROOT/tests/browser/node_modules/ws" ] || { log "npm ws missing: (cd tests/browser && npm install)"; exit 1; }

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
  log "building crier_server in $BUILD"
  cmake --build "$BUILD" --target crier_server -j2 >>"$OUT/cmake.log" 2>&1 \
    || { log "building crier_server failed, see $OUT/cmake.log"; exit 1; }
fi
[ -x "$SERVER" ] || { log "no crier_server at $SERVER"; exit 1; }
case ",$ONLY," in *",hooks,"*)
  if [ "$HOOK_CPP" = 1 ] && [ -z "${WEBHOOK_RECEIVER:-}" ]; then
    mkdir -p "$(dirname "$RECV")"
    if [ ! -x "$RECV" ] || [ "$RECV_SRC" -nt "$RECV" ]; then
      log "building webhook_receiver"
      ${CXX:-g++} -O2 -std=c++20 -Wall -Wextra -o "$RECV" "$RECV_SRC" || { log "webhook_receiver build failed: skipping the C++ receiver"; HOOK_CPP=0; }
    fi
  fi ;;
esac
DEADLINE=$(( $(date +%s) + TOTAL_BUDGET ))   # the budget counts from here, after the build

"$NODE" -e '
const [out, stamp, commit, pin, ps, pc] = process.argv.slice(1);
const fs = require("fs"), os = require("os");
fs.writeFileSync(out, JSON.stringify({ date: stamp, host: os.hostname(), cpus: os.cpus().length,
  loadavg: os.loadavg().map((x) => x.toFixed(2)).join(" "), crier_commit: commit, node: process.version,
  crier_cmd: "crier_server --listen 127.0.0.1:0 [--webhook-allow 127.0.0.0/8 for the loopback webhook runs]",
  pinned: pin === "1", pin_server: ps, pin_client: pc }));
' "$OUT/meta.json" "$STAMP" "$CRIER_COMMIT" "$PIN" "$PIN_S" "$PIN_C"

# ------------------------------------------------------------------- runs ---
start_server() {  # start_server NAME [flags...]
  local name="$1"; shift
  "${PIN_SERVER[@]}" "$SERVER" --listen 127.0.0.1:0 "$@" >"$OUT/crier_server-$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do grep -q "crier listening" "$OUT/crier_server-$name.log" 2>/dev/null && break; sleep 0.1; done
  BASE="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$OUT/crier_server-$name.log" | head -1)"
  [ -n "$BASE" ] || { log "crier_server did not start:"; cat "$OUT/crier_server-$name.log" >&2; stop_server; return 1; }
}

# run NAME "SERVER FLAGS" [helper args...]: one measurement on a fresh crier_server.
run() {
  local name="$1" flags="$2"; shift 2
  if [ $(( $(date +%s) + 10 )) -ge "$DEADLINE" ]; then log "time budget used up, skipping $name"; return 0; fi
  # shellcheck disable=SC2086
  start_server "$name" $flags || return 0
  timeout -k 5 $(( RUN_MAX + 30 )) "$NODE" "$HELPER" run --name "$name" --base "$BASE" --server-pid "$SERVER_PID" \
    --pin-server "$PIN_S" --pin-client "$PIN_C" --max-seconds "$RUN_MAX" --out "$OUT/$name.json" "$@" 2>>"$OUT/$name.err" &
  HELPER_PID=$!
  wait "$HELPER_PID" || log "$name: helper exited with $? (see $OUT/$name.err)"
  HELPER_PID=""
  tail -n 1 "$OUT/$name.err" >&2
  kill -0 "$SERVER_PID" 2>/dev/null || log "WARNING: crier_server (pid $SERVER_PID) died during $name"
  stop_server
}
want() { case ",$ONLY," in *",$1,"*) return 0;; *) return 1;; esac; }

log "parts: $ONLY; repeats $REPEAT (http) / $HOOK_REPEAT (hooks); budget ${TOTAL_BUDGET}s; pinned $PIN; out $OUT"
if want http; then
  shapes=()
  for c in $CONNS_LIST; do shapes+=("$c:$SIZE"); done
  [ "$BIG_SIZE" -gt 0 ] && shapes+=("$BIG_CONNS:$BIG_SIZE")
  for sh in "${shapes[@]}"; do
    c="${sh%%:*}"; z="${sh##*:}"
    for r in $(seq 1 "$REPEAT"); do   # the three routes alternate; the ratio table takes medians
      for route in direct ws lp; do
        run "http-c$c-s$z-$route-$r" "" --kind http --route "$route" --conns "$c" --size "$z" \
          --seconds "$LOAD_SECONDS" --warmup "$WARMUP" --deflate "$WS_DEFLATE"
      done
    done
  done
fi
if want hooks; then
  ALLOW="--webhook-allow 127.0.0.0/8"
  for r in $(seq 1 "$HOOK_REPEAT"); do
    run "hook-burst1-relay-$r" ""       --kind hook --route relay --subs 1 --count "$HOOK_COUNT1" --window "$WINDOW"
    run "hook-burst1-http-$r"  "$ALLOW" --kind hook --route http  --subs 1 --count "$HOOK_COUNT1" --window "$WINDOW"
    [ "$HOOK_CPP" = 1 ] && run "hook-burst1-cpp-$r" "$ALLOW" --kind hook --route cpp --receiver "$RECV" --subs 1 --count "$HOOK_COUNT1" --window "$WINDOW"
    run "hook-burst10-relay-$r" ""       --kind hook --route relay --subs 10 --count "$HOOK_COUNT10" --window "$WINDOW"
    run "hook-burst10-http-$r"  "$ALLOW" --kind hook --route http  --subs 10 --count "$HOOK_COUNT10" --window "$WINDOW"
    run "hook-paced1-relay-$r" ""       --kind hook --route relay --subs 1 --rate "$HOOK_RATE" --seconds "$HOOK_SECONDS" --window "$WINDOW"
    run "hook-paced1-http-$r"  "$ALLOW" --kind hook --route http  --subs 1 --rate "$HOOK_RATE" --seconds "$HOOK_SECONDS" --window "$WINDOW"
  done
fi
log "total ${SECONDS}s"

# ---------------------------------------------------------------- summary ---
"$NODE" "$HELPER" report --out-dir "$OUT" --md "$MD"
log "report: $MD"
