#!/usr/bin/python3
"""Self-test for crier_bench_sse_fanout's parsers and accounting.

Starts a tiny SSE server on 127.0.0.1 that frames every event awkwardly
(chunked transfer encoding with 1-7 byte chunks and chunk extensions, CRLF /
CR / LF line ends, comments, retry:, id:, data split over reads), optionally
injects one drop, one duplicate and one swap on subscriber 0, runs the client
against it and checks the report.  Bounded: about 10 s.

    bench/sse_selftest.py build-bench/bench/crier_bench_sse_fanout
"""
import asyncio, json, random, subprocess, sys

CLIENT = sys.argv[1] if len(sys.argv) > 1 else "build-bench/bench/crier_bench_sse_fanout"
SUBS, COUNT = 50, 200


def chunked(data: bytes, rnd: random.Random) -> bytes:
    out, i = [], 0
    while i < len(data):
        n = rnd.randint(1, 7)
        ext = b";x=1" if rnd.random() < 0.1 else b""
        out.append(b"%x%s\r\n%s\r\n" % (len(data[i:i + n]), ext, data[i:i + n]))
        i += n
    return b"".join(out)


class Server:
    def __init__(self, fault: bool):
        self.subs = []  # (writer, index)
        self.n = 0
        self.fault = fault
        self.rnd = random.Random(7)

    def event(self, seq: int, body: bytes) -> bytes:
        eol = [b"\n", b"\r\n", b"\r"][seq % 3]
        extra = b": keep-alive" + eol + eol if seq % 5 == 0 else b""
        return extra + b"id: 1:" + str(seq).encode() + eol + b"data: " + body + eol + eol

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0]
                method = line.split(b" ")[0]
                if method == b"GET":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
                    writer.write(chunked(b"retry: 2000\n: hello\n\n", self.rnd))
                    self.subs.append((writer, len(self.subs)))
                    await writer.drain()
                    await reader.read()  # hold until the client closes
                    return
                cl = 0
                for h in head.split(b"\r\n"):
                    if h.lower().startswith(b"content-length:"):
                        cl = int(h.split(b":")[1])
                body = await reader.readexactly(cl)
                self.n += 1
                seq = self.n
                for w, idx in self.subs:
                    ev = self.event(seq, body)
                    if self.fault and idx == 0:
                        if seq == 5:
                            continue                      # drop
                        if seq == 7:
                            ev = ev + ev                  # duplicate
                        if seq == 10:
                            self.held = ev                # swap 10 and 11
                            continue
                        if seq == 11:
                            ev = ev + self.held
                    w.write(chunked(ev, self.rnd))
                resp = b'{"id":"1:%d"}' % seq
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(resp), resp))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def run(fault: bool) -> dict:
    srv = Server(fault)
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/topics/{{topic}}"
    proc = await asyncio.create_subprocess_exec(
        CLIENT, "--sub-url", url, "--pub-url", url, "--subs", str(SUBS), "--count", str(COUNT),
        "--rate", "2000", "--drain", "1", "--max-seconds", "10", "--quiet",
        stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    server.close()
    return json.loads(out)


def check(name, cond):
    print(("PASS " if cond else "FAIL ") + name)
    return cond


def main():
    ok = True
    r = asyncio.run(run(False))
    ok &= check("clean: exact", r["exact"] and r["delivered"] == SUBS * COUNT)
    ok &= check("clean: every event had an id", r["events_with_id"] == SUBS * COUNT)
    ok &= check("clean: no protocol errors / unparsed", r["protocol_errors"] == 0 and r["events_unparsed"] == 0)
    r = asyncio.run(run(True))
    ok &= check(f"fault: lost 1 (got {r['lost']})", r["lost"] == 1)
    ok &= check(f"fault: duplicated 1 (got {r['duplicated']})", r["duplicated"] == 1)
    ok &= check(f"fault: reordered 1 (got {r['reordered']})", r["reordered"] == 1)
    ok &= check("fault: not exact", not r["exact"])
    sys.exit(0 if ok else 1)


main()
