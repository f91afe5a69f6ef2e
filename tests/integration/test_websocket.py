"""WebSocket on /topics/{topic}: Debian's python3-websockets (strict client) and raw sockets."""
import asyncio
import base64
import json
import os
import socket
import struct

import websockets

from crierlib import Server, run


def ws_url(s, path):
    return "ws://%s:%d%s" % (s.host, s.port, path)


def test_python_websockets_receives_in_order_text_and_binary():
    with Server() as s:
        async def main():
            async with websockets.connect(ws_url(s, "/topics/w")) as ws:
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: s.wait_metric("subscriptions", lambda v: v == 1))
                for i in range(3):
                    s.publish("w", "m%d" % i)
                s.publish("w", b"\x00\xff")
                got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
                assert got == ["m0", "m1", "m2", b"\x00\xff"], got
        asyncio.run(main())


def test_websocket_resumes_with_since():
    with Server() as s:
        ids = [s.publish("r", "x%d" % i) for i in range(5)]

        async def main():
            async with websockets.connect(ws_url(s, "/topics/r?since=" + ids[2])) as ws:
                got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)]
                assert got == ["x3", "x4"], got
        asyncio.run(main())


def test_websocket_publish_ping_and_close_handshake():
    with Server() as s:
        async def main():
            async with websockets.connect(ws_url(s, "/topics/p")) as ws:
                await ws.send("from client")
                pong = await ws.ping(b"abc")
                await asyncio.wait_for(pong, 5)  # the server answered with the same payload
                got = await asyncio.wait_for(ws.recv(), 5)  # our own publish comes back
                assert got == "from client"
            assert ws.close_code == 1000
        asyncio.run(main())
        status, _, body = s.request("GET", "/topics/p?since=0")
        assert json.loads(body)["messages"][0]["data"] == "from client"


def raw_upgrade(s, path="/topics/raw", extra=b"", version=b"13", key=None):
    key = key or base64.b64encode(os.urandom(16))
    sock = socket.create_connection((s.host, s.port), timeout=5)
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: " + version +
                 b"\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n" + extra)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def frame(opcode, payload, fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def read_close_code(sock, head):
    data = head.split(b"\r\n\r\n", 1)[1]
    while True:
        # find a close frame (opcode 8) among server frames
        i = 0
        while i + 2 <= len(data):
            op = data[i] & 0x0F
            n = data[i + 1] & 0x7F
            j = i + 2
            if n == 126:
                n = struct.unpack("!H", data[j:j + 2])[0]
                j += 2
            elif n == 127:
                n = struct.unpack("!Q", data[j:j + 8])[0]
                j += 8
            if j + n > len(data):
                break
            if op == 8:
                return struct.unpack("!H", data[j:j + 2])[0] if n >= 2 else None
            i = j + n
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk


def test_handshake_errors_are_precise():
    with Server() as s:
        sock, head = raw_upgrade(s, version=b"12")
        assert head.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in head, head
        sock.close()
        sock, head = raw_upgrade(s, key=b"short")
        assert head.startswith(b"HTTP/1.1 400"), head
        sock.close()
        sock, head = raw_upgrade(s)
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.close()


def test_protocol_errors_close_with_the_right_code():
    cases = [
        ("unmasked frame", frame(1, b"hi", mask=False), 1002),
        ("reserved bit", frame(1, b"hi", rsv=0x40), 1002),
        ("unknown opcode", frame(3, b""), 1002),
        ("fragmented ping", frame(9, b"", fin=False), 1002),
        ("long ping", frame(9, b"x" * 126), 1002),
        ("continuation first", frame(0, b"x"), 1002),
        ("invalid utf-8", frame(1, b"\xc0\xaf"), 1007),
        ("bad close code", frame(8, struct.pack("!H", 1005)), 1002),
        ("good close", frame(8, struct.pack("!H", 1000)), 1000),
    ]
    with Server() as s:
        for name, data, want in cases:
            sock, head = raw_upgrade(s, extra=data)
            assert head.startswith(b"HTTP/1.1 101"), (name, head)
            got = read_close_code(sock, head)
            sock.close()
            assert got == want, (name, got)


def test_silent_peer_is_pinged_then_dropped():
    with Server("--heartbeat", "100") as s:
        sock, head = raw_upgrade(s)
        assert head.startswith(b"HTTP/1.1 101")
        data = head.split(b"\r\n\r\n", 1)[1]
        sock.settimeout(5)
        while True:  # never answer: expect a ping, then the server closing the TCP connection
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data[:1] == b"\x89", data[:10]  # FIN + ping
        sock.close()
        s.wait_metric("streams", lambda v: v == 0)


def test_slow_websocket_reader_is_bounded_then_closed_with_1013():
    with Server("--queue-bytes", "1048576", "--queue-messages", "100000") as s:
        sock, head = raw_upgrade(s, "/topics/slow")
        assert head.startswith(b"HTTP/1.1 101"), head
        s.wait_metric("subscriptions", lambda v: v == 1)
        rss0 = s.rss_kb()
        ids = []
        for _ in range(400):  # up to 25 MiB toward a reader that does not read
            ids.append(s.publish("slow", b"p" * 65536))
            if s.metric("overflow_disconnects_total") >= 1:
                break
        s.wait_metric("overflow_disconnects_total", lambda v: v >= 1)
        s.wait_metric("subscriptions", lambda v: v == 0)
        growth_mb = (s.rss_kb() - rss0) / 1024
        assert growth_mb < 80, growth_mb  # queue (1 MiB) + socket buffers + the shared history
        assert len(ids) < 400, "the queue bound never triggered"
        # Now read: whole messages in order, then the close frame with 1013 (try again later).
        data = head.split(b"\r\n\r\n", 1)[1]
        sock.settimeout(10)
        frames, code = 0, None
        while code is None:
            while len(data) >= 4:
                n, off = data[1] & 0x7F, 2
                if n == 126:
                    n, off = struct.unpack("!H", data[2:4])[0], 4
                elif n == 127:
                    if len(data) < 10:
                        break
                    n, off = struct.unpack("!Q", data[2:10])[0], 10
                if len(data) < off + n:
                    break
                op, body, data = data[0] & 0x0F, data[off:off + n], data[off + n:]
                if op == 8:
                    code = struct.unpack("!H", body[:2])[0]
                    break
                assert op == 1 and body == b"p" * 65536, (op, len(body))
                frames += 1
            if code is None:
                chunk = sock.recv(65536)
                assert chunk, "connection closed without a close frame"
                data += chunk
        assert code == 1013, code
        assert 0 < frames < len(ids), (frames, len(ids))
        sock.sendall(frame(8, struct.pack("!H", 1000)))
        s.wait_metric("streams", lambda v: v == 0)
        sock.close()


def test_1000_websocket_subscribers_each_receive_100_in_order():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    n_subs, n_msgs = 1000, 100
    with Server() as s:
        async def main():
            conns = []
            for i in range(0, n_subs, 100):
                conns += await asyncio.gather(*[websockets.connect(ws_url(s, "/topics/fan"), max_queue=None)
                                                for _ in range(100)])
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: s.wait_metric("subscriptions", lambda v: v == n_subs))
            r, w = await asyncio.open_connection(s.host, s.port)
            for m in range(n_msgs):
                body = b"%d" % m
                w.write(b"POST /topics/fan HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await w.drain()

            async def take(ws):
                return [int(await asyncio.wait_for(ws.recv(), 30)) for _ in range(n_msgs)]
            got = await asyncio.gather(*[take(c) for c in conns])
            w.close()
            await asyncio.gather(*[c.close() for c in conns])
            return got
        got = asyncio.run(main())
        bad = [g for g in got if g != list(range(n_msgs))]
        assert not bad, (len(bad), bad[0][:10])


if __name__ == "__main__":
    run([v for k, v in list(globals().items()) if k.startswith("test_")])
