"""The TCP feed example (examples/tcp_feed/): a custom binary transport on crier's public API,
next to crier::server on one hub. Driven over raw sockets (the wire format of
examples/tcp_feed/README.md) and through its C++ client; publishing is crier's HTTP POST.

  CRIER_TCP_FEED_SERVER=.../crier_tcp_feed_server CRIER_TCP_FEED_CLIENT=.../crier_tcp_feed_client \
      python3 tests/integration/test_tcp_feed.py
"""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import crierlib
from crierlib import run

FEED_SERVER = os.environ.get("CRIER_TCP_FEED_SERVER")
FEED_CLIENT = os.environ.get("CRIER_TCP_FEED_CLIENT")

# --- the wire format ---------------------------------------------------------------
SUBSCRIBE, UNSUBSCRIBE, PING = 0x01, 0x02, 0x03
HELLO, SUBSCRIBED, UNSUBSCRIBED, MESSAGE, GAP, ERROR, PONG, GOODBYE = range(0x80, 0x88)
NAMES = {HELLO: "hello", SUBSCRIBED: "subscribed", UNSUBSCRIBED: "unsubscribed", MESSAGE: "message", GAP: "gap",
         ERROR: "error", PONG: "pong", GOODBYE: "goodbye"}
POLICY = {"server": 0, "disconnect": 1, "drop_oldest": 2, "conflate": 3}
GAP_REASONS = {1: "trimmed", 2: "reset", 3: "overflow", 4: "conflated"}
ERRORS = {1: "bad_frame", 2: "frame_too_large", 3: "unknown_command", 4: "invalid_topic", 5: "invalid_id",
          6: "invalid_subscription", 7: "not_subscribed", 8: "too_many_subscriptions", 9: "queue_overflow",
          10: "unavailable"}


def frame(op, body=b""):
    return struct.pack(">IB", len(body) + 1, op) + body


def str16(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def str32(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def subscribe(sub, topics, since="", policy="server"):
    return frame(SUBSCRIBE, struct.pack(">IB", sub, POLICY[policy]) + str32(since) +
                 struct.pack(">H", len(topics)) + b"".join(str16(t) for t in topics))


def fmt_id(epoch, seq):
    return "%08x:%d" % (epoch, seq)


class Reader:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, n):
        assert self.p + n <= len(self.b), "frame too short"
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def id(self):
        e = self.u32()
        return e, self.u64()

    def str16(self):
        return self.take(self.u16()).decode()

    def str32(self):
        return self.take(self.u32()).decode()


def decode(op, body):
    r = Reader(body)
    f = {"type": NAMES.get(op, "0x%02x" % op)}
    if op == HELLO:
        f.update(version=r.u8(), max_client_frame=r.u32())
    elif op == SUBSCRIBED:
        f.update(sub=r.u32(), cursor=r.str32())
    elif op == UNSUBSCRIBED:
        f.update(sub=r.u32())
    elif op == MESSAGE:
        e, s = r.id()
        f.update(epoch=e, seq=s, id=fmt_id(e, s), topic=r.str16(), event=r.str16(), content_type=r.str16(),
                 data=body[r.p:])
        r.p = len(body)
    elif op == GAP:
        f.update(sub=r.u32(), reason=GAP_REASONS[r.u8()], topic=r.str16())
        ae, as_ = r.id()
        ne, ns = r.id()
        f.update(after=fmt_id(ae, as_), after_seq=as_, next=fmt_id(ne, ns), next_seq=ns, missed=r.u64())
    elif op == ERROR:
        f.update(sub=r.u32(), code=ERRORS.get(r.u16(), "?"), text=r.str16())
    elif op == PONG:
        f.update(token=r.u64())
    elif op == GOODBYE:
        f.update(code=r.u16(), text=r.str16())
    assert r.p == len(body), ("trailing bytes", f)
    return f


class FeedConn:
    """One TCP feed connection: frames in, commands out; every wait bounded."""

    def __init__(self, server, rcvbuf=None, timeout=10):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((server.host, server.feed_port))
        self.buf = b""
        self.eof = False
        hello = self.next()
        assert hello["type"] == "hello" and hello["version"] == 1, hello

    def send(self, data):
        self.sock.sendall(data)

    def next(self, timeout=10):
        """The next frame, or None at EOF (the server closed its side)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    op, body = self.buf[4], self.buf[5:4 + n]
                    self.buf = self.buf[4 + n:]
                    return decode(op, body)
            if self.eof:
                assert not self.buf, "EOF inside a frame"
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the feed in %.1f s" % timeout)
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)  # ConnectionResetError here = not a clean close
            if not chunk:
                self.eof = True
            self.buf += chunk

    def until(self, pred, timeout=10):
        """Frames up to and including the first one for which pred() is true."""
        out, deadline = [], time.monotonic() + timeout
        while True:
            f = self.next(max(0.01, deadline - time.monotonic()))
            assert f is not None, ("feed closed early", out[-5:])
            out.append(f)
            if pred(f):
                return out

    def messages(self, n, timeout=10):
        """Frames up to and including the n-th message."""
        frames, deadline = [], time.monotonic() + timeout
        while sum(f["type"] == "message" for f in frames) < n:
            f = self.next(max(0.01, deadline - time.monotonic()))
            assert f is not None, ("feed closed early", frames[-5:])
            frames.append(f)
        return frames

    def subscribe(self, sub, topics, since="", policy="server"):
        self.send(subscribe(sub, topics, since, policy))
        return self.until(lambda f: f["type"] in ("subscribed", "error") and f.get("sub") == sub)[-1]

    def ping(self, token=7, timeout=10):
        self.send(frame(PING, struct.pack(">Q", token)))
        return self.until(lambda f: f["type"] == "pong" and f["token"] == token, timeout)

    def close(self):
        self.sock.close()


class FeedServer(crierlib.Server):
    """crier_tcp_feed_server on free loopback ports: HTTP (crierlib's helpers) + the feed."""

    def __init__(self, *args):
        if not FEED_SERVER:
            raise SystemExit("set CRIER_TCP_FEED_SERVER")
        self.proc = subprocess.Popen([FEED_SERVER, "--listen", "127.0.0.1:0", "--feed", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        l1, l2 = self.proc.stdout.readline(), self.proc.stdout.readline()
        m1 = re.search(r"http://([\d.]+):(\d+)/", l1)
        m2 = re.search(r"tcp feed listening on ([\d.]+):(\d+)", l2)
        if not (m1 and m2):
            self.proc.kill()
            raise RuntimeError("feed server did not start: %r %r %s" % (l1, l2, self.proc.stderr.read()))
        self.host, self.port = m1.group(1), int(m1.group(2))
        self.url = "http://%s:%d" % (self.host, self.port)
        self.feed_port = int(m2.group(2))
        self.output = ""

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=timeout)
                self.output += out
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def client(server, *args, timeout=30):
    """Runs the C++ client to completion; returns (exit status, JSON lines)."""
    if not FEED_CLIENT:
        raise SystemExit("set CRIER_TCP_FEED_CLIENT")
    p = subprocess.run([FEED_CLIENT, "--connect", "127.0.0.1:%d" % server.feed_port, "--json",
                        "--max-seconds", str(timeout - 5), *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


class LiveClient:
    """The C++ client in the background; its JSON lines arrive on a queue as it prints them."""

    def __init__(self, server, *args, timeout=30):
        self.proc = subprocess.Popen([FEED_CLIENT, "--connect", "127.0.0.1:%d" % server.feed_port, "--json",
                                      "--max-seconds", str(timeout), *args], stdout=subprocess.PIPE, text=True)
        self.lines, self.cond = [], threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(json.loads(line))
                self.cond.notify_all()
        with self.cond:
            self.lines.append({"type": "<eof>"})
            self.cond.notify_all()

    def wait_for(self, pred, timeout=15):
        with self.cond:
            assert self.cond.wait_for(lambda: any(pred(l) for l in self.lines), timeout), ("client output", self.lines)
            return [l for l in self.lines if pred(l)]

    def finish(self, timeout=20):
        rc = self.proc.wait(timeout)
        self.wait_for(lambda l: l["type"] == "<eof>")
        return rc, self.lines[:-1]


def msgs(frames):
    return [f for f in frames if f["type"] == "message"]


# --- tests --------------------------------------------------------------------------
def test_http_publishes_arrive_in_order_with_their_ids():
    with FeedServer() as s:
        c = FeedConn(s)
        ack = c.subscribe(1, ["prices/AAPL"], policy="disconnect")
        assert ack["type"] == "subscribed", ack
        ids = [s.publish("prices/AAPL", "quote %d" % i) for i in range(20)]
        ids.append(s.publish("prices/AAPL", b"\x00\xff binary", {"Crier-Event": "tick",
                                                                  "Content-Type": "application/octet-stream"}))
        got = msgs(c.messages(21))
        assert [m["id"] for m in got] == ids
        assert [m["data"] for m in got[:20]] == [b"quote %d" % i for i in range(20)]
        assert got[20]["data"] == b"\x00\xff binary" and got[20]["event"] == "tick"
        assert got[20]["content_type"] == "application/octet-stream"
        seqs = [m["seq"] for m in got]
        assert seqs == list(range(seqs[0], seqs[0] + 21)) and all(m["topic"] == "prices/AAPL" for m in got)
        # Several topics and a pattern in one subscription: publish order across topics.
        ack = c.subscribe(2, ["news/*", "alerts"], policy="disconnect")
        assert ack["type"] == "subscribed"
        sent = [("news/a", "1"), ("alerts", "2"), ("other", "x"), ("news/b", "3"), ("news/a/deep", "y"), ("news/a", "4")]
        for t, d in sent:
            s.publish(t, d)
        got = msgs(c.messages(4))
        assert [(m["topic"], m["data"].decode()) for m in got] == [("news/a", "1"), ("alerts", "2"), ("news/b", "3"),
                                                                  ("news/a", "4")]
        c.close()


def test_resume_by_id_over_the_wire():
    with FeedServer("--history-messages", "5") as s:
        ids = [s.publish("t", "m%d" % i) for i in range(10)]
        c = FeedConn(s)
        # inside the history: exactly the missed ones
        ack = c.subscribe(1, ["t"], since=ids[6], policy="disconnect")
        assert ack["cursor"] == "t=" + ids[6], ack
        assert [m["data"] for m in msgs(c.messages(3))] == [b"m7", b"m8", b"m9"]
        # older than the history: a trimmed gap saying how many, then what is held
        c.subscribe(2, ["t"], since=ids[1], policy="disconnect")
        frames = c.messages(5)
        assert frames[0]["type"] == "gap" and frames[0]["reason"] == "trimmed", frames[0]
        assert frames[0]["after"] == ids[1] and frames[0]["next"] == ids[5] and frames[0]["missed"] == 3
        assert [m["data"] for m in msgs(frames)] == [b"m5", b"m6", b"m7", b"m8", b"m9"]
        # another epoch (a restarted hub): a reset gap, never silence
        epoch = int(ids[0].split(":")[0], 16)
        c.subscribe(3, ["t"], since="%08x:3" % ((epoch + 1) & 0xffffffff), policy="disconnect")
        frames = c.messages(5)
        assert frames[0]["type"] == "gap" and frames[0]["reason"] == "reset" and frames[0]["missed"] == 0
        # a per-topic cursor, as the client keeps it
        c.subscribe(4, ["t", "u"], since="t=%s" % ids[8], policy="disconnect")
        assert [m["id"] for m in msgs(c.messages(1))] == [ids[9]]
        c.close()


def test_cpp_client_reconnects_and_resumes_without_loss_or_duplicates():
    with FeedServer() as s:
        ids = [s.publish("r", "early %d" % i) for i in range(5)]
        # All held (since 0), drop the connection after 2, reconnect, resume from the cursor;
        # meanwhile more is published live.
        live = LiveClient(s, "--topic", "r", "--since", "0", "--policy", "disconnect", "--count", "12",
                          "--disconnect-after", "2", "--reconnect")
        live.wait_for(lambda l: l["type"] == "reconnect")
        ids += [s.publish("r", "late %d" % i) for i in range(7)]
        rc, lines = live.finish()
        assert rc == 0, lines
        got = [l for l in lines if l["type"] == "message"]
        assert [m["id"] for m in got] == ids, (ids, got)
        rec = [l for l in lines if l["type"] == "reconnect"]
        assert len(rec) == 1 and rec[0]["since"] == "r=" + ids[1], rec
        end = lines[-1]
        assert end["type"] == "end" and end["unexplained"] == 0 and end["duplicates"] == 0 and end["reconnects"] == 1
        assert end["cursor"] == "r=" + ids[-1]
        # A later run resumes from the printed cursor: exactly what came after.
        more = [s.publish("r", "after %d" % i) for i in range(2)]
        rc, lines = client(s, "--topic", "r", "--since", end["cursor"], "--policy", "disconnect", "--count", "2")
        assert rc == 0 and [l["id"] for l in lines if l["type"] == "message"] == more, lines


def test_conflation_with_a_slow_reader_reports_the_skipped_seqs():
    # Small socket buffers on both sides so the server's write blocks after a few messages;
    # the subscription's queue then holds one message per topic, the newest.
    with FeedServer("--feed-sndbuf", "4096") as s:
        c = FeedConn(s, rcvbuf=4096)
        assert c.subscribe(1, ["q"], policy="conflate")["type"] == "subscribed"
        n, payload = 60, "x" * 32768
        ids = [s.publish("q", "%d:%s" % (i, payload)) for i in range(n)]  # nobody reads meanwhile
        frames = c.until(lambda f: f["type"] == "message" and f["id"] == ids[-1], timeout=20)
        last, skipped, received, notices = 0, 0, 0, 0
        for i, f in enumerate(frames):
            if f["type"] == "gap":
                assert f["reason"] == "conflated" and f["after_seq"] == last, f
                nxt = frames[i + 1]
                assert nxt["type"] == "message" and nxt["id"] == f["next"], (f, nxt)
                assert f["missed"] == nxt["seq"] - last - 1 > 0
                skipped += f["missed"]
                notices += 1
                last = f["next_seq"] - 1
            elif f["type"] == "message":
                assert f["seq"] == last + 1, ("a jump without a conflated gap notice", last, f["seq"])
                assert f["data"].startswith(b"%d:" % (f["seq"] - 1))
                last = f["seq"]
                received += 1
        assert received + skipped == n and notices > 0 and skipped > 0, (received, skipped)
        print("conflation: %d of %d delivered, %d skipped in %d notices" % (received, n, skipped, notices))
        # Once the reader keeps up, nothing is skipped.
        more = [s.publish("q", "live %d" % i) for i in range(3)]
        assert [m["id"] for m in msgs(c.messages(3))] == more
        c.close()
        assert s.stop() == 0
        m = re.search(r"(\d+) conflation notices \((\d+) seqs skipped\)", s.output)
        assert m and int(m.group(1)) == notices and int(m.group(2)) == skipped, s.output


def test_conflated_replay_is_reported_to_the_cpp_client():
    # Policy conflate applies to a resume's replay too: the newest message per topic, and a
    # conflated gap for the rest. The client checks every jump against the notices.
    with FeedServer() as s:
        ids = [s.publish("c", "v%d" % i) for i in range(6)]
        rc, lines = client(s, "--topic", "c", "--since", "0", "--policy", "conflate", "--count", "1")
        assert rc == 0, lines
        gap = [l for l in lines if l["type"] == "gap"]
        assert len(gap) == 1 and gap[0]["reason"] == "conflated" and gap[0]["missed"] == 5, lines
        assert [l["id"] for l in lines if l["type"] == "message"] == [ids[-1]]
        assert lines[-1]["conflated"] == 5 and lines[-1]["unexplained"] == 0


def test_slow_consumer_with_policy_disconnect_ends_the_subscription_and_resumes():
    with FeedServer("--feed-sndbuf", "4096", "--feed-queue-messages", "4") as s:
        c = FeedConn(s, rcvbuf=4096)
        assert c.subscribe(1, ["d"], policy="disconnect")["type"] == "subscribed"
        ids = [s.publish("d", "%d:%s" % (i, "y" * 32768)) for i in range(40)]
        frames = c.until(lambda f: f["type"] == "error", timeout=20)
        err = frames[-1]
        assert err["sub"] == 1 and err["code"] == "queue_overflow", err
        first = msgs(frames)
        assert [m["id"] for m in first] == ids[:len(first)] and len(first) < 40
        assert err["text"].endswith("since=d=" + first[-1]["id"]), err  # the server's view of our cursor
        assert not any(f["type"] == "gap" for f in frames)
        c.ping()  # the connection itself lives on
        # Resume the subscription from the last id received: the rest, exactly once.
        ack = c.subscribe(1, ["d"], since=first[-1]["id"], policy="disconnect")
        assert ack["type"] == "subscribed"
        rest = msgs(c.messages(40 - len(first), timeout=20))
        assert [m["id"] for m in first + rest] == ids
        c.close()


def test_slow_consumer_with_policy_drop_oldest_reports_overflow_gaps():
    with FeedServer("--feed-sndbuf", "4096", "--feed-queue-messages", "4") as s:
        c = FeedConn(s, rcvbuf=4096)
        assert c.subscribe(1, ["o"], policy="drop_oldest")["type"] == "subscribed"
        ids = [s.publish("o", "%d:%s" % (i, "z" * 32768)) for i in range(40)]
        frames = c.until(lambda f: f["type"] == "message" and f["id"] == ids[-1], timeout=20)
        gaps = [f for f in frames if f["type"] == "gap"]
        assert gaps and all(g["reason"] == "overflow" for g in gaps), gaps
        assert len(msgs(frames)) + sum(g["missed"] for g in gaps) == 40
        c.close()


def test_bad_input_gets_an_error_frame_and_a_clean_close():
    with FeedServer() as s:
        cases = [
            (frame(0x7F, b"junk"), "unknown_command"),
            (struct.pack(">I", 0xFFFFFFFF) + b"\x01", "frame_too_large"),
            (struct.pack(">I", 0), "frame_too_large"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "frame_too_large"),
            (frame(SUBSCRIBE, b"\x00\x00\x00\x01\x00"), "bad_frame"),                 # truncated subscribe
            (frame(UNSUBSCRIBE, b"\x00\x00\x00\x01\x00\x00"), "bad_frame"),           # trailing bytes
            (subscribe(0, ["a"]), "invalid_subscription"),                           # sub id 0 is reserved
        ]
        for data, code in cases:
            c = FeedConn(s)
            # What follows the bad frame (unread by the server) must not turn the close into a reset.
            c.send(data + b"\xab" * 100000)
            f = c.next()
            assert f["type"] == "error" and f["sub"] == 0 and f["code"] == code, (data[:20], f)
            assert c.next() is None, "expected the server's FIN after the error frame"
            c.close()
        # Errors about one subscription leave the connection open.
        c = FeedConn(s)
        for cmd, code in [(subscribe(5, ["a//b"]), "invalid_topic"), (subscribe(5, ["a/**/b"]), "invalid_topic"),
                          (subscribe(5, ["a"], since="nope"), "invalid_id"),
                          (subscribe(5, ["a", "b"], since="0000000a:1"), "invalid_id"),
                          (subscribe(5, ["a"], policy="server")[:9] + b"\x09" + subscribe(5, ["a"])[10:],
                           "invalid_subscription"),
                          (subscribe(5, []), "invalid_subscription"),
                          (frame(UNSUBSCRIBE, struct.pack(">I", 9)), "not_subscribed")]:
            c.send(cmd)
            f = c.next()
            assert f["type"] == "error" and f["code"] == code and f["sub"] in (5, 9), (code, f)
        c.ping()
        assert c.subscribe(5, ["a"])["type"] == "subscribed"
        c.close()
        assert s.stop() == 0
        assert "7 protocol errors" in s.output, s.output


def test_unsubscribe_stops_messages_and_ping_answers():
    with FeedServer() as s:
        c = FeedConn(s)
        assert c.ping(123)[-1]["token"] == 123
        c.subscribe(1, ["x"], policy="disconnect")
        c.subscribe(2, ["sentinel"], policy="disconnect")
        s.publish("x", "one")
        assert msgs(c.messages(1))[0]["data"] == b"one"
        c.send(frame(UNSUBSCRIBE, struct.pack(">I", 1)))
        assert c.until(lambda f: f["type"] == "unsubscribed")[-1]["sub"] == 1
        s.publish("x", "not for us")
        s.publish("sentinel", "after")
        got = msgs(c.messages(1))
        assert [(m["topic"], m["data"]) for m in got] == [("sentinel", b"after")], got
        c.close()


def test_clean_shutdown_says_goodbye_and_exits():
    s = FeedServer("--heartbeat", "0")
    try:
        a = FeedConn(s)
        a.subscribe(1, ["s"], policy="disconnect")
        idle = FeedConn(s)          # reads its frames but never closes: the server's linger ends it
        live = LiveClient(s, "--topic", "s", "--policy", "disconnect")
        live.wait_for(lambda l: l["type"] == "subscribed")
        s.publish("s", "before stop")
        assert msgs(a.messages(1))[0]["data"] == b"before stop"
        live.wait_for(lambda l: l["type"] == "message")
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        f = a.next()
        assert f["type"] == "goodbye" and f["code"] == 1, f
        assert a.next() is None  # then the server's FIN
        a.close()                # and ours: the connection is done on both sides
        assert idle.next()["type"] == "goodbye" and idle.next() is None
        rc, lines = live.finish()
        assert rc == 0 and any(l["type"] == "goodbye" for l in lines), lines
        assert s.proc.wait(15) == 0
        took = time.monotonic() - t0
        out = s.proc.stdout.read()
        assert "crier stopped" in out, out
        assert took < 8, took    # bounded: linger (2 s) for the client that never closed
        print("shutdown took %.2f s" % took)
        idle.close()
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


if __name__ == "__main__":
    run([v for k, v in list(globals().items()) if k.startswith("test_")])
