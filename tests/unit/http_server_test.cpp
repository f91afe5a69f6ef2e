// HTTP server tests, on the shared fixture and raw client of http_fixture.hpp.

#include "http_fixture.hpp"

using namespace http_test;

namespace {

std::string get(std::string_view target, std::string_view extra = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: x\r\n" + std::string(extra) + "\r\n";
}

// Echo handler: body "<method> <path> <body>".
void echo(std::shared_ptr<http::exchange> x) {
  auto& r = x->req();
  x->respond(http::response::json(200, std::string(r.method()) + " " + std::string(r.path()) + " " + r.body()));
}

}  // namespace

TEST_CASE("http: keep-alive, request accessors", "[http]") {
  std::promise<std::string> seen;
  bool first = true;
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    auto& r = x->req();
    if (first) {
      first = false;
      seen.set_value(std::string(r.target()) + "|" + std::string(r.query()) + "|" + r.query_param("a").value_or("-") +
                     "|" + std::string(r.header("x-TEST").value_or("-")) + "|" + std::to_string(r.version()));
    }
    echo(x);
  });
  client c(f.port);
  c.send(get("/p/q?a=b%20c+d&e", "X-Test: v  \r\n"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "GET /p/q ");
  CHECK(r->header("content-type") == "application/json");
  CHECK(!r->header("connection"));
  CHECK(seen.get_future().get() == "/p/q?a=b%20c+d&e|a=b%20c+d&e|b c d|v|11");
  c.send("POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "POST /two abc");
  c.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
  r = c.read_head();
  REQUIRE(r);
  CHECK(r->header("content-length") == "8");
  c.send(get("/after-head", "Connection: close\r\n"));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "GET /after-head ");
  CHECK(r->header("connection") == "close");
  CHECK(c.wait_closed());
}

TEST_CASE("http: HTTP/1.0 closes unless keep-alive is asked", "[http]") {
  server_fixture f({}, echo);
  {
    client c(f.port);
    c.send("GET /a HTTP/1.0\r\n\r\n");
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->header("connection") == "close");
    CHECK(c.wait_closed());
  }
  client c(f.port);
  c.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->header("connection") == "keep-alive");
  c.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "GET /b ");
}

TEST_CASE("http: pipelined requests answered in order, first one delayed", "[http]") {
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    if (x->req().path() == "/slow") {
      auto t = std::make_shared<asio::steady_timer>(x->get_executor(), 50ms);
      t->async_wait([x, t](std::error_code) { echo(x); });
      return;
    }
    echo(x);
  });
  client c(f.port);
  c.send(get("/slow") + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" + get("/c"));
  for (auto want : {"GET /slow ", "POST /b hi", "GET /c "}) {
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->body == want);
  }
}

TEST_CASE("http: chunked request body with trailer", "[http]") {
  server_fixture f({}, echo);
  client c(f.port);
  c.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n");
  c.send("A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "POST /c abc0123456789");
}

TEST_CASE("http: Expect 100-continue", "[http]") {
  http::server_options o;
  o.max_body_bytes = 1000;
  server_fixture f(o, echo);
  {
    client c(f.port);
    c.send("PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    auto r = c.read_head();
    REQUIRE(r);
    CHECK(r->status == 100);
    c.send("hello");
    r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "PUT /e hello");
  }
  client c(f.port);
  c.send("PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 413);
  CHECK(r->body.find("\"code\":\"body_too_large\"") != std::string::npos);
  CHECK(c.wait_closed());
}

namespace {
// Sends `raw` on a fresh connection; returns the status of the error and checks the close.
unsigned status_of(unsigned short port, const std::string& raw, std::string* body = nullptr) {
  client c(port);
  c.send(raw);
  auto r = c.read_response();
  if (!r) return 0;
  if (body) *body = r->body;
  if (r->status >= 400) {
    CHECK(r->header("connection") == "close");
    CHECK(r->header("content-type") == "application/json");
    CHECK(c.wait_closed());
  }
  return r->status;
}
}  // namespace

TEST_CASE("http: limits give precise JSON errors and close", "[http]") {
  http::server_options o;
  o.max_request_line = 100;
  o.max_header_bytes = 1000;
  o.max_headers = 5;
  o.max_body_bytes = 10;
  o.require_length = true;
  server_fixture f(o, echo);
  std::string body;
  CHECK(status_of(f.port, get("/" + std::string(200, 'a')), &body) == 414);
  CHECK(body == R"({"error":{"status":414,"code":"uri_too_long","message":"request target longer than 100 bytes"}})");
  CHECK(status_of(f.port, get("/", "X-Big: " + std::string(2000, 'b') + "\r\n"), &body) == 431);
  CHECK(body.find("header_too_large") != std::string::npos);
  std::string many;
  for (int i = 0; i < 6; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(status_of(f.port, get("/", many), &body) == 431);
  CHECK(body.find("too_many_headers") != std::string::npos);
  CHECK(status_of(f.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n") == 413);
  CHECK(status_of(f.port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n") ==
        413);
  CHECK(status_of(f.port, "POST / HTTP/1.1\r\nHost: x\r\n\r\n", &body) == 411);
  CHECK(body.find("length_required") != std::string::npos);
  // Still serving.
  CHECK(status_of(f.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok") == 200);
}

TEST_CASE("http: slowloris head gets 408, silent idle close", "[http]") {
  http::server_options o;
  o.header_timeout = 200ms;
  o.idle_timeout = 200ms;
  server_fixture f(o, echo);
  client c(f.port);
  c.send("GET / HTTP/1.1\r\nHost: x\r\n");
  auto r = c.read_response(3000ms);
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(r->body.find("header_timeout") != std::string::npos);
  CHECK(c.wait_closed());
  client idle(f.port);
  idle.send(get("/"));
  REQUIRE(idle.read_response());
  CHECK(idle.wait_closed(3000ms));
  CHECK(idle.buf.empty());
}

TEST_CASE("http: too many connections -> 503", "[http]") {
  http::server_options o;
  o.max_connections = 1;
  server_fixture f(o, echo);
  client a(f.port);
  a.send(get("/"));
  REQUIRE(a.read_response());
  std::string body;
  CHECK(status_of(f.port, get("/"), &body) == 503);
  CHECK(body.find("too_many_connections") != std::string::npos);
  a.send(get("/again"));
  auto r = a.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("http: malformed requests are refused with 400", "[http]") {
  server_fixture f({}, echo);
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"CL + TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {"two different CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"},
      {"invalid CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\na"},
      {"negative CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\na"},
      {"two Host", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
      {"no Host on 1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n"},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"},
      {"bare CR", "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"},
      {"bare LF", "GET / HTTP/1.1\nHost: x\n\n"},
      {"NUL in value", std::string("GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 35)},
      {"NUL in target", std::string("GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n", 28)},
      {"bad header name", "GET / HTTP/1.1\r\nHost: x\r\nX(y): b\r\n\r\n"},
      {"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX : b\r\n\r\n"},
      {"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
      {"TE not chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nab"},
      {"TE chunked not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"},
      {"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {"garbage", "HELLO\r\n\r\n"},
  };
  for (auto& [name, raw] : cases) {
    INFO(name);
    std::string body;
    CHECK(status_of(f.port, raw, &body) == 400);
    CHECK(body.find("\"code\":\"bad_request\"") != std::string::npos);
  }
  std::string body;
  CHECK(status_of(f.port, "GET / HTTP/2.0\r\nHost: x\r\n\r\n") == 505);
  // An error after a good pipelined request: the good one is answered first.
  client c(f.port);
  c.send(get("/ok") + "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(c.wait_closed());
  CHECK(status_of(f.port, get("/still")) == 200);
}

TEST_CASE("http: streaming response, then keep-alive continues", "[http]") {
  server_fixture f({}, [](std::shared_ptr<http::exchange> x) {
    if (x->req().path() != "/stream") return echo(x);
    x->start_stream(http::response{}.set("Content-Type", "text/plain"));
    // Two writes: the second one a gather of two buffers; the bytes live in the callbacks' captures.
    auto one = std::make_shared<std::string>("hello ");
    std::array<asio::const_buffer, 1> b1{asio::buffer(*one)};
    x->async_write(b1, [x, one](std::error_code ec) {
      REQUIRE(!ec);
      auto parts = std::make_shared<std::array<std::string, 2>>(std::array<std::string, 2>{"wor", "ld"});
      std::array<asio::const_buffer, 2> b2{asio::buffer((*parts)[0]), asio::buffer((*parts)[1])};
      x->async_write(b2, [x, parts](std::error_code ec2) {
        REQUIRE(!ec2);
        x->finish_stream();
      });
    });
  });
  client c(f.port);
  c.send(get("/stream"));
  auto h = c.read_head();
  REQUIRE(h);
  CHECK(h->header("transfer-encoding") == "chunked");
  CHECK(c.read_chunk() == "hello ");
  CHECK(c.read_chunk() == "world");
  CHECK(c.read_chunk() == "");
  c.send(get("/next"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "GET /next ");
  // HTTP/1.0: the body runs until the close.
  client d(f.port);
  d.send("GET /stream HTTP/1.0\r\n\r\n");
  r = d.read_response();
  REQUIRE(r);
  CHECK(r->body == "hello world");
  CHECK(!r->header("transfer-encoding"));
}

TEST_CASE("http: peer close reaches a pending exchange", "[http]") {
  std::promise<std::error_code> closed;
  std::shared_ptr<http::exchange> held;
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    held = x;  // a long-poll: no answer yet
    x->on_close([&](std::error_code ec) { closed.set_value(ec); });
  });
  {
    client c(f.port);
    c.send(get("/wait"));
    auto n = f.on_server([&] { return held != nullptr; });
    (void)n;
  }
  auto fut = closed.get_future();
  REQUIRE(fut.wait_for(5s) == std::future_status::ready);
  CHECK(fut.get());
  f.on_server([&] {
    held->respond(http::response{});  // ignored, harmless
    held.reset();
    return 0;
  });
}

TEST_CASE("http: handler dropping the exchange yields 500", "[http]") {
  server_fixture f({}, [](std::shared_ptr<http::exchange>) {});
  std::string body;
  CHECK(status_of(f.port, get("/"), &body) == 500);
}

TEST_CASE("http: graceful stop ends a stream cleanly", "[http]") {
  std::promise<std::error_code> stop_seen;
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    x->start_stream(http::response{});
    if (x->req().path() != "/s") return;
    x->on_close([x, &stop_seen](std::error_code ec) {
      stop_seen.set_value(ec);
      static const std::string bye = "bye";
      std::array<asio::const_buffer, 1> b{asio::buffer(bye)};
      x->async_write(b, [x](std::error_code) { x->finish_stream(); });
    });
  });
  client c(f.port);
  c.send(get("/s"));
  REQUIRE(c.read_head());
  client idle(f.port);
  idle.send(get("/s2"));  // a second stream; closed by its own client below
  REQUIRE(idle.read_head());
  idle.s.close();
  std::promise<void> done;
  asio::post(f.io, [&] { f.srv->stop([&] { done.set_value(); }); });
  auto ec = stop_seen.get_future().get();
  CHECK(ec == crier::errc::server_stopping);
  CHECK(c.read_chunk() == "bye");
  CHECK(c.read_chunk() == "");
  CHECK(c.wait_closed());
  REQUIRE(done.get_future().wait_for(5s) == std::future_status::ready);
  CHECK(f.on_server([&] { return f.srv->connection_count(); }) == 0);
}

TEST_CASE("http: stop forces connections closed after shutdown_timeout", "[http]") {
  http::server_options o;
  o.shutdown_timeout = 100ms;
  std::shared_ptr<http::exchange> held;
  server_fixture f(o, [&](std::shared_ptr<http::exchange> x) { held = x; });  // never answers
  client c(f.port);
  c.send(get("/hang"));
  f.on_server([&] { return held != nullptr; });
  std::promise<void> done;
  asio::post(f.io, [&] { f.srv->stop([&] { done.set_value(); }); });
  REQUIRE(done.get_future().wait_for(5s) == std::future_status::ready);
  CHECK(c.wait_closed());
  f.on_server([&] {
    held.reset();
    return 0;
  });
}

TEST_CASE("http: adopt() with bytes already read", "[http]") {
  server_fixture f({}, echo);
  asio::io_context other;
  asio::ip::tcp::acceptor acc(other, {asio::ip::address_v4::loopback(), 0});
  client c(acc.local_endpoint().port());
  asio::ip::tcp::socket s(other);
  acc.accept(s);
  c.send("T /adopted HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok");
  f.srv->adopt(std::move(s), "GE");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "GET /adopted ok");
  c.send(get("/second"));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "GET /second ");
}

TEST_CASE("http: idle and streaming connections stay small", "[http]") {
  std::shared_ptr<http::exchange> held;
  server_fixture f({}, [&](std::shared_ptr<http::exchange> x) {
    if (x->req().path() == "/stream") {
      x->start_stream(http::response{});
      held = x;
      return;
    }
    echo(x);
  });
  client idle(f.port);
  idle.send(get("/a", "User-Agent: test\r\nAccept: */*\r\n"));
  REQUIRE(idle.read_response());
  auto per_idle = f.on_server([&] { return f.srv->memory_footprint(); });
  INFO("idle connection: " << per_idle << " bytes");
  CHECK(per_idle < 1024);
  client s(f.port);
  s.send(get("/stream", "Accept: text/event-stream\r\n"));
  REQUIRE(s.read_head());
  auto both = f.on_server([&] { return f.srv->memory_footprint(); });
  INFO("idle + streaming: " << both << " bytes");
  CHECK(both - per_idle < 1024);
  f.on_server([&] {
    held->finish_stream();
    held.reset();
    return 0;
  });
  CHECK(s.read_chunk() == "");
}
