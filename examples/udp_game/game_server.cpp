// crier_udp_game_server: a crier hub with its HTTP front door (publish with POST /topics/{t},
// subscribe over SSE, WebSocket, ...) plus the UDP game transport (udp_transport.hpp) and its
// registration API on a second, small HTTP listener (README.md).
//
//   crier_udp_game_server --listen 127.0.0.1:8080 --control 127.0.0.1:8081 --udp 127.0.0.1:0
//                         [--simulate 20 --players 4]
//
// Prints three lines once serving (the crier URL, the registration URL, the UDP source
// address) and, after SIGINT/SIGTERM, "udp_game stopped" with its counters; exit status 0.
#include "../cli.hpp"
#include "udp_transport.hpp"

#include <crier/server.hpp>

#include <asio/signal_set.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string_view>
#include <thread>

namespace {

void usage(std::FILE* out) {
  std::fputs(
      "usage: crier_udp_game_server [options]\n"
      "  --listen HOST:PORT       crier's HTTP front door: publish, SSE, WebSocket ... (default 127.0.0.1:8080)\n"
      "  --control HOST:PORT      the UDP registration API (default 127.0.0.1:8081; port 0 = any free)\n"
      "  --udp HOST:PORT          the socket datagrams are sent from (default 127.0.0.1:0)\n"
      "  --max-datagram N         largest datagram in bytes, header + topic + payload (default 1200)\n"
      "  --max-rate R             largest rate an endpoint may ask for, datagrams/s (default 120)\n"
      "  --default-rate R         rate when the registration names none (default 30)\n"
      "  --max-burst B            largest token bucket depth (default 32)\n"
      "  --default-burst B        depth when the registration names none (default 8)\n"
      "  --default-ttl S          registration lifetime without refresh (default 30)\n"
      "  --min-ttl S, --max-ttl S bounds on the asked-for ttl (default 1, 300)\n"
      "  --max-endpoints N        registrations (default 10000)\n"
      "  --max-topics N           topics and patterns per registration (default 64)\n"
      "  --max-pending-topics N   distinct topics queued per endpoint (default 4096)\n"
      "  --allow-any-target       let a registration name any IP (default: only the registrant's own)\n"
      "  --history-messages N     crier history per topic (default 64: game state needs little)\n"
      "  --max-payload N          largest publish crier accepts, any transport (default 16 MiB)\n"
      "  --simulate HZ            publish a demo game: game/players/pN positions HZ times a second\n"
      "  --players N              players in the demo game (default 4)\n"
      "  --threads N              threads running the io_context (default 1)\n",
      out);
}

using crier_examples::number;

}  // namespace

int main(int argc, char** argv) {
  crier::hub_options hub_opts;
  hub_opts.history.max_messages = 64;
  crier::server_options srv_opts;
  udp_game::transport_options udp_opts;
  std::string control_addr = "127.0.0.1:8081";
  double simulate_hz = 0;
  unsigned players = 4, threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return usage(stdout), 0;
    if (a == "--allow-any-target") {
      udp_opts.allow_any_target = true;
      continue;
    }
    if (i + 1 >= argc)
      return std::fprintf(stderr, "crier_udp_game_server: %s needs a value\n", argv[i]), usage(stderr), 2;
    std::string_view v = argv[++i];
    std::size_t n = 0;
    double d = 0;
    bool ok = true;
    if (a == "--listen") srv_opts.listen = v;
    else if (a == "--control") control_addr = v;
    else if (a == "--udp") udp_opts.udp_bind = v;
    else if (a == "--max-rate" || a == "--default-rate" || a == "--max-burst" || a == "--default-burst" ||
             a == "--simulate") {
      if (!(ok = number(v, d) && d >= 0 && std::isfinite(d))) {
      } else if (a == "--max-rate") udp_opts.max_rate = d;
      else if (a == "--default-rate") udp_opts.default_rate = d;
      else if (a == "--max-burst") udp_opts.max_burst = d;
      else if (a == "--default-burst") udp_opts.default_burst = d;
      else simulate_hz = d;
    } else if (!(ok = number(v, n))) {
    } else if (a == "--max-datagram") udp_opts.max_datagram = n;
    else if (a == "--default-ttl") udp_opts.default_ttl = std::chrono::seconds(n);
    else if (a == "--min-ttl") udp_opts.min_ttl = std::chrono::seconds(n);
    else if (a == "--max-ttl") udp_opts.max_ttl = std::chrono::seconds(n);
    else if (a == "--max-endpoints") udp_opts.max_endpoints = n;
    else if (a == "--max-topics") udp_opts.max_topics = n;
    else if (a == "--max-pending-topics") udp_opts.max_pending_topics = n;
    else if (a == "--history-messages") hub_opts.history.max_messages = n;
    else if (a == "--max-payload") {
      hub_opts.max_payload_bytes = n;
      srv_opts.http.max_body_bytes = std::max(srv_opts.http.max_body_bytes, n);
    } else if (a == "--players") players = static_cast<unsigned>(n);
    else if (a == "--threads") threads = static_cast<unsigned>(std::max<std::size_t>(n, 1));
    else ok = false;
    if (!ok)
      return std::fprintf(stderr, "crier_udp_game_server: bad option %s %s\n", argv[i - 1], argv[i]), usage(stderr),
             2;
  }
  if (udp_opts.max_datagram < udp_game::proto::header_size + 64 || udp_opts.max_datagram > 65507)
    return std::fprintf(stderr, "crier_udp_game_server: --max-datagram must be %zu..65507\n",
                        udp_game::proto::header_size + 64),
           2;
  if (udp_opts.min_ttl.count() < 1 || udp_opts.max_ttl < udp_opts.min_ttl || udp_opts.max_rate <= 0 ||
      udp_opts.default_rate <= 0 || udp_opts.max_burst < 1 || udp_opts.default_burst < 1)
    return std::fprintf(stderr, "crier_udp_game_server: need 1 <= min-ttl <= max-ttl, rates > 0, bursts >= 1\n"),
           2;

  asio::io_context io;
  crier::hub hub{io, hub_opts};
  std::optional<crier::server> server;
  std::optional<udp_game::transport> udp;
  try {
    server.emplace(hub, srv_opts);
    udp.emplace(hub, udp_opts);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "crier_udp_game_server: %s\n", e.what());
    return 1;
  }
  // The registration API: crier::server has no hook for an application's own routes, so it
  // gets its own listener, built from crier's HTTP server on the same strand.
  crier::http::basic_server<crier::hub::executor_type> control{
      hub.get_executor(), {.max_body_bytes = 64 * 1024}, [&](std::shared_ptr<crier::http::exchange> ex) {
        if (!udp->handle(ex))
          ex->respond(crier::http::response::error(404, "not_found", "routes: POST /udp/endpoints, GET /udp/stats, "
                                                                     "GET|DELETE /udp/endpoints/{id}, "
                                                                     "POST /udp/endpoints/{id}/refresh"));
      }};
  if (auto ec = control.listen(control_addr)) {
    std::fprintf(stderr, "crier_udp_game_server: listen on %s: %s\n", control_addr.c_str(), ec.message().c_str());
    return 1;
  }
  auto cep = control.local_endpoints().front();
  std::printf("crier listening on %s\n", server->url().c_str());
  std::printf("udp control on http://%s:%u/udp/endpoints\n", cep.address().to_string().c_str(), cep.port());
  std::printf("udp sending from %s\n", udp_game::detail::to_string(udp->local_endpoint()).c_str());
  std::fflush(stdout);

  // The demo game: players wander on a circle; each tick publishes every player's state.
  asio::steady_timer sim{hub.get_executor()};
  std::uint64_t tick = 0;
  std::function<void()> arm_sim = [&] {
    sim.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(1.0 / simulate_hz)));
    sim.async_wait([&](std::error_code ec) {
      if (ec) return;
      ++tick;
      for (unsigned p = 0; p < players; ++p) {
        double angle = 0.05 * static_cast<double>(tick) + p;
        char buf[128];
        std::snprintf(buf, sizeof buf, R"({"tick":%llu,"x":%.2f,"y":%.2f})", static_cast<unsigned long long>(tick),
                      100 * std::cos(angle), 100 * std::sin(angle));
        hub.publish("game/players/p" + std::to_string(p), buf, {.content_type = "application/json"});
      }
      arm_sim();
    });
  };
  if (simulate_hz > 0) asio::post(hub.get_executor(), arm_sim);

  // SIGINT/SIGTERM: every endpoint gets a `bye` datagram, both HTTP servers drain, the hub stops.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int) {
    if (ec) return;
    asio::post(hub.get_executor(), [&] {
      sim.cancel();
      udp->stop();
      control.stop([&] { server->stop([&] { hub.stop(); }); });
    });
  });

  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  auto& s = udp->stats();
  std::printf("udp_game stopped: registered %llu, datagrams %llu, messages %llu, oversize %llu, skipped %llu\n",
              static_cast<unsigned long long>(s.registered), static_cast<unsigned long long>(s.datagrams),
              static_cast<unsigned long long>(s.messages), static_cast<unsigned long long>(s.oversize),
              static_cast<unsigned long long>(s.skipped));
}
