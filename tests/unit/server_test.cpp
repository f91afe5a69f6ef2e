// The front door in-process: adopt() of a socket the application accepted, async_publish,
// and a custom transport registered next to the built-ins.
#include <crier/crier.hpp>

#include <catch2/catch.hpp>

#include "http_fixture.hpp"
#include "line_transport.hpp"

#include <future>
#include <thread>

namespace {
using tcp = asio::ip::tcp;
using http_test::exchange_bytes;
}  // namespace

TEST_CASE("server: adopt() serves a socket the application accepted, with bytes it read", "[server]") {
  asio::io_context io;
  crier::hub hub{io};
  crier::server server{hub, {.listen = ""}};  // no listener of its own
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  acceptor.async_accept([&](std::error_code ec, tcp::socket s) {
    REQUIRE(!ec);
    // the application peeked at the first bytes to route the connection, then hands it over
    char first[4];
    asio::read(s, asio::buffer(first));
    server.adopt(std::move(s), std::string_view(first, 4));
  });
  auto client = std::async(std::launch::async, [ep = acceptor.local_endpoint()] {
    return exchange_bytes(ep, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "\"ok\"");
  });
  while (client.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) io.run_one_for(std::chrono::milliseconds(50));
  auto resp = client.get();
  CHECK(resp.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(resp.find(R"({"status":"ok"})") != std::string::npos);
}

TEST_CASE("server: a custom transport streams alongside the built-ins", "[server]") {
  asio::io_context io;
  crier::hub hub{io};
  crier::server server{hub, {.listen = "127.0.0.1:0"}};
  server.add_transport(crier_test::line_transport{});
  auto ep = server.local_endpoints().front();
  auto client = std::async(std::launch::async, [ep] {
    return exchange_bytes(ep, "GET /topics/x,y HTTP/1.1\r\nHost: h\r\nAccept: text/x-lines\r\n\r\n", "y two\n");
  });
  // publish once the stream is subscribed: poll the hub's own state on its strand
  bool published = false;
  while (client.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    io.run_one_for(std::chrono::milliseconds(20));
    if (!published && server.stream_count() == 1) {
      hub.publish("x", "one");
      hub.publish("y", "two");
      published = true;
    }
  }
  auto resp = client.get();
  CHECK(resp.find("Content-Type: text/x-lines") != std::string::npos);
  CHECK(resp.find("x one\r\n") == std::string::npos);  // frames are chunk bodies, not lines with CRLF
  CHECK(resp.find("x one\n") != std::string::npos);
  CHECK(resp.find("x one\n") < resp.find("y two\n"));
}

TEST_CASE("hub: async_publish completes with the id", "[core][hub]") {
  asio::io_context io;
  crier::hub hub{io};
  crier::message_id got;
  std::error_code err = crier::errc::invalid_id;
  hub.async_publish("a", "x", {}, [&](std::error_code ec, crier::message_id id) {
    err = ec;
    got = id;
  });
  std::error_code bad;
  hub.async_publish("not valid", "x", {}, [&](std::error_code ec, crier::message_id) { bad = ec; });
  io.run();
  CHECK(!err);
  CHECK(got.seq == 1);
  CHECK(bad == crier::errc::invalid_topic);
}
