// exchange::upgrade(): a handler takes the connection over as a raw_stream (WebSocket's entry point).
// Real loopback sockets; reads bounded by poll() timeouts, no sleeps used as synchronisation.

#include <array>

#include "crier/error.hpp"
#include "http_fixture.hpp"

namespace {

using namespace std::chrono_literals;
namespace http = crier::http;

using http_test::client;
using server_fixture = http_test::server_fixture;

// Echoes every byte back; reports how its input ended, then closes.
struct echo_session : std::enable_shared_from_this<echo_session> {
  std::shared_ptr<http::raw_stream> s;
  std::array<char, 256> in{};
  std::string out;
  std::array<asio::const_buffer, 1> wb{};
  std::function<void(std::error_code)> on_end;

  void start() {
    out = s->take_leftover();
    if (out.empty()) read();
    else write();
  }
  void read() {
    s->async_read_some(asio::buffer(in), [self = shared_from_this()](std::error_code ec, std::size_t n) {
      if (ec) return self->end(ec);
      self->out.assign(self->in.data(), n);
      self->write();
    });
  }
  void write() {
    wb[0] = asio::buffer(out);
    s->async_write(wb, [self = shared_from_this()](std::error_code ec, std::size_t n) {
      if (ec) return self->end(ec);
      CHECK(n == self->out.size());
      self->read();
    });
  }
  void end(std::error_code ec) {
    s->close();
    if (auto f = std::exchange(on_end, nullptr)) f(ec);
  }
};

http::response switching() {
  http::response r;
  r.status = 101;
  r.set("Upgrade", "echo").set("Connection", "Upgrade");
  return r;
}

const std::string upgrade_req = "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n";

}  // namespace

TEST_CASE("http upgrade: echo over the raw stream, leftover bytes, peer eof", "[http]") {
  std::promise<std::error_code> ended;
  std::weak_ptr<http::raw_stream> weak;
  bool saw_upgrade = false;
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    saw_upgrade = x->req().upgrade();
    x->upgrade(switching(), [&, x](std::error_code ec, std::shared_ptr<http::raw_stream> s) {
      REQUIRE(!ec);
      REQUIRE(s);
      CHECK(s->is_open());
      CHECK(!x->is_open());  // the exchange is done
      weak = s;
      auto e = std::make_shared<echo_session>();
      e->s = std::move(s);
      e->on_end = [&](std::error_code ec2) { ended.set_value(ec2); };
      e->start();
    });
  });
  client c(f.port);
  c.send(upgrade_req + "hello");  // pipelined behind the request in the same write
  std::string h = c.raw_head();
  CHECK(h.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
  CHECK(h.find("Upgrade: echo\r\n") != std::string::npos);
  CHECK(h.find("Content-Length") == std::string::npos);
  CHECK(h.find("Transfer-Encoding") == std::string::npos);
  CHECK(c.expect("hello"));
  CHECK(saw_upgrade);
  c.send("world, and a bit more");
  CHECK(c.expect("world, and a bit more"));
  CHECK(f.count() == 1);
  c.s.shutdown(asio::socket_base::shutdown_send);
  auto fut = ended.get_future();
  REQUIRE(fut.wait_for(5s) == std::future_status::ready);
  CHECK(fut.get() == asio::error::eof);
  CHECK(c.wait_closed());
  CHECK(f.count() == 0);
  CHECK(f.on_server([&] { return weak.expired(); }));
}

TEST_CASE("http upgrade: a plain request can be upgraded; close() frees the connection", "[http]") {
  std::shared_ptr<http::raw_stream> held;
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    CHECK(!x->req().upgrade());
    x->upgrade(switching(), [&](std::error_code ec, std::shared_ptr<http::raw_stream> s) {
      REQUIRE(!ec);
      held = s;
      auto e = std::make_shared<echo_session>();
      e->s = std::move(s);
      e->start();
    });
  });
  client c(f.port);
  c.send("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(c.raw_head().rfind("HTTP/1.1 101 ", 0) == 0);
  c.send("ping");  // after the 101: the HTTP connection's idle read was cancelled, not fed this
  CHECK(c.expect("ping"));
  CHECK(f.count() == 1);
  std::weak_ptr<http::raw_stream> weak = held;
  f.on_server([&] {
    held->close();
    CHECK(!held->is_open());
    held.reset();
    return 0;
  });
  CHECK(c.wait_closed());
  CHECK(f.count() == 0);
  CHECK(f.on_server([&] { return weak.expired(); }));  // the aborted read released the session
}

TEST_CASE("http upgrade: graceful stop reaches the raw stream through on_stop", "[http]") {
  std::promise<void> stop_seen;
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    x->upgrade(switching(), [&](std::error_code ec, std::shared_ptr<http::raw_stream> s) {
      REQUIRE(!ec);
      s->on_stop([&, s] {  // the callback may own the stream: close() drops it
        stop_seen.set_value();
        static const std::string bye = "bye";
        static const std::array<asio::const_buffer, 1> b{asio::buffer(bye)};
        s->async_write(b, [s](std::error_code, std::size_t) {
          s->shutdown_send();
          s->close();
        });
      });
    });
  });
  client c(f.port);
  c.send(upgrade_req);
  CHECK(c.raw_head().rfind("HTTP/1.1 101 ", 0) == 0);
  CHECK(f.count() == 1);
  std::promise<void> done;
  asio::post(f.io, [&] { f.srv->stop([&] { done.set_value(); }); });
  REQUIRE(stop_seen.get_future().wait_for(5s) == std::future_status::ready);
  CHECK(c.expect("bye"));
  CHECK(c.wait_closed());
  REQUIRE(done.get_future().wait_for(5s) == std::future_status::ready);
  CHECK(f.count() == 0);
}

TEST_CASE("http upgrade: stop force-closes a raw stream that ignores on_stop", "[http]") {
  http::server_options o;
  o.shutdown_timeout = 100ms;
  std::shared_ptr<http::raw_stream> held;
  std::promise<std::error_code> read_ec;
  server_fixture f(o, [&](std::shared_ptr<http::exchange> x) {
    x->upgrade(switching(), [&](std::error_code ec, std::shared_ptr<http::raw_stream> s) {
      REQUIRE(!ec);
      held = s;
      static std::array<char, 16> in;
      s->async_read_some(asio::buffer(in), [&](std::error_code e, std::size_t) { read_ec.set_value(e); });
    });
  });
  client c(f.port);
  c.send(upgrade_req);
  CHECK(c.raw_head().rfind("HTTP/1.1 101 ", 0) == 0);
  std::promise<void> done;
  asio::post(f.io, [&] { f.srv->stop([&] { done.set_value(); }); });
  REQUIRE(done.get_future().wait_for(5s) == std::future_status::ready);
  auto fut = read_ec.get_future();
  REQUIRE(fut.wait_for(5s) == std::future_status::ready);
  CHECK(fut.get() == asio::error::operation_aborted);
  CHECK(c.wait_closed());
  CHECK(f.count() == 0);
  f.on_server([&] {
    CHECK(!held->is_open());
    held.reset();
    return 0;
  });
}

TEST_CASE("http upgrade: refused after the exchange answered, or with requests pipelined behind", "[http]") {
  std::promise<std::error_code> late, piped;
  int n = 0;
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    if (++n == 1) {
      x->respond(http::response::json(200, "{}"));
      x->upgrade(switching(), [&](std::error_code ec, std::shared_ptr<http::raw_stream> s) {
        CHECK(!s);
        late.set_value(ec);
      });
    } else if (n == 2) {
      x->upgrade(switching(), [&, x](std::error_code ec, std::shared_ptr<http::raw_stream> s) {
        CHECK(!s);
        piped.set_value(ec);
        x->respond(http::response::json(200, "{}"));  // still pending: answer normally
      });
    } else {
      x->respond(http::response::json(200, "{}"));
    }
  });
  client c(f.port);
  c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  auto a = late.get_future();
  REQUIRE(a.wait_for(5s) == std::future_status::ready);
  // The answer is still being written (in_progress) or, written at once, ended the exchange
  // (not_connected): refused either way.
  auto late_ec = a.get();
  CHECK((late_ec == asio::error::in_progress || late_ec == asio::error::not_connected));
  CHECK(c.raw_head().rfind("HTTP/1.1 200 ", 0) == 0);
  CHECK(c.expect("{}"));
  c.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  auto b = piped.get_future();
  REQUIRE(b.wait_for(5s) == std::future_status::ready);
  CHECK(b.get() == asio::error::operation_not_supported);
  CHECK(c.raw_head().rfind("HTTP/1.1 200 ", 0) == 0);
  CHECK(c.expect("{}"));
  CHECK(c.raw_head().rfind("HTTP/1.1 200 ", 0) == 0);
  CHECK(c.expect("{}"));
}
