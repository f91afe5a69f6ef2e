"""RFC 6455 conformance on the wire: a tiny raw-socket client (masked frames built with struct,
masks from os.urandom) against crier_server, mostly in echo mode (--ws-echo 1). Every failure
case asserts the exact close code the server sends, then that the server closes the TCP
connection. Everything is bounded by socket timeouts; nothing waits on sleeps."""
import base64
import hashlib
import json
import os
import socket
import struct
import time

from crierlib import Server, run

TIMEOUT = 5
MiB = 1024 * 1024
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def apply_mask(key, data):
    """XOR with the 4-byte key, as one big-integer operation (fast for 16 MiB)."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def header(op, n, fin=True, rsv=0, mask=True, key=b""):
    """A frame header for an n-byte payload (7-, 16- or 64-bit length form), with the mask key."""
    b0 = (0x80 if fin else 0) | rsv | op
    m = 0x80 if mask else 0
    if n < 126:
        h = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        h = struct.pack("!BBH", b0, m | 126, n)
    else:
        h = struct.pack("!BBQ", b0, m | 127, n)
    return h + (key if mask else b"")


def frame(op, payload=b"", fin=True, rsv=0, mask=True):
    if isinstance(payload, str):
        payload = payload.encode()
    key = os.urandom(4)
    return header(op, len(payload), fin, rsv, mask, key) + (apply_mask(key, payload) if mask else payload)


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


def http_exchange(srv, request, timeout=TIMEOUT):
    """Sends raw request bytes; returns (socket, status, headers lowercased, bytes after the head)."""
    sock = socket.create_connection((srv.host, srv.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, ("connection closed before a response head", data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return sock, int(lines[0].split()[1]), headers, rest


def upgrade_request(path="/topics/t", method="GET", key=None, version=b"13", upgrade=b"websocket",
                    connection=b"Upgrade", extra=b""):
    lines = [method.encode() + b" " + path.encode() + b" HTTP/1.1", b"Host: x", b"Upgrade: " + upgrade,
             b"Connection: " + connection, b"Sec-WebSocket-Version: " + version]
    if key is not None:
        lines.append(b"Sec-WebSocket-Key: " + key)
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


class WS:
    """A raw client connection after a successful opening handshake."""

    def __init__(self, srv, path="/topics/t", **kw):
        self.key = base64.b64encode(os.urandom(16))
        self.sock, status, self.headers, self.buf = http_exchange(srv, upgrade_request(path, key=self.key, **kw))
        assert status == 101, (status, self.headers, self.buf)
        assert self.headers.get("sec-websocket-accept") == accept_for(self.key).decode(), self.headers

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, op, payload=b"", **kw):
        self.sock.sendall(frame(op, payload, **kw))

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting for the server (have %d of %d bytes)" % (len(self.buf), n)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                raise AssertionError("no answer from the server within the timeout (have %d of %d bytes)"
                                     % (len(self.buf), n)) from None
            assert chunk, "server closed the connection (have %d of %d bytes: %r)" % (
                len(self.buf), n, bytes(self.buf[:40]))
            self.buf += chunk

    def recv_frame(self, timeout=TIMEOUT):
        """Returns (fin, opcode, payload) of the next server frame, checking server framing rules."""
        deadline = time.monotonic() + timeout
        self.buf = bytearray(self.buf)
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        assert not b0 & 0x70, "server set RSV bits without an extension"
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(at + n, deadline)
        payload = bytes(self.buf[at:at + n])
        del self.buf[:at + n]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_message(self, timeout=TIMEOUT):
        """Reassembles the next data message: (opcode, payload). Control frames are unexpected."""
        fin, op, data = self.recv_frame(timeout)
        assert op in (TEXT, BINARY), ("expected a data frame", op, data[:40])
        parts = [data]
        while not fin:
            fin, cop, more = self.recv_frame(timeout)
            assert cop == CONT, ("expected a continuation frame", cop)
            parts.append(more)
        return op, b"".join(parts)

    def echo(self, op, payload):
        self.send_frame(op, payload)
        got_op, got = self.recv_message()
        assert (got_op, got) == (op, payload), (op, len(payload), got_op, len(got), got[:40])

    def recv_close(self, timeout=TIMEOUT):
        """The server's close frame (the next frame): (code or None, reason)."""
        fin, op, payload = self.recv_frame(timeout)
        assert op == CLOSE, ("expected a close frame", op, payload[:60])
        assert fin, "control frames are never fragmented"
        assert len(payload) != 1, "a close payload is empty or starts with a 2-byte code"
        if not payload:
            return None, b""
        payload[2:].decode("utf-8")  # the server's reason must be valid UTF-8
        return struct.unpack("!H", payload[:2])[0], payload[2:]

    def expect_close(self, want, reply=True, timeout=TIMEOUT):
        """Asserts the server closes with `want` (a code, or a set of acceptable codes/None),
        answers with our close frame, then asserts the server ends the TCP connection."""
        code, _ = self.recv_close(timeout)
        ok = code in want if isinstance(want, (set, tuple)) else code == want
        assert ok, "expected close %s, got %s" % (want, code)
        if reply:
            try:
                self.send_frame(CLOSE, close_payload(code) if code else b"")
            except OSError:
                pass  # the server may have closed already (allowed after a failure)
        self.expect_eof(timeout)
        return code

    def bye(self):
        """A clean client-initiated close: the server echoes 1000 and ends the TCP connection."""
        self.send_frame(CLOSE, close_payload(1000))
        self.expect_close(1000, reply=False)

    def expect_eof(self, timeout=TIMEOUT):
        assert not self.buf, ("bytes after the close frame", bytes(self.buf[:40]))
        self.sock.settimeout(timeout)
        try:
            rest = self.sock.recv(4096)
        except ConnectionResetError:
            rest = b""
        except socket.timeout:
            raise AssertionError("server did not close the TCP connection within %ss" % timeout)
        assert rest == b"", ("data after the close frame", rest[:40])
        self.sock.close()


def fails_with(code, *frames, server_args=("--ws-echo", "1")):
    """For each byte string: a fresh connection sends it and must be closed with `code`."""
    with Server(*server_args) as s:
        for data in frames:
            ws = WS(s)
            ws.send(data)
            try:
                ws.expect_close(code)
            except AssertionError as e:
                raise AssertionError("%s (sent %r)" % (e, data[:24])) from None


def echo_server(*args):
    return Server("--ws-echo", "1", *args)


# ---- framing -------------------------------------------------------------------------------

def test_unmasked_client_frame_closes_1002():
    fails_with(1002, frame(TEXT, b"hi", mask=False), frame(BINARY, b"", mask=False), frame(PING, b"", mask=False))


def test_rsv_bits_without_extension_close_1002():
    fails_with(1002, *[frame(TEXT, b"hi", rsv=r) for r in (0x40, 0x20, 0x10)], frame(PING, b"", rsv=0x40))


def test_reserved_opcodes_close_1002():
    fails_with(1002, *[frame(op, b"x") for op in list(range(3, 8)) + list(range(0xB, 0x10))])


def test_control_frame_with_126_byte_payload_closes_1002():
    fails_with(1002, frame(PING, b"x" * 126), frame(PONG, b"x" * 126), frame(CLOSE, close_payload(1000, b"r" * 124)))


def test_fragmented_ping_closes_1002():
    fails_with(1002, frame(PING, b"p", fin=False))


def test_continuation_without_start_closes_1002():
    fails_with(1002, frame(CONT, b"x"), frame(CONT, b"x", fin=False))


def test_new_data_frame_inside_fragmented_message_closes_1002():
    fails_with(1002, frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
               frame(BINARY, b"a", fin=False) + frame(BINARY, b"b", fin=False))


def test_7_16_and_64_bit_payload_lengths_echo():
    with echo_server() as s:
        ws = WS(s)
        for n in (0, 1, 125, 126, 127, 65535, 65536, 100000):
            ws.echo(BINARY, os.urandom(n))
        ws.echo(TEXT, b"x" * 65536)
        ws.bye()


def test_64_bit_length_with_msb_set_closes_1002():
    bad = struct.pack("!BBQ", 0x80 | BINARY, 0x80 | 127, (1 << 63) | 5) + os.urandom(4)
    fails_with(1002, bad)


def test_byte_at_a_time_delivery_echoes():
    with echo_server() as s:
        ws = WS(s)
        msg = ("byte by byte \u00e9\u20ac\U0001F600 " * 8).encode()  # 16-bit length form
        data = frame(TEXT, msg[:100], fin=False) + frame(PING, b"p") + frame(CONT, msg[100:])
        for i in range(len(data)):
            ws.send(data[i:i + 1])
        assert ws.recv_frame() == (True, PONG, b"p")
        assert ws.recv_message() == (TEXT, msg)
        ws.bye()


# ---- fragmentation ---------------------------------------------------------------------------

def test_three_fragments_echo_as_one_message():
    with echo_server() as s:
        ws = WS(s)
        ws.send(frame(TEXT, b"Hello, ", fin=False) + frame(CONT, b"fragmented ", fin=False) + frame(CONT, b"world"))
        assert ws.recv_message() == (TEXT, b"Hello, fragmented world")
        ws.send(frame(BINARY, b"\x00", fin=False) + frame(CONT, b"", fin=False) + frame(CONT, b"\xff"))
        assert ws.recv_message() == (BINARY, b"\x00\xff")
        ws.bye()


def test_ping_between_fragments_is_answered_first():
    with echo_server() as s:
        ws = WS(s)
        ws.send(frame(TEXT, b"first ", fin=False) + frame(PING, b"mid-message"))
        assert ws.recv_frame() == (True, PONG, b"mid-message")  # before the message is complete
        ws.send(frame(CONT, b"second ", fin=False) + frame(PING, b"again") + frame(CONT, b"third"))
        assert ws.recv_frame() == (True, PONG, b"again")
        assert ws.recv_message() == (TEXT, b"first second third")
        ws.bye()


def test_close_inside_fragmented_message_is_answered():
    with echo_server() as s:
        ws = WS(s)
        ws.send(frame(TEXT, b"partial", fin=False) + frame(CLOSE, close_payload(1000, b"bye")))
        ws.expect_close(1000, reply=False)


# ---- UTF-8 -----------------------------------------------------------------------------------

def test_valid_utf8_of_every_length_echoes():
    with echo_server() as s:
        ws = WS(s)
        for cp in (0x0, 0x41, 0x7F, 0x80, 0xE9, 0x7FF, 0x800, 0x20AC, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF,
                   0x10000, 0x1F600, 0x10FFFF):
            ws.echo(TEXT, ("<" + chr(cp) + ">").encode())
        ws.echo(TEXT, "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0010FFFF \U0001F600 a\u00e9".encode())
        ws.bye()


INVALID_UTF8 = [b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf",
                b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\x80", b"\xbf",
                b"\xfe", b"\xff", b"\xe2\x28\xa1"]


def test_invalid_utf8_closes_1007():
    fails_with(1007, *[frame(TEXT, b"ok " + bad + b" ok") for bad in INVALID_UTF8])


def test_four_byte_sequence_split_across_fragments_echoes():
    with echo_server() as s:
        ws = WS(s)
        ch = "\U0001F600".encode()
        for cut in (1, 2, 3):
            ws.send(frame(TEXT, b"a" + ch[:cut], fin=False) + frame(CONT, ch[cut:] + b"z"))
            assert ws.recv_message() == (TEXT, b"a" + ch + b"z"), cut
        ws.send(frame(TEXT, ch[:1], fin=False) + frame(CONT, ch[1:2], fin=False) + frame(CONT, ch[2:3], fin=False)
                + frame(CONT, ch[3:]))
        assert ws.recv_message() == (TEXT, ch)
        ws.bye()


def test_truncated_utf8_at_message_end_closes_1007():
    fails_with(1007, frame(TEXT, b"a\xe2\x82"), frame(TEXT, b"a\xf0\x9f\x98"),
               frame(TEXT, b"a\xf0\x9f", fin=False) + frame(CONT, b"\x98"),
               frame(TEXT, b"a", fin=False) + frame(CONT, b"\xc3", fin=False) + frame(CONT, b""))


def test_invalid_utf8_fails_fast_before_the_message_ends():
    with echo_server() as s:
        ws = WS(s)  # a first fragment with FIN=0: the rest of the message is never sent
        ws.send(frame(TEXT, b"valid start \xc0\x80 then more", fin=False))
        ws.expect_close(1007)
        ws = WS(s)  # inside one frame: only 20 of the announced 1000 payload bytes are sent
        key = os.urandom(4)
        ws.send(header(TEXT, 1000, key=key) + apply_mask(key, b"abc\xed\xa0\x80" + b"x" * 14))
        ws.expect_close(1007)


def test_invalid_utf8_in_close_reason_closes_1007():
    fails_with(1007, frame(CLOSE, close_payload(1000, b"bad \xff reason")),
               frame(CLOSE, close_payload(1000, b"cut \xe2\x82")))


# ---- close handshake -------------------------------------------------------------------------

def test_client_close_with_reason_is_echoed_then_tcp_closed():
    with echo_server() as s:
        ws = WS(s)
        ws.send_frame(CLOSE, close_payload(1000, "all done \u2713".encode()))
        ws.expect_close(1000, reply=False)


def test_empty_close_is_answered():
    with echo_server() as s:
        ws = WS(s)
        ws.send_frame(CLOSE, b"")
        ws.expect_close({None, 1000}, reply=False)  # RFC 6455 §5.5.1: no code, or 1000


def test_invalid_close_codes_close_1002():
    codes = (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)
    fails_with(1002, *[frame(CLOSE, close_payload(c)) for c in codes])


def test_valid_close_codes_are_echoed():
    with echo_server() as s:
        for code in list(range(1000, 1004)) + list(range(1007, 1015)) + [3000, 4999]:
            ws = WS(s)
            ws.send_frame(CLOSE, close_payload(code, b"r"))
            try:
                ws.expect_close(code, reply=False)
            except AssertionError as e:
                raise AssertionError("code %d: %s" % (code, e)) from None


def test_one_byte_close_payload_closes_1002():
    fails_with(1002, frame(CLOSE, b"\x03"))


# ---- ping / pong -----------------------------------------------------------------------------

def test_ping_is_answered_with_same_payload():
    with echo_server() as s:
        ws = WS(s)
        for payload in (os.urandom(125), b"", b"x"):
            ws.send_frame(PING, payload)
            assert ws.recv_frame() == (True, PONG, payload)
        ws.bye()


def test_unsolicited_pong_is_ignored():
    with echo_server() as s:
        ws = WS(s)
        ws.send(frame(PONG, b"unsolicited") + frame(PONG, b""))
        ws.echo(TEXT, b"still here")
        ws.bye()


# ---- size limits -----------------------------------------------------------------------------

def test_16_mib_binary_message_echoes_intact():
    with echo_server() as s:
        ws = WS(s)
        payload = os.urandom(16 * MiB)
        ws.send_frame(BINARY, payload)
        op, got = ws.recv_message(timeout=15)
        assert op == BINARY and len(got) == len(payload) and got == payload, (op, len(got))
        ws.bye()


def test_16_mib_plus_one_closes_1009_on_the_header():
    with echo_server() as s:
        ws = WS(s)
        ws.send(header(BINARY, 16 * MiB + 1, key=os.urandom(4)))  # no payload: the header is enough
        ws.expect_close(1009)


def test_max_payload_bounds_fragmented_messages():
    with echo_server("--max-payload", "1000") as s:
        ws = WS(s)
        ws.send(frame(BINARY, b"a" * 400, fin=False) + frame(CONT, b"b" * 600))  # exactly 1000: fine
        assert ws.recv_message() == (BINARY, b"a" * 400 + b"b" * 600)
        ws.bye()
        ws = WS(s)
        ws.send(frame(BINARY, b"a" * 600, fin=False) + header(CONT, 600, key=os.urandom(4)))
        ws.expect_close(1009)  # the second header alone exceeds the limit
        ws = WS(s)
        ws.send(frame(TEXT, b"a" * 600, fin=False) + frame(CONT, b"b" * 600))
        ws.expect_close(1009)


# ---- opening handshake (raw HTTP) ------------------------------------------------------------

def test_handshake_version_8_gets_426():
    with Server() as s:
        sock, status, headers, _ = http_exchange(s, upgrade_request(key=base64.b64encode(os.urandom(16)), version=b"8"))
        sock.close()
        assert status == 426 and headers.get("sec-websocket-version") == "13", (status, headers)


def test_handshake_missing_or_malformed_key_gets_400():
    keys = [None, base64.b64encode(os.urandom(15)), base64.b64encode(os.urandom(17)),
            base64.b64encode(os.urandom(32)), b"!" * 22 + b"==", b""]
    with Server() as s:
        for key in keys:
            sock, status, headers, _ = http_exchange(s, upgrade_request(key=key))
            sock.close()
            assert status == 400 and "sec-websocket-accept" not in headers, (key, status, headers)


def test_handshake_header_tokens_are_case_insensitive_lists():
    with echo_server() as s:
        ws = WS(s, connection=b"keep-alive, Upgrade", upgrade=b"WebSocket")  # WS checks the Accept value
        assert ws.headers.get("upgrade", "").lower() == "websocket", ws.headers
        assert "upgrade" in ws.headers.get("connection", "").lower(), ws.headers
        ws.echo(TEXT, b"accepted")
        ws.bye()
        ws = WS(s, connection=b"upgrade", upgrade=b"WEBSOCKET")
        ws.echo(BINARY, b"\x01")
        ws.bye()


def test_post_with_upgrade_headers_is_a_publish():
    with Server() as s:
        sub = WS(s, "/topics/up")
        s.wait_metric("subscriptions", lambda v: v == 1)
        body = b"posted, not upgraded"
        req = upgrade_request("/topics/up", method="POST", key=base64.b64encode(os.urandom(16)),
                              extra=b"Content-Length: %d\r\n" % len(body)) + body
        sock, status, headers, rest = http_exchange(s, req)
        assert status == 200 and "sec-websocket-accept" not in headers, (status, headers)
        sock.settimeout(TIMEOUT)
        while len(rest) < int(headers["content-length"]):
            chunk = sock.recv(4096)
            assert chunk, rest
            rest += chunk
        assert json.loads(rest)["topic"] == "up", rest
        # crier answers the publish and then closes (Connection: close): the request asked to
        # switch protocols, so the connection is not reused for HTTP, and never upgraded.
        assert headers.get("connection", "").lower() == "close", headers
        assert sock.recv(4096) == b"", "nothing follows the publish's answer"
        sock.close()
        assert sub.recv_message() == (TEXT, body)
        sub.bye()


# ---- normal (publishing) mode ----------------------------------------------------------------

def test_client_message_reaches_every_subscriber_of_the_topic():
    with Server() as s:
        a, b = WS(s, "/topics/t"), WS(s, "/topics/t")
        other = WS(s, "/topics/other")
        s.wait_metric("subscriptions", lambda v: v == 3)
        a.send(frame(TEXT, b"hello \xe2\x82\xac", fin=False) + frame(CONT, b" from a"))
        for ws in (b, a):  # the sender is a subscriber too
            assert ws.recv_message() == (TEXT, "hello \u20ac from a".encode())
        b.send_frame(BINARY, b"\x00\xff\xfe")
        for ws in (a, b):
            assert ws.recv_message() == (BINARY, b"\x00\xff\xfe")
        other.send_frame(TEXT, b"elsewhere")
        assert other.recv_message() == (TEXT, b"elsewhere")
        for ws in (a, b, other):
            ws.send_frame(CLOSE, close_payload(1001))
            ws.expect_close(1001, reply=False)


if __name__ == "__main__":
    run([v for k, v in list(globals().items()) if k.startswith("test_")])
