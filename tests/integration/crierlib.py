"""Shared helpers for crier's integration tests: start a real crier_server on a free
loopback port, talk to it over raw sockets / urllib / curl, and stop it by pid."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

SERVER = os.environ.get("CRIER_SERVER") or (sys.argv[1] if len(sys.argv) > 1 else None)


class Server:
    def __init__(self, *args):
        if not SERVER:
            raise SystemExit("set CRIER_SERVER or pass the crier_server path")
        self.proc = subprocess.Popen([SERVER, "--listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://([\d.]+):(\d+)/", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("crier_server did not start: %r %s" % (line, self.proc.stderr.read()))
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = "http://%s:%d" % (self.host, self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # --- HTTP helpers -------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=10):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def publish(self, topic, data, headers=None):
        if isinstance(data, str):
            data = data.encode()
        status, _, body = self.request("POST", "/topics/" + topic, data, headers)
        assert status == 200, (status, body)
        return json.loads(body)["id"]

    def metric(self, name):
        _, _, body = self.request("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("crier_" + name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def wait_metric(self, name, pred, timeout=10):
        """Polls /metrics until pred(value): waits on the server's own state, not on time."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.metric(name)
            if pred(v):
                return v
            if time.monotonic() > deadline:
                raise AssertionError("metric %s stuck at %s" % (name, v))
            time.sleep(0.005)

    def raw(self, data, timeout=5, read_all=True):
        """Sends raw bytes, returns everything the server sends until it closes (or timeout)."""
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
                if not read_all:
                    break
            return out
        finally:
            s.close()


class SSEParser:
    """WHATWG event-stream parsing over a chunked HTTP body (enough for tests)."""

    def __init__(self):
        self.buf = b""
        self.events = []
        self.cur = {"data": [], "event": None, "id": None, "extra": {}}

    def feed(self, data):
        self.buf += data
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                return
            line, self.buf = self.buf[:i].decode(), self.buf[i + 1:]
            if line == "":
                if self.cur["data"] or self.cur["event"]:
                    self.events.append({"data": "\n".join(self.cur["data"]), "event": self.cur["event"] or "message",
                                        "id": self.cur["id"], "extra": self.cur["extra"]})
                self.cur = {"data": [], "event": None, "id": self.cur["id"], "extra": {}}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                self.cur["data"].append(value)
            elif field == "event":
                self.cur["event"] = value
            elif field == "id":
                self.cur["id"] = value
            else:
                self.cur["extra"][field] = value


class Stream:
    """A streaming GET over a raw socket with chunked decoding (SSE or NDJSON)."""

    def __init__(self, server, path, headers=None, timeout=10):
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        hdrs = {"Host": "%s:%d" % (server.host, server.port)}
        hdrs.update(headers or {})
        req = "GET %s HTTP/1.1\r\n%s\r\n" % (path, "".join("%s: %s\r\n" % kv for kv in hdrs.items()))
        self.sock.sendall(req.encode())
        self.raw = b""
        self.body = b""
        self.status = None
        self.headers = {}
        self.ended = False  # the terminating chunk arrived
        self._chunk_left = None
        while self.status is None:
            self._recv()

    def _recv(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("server closed the stream")
        self.raw += data
        if self.status is None:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return
            head, self.raw = self.raw[:i].decode(), self.raw[i + 4:]
            lines = head.split("\r\n")
            self.status = int(lines[0].split()[1])
            for l in lines[1:]:
                k, _, v = l.partition(":")
                self.headers[k.strip().lower()] = v.strip()
        self._dechunk()

    def _dechunk(self):
        while True:
            if self._chunk_left is None:
                i = self.raw.find(b"\r\n")
                if i < 0:
                    return
                size = int(self.raw[:i].split(b";")[0], 16)
                self.raw = self.raw[i + 2:]
                if size == 0:
                    self.ended = True
                    return
                self._chunk_left = size
            if len(self.raw) < self._chunk_left + 2:
                return
            self.body += self.raw[:self._chunk_left]
            self.raw = self.raw[self._chunk_left + 2:]
            self._chunk_left = None

    def read_until(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while not pred():
            if self.ended:
                raise EOFError("stream ended")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError("stream did not deliver in time")
            self._recv()

    def read_to_end(self, timeout=10):
        deadline = time.monotonic() + timeout
        try:
            while not self.ended and time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                self._recv()
        except EOFError:
            pass

    def close(self):
        self.sock.close()


class SSEStream(Stream):
    def __init__(self, server, path, headers=None, timeout=10):
        h = {"Accept": "text/event-stream"}
        h.update(headers or {})
        super().__init__(server, path, h, timeout)
        self.parser = SSEParser()
        self._fed = 0

    def events(self):
        self.parser.feed(self.body[self._fed:])
        self._fed = len(self.body)
        return self.parser.events

    def wait_events(self, n, timeout=10):
        self.read_until(lambda: len(self.events()) >= n, timeout)
        return self.events()


def run(tests):
    """Runs test functions, prints 'N passed, M failed', exits non-zero on failure."""
    passed = failed = 0
    only = os.environ.get("CRIER_TEST_ONLY")
    for t in tests:
        if only and only not in t.__name__:
            continue
        start = time.monotonic()
        try:
            t()
            passed += 1
            print("PASS %s (%.2fs)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %r" % (t.__name__, e), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or not passed else 0)
