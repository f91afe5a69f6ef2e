// Test helpers shared by the HTTP tests: a server on its own thread and a raw blocking client
// whose reads are bounded by poll() timeouts (no sleeps used as synchronisation).
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <crier/detail/asio.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crier/http/server.hpp"

namespace http_test {

using namespace std::chrono_literals;
namespace http = crier::http;

// A blocking client on its own io_context: writes `request`, reads until `until` appears (or
// the connection ends), returns what it read. The server runs on the test's io_context.
inline std::string exchange_bytes(asio::ip::tcp::endpoint ep, std::string request, std::string_view until) {
  asio::io_context cio;
  asio::ip::tcp::socket s(cio);
  s.connect(ep);
  asio::write(s, asio::buffer(request));
  std::string out;
  char buf[4096];
  std::error_code ec;
  while (out.find(until) == std::string::npos) {
    auto n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

struct server_fixture {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};  // outlive stop()
  std::unique_ptr<http::server> srv;
  std::thread th;
  unsigned short port = 0;

  server_fixture(http::server_options o, http::handler h) {
    srv = std::make_unique<http::server>(io.get_executor(), o, std::move(h));
    auto ec = srv->listen("127.0.0.1:0");
    REQUIRE(!ec);
    port = srv->local_endpoints().at(0).port();
    th = std::thread([this] { io.run(); });
  }
  ~server_fixture() {
    asio::post(io, [this] {
      srv.reset();
      io.stop();
    });
    th.join();
  }
  // Runs f on the server's executor and waits for it.
  template <class F>
  auto on_server(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    asio::post(io, [&task] { task(); });
    REQUIRE(fut.wait_for(5s) == std::future_status::ready);
    return fut.get();
  }
  std::size_t count() {
    return on_server([this] { return srv->connection_count(); });
  }
};

struct reply {
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::optional<std::string> header(std::string_view n) const {
    for (auto& [k, v] : headers)
      if (crier::http::detail::iequals(k, n)) return v;
    return std::nullopt;
  }
};

struct client {
  asio::io_context cio;
  asio::ip::tcp::socket s{cio};
  std::string buf;
  bool closed = false;

  explicit client(unsigned short port) { s.connect({asio::ip::address_v4::loopback(), port}); }
  void send(std::string_view d) { asio::write(s, asio::buffer(d)); }

  // Reads what is available within `t`; false on timeout or EOF.
  bool fill(std::chrono::milliseconds t = 5000ms) {
    if (closed) return false;
    pollfd p{s.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(t.count())) <= 0) return false;
    char tmp[65536];
    auto n = ::recv(s.native_handle(), tmp, sizeof tmp, 0);
    if (n <= 0) {
      closed = true;
      return false;
    }
    buf.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
  // True if the server closes the connection within t (data before the close is kept in buf).
  bool wait_closed(std::chrono::milliseconds t = 5000ms) {
    auto end = std::chrono::steady_clock::now() + t;
    while (!closed && std::chrono::steady_clock::now() < end)
      fill(std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()));
    return closed;
  }

  // Status line and headers only; body bytes stay in buf.
  std::optional<reply> read_head(std::chrono::milliseconds t = 5000ms) {
    auto end = std::chrono::steady_clock::now() + t;
    std::size_t pos;
    while ((pos = buf.find("\r\n\r\n")) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= end || !fill(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                         end - std::chrono::steady_clock::now())))
        return std::nullopt;
    }
    std::string head = buf.substr(0, pos + 2);
    buf.erase(0, pos + 4);
    reply r;
    auto eol = head.find("\r\n");
    r.status = static_cast<unsigned>(std::stoul(head.substr(9, 3)));
    for (std::size_t i = eol + 2; i < head.size();) {
      auto e = head.find("\r\n", i);
      auto line = head.substr(i, e - i);
      auto c = line.find(':');
      r.headers.emplace_back(line.substr(0, c), line.substr(c + 2));
      i = e + 2;
    }
    return r;
  }
  // The raw response head (up to the blank line), removed from buf; "" on timeout.
  std::string raw_head(std::chrono::milliseconds t = 5000ms) {
    auto end = std::chrono::steady_clock::now() + t;
    std::size_t pos;
    while ((pos = buf.find("\r\n\r\n")) == std::string::npos)
      if (!need(buf.size() + 1, end)) return {};
    std::string h = buf.substr(0, pos + 4);
    buf.erase(0, pos + 4);
    return h;
  }
  // Waits until buf starts with `want` (then removes it); false after t.
  bool expect(std::string_view want, std::chrono::milliseconds t = 5000ms) {
    if (!need(want.size(), std::chrono::steady_clock::now() + t)) return false;
    if (buf.compare(0, want.size(), want) != 0) return false;
    buf.erase(0, want.size());
    return true;
  }
  bool need(std::size_t n, std::chrono::steady_clock::time_point end) {
    while (buf.size() < n) {
      auto now = std::chrono::steady_clock::now();
      if (now >= end || !fill(std::chrono::duration_cast<std::chrono::milliseconds>(end - now))) return false;
    }
    return true;
  }
  // One chunk of a chunked body; "" for the last chunk, nullopt on timeout.
  std::optional<std::string> read_chunk(std::chrono::milliseconds t = 5000ms) {
    auto end = std::chrono::steady_clock::now() + t;
    std::size_t eol;
    while ((eol = buf.find("\r\n")) == std::string::npos)
      if (!need(buf.size() + 1, end)) return std::nullopt;
    std::size_t size = std::stoul(buf.substr(0, eol), nullptr, 16);
    if (!need(eol + 2 + size + 2, end)) return std::nullopt;
    std::string data = buf.substr(eol + 2, size);
    buf.erase(0, eol + 2 + size + 2);
    return data;
  }
  // A whole response (Content-Length, chunked or until close).
  std::optional<reply> read_response(std::chrono::milliseconds t = 5000ms) {
    auto end = std::chrono::steady_clock::now() + t;
    auto r = read_head(t);
    if (!r) return r;
    if (auto cl = r->header("content-length")) {
      std::size_t n = std::stoul(*cl);
      if (!need(n, end)) return std::nullopt;
      r->body = buf.substr(0, n);
      buf.erase(0, n);
    } else if (r->header("transfer-encoding")) {
      while (auto c = read_chunk()) {
        if (c->empty()) return r;
        r->body += *c;
      }
      return std::nullopt;
    } else if (r->status >= 200 && r->status != 204 && r->status != 304) {
      wait_closed(std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()));
      r->body = std::move(buf);
      buf.clear();
    }
    return r;
  }
};

}  // namespace http_test
