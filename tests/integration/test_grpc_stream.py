"""examples/grpc_stream: crier's hub behind a gRPC server-streaming front door.

A real crier_grpc_stream_server (HTTP + gRPC on one hub), driven by Python grpcio with stubs
generated here from the example's .proto (protoc --python_out + grpc_python_plugin), by the
example's C++ client, and by plain HTTP (publish, SSE).

Environment:
  CRIER_GRPC_SERVER           crier_grpc_stream_server (required)
  CRIER_GRPC_CLIENT           crier_grpc_client (required)
  CRIER_GRPC_PROTO            the .proto (default: examples/grpc_stream/crier_stream.proto)
  CRIER_PROTOC                protoc (default: from PATH)
  CRIER_GRPC_PYTHON_PLUGIN    grpc_python_plugin (default: from PATH)
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from crierlib import SSEStream, run

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.environ.get("CRIER_GRPC_SERVER")
CLIENT = os.environ.get("CRIER_GRPC_CLIENT")
PROTO = os.environ.get("CRIER_GRPC_PROTO") or os.path.join(HERE, "..", "..", "examples", "grpc_stream",
                                                           "crier_stream.proto")


def _generate_stubs():
    protoc = os.environ.get("CRIER_PROTOC") or shutil.which("protoc")
    plugin = os.environ.get("CRIER_GRPC_PYTHON_PLUGIN") or shutil.which("grpc_python_plugin")
    if not (SERVER and CLIENT and protoc and plugin):
        raise SystemExit("need CRIER_GRPC_SERVER, CRIER_GRPC_CLIENT, protoc and grpc_python_plugin")
    out = tempfile.mkdtemp(prefix="crier-grpc-stubs-")
    proto = os.path.abspath(PROTO)
    subprocess.run([protoc, "-I", os.path.dirname(proto), "--python_out=" + out, "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=" + plugin, proto], check=True)
    sys.path.insert(0, out)
    import crier_stream_pb2
    import crier_stream_pb2_grpc
    return out, crier_stream_pb2, crier_stream_pb2_grpc


STUBS_DIR, pb, pb_grpc = _generate_stubs()
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]
# A client that does not read: no BDP probing, so gRPC's flow-control window stays small and
# the server's write stalls after a few hundred KiB instead of several MiB.
SLOW_OPTIONS = CHANNEL_OPTIONS + [("grpc.http2.bdp_probe", 0)]


class GrpcServer:
    def __init__(self, *args):
        # Two threads run the io_context: the hub's strand, not a single thread, keeps order.
        self.proc = subprocess.Popen([SERVER, "--listen", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--threads", "2",
                                      *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        http = self.proc.stdout.readline()
        g = self.proc.stdout.readline()
        m = re.search(r"http://([\d.]+):(\d+)/", http)
        mg = re.search(r"grpc listening on ([\d.]+):(\d+)", g)
        if not (m and mg):
            self.proc.kill()
            raise RuntimeError("server did not start: %r %r %s" % (http, g, self.proc.stderr.read()))
        self.host, self.port = m.group(1), int(m.group(2))  # for crierlib's SSEStream
        self.url = "http://%s:%d" % (self.host, self.port)
        self.target = "%s:%s" % (mg.group(1), mg.group(2))
        self.channels = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        for c in self.channels:
            c.close()
        rc = self.stop()
        if exc_type is None:  # a clean exit after every test: status 0, no sanitizer report
            err = self.proc.stderr.read()
            assert rc == 0 and "Sanitizer" not in err and "runtime error" not in err, (rc, err[-3000:])
            out = self.proc.stdout.read()
            assert "crier stopped" in out, out

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server did not stop within %ss" % timeout)
        return self.proc.returncode

    def stub(self, options=CHANNEL_OPTIONS):
        ch = grpc.insecure_channel(self.target, options=options)
        self.channels.append(ch)
        return pb_grpc.CrierStub(ch)

    def http_publish(self, topic, data):
        req = urllib.request.Request(self.url + "/topics/" + topic, data=data.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["id"]


def subscribe(stub, topics, since="", policy=0, timeout=30):
    """Starts a Subscribe call and waits until it is live (initial metadata: crier-cursor)."""
    call = stub.Subscribe(pb.SubscribeRequest(topics=topics, since=since, policy=policy), timeout=timeout)
    md = dict(call.initial_metadata())
    assert "crier-cursor" in md, md
    return call, md["crier-cursor"]


def take(call, n):
    out = []
    for m in call:
        out.append(m)
        if len(out) == n:
            break
    return out


def drain(call):
    """Every item until the stream ends; returns (items, status code, details, trailing cursor)."""
    items = []
    try:
        for m in call:
            items.append(m)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        code, details = e.code(), e.details()
    cursor = dict(call.trailing_metadata() or ()).get("crier-cursor", "")
    return items, code, details, cursor


def seq_of(id_):
    return int(id_.split(":")[1])


# ---------------------------------------------------------------------------------------------

def test_messages_in_order_with_ids():
    with GrpcServer() as s:
        stub = s.stub()
        call, start = subscribe(stub, ["orders/eu"])
        assert start == ""  # a topic with no history yet
        ids = [s.http_publish("orders/eu", "m%d" % i) for i in range(50)]  # over HTTP
        r = stub.Publish(pb.PublishRequest(topic="orders/eu", payload=b"\x00\xffbin", event="tick",
                                           content_type="application/octet-stream"))
        ids.append(r.id)
        got = take(call, 51)
        call.cancel()
        assert [m.id for m in got] == ids
        assert [m.seq for m in got] == list(range(1, 52))
        assert [m.payload for m in got[:50]] == [("m%d" % i).encode() for i in range(50)]
        assert got[50].payload == b"\x00\xffbin" and got[50].event == "tick"
        assert got[50].content_type == "application/octet-stream"
        assert all(m.topic == "orders/eu" and not m.HasField("gap") for m in got)
        assert re.fullmatch(r"[0-9a-f]{8}:1", got[0].id)


def test_publish_over_grpc_reaches_sse_and_grpc_and_bad_requests_are_refused():
    with GrpcServer() as s:
        stub = s.stub()
        sse = SSEStream(s, "/topics/news/%2A")  # pattern news/*
        call, _ = subscribe(stub, ["news/*"])
        a = stub.Publish(pb.PublishRequest(topic="news/a", payload=b"A"))
        b = stub.Publish(pb.PublishRequest(topic="news/b", payload=b"B"))
        got = take(call, 2)
        call.cancel()
        assert [(m.topic, m.id, m.payload) for m in got] == [("news/a", a.id, b"A"), ("news/b", b.id, b"B")]
        ev = sse.wait_events(2)
        # A pattern stream: SSE data is crier's JSON envelope, with the same ids.
        assert [(json.loads(e["data"])["data"], json.loads(e["data"])["id"]) for e in ev] == [("A", a.id), ("B", b.id)]
        sse.close()
        for req, what in [(pb.SubscribeRequest(topics=["ok"], since="nonsense"), "since"),
                          (pb.SubscribeRequest(topics=[]), "topics"),
                          (pb.SubscribeRequest(topics=["bad//topic"]), "topic"),
                          (pb.SubscribeRequest(topics=["a", "b"], since="0000abcd:3"), "bare id, two topics")]:
            items, code, details, _ = drain(stub.Subscribe(req, timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and not items, (what, code, details)
        try:
            stub.Publish(pb.PublishRequest(topic="", payload=b"x"))
            raise AssertionError("empty topic published")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e


def test_resume_with_since_after_reconnect():
    with GrpcServer() as s:
        stub = s.stub()
        call, _ = subscribe(stub, ["r/1"])
        ids = [stub.Publish(pb.PublishRequest(topic="r/1", payload=b"%d" % i)).id for i in range(10)]
        got = take(call, 4)
        call.cancel()  # the client goes away after 4
        last = got[-1].id
        assert last == ids[3]
        ids += [stub.Publish(pb.PublishRequest(topic="r/1", payload=b"%d" % i)).id for i in range(10, 15)]
        # Reconnect with since = the last id seen: exactly the missed ones, then live ones.
        call, start = subscribe(stub, ["r/1"], since=last)
        assert start == "r/1=" + last
        ids.append(stub.Publish(pb.PublishRequest(topic="r/1", payload=b"live")).id)
        got2 = take(call, 12)
        call.cancel()
        assert [m.id for m in got2] == ids[4:]
        # "0": everything the history holds; a cursor list for several topics / patterns.
        call, _ = subscribe(stub, ["r/1"], since="0")
        assert [m.id for m in take(call, 16)] == ids
        call.cancel()
        x = stub.Publish(pb.PublishRequest(topic="r/2", payload=b"x")).id
        y = stub.Publish(pb.PublishRequest(topic="r/2", payload=b"y")).id
        call, _ = subscribe(stub, ["r/*"], since="r/1=%s,r/2=%s" % (ids[13], x))
        got3 = take(call, 3)
        call.cancel()
        assert [(m.topic, m.id) for m in got3] == [("r/1", ids[14]), ("r/1", ids[15]), ("r/2", y)]
        # Another epoch (e.g. the server restarted): a reset gap, then what the history holds.
        call, _ = subscribe(stub, ["r/2"], since="0badbeef:7")
        got4 = take(call, 3)
        call.cancel()
        assert got4[0].HasField("gap") and got4[0].gap.reason == "reset", got4[0]
        assert [m.id for m in got4[1:]] == [x, y]


def test_concurrent_publishers_over_grpc_and_http_one_order():
    with GrpcServer() as s:
        stub = s.stub()
        call, _ = subscribe(stub, ["many"])
        ids, lock = [], threading.Lock()

        def grpc_pub(k):
            for i in range(100):
                r = stub.Publish(pb.PublishRequest(topic="many", payload=b"g%d-%d" % (k, i)))
                with lock:
                    ids.append(r.id)

        def http_pub(k):
            for i in range(50):
                r = s.http_publish("many", "h%d-%d" % (k, i))
                with lock:
                    ids.append(r)

        threads = [threading.Thread(target=grpc_pub, args=(k,)) for k in range(4)]
        threads += [threading.Thread(target=http_pub, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = take(call, 500)
        call.cancel()
        # Publishes from gRPC's threads and the HTTP server race; the stream is still one
        # order: seq 1..500, each id exactly once, each publisher's own messages in order.
        assert [m.seq for m in got] == list(range(1, 501))
        assert sorted(m.id for m in got) == sorted(ids)
        for k in range(4):
            mine = [m.payload for m in got if m.payload.startswith(b"g%d-" % k)]
            assert mine == [b"g%d-%d" % (k, i) for i in range(100)]


def _fill(stub, topic, n, size, topics=None):
    """Publishes n messages of `size` bytes (round-robin over `topics` if given) over gRPC."""
    pad = b"p" * size
    ids = []
    for i in range(n):
        t = topics[i % len(topics)] if topics else topic
        ids.append((t, stub.Publish(pb.PublishRequest(topic=t, payload=b"%06d" % i + pad)).id))
    return ids


def test_slow_consumer_disconnect_then_resume_loses_nothing():
    with GrpcServer("--grpc-queue-messages", "32") as s:
        stub = s.stub()
        sse = SSEStream(s, "/topics/slow")  # another subscriber (HTTP, default queue) is not held back
        slow, _ = subscribe(s.stub(SLOW_OPTIONS), ["slow"], policy=pb.DISCONNECT)
        ids = [i for _, i in _fill(stub, "slow", 600, 16 * 1024)]  # ~10 MB: far past gRPC's window
        items, code, details, cursor = drain(slow)  # now read: what was in flight, then the status
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert "queue overflow" in details
        assert 0 < len(items) < 600
        assert [m.id for m in items] == ids[:len(items)]  # in order, nothing skipped before the end
        assert cursor == "slow=" + items[-1].id
        # Resume from the trailer's cursor: the rest, from the history; nothing lost.
        again, _ = subscribe(s.stub(), ["slow"], since=cursor)
        rest = take(again, 600 - len(items))
        again.cancel()
        assert [m.id for m in items + rest] == ids
        assert len(sse.wait_events(600, timeout=30)) == 600
        sse.close()


def test_slow_consumer_conflate_keeps_newest_per_topic():
    topics = ["c/%d" % i for i in range(4)]
    with GrpcServer("--grpc-queue-messages", "32") as s:
        stub = s.stub()
        slow, _ = subscribe(s.stub(SLOW_OPTIONS), ["c/*"], policy=pb.CONFLATE)
        pub = _fill(stub, None, 800, 16 * 1024, topics)
        last = {t: i for t, i in pub}
        stub.Publish(pb.PublishRequest(topic="c/end", payload=b"end"))
        items = []
        for m in slow:
            items.append(m)
            if m.topic == "c/end":
                break
        slow.cancel()
        msgs = [m for m in items if not m.HasField("gap")]
        gaps = [m for m in items if m.HasField("gap")]
        assert gaps and all(g.gap.reason == "conflated" for g in gaps), gaps[:3]
        assert len(msgs) < 800
        # Per topic: the last message is the newest; every skip is announced by a gap whose
        # after/next match the messages around it, and messages + skipped = published.
        for t in topics:
            seen = [m for m in items if m.topic == t]
            ms = [m for m in seen if not m.HasField("gap")]
            assert ms[-1].id == last[t], (t, ms[-1].id, last[t])
            prev = 0
            skipped = 0
            for m in seen:
                if m.HasField("gap"):
                    assert seq_of(m.gap.after) == prev and m.gap.missed == seq_of(m.gap.next) - prev - 1
                    skipped += m.gap.missed
                    prev = seq_of(m.gap.next) - 1
                else:
                    assert m.seq == prev + 1, (t, m.seq, prev)
                    prev = m.seq
            assert len(ms) + skipped == 200


def test_slow_consumer_drop_oldest_reports_overflow_gaps():
    with GrpcServer("--grpc-queue-messages", "32") as s:
        stub = s.stub()
        slow, _ = subscribe(s.stub(SLOW_OPTIONS), ["d"], policy=pb.DROP_OLDEST)
        ids = [i for _, i in _fill(stub, "d", 600, 16 * 1024)]
        items = []
        for m in slow:
            items.append(m)
            if m.id == ids[-1]:
                break
        slow.cancel()
        gaps = [m for m in items if m.HasField("gap")]
        msgs = [m for m in items if not m.HasField("gap")]
        assert gaps and all(g.gap.reason == "overflow" for g in gaps)
        assert len(msgs) + sum(g.gap.missed for g in gaps) == 600
        prev = 0
        for m in items:
            if m.HasField("gap"):
                assert seq_of(m.gap.after) == prev
                prev = seq_of(m.gap.next) - 1
            else:
                assert m.seq == prev + 1
                prev = m.seq


def test_cpp_client_resumes_through_overflow():
    with GrpcServer("--grpc-queue-messages", "32") as s:
        stub = s.stub()
        proc = subprocess.Popen([CLIENT, "--target", s.target, "--topic", "cpp", "--policy", "disconnect",
                                 "--resume", "--count", "400", "--start-delay-ms", "1500", "--no-bdp-probe"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = json.loads(proc.stdout.readline())
        assert first == {"type": "subscribed", "cursor": ""}, first
        ids = [i for _, i in _fill(stub, "cpp", 400, 16 * 1024)]
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        lines = [json.loads(l) for l in out.splitlines()]
        msgs = [l for l in lines if l["type"] == "message"]
        ends = [l for l in lines if l["type"] == "end"]
        assert [m["id"] for m in msgs] == ids  # every one, in order, across the reconnects
        assert ends and ends[0]["status"] == "RESOURCE_EXHAUSTED", ends
        # The C++ client's publish mode.
        r = subprocess.run([CLIENT, "--target", s.target, "--publish", "cpp", "hello"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and json.loads(r.stdout)["id"].endswith(":401"), r.stdout


def test_clean_shutdown_ends_streams_with_unavailable():
    s = GrpcServer("--grpc-finish-ms", "1000")
    try:
        stub = s.stub()
        live, _ = subscribe(stub, ["bye"])
        stuck, _ = subscribe(s.stub(SLOW_OPTIONS), ["bye"])  # a client that never reads
        ids = [i for _, i in _fill(stub, "bye", 100, 16 * 1024)]
        got = take(live, 100)
        assert [m.id for m in got] == ids
        result = {}
        t = threading.Thread(target=lambda: result.update(zip(("items", "code", "details", "cursor"), drain(live))))
        t.start()
        start = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(15)
        took = time.monotonic() - start
        t.join(10)
        assert rc == 0, s.proc.stderr.read()
        assert took < 10, took
        assert result["code"] == grpc.StatusCode.UNAVAILABLE and "server stopping" in result["details"], result
        assert result["cursor"] == "bye=" + ids[-1]
        out = s.proc.stdout.read()
        assert "crier stopped" in out, out
        assert "1 finish timeouts" in out, out  # the client that never read was cancelled
        err = s.proc.stderr.read()
        assert "Sanitizer" not in err and "runtime error" not in err, err
        stuck.cancel()
    finally:
        for c in s.channels:
            c.close()
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


if __name__ == "__main__":
    try:
        run([
            test_messages_in_order_with_ids,
            test_publish_over_grpc_reaches_sse_and_grpc_and_bad_requests_are_refused,
            test_resume_with_since_after_reconnect,
            test_concurrent_publishers_over_grpc_and_http_one_order,
            test_slow_consumer_disconnect_then_resume_loses_nothing,
            test_slow_consumer_conflate_keeps_newest_per_topic,
            test_slow_consumer_drop_oldest_reports_overflow_gaps,
            test_cpp_client_resumes_through_overflow,
            test_clean_shutdown_ends_streams_with_unavailable,
        ])
    finally:
        shutil.rmtree(STUBS_DIR, ignore_errors=True)
