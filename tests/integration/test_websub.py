"""WebSub hub (POST /websub) and rssCloud (POST /pleaseNotify) against real subscribers:
Python http.server receivers on loopback that answer verification GETs, serve topic URLs
and record every request. Signatures are checked by hand with hmac."""
import hashlib
import hmac
import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlencode, urlparse

from crierlib import Server, run

ALLOW = ("--webhook-allow", "127.0.0.0/8")
FORM = "application/x-www-form-urlencoded"
ATOM = b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>'


def echo(path, query):
    """A well-behaved subscriber: echoes WebSub and rssCloud challenges, accepts the rest."""
    if query.get("hub.mode") in ("subscribe", "unsubscribe") and "hub.challenge" in query:
        return 200, query["hub.challenge"].encode(), {}
    if "challenge" in query:
        return 200, query["challenge"].encode(), {}
    return 200, b"", {}


class Receiver:
    """Records every GET (path + query) and POST (path, lower-cased headers, body).
    on_get(path, query) -> (status, body, headers); on_post(path, headers, body) -> status.
    A request is recorded before it is answered, so once the hub has an answer it is recorded."""

    def __init__(self, on_get=None, on_post=None):
        self.gets = []
        self.posts = []
        self.cond = threading.Condition()
        self.on_get = on_get or echo
        self.on_post = on_post or (lambda path, headers, body: 200)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _headers(self):
                out = {}
                for k in set(self.headers.keys()):
                    out[k.lower()] = ", ".join(self.headers.get_all(k))
                return out

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = urlparse(self.path).path
                headers = self._headers()
                status = outer.on_post(path, headers, body)
                with outer.cond:
                    outer.posts.append({"t": time.monotonic(), "path": path, "headers": headers,
                                        "body": body, "status": status, "raw": self.path})
                    outer.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # noqa: N802
                u = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
                with outer.cond:
                    outer.gets.append({"t": time.monotonic(), "path": u.path, "query": query,
                                       "raw": self.path})
                    outer.cond.notify_all()
                status, body, headers = outer.on_get(u.path, query)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path):
        return self.base + path

    def gets_to(self, path):
        with self.cond:
            return [g for g in self.gets if g["path"] == path]

    def posts_to(self, path):
        with self.cond:
            return [p for p in self.posts if p["path"] == path]

    def wait(self, pred, timeout=10, what="condition"):
        """Waits (on the condition, not on time) until pred(self) is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred(self)
                if v:
                    return v
                left = deadline - time.monotonic()
                assert left > 0, "receiver: %s not met; gets=%r posts=%r" % (
                    what, [(g["path"], g["query"]) for g in self.gets],
                    [(p["path"], p["body"][:80]) for p in self.posts])
                self.cond.wait(left)

    def wait_get(self, path, n=1, timeout=10):
        return self.wait(lambda r: len(r.gets_to(path)) >= n and r.gets_to(path), timeout,
                         "%d GET(s) to %s" % (n, path))

    def wait_post(self, path, n=1, timeout=10):
        return self.wait(lambda r: len(r.posts_to(path)) >= n and r.posts_to(path), timeout,
                         "%d POST(s) to %s" % (n, path))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- helpers ----------------------------------------------------------------------------

def post_form(s, path, fields, content_type=FORM, timeout=10):
    body = fields if isinstance(fields, bytes) else urlencode(fields).encode()
    return s.request("POST", path, body=body, headers={"Content-Type": content_type}, timeout=timeout)


def websub(s, mode, callback=None, topic=None, timeout=10, **extra):
    fields = [("hub.mode", mode)]
    if callback is not None:
        fields.append(("hub.callback", callback))
    if topic is not None:
        fields.append(("hub.topic", topic))
    for k, v in extra.items():
        fields.append(("hub." + k, str(v)))
    return post_form(s, "/websub", fields, timeout=timeout)


def subscribe(s, callback, topic, **extra):
    status, _, body = websub(s, "subscribe", callback, topic, **extra)
    assert status == 202, (status, body)


def publish(s, topic, body, content_type="application/atom+xml"):
    status, _, raw = s.request("POST", "/topics/" + quote(topic, safe=""), body=body,
                               headers={"Content-Type": content_type})
    assert status == 200, (topic, status, raw)
    return json.loads(raw)["id"]


def list_subs(s):
    out, after = [], None
    for _ in range(100):
        status, _, raw = s.request("GET", "/api/v1/subscriptions" + ("?after=" + after if after else ""))
        assert status == 200, (status, raw)
        page = json.loads(raw)
        out += page["data"]
        after = page.get("next")
        if not after:
            return out
    raise AssertionError("subscription list does not end")


def until(fn, timeout=10, what="condition"):
    """Polls fn() (an HTTP query of the server's state) until truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)  # polling the REST API: there is no event to wait on from outside


def find_sub(s, target, topic=None):
    return [x for x in list_subs(s) if x.get("target_url") == target and (topic is None or topic in x.get("topics", []))]


def wait_active(s, target, topic, pred=lambda item: True, timeout=10):
    return until(lambda: next((x for x in find_sub(s, target, topic) if pred(x)), None), timeout,
                 "subscription %s -> %s in the REST list" % (topic, target))


def links(header):
    """Parses a Link header into {rel: url} (RFC 8288, leniently)."""
    out = {}
    for url, params in re.findall(r"<([^>]*)>((?:\s*;\s*[^,;<]+)*)", header or ""):
        m = re.search(r'rel\s*=\s*"?([^";,]+)"?', params)
        if m:
            for rel in m.group(1).split():
                out[rel] = url
    return out


def sig(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hget(headers, name):
    """A header from crierlib's (case-preserving) dict, case-insensitively."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def check_invalid_field(status, headers, raw, field, what):
    assert status == 400, (what, status, raw)
    err = json.loads(raw)["error"]
    assert err["code"] == "invalid_field" and err["field"] == field, (what, err)
    assert isinstance(err.get("message"), str) and err["message"], (what, err)


def notify_result(raw):
    root = ET.fromstring(raw)
    assert root.tag == "notifyResult", raw
    return root.attrib


# --- WebSub -----------------------------------------------------------------------------

def test_websub_request_errors():
    rx = Receiver()
    try:
        with Server(*ALLOW) as s:
            cb, topic = rx.url("/cb"), rx.url("/feed")
            base = {"hub.mode": "subscribe", "hub.callback": cb, "hub.topic": topic}

            def without(*keys, **repl):
                d = {k: v for k, v in base.items() if k not in keys}
                d.update({k.replace("_", "."): v for k, v in repl.items()})
                return list(d.items())

            cases = [
                (without("hub.mode"), "hub.mode"),
                (without(hub_mode="bogus"), "hub.mode"),
                (without(hub_mode=""), "hub.mode"),
                (without("hub.callback"), "hub.callback"),
                (without(hub_callback="ftp://127.0.0.1/cb"), "hub.callback"),
                (without(hub_callback="not a url"), "hub.callback"),
                (without("hub.topic"), "hub.topic"),
                (without(hub_topic="http://127.0.0.1:1/a*b"), "hub.topic"),
                (without(hub_topic="http://127.0.0.1:1/a,b"), "hub.topic"),
                (without(hub_topic="http://127.0.0.1:1/a b"), "hub.topic"),
                (without(hub_topic="a b"), "hub.topic"),
                (without() + [("hub.lease_seconds", "abc")], "hub.lease_seconds"),
                (without() + [("hub.lease_seconds", "0")], "hub.lease_seconds"),
                (without() + [("hub.lease_seconds", "-5")], "hub.lease_seconds"),
                (without() + [("hub.lease_seconds", "1.5")], "hub.lease_seconds"),
                (without() + [("hub.secret", "s" * 200)], "hub.secret"),
                (without() + [("hub.secret", "s" * 1000)], "hub.secret"),
                (without("hub.callback", hub_mode="unsubscribe"), "hub.callback"),
                (without("hub.topic", hub_mode="unsubscribe"), "hub.topic"),
            ]
            for fields, field in cases:
                status, headers, raw = post_form(s, "/websub", fields)
                check_invalid_field(status, headers, raw, field, fields)

            # Not a form: 415, whatever the body says.
            js = json.dumps(base).encode()
            for ct in ("application/json", "text/plain"):
                status, _, raw = post_form(s, "/websub", js if ct == "application/json" else urlencode(base).encode(),
                                           content_type=ct)
                assert status == 415, (ct, status, raw)
            status, headers, _ = s.request("GET", "/websub")
            assert status == 405, status

            # publish needs a URL that is a valid topic name.
            for fields in ([("hub.mode", "publish")],
                           [("hub.mode", "publish"), ("hub.url", "not a url")],
                           [("hub.mode", "publish"), ("hub.url", "ftp://127.0.0.1/x")],
                           [("hub.mode", "publish"), ("hub.url", "http://127.0.0.1:1/a*b")],
                           [("hub.mode", "publish"), ("hub.topic", "http://127.0.0.1:1/a,b")]):
                status, _, raw = post_form(s, "/websub", fields)
                assert status == 400, (fields, status, raw)

            # A secret just under the limit is accepted, and used.
            ok, long_secret = rx.url("/ok199"), "s" * 199
            status, _, raw = websub(s, "subscribe", ok, topic, secret=long_secret)
            assert status == 202, (status, raw)
            wait_active(s, ok, topic)
            publish(s, topic, b"signed")
            p = rx.wait_post("/ok199")[0]
            assert p["headers"].get("x-hub-signature", "").lower() == sig(long_secret, b"signed"), p["headers"]
            # None of the refused requests reached the callback or created anything.
            assert rx.gets_to("/cb") == [] and rx.posts_to("/cb") == [], (rx.gets, rx.posts)
            assert [x["target_url"] for x in list_subs(s)] == [ok], list_subs(s)
    finally:
        rx.close()


def test_websub_subscribe_is_verified_asynchronously_then_delivers_signed():
    release = threading.Event()

    def on_get(path, q):
        release.wait(10)  # held until the test has its 202: the verification must be asynchronous
        return echo(path, q)

    rx = Receiver(on_get=on_get)
    try:
        with Server(*ALLOW) as s:
            cb, topic, secret = rx.url("/cb"), rx.url("/feed.atom"), "websub-secret-1"
            t0 = time.time()
            status, _, raw = websub(s, "subscribe", cb, topic, lease_seconds=3600, secret=secret, timeout=5)
            assert status == 202, (status, raw)
            assert find_sub(s, cb) == [], "active before verification: %r" % list_subs(s)
            release.set()
            g = rx.wait_get("/cb")[0]["query"]
            assert g["hub.mode"] == "subscribe" and g["hub.topic"] == topic, g
            assert len(g["hub.challenge"]) >= 8, g
            lease = int(g["hub.lease_seconds"])
            assert lease > 0, g
            item = wait_active(s, cb, topic)
            assert item["style"] == "websub" and item["topics"] == [topic], item
            assert isinstance(item["id"], str) and item["id"], item
            assert isinstance(item["expires_at"], (int, float)) and not isinstance(item["expires_at"], bool), item
            assert t0 + lease - 60 <= item["expires_at"] <= time.time() + lease + 60, (item, lease, t0)
            assert len(find_sub(s, cb)) == 1

            publish(s, topic, ATOM, "application/atom+xml")
            p = rx.wait_post("/cb")[0]
            h = p["headers"]
            assert p["body"] == ATOM, p
            assert h.get("content-type") == "application/atom+xml", h
            l = links(h.get("link"))
            assert l.get("hub") == s.url + "/websub" and l.get("self") == topic, h.get("link")
            assert h.get("x-hub-signature", "").lower() == sig(secret, ATOM), (h.get("x-hub-signature"), sig(secret, ATOM))
            assert h.get("x-hub-signature", "").lower() != sig(secret + "x", ATOM)
            assert h.get("crier-topic") == topic, h
            # A second message: its own signature, the original body and type.
            body2 = '{"entry":"é"}'.encode()
            publish(s, topic, body2, "application/json")
            p2 = rx.wait_post("/cb", 2)[1]
            assert p2["body"] == body2 and p2["headers"].get("content-type") == "application/json", p2
            assert p2["headers"].get("x-hub-signature", "").lower() == sig(secret, body2), p2["headers"]
            # Another topic is not delivered to this callback.
            other = rx.url("/other")
            publish(s, other, b"nope")
            publish(s, topic, b"third")
            posts = rx.wait_post("/cb", 3)
            assert [x["body"] for x in posts] == [ATOM, body2, b"third"], [x["body"] for x in posts]
            # Verification and deliveries: one GET, no unsigned delivery.
            assert len(rx.gets_to("/cb")) == 1, rx.gets
    finally:
        release.set()
        rx.close()


def test_websub_unsigned_delivery_without_secret():
    rx = Receiver()
    try:
        with Server(*ALLOW) as s:
            cb, topic = rx.url("/plain"), rx.url("/feed")
            subscribe(s, cb, topic)
            wait_active(s, cb, topic)
            publish(s, topic, b"<rss/>", "application/rss+xml")
            p = rx.wait_post("/plain")[0]
            assert p["body"] == b"<rss/>" and p["headers"].get("content-type") == "application/rss+xml", p
            assert "x-hub-signature" not in p["headers"], p["headers"]
            assert links(p["headers"].get("link")).get("self") == topic, p["headers"]
    finally:
        rx.close()


def test_websub_query_strings_in_callback_and_topic_are_kept():
    rx = Receiver()
    try:
        with Server(*ALLOW) as s:
            cb, topic = rx.url("/cb?sub=1&x=a%20b"), rx.url("/feed?format=atom&lang=en")
            subscribe(s, cb, topic, secret="q")
            g = rx.wait_get("/cb")[0]
            q = g["query"]
            # The callback's own query survives next to the hub.* parameters (W3C WebSub 5.3).
            assert q.get("sub") == "1" and q.get("x") == "a b", g["raw"]
            assert q.get("hub.topic") == topic and q.get("hub.mode") == "subscribe", g["raw"]
            item = wait_active(s, cb, topic)
            assert item["topics"] == [topic], item
            publish(s, topic, b"<feed/>")
            p = rx.wait_post("/cb")[0]
            assert p["raw"] == "/cb?sub=1&x=a%20b", p["raw"]
            assert p["headers"].get("crier-topic") == topic, p["headers"]
            assert links(p["headers"].get("link")).get("self") == topic, p["headers"].get("link")
            assert p["headers"].get("x-hub-signature", "").lower() == sig("q", b"<feed/>"), p["headers"]
            # A topic differing only in its query is another topic.
            publish(s, rx.url("/feed?format=rss&lang=en"), b"other")
            publish(s, topic, b"<feed>2</feed>")
            posts = rx.wait_post("/cb", 2)
            assert [x["body"] for x in posts] == [b"<feed/>", b"<feed>2</feed>"], posts
    finally:
        rx.close()


def test_websub_failed_verification_creates_nothing():
    def on_get(path, q):
        if path == "/wrong-body":
            return 200, b"not the challenge", {}
        if path == "/wrong-status":
            return 404, q.get("hub.challenge", "").encode(), {}  # right body, but not 2xx
        if path == "/challenge-plus":
            return 200, (q.get("hub.challenge", "") + "x").encode(), {}
        return echo(path, q)

    rx = Receiver(on_get=on_get)
    try:
        with Server(*ALLOW) as s:
            topic = rx.url("/feed")
            bad = ["/wrong-body", "/wrong-status", "/challenge-plus"]
            for path in bad:
                subscribe(s, rx.url(path), topic)
            for path in bad:
                rx.wait_get(path)
            # A good subscriber afterwards, as an event to wait on: once it is active and has
            # two deliveries, the refused ones had all the time they needed to show up.
            subscribe(s, rx.url("/good"), topic)
            wait_active(s, rx.url("/good"), topic)
            publish(s, topic, b"m1")
            publish(s, topic, b"m2")
            rx.wait_post("/good", 2)
            subs = [x for x in list_subs(s) if topic in x.get("topics", [])]
            assert [x["target_url"] for x in subs] == [rx.url("/good")], subs
            for path in bad:
                assert rx.posts_to(path) == [], (path, rx.posts_to(path))
                assert len(rx.gets_to(path)) == 1, rx.gets_to(path)
    finally:
        rx.close()


def test_websub_renewal_keeps_the_id_extends_the_lease_and_replaces_the_secret():
    rx = Receiver()
    try:
        with Server(*ALLOW, "--websub-min-lease", "1") as s:
            cb, topic = rx.url("/cb"), rx.url("/feed")
            subscribe(s, cb, topic, lease_seconds=600, secret="first-secret")
            first = wait_active(s, cb, topic)
            publish(s, topic, b"one")
            p1 = rx.wait_post("/cb")[0]
            assert p1["headers"].get("x-hub-signature", "").lower() == sig("first-secret", b"one"), p1["headers"]

            subscribe(s, cb, topic, lease_seconds=1200, secret="second-secret")
            g = rx.wait_get("/cb", 2)[1]["query"]
            assert g["hub.mode"] == "subscribe" and g["hub.topic"] == topic, g
            lease2 = int(g["hub.lease_seconds"])
            t = time.time()
            second = wait_active(s, cb, topic, pred=lambda x: x["expires_at"] > first["expires_at"])
            assert second["id"] == first["id"], (first, second)
            assert abs(second["expires_at"] - (t + lease2)) <= 60, (second, lease2, t)
            assert len(find_sub(s, cb)) == 1, list_subs(s)

            publish(s, topic, b"two")
            p2 = rx.wait_post("/cb", 2)[1]
            assert p2["body"] == b"two", p2
            got = p2["headers"].get("x-hub-signature", "").lower()
            assert got == sig("second-secret", b"two"), (got, sig("second-secret", b"two"))
            assert got != sig("first-secret", b"two"), got
            assert len(rx.posts_to("/cb")) == 2  # one delivery per message: still one subscription
    finally:
        rx.close()


def test_websub_unsubscribe_is_verified_and_stops_deliveries():
    refuse = threading.Event()

    def on_get(path, q):
        if refuse.is_set() and q.get("hub.mode") == "unsubscribe":
            return 404, b"", {}
        return echo(path, q)

    rx = Receiver(on_get=on_get)
    try:
        with Server(*ALLOW) as s:
            cb, keep, topic = rx.url("/cb"), rx.url("/keep"), rx.url("/feed")
            subscribe(s, cb, topic)
            subscribe(s, keep, topic)  # a second subscriber: its deliveries are the events to wait on
            wait_active(s, cb, topic)
            wait_active(s, keep, topic)
            publish(s, topic, b"A")
            rx.wait_post("/cb")
            rx.wait_post("/keep")

            # An unsubscribe the callback does not confirm changes nothing.
            refuse.set()
            status, _, raw = websub(s, "unsubscribe", cb, topic)
            assert status == 202, (status, raw)
            rx.wait_get("/cb", 2)
            publish(s, topic, b"B")
            rx.wait_post("/cb", 2)
            assert len(find_sub(s, cb, topic)) == 1, list_subs(s)

            refuse.clear()
            status, _, raw = websub(s, "unsubscribe", cb, topic)
            assert status == 202, (status, raw)
            g = rx.wait_get("/cb", 3)[2]["query"]
            assert g["hub.mode"] == "unsubscribe" and g["hub.topic"] == topic, g
            assert g.get("hub.challenge"), g
            assert "hub.lease_seconds" not in g, g
            until(lambda: find_sub(s, cb) == [] and [True], what="the unsubscribed callback to leave the list")
            assert len(find_sub(s, keep, topic)) == 1, list_subs(s)

            publish(s, topic, b"C")
            rx.wait_post("/keep", 3)
            assert [p["body"] for p in rx.posts_to("/keep")] == [b"A", b"B", b"C"]
            assert [p["body"] for p in rx.posts_to("/cb")] == [b"A", b"B"], rx.posts_to("/cb")
    finally:
        rx.close()


def test_websub_lease_expiry_ends_deliveries():
    rx = Receiver()
    try:
        with Server(*ALLOW, "--websub-min-lease", "1") as s:
            cb, topic = rx.url("/cb"), rx.url("/feed")
            subscribe(s, cb, topic, lease_seconds=2)
            g = rx.wait_get("/cb")[0]["query"]
            assert g["hub.lease_seconds"] == "2", g
            item = wait_active(s, cb, topic)
            publish(s, topic, b"W")
            rx.wait_post("/cb")
            assert item["expires_at"] <= time.time() + 2 + 1, item
            until(lambda: find_sub(s, cb) == [] and [True], timeout=20, what="the lease to expire")
            publish(s, topic, b"X")  # no subscription: not delivered, not kept for it
            subscribe(s, cb, topic, lease_seconds=3600)
            rx.wait_get("/cb", 2)
            wait_active(s, cb, topic)
            publish(s, topic, b"Y")
            publish(s, topic, b"Z")  # ordered delivery: a late X would show up before Z
            rx.wait_post("/cb", 3)
            assert [p["body"] for p in rx.posts_to("/cb")] == [b"W", b"Y", b"Z"], rx.posts_to("/cb")
    finally:
        rx.close()


def test_websub_denied_when_the_subscription_limit_is_reached():
    rx = Receiver()
    try:
        with Server(*ALLOW, "--webhook-max-subscriptions", "1") as s:
            a, ta = rx.url("/a"), rx.url("/feed-a")
            b, tb = rx.url("/b"), rx.url("/feed-b")
            subscribe(s, a, ta)
            first = wait_active(s, a, ta)
            status, _, raw = websub(s, "subscribe", b, tb)
            assert status == 202, (status, raw)
            g = rx.wait_get("/b")[0]["query"]
            assert g.get("hub.mode") == "denied", g
            assert g.get("hub.topic") == tb, g
            assert g.get("hub.reason"), g
            assert "hub.challenge" not in g, g
            assert len(rx.gets_to("/b")) == 1, rx.gets_to("/b")
            assert [x["id"] for x in list_subs(s)] == [first["id"]], list_subs(s)
            publish(s, tb, b"for b")
            publish(s, ta, b"for a")
            rx.wait_post("/a")
            assert rx.posts_to("/b") == [], rx.posts_to("/b")
            assert [x["id"] for x in list_subs(s)] == [first["id"]], list_subs(s)
    finally:
        rx.close()


def test_websub_publish_fetches_the_topic_url():
    content = {"n": 0}
    bodies = [b'<rss version="2.0"><channel><title>v1</title></channel></rss>',
              b'<rss version="2.0"><channel><title>v2</title></channel></rss>']

    def on_get(path, q):
        if path == "/feed.xml":
            return 200, bodies[content["n"]], {"Content-Type": "application/rss+xml; charset=utf-8"}
        return echo(path, q)

    rx = Receiver(on_get=on_get)
    try:
        with Server(*ALLOW) as s:
            cb, topic = rx.url("/cb"), rx.url("/feed.xml")
            subscribe(s, cb, topic, secret="pub-secret")
            wait_active(s, cb, topic)

            status, _, raw = post_form(s, "/websub", [("hub.mode", "publish"), ("hub.url", topic)])
            assert status == 202, (status, raw)
            rx.wait_get("/feed.xml")
            p = rx.wait_post("/cb")[0]
            assert p["body"] == bodies[0], p
            h = p["headers"]
            assert h.get("content-type") == "application/rss+xml; charset=utf-8", h
            assert h.get("crier-topic") == topic, h
            l = links(h.get("link"))
            assert l.get("self") == topic and l.get("hub") == s.url + "/websub", h.get("link")
            assert h.get("x-hub-signature", "").lower() == sig("pub-secret", bodies[0]), h

            content["n"] = 1  # hub.topic works as well as hub.url
            status, _, raw = post_form(s, "/websub", [("hub.mode", "publish"), ("hub.topic", topic)])
            assert status == 202, (status, raw)
            p2 = rx.wait_post("/cb", 2)[1]
            assert p2["body"] == bodies[1], p2
            assert len(rx.gets_to("/feed.xml")) == 2, rx.gets_to("/feed.xml")
    finally:
        rx.close()


# --- rssCloud ---------------------------------------------------------------------------

def please_notify(s, port, path, urls, protocol="http-post", domain=None, extra=()):
    fields = [("notifyProcedure", ""), ("port", str(port)), ("path", path), ("protocol", protocol)]
    if domain is not None:
        fields.append(("domain", domain))
    fields += [("url%d" % (i + 1), u) for i, u in enumerate(urls)]
    fields += list(extra)
    return post_form(s, "/pleaseNotify", fields, timeout=15)


def test_rsscloud_request_errors():
    rx = Receiver()
    try:
        with Server(*ALLOW) as s:
            feed = rx.url("/rss.xml")
            good = {"notifyProcedure": "", "port": str(rx.port), "path": "/rss", "protocol": "http-post",
                    "domain": "127.0.0.1", "url1": feed}

            def variant(drop=(), **repl):
                d = {k: v for k, v in good.items() if k not in drop}
                d.update(repl)
                return list(d.items())

            cases = [
                variant(drop=("port",)),
                variant(port="abc"),
                variant(port="70000"),
                variant(port="0"),
                variant(port=""),
                variant(drop=("path",)),
                variant(path="rss"),
                variant(protocol="xml-rpc"),
                variant(protocol="soap"),
                variant(drop=("protocol",)),
                variant(drop=("url1",)),
            ]
            for fields in cases:
                status, headers, raw = post_form(s, "/pleaseNotify", fields)
                assert status == 400, (fields, status, raw)
                attrs = notify_result(raw)
                assert attrs.get("success") == "false", (fields, raw)
                assert attrs.get("msg"), (fields, raw)
            assert rx.gets == [] and rx.posts == [], (rx.gets, rx.posts)
            assert [x for x in list_subs(s) if x.get("style") == "rsscloud"] == [], list_subs(s)
            # url2 without url1 is not a list that starts at url1.
            fields = variant(drop=("url1",), url2=feed)
            status, headers, raw = post_form(s, "/pleaseNotify", fields)
            assert status == 400 and notify_result(raw).get("success") == "false", (fields, status, raw)
    finally:
        rx.close()


def test_rsscloud_with_domain_challenge_then_notifications():
    def on_get(path, q):
        if path == "/wrong":
            return 200, b"not the challenge", {}
        return echo(path, q)

    rx = Receiver(on_get=on_get)
    try:
        with Server(*ALLOW) as s:
            feed1, feed2 = rx.url("/feed1.xml"), rx.url("/feed2.xml")
            status, headers, raw = please_notify(s, rx.port, "/rss", [feed1, feed2], domain="127.0.0.1")
            assert status == 200, (status, raw)
            assert (hget(headers, "Content-Type") or "").startswith("text/xml"), headers
            assert notify_result(raw).get("success") == "true", raw
            gets = rx.gets_to("/rss")  # verified before the answer: already recorded
            assert len(gets) == 1, rx.gets
            q = gets[0]["query"]
            assert q.get("url") == feed1 and q.get("challenge"), q
            assert rx.posts == [], rx.posts  # a domain means challenge, not test notification

            now = time.time()
            items = [x for x in list_subs(s) if x.get("style") == "rsscloud"]
            assert items, list_subs(s)  # one registration (or one per feed URL)
            assert sorted(t for x in items for t in x["topics"]) == sorted([feed1, feed2]), items
            for item in items:
                assert item["target_url"] == "http://127.0.0.1:%d/rss" % rx.port, item
                assert isinstance(item["expires_at"], (int, float)), item
                assert abs(item["expires_at"] - (now + 90000)) <= 60, (item["expires_at"], now + 90000)

            publish(s, feed1, b"<rss>1</rss>", "application/rss+xml")
            p = rx.wait_post("/rss")[0]
            assert p["headers"].get("content-type", "").split(";")[0].strip() == FORM, p["headers"]
            assert parse_qs(p["body"].decode()) == {"url": [feed1]}, p["body"]
            publish(s, feed2, b"<rss>2</rss>", "application/rss+xml")
            p2 = rx.wait_post("/rss", 2)[1]
            assert parse_qs(p2["body"].decode()) == {"url": [feed2]}, p2["body"]

            # A subscriber that does not echo the challenge: 200, success="false", nothing kept.
            status, headers, raw = please_notify(s, rx.port, "/wrong", [feed1], domain="127.0.0.1")
            assert status == 200, (status, raw)
            attrs = notify_result(raw)
            assert attrs.get("success") == "false", raw
            assert len(rx.gets_to("/wrong")) == 1, rx.gets
            assert [x for x in list_subs(s) if x["target_url"].endswith("/wrong")] == [], list_subs(s)
            publish(s, feed1, b"<rss>3</rss>", "application/rss+xml")
            rx.wait_post("/rss", 3)
            assert rx.posts_to("/wrong") == [], rx.posts_to("/wrong")
    finally:
        rx.close()


def test_rsscloud_without_domain_test_notification_to_the_requester():
    def on_post(path, headers, body):
        return 404 if path == "/refuse" else 200

    rx = Receiver(on_post=on_post)
    try:
        with Server(*ALLOW) as s:
            feed = rx.url("/feed.xml")
            status, headers, raw = please_notify(s, rx.port, "/notify", [feed])
            assert status == 200, (status, raw)
            assert (hget(headers, "Content-Type") or "").startswith("text/xml"), headers
            assert notify_result(raw).get("success") == "true", raw
            posts = rx.posts_to("/notify")  # the test notification came before the answer
            assert len(posts) == 1, rx.posts
            assert posts[0]["headers"].get("content-type", "").split(";")[0].strip() == FORM, posts[0]["headers"]
            assert parse_qs(posts[0]["body"].decode()) == {"url": [feed]}, posts[0]["body"]
            assert rx.gets == [], rx.gets  # no domain: no challenge GET

            items = [x for x in list_subs(s) if x.get("style") == "rsscloud"]
            assert [x["target_url"] for x in items] == ["http://127.0.0.1:%d/notify" % rx.port], items
            assert items[0]["topics"] == [feed], items
            assert abs(items[0]["expires_at"] - (time.time() + 90000)) <= 60, items

            publish(s, feed, b"<rss>new</rss>", "application/rss+xml")
            p = rx.wait_post("/notify", 2)[1]
            assert parse_qs(p["body"].decode()) == {"url": [feed]}, p["body"]
            assert p["headers"].get("content-type", "").split(";")[0].strip() == FORM, p["headers"]

            # The test notification is refused: success="false", nothing registered.
            status, headers, raw = please_notify(s, rx.port, "/refuse", [feed])
            assert status == 200, (status, raw)
            assert notify_result(raw).get("success") == "false", raw
            assert len(rx.posts_to("/refuse")) == 1, rx.posts
            assert [x for x in list_subs(s) if x["target_url"].endswith("/refuse")] == [], list_subs(s)
    finally:
        rx.close()


if __name__ == "__main__":
    run([
        test_websub_request_errors,
        test_websub_subscribe_is_verified_asynchronously_then_delivers_signed,
        test_websub_unsigned_delivery_without_secret,
        test_websub_query_strings_in_callback_and_topic_are_kept,
        test_websub_failed_verification_creates_nothing,
        test_websub_renewal_keeps_the_id_extends_the_lease_and_replaces_the_secret,
        test_websub_unsubscribe_is_verified_and_stops_deliveries,
        test_websub_lease_expiry_ends_deliveries,
        test_websub_denied_when_the_subscription_limit_is_reached,
        test_websub_publish_fetches_the_topic_url,
        test_rsscloud_request_errors,
        test_rsscloud_with_domain_challenge_then_notifications,
        test_rsscloud_without_domain_test_notification_to_the_requester,
    ])
