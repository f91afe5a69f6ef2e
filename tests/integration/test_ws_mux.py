"""The multiplexed JSON protocol on /ws (docs/protocol.md), and permessage-deflate, driven by
Debian's python3-websockets (a strict client with its own deflate) and raw sockets."""
import asyncio
import base64
import json
import os
import socket
import struct
import zlib

import websockets

from crierlib import Server, run


def ws_url(s, path="/ws"):
    return "ws://%s:%d%s" % (s.host, s.port, path)


async def recv_json(ws, timeout=5):
    frame = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(frame, str), frame
    return json.loads(frame)


async def command(ws, **cmd):
    await ws.send(json.dumps(cmd))
    return await recv_json(ws)


def binary_frame(header, payload):
    h = json.dumps(header).encode()
    return bytes([1]) + struct.pack(">H", len(h)) + h + payload


def split_binary(frame):
    assert frame[0] == 1, frame[:4]
    n = struct.unpack(">H", frame[1:3])[0]
    return json.loads(frame[3:3 + n]), frame[3 + n:]


def test_subscribe_ack_comes_before_replay_and_live_messages():
    with Server() as s:
        ids = [s.publish("room", "old%d" % i) for i in range(3)]

        async def main():
            async with websockets.connect(ws_url(s), subprotocols=["crier.v1"]) as ws:
                assert ws.subprotocol == "crier.v1"
                ack = await command(ws, type="subscribe", ref="s1", topic="room", since=ids[0])
                assert ack == {"type": "ack", "ref": "s1", "op": "subscribe", "topic": "room"}, ack
                replay = [await recv_json(ws) for _ in range(2)]
                assert [m["data"] for m in replay] == ["old1", "old2"], replay
                assert [m["id"] for m in replay] == ids[1:]
                s.publish("room", "live", headers={"Crier-Event": "say"})
                live = await recv_json(ws)
                assert live["type"] == "message" and live["topic"] == "room", live
                assert live["data"] == "live" and live["event"] == "say", live
        asyncio.run(main())


def test_publish_over_ws_is_acked_with_its_id_and_reaches_other_connections():
    with Server() as s:
        async def main():
            async with websockets.connect(ws_url(s)) as a, websockets.connect(ws_url(s)) as b:
                await command(b, type="subscribe", ref=1, topic="chat/*")
                ack = await command(a, type="publish", ref=7, topic="chat/x", event="say", data="hi")
                assert ack["type"] == "ack" and ack["ref"] == 7 and ack["op"] == "publish", ack
                got = await recv_json(b)
                assert (got["topic"], got["data"], got["event"], got["id"]) == ("chat/x", "hi", "say", ack["id"]), got
                ack = await command(a, type="publish", ref=8, topic="chat/x", data={"n": [1, 2]})
                got = await recv_json(b)
                assert json.loads(got["data"]) == {"n": [1, 2]}, got
                assert got["content_type"] == "application/json", got
        asyncio.run(main())
        _, _, body = s.request("GET", "/topics/chat%2Fx?since=0")
        assert [m["data"] for m in json.loads(body)["messages"]][0] == "hi"


def test_binary_payloads_travel_in_binary_frames_both_ways():
    payload = bytes(range(256)) * 4
    with Server() as s:
        async def main():
            async with websockets.connect(ws_url(s)) as a, websockets.connect(ws_url(s)) as b:
                await command(b, type="subscribe", ref=1, topic="cam")
                await a.send(binary_frame({"type": "publish", "ref": "p", "topic": "cam",
                                           "content_type": "image/png"}, payload))
                ack = await recv_json(a)
                assert ack["type"] == "ack" and ack["ref"] == "p", ack
                frame = await asyncio.wait_for(b.recv(), 5)
                assert isinstance(frame, bytes), frame
                head, body = split_binary(frame)
                assert body == payload
                assert head["type"] == "message" and head["id"] == ack["id"], head
                assert head["content_type"] == "image/png" and "data" not in head, head
                s.publish("cam", b"\x00\x01\xfe", headers={"Content-Type": "application/octet-stream"})
                head, body = split_binary(await asyncio.wait_for(b.recv(), 5))
                assert body == b"\x00\x01\xfe", body
                # A binary frame that is not a publish is refused, and the connection lives on.
                await a.send(b"\x02junk")
                err = await recv_json(a)
                assert err["type"] == "error" and err["code"] == "bad_request", err
        asyncio.run(main())


def test_errors_carry_codes_and_refs_and_the_connection_stays_open():
    with Server() as s:
        async def main():
            async with websockets.connect(ws_url(s)) as ws:
                cases = [
                    ("not json", None, "bad_request"),
                    ('[1,2]', None, "bad_request"),
                    ('{"type":"dance","ref":"d"}', "d", "unknown_type"),
                    ('{"type":"subscribe","ref":2}', 2, "bad_request"),
                    ('{"type":"subscribe","ref":3,"topic":"a b"}', 3, "invalid_topic"),
                    ('{"type":"subscribe","ref":4,"topic":"a","since":"nope"}', 4, "invalid_id"),
                    ('{"type":"publish","ref":5,"topic":"a/*","data":"x"}', 5, "invalid_topic"),
                    ('{"type":"publish","ref":6,"topic":"a","event":"bad event","data":"x"}', 6,
                     "invalid_event_name"),
                    ('{"type":"unsubscribe","ref":7,"topic":"never"}', 7, "not_subscribed"),
                    ('{"type":"publish","ref":8,"topic":"a"}', 8, "bad_request"),
                ]
                for text, ref, code in cases:
                    await ws.send(text)
                    err = await recv_json(ws)
                    assert err["type"] == "error" and err["code"] == code, (text, err)
                    assert err.get("ref") == ref, (text, err)
                    assert err["message"], err
                pong = await command(ws, type="ping", ref="still-here")
                assert pong == {"type": "pong", "ref": "still-here"}, pong
        asyncio.run(main())


def test_unsubscribe_stops_delivery_and_resubscribe_resumes_exactly():
    with Server() as s:
        async def main():
            async with websockets.connect(ws_url(s)) as ws:
                await command(ws, type="subscribe", ref=1, topic="t")
                first = s.publish("t", "one")
                assert (await recv_json(ws))["data"] == "one"
                ack = await command(ws, type="unsubscribe", ref=2, topic="t")
                assert ack["op"] == "unsubscribe", ack
                missed = [s.publish("t", "m%d" % i) for i in range(3)]
                # Nothing arrives for t: the next frame is the pong.
                assert await command(ws, type="ping", ref=3) == {"type": "pong", "ref": 3}
                await command(ws, type="subscribe", ref=4, topic="t", since=first)
                got = [await recv_json(ws) for _ in range(3)]
                assert [m["id"] for m in got] == missed, got
        asyncio.run(main())


def test_resume_past_the_history_gets_a_gap_notice():
    with Server("--history-messages", "3") as s:
        ids = [s.publish("h", "x%d" % i) for i in range(8)]

        async def main():
            async with websockets.connect(ws_url(s)) as ws:
                await command(ws, type="subscribe", ref=1, topic="h", since=ids[0])
                gap = await recv_json(ws)
                assert gap["type"] == "gap" and gap["topic"] == "h" and gap["reason"] == "trimmed", gap
                assert gap["missed"] == 4, gap
                got = [await recv_json(ws) for _ in range(3)]
                assert [m["id"] for m in got] == ids[5:], got
        asyncio.run(main())


def test_handshake_errors_are_http_answers():
    with Server() as s:
        status, _, body = s.request("GET", "/ws")
        assert status == 426 and json.loads(body)["error"]["code"] == "upgrade_required", (status, body)

        async def main():
            try:
                async with websockets.connect(ws_url(s), subprotocols=["mqtt"]):
                    raise AssertionError("connected with an unsupported subprotocol")
            except websockets.exceptions.InvalidStatusCode as e:
                assert e.status_code == 400, e
        asyncio.run(main())


# --- permessage-deflate ---------------------------------------------------------------------

def test_deflate_is_negotiated_and_round_trips_with_python_websockets():
    big = "crier " * 4000
    with Server() as s:
        async def main():
            async with websockets.connect(ws_url(s), compression="deflate") as ws, \
                    websockets.connect(ws_url(s, "/topics/z"), compression="deflate") as raw:
                ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
                assert "permessage-deflate" in ext and "server_no_context_takeover" in ext, ext
                await command(ws, type="subscribe", ref=1, topic="z")
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: s.wait_metric("subscriptions", lambda v: v == 2))
                ack = await command(ws, type="publish", ref=2, topic="z", data=big)
                assert ack["type"] == "ack", ack
                assert (await recv_json(ws))["data"] == big
                assert await asyncio.wait_for(raw.recv(), 5) == big
                await raw.send(big + "!")  # a compressed message from the client publishes
                assert (await recv_json(ws))["data"] == big + "!"
        asyncio.run(main())


def raw_deflate_socket(s, path, offer=b"permessage-deflate"):
    sock = socket.create_connection((s.host, s.port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key +
                 b"\r\nSec-WebSocket-Extensions: " + offer + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, head.split(b"\r\n\r\n", 1)[0].decode()


def masked_frame(opcode, payload, rsv1=False, fin=True):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack(">BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack(">BBQ", b0, 0x80 | 127, n)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    return head + mask + body


def read_close_code(sock, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    while True:
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, off = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, off = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) < off + n:
                break
            op, payload, buf = buf[0] & 0x0F, buf[off:off + n], buf[off + n:]
            if op == 8:
                return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
        chunk = sock.recv(65536)
        if not chunk:
            return "eof"
        buf += chunk


def raw_deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_zip_bomb_closes_with_1009_without_inflating_it_all():
    bomb = raw_deflate(b"\x00" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KB
    with Server() as s:
        sock, head = raw_deflate_socket(s, "/topics/bomb")
        assert "permessage-deflate" in head, head
        rss_before = s.rss_kb()
        sock.sendall(masked_frame(2, bomb, rsv1=True))
        assert read_close_code(sock) == 1009
        sock.close()
        # Inflating it all would take at least the bomb's 64 MiB; the limit stops it at 16 MiB
        # (a string that grew to 16 MiB, more under ASan's quarantine of the freed steps).
        assert s.rss_kb() - rss_before < 60 * 1024, (rss_before, s.rss_kb())
        status, _, body = s.request("GET", "/topics/bomb?since=0")
        assert status == 204, (status, body)  # nothing was published


def test_corrupt_or_misplaced_compression_is_refused():
    with Server() as s:
        sock, _ = raw_deflate_socket(s, "/topics/c")
        sock.sendall(masked_frame(1, b"\xff\xff\xff\xff garbage", rsv1=True))
        assert read_close_code(sock) == 1007
        sock.close()
        # Compressed text that inflates to invalid UTF-8.
        sock, _ = raw_deflate_socket(s, "/topics/c")
        sock.sendall(masked_frame(1, raw_deflate(b"ok \xc0\x80"), rsv1=True))
        assert read_close_code(sock) == 1007
        sock.close()
        # RSV1 on a continuation frame is a protocol error even with the extension.
        sock, _ = raw_deflate_socket(s, "/topics/c")
        sock.sendall(masked_frame(1, raw_deflate(b"abc"), rsv1=True, fin=False) +
                     masked_frame(0, b"", rsv1=True))
        assert read_close_code(sock) == 1002
        sock.close()
        # Without negotiation, RSV1 is a protocol error.
        sock, head = raw_deflate_socket(s, "/topics/c", offer=b"x-unknown-extension")
        assert "permessage-deflate" not in head, head
        sock.sendall(masked_frame(1, raw_deflate(b"abc"), rsv1=True))
        assert read_close_code(sock) == 1002
        sock.close()


def test_negotiation_declines_an_8_bit_server_window_and_takes_the_next_offer():
    with Server() as s:
        sock, head = raw_deflate_socket(
            s, "/topics/n", offer=b"permessage-deflate; server_max_window_bits=8, "
                                  b"permessage-deflate; client_max_window_bits")
        ext = [l for l in head.split("\r\n") if l.lower().startswith("sec-websocket-extensions")]
        assert len(ext) == 1 and "server_max_window_bits=8" not in ext[0], head
        assert "server_no_context_takeover" in ext[0], ext
        sock.close()


def test_a_broadcast_is_compressed_once_and_shared():
    """Two deflate subscribers receive byte-identical compressed frames for one message."""
    text = ("market data tick " * 200).encode()
    with Server() as s:
        socks = [raw_deflate_socket(s, "/topics/bc")[0] for _ in range(2)]
        s.wait_metric("subscriptions", lambda v: v == 2)
        compressed = s.metric("websocket_compressed_total")
        s.publish("bc", text)
        frames = []
        for sock in socks:
            sock.settimeout(5)
            buf = b""
            while len(buf) < 4:
                buf += sock.recv(65536)
            n, off = (buf[1] & 0x7F), 2
            if n == 126:
                n, off = struct.unpack(">H", buf[2:4])[0], 4
            while len(buf) < off + n:
                buf += sock.recv(65536)
            assert buf[0] & 0x40, "RSV1 (compressed) expected"
            frames.append(buf[:off + n])
            d = zlib.decompressobj(-15)
            assert d.decompress(buf[off:off + n] + b"\x00\x00\xff\xff") == text
            sock.close()
        assert frames[0] == frames[1]
        assert len(frames[0]) < len(text) // 10
        assert s.metric("websocket_compressed_total") == compressed + 1


if __name__ == "__main__":
    run([
        test_subscribe_ack_comes_before_replay_and_live_messages,
        test_publish_over_ws_is_acked_with_its_id_and_reaches_other_connections,
        test_binary_payloads_travel_in_binary_frames_both_ways,
        test_errors_carry_codes_and_refs_and_the_connection_stays_open,
        test_unsubscribe_stops_delivery_and_resubscribe_resumes_exactly,
        test_resume_past_the_history_gets_a_gap_notice,
        test_handshake_errors_are_http_answers,
        test_deflate_is_negotiated_and_round_trips_with_python_websockets,
        test_zip_bomb_closes_with_1009_without_inflating_it_all,
        test_corrupt_or_misplaced_compression_is_refused,
        test_negotiation_declines_an_8_bit_server_window_and_takes_the_next_offer,
        test_a_broadcast_is_compressed_once_and_shared,
    ])
