"""Webhooks: the REST hooks API and ordered, retried, signed delivery, against a real
receiver (Python's http.server on loopback) and the npm `standardwebhooks` verifier."""
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from crierlib import Server, run

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER = os.path.join(HERE, "..", "browser")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """Records every request; answers from a script: a function (n, body) -> (status, headers)."""

    def __init__(self, script=None, on_get=None, before=None):
        self.before = before or (lambda n: None)  # called first, outside the lock (it may block)
        self.requests = []
        self.gets = []
        self.arrived = 0
        self.on_get = on_get or (lambda query: (404, b""))
        self.cond = threading.Condition()
        self.script = script or (lambda n, body: (200, {}))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.cond:
                    arrived = outer.arrived
                    outer.arrived += 1
                outer.before(arrived)
                with outer.cond:
                    n = len(outer.requests)
                    status, headers = outer.script(n, body)
                    outer.requests.append({"t": time.monotonic(), "headers": dict(self.headers),
                                           "body": body, "status": status, "path": self.path})
                    outer.cond.notify_all()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # noqa: N802
                from urllib.parse import parse_qs, urlparse
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                status, body = outer.on_get(query)
                with outer.cond:
                    outer.gets.append(query)
                    outer.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.requests):
                left = deadline - time.monotonic()
                assert left > 0, "receiver: condition not met; got %d requests" % len(self.requests)
                self.cond.wait(left)
            return list(self.requests)

    def ok_bodies(self):
        return [r["body"] for r in self.requests if 200 <= r["status"] < 300]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def api(s, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    status, headers, raw = s.request(method, path, body=data, headers={"Content-Type": "application/json"})
    return status, headers, (json.loads(raw) if raw else None)


def create(s, **spec):
    status, headers, body = api(s, "POST", "/api/v1/subscriptions", spec)
    assert status == 201, (status, body)
    assert headers.get("Location") == "/api/v1/subscriptions/" + body["id"], headers
    return body["id"]


def test_rest_api_create_get_list_update_delete_and_errors():
    with Server("--webhook-allow", "127.0.0.0/8") as s:
        sid = create(s, target_url="http://127.0.0.1:9/a", topics=["t/1"], secret=SECRET)
        status, _, one = api(s, "GET", "/api/v1/subscriptions/" + sid)
        assert status == 200 and one["topics"] == ["t/1"] and one["signed"] is True, one
        assert SECRET not in json.dumps(one) and "secret" not in one, one  # never returned
        ids = [sid] + [create(s, target_url="http://127.0.0.1:9/%d" % i, topics=["t/1"]) for i in range(4)]
        _, _, page = api(s, "GET", "/api/v1/subscriptions?limit=2")
        seen = [x["id"] for x in page["data"]]
        while page["next"]:
            _, _, page = api(s, "GET", "/api/v1/subscriptions?limit=2&after=" + page["next"])
            seen += [x["id"] for x in page["data"]]
        assert sorted(seen) == sorted(ids) and len(seen) == 5, seen
        status, _, upd = api(s, "PUT", "/api/v1/subscriptions/" + sid,
                             {"target_url": "http://127.0.0.1:9/b", "topics": ["t/*"], "ordered": False})
        assert status == 200 and upd["topics"] == ["t/*"] and upd["ordered"] is False, upd
        assert upd["signed"] is True, upd  # PUT without a secret keeps it
        cases = [
            ({"topics": ["a"]}, 422, "target_url"),
            ({"target_url": "ftp://x/", "topics": ["a"]}, 422, "target_url"),
            ({"target_url": "http://u:p@127.0.0.1/", "topics": ["a"]}, 422, "target_url"),
            ({"target_url": "http://127.0.0.1:9/", "topics": []}, 422, "topics"),
            ({"target_url": "http://127.0.0.1:9/", "topics": ["a b"]}, 422, "topics"),
            ({"target_url": "http://127.0.0.1:9/", "topics": ["a"], "secret": "nope"}, 422, "secret"),
            ({"target_url": "http://127.0.0.1:9/", "topics": ["a"], "ordered": "yes"}, 422, "ordered"),
            ({"target_url": "http://127.0.0.1:9/", "topics": ["a"], "retry_schedule_ms": [-1]}, 422,
             "retry_schedule_ms"),
            ({"target_url": "http://127.0.0.1:9/", "topics": ["a"], "since": "x"}, 422, "since"),
            ({"target_url": "http://127.0.0.1:9/", "topics": ["a"], "batch_max": 0}, 422, "batch_max"),
            ({"target_url": "http://127.0.0.1:9/", "topics": ["a"], "batch_max": 2.5}, 422, "batch_max"),
        ]
        for spec, code, field in cases:
            status, _, err = api(s, "POST", "/api/v1/subscriptions", spec)
            assert status == code and err["error"]["field"] == field, (spec, status, err)
        status, _, err = api(s, "POST", "/api/v1/subscriptions", {"target_url": "http://127.0.0.1:9/b",
                                                                 "topics": ["t/*"]})
        assert status == 409, (status, err)
        status, _, _ = s.request("POST", "/api/v1/subscriptions", body=b"{not json")
        assert status == 400
        assert api(s, "GET", "/api/v1/subscriptions/sub_nope")[0] == 404
        assert api(s, "PATCH", "/api/v1/subscriptions/" + sid)[0] == 405
        assert api(s, "DELETE", "/api/v1/subscriptions/" + sid)[0] == 204
        assert api(s, "GET", "/api/v1/subscriptions/" + sid)[0] == 404


def test_order_holds_across_failures_and_retries():
    # Message 0 fails twice (500, then a timeout-like 503), message 2 fails once.
    plan = {0: [500, 503], 2: [500]}
    tries = {}

    def script(n, body):
        i = int(body)
        k = tries.get(i, 0)
        tries[i] = k + 1
        codes = plan.get(i, [])
        return (codes[k] if k < len(codes) else 200), {}

    rx = Receiver(script)
    try:
        with Server("--webhook-allow", "127.0.0.0/8") as s:
            create(s, target_url=rx.url, topics=["ord"], retry_schedule_ms=[0, 30, 30, 30])
            for i in range(6):
                s.publish("ord", str(i))
            reqs = rx.wait(lambda r: len([x for x in r if x["status"] == 200]) == 6)
            assert rx.ok_bodies() == [str(i).encode() for i in range(6)], rx.ok_bodies()
            # No message was sent before the previous one succeeded: requests are in order.
            sent = [int(r["body"]) for r in reqs]
            assert sent == sorted(sent), sent
            assert sent.count(0) == 3 and sent.count(2) == 2, sent
            ids = [r["headers"]["webhook-id"] for r in reqs if int(r["body"]) == 0]
            assert len(set(ids)) == 1, ids  # the same id on every attempt: receivers deduplicate
    finally:
        rx.close()


def test_retry_after_is_honoured():
    rx = Receiver(lambda n, body: (429, {"Retry-After": "1"}) if n == 0 else (200, {}))
    try:
        with Server("--webhook-allow", "127.0.0.0/8") as s:
            create(s, target_url=rx.url, topics=["ra"], retry_schedule_ms=[0, 10, 10])
            s.publish("ra", "x")
            reqs = rx.wait(lambda r: len(r) == 2)
            assert reqs[1]["t"] - reqs[0]["t"] >= 0.95, reqs[1]["t"] - reqs[0]["t"]
    finally:
        rx.close()


def test_410_gone_ends_the_subscription():
    rx = Receiver(lambda n, body: (410, {}))
    try:
        with Server("--webhook-allow", "127.0.0.0/8") as s:
            sid = create(s, target_url=rx.url, topics=["gone"])
            s.publish("gone", "x")
            rx.wait(lambda r: len(r) == 1)
            deadline = time.monotonic() + 5
            while api(s, "GET", "/api/v1/subscriptions/" + sid)[0] != 404:
                assert time.monotonic() < deadline, "still subscribed after 410"
                time.sleep(0.02)  # polling the API: there is no event to wait on from outside
            s.publish("gone", "y")
            assert len(rx.requests) == 1
    finally:
        rx.close()


def test_dead_letters_are_listed_and_replayed_in_order():
    healthy = threading.Event()
    rx = Receiver(lambda n, body: (200, {}) if healthy.is_set() else (500, {}))
    try:
        with Server("--webhook-allow", "127.0.0.0/8") as s:
            sid = create(s, target_url=rx.url, topics=["dl"], retry_schedule_ms=[0, 10])
            for i in range(2):  # 2 x 2 failures: under the 5 that open the endpoint's breaker
                s.publish("dl", "d%d" % i)
            rx.wait(lambda r: len(r) == 4)
            deadline = time.monotonic() + 5
            while True:
                _, _, dead = api(s, "GET", "/api/v1/subscriptions/%s/dead_letters" % sid)
                if len(dead["data"]) == 2:
                    break
                assert time.monotonic() < deadline, dead
                time.sleep(0.02)
            assert [d["attempts"] for d in dead["data"]] == [2, 2], dead
            assert all(d["last_error"] == "HTTP 500" for d in dead["data"]), dead
            healthy.set()
            status, _, body = api(s, "POST", "/api/v1/subscriptions/%s/dead_letters/replay" % sid)
            assert status == 202 and body["replayed"] == 2, body
            s.publish("dl", "d2")  # replays go ahead of new messages
            rx.wait(lambda r: len(rx.ok_bodies()) == 3)
            assert rx.ok_bodies() == [b"d0", b"d1", b"d2"]
            _, _, dead = api(s, "GET", "/api/v1/subscriptions/%s/dead_letters" % sid)
            assert dead["data"] == [], dead
    finally:
        rx.close()


def test_signatures_verify_with_the_standardwebhooks_package():
    rx = Receiver()
    try:
        with Server("--webhook-allow", "127.0.0.0/8") as s:
            create(s, target_url=rx.url, topics=["sig"], secret=SECRET)
            # verify() also JSON.parse()s the body, so the bodies are JSON.
            bodies = ['{"n":1}', '{"s":"plain text é"}', '{"x":"%s"}' % ("x" * 5000)]
            for b in bodies:
                s.publish("sig", b.encode())
            reqs = rx.wait(lambda r: len(r) == 3)
        lines = "\n".join(json.dumps({"headers": {k.lower(): v for k, v in r["headers"].items()},
                                      "body": r["body"].decode()}) for r in reqs)
        script = ("import fs from 'fs'; import {Webhook} from 'standardwebhooks';"
                  "const wh = new Webhook(process.argv[1].slice(6)); let ok = 0, bad = 0;"
                  "for (const l of fs.readFileSync(0, 'utf8').split('\\n').filter(Boolean)) {"
                  "  const r = JSON.parse(l);"
                  "  try { wh.verify(r.body, r.headers); ok++ } catch (e) { bad++; console.error(e.message) }"
                  "  try { wh.verify(r.body + '!', r.headers); bad++ } catch (e) { ok++ } }"
                  "console.log(JSON.stringify({ok, bad}));")
        p = subprocess.run(["node", "--input-type=module", "-e", script, SECRET],
                           input=lines, capture_output=True, text=True, cwd=BROWSER, timeout=60)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout) == {"ok": 6, "bad": 0}, p.stdout
    finally:
        rx.close()


def test_private_targets_are_refused_by_default():
    rx = Receiver()
    try:
        with Server() as s:  # no --webhook-allow: loopback is refused
            sid = create(s, target_url=rx.url, topics=["ssrf"], retry_schedule_ms=[0])
            s.publish("ssrf", "x")
            deadline = time.monotonic() + 5
            while True:
                _, _, dead = api(s, "GET", "/api/v1/subscriptions/%s/dead_letters" % sid)
                if dead["data"]:
                    break
                assert time.monotonic() < deadline, dead
                time.sleep(0.02)
            assert "refused" in dead["data"][0]["last_error"], dead
            assert rx.requests == []
    finally:
        rx.close()


def test_verification_of_intent_holds_deliveries_until_the_challenge_is_echoed():
    release = threading.Event()

    def on_get(q):
        release.wait(10)  # answer only once the test has published
        return 200, q["crier.challenge"].encode()

    rx = Receiver(on_get=on_get)
    try:
        with Server("--webhook-allow", "127.0.0.0/8") as s:
            sid = create(s, target_url=rx.url, topics=["vi"], verify=True)
            assert api(s, "GET", "/api/v1/subscriptions/" + sid)[2]["status"] == "verifying"
            s.publish("vi", "early")  # published while verifying: held, not lost
            assert rx.requests == []
            release.set()
            rx.wait(lambda r: len(r) == 1)
            assert rx.requests[0]["body"] == b"early"
            assert rx.gets[0]["crier.subscription"] == sid, rx.gets
            assert api(s, "GET", "/api/v1/subscriptions/" + sid)[2]["status"] == "active"
    finally:
        rx.close()

    wrong = Receiver(on_get=lambda q: (200, b"not the challenge"))
    try:
        with Server("--webhook-allow", "127.0.0.0/8") as s:
            sid = create(s, target_url=wrong.url, topics=["vi"], verify=True)
            s.publish("vi", "x")
            wrong.wait(lambda r: len(wrong.gets) == 1)
            deadline = time.monotonic() + 5
            while api(s, "GET", "/api/v1/subscriptions/" + sid)[0] != 404:
                assert time.monotonic() < deadline, "a failed verification left the subscription"
                time.sleep(0.02)
            assert wrong.requests == []  # nothing was delivered
    finally:
        wrong.close()


def test_batching_sends_what_queued_as_one_json_array():
    first_arrived, release = threading.Event(), threading.Event()

    def before(n):
        if n == 0:
            first_arrived.set()
            release.wait(10)  # hold the first delivery while more messages queue behind it

    rx = Receiver(before=before)
    try:
        with Server("--webhook-allow", "127.0.0.0/8") as s:
            sid = create(s, target_url=rx.url, topics=["bt/*"], batch_max=3, secret=SECRET)
            assert api(s, "GET", "/api/v1/subscriptions/" + sid)[2]["batch_max"] == 3
            s.publish("bt/a", "m0")
            assert first_arrived.wait(10)
            for i in range(1, 6):
                s.publish("bt/a" if i % 2 else "bt/b", "m%d" % i)
            release.set()
            reqs = rx.wait(lambda r: sum(len(json.loads(x["body"])) for x in r) == 6)
        batches = [json.loads(r["body"]) for r in reqs]
        # One in flight; then the five queued behind it in batches of at most three, in order.
        assert [len(b) for b in batches] == [1, 3, 2], batches
        assert [e["data"] for b in batches for e in b] == ["m%d" % i for i in range(6)], batches
        assert [e["topic"] for e in batches[1]] == ["bt/a", "bt/b", "bt/a"], batches
        ids = [e["id"] for b in batches for e in b]
        assert len(set(ids)) == 6, ids  # envelope ids: what batch receivers deduplicate on
        for r in reqs:
            h = {k.lower(): v for k, v in r["headers"].items()}
            assert h["content-type"] == "application/json" and h["crier-event"] == "batch", h
            assert h["webhook-signature"].startswith("v1,"), h
    finally:
        rx.close()


if __name__ == "__main__":
    run([
        test_rest_api_create_get_list_update_delete_and_errors,
        test_order_holds_across_failures_and_retries,
        test_retry_after_is_honoured,
        test_410_gone_ends_the_subscription,
        test_dead_letters_are_listed_and_replayed_in_order,
        test_signatures_verify_with_the_standardwebhooks_package,
        test_private_targets_are_refused_by_default,
        test_verification_of_intent_holds_deliveries_until_the_challenge_is_echoed,
        test_batching_sends_what_queued_as_one_json_array,
    ])
