// crier_grpc_stream_server: one hub, two front doors. crier::server (HTTP: SSE, WebSocket,
// POST /topics/{t} publishing, ...) on the io_context, and the gRPC Crier service
// (grpc_stream.hpp) on gRPC's own threads. A message published over HTTP, over gRPC or by
// the application goes out on both.
//
//   crier_grpc_stream_server --listen 127.0.0.1:8080 --grpc 127.0.0.1:50051
//   curl -d 'hello' http://127.0.0.1:8080/topics/prices/AAPL            # publish over HTTP
//   crier_grpc_client --target 127.0.0.1:50051 --topic 'prices/*'        # stream over gRPC
#include "../cli.hpp"
#include "grpc_stream.hpp"

#include <crier/crier.hpp>

#include <asio/signal_set.hpp>

#include <charconv>
#include <cstdio>
#include <optional>
#include <string_view>
#include <thread>

namespace {

void usage(std::FILE* out) {
  std::fputs(
      "usage: crier_grpc_stream_server [options]\n"
      "  --listen HOST:PORT        HTTP (crier::server) address (default 127.0.0.1:8080; port 0 = any free)\n"
      "  --grpc HOST:PORT          gRPC address (default 127.0.0.1:50051; port 0 = any free)\n"
      "  --grpc-policy P           overflow policy of gRPC streams that ask for POLICY_DEFAULT:\n"
      "                            disconnect (default), drop_oldest, conflate\n"
      "  --grpc-queue-messages N   per gRPC stream queue bound (default: the hub's, 4096)\n"
      "  --grpc-queue-bytes N      per gRPC stream queued payload bytes (default: the hub's, 32 MiB)\n"
      "  --grpc-finish-ms MS       an ended stream whose client stopped reading is cancelled after\n"
      "                            this (default 10000)\n"
      "  --policy P                overflow policy of the HTTP transports (default disconnect)\n"
      "  --queue-messages N        their queue bound (default 4096)\n"
      "  --history-messages N      messages kept per topic for resume (default 1000)\n"
      "  --max-payload N           largest payload in bytes (default 16 MiB; gRPC's limit follows)\n"
      "  --threads N               threads running the io_context (default 1)\n"
      "  --help                    this text\n",
      out);
}

using crier_examples::number;
using crier_examples::parse_policy;


void print_stats(const grpc_stream::stream_stats& s) {
  auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("grpc: %llu streams, %llu refused, %llu messages written, %llu overflow disconnects, "
              "%llu overflow gaps, %llu conflation gaps (%llu seqs skipped), %llu cancelled, %llu finish timeouts\n",
              u(s.streams_opened), u(s.refused), u(s.messages_written), u(s.overflow_disconnects), u(s.overflow_gaps),
              u(s.conflation_gaps), u(s.conflated_skipped), u(s.cancelled), u(s.finish_timeouts));
}

}  // namespace

int main(int argc, char** argv) {
  crier::hub_options hub_opts;
  crier::server_options srv_opts;
  srv_opts.listen = "127.0.0.1:8080";
  std::string grpc_listen = "127.0.0.1:50051";
  grpc_stream::stream_options grpc_opts;
  std::optional<std::size_t> grpc_queue_messages, grpc_queue_bytes;
  unsigned threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return usage(stdout), 0;
    if (i + 1 >= argc) return std::fprintf(stderr, "crier_grpc_stream_server: %s needs a value\n", argv[i]), usage(stderr), 2;
    std::string_view v = argv[++i];
    std::size_t n = 0;
    bool ok = true;
    if (a == "--listen") srv_opts.listen = v;
    else if (a == "--grpc") grpc_listen = v;
    else if (a == "--grpc-policy") ok = parse_policy(v, grpc_opts.default_policy);
    else if (a == "--policy") ok = parse_policy(v, hub_opts.queue.policy);
    else if (!(ok = number(v, n))) {
    } else if (a == "--grpc-queue-messages") grpc_queue_messages = n;
    else if (a == "--grpc-queue-bytes") grpc_queue_bytes = n;
    else if (a == "--grpc-finish-ms") grpc_opts.finish_timeout = std::chrono::milliseconds(n);
    else if (a == "--queue-messages") hub_opts.queue.max_messages = n;
    else if (a == "--history-messages") hub_opts.history.max_messages = n;
    else if (a == "--max-payload") hub_opts.max_payload_bytes = n;
    else if (a == "--threads") threads = static_cast<unsigned>(std::max<std::size_t>(n, 1));
    else ok = false;
    if (!ok)
      return std::fprintf(stderr, "crier_grpc_stream_server: bad option %s %s\n", argv[i - 1], argv[i]), usage(stderr), 2;
  }
  if (grpc_queue_messages || grpc_queue_bytes) {  // bounds only: the policy is chosen per Subscribe
    auto q = hub_opts.queue;
    if (grpc_queue_messages) q.max_messages = *grpc_queue_messages;
    if (grpc_queue_bytes) q.max_bytes = *grpc_queue_bytes;
    grpc_opts.queue = q;
  }

  asio::io_context io;
  crier::hub hub{io, hub_opts};
  std::optional<crier::server> http;
  try {
    http.emplace(hub, srv_opts);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "crier_grpc_stream_server: %s\n", e.what());
    return 1;
  }

  grpc_stream::service service{hub, grpc_opts};
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(grpc_listen, grpc::InsecureServerCredentials(), &grpc_port);
  builder.RegisterService(&service);
  // A publish as large as the hub takes (plus the request's other fields) must get through.
  auto max_msg = std::min<std::size_t>(hub_opts.max_payload_bytes + 64 * 1024, std::numeric_limits<int>::max());
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_msg));
  auto grpc_server = builder.BuildAndStart();
  if (!grpc_server || grpc_port == 0) {
    std::fprintf(stderr, "crier_grpc_stream_server: cannot listen on %s (gRPC)\n", grpc_listen.c_str());
    return 1;
  }
  auto host = grpc_listen.substr(0, grpc_listen.rfind(':'));
  std::printf("crier listening on %s\n", http->url().c_str());
  std::printf("grpc listening on %s:%d\n", host.c_str(), grpc_port);
  std::fflush(stdout);

  // SIGINT/SIGTERM: every gRPC stream ends with UNAVAILABLE + its resume cursor, gRPC stops
  // accepting (Shutdown, on its own thread: it blocks until the RPCs are done, and they finish
  // on the hub's strand), the HTTP server ends its streams; then the hub stops, the loop ends.
  std::thread grpc_stopper;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int) {
    if (ec) return;
    asio::post(hub.get_executor(), [&] {
      auto left = std::make_shared<int>(3);
      auto one_done = [&, left] {
        if (--*left > 0) return;
        print_stats(service.stats());
        hub.stop();
        io.stop();
      };
      service.stop(one_done);
      http->stop(one_done);
      grpc_stopper = std::thread([&, one_done] {
        grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
        asio::post(hub.get_executor(), one_done);
      });
    });
  });

  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  if (grpc_stopper.joinable()) grpc_stopper.join();
  // Handlers posted by the last reactions (OnDone) release their streams.
  io.restart();
  io.poll();
  grpc_server.reset();
  std::printf("crier stopped\n");
}
