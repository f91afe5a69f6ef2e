"""The relay (docs/relay.md): public URLs /relay/{token} whose HTTP requests travel down a
client's WebSocket (Debian's python3-websockets) or the long-poll pair, with the client's
answers sent back as the HTTP responses; and webhook deliveries to such a URL going straight
down the relay connection. Everything runs on 127.0.0.1 against a real crier_server."""
import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import websockets

from crierlib import Server, run

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WAIT = 5  # seconds: the longest any single expected event may take


# --- helpers ----------------------------------------------------------------------


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # [(lower-case name, value)] as received, repeats kept
        self.body = body
        self.t = time.monotonic()  # when the answer was complete

    def all(self, name):
        return [v for k, v in self.headers if k == name]

    def h(self, name):
        v = self.all(name)
        return v[0] if v else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Resp(%d, %r, %r)" % (self.status, self.headers, self.body[:200])


def http_req(url, method="GET", body=None, headers=None, timeout=10):
    """One request on its own connection (http.client: repeated headers are kept)."""
    u = urlparse(url)
    assert u.hostname == "127.0.0.1", url
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request(method, u.path + ("?" + u.query if u.query else ""), body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return Resp(r.status, [(k.lower(), v) for k, v in r.getheaders()], data)
    finally:
        c.close()


def raw_http(host, port, request_bytes, timeout=10):
    """Sends raw bytes; parses the response head and reads exactly Content-Length body bytes
    (fails if the answer is chunked or has no single Content-Length)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(request_bytes)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, "connection closed before the response head: %r" % buf
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        lengths = [v for k, v in headers if k == "content-length"]
        assert len(lengths) == 1, headers
        n = int(lengths[0])
        while len(rest) < n:
            chunk = s.recv(65536)
            assert chunk, "connection closed inside the body"
            rest += chunk
        return Resp(status, headers, rest[:n]), rest[n:]
    finally:
        s.close()


def frame(head, body=b""):
    """A binary relay frame: version 1, 2-byte big-endian header length, JSON header, body."""
    h = json.dumps(head).encode()
    return bytes([1]) + len(h).to_bytes(2, "big") + h + body


def parse_frame(data):
    assert isinstance(data, bytes), "a relayed request is a binary frame, got %r" % (data,)
    assert data[0] == 1, data[:8]
    n = int.from_bytes(data[1:3], "big")
    head = json.loads(data[3:3 + n])
    return head, data[3 + n:]


def ws_url(s):
    return "ws://%s:%d/relay" % (s.host, s.port)


async def connect(s):
    return await websockets.connect(ws_url(s), open_timeout=WAIT, close_timeout=WAIT, ping_interval=None,
                                    max_size=8 << 20)


async def recv(ws, timeout=WAIT):
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws, timeout=WAIT):
    m = await recv(ws, timeout)
    assert isinstance(m, str), "expected a text frame, got %r" % (m[:100],)
    return json.loads(m)


async def recv_request(ws, timeout=WAIT):
    return parse_frame(await recv(ws, timeout))


async def hello(ws, token=None, secret=None):
    msg = {"type": "hello"}
    if token is not None:
        msg.update(token=token, secret=secret)
    await ws.send(json.dumps(msg))
    ready = await recv_json(ws)
    assert ready["type"] == "ready", ready
    return ready


async def relay_client(s, token=None, secret=None):
    ws = await connect(s)
    return ws, await hello(ws, token, secret)


async def closed(ws, timeout=WAIT):
    """Waits for the server to close; returns (code, reason)."""
    await asyncio.wait_for(ws.wait_closed(), timeout)
    return ws.close_code, ws.close_reason


async def in_thread(fn, *args, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))


def start(fn, *args, **kw):
    """An HTTP call on a worker thread, started now (not at the next await), to await later."""
    return asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))


async def done(task, timeout=WAIT + 5):
    return await asyncio.wait_for(task, timeout)


def arun(coro_fn):
    """Runs an async test body with enough worker threads for many blocking HTTP calls at once."""
    async def main():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=80))
        await coro_fn()
    asyncio.run(main())


def check_ready(s, ready, resumed, idle_ms=600000):
    assert re.fullmatch(r"[0-9a-f]{32}", ready["token"]), ready
    assert re.fullmatch(r"[0-9a-f]{64}", ready["secret"]), ready
    assert ready["url"] == "%s/relay/%s" % (s.url, ready["token"]), (ready, s.url)
    assert ready["resumed"] is resumed, ready
    assert ready["idle_expiry_ms"] == idle_ms, ready


def check_json_error(r, status):
    assert r.status == status, r
    assert (r.h("content-type") or "").startswith("application/json"), r
    assert "error" in r.json(), r


async def wait_gauge(s, name, pred, timeout=WAIT):
    return await in_thread(s.wait_metric, name, pred, timeout)


# --- 1. WebSocket round trip -------------------------------------------------------------


def test_websocket_round_trip_binary_and_text_answers():
    async def body():
        with Server() as s:
            ws, ready = await relay_client(s)
            check_ready(s, ready, False)
            url = ready["url"]
            payload = bytes(range(256))
            t = start(http_req, url + "/hook?x=1", "POST", payload,
                      {"Content-Type": "application/octet-stream", "X-Custom-Thing": "Hello World"})
            head, got = await recv_request(ws)
            assert head["type"] == "request" and isinstance(head["id"], int) and head["id"] >= 1, head
            assert head["method"] == "POST" and head["path"] == "/hook?x=1", head
            names = [n for n, _ in head["headers"]]
            assert all(n == n.lower() for n in names), names
            assert ["x-custom-thing", "Hello World"] in head["headers"], head["headers"]
            assert ["content-type", "application/octet-stream"] in head["headers"], head["headers"]
            assert got == payload, got
            answer = bytes(reversed(range(256)))
            await ws.send(frame({"type": "response", "id": head["id"], "status": 201,
                                 "headers": [["x-answer", "Yes"], ["content-type", "application/x-test"]]}, answer))
            r = await done(t)
            assert r.status == 201 and r.body == answer, r
            assert r.h("x-answer") == "Yes" and r.h("content-type") == "application/x-test", r
            assert r.h("content-length") == "256", r

            # A text-frame answer with "body"; the request has no path below the token: "/".
            t = start(http_req, url, "GET")
            head2, got = await recv_request(ws)
            assert head2["method"] == "GET" and head2["path"] == "/" and got == b"", head2
            assert head2["id"] != head["id"], (head, head2)
            await ws.send(json.dumps({"type": "response", "id": head2["id"], "status": 200,
                                      "headers": [["content-type", "text/plain; charset=utf-8"]],
                                      "body": "h\u00e9llo"}))
            r = await done(t)
            assert r.status == 200 and r.body == "h\u00e9llo".encode(), r
            assert r.h("content-type") == "text/plain; charset=utf-8", r

            # A text-frame answer with "body_base64".
            t = start(http_req, url + "/a/b", "PUT", b"x")
            head3, got = await recv_request(ws)
            assert head3["method"] == "PUT" and head3["path"] == "/a/b" and got == b"x", head3
            raw = b"\x00\xff\x10binary\x80"
            await ws.send(json.dumps({"type": "response", "id": head3["id"], "status": 202, "headers": [],
                                      "body_base64": base64.b64encode(raw).decode()}))
            r = await done(t)
            assert r.status == 202 and r.body == raw, r
            await ws.close()
    arun(body)


# --- 2. hop-by-hop headers ---------------------------------------------------------------------


def test_hop_by_hop_headers_do_not_cross():
    async def body():
        with Server() as s:
            ws, ready = await relay_client(s)
            path = urlparse(ready["url"]).path + "/hop"
            req = ("POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
                   "Connection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                   "TE: trailers\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n"
                   "Proxy-Foo: 1\r\n"
                   "X-Kept: yes\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" % (path, s.host, s.port)).encode()
            t = start(raw_http, s.host, s.port, req)
            head, got = await recv_request(ws)
            names = [n for n, _ in head["headers"]]
            for hop in ("connection", "keep-alive", "x-secret-hop", "transfer-encoding", "te",
                        "proxy-authorization", "proxy-connection", "proxy-foo"):
                assert hop not in names, (hop, head["headers"])
            assert ["x-kept", "yes"] in head["headers"], head["headers"]
            assert got == b"hello world", got
            answer = b"answer-body"
            await ws.send(frame({"type": "response", "id": head["id"], "status": 200,
                                 "headers": [["Connection", "keep-alive, X-Answer-Hop"], ["X-Answer-Hop", "1"],
                                             ["Transfer-Encoding", "chunked"], ["Content-Length", "999"],
                                             ["Keep-Alive", "timeout=99"], ["Upgrade", "h2c"],
                                             ["Proxy-Bar", "1"], ["X-Answer-Kept", "1"]]}, answer))
            r, extra = await done(t)
            assert r.status == 200 and r.body == answer and extra == b"", (r, extra)
            assert r.all("content-length") == [str(len(answer))], r  # crier's own, and right
            assert r.all("transfer-encoding") == [], r
            assert r.all("keep-alive") == [] and r.all("x-answer-hop") == [] and r.all("upgrade") == [], r
            assert r.all("proxy-bar") == [], r
            assert all("keep-alive" not in v.lower() for v in r.all("connection")), r
            assert r.h("x-answer-kept") == "1", r
            await ws.close()
    arun(body)


# --- 3. concurrency --------------------------------------------------------------------------


def test_concurrent_requests_answered_in_reverse_order():
    n = 20

    async def body():
        with Server() as s:
            ws, ready = await relay_client(s)
            tasks = [start(http_req, ready["url"] + "/c/%d" % i, "POST", b"tag-%d" % i) for i in range(n)]
            got = {}
            for _ in range(n):  # all n are in flight before any is answered
                head, b = await recv_request(ws)
                assert head["path"] == "/c/" + b.decode()[4:], (head, b)
                got[head["id"]] = b
            assert sorted(got.values()) == sorted(b"tag-%d" % i for i in range(n)), got
            for rid in sorted(got, reverse=True):
                tag = got[rid]
                await ws.send(frame({"type": "response", "id": rid, "status": 200 + int(tag[4:]) % 2,
                                     "headers": [["x-tag", tag.decode()]]}, b"answer-" + tag))
            for i, t in enumerate(tasks):
                r = await done(t)
                assert r.status == 200 + i % 2 and r.body == b"answer-tag-%d" % i, (i, r)
                assert r.h("x-tag") == "tag-%d" % i, (i, r)
            await ws.close()
    arun(body)


# --- 4. answer timeout -----------------------------------------------------------------------


def test_unanswered_request_gets_504_and_a_late_answer_an_error_frame():
    async def body():
        with Server("--relay-answer-ms", "300") as s:
            ws, ready = await relay_client(s)
            t0 = time.monotonic()
            t = start(http_req, ready["url"] + "/slow", "POST", b"x")
            head, _ = await recv_request(ws)
            r = await done(t)
            assert r.status == 504, r
            assert r.t - t0 >= 0.29, r.t - t0
            await ws.send(frame({"type": "response", "id": head["id"], "status": 200, "headers": []}, b"late"))
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "bad_request", err
            assert isinstance(err.get("message"), str), err
            # Nothing broke: the next request goes through on the same connection.
            t = start(http_req, ready["url"] + "/next", "GET")
            head2, _ = await recv_request(ws)
            assert head2["path"] == "/next" and head2["id"] != head["id"], head2
            await ws.send(json.dumps({"type": "response", "id": head2["id"], "status": 200, "body": "ok"}))
            r = await done(t)
            assert r.status == 200 and r.body == b"ok", r
            assert s.proc.poll() is None
            await ws.close()
    arun(body)


# --- 5. offline ----------------------------------------------------------------------------------


def test_offline_client_503_then_held_request_delivered_on_reconnect():
    async def body():
        with Server() as s:
            ws, ready = await relay_client(s)
            await ws.close()  # the server's close frame comes after it let go of the token
            r = await in_thread(http_req, ready["url"] + "/x", "POST", b"x")
            check_json_error(r, 503)
            assert r.h("retry-after") == "5", r

        with Server("--relay-hold-ms", "2000") as s:
            ws, ready = await relay_client(s)
            await ws.close()
            t0 = time.monotonic()
            t = start(http_req, ready["url"] + "/held?n=1", "POST", b"held body")
            # The request has reached the server (its connection is open) before the reconnect.
            await wait_gauge(s, "connections", lambda v: v >= 2)
            await in_thread(s.metric, "connections")
            assert not t.done(), "a request to an offline client was answered at once: %r" % (t.result(),)
            ws2 = await connect(s)
            await ws2.send(json.dumps({"type": "hello", "token": ready["token"], "secret": ready["secret"]}))
            # docs/relay.md: ready (step 2) comes before any request (step 3), held ones too.
            ready2, req = await recv(ws2), await recv(ws2)
            assert isinstance(ready2, str), (ready2, req)
            ready2 = json.loads(ready2)
            assert ready2["type"] == "ready" and ready2["resumed"] is True, ready2
            assert ready2["url"] == ready["url"], (ready, ready2)
            assert ready2["token"] == ready["token"] and ready2["secret"] == ready["secret"], ready2
            head, got = parse_frame(req)
            assert head["path"] == "/held?n=1" and got == b"held body", (head, got)
            await ws2.send(frame({"type": "response", "id": head["id"], "status": 200, "headers": []}, b"back"))
            r = await done(t)
            assert r.status == 200 and r.body == b"back", r
            assert r.t - t0 < 2.0, "answered after the hold expired: %.2fs" % (r.t - t0)

            # Offline again and nobody comes back: the request waits the hold out, then 503.
            await ws2.close()
            t0 = time.monotonic()
            r = await in_thread(http_req, ready["url"] + "/never", "GET")
            check_json_error(r, 503)
            assert r.h("retry-after") == "5", r
            assert r.t - t0 >= 1.9, "a held request ended after %.2fs, before the 2 s hold" % (r.t - t0)
    arun(body)


# --- 6. token reuse ----------------------------------------------------------------------------


def test_token_reuse_wrong_secret_and_takeover():
    async def body():
        with Server() as s:
            ws1, r1 = await relay_client(s)
            await ws1.close()
            ws2, r2 = await relay_client(s, r1["token"], r1["secret"])
            check_ready(s, r2, True)
            assert r2["token"] == r1["token"] and r2["url"] == r1["url"], (r1, r2)

            # A wrong secret (same length, last digit changed) does not get the token.
            wrong = r1["secret"][:-1] + ("0" if r1["secret"][-1] != "0" else "1")
            ws3, r3 = await relay_client(s, r1["token"], wrong)
            check_ready(s, r3, False)
            assert r3["token"] != r1["token"] and r3["url"] != r1["url"], r3
            ws4, r4 = await relay_client(s, r1["token"], "")
            check_ready(s, r4, False)
            assert r4["token"] not in (r1["token"], r3["token"]), r4
            # ... and did not disturb the token's connection.
            await ws2.send('{"type":"ping"}')
            assert await recv_json(ws2) == {"type": "pong"}

            # A request in flight on ws2 when a new connection takes the token over.
            t = start(http_req, r1["url"] + "/inflight", "GET")
            head, _ = await recv_request(ws2)
            ws5, r5 = await relay_client(s, r1["token"], r1["secret"])
            assert r5["resumed"] is True and r5["url"] == r1["url"], r5
            assert await closed(ws2) == (4000, "replaced")
            r = await done(t)
            assert r.status == 502, r
            # Requests now go to the new connection.
            t = start(http_req, r1["url"] + "/after", "GET")
            head, _ = await recv_request(ws5)
            assert head["path"] == "/after", head
            await ws5.send(json.dumps({"type": "response", "id": head["id"], "status": 200, "body": "ws5"}))
            r = await done(t)
            assert r.status == 200 and r.body == b"ws5", r
            # The wrong-secret client has its own working URL.
            t = start(http_req, r3["url"] + "/own", "GET")
            head, _ = await recv_request(ws3)
            await ws3.send(json.dumps({"type": "response", "id": head["id"], "status": 200, "body": "ws3"}))
            r = await done(t)
            assert r.status == 200 and r.body == b"ws3", r
            for w in (ws3, ws4, ws5):
                await w.close()
    arun(body)


# --- 7. errors --------------------------------------------------------------------------------


def test_unknown_token_oversized_body_bad_status_and_disconnect_in_flight():
    async def body():
        with Server("--relay-max-body", "1000", "--max-payload", "100000") as s:
            r = await in_thread(http_req, s.url + "/relay/" + "0" * 32 + "/x", "POST", b"x")
            check_json_error(r, 404)
            r = await in_thread(http_req, s.url + "/relay/nottoken", "GET")
            check_json_error(r, 404)

            ws, ready = await relay_client(s)
            url = ready["url"]
            r = await in_thread(http_req, url + "/big", "POST", b"a" * 1001)
            check_json_error(r, 413)
            # Nothing was forwarded: the next frame the client gets is the pong.
            await ws.send('{"type":"ping"}')
            assert await recv_json(ws) == {"type": "pong"}
            t = start(http_req, url + "/fits", "POST", b"b" * 1000)
            head, got = await recv_request(ws)
            assert head["path"] == "/fits" and got == b"b" * 1000, head
            # An answer larger than the relay allows is refused (error frame); a good one then goes.
            await ws.send(frame({"type": "response", "id": head["id"], "status": 200, "headers": []}, b"c" * 1001))
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "bad_request", err
            await ws.send(frame({"type": "response", "id": head["id"], "status": 200, "headers": []}, b"c" * 1000))
            r = await done(t)
            assert r.status == 200 and r.body == b"c" * 1000, r

            # A status outside 200-599 -> 502.
            for bad in (199, 600):
                t = start(http_req, url + "/status", "GET")
                head, _ = await recv_request(ws)
                await ws.send(json.dumps({"type": "response", "id": head["id"], "status": bad, "body": "x"}))
                r = await done(t)
                assert r.status == 502, (bad, r)

            # The client goes away with a request in flight -> 502.
            t = start(http_req, url + "/gone", "GET")
            await recv_request(ws)
            await ws.close()
            r = await done(t)
            assert r.status == 502, r
    arun(body)


# --- 8. hello rules ---------------------------------------------------------------------------


def test_hello_rules_ping_and_errors():
    async def body():
        with Server() as s:
            ws = await connect(s)
            await ws.send(json.dumps({"type": "response", "id": 1, "status": 200, "body": "x"}))
            assert (await closed(ws))[0] == 1008

            ws = await connect(s)
            await ws.send(frame({"type": "response", "id": 1, "status": 200}))
            assert (await closed(ws))[0] == 1008

            ws, ready = await relay_client(s)
            await ws.send('{"type":"hello"}')
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "bad_request", err
            await ws.send(json.dumps({"type": "hello", "token": ready["token"], "secret": ready["secret"]}))
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "bad_request", err
            await ws.send('{"type":"ping"}')
            assert await recv_json(ws) == {"type": "pong"}
            await ws.send('{"type":"bogus"}')
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "unknown_type", err
            await ws.send("not json")
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "bad_request", err
            await ws.send(b"\x02\x00\x02{}")  # wrong version
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "bad_request", err
            # Still the same, working token.
            t = start(http_req, ready["url"] + "/still", "GET")
            head, _ = await recv_request(ws)
            await ws.send(json.dumps({"type": "response", "id": head["id"], "status": 200, "body": "yes"}))
            r = await done(t)
            assert r.status == 200 and r.body == b"yes", r
            await ws.close()
    arun(body)


# --- 9. long-poll -------------------------------------------------------------------------


def test_long_poll_pair():
    async def body():
        with Server() as s:
            r = await in_thread(http_req, s.url + "/relay", "POST", b"{}", {"Content-Type": "application/json"})
            assert r.status == 200, r
            ready = r.json()
            assert ready["type"] == "ready", ready
            check_ready(s, ready, False)
            r = await in_thread(http_req, s.url + "/relay", "POST",
                                json.dumps({"token": ready["token"], "secret": ready["secret"]}).encode())
            assert r.status == 200 and r.json()["resumed"] is True and r.json()["url"] == ready["url"], r
            url = ready["url"]
            ctl = url + "/.well-known/crier-relay/"
            auth = {"Crier-Relay-Secret": ready["secret"]}
            bad = {"Crier-Relay-Secret": "0" * 64}

            assert (await in_thread(http_req, ctl + "requests?wait=1", "GET", None, bad)).status == 403
            assert (await in_thread(http_req, ctl + "requests?wait=1", "GET")).status == 403
            assert (await in_thread(http_req, ctl + "responses", "POST", b"{}", bad)).status == 403
            r = await in_thread(http_req, s.url + "/relay/" + "f" * 32 + "/.well-known/crier-relay/requests?wait=1",
                                "GET", None, auth)
            assert r.status == 404, r

            # A request made while a poll waits comes back in that poll.
            poll = start(http_req, ctl + "requests?wait=5", "GET", None, auth)
            await wait_gauge(s, "connections", lambda v: v >= 2)
            payload = b"\x00\x01lp\xff"
            t = start(http_req, url + "/lp?q=2", "POST", payload, {"X-Lp": "1"})
            r = await done(poll)
            assert r.status == 200, r
            reqs = r.json()["requests"]
            assert len(reqs) == 1, reqs
            q = reqs[0]
            assert q["method"] == "POST" and q["path"] == "/lp?q=2" and ["x-lp", "1"] in q["headers"], q
            assert base64.b64decode(q["body_base64"]) == payload, q
            r = await in_thread(http_req, ctl + "responses", "POST",
                                json.dumps({"id": q["id"], "status": 203, "headers": [["x-r", "1"]],
                                            "body": "done"}).encode(), auth)
            assert r.status == 204, r
            r = await done(t)
            assert r.status == 203 and r.body == b"done" and r.h("x-r") == "1", r

            # Two requests, answered together with the array form.
            ts = [start(http_req, url + "/arr/%d" % i, "POST", b"arr-%d" % i) for i in range(2)]
            got = []
            deadline = time.monotonic() + WAIT
            while len(got) < 2:
                assert time.monotonic() < deadline, got
                r = await in_thread(http_req, ctl + "requests?wait=5", "GET", None, auth)
                assert r.status == 200, r
                got += r.json()["requests"]
            by_body = {base64.b64decode(q["body_base64"]): q for q in got}
            assert set(by_body) == {b"arr-0", b"arr-1"}, got
            answers = [{"id": by_body[b"arr-0"]["id"], "status": 200, "headers": [], "body": "zero"},
                       {"id": by_body[b"arr-1"]["id"], "status": 201, "headers": [],
                        "body_base64": base64.b64encode(b"\x01one").decode()}]
            r = await in_thread(http_req, ctl + "responses", "POST", json.dumps(answers).encode(), auth)
            assert r.status == 204, r
            r0, r1 = await done(ts[0]), await done(ts[1])
            assert (r0.status, r0.body) == (200, b"zero") and (r1.status, r1.body) == (201, b"\x01one"), (r0, r1)

            # Control paths are never forwarded; a poll with nothing pending is empty after wait.
            r = await in_thread(http_req, ctl + "other", "GET", None, auth)
            assert r.status == 404, r
            t0 = time.monotonic()
            r = await in_thread(http_req, ctl + "requests?wait=1", "GET", None, auth)
            assert r.status == 200 and r.json() == {"requests": []}, r
            assert r.t - t0 >= 0.9, r.t - t0
    arun(body)


def test_long_poll_client_gone_past_grace_gets_503():
    async def body():
        with Server("--relay-grace-ms", "300") as s:
            ready = (await in_thread(http_req, s.url + "/relay", "POST", b"{}")).json()
            auth = {"Crier-Relay-Secret": ready["secret"]}
            r = await in_thread(http_req, ready["url"] + "/.well-known/crier-relay/requests?wait=1", "GET", None,
                                auth)
            assert r.status == 200 and r.json() == {"requests": []}, r
            ended = r.t  # the poll ended at the server before this
            # A request right after: it waits for a next poll that never comes, then 503.
            r = await in_thread(http_req, ready["url"] + "/late", "POST", b"x")
            check_json_error(r, 503)
            assert r.h("retry-after") == "5", r
            assert r.t - ended >= 0.3 - 0.05, "503 after %.3fs, inside the 300 ms grace" % (r.t - ended)
            # And from now on at once.
            r = await in_thread(http_req, ready["url"] + "/later", "POST", b"x")
            check_json_error(r, 503)
    arun(body)


def test_in_flight_limit_gives_503():
    limit = 64  # relay_options::max_in_flight's default (docs/relay.md)

    async def body():
        with Server() as s:
            ws, ready = await relay_client(s)
            tasks = [start(http_req, ready["url"] + "/f/%d" % i, "GET") for i in range(limit)]
            ids = [(await recv_request(ws))[0]["id"] for _ in range(limit)]
            r = await in_thread(http_req, ready["url"] + "/one-too-many", "GET")
            check_json_error(r, 503)
            assert r.h("retry-after") == "5", r
            for rid in ids:
                await ws.send(json.dumps({"type": "response", "id": rid, "status": 200, "body": "ok"}))
            for t in tasks:
                r = await done(t)
                assert r.status == 200 and r.body == b"ok", r
            # The limit counts what is in flight: with those answered, requests go again.
            t = start(http_req, ready["url"] + "/again", "GET")
            head, _ = await recv_request(ws)
            assert head["path"] == "/again", head
            await ws.send(json.dumps({"type": "response", "id": head["id"], "status": 200, "body": "again"}))
            assert (await done(t)).body == b"again"
            await ws.close()
    arun(body)


def test_idle_token_expires_to_404_and_is_not_resumed():
    async def body():
        with Server("--relay-idle-ms", "1000") as s:
            ws, ready = await relay_client(s)
            check_ready(s, ready, False, idle_ms=1000)
            await ws.close()
            t0 = time.monotonic()
            r = await in_thread(http_req, ready["url"] + "/x", "GET")
            check_json_error(r, 503)  # offline, not yet expired
            deadline = t0 + WAIT
            while r.status == 503:
                assert time.monotonic() < deadline, "the token did not expire: %r" % r
                await asyncio.sleep(0.02)  # polling the relay URL: the expiry has no outside event
                r = await in_thread(http_req, ready["url"] + "/x", "GET")
            check_json_error(r, 404)
            assert r.t - t0 >= 0.95, "expired after %.2fs, before --relay-idle-ms 1000" % (r.t - t0)
            ws2, ready2 = await relay_client(s, ready["token"], ready["secret"])
            check_ready(s, ready2, False, idle_ms=1000)
            assert ready2["token"] != ready["token"], ready2
            await ws2.close()
    arun(body)


def test_long_poll_picks_up_a_request_held_while_offline():
    async def body():
        with Server("--relay-hold-ms", "3000") as s:
            # Made over WebSocket, so it is offline the moment that closes (no poll grace).
            ws, ready = await relay_client(s)
            await ws.close()
            t = start(http_req, ready["url"] + "/held-lp", "POST", b"lp held")
            await wait_gauge(s, "connections", lambda v: v >= 2)
            await in_thread(s.metric, "connections")
            assert not t.done(), "a request to an offline client was answered at once: %r" % (t.result(),)
            auth = {"Crier-Relay-Secret": ready["secret"]}
            ctl = ready["url"] + "/.well-known/crier-relay/"
            t0 = time.monotonic()
            r = await in_thread(http_req, ctl + "requests?wait=5", "GET", None, auth)
            assert r.status == 200, r
            reqs = r.json()["requests"]
            assert [(q["path"], base64.b64decode(q["body_base64"])) for q in reqs] == [("/held-lp", b"lp held")], reqs
            assert r.t - t0 < 4, "the held request waited for the poll's timeout: %.2fs" % (r.t - t0)
            r = await in_thread(http_req, ctl + "responses", "POST",
                                json.dumps({"id": reqs[0]["id"], "status": 200, "body": "picked up"}).encode(), auth)
            assert r.status == 204, r
            r = await done(t)
            assert r.status == 200 and r.body == b"picked up", r

            # Again (a new token: the poll above keeps this one online for the poll grace), with a
            # poll whose wait is out of the documented 1-60 range: the server must not fall over.
            ws, ready = await relay_client(s)
            await ws.close()
            auth = {"Crier-Relay-Secret": ready["secret"]}
            ctl = ready["url"] + "/.well-known/crier-relay/"
            t = start(http_req, ready["url"] + "/held-lp-2", "POST", b"second")
            await wait_gauge(s, "connections", lambda v: v >= 2)
            await in_thread(s.metric, "connections")
            assert not t.done(), t.result()
            r = await in_thread(http_req, ctl + "requests?wait=0", "GET", None, auth)
            assert s.proc.poll() is None, "crier_server died: %r" % (s.proc.stderr.read(),)
            assert r.status == 200, r
            reqs = r.json()["requests"]
            assert [q["path"] for q in reqs] == ["/held-lp-2"], reqs
            r = await in_thread(http_req, ctl + "responses", "POST",
                                json.dumps({"id": reqs[0]["id"], "status": 200, "body": "2"}).encode(), auth)
            assert r.status == 204, r
            assert (await done(t)).body == b"2"
            assert s.proc.poll() is None
    arun(body)


def test_trust_cookies_and_sandbox():
    async def body():
        with Server() as s:
            ws, ready = await relay_client(s)
            t = start(http_req, ready["url"] + "/page", "GET", None, {"Cookie": "hub_session=secret", "X-Ok": "1"})
            head, _ = await recv_request(ws)
            names = [n for n, _ in head["headers"]]
            assert "cookie" not in names and ["x-ok", "1"] in head["headers"], head["headers"]
            await ws.send(json.dumps({"type": "response", "id": head["id"], "status": 200,
                                      "headers": [["content-type", "text/html"], ["Set-Cookie", "a=1"],
                                                  ["set-cookie2", "b=2"], ["Content-Security-Policy", "default-src *"],
                                                  ["X-Content-Type-Options", "sniff-away"], ["x-page", "1"]],
                                      "body": "<script>alert(1)</script>"}))
            r = await done(t)
            assert r.status == 200 and r.body == b"<script>alert(1)</script>", r
            assert r.all("set-cookie") == [] and r.all("set-cookie2") == [], r
            assert r.all("content-security-policy") == ["sandbox"], r
            assert r.all("x-content-type-options") == ["nosniff"], r
            assert r.h("x-page") == "1" and r.h("content-type") == "text/html", r
            await ws.close()
    arun(body)


# --- 10. webhooks through the relay ---------------------------------------------------------------


def verify_signature(headers, body):
    wid, ts, sig = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
    key = base64.b64decode(SECRET[len("whsec_"):])
    mac = hmac.new(key, wid.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    assert expected in sig.split(" "), (expected, sig)
    assert abs(int(ts) - time.time()) < 60, ts


def test_webhooks_are_delivered_down_the_relay_with_order_signatures_and_retries():
    async def body():
        with Server() as s:  # no --webhook-allow: loopback over the network would be refused
            ws, ready = await relay_client(s)
            spec = {"target_url": ready["url"] + "/hook", "topics": ["relay/t"], "secret": SECRET,
                    "retry_schedule_ms": [0, 100, 100]}
            r = await in_thread(http_req, s.url + "/api/v1/subscriptions", "POST", json.dumps(spec).encode(),
                                {"Content-Type": "application/json"})
            assert r.status == 201, r
            sid = r.json()["id"]
            for i in range(3):
                await in_thread(s.publish, "relay/t", "m%d" % i)
            seen_ids = []
            for i in range(3):
                head, got = await recv_request(ws)
                h = dict(head["headers"])
                assert head["method"] == "POST" and head["path"] == "/hook", head
                assert got == b"m%d" % i, (i, got)
                verify_signature(h, got)
                seen_ids.append(h["webhook-id"])
                # Ordered: nothing more comes until this one is answered.
                await ws.send('{"type":"ping"}')
                assert await recv_json(ws) == {"type": "pong"}
                await ws.send(frame({"type": "response", "id": head["id"], "status": 200, "headers": []}))
            assert len(set(seen_ids)) == 3, seen_ids

            async def stats(pred):
                deadline = time.monotonic() + WAIT
                while True:
                    r = await in_thread(http_req, s.url + "/api/v1/subscriptions/" + sid)
                    assert r.status == 200, r
                    st = r.json()["stats"]
                    if pred(st):
                        return st
                    assert time.monotonic() < deadline, st
                    await asyncio.sleep(0.02)  # polling the API: no event to wait on from outside

            await stats(lambda st: st["delivered"] == 3)

            # A failed delivery is retried with the same webhook-id.
            await in_thread(s.publish, "relay/t", "m3")
            head, got = await recv_request(ws)
            first = dict(head["headers"])
            assert got == b"m3", got
            await ws.send(frame({"type": "response", "id": head["id"], "status": 500, "headers": []}, b"no"))
            head2, got2 = await recv_request(ws)
            again = dict(head2["headers"])
            assert got2 == b"m3" and head2["id"] != head["id"], (head, head2)
            assert again["webhook-id"] == first["webhook-id"] and first["webhook-id"] not in seen_ids, (first, again)
            verify_signature(again, got2)
            await ws.send(frame({"type": "response", "id": head2["id"], "status": 200, "headers": []}))
            st = await stats(lambda st: st["delivered"] == 4)
            assert st["failures"] >= 1 and st["attempts"] >= 5, st
            await ws.close()
    arun(body)


if __name__ == "__main__":
    run([
        test_websocket_round_trip_binary_and_text_answers,
        test_hop_by_hop_headers_do_not_cross,
        test_concurrent_requests_answered_in_reverse_order,
        test_unanswered_request_gets_504_and_a_late_answer_an_error_frame,
        test_offline_client_503_then_held_request_delivered_on_reconnect,
        test_token_reuse_wrong_secret_and_takeover,
        test_unknown_token_oversized_body_bad_status_and_disconnect_in_flight,
        test_hello_rules_ping_and_errors,
        test_long_poll_pair,
        test_long_poll_client_gone_past_grace_gets_503,
        test_in_flight_limit_gives_503,
        test_idle_token_expires_to_404_and_is_not_resumed,
        test_long_poll_picks_up_a_request_held_while_offline,
        test_trust_cookies_and_sandbox,
        test_webhooks_are_delivered_down_the_relay_with_order_signatures_and_retries,
    ])
