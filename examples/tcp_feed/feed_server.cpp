// crier_tcp_feed_server: one hub, two front doors on one io_context: crier::server (HTTP: SSE,
// WebSocket, POST /topics/{t} publishing, ...) and the binary TCP feed of tcp_feed.hpp. A
// message published over HTTP (or by the application) goes out on every transport.
//
//   crier_tcp_feed_server --listen 127.0.0.1:8080 --feed 127.0.0.1:9000
//   curl -d 'hello' http://127.0.0.1:8080/topics/prices/AAPL       # publish
//   crier_tcp_feed_client --connect 127.0.0.1:9000 --topic 'prices/*'
#include "../cli.hpp"
#include "tcp_feed.hpp"

#include <crier/crier.hpp>

#include <charconv>
#include <cstdio>
#include <optional>
#include <string_view>
#include <thread>

namespace {

void usage(std::FILE* out) {
  std::fputs(
      "usage: crier_tcp_feed_server [options]\n"
      "  --listen HOST:PORT          HTTP (crier::server) address (default 127.0.0.1:8080; port 0 = any free)\n"
      "  --feed HOST:PORT            TCP feed address (default 127.0.0.1:9000; port 0 = any free)\n"
      "  --feed-policy P             overflow policy of feed subscriptions that leave it to the server:\n"
      "                              conflate (default), drop_oldest, disconnect\n"
      "  --feed-queue-messages N     per feed subscription queue bound (default: the hub's, 4096)\n"
      "  --feed-queue-bytes N        per feed subscription queued bytes (default: the hub's, 32 MiB)\n"
      "  --feed-sndbuf N             SO_SNDBUF of feed connections (default: the OS's)\n"
      "  --feed-max-frame N          largest client frame in bytes (default 65536)\n"
      "  --feed-stall-ms MS          cut a feed connection whose write is stuck this long (default 60000)\n"
      "  --policy P                  overflow policy of the HTTP transports (default disconnect)\n"
      "  --queue-messages N          their queue bound (default 4096)\n"
      "  --queue-bytes N             their queued bytes bound (default 32 MiB)\n"
      "  --history-messages N        messages kept per topic for resume (default 1000)\n"
      "  --heartbeat MS              HTTP stream keep-alive period (default 15000; 0 = off)\n"
      "  --threads N                 threads running the io_context (default 1)\n"
      "  --help                      this text\n",
      out);
}

using crier_examples::number;
using crier_examples::parse_policy;


}  // namespace

int main(int argc, char** argv) {
  crier::hub_options hub_opts;
  crier::server_options srv_opts;
  srv_opts.listen = "127.0.0.1:8080";
  tcp_feed::feed_options feed_opts;
  feed_opts.listen = "127.0.0.1:9000";
  std::optional<crier::queue_options> feed_queue;
  unsigned threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return usage(stdout), 0;
    if (i + 1 >= argc) return std::fprintf(stderr, "crier_tcp_feed_server: %s needs a value\n", argv[i]), usage(stderr), 2;
    std::string_view v = argv[++i];
    std::size_t n = 0;
    bool ok = true;
    auto fq = [&]() -> crier::queue_options& {
      if (!feed_queue) feed_queue = crier::queue_options{};
      return *feed_queue;
    };
    if (a == "--listen") srv_opts.listen = v;
    else if (a == "--feed") feed_opts.listen = v;
    else if (a == "--policy") ok = parse_policy(v, hub_opts.queue.policy);
    else if (a == "--feed-policy") {
      crier::overflow_policy p{};
      ok = parse_policy(v, p);
      feed_opts.default_policy = p == crier::overflow_policy::disconnect    ? tcp_feed::proto::policy::disconnect
                                 : p == crier::overflow_policy::drop_oldest ? tcp_feed::proto::policy::drop_oldest
                                                                            : tcp_feed::proto::policy::conflate;
    } else if (!(ok = number(v, n))) {
    } else if (a == "--feed-queue-messages") fq().max_messages = n;
    else if (a == "--feed-queue-bytes") fq().max_bytes = n;
    else if (a == "--feed-sndbuf") feed_opts.send_buffer = static_cast<int>(std::min<std::size_t>(n, 1 << 30));
    else if (a == "--feed-max-frame") feed_opts.max_client_frame = n;
    else if (a == "--feed-stall-ms") feed_opts.stall_timeout = std::chrono::milliseconds(n);
    else if (a == "--queue-messages") hub_opts.queue.max_messages = n;
    else if (a == "--queue-bytes") hub_opts.queue.max_bytes = n;
    else if (a == "--history-messages") hub_opts.history.max_messages = n;
    else if (a == "--heartbeat") srv_opts.heartbeat = std::chrono::milliseconds(n);
    else if (a == "--threads") threads = static_cast<unsigned>(std::max<std::size_t>(n, 1));
    else ok = false;
    if (!ok)
      return std::fprintf(stderr, "crier_tcp_feed_server: bad option %s %s\n", argv[i - 1], argv[i]), usage(stderr), 2;
  }
  if (feed_queue) {  // bounds only: the policy is chosen per subscribe
    auto q = hub_opts.queue;
    q.max_messages = feed_queue->max_messages;
    q.max_bytes = feed_queue->max_bytes;
    feed_opts.queue = q;
  }

  asio::io_context io;
  crier::hub hub{io, hub_opts};
  std::optional<crier::server> server;
  std::optional<tcp_feed::feed> feed;
  try {
    server.emplace(hub, srv_opts);
    feed.emplace(hub, feed_opts);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "crier_tcp_feed_server: %s\n", e.what());
    return 1;
  }
  auto ep = feed->local_endpoint();
  std::printf("crier listening on %s\n", server->url().c_str());
  std::printf("tcp feed listening on %s:%u\n", ep.address().to_string().c_str(), static_cast<unsigned>(ep.port()));
  std::fflush(stdout);

  // SIGINT/SIGTERM: both front doors stop accepting and end their connections cleanly (the
  // feed with a goodbye frame), then the hub stops and the loop ends.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int) {
    if (ec) return;
    asio::post(hub.get_executor(), [&] {
      auto left = std::make_shared<int>(2);
      auto one_done = [&, left] {
        if (--*left > 0) return;
        auto& s = feed->stats();
        std::printf("tcp feed: %llu connections, %llu protocol errors, %llu overflow ends, %llu conflation notices "
                    "(%llu seqs skipped), %llu stalled\n",
                    static_cast<unsigned long long>(s.connections_opened),
                    static_cast<unsigned long long>(s.protocol_errors), static_cast<unsigned long long>(s.overflow_ends),
                    static_cast<unsigned long long>(s.conflation_notices),
                    static_cast<unsigned long long>(s.conflated_skipped), static_cast<unsigned long long>(s.stalled));
        hub.stop();
        io.stop();
      };
      feed->stop(one_done);
      server->stop(one_done);
    });
  });

  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  std::printf("crier stopped\n");
}
