"""The C++ relay client (crier::relay_client, examples/relay_receiver.cpp): a program that only
makes outbound connections receives its webhooks through the hub's relay, in order, signed,
and keeps its public URL across a restart."""
import json
import os
import subprocess
import threading

from crierlib import Server, run

RECEIVER = os.environ.get("CRIER_RELAY_RECEIVER")


class Receiver:
    """relay_receiver as a subprocess; its stdout lines are collected by a thread."""

    def __init__(self, hub, *args):
        self.proc = subprocess.Popen([RECEIVER, hub, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_line(self, prefix, n=1, timeout=15):
        with self.cond:
            ok = self.cond.wait_for(lambda: len([x for x in self.lines if x.startswith(prefix)]) >= n, timeout)
            assert ok, (prefix, n, self.lines)
            return [x for x in self.lines if x.startswith(prefix)]

    def value(self, key):
        return self.wait_line(key + " ")[0].split(" ", 1)[1]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def create_hook(s, url, topic):
    status, _, body = s.request("POST", "/api/v1/subscriptions",
                                json.dumps({"target_url": url, "topics": [topic]}).encode(),
                                {"Content-Type": "application/json"})
    assert status == 201, (status, body)
    return json.loads(body)["id"]


def test_webhooks_reach_a_program_behind_the_relay_in_order():
    with Server() as s:  # no --webhook-allow: only the relay path can reach the receiver
        rx = Receiver(s.url, "--count", "3")
        try:
            url = rx.value("url")
            assert url.startswith(s.url + "/relay/"), url
            sid = create_hook(s, url + "/hook", "rc/t")
            for i in range(3):
                s.publish("rc/t", "m%d" % i)
            assert rx.proc.wait(20) == 0  # it answered 3 requests, then stopped by itself
            reqs = rx.wait_line("request ", 3)
            assert [r.rsplit(": ", 1)[1] for r in reqs] == ["m0", "m1", "m2"], reqs
            assert all(r.startswith("request POST /hook 2 bytes") for r in reqs), reqs
            assert all("webhook-id=" in r for r in reqs), reqs
            _, _, body = s.request("GET", "/api/v1/subscriptions/" + sid)
            assert json.loads(body)["stats"]["delivered"] == 3, body
            assert s.metric("relay_forwarded_total") == 3 and s.metric("relay_answered_total") == 3
            assert s.metric("relay_tokens") == 1
        finally:
            rx.stop()


def test_the_url_survives_a_restart_with_token_and_secret():
    with Server() as s:
        first = Receiver(s.url)
        try:
            url, token, secret = first.value("url"), first.value("token"), first.value("secret")
        finally:
            first.stop()
        again = Receiver(s.url, "--token", token, "--secret", secret, "--count", "1")
        try:
            assert again.value("url") == url
            status, _, body = s.request("PUT", url[len(s.url):] + "/x", b"direct")
            assert status == 200 and json.loads(body) == {"received": True}, (status, body)
            assert again.proc.wait(20) == 0
            assert again.wait_line("request PUT /x 6 bytes")[0].endswith(": direct")
        finally:
            again.stop()
        stranger = Receiver(s.url, "--token", token, "--secret", "0" * 64)
        try:
            assert stranger.value("url") != url  # a wrong secret never gets the URL
        finally:
            stranger.stop()


if __name__ == "__main__":
    run([
        test_webhooks_reach_a_program_behind_the_relay_in_order,
        test_the_url_survives_a_restart_with_token_and_secret,
    ])
