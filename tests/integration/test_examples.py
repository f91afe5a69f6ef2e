"""The embedding example runs: the app's own timer and a feed thread publish on the hub's loop."""
import json
import os
import re
import signal
import subprocess

from crierlib import SSEStream, run


class _Addr:
    def __init__(self, host, port):
        self.host, self.port = host, port


def test_embed_in_app_serves_its_feed_and_stops_on_sigterm():
    binary = os.environ["CRIER_EMBED"]
    proc = subprocess.Popen([binary, "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        m = re.search(r"http://([\d.]+):(\d+)/", proc.stdout.readline())
        assert m, "no URL printed"
        addr = _Addr(m.group(1), int(m.group(2)))
        quotes = SSEStream(addr, "/topics/prices/AAPL")
        ev = quotes.wait_events(2, timeout=10)
        assert all(e["event"] == "quote" for e in ev)
        bids = [json.loads(e["data"])["bid"] for e in ev]
        assert bids[1] > bids[0]
        ticks = SSEStream(addr, "/topics/app/ticks?since=0")
        assert ticks.wait_events(1, timeout=10)[0]["data"].isdigit()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    run([test_embed_in_app_serves_its_feed_and_stops_on_sigterm])
