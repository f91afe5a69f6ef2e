// crier_server: a hub with every transport on the default routes, and a live page at "/".
//   crier_server --listen 127.0.0.1:8080 [--history-messages N] [--history-bytes N]
//                [--history-age S] [--queue-messages N] [--policy disconnect|drop_oldest|conflate]
//                [--max-payload N] [--heartbeat MS] [--cors ORIGIN] [--threads N]
#include <crier/crier.hpp>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string_view>
#include <thread>

#include "cli.hpp"

namespace {

const char* const index_html =
#include "index.html.inc"
    ;

void usage(std::FILE* out) {
  std::fputs(
      "usage: crier_server [options]\n"
      "  --listen HOST:PORT        address to serve (default 127.0.0.1:8080; port 0 = any free)\n"
      "  --history-messages N      messages kept per topic for resume (default 1000)\n"
      "  --history-bytes N         payload bytes kept per topic (default 64 MiB)\n"
      "  --history-age S           seconds a message stays in history (default 3600; 0 = forever)\n"
      "  --queue-messages N        per-subscriber queue bound (default 4096)\n"
      "  --queue-bytes N           per-subscriber queued bytes bound (default 32 MiB)\n"
      "  --policy P                overflow policy: disconnect (default), drop_oldest, conflate\n"
      "  --max-payload N           largest publish in bytes (default 16 MiB)\n"
      "  --heartbeat MS            keep-alive interval on idle streams (default 15000; 0 = off)\n"
      "  --max-stream-ms MS        end each stream cleanly after MS (clients resume; default 0 = never)\n"
      "  --retry-ms MS             SSE retry: hint (default 2000)\n"
      "  --header-timeout MS       close connections whose request head is unfinished (default 10000)\n"
      "  --max-connections N       connection limit (default 100000)\n"
      "  --cors ORIGIN             allow this Origin (or *) for CORS; repeatable\n"
      "  --ws-deflate 0|1          WebSocket permessage-deflate (default 1)\n"
      "  --ws-echo 1               WebSocket messages on /topics/{t} echo back instead of publishing\n"
      "                            (a conformance-test mode, for Autobahn|Testsuite)\n"
      "  --webhook-allow CIDR      webhook targets may be in this private range, e.g. 127.0.0.0/8\n"
      "                            (repeatable; private and reserved addresses are refused otherwise)\n"
      "  --webhook-max-subscriptions N  webhook, WebSub and rssCloud subscriptions (default 100000)\n"
      "  --websub-min-lease S      shortest WebSub lease granted, in seconds (default 60)\n"
      "  --websub-url URL          the WebSub hub URL sent as Link rel=\"hub\" (default http://<Host>/websub)\n"
      "  --relay-answer-ms MS      a relayed request unanswered this long gets 504 (default 30000)\n"
      "  --relay-hold-ms MS        a request to an offline relay client waits this long (default 0: 503)\n"
      "  --relay-idle-ms MS        a relay token with no client this long ends (default 600000)\n"
      "  --relay-grace-ms MS       long-poll relay clients count as online this long after a poll (default 5000)\n"
      "  --relay-max-body N        largest relayed request or answer body in bytes (default 1 MiB)\n"
      "  --threads N               threads running the io_context (default 1)\n"
      "  --help                    this text\n",
      out);
}

using crier_examples::number;

}  // namespace

int main(int argc, char** argv) {
  crier::hub_options hub_opts;
  crier::server_options srv_opts;
  srv_opts.index_html = index_html;
  unsigned threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return usage(stdout), 0;
    if (i + 1 >= argc) return std::fprintf(stderr, "crier_server: %s needs a value\n", argv[i]), usage(stderr), 2;
    std::string_view v = argv[++i];
    std::size_t n = 0;
    bool ok = true;
    if (a == "--listen") srv_opts.listen = v;
    else if (a == "--cors") srv_opts.cors_origins.emplace_back(v);
    else if (a == "--webhook-allow") srv_opts.webhook_allow.emplace_back(v);
    else if (a == "--websub-url") srv_opts.websub.public_url = v;
    else if (a == "--policy") ok = crier_examples::parse_policy(v, hub_opts.queue.policy);
    else if (!(ok = number(v, n))) {
    } else if (a == "--history-messages") hub_opts.history.max_messages = n;
    else if (a == "--history-bytes") hub_opts.history.max_bytes = n;
    else if (a == "--history-age") hub_opts.history.max_age = std::chrono::seconds(n);
    else if (a == "--queue-messages") hub_opts.queue.max_messages = n;
    else if (a == "--queue-bytes") hub_opts.queue.max_bytes = n;
    else if (a == "--max-payload") {
      hub_opts.max_payload_bytes = n;
      srv_opts.http.max_body_bytes = std::max(srv_opts.http.max_body_bytes, n);
      srv_opts.websocket.max_message_bytes = n;
    } else if (a == "--ws-echo") srv_opts.websocket.echo = n != 0;
    else if (a == "--ws-deflate") srv_opts.websocket.deflate.enabled = n != 0;
    else if (a == "--heartbeat") srv_opts.heartbeat = std::chrono::milliseconds(n);
    else if (a == "--max-stream-ms") srv_opts.max_stream_duration = std::chrono::milliseconds(n);
    else if (a == "--retry-ms") srv_opts.sse.retry = std::chrono::milliseconds(n);
    else if (a == "--header-timeout") srv_opts.http.header_timeout = std::chrono::milliseconds(n);
    else if (a == "--max-connections") srv_opts.http.max_connections = n;
    else if (a == "--webhook-max-subscriptions") srv_opts.webhooks.max_subscriptions = n;
    else if (a == "--websub-min-lease") srv_opts.websub.min_lease = std::chrono::seconds(n);
    else if (a == "--relay-answer-ms") srv_opts.relay.answer_timeout = std::chrono::milliseconds(n);
    else if (a == "--relay-hold-ms") srv_opts.relay.offline_hold = std::chrono::milliseconds(n);
    else if (a == "--relay-idle-ms") srv_opts.relay.idle_expiry = std::chrono::milliseconds(n);
    else if (a == "--relay-grace-ms") srv_opts.relay.poll_grace = std::chrono::milliseconds(n);
    else if (a == "--relay-max-body") srv_opts.relay.max_body = n;
    else if (a == "--threads") threads = static_cast<unsigned>(std::max<std::size_t>(n, 1));
    else ok = false;
    if (!ok) return std::fprintf(stderr, "crier_server: bad option %s %s\n", argv[i - 1], argv[i]), usage(stderr), 2;
  }

  asio::io_context io;
  crier::hub hub{io, hub_opts};
  std::optional<crier::server> server;
  try {
    server.emplace(hub, srv_opts);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "crier_server: %s\n", e.what());
    return 1;
  }
  std::printf("crier listening on %s\n", server->url().c_str());
  std::fflush(stdout);

  // SIGINT/SIGTERM: stop accepting, end streams cleanly, answer waiting polls, then exit.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int) {
    if (ec) return;
    asio::post(hub.get_executor(), [&] {
      server->stop([&] {
        hub.stop();
        io.stop();
      });
    });
  });

  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  std::printf("crier stopped\n");
}
