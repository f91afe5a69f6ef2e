#!/usr/bin/python3
"""Rate sweep, idle-memory run and report for bench/run_ws.sh (WebSocket fan-out).

  ws_sweep.py sweep  --fm FM --name crier --subs 2000 --sub-url U (--pub-url U | --pub-ws U) ...
  ws_sweep.py idle   --fm FM --name crier --subs 10000 --sub-url U ...
  ws_sweep.py report --out-dir D --md FILE

A sweep looks for the highest publish rate (msgs/s, one topic) that a server
sustains: every trial is one fanout-meter run (fresh topic, SUBS subscribers,
TRIAL_SECONDS worth of messages at the rate), and a trial PASSES when

  * every subscriber connected and none was disconnected,
  * nothing was lost, duplicated or reordered and no publish failed,
  * latency p99 (publish -> receive) < --p99-ms,
  * the publisher kept its schedule (acknowledged msgs/s >= KEEPUP x rate), and
  * the deliveries kept up (delivered/s >= KEEPUP x rate x subs), i.e. no
    backlog built up during the trial.

Search: start at a guess, double until a trial fails (or halve until one
passes), then bisect between the best pass and the lowest failure.  Near the
boundary (bisect phase) a failed trial is repeated --retries times, since the
machine is shared and noisy.  Before each trial the helper waits (up to
--quiet-wait s) until processes other than the server use < --noise-cpu cores,
and a trial that fails while they used more is repeated (--noise-retries);
every trial records that "other load" (cores).  Every trial is bounded (--trial-max seconds,
fanout-meter --max-seconds, plus a subprocess timeout) and the whole sweep
stops at --deadline (Unix time).

Each fanout-meter report goes to OUT_DIR/<name>-<subs>-NN-r<rate>.json, the
sweep summary to OUT_DIR/sweep-<name>-<subs>.json; progress on stderr.
"""
import argparse
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import time

CHILD = None


def on_term(signum, frame):
    if CHILD is not None and CHILD.poll() is None:
        CHILD.terminate()
        try:
            CHILD.wait(timeout=5)
        except subprocess.TimeoutExpired:
            CHILD.kill()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def log(msg):
    print(f"[ws_sweep {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


HZ = os.sysconf("SC_CLK_TCK")


def busy_ticks():
    """CPU ticks spent by the whole machine (all CPUs) outside idle/iowait."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]


def proc_ticks(root, tree):
    """utime+stime of ROOT (and, with TREE, all its descendants)."""
    stats = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(")") + 2:].split()
        stats[int(e)] = (int(rest[1]), int(rest[11]) + int(rest[12]))   # ppid, utime+stime
    pids, i = [root], 0
    while tree and i < len(pids):
        pids += [p for p, (pp, _) in stats.items() if pp == pids[i]]
        i += 1
    return sum(stats[p][1] for p in pids if p in stats)


def other_load(a, seconds=1.0):
    """Cores used by processes other than the server over SECONDS (no meter running)."""
    b0, s0, t0 = busy_ticks(), proc_ticks(a.server_pid, a.pid_tree), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return max(0.0, ((busy_ticks() - b0) - (proc_ticks(a.server_pid, a.pid_tree) - s0)) / HZ / wall)


QUIET = {"timed_out": False}


def wait_quiet(a, deadline):
    """Before a trial: wait (at most --quiet-wait s) until other processes use
    less than --noise-cpu cores, so that the trial measures the server.  After
    a wait that timed out, the next waits are short until the machine is quiet
    again (a busy box should slow the sweep down, not stall it)."""
    load = other_load(a, 0.5)
    if load <= a.noise_cpu:
        QUIET["timed_out"] = False
        return load
    limit = a.quiet_wait if not QUIET["timed_out"] else min(5.0, a.quiet_wait)
    t_end = min(time.time() + limit, deadline)
    log(f"  other processes use {load:.2f} cores: waiting up to {limit:g} s for a quieter machine")
    while time.time() < t_end:
        load = other_load(a, 1.0)
        if load <= a.noise_cpu:
            break
    QUIET["timed_out"] = load > a.noise_cpu
    log(f"  other load now {load:.2f} cores")
    return load


def run_fm(a, label, out_file, extra):
    """One fanout-meter run; returns its JSON report (or None), with "_other_cpu"
    added: the average number of cores that processes other than the server
    and the meter used during the run (other people's work on a shared box)."""
    global CHILD
    cmd = [a.fm, "--mode", "ws", "--url", a.sub_url, "--topic-prefix", "r{run}t", "--topics", "1",
           "--subs", str(a.subs), "--src-ips", str(a.src_ips), "--size", str(a.size),
           "--server-pid", str(a.server_pid), "--max-seconds", str(a.trial_max),
           "--label", label, "--quiet"]
    if a.pid_tree:
        cmd.append("--server-pid-tree")
    if a.pub_url:
        cmd += ["--pub-url", a.pub_url, "--pub-window", str(a.pub_window)]
    elif a.pub_ws:
        cmd += ["--pub-ws", a.pub_ws]
    cmd += extra
    err_file = out_file[:-5] + ".err"
    t0, b0, s0 = time.monotonic(), busy_ticks(), proc_ticks(a.server_pid, a.pid_tree)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_file, "w") as out, open(err_file, "w") as err:
        CHILD = subprocess.Popen(cmd, stdout=out, stderr=err)
        try:
            rc = CHILD.wait(timeout=a.trial_max + 20)
        except subprocess.TimeoutExpired:
            CHILD.kill()
            CHILD.wait()
            rc = "timeout"
        CHILD = None
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - t0
    meter = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    other = ((busy_ticks() - b0) - (proc_ticks(a.server_pid, a.pid_tree) - s0)) / HZ - meter
    other = max(0.0, other / wall) if wall > 0 else 0.0
    if rc not in (0, 3):
        log(f"{label}: fanout-meter exit {rc} (see {err_file})")
    try:
        with open(out_file) as f:
            d = json.load(f)
    except Exception:
        return None
    d["_other_cpu"] = round(other, 2)
    return d


def judge(d, subs, rate, a):
    """(passed, reason) for one trial report."""
    if d is None:
        return False, "no report (meter failed or timed out)"
    why = []
    if d.get("subs_connected", 0) < subs:
        why.append(f"connected {d.get('subs_connected', 0)}/{subs}")
    if d.get("disconnects"):
        why.append(f"{d['disconnects']} disconnected")
    if d.get("publish_errors"):
        why.append(f"{d['publish_errors']} publish errors")
    if d.get("lost"):
        why.append(f"lost {d['lost']} (in gaps {d.get('lost_in_gaps', 0)}, tail {d.get('lost_tail', 0)})")
    if d.get("duplicated") or d.get("reordered"):
        why.append(f"dup {d.get('duplicated')} reord {d.get('reordered')}")
    if d.get("protocol_errors"):
        why.append(f"{d['protocol_errors']} protocol errors")
    if d.get("deadline_hit"):
        why.append("trial deadline hit")
    if not d.get("delivered"):
        why.append("nothing delivered")
    p99 = d.get("latency_us", {}).get("p99", 0) / 1000.0
    if p99 >= a.p99_ms:
        why.append(f"p99 {p99:.0f} ms")
    pr = d.get("publish_rate", 0)
    if pr < a.keepup * rate:
        why.append(f"publisher held back ({pr:.1f}/s of {rate:g}/s)")
    dps = d.get("delivered_per_sec", 0)
    if dps < a.keepup * rate * subs:
        why.append(f"deliveries fell behind ({dps:,.0f}/s of {rate * subs:,.0f}/s)")
    return (not why), "; ".join(why)


def nice_rate(r):
    if r >= 20:
        return float(round(r))
    return max(0.5, round(r * 2) / 2)


def trial_summary(d, rate, passed, why, attempt, fname):
    g = (lambda *p: _get(d, *p))
    return {
        "rate": rate, "passed": passed, "reason": why, "attempt": attempt, "file": os.path.basename(fname),
        "published": g("published"), "publish_rate": g("publish_rate"),
        "delivered": g("delivered"), "expected": g("expected"), "lost": g("lost"),
        "delivered_per_sec": g("delivered_per_sec"),
        "p50_ms": (g("latency_us", "p50") or 0) / 1000.0, "p99_ms": (g("latency_us", "p99") or 0) / 1000.0,
        "max_ms": (g("latency_us", "max") or 0) / 1000.0,
        "server_cpu": g("server", "cpu_utilization"), "meter_cpu": g("meter", "cpu_utilization_publish"),
        "subs_connected": g("subs_connected"), "disconnects": g("disconnects"),
        "other_cpu": g("_other_cpu"), "noisy_retries": 0,
    }


def _get(d, *path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def guess_start(a):
    if a.start_rate > 0:
        return nice_rate(a.start_rate)
    # Reuse a finished sweep of the same server at another subscriber count:
    # assume deliveries/s stays about the same, start a bit below.
    best = None
    for f in glob.glob(os.path.join(a.out_dir, f"sweep-{a.name}-*.json")):
        try:
            s = json.load(open(f))
        except Exception:
            continue
        if s.get("subs") != a.subs and s.get("best"):
            best = s["best"]["rate"] * s["subs"]
    if best:
        return nice_rate(0.8 * best / a.subs)
    return nice_rate(a.start_deliveries / a.subs)


def cmd_sweep(a):
    os.makedirs(a.out_dir, exist_ok=True)
    trials = []
    n = [0]
    stopped = [None]

    def trial(rate, attempt=1, noisy=0):
        est = a.subs / 5000.0 + 0.5 + a.seconds + 6
        if time.time() + est > a.deadline:
            stopped[0] = "time budget used up"
            return None
        wait_quiet(a, a.deadline - est)
        n[0] += 1
        count = max(a.min_count, int(round(rate * a.seconds)))
        fname = os.path.join(a.out_dir, f"{a.name}-{a.subs}-{n[0]:02d}-r{rate:g}.json")
        d = run_fm(a, f"{a.name} subs={a.subs} rate={rate:g}", fname,
                   ["--rate", f"{rate:g}", "--count", str(count), "--drain", str(a.drain),
                    "--settle", str(a.settle)])
        ok, why = judge(d, a.subs, rate, a)
        t = trial_summary(d, rate, ok, why, attempt, fname)
        t["noisy_retries"] = noisy
        trials.append(t)
        log(f"{a.name} subs={a.subs} rate={rate:g}/s x{count}: {'PASS' if ok else 'FAIL'}"
            f"  p99 {t['p99_ms']:.0f} ms, pub {t['publish_rate'] or 0:.1f}/s,"
            f" deliv {t['delivered_per_sec'] or 0:,.0f}/s, server cpu {t['server_cpu']}, meter cpu {t['meter_cpu']},"
            f" other load {t['other_cpu']} cores" + (f"  [{why}]" if why else ""))
        time.sleep(a.pause)   # let the server reap the closed connections
        # A failure while other processes took a noticeable share of the 2 CPUs
        # says little about the server: wait, then run the same trial again.
        if not ok and (t["other_cpu"] or 0) > a.noise_cpu and noisy < a.noise_retries:
            log(f"  other load {t['other_cpu']} cores > {a.noise_cpu}: repeating this trial")
            t["reason"] += f" [other load {t['other_cpu']} cores: repeated]"
            time.sleep(a.noise_wait)
            return trial(rate, attempt, noisy + 1)
        return t

    def attempt(rate, retry):
        t = trial(rate)
        tries = 1
        while t is not None and not t["passed"] and retry and tries <= a.retries:
            tries += 1
            t = trial(rate, tries)
        return t

    lo = hi = None          # best passing rate, lowest failing rate
    rate = guess_start(a)
    t = attempt(rate, False)
    if t is not None:
        if t["passed"]:
            lo = t
            for _ in range(a.max_doublings):
                t = attempt(nice_rate(lo["rate"] * 2), False)
                if t is None:
                    break
                if t["passed"]:
                    lo = t
                else:
                    hi = t
                    break
        else:
            hi = t
            while hi["rate"] > 0.5:
                t = attempt(nice_rate(hi["rate"] / 2), hi["rate"] / 2 <= 2 * a.min_rate_retry)
                if t is None:
                    break
                if t["passed"]:
                    lo = t
                    break
                hi = t
        steps = 0
        while lo is not None and hi is not None and steps < a.bisect and stopped[0] is None:
            mid = nice_rate((lo["rate"] + hi["rate"]) / 2)
            if mid <= lo["rate"] * 1.03 or mid >= hi["rate"] * 0.97 or mid in (lo["rate"], hi["rate"]):
                break
            steps += 1
            t = attempt(mid, True)
            if t is None:
                break
            if t["passed"]:
                lo = t
            else:
                hi = t
    summary = {"name": a.name, "subs": a.subs, "best": lo, "lowest_fail": hi, "trials": trials,
               "criteria": {"p99_ms": a.p99_ms, "keepup": a.keepup, "trial_seconds": a.seconds,
                            "drain": a.drain, "retries": a.retries, "bisect": a.bisect},
               "publish": (f"HTTP POST {a.pub_url} (window {a.pub_window})" if a.pub_url else f"WebSocket {a.pub_ws}"),
               "subscribe": a.sub_url, "stopped": stopped[0]}
    with open(os.path.join(a.out_dir, f"sweep-{a.name}-{a.subs}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if lo:
        log(f"{a.name} subs={a.subs}: sustained {lo['rate']:g} msgs/s"
            + (f" (fails at {hi['rate']:g})" if hi else " (no failure found)"))
    else:
        log(f"{a.name} subs={a.subs}: no passing rate" + (f" ({stopped[0]})" if stopped[0] else ""))
    return 0


def cmd_idle(a):
    os.makedirs(a.out_dir, exist_ok=True)
    fname = os.path.join(a.out_dir, f"idle-{a.name}-{a.subs}.json")
    d = run_fm(a, f"{a.name} idle {a.subs}", fname, ["--count", "0", "--settle", str(a.settle)])
    if d:
        s = d.get("server", {})
        log(f"{a.name} idle: {d.get('subs_connected')}/{a.subs} connected, RSS {s.get('rss_baseline_kb')} -> "
            f"{s.get('rss_after_connect_kb')} KB, {s.get('rss_delta_per_conn_bytes')} B/conn")
    return 0


# ------------------------------------------------------------------ report
def fnum(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def f2(v):
    return "-" if v is None else f"{v:.2f}"


def cmd_report(a):
    D = a.out_dir
    sweeps = {}
    for f in glob.glob(os.path.join(D, "sweep-*.json")):
        try:
            s = json.load(open(f))
            sweeps[(s["name"], s["subs"])] = s
        except Exception:
            pass
    idles = {}
    for f in glob.glob(os.path.join(D, "idle-*.json")):
        try:
            d = json.load(open(f))
            name = os.path.basename(f)[5:-5].rsplit("-", 1)[0]
            idles[name] = d
        except Exception:
            pass
    meta = {}
    try:
        meta = json.load(open(os.path.join(D, "meta.json")))
    except Exception:
        pass
    order = meta.get("servers") or sorted({k[0] for k in sweeps} | set(idles))
    order = [s for s in order if any(k[0] == s for k in sweeps) or s in idles]
    subs_levels = sorted({k[1] for k in sweeps})
    L = []
    L.append(f"# WebSocket fan-out: crier vs peers ({meta.get('date', '')})")
    L.append("")
    if meta:
        L.append(f"Host: {meta.get('host', '?')}, {meta.get('cpus', '?')} CPUs, load average at start "
                 f"{meta.get('loadavg', '?')}. crier: `{meta.get('crier_cmd', '?')}` (commit {meta.get('crier_commit', '?')}).")
        L.append("")
    any_s = next(iter(sweeps.values()), None)
    if any_s:
        c = any_s["criteria"]
        L.append(f"One topic, 128-byte messages. Sustained = the highest publish rate at which a "
                 f"{c['trial_seconds']:g} s trial lost nothing, kept p99 < {c['p99_ms']:g} ms, and kept the "
                 f"publisher and the deliveries within {int(round((1 - c['keepup']) * 100))} % of schedule "
                 f"(bisection steps: {c['bisect']}, retries near the boundary: {c['retries']}). Ratio = crier / peer "
                 f"(msgs/s: > 1 means crier sustains more). Server CPU = cores the server used during that trial; "
                 f"other load = cores used by other processes on the machine meanwhile (> 0.3: a lower bound).")
        L.append("")
    L.append("| server | subs | sustained msgs/s | deliveries/s | p50 ms | p99 ms | server CPU | other load | crier/peer | first failure above it |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for subs in subs_levels:
        cb = sweeps.get(("crier", subs), {}).get("best")
        for name in order:
            s = sweeps.get((name, subs))
            if not s:
                continue
            b, h = s.get("best"), s.get("lowest_fail")
            ratio = "-"
            if name != "crier" and cb and b and b["rate"]:
                ratio = f"{cb['rate'] / b['rate']:.2f}"
            fail = "-"
            if h:
                fail = f"{h['rate']:g}/s: {h['reason']}"
            elif s.get("stopped"):
                fail = s["stopped"]
            elif b:
                fail = "none found"
            L.append(f"| {name} | {subs:,} | {fnum(b['rate'], 1 if b and b['rate'] < 20 else 0) if b else 'none'} | "
                     f"{fnum(b['delivered_per_sec']) if b else '-'} | {fnum(b['p50_ms'], 1) if b else '-'} | "
                     f"{fnum(b['p99_ms'], 1) if b else '-'} | {f2(b.get('server_cpu')) if b else '-'} | {f2(b.get('other_cpu')) if b else '-'} | {ratio} | {fail} |")
    L.append("")
    if idles:
        L.append("Idle connections (fanout-meter `--count 0`, fresh server, RSS read from /proc after all connected + settle; "
                 "Nchan = master + 2 workers). Ratio = crier / peer (< 1 means crier uses less).")
        L.append("")
        L.append("| server | connected | RSS before (MiB) | RSS after (MiB) | RSS per idle conn (B) | crier/peer |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        cr = _get(idles.get("crier"), "server", "rss_delta_per_conn_bytes")
        for name in order:
            d = idles.get(name)
            if not d:
                continue
            s = d.get("server", {})
            per = s.get("rss_delta_per_conn_bytes")
            ratio = f"{cr / per:.2f}" if name != "crier" and cr and per else "-"
            mib = lambda kb: f"{kb / 1024:.1f}" if kb is not None else "-"
            L.append(f"| {name} | {d.get('subs_connected', 0):,}/{d.get('subs_requested', 0):,} | {mib(s.get('rss_baseline_kb'))} | "
                     f"{mib(s.get('rss_after_connect_kb'))} | {fnum(per)} | {ratio} |")
        L.append("")
    if sweeps:
        L.append("How each server was driven:")
        L.append("")
        for name in order:
            s = next((v for k, v in sweeps.items() if k[0] == name), None)
            if s:
                L.append(f"* {name}: subscribe `{s['subscribe']}`, publish {s['publish']}")
        L.append("")
        L.append("<details><summary>All trials</summary>")
        L.append("")
        L.append("| server | subs | rate | verdict | published/s | deliveries/s | p50 ms | p99 ms | max ms | server CPU | meter CPU | other load | why |")
        L.append("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for subs in subs_levels:
            for name in order:
                s = sweeps.get((name, subs))
                if not s:
                    continue
                for t in s["trials"]:
                    L.append(f"| {name} | {subs:,} | {t['rate']:g} | {'pass' if t['passed'] else 'FAIL'} | "
                             f"{fnum(t['publish_rate'], 1)} | {fnum(t['delivered_per_sec'])} | {fnum(t['p50_ms'], 1)} | "
                             f"{fnum(t['p99_ms'], 1)} | {fnum(t['max_ms'], 1)} | "
                             f"{f2(t['server_cpu'])} | {f2(t['meter_cpu'])} | {f2(t.get('other_cpu'))} | {t['reason'] or ''} |")
        L.append("")
        L.append("</details>")
        L.append("")
    rel = os.path.relpath(D, a.rel_to) if a.rel_to else D
    L.append(f"Raw fanout-meter reports: `{D if rel.startswith('..') else rel}/`")
    text = "\n".join(L) + "\n"
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    sys.stdout.write(text)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="cmd", required=True)
    for name in ("sweep", "idle"):
        q = sp.add_parser(name)
        q.add_argument("--fm", required=True, help="fanout-meter binary")
        q.add_argument("--name", required=True)
        q.add_argument("--subs", type=int, required=True)
        q.add_argument("--sub-url", required=True)
        q.add_argument("--pub-url", default="")
        q.add_argument("--pub-ws", default="")
        q.add_argument("--pub-window", type=int, default=16)
        q.add_argument("--server-pid", type=int, required=True)
        q.add_argument("--pid-tree", action="store_true")
        q.add_argument("--src-ips", type=int, default=8)
        q.add_argument("--size", type=int, default=128)
        q.add_argument("--out-dir", required=True)
        q.add_argument("--trial-max", type=int, default=30, help="per-trial bound, s (fanout-meter --max-seconds)")
        q.add_argument("--settle", type=int, default=500 if name == "sweep" else 3000)
        if name == "sweep":
            q.add_argument("--seconds", type=float, default=4.0, help="messages per trial = rate x this")
            q.add_argument("--min-count", type=int, default=20)
            q.add_argument("--drain", type=float, default=3.0)
            q.add_argument("--p99-ms", type=float, default=500.0)
            q.add_argument("--keepup", type=float, default=0.9)
            q.add_argument("--bisect", type=int, default=3)
            q.add_argument("--retries", type=int, default=1)
            q.add_argument("--max-doublings", type=int, default=6)
            q.add_argument("--min-rate-retry", type=float, default=1.0)
            q.add_argument("--start-rate", type=float, default=0.0)
            q.add_argument("--start-deliveries", type=float, default=100000.0,
                           help="first guess = this / subs msgs/s (unless another sweep of the server exists)")
            q.add_argument("--pause", type=float, default=1.5)
            q.add_argument("--noise-cpu", type=float, default=0.3,
                           help="repeat a failed trial if other processes used more cores than this")
            q.add_argument("--noise-retries", type=int, default=1)
            q.add_argument("--noise-wait", type=float, default=3.0)
            q.add_argument("--quiet-wait", type=float, default=20.0,
                           help="before each trial wait up to this long for other load < --noise-cpu")
            q.add_argument("--deadline", type=float, default=time.time() + 3600)
    q = sp.add_parser("report")
    q.add_argument("--out-dir", required=True)
    q.add_argument("--md", default="")
    q.add_argument("--rel-to", default="")
    a = p.parse_args()
    if a.cmd in ("sweep", "idle") and bool(a.pub_url) == bool(a.pub_ws):
        p.error("exactly one of --pub-url / --pub-ws")
    return {"sweep": cmd_sweep, "idle": cmd_idle, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
