#!/usr/bin/env bash
# WebSocket fan-out comparison: crier vs websocketpp, Node ws and Nchan, one
# server at a time, same fanout-meter load.  Loopback only.
#
#   bench/run_ws.sh                          # everything: 2,000 and 10,000 subs, idle RSS (~15 min)
#   bench/run_ws.sh --quick                  # 2,000 subs only, fewer sweep steps (~5 min)
#   bench/run_ws.sh --only crier,websocketpp # a subset (crier, websocketpp, node-ws, nchan)
#   CRIER_SERVER=/path/to/crier_server bench/run_ws.sh
#
# Per server: start it (fresh), measure RSS per idle connection at 10,000
# connections, then for each subscriber count sweep the publish rate for the
# highest one it sustains (no loss, p99 < 500 ms, no backlog), then stop it.
# Writes bench/results/ws-<date>.md (+ every fanout-meter report in
# bench/results/ws-<date>/) and prints the tables.  Stops only what it started,
# by PID.  Knobs: see bench/README.md ("WebSocket fan-out").
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${CRIER_SHARED:-$ROOT/../shared}"
BUILD="${BUILD_DIR:-$ROOT/build-bench}"
PY=/usr/bin/python3

QUICK=0
ONLY="crier,websocketpp,node-ws,nchan"
usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
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
  case "$s" in crier|websocketpp|node-ws|nchan) ;; *) echo "unknown server '$s' (crier, websocketpp, node-ws, nchan)" >&2; exit 2 ;; esac
done

if [ "$QUICK" = 1 ]; then
  SUBS_LIST="${SUBS_LIST:-2000}"; BISECT="${BISECT:-2}"; RETRIES="${RETRIES:-0}"
  TRIAL_SECONDS="${TRIAL_SECONDS:-3}"; TOTAL_BUDGET="${TOTAL_BUDGET:-600}"
else
  SUBS_LIST="${SUBS_LIST:-2000 10000}"; BISECT="${BISECT:-3}"; RETRIES="${RETRIES:-1}"
  TRIAL_SECONDS="${TRIAL_SECONDS:-4}"; TOTAL_BUDGET="${TOTAL_BUDGET:-1800}"
fi
IDLE_CONNS="${IDLE_CONNS:-10000}"          # 0 = skip the idle-RSS run
P99_MS="${P99_MS:-500}"
KEEPUP="${KEEPUP:-0.9}"                    # publisher and deliveries within 10 % of schedule
SIZE="${SIZE:-128}"
WINDOW="${WINDOW:-16}"                     # pipelined HTTP publishes in flight (crier, node-ws)
TRIAL_MAX="${TRIAL_MAX:-30}"               # per trial: fanout-meter --max-seconds (the helper adds a 20 s kill timeout)
# Realistic crier settings, spelled out (these are crier_server's defaults):
# bounded per-subscriber queues, disconnect on overflow, heartbeats on, history kept.
CRIER_FLAGS="${CRIER_FLAGS:---queue-messages 4096 --queue-bytes 33554432 --policy disconnect --heartbeat 15000 --history-messages 1000}"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="${OUT_DIR:-$HERE/results/ws-$STAMP}"
MD="${OUT%/}.md"
FM_SRC="$SHARED/tools/fanout-meter"
FM="${FANOUT_METER:-$BUILD/fanout-meter/fanout-meter}"
PEERS="$SHARED/peers"

mkdir -p "$OUT"
log() { echo "[run_ws $(date +%H:%M:%S)] $*" >&2; }
DEADLINE=$(( $(date +%s) + TOTAL_BUDGET ))

# 10,000 connections need 10,000 descriptors in the meter and in the server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
  log "WARNING: ulimit -n is $(ulimit -n); 10,000-connection runs will fail"
fi

# ---------------------------------------------------------------- cleanup ---
CUR=""            # server being measured
CUR_PID=""        # its pid (crier: our child; peers: from their pid file)
CUR_STARTED=0     # 1 = we started it, so we stop it
HELPER_PID=""
stop_current() {
  [ -n "$CUR" ] || return 0
  if [ "$CUR_STARTED" = 1 ]; then
    if [ "$CUR" = crier ]; then
      if [ -n "$CUR_PID" ] && kill -0 "$CUR_PID" 2>/dev/null; then
        kill -TERM "$CUR_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$CUR_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$CUR_PID" 2>/dev/null && kill -KILL "$CUR_PID" 2>/dev/null
        wait "$CUR_PID" 2>/dev/null
      fi
      log "crier_server (pid $CUR_PID) stopped"
    else
      "$PEERS/$CUR/stop.sh" >&2 || log "$CUR: stop.sh failed"
    fi
  fi
  CUR=""; CUR_PID=""; CUR_STARTED=0
}
cleanup() {
  if [ -n "$HELPER_PID" ] && kill -0 "$HELPER_PID" 2>/dev/null; then
    kill -TERM "$HELPER_PID" 2>/dev/null; wait "$HELPER_PID" 2>/dev/null
  fi
  stop_current
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build ---
if [ -z "${FANOUT_METER:-}" ]; then
  mkdir -p "$BUILD/fanout-meter"
  if [ ! -x "$FM" ] || [ "$FM_SRC/fanout_meter.cpp" -nt "$FM" ] || [ "$FM_SRC/fm_proto.hpp" -nt "$FM" ]; then
    log "building fanout-meter"
    ${CXX:-g++} -O2 -std=c++17 -DASIO_STANDALONE -DASIO_NO_DEPRECATED -Wall -Wextra \
      -o "$FM" "$FM_SRC/fanout_meter.cpp" -pthread || { log "fanout-meter build failed"; exit 1; }
  fi
fi
[ -x "$FM" ] || { log "no fanout-meter at $FM"; exit 1; }

want() { case ",$ONLY," in *",$1,"*) return 0;; *) return 1;; esac; }
CRIER_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
if want crier; then
  if [ -n "${CRIER_SERVER:-}" ]; then
    SERVER="$CRIER_SERVER"
    CRIER_COMMIT="$(git -C "$(dirname "$SERVER")" rev-parse --short HEAD 2>/dev/null || echo '?') (CRIER_SERVER)"
  else
    SERVER="$BUILD/examples/crier_server"
    if [ ! -f "$BUILD/CMakeCache.txt" ]; then
      cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCRIER_BUILD_TESTS=OFF >"$OUT/cmake.log" 2>&1 \
        || { log "cmake configure failed, see $OUT/cmake.log"; exit 1; }
    fi
    cmake --build "$BUILD" --target crier_server -j2 >>"$OUT/cmake.log" 2>&1 \
      || { log "building crier_server failed, see $OUT/cmake.log"; exit 1; }
  fi
  [ -x "$SERVER" ] || { log "no crier_server at $SERVER"; exit 1; }
fi

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
pidfile_of() { case "$1" in nchan) echo /tmp/nchan-peer/nginx.pid;; *) echo "/tmp/$1-peer/server.pid";; esac; }

# start_server NAME: sets CUR, CUR_PID, CUR_STARTED, SUB_URL, PUB_ARGS, TREE
start_server() {
  local name="$1" pf
  CUR="$name"; TREE=""
  case "$name" in
    crier)
      local port; port="$(free_port)"
      # shellcheck disable=SC2086
      "$SERVER" --listen "127.0.0.1:$port" $CRIER_FLAGS >"$OUT/crier_server.log" 2>&1 &
      CUR_PID=$!; CUR_STARTED=1
      for _ in $(seq 1 100); do grep -q "crier listening" "$OUT/crier_server.log" 2>/dev/null && break; sleep 0.1; done
      grep -q "crier listening" "$OUT/crier_server.log" || { log "crier_server did not start:"; cat "$OUT/crier_server.log" >&2; return 1; }
      SUB_URL="ws://127.0.0.1:$port/topics/{topic}"
      PUB_ARGS=(--pub-url "http://127.0.0.1:$port/topics/{topic}" --pub-window "$WINDOW")
      ;;
    websocketpp|node-ws|nchan)
      pf="$(pidfile_of "$name")"
      if pid_alive "$pf"; then
        log "WARNING: $name is already running (pid $(cat "$pf")), not started by this script: measuring it as is, leaving it running"
        CUR_STARTED=0
      else
        timeout 600 "$PEERS/$name/start.sh" >&2 || { log "$name did not start"; CUR_STARTED=1; return 1; }
        CUR_STARTED=1
      fi
      CUR_PID="$(cat "$pf")"
      case "$name" in
        websocketpp) SUB_URL="ws://127.0.0.1:9121/topic/{topic}"; PUB_ARGS=(--pub-ws "ws://127.0.0.1:9121/pub/{topic}") ;;
        node-ws)     SUB_URL="ws://127.0.0.1:9131/topic/{topic}"; PUB_ARGS=(--pub-url "http://127.0.0.1:9131/pub/{topic}" --pub-window "$WINDOW") ;;
        nchan)       SUB_URL="ws://127.0.0.1:9101/ws/{topic}";    PUB_ARGS=(--pub-ws "ws://127.0.0.1:9101/wspub/{topic}"); TREE="--pid-tree" ;;
      esac
      ;;
  esac
  log "$name up, pid $CUR_PID"
}

# helper SUBCOMMAND ARGS...: run ws_sweep.py in the background and wait for it,
# so that a signal reaches the trap at once (it then stops the helper and the server).
helper() {
  "$PY" "$HERE/ws_sweep.py" "$@" &
  HELPER_PID=$!
  wait "$HELPER_PID"; local rc=$?
  HELPER_PID=""
  return $rc
}

# ------------------------------------------------------------------- meta ---
SERVERS=()
for s in crier websocketpp node-ws nchan; do want "$s" && SERVERS+=("$s"); done
"$PY" - "$OUT/meta.json" "$STAMP" "${CRIER_COMMIT}" "${SERVER:-} $CRIER_FLAGS" "${SERVERS[@]}" <<'EOF'
import json, os, sys, socket
out, stamp, commit, cmd, *servers = sys.argv[1:]
json.dump({"date": stamp, "host": socket.gethostname(), "cpus": os.cpu_count(),
           "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
           "crier_commit": commit, "crier_cmd": "crier_server --listen 127.0.0.1:PORT " + cmd.split(" ", 1)[1].strip(),
           "servers": servers}, open(out, "w"))
EOF
log "servers: ${SERVERS[*]}; subs: $SUBS_LIST; idle: $IDLE_CONNS; trial ${TRIAL_SECONDS}s, bisect $BISECT, retries $RETRIES; budget ${TOTAL_BUDGET}s; out $OUT"

# ------------------------------------------------------------------- runs ---
for name in "${SERVERS[@]}"; do
  if [ "$(date +%s)" -ge "$DEADLINE" ]; then log "time budget used up, skipping $name"; continue; fi
  log "=== $name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  if ! start_server "$name"; then stop_current; continue; fi
  common=(--fm "$FM" --name "$name" --sub-url "$SUB_URL" "${PUB_ARGS[@]}" --server-pid "$CUR_PID"
          --size "$SIZE" --out-dir "$OUT" --trial-max "$TRIAL_MAX")
  [ -n "$TREE" ] && common+=("$TREE")
  # Memory first, on the fresh server (freed memory from the sweeps would hide growth).
  if [ "$IDLE_CONNS" -gt 0 ]; then
    helper idle "${common[@]}" --subs "$IDLE_CONNS" --settle 3000
    sleep 2
  fi
  for subs in $SUBS_LIST; do
    if [ "$(date +%s)" -ge "$DEADLINE" ]; then log "time budget used up, skipping $name subs=$subs"; continue; fi
    helper sweep "${common[@]}" --subs "$subs" --seconds "$TRIAL_SECONDS" --p99-ms "$P99_MS" \
      --keepup "$KEEPUP" --bisect "$BISECT" --retries "$RETRIES" --deadline "$DEADLINE"
  done
  if [ "$CUR_STARTED" = 1 ] && ! kill -0 "$CUR_PID" 2>/dev/null; then log "WARNING: $name (pid $CUR_PID) died during the runs"; fi
  stop_current
  sleep 2
done
log "total ${SECONDS}s"

# ---------------------------------------------------------------- summary ---
"$PY" "$HERE/ws_sweep.py" report --out-dir "$OUT" --md "$MD" --rel-to "$ROOT"
log "report: $MD"
