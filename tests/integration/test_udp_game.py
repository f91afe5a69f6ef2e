"""The UDP game example (examples/udp_game): a custom crier transport sending game state as UDP
datagrams to registered endpoints. Real processes on 127.0.0.1: crier_udp_game_server, its C++
receiver, and Python UDP sockets reading the datagrams (kernel receive timestamps for the rate
checks). Binaries: CRIER_UDP_GAME_SERVER, CRIER_UDP_GAME_RECEIVER."""
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

from crierlib import SSEStream, run

SERVER = os.environ.get("CRIER_UDP_GAME_SERVER")
RECEIVER = os.environ.get("CRIER_UDP_GAME_RECEIVER")

# magic version kind packet skipped epoch seq topic-length: 25 bytes (udp_protocol.hpp)
HEADER = struct.Struct(">2sBBIIIQB")
NOTICES = {1: "registered", 2: "oversize", 3: "gap", 4: "expired", 5: "bye", 6: "overflow"}
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


def parse_datagram(data):
    magic, version, kind, packet, skipped, epoch, seq, n = HEADER.unpack_from(data)
    assert magic == b"CG" and version == 1 and kind in (1, 2), data[:8]
    d = {"kind": "message" if kind == 1 else "notice", "packet": packet, "skipped": skipped, "epoch": epoch,
         "seq": seq, "id": "%08x:%d" % (epoch, seq), "topic": data[25:25 + n].decode(), "payload": data[25 + n:],
         "size": len(data)}
    if kind == 2:
        d["code"] = NOTICES.get(d["payload"][0], d["payload"][0])
        d["text"] = d["payload"][1:].decode()
    return d


def seq_of(msg_id):
    return int(msg_id.split(":")[1])


class GameServer:
    def __init__(self, *args):
        if not SERVER:
            raise SystemExit("set CRIER_UDP_GAME_SERVER (and CRIER_UDP_GAME_RECEIVER)")
        self.proc = subprocess.Popen([SERVER, "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--udp",
                                      "127.0.0.1:0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        head = "".join(self.proc.stdout.readline() for _ in range(3))
        m1 = re.search(r"crier listening on http://([\d.]+):(\d+)/", head)
        m2 = re.search(r"udp control on (http://[\d.]+:\d+/udp/endpoints)", head)
        m3 = re.search(r"udp sending from ([\d.]+):(\d+)", head)
        if not (m1 and m2 and m3):
            self.proc.kill()
            raise RuntimeError("crier_udp_game_server did not start: %r %s" % (head, self.proc.stderr.read()))
        self.host, self.port = m1.group(1), int(m1.group(2))  # crier's front door (SSEStream uses these)
        self.control = m2.group(1)
        self.udp_source = (m3.group(1), int(m3.group(2)))
        self.output = head
        self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        code = self.stop()
        if exc_type is None:  # a clean stop: exit 0 and nothing on stderr (sanitizers report there)
            err = self.proc.stderr.read()
            assert code == 0 and not err.strip(), "server exit %s: %s" % (code, err[-4000:])

    def stop(self, timeout=10, signalled=False):
        """SIGTERM (unless the test sent it already: a second one would kill the exiting
        process), then wait for the exit; returns the exit status."""
        if self.proc.poll() is None:
            if not signalled:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server did not stop within %ss" % timeout)
        self.output += self.proc.stdout.read()
        return self.proc.returncode

    def publish(self, topic, data):
        """POST /topics/{topic} on a kept-alive connection; returns the id."""
        if isinstance(data, str):
            data = data.encode()
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        self._conn.request("POST", "/topics/" + topic, body=data)
        r = self._conn.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body)
        return json.loads(body)["id"]

    def control_request(self, method, path="", body=None):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        req = urllib.request.Request(self.control + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def register(self, addr, topics, **kw):
        return self.control_request("POST", "", dict(addr=addr, topics=topics, **kw))

    def stats(self):
        with urllib.request.urlopen(self.control[:-len("/endpoints")] + "/stats", timeout=10) as r:
            return json.loads(r.read())

    def wait_stats(self, pred, timeout=10):
        """Polls /udp/stats until pred(stats): waits on the server's own state, not on time."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError("stats never matched: %r" % st)
            time.sleep(0.01)


class Endpoint:
    """A Python UDP socket registered with the server; datagrams carry kernel receive times."""

    def __init__(self, server, topics, **reg):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        status, self.reg = server.register(self.addr, topics, **reg)
        assert status == 201, (status, self.reg)
        self.id = self.reg["id"]
        self.got = []

    def recv(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        data, anc, _, src = self.sock.recvmsg(65536, 256)
        d = parse_datagram(data)
        d["src"] = src
        d["t"] = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", cdata[:16])
                d["t"] = sec + nsec / 1e9
        self.got.append(d)
        return d

    def wait_for(self, pred, timeout=10, what="a matching datagram"):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s did not arrive within %ss; got %r" % (what, timeout, self.got[-5:]))
            try:
                d = self.recv(left)
            except socket.timeout:
                continue
            if pred(d):
                return d

    def wait_until(self, cond, timeout=10, what="the expected datagrams"):
        """Receives until cond() holds over everything received (checked before each wait too)."""
        if not cond():
            self.wait_for(lambda d: cond(), timeout, what)

    def has_final(self, final):
        """The newest message of every topic in `final` (topic -> seq) arrived."""
        return all(any(d["kind"] == "message" and d["topic"] == t and d["seq"] == seq for d in list(self.got))
                   for t, seq in final.items())

    def notice(self, code, timeout=10):
        return self.wait_for(lambda d: d["kind"] == "notice" and d["code"] == code, timeout, "notice " + code)

    def pending(self):
        """Whatever is already in the socket's buffer, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(65536)
                out.append(parse_datagram(data))
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return out

    def close(self):
        self.sock.close()


class Receiver:
    """The C++ receiver (crier_udp_game_receiver): one JSON object per stdout line."""

    def __init__(self, server, *args):
        self.proc = subprocess.Popen([RECEIVER, "--register", server.control, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []

    def next(self):
        # readline blocks; the receiver's --max-seconds (every test sets it) bounds the wait
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError("receiver ended: %s" % self.proc.stderr.read())
        o = json.loads(line)
        self.lines.append(o)
        return o

    def until(self, pred):
        while True:
            o = self.next()
            if pred(o):
                return o

    def expect(self, pred):
        """The first line, already read or still to come, matching pred (for lines whose order
        is not fixed: the `registered` datagram may overtake the HTTP answer)."""
        for o in self.lines:
            if pred(o):
                return o
        return self.until(pred)

    def finish(self, timeout=10):
        out, err = self.proc.communicate(timeout=timeout)
        self.lines += [json.loads(l) for l in out.splitlines() if l.strip()]
        assert not err.strip(), "receiver stderr: %s" % err[-4000:]  # sanitizers report there
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- tests ------------------------------------------------------------------------------

def test_messages_arrive_in_order_with_ids():
    with GameServer("--max-rate", "10000", "--max-burst", "1000") as s:
        r = Receiver(s, "--topic", "game/**", "--rate", "1000", "--burst", "100", "--max-seconds", "30")
        try:
            reg = r.expect(lambda o: o["type"] == "registered")
            assert reg["rate"] == 1000 and reg["burst"] == 100 and reg["max_datagram"] == 1200, reg
            r.expect(lambda o: o["type"] == "notice" and o["code"] == "registered")  # the UDP path works
            sent = []
            for i in range(12):
                topic = "game/a" if i % 2 == 0 else "game/b/c"
                sent.append((topic, s.publish(topic, "state %d" % i), "state %d" % i))
            got = [r.until(lambda o: o["type"] == "message") for _ in sent]
            assert [(m["topic"], m["id"], m["data"]) for m in got] == sent
            assert [m["packet"] for m in got] == list(range(2, 2 + len(sent)))  # 1 was the registered notice
            assert all(m["skipped"] == 0 for m in got)
            assert [m["gap"] for m in got[:2]] == [None, None]  # first of each topic: nothing to compare
            assert all(m["gap"] == 0 and m["lost"] == 0 for m in got[2:])
            # SIGINT: the receiver unregisters (DELETE), gets its bye, and exits 0
            r.proc.send_signal(signal.SIGINT)
            assert r.finish() == 0
            end = r.lines[-1]
            assert end["type"] == "end" and end["reason"] == "signal" and end["messages"] == len(sent), end
            assert end["lost"] == 0 and end["packets_lost"] == 0 and end["skipped"] == 0
            st = s.stats()
            assert st["unregistered"] == 1 and st["endpoints"] == 0, st
        finally:
            r.kill()


def test_rate_cap_holds_and_sends_latest_state():
    rate, burst = 20, 5
    topics = ["game/p%d" % i for i in range(4)]
    with GameServer("--max-rate", "100000", "--max-burst", "100000") as s:
        slow = Endpoint(s, ["game/*"], rate=rate, burst=burst)
        fast = Endpoint(s, ["game/*"], rate=100000, burst=100000)
        assert slow.reg["rate"] == rate and slow.reg["burst"] == burst
        slow.notice("registered")
        fast.notice("registered")
        assert slow.got[0]["src"] == s.udp_source

        # The publisher: round robin over the topics, much faster than 20/s, until told to stop.
        last = {}
        stop = threading.Event()
        published = [0]

        def publisher():
            i = 0
            while not stop.is_set():
                t = topics[i % len(topics)]
                last[t] = s.publish(t, "state %d" % i)
                published[0] += 1
                i += 1
                time.sleep(0.001)  # the game's pace (~1 kHz), not a synchronisation

        fast_stop = threading.Event()
        fast_done = threading.Event()  # set by the reader once `final` is known and all of it arrived
        final = {}

        def fast_reader():
            while not fast_stop.is_set():
                try:
                    fast.recv(0.05)
                except socket.timeout:
                    pass
                if final and fast.has_final(final):
                    fast_done.set()
                    return

        pub = threading.Thread(target=publisher, daemon=True)
        reader = threading.Thread(target=fast_reader, daemon=True)
        reader.start()
        pub.start()
        try:
            # Pressure until the slow endpoint has had 40 messages (~2 s at 20/s).
            n = [0]

            def forty(d):
                n[0] += d["kind"] == "message"
                return n[0] >= 40

            slow.wait_for(forty, timeout=20, what="40 messages")
            stop.set()
            pub.join()
            final.update({t: seq_of(i) for t, i in last.items()})
            assert sorted(final) == topics

            # Latest state: the newest message of every topic arrives, whatever was skipped before it.
            slow.wait_until(lambda: slow.has_final(final), what="the final state of every topic")
            assert fast_done.wait(10), "the fast endpoint missed a final state"
        finally:
            stop.set()
            fast_stop.set()
            pub.join()
            reader.join()

        msgs = [d for d in slow.got if d["kind"] == "message"]
        # Seq jumps are exactly the skipped counts: every seq is sent or declared skipped.
        for t in topics:
            mine = [d for d in msgs if d["topic"] == t]
            seqs = [d["seq"] for d in mine]
            assert seqs == sorted(set(seqs)), seqs
            for a, b in zip(mine, mine[1:]):
                assert b["seq"] - a["seq"] - 1 == b["skipped"], (a, b)
            # the topic was created after the registration: its first datagram counts from seq 1
            assert mine[0]["skipped"] == mine[0]["seq"] - 1
            assert sum(1 + d["skipped"] for d in mine) == final[t]
        assert sum(d["skipped"] for d in msgs) > published[0] // 2, "no latest-state conflation seen"
        assert len(msgs) < published[0] // 5

        # The cap: in any window [t_i, t_j], at most burst + rate * (t_j - t_i) datagrams
        # (+1 for timestamp granularity), notices included.
        ts = [d["t"] for d in slow.got]
        assert None not in ts, "no kernel timestamps"
        worst = 0.0
        for i in range(len(ts)):
            for j in range(i + 1, len(ts)):
                excess = (j - i + 1) - (burst + rate * (ts[j] - ts[i]))
                worst = max(worst, excess)
        assert worst <= 1.0, "rate cap exceeded by %.2f datagrams" % worst
        # ... and it is the cap that limits: the sustained rate is close to it.
        span = ts[len(ts) - 1] - ts[burst]
        sustained = (len(ts) - 1 - burst) / span
        assert 0.7 * rate <= sustained <= 1.1 * rate, sustained

        # The fast endpoint, on the same topics, got far more: conflation is per endpoint.
        fast_msgs = [d for d in fast.got if d["kind"] == "message"]
        print("  published %d; slow endpoint: %d datagrams, %d seqs skipped, %.1f/s sustained, worst window "
              "excess %.2f; fast endpoint: %d messages" % (published[0], len(ts), sum(d["skipped"] for d in msgs),
                                                           sustained, worst, len(fast_msgs)))
        assert len(fast_msgs) > 5 * len(msgs), (len(fast_msgs), len(msgs))
        st = s.stats()
        assert st["rate_waits"] > 0 and st["conflated"] > 0 and st["skipped"] >= sum(d["skipped"] for d in msgs)
        status, info = s.control_request("GET", "/" + slow.id)
        assert status == 200 and info["messages"] == len(msgs) and info["skipped"] == sum(d["skipped"] for d in msgs)
        slow.close()
        fast.close()


def test_oversize_payload_is_refused_with_a_notice():
    with GameServer("--max-rate", "10000") as s:
        ep = Endpoint(s, ["game/**"], rate=1000, burst=100)
        ep.notice("registered")
        sse = SSEStream(s, "/topics/game/big")  # another transport on the same topic
        limit = 1200 - 25 - len("game/big")
        id1 = s.publish("game/big", "x" * limit)  # exactly fits
        id2 = s.publish("game/big", "y" * (limit + 1))  # one byte too many: crier accepts it ...
        id3 = s.publish("game/big", "small")
        m1 = ep.wait_for(lambda d: d["kind"] == "message")
        assert m1["id"] == id1 and m1["payload"] == b"x" * limit and m1["size"] == 1200
        n = ep.wait_for(lambda d: True)
        # ... and the UDP transport says exactly which message it did not send, and why
        assert n["kind"] == "notice" and n["code"] == "oversize" and n["id"] == id2 and n["topic"] == "game/big", n
        assert "payload %d bytes > %d allowed" % (limit + 1, limit) in n["text"], n["text"]
        assert n["size"] <= 1200
        m3 = ep.wait_for(lambda d: True)
        assert m3["kind"] == "message" and m3["id"] == id3 and m3["skipped"] == 0 and m3["payload"] == b"small"
        assert [p["packet"] for p in ep.got] == [1, 2, 3, 4]  # nothing lost, nothing else sent
        # SSE still delivers the big one: the limit is the UDP transport's, not the topic's
        ev = sse.wait_events(3)
        assert [e["id"] for e in ev] == [id1, id2, id3] and ev[1]["data"] == "y" * (limit + 1)
        sse.close()
        st = s.stats()
        assert st["oversize"] == 1 and st["max_datagram"] == 1200, st
        assert s.control_request("GET", "/" + ep.id)[1]["oversize"] == 1
        ep.close()
    # The limit is configurable.
    with GameServer("--max-datagram", "300") as s:
        ep = Endpoint(s, ["t"])
        assert ep.reg["max_datagram"] == 300
        ep.notice("registered")
        ok = s.publish("t", "a" * (300 - 26))
        big = s.publish("t", "b" * (300 - 25))
        assert ep.wait_for(lambda d: True)["id"] == ok
        n = ep.wait_for(lambda d: True)
        assert n["code"] == "oversize" and n["id"] == big and n["size"] <= 300
        ep.close()


def test_more_topics_than_an_endpoint_queues_still_converge():
    # Conflation keeps one queued message per topic; past max_pending_topics distinct topics
    # crier ends the subscription, and the transport resubscribes from the ids it sent.
    with GameServer("--max-pending-topics", "3") as s:
        ep = Endpoint(s, ["game/*"], rate=10, burst=1)
        ep.notice("registered")
        topics = ["game/t%d" % i for i in range(6)]
        final = {}
        for rnd in range(3):
            for t in topics:
                final[t] = seq_of(s.publish(t, "%s round %d" % (t, rnd)))
        ep.wait_until(lambda: ep.has_final(final), timeout=15, what="the final state of every topic")
        assert any(d["kind"] == "notice" and d["code"] == "overflow" for d in ep.got), ep.got
        assert s.stats()["overflow_resubscribes"] >= 1
        msgs = [d for d in ep.got if d["kind"] == "message"]
        for t in topics:
            mine = [d for d in msgs if d["topic"] == t]
            assert [d["seq"] for d in mine] == sorted({d["seq"] for d in mine})
            assert sum(1 + d["skipped"] for d in mine) == final[t], mine  # every seq sent or declared skipped
        assert [d["packet"] for d in ep.got] == list(range(1, len(ep.got) + 1))
        ep.close()


def test_registration_expires_without_refresh():
    with GameServer("--min-ttl", "1") as s:
        ep = Endpoint(s, ["game/**"], ttl=1)
        assert ep.reg["ttl"] == 1
        t0 = time.monotonic()
        ep.notice("registered")
        n = ep.notice("expired", timeout=10)
        elapsed = time.monotonic() - t0
        assert 0.8 <= elapsed < 5, elapsed
        assert "register again" in n["text"]
        status, body = s.control_request("POST", "/%s/refresh" % ep.id)
        assert status == 404 and body["error"]["code"] == "unknown_endpoint", (status, body)
        assert s.control_request("GET", "/" + ep.id)[0] == 404
        st = s.stats()
        assert st["expired"] == 1 and st["endpoints"] == 0, st
        # Nothing more goes to the expired address: a second endpoint gets the next message
        # (same fan-out, same flush), the first one has nothing waiting.
        other = Endpoint(s, ["game/**"])
        other.notice("registered")
        mid = s.publish("game/x", "after expiry")
        assert other.wait_for(lambda d: d["kind"] == "message")["id"] == mid
        assert ep.pending() == []

        # A receiver that refreshes (every ttl/3) outlives several ttls.
        r = Receiver(s, "--topic", "game/**", "--ttl", "1", "--max-seconds", "30")
        try:
            reg = r.until(lambda o: o["type"] == "registered")
            before = s.stats()["refreshed"]
            s.wait_stats(lambda st: st["refreshed"] >= before + 5, timeout=10)  # > 1.5 ttl of refreshes
            st = s.stats()
            assert st["expired"] == 1 and st["endpoints"] == 2, st
            assert s.control_request("GET", "/" + reg["id"])[0] == 200
            mid = s.publish("game/x", "still here")
            assert r.until(lambda o: o["type"] == "message")["id"] == mid
        finally:
            r.kill()
        other.close()
        ep.close()


def test_unregister_sends_bye():
    with GameServer() as s:
        ep = Endpoint(s, ["game/**"])
        ep.notice("registered")
        status, body = s.control_request("DELETE", "/" + ep.id)
        assert status == 200 and body["unregistered"] is True
        assert ep.notice("bye")["text"] == "unregistered"
        assert s.control_request("DELETE", "/" + ep.id)[0] == 404
        st = s.stats()
        assert st["endpoints"] == 0 and st["unregistered"] == 1, st
        ep.close()


def test_registration_is_validated():
    with GameServer("--max-topics", "2", "--max-rate", "50", "--max-ttl", "60") as s:
        def code(status_body):
            return status_body[0], (status_body[1] or {}).get("error", {}).get("code")

        assert code(s.control_request("POST", "", b"not json")) == (400, "bad_json")
        assert code(s.register("127.0.0.1", ["t"])) == (400, "invalid_addr")
        assert code(s.register("127.0.0.1:0", ["t"])) == (400, "invalid_addr")
        assert code(s.register("localhost:4000", ["t"])) == (400, "invalid_addr")
        # UDP has no handshake: the server sends only to the registrant's own address
        assert code(s.register("10.1.2.3:4000", ["t"])) == (403, "target_refused")
        assert code(s.register("127.0.0.1:4000", [])) == (400, "invalid_topic")
        assert code(s.register("127.0.0.1:4000", ["a b"])) == (400, "invalid_topic")
        assert code(s.register("127.0.0.1:4000", ["a/**/b"])) == (400, "invalid_topic")
        assert code(s.register("127.0.0.1:4000", ["a", "b", "c"])) == (400, "too_many_topics")
        assert code(s.register("127.0.0.1:4000", ["a"], rate=-1)) == (400, "invalid_rate")
        assert code(s.register("127.0.0.1:4000", ["a"], ttl="x")) == (400, "invalid_ttl")
        assert code(s.control_request("GET", "")) == (405, "method_not_allowed")
        # asked-for values are clamped; the answer says what was granted
        status, reg = s.register("127.0.0.1:4000", ["a"], rate=1e6, burst=1e6, ttl=3600)
        assert status == 201 and reg["rate"] == 50 and reg["burst"] == 32 and reg["ttl"] == 60, reg
        # the same address again replaces the registration (a restarted receiver)
        status, reg2 = s.register("127.0.0.1:4000", ["b"])
        assert status == 201 and reg2["id"] != reg["id"]
        assert s.control_request("GET", "/" + reg["id"])[0] == 404
        st = s.stats()
        assert st["endpoints"] == 1 and st["replaced"] == 1, st


def test_clean_shutdown_says_bye_to_every_endpoint():
    s = GameServer()
    r = Receiver(s, "--topic", "game/**", "--max-seconds", "30")
    try:
        ep = Endpoint(s, ["game/**"])
        ep.notice("registered")
        r.until(lambda o: o["type"] == "notice" and o["code"] == "registered")
        sse = SSEStream(s, "/topics/game/x")
        mid = s.publish("game/x", "last state")
        assert ep.wait_for(lambda d: d["kind"] == "message")["id"] == mid
        s.proc.send_signal(signal.SIGTERM)
        bye = ep.notice("bye")
        assert bye["text"] == "server stopping"
        assert r.finish() == 0
        assert r.lines[-2]["code"] == "bye" and r.lines[-1]["reason"] == "bye", r.lines[-2:]
        sse.read_to_end(timeout=5)
        assert sse.ended  # crier's own streams end cleanly too
        sse.close()
        assert s.stop(signalled=True) == 0
        err = s.proc.stderr.read()
        assert not err.strip(), err[-4000:]
        assert "udp_game stopped: registered 2" in s.output, s.output
        ep.close()
    finally:
        r.kill()
        if s.proc.poll() is None:
            s.proc.kill()


def test_demo_game_reaches_a_receiver():
    with GameServer("--simulate", "50", "--players", "2") as s:
        r = Receiver(s, "--topic", "game/players/*", "--rate", "10", "--burst", "1", "--count", "8",
                     "--max-seconds", "30")
        try:
            assert r.finish(timeout=30) == 0
            msgs = [o for o in r.lines if o["type"] == "message"]
            assert len(msgs) == 8 and {m["topic"] for m in msgs} == {"game/players/p0", "game/players/p1"}
            assert all("tick" in json.loads(m["data"]) for m in msgs)
            assert sum(m["skipped"] for m in msgs) > 0  # 100 updates/s into 10 datagrams/s
            assert r.lines[-1]["reason"] == "count"
        finally:
            r.kill()


if __name__ == "__main__":
    run([test_messages_arrive_in_order_with_ids, test_rate_cap_holds_and_sends_latest_state,
         test_oversize_payload_is_refused_with_a_notice, test_more_topics_than_an_endpoint_queues_still_converge,
         test_registration_expires_without_refresh,
         test_unregister_sends_bye, test_registration_is_validated, test_clean_shutdown_says_bye_to_every_endpoint,
         test_demo_game_reaches_a_receiver])
