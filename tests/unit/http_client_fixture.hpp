// Test helpers of the HTTP client tests: small loopback servers on raw Asio sockets (coroutines),
// so that each test can misbehave precisely, and a bounded run loop. Client and servers share one
// io_context on the test thread; every wait is bounded by run_until(), none is a sleep.
#pragma once

#include <crier/detail/asio.hpp>

#include <asio/experimental/as_tuple.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crier/http/client.hpp"

// GCC 12 with -fsanitize=address flags the frames of asio::awaitable coroutines (allocated through
// asio::aligned_new, freed by the frame's own sized operator delete) as mismatched: a false
// positive. Only the test coroutines of the files including this header are concerned.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace client_test {

using namespace std::chrono_literals;
namespace http = crier::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
constexpr auto tuple_aw = asio::experimental::as_tuple(asio::use_awaitable);

template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    auto now = std::chrono::steady_clock::now();
    if (now >= end) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(end - now);
  }
  return true;
}

// ---- server side ----
struct raw_request {
  std::string head, body;
  bool has(std::string_view line) const { return head.find(line) != std::string::npos; }
};

// Reads one request (head + Content-Length body); nullopt when the client closed.
template <class Stream>
awaitable<std::optional<raw_request>> read_request(Stream& s, std::string& buf) {
  for (;;) {
    auto pos = buf.find("\r\n\r\n");
    if (pos != std::string::npos) {
      raw_request r;
      r.head = buf.substr(0, pos + 4);
      std::size_t len = 0;
      if (auto cl = r.head.find("Content-Length: "); cl != std::string::npos)
        len = std::stoul(r.head.substr(cl + 16));
      if (buf.size() >= pos + 4 + len) {
        r.body = buf.substr(pos + 4, len);
        buf.erase(0, pos + 4 + len);
        co_return r;
      }
    }
    char tmp[4096];
    auto [ec, n] = co_await s.async_read_some(asio::buffer(tmp), tuple_aw);
    if (ec) co_return std::nullopt;
    buf.append(tmp, n);
  }
}

template <class Stream>
awaitable<bool> send(Stream& s, std::string_view d) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(d), tuple_aw);
  co_return !ec;
}

inline std::string ok(std::string_view body = "ok", std::string_view extra = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + std::string(extra) +
         "\r\n" + std::string(body);
}

// Accepts forever; runs `serve(socket, index of the connection)` for each connection.
struct test_server {
  using behaviour = std::function<awaitable<void>(tcp::socket, int)>;
  tcp::acceptor acc;
  behaviour serve;
  int accepted = 0;
  int requests = 0;  // for behaviours that count them
  unsigned short port = 0;

  test_server(asio::io_context& io, behaviour b, int backlog = asio::socket_base::max_listen_connections)
      : acc(io), serve(std::move(b)) {
    tcp::endpoint ep(asio::ip::address_v4::loopback(), 0);
    acc.open(ep.protocol());
    acc.bind(ep);
    acc.listen(backlog);
    port = acc.local_endpoint().port();
    if (serve) asio::co_spawn(io, accept_loop(), asio::detached);
  }
  ~test_server() {
    std::error_code ig;
    acc.close(ig);
  }
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acc.async_accept(tuple_aw);
      if (ec) co_return;
      int i = accepted++;
      asio::co_spawn(acc.get_executor(), serve(std::move(s), i), asio::detached);
    }
  }
  std::string url(std::string_view path = "/", std::string_view host = "127.0.0.1",
                  std::string_view scheme = "http") const {
    return std::string(scheme) + "://" + std::string(host) + ":" + std::to_string(port) + std::string(path);
  }
};

// Answers every request on every connection with `reply` (keep-alive), counting requests.
inline test_server::behaviour answer_all(test_server*& self,
                                         std::function<std::string(const raw_request&)> reply,
                                         std::vector<raw_request>* seen = nullptr) {
  return [&self, reply, seen](tcp::socket s, int) -> awaitable<void> {
    std::string buf;
    while (auto r = co_await read_request(s, buf)) {
      ++self->requests;
      if (seen) seen->push_back(*r);
      if (!co_await send(s, reply(*r))) co_return;
    }
  };
}

// ---- client side ----
struct outcome {
  bool done = false;
  std::error_code ec;
  http::client_response res;
};

template <class Client>
std::shared_ptr<outcome> start(Client& c, http::client_request r) {
  auto o = std::make_shared<outcome>();
  c.async_request(std::move(r), [o](std::error_code ec, http::client_response res) {
    REQUIRE_FALSE(o->done);
    o->done = true;
    o->ec = ec;
    o->res = std::move(res);
  });
  return o;
}

template <class Client>
outcome fetch(asio::io_context& io, Client& c, http::client_request r) {
  auto o = start(c, std::move(r));
  REQUIRE(run_until(io, [&] { return o->done; }));
  return *o;
}

inline http::client_request get(std::string url) { return {"GET", std::move(url), {}, {}}; }

}  // namespace client_test
