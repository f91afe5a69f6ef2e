"""Hostile input, slow readers, many subscribers and graceful shutdown, against crier_server."""
import asyncio
import json
import resource
import signal
import socket
import subprocess
import time

from crierlib import Server, SSEStream, run

HOST = "Host: x\r\n"


def status_of(resp):
    assert resp.startswith(b"HTTP/1."), resp[:100]
    return int(resp.split(b" ", 2)[1])


def test_malformed_requests_get_4xx_json_and_server_keeps_serving():
    cases = [
        ("CL and TE together", b"POST /topics/a HTTP/1.1\r\n" + HOST.encode() +
         b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("two differing Content-Length", b"POST /topics/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
         b"Content-Length: 4\r\n\r\nabcd", 400),
        ("invalid Content-Length", b"POST /topics/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3x\r\n\r\nabc", 400),
        ("two Host headers", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("no Host on 1.1", b"GET /healthz HTTP/1.1\r\n\r\n", 400),
        ("obs-fold", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n", 400),
        ("bare CR", b"GET /healthz HTTP/1.1\rHost: x\r\n\r\n", 400),
        ("NUL in head", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
        ("bad header name", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 400),
        ("bad chunk size", b"POST /topics/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("TE not chunked", b"POST /topics/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
        ("target too long", b"GET /topics/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("too many headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200))
         + b"\r\n", 431),
        ("header too large", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 70000 + b"\r\n\r\n", 431),
        ("body too large", b"POST /topics/a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
    ]
    with Server() as s:
        for name, data, want in cases:
            resp = s.raw(data)
            got = status_of(resp)
            assert got == want, (name, got, resp[:200])
            body = resp.split(b"\r\n\r\n", 1)[1]
            assert json.loads(body)["error"]["status"] == want, name
            status, _, _ = s.request("GET", "/healthz")
            assert status == 200, name


def test_keepalive_pipelining_and_expect_continue():
    with Server() as s:
        # three pipelined requests in one write, answered in order
        resp = s.raw(b"POST /topics/p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
                     b"GET /topics/p HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        parts = resp.split(b"HTTP/1.1 ")[1:]
        assert [int(p[:3]) for p in parts] == [200, 200, 200], resp
        assert b'"data":"a"' in parts[1] and b'"status":"ok"' in parts[2]
        # curl sends Expect: 100-continue for a large body
        big = "/tmp/crier-expect-body"
        with open(big, "wb") as f:
            f.write(b"z" * 200000)
        out = subprocess.run(["curl", "-s", "-H", "Expect: 100-continue", "--data-binary", "@" + big,
                              "--max-time", "10", s.url + "/topics/e"], capture_output=True)
        assert b'"id"' in out.stdout, out


def test_slowloris_gets_408():
    with Server("--header-timeout", "500") as s:
        # the server must answer a head still unfinished after header_timeout with 408
        sock = socket.create_connection((s.host, s.port), timeout=20)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        data = sock.recv(4096)
        assert status_of(data) == 408, data
        assert time.monotonic() - t0 < 5
        sock.close()


def test_slow_reader_is_bounded_and_disconnected():
    with Server("--queue-bytes", "1048576", "--queue-messages", "100000") as s:
        sock = socket.create_connection((s.host, s.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /topics/slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        s.wait_metric("streams", lambda v: v == 1)
        rss0 = s.rss_kb()
        payload = b"p" * 65536
        for _ in range(400):  # 25 MiB toward a reader that never reads
            s.publish("slow", payload)
            if s.metric("overflow_disconnects_total") >= 1:
                break
        s.wait_metric("overflow_disconnects_total", lambda v: v >= 1)
        s.wait_metric("streams", lambda v: v == 0)
        growth_mb = (s.rss_kb() - rss0) / 1024
        # bounded by the queue (1 MiB), the socket buffers and the history (shared), never by 25 MiB
        # per reader: the history keeps 1000 messages = 64 MiB at most, so compare against that.
        assert growth_mb < 80, growth_mb
        sock.close()
        status, _, _ = s.request("GET", "/healthz")
        assert status == 200


def test_1000_sse_subscribers_each_receive_100_in_order():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    n_subs, n_msgs = 1000, 100

    async def main(s):
        got = [[] for _ in range(n_subs)]

        async def sub(i, ready):
            r, w = await asyncio.open_connection(s.host, s.port)
            w.write(b"GET /topics/fan HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            await w.drain()
            await r.readuntil(b"\r\n\r\n")
            ready.release()
            buf = b""
            while len(got[i]) < n_msgs:
                chunk = await r.read(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    j = buf.find(b"data: ")
                    if j < 0:
                        break
                    k = buf.find(b"\n", j)
                    if k < 0:
                        break
                    got[i].append(int(buf[j + 6:k]))
                    buf = buf[k + 1:]
            w.close()

        ready = asyncio.Semaphore(0)
        tasks = [asyncio.create_task(sub(i, ready)) for i in range(n_subs)]
        for _ in range(n_subs):
            await asyncio.wait_for(ready.acquire(), 30)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: s.wait_metric("streams", lambda v: v == n_subs))
        # publish over one keep-alive connection, pipelined
        r, w = await asyncio.open_connection(s.host, s.port)
        for m in range(n_msgs):
            body = b"%d" % m
            w.write(b"POST /topics/fan HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await w.drain()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        w.close()
        return got

    with Server() as s:
        got = asyncio.run(main(s))
        want = list(range(n_msgs))
        bad = [i for i, g in enumerate(got) if g != want]
        assert not bad, (len(bad), got[bad[0]][:10] if bad else None)


def test_graceful_shutdown_ends_streams_and_answers_polls():
    s = Server()
    st = SSEStream(s, "/topics/g")
    result = {}

    def poll():
        result["resp"] = s.request("GET", "/topics/idle?wait=60", timeout=30)

    import threading
    th = threading.Thread(target=poll)
    th.start()
    s.wait_metric("waiting_polls", lambda v: v == 1)
    s.wait_metric("streams", lambda v: v == 1)
    s.publish("g", "before")
    st.wait_events(1)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    st.read_to_end(timeout=10)
    assert st.ended, "the SSE stream did not end with its terminating chunk"
    th.join(10)
    assert result["resp"][0] == 204
    assert s.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert "crier stopped" in s.proc.stdout.read()


if __name__ == "__main__":
    run([v for k, v in list(globals().items()) if k.startswith("test_")])
