// crier::http::client against misbehaving loopback servers (see http_client_fixture.hpp).
#include "http_client_fixture.hpp"

using namespace client_test;

TEST_CASE("client: request format and keep-alive reuse", "[http_client]") {
  asio::io_context io;
  test_server* srv = nullptr;
  std::vector<raw_request> seen;
  test_server server(
      io, answer_all(
              srv, [](const raw_request& r) { return ok(r.body.empty() ? "empty" : r.body); }, &seen));
  srv = &server;
  http::client c(io.get_executor());
  for (int i = 0; i < 5; ++i) {
    auto o =
        fetch(io, c, {"POST", server.url("/hook?x=1#frag"), {{"X-Test", "yes"}}, "body" + std::to_string(i)});
    REQUIRE(!o.ec);
    CHECK(o.res.status == 200);
    CHECK(o.res.body == "body" + std::to_string(i));
    CHECK(o.res.header("content-LENGTH") == "5");
    CHECK_FALSE(o.res.body_truncated);
  }
  CHECK(server.accepted == 1);
  CHECK(c.open_connections() == 1);
  REQUIRE(seen.size() == 5);
  CHECK(seen[0].head.rfind("POST /hook?x=1 HTTP/1.1\r\n", 0) == 0);
  CHECK(seen[0].has("\r\nHost: 127.0.0.1:" + std::to_string(server.port) + "\r\n"));
  CHECK(seen[0].has("\r\nUser-Agent: crier\r\n"));
  CHECK(seen[0].has("\r\nX-Test: yes\r\n"));
  CHECK(seen[0].has("\r\nContent-Length: 5\r\n"));
  // A GET without a body carries no Content-Length.
  auto o = fetch(io, c, get(server.url("/g")));
  REQUIRE(!o.ec);
  CHECK(o.res.body == "empty");
  CHECK_FALSE(seen.back().has("Content-Length"));
}

TEST_CASE("client: per-origin cap under 50 concurrent requests", "[http_client]") {
  asio::io_context io;
  int active = 0, max_active = 0;
  test_server server(io, [&](tcp::socket s, int) -> awaitable<void> {
    max_active = std::max(max_active, ++active);
    std::string buf;
    while (auto r = co_await read_request(s, buf))
      if (!co_await send(s, ok(r->body))) break;
    --active;
  });
  http::client_options opts;
  opts.max_connections_per_origin = 4;
  http::client c(io.get_executor(), opts);
  std::vector<std::shared_ptr<outcome>> all;
  for (int i = 0; i < 50; ++i) all.push_back(start(c, {"POST", server.url(), {}, std::to_string(i)}));
  CHECK(c.open_connections() <= 4);
  REQUIRE(run_until(io, [&] {
    for (auto& o : all)
      if (!o->done) return false;
    return true;
  }));
  for (int i = 0; i < 50; ++i) {
    CHECK(!all[i]->ec);
    CHECK(all[i]->res.body == std::to_string(i));
  }
  CHECK(server.accepted == 4);
  CHECK(max_active == 4);
  CHECK(c.open_connections() == 4);  // all 4 kept idle (max_idle_per_origin = 8)

  SECTION("idle connections beyond max_idle_per_origin are closed, the rest after idle_timeout") {
    http::client_options o2;
    o2.max_connections_per_origin = 3;
    o2.max_idle_per_origin = 1;
    o2.idle_timeout = 100ms;
    http::client c2(io.get_executor(), o2);
    std::vector<std::shared_ptr<outcome>> three;
    for (int i = 0; i < 3; ++i) three.push_back(start(c2, get(server.url())));
    REQUIRE(run_until(io, [&] { return three[0]->done && three[1]->done && three[2]->done; }));
    CHECK(c2.open_connections() == 1);
    REQUIRE(run_until(io, [&] { return c2.open_connections() == 0; }));
  }
  SECTION("a full queue fails new requests with too_many_connections") {
    http::client_options o2;
    o2.max_connections_per_origin = 1;
    o2.max_queued_per_origin = 2;
    http::client c2(io.get_executor(), o2);
    std::vector<std::shared_ptr<outcome>> four;
    for (int i = 0; i < 4; ++i) four.push_back(start(c2, get(server.url())));
    REQUIRE(run_until(io, [&] { return four[0]->done && four[1]->done && four[2]->done && four[3]->done; }));
    CHECK(!four[0]->ec);
    CHECK(!four[1]->ec);
    CHECK(!four[2]->ec);
    CHECK(four[3]->ec == crier::errc::too_many_connections);
  }
}

TEST_CASE("client: content-length, chunked and until-close bodies; 1xx, 3xx, HEAD, 204", "[http_client]") {
  asio::io_context io;
  std::string reply;
  test_server* srv = nullptr;
  test_server server(io, answer_all(srv, [&](const raw_request&) { return reply; }));
  srv = &server;
  http::client c(io.get_executor());
  auto once = [&](std::string r, http::client_request req = {}) {
    reply = std::move(r);
    if (req.url.empty()) req = get(server.url());
    return fetch(io, c, std::move(req));
  };

  auto o = once(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1 \r\n\r\n"
      "3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n");
  REQUIRE(!o.ec);
  CHECK(o.res.body == "abc0123456789abcdef");
  CHECK(o.res.header("x-a") == "1");
  o = once(ok("hello"));
  REQUIRE(!o.ec);
  CHECK(o.res.body == "hello");
  CHECK(server.accepted == 1);  // chunked then content-length on one connection

  o = once("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok("final"));
  REQUIRE(!o.ec);
  CHECK(o.res.status == 200);
  CHECK(o.res.body == "final");
  CHECK_FALSE(o.res.header("link"));

  o = once("HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(!o.ec);
  CHECK(o.res.status == 302);
  CHECK(o.res.header("location") == "/elsewhere");
  CHECK(server.requests == 4);  // the redirect was not followed

  o = once("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", {"HEAD", server.url(), {}, {}});
  REQUIRE(!o.ec);
  CHECK(o.res.body.empty());
  o = once("HTTP/1.1 204 No Content\r\n\r\n");
  REQUIRE(!o.ec);
  CHECK(o.res.status == 204);
  o = once("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
  REQUIRE(!o.ec);
  CHECK(o.res.body.empty());
  CHECK(server.accepted == 1);

  // `Connection: close` from the server or from the request: not reused.
  o = once(ok("bye", "Connection: close\r\n"));
  REQUIRE(!o.ec);
  CHECK(o.res.body == "bye");
  CHECK(c.open_connections() == 0);
  o = once(ok("again"), {"GET", server.url(), {{"Connection", "close"}}, {}});
  REQUIRE(!o.ec);
  CHECK(c.open_connections() == 0);
  CHECK(server.accepted == 2);
}

TEST_CASE("client: body delimited by the close of the connection", "[http_client]") {
  asio::io_context io;
  test_server server(io, [&](tcp::socket s, int i) -> awaitable<void> {
    std::string buf;
    if (!co_await read_request(s, buf)) co_return;
    co_await send(s, i == 0 ? "HTTP/1.0 200 OK\r\n\r\nold style" : "HTTP/1.1 200 OK\r\n\r\nuntil close");
    s.close();
  });
  http::client c(io.get_executor());
  auto o = fetch(io, c, get(server.url()));
  REQUIRE(!o.ec);
  CHECK(o.res.body == "old style");
  o = fetch(io, c, get(server.url()));
  REQUIRE(!o.ec);
  CHECK(o.res.body == "until close");
  CHECK(c.open_connections() == 0);
}

TEST_CASE("client: body truncation, draining, and closing beyond the drain limit", "[http_client]") {
  asio::io_context io;
  std::string reply;
  test_server* srv = nullptr;
  test_server server(io, answer_all(srv, [&](const raw_request&) { return reply; }));
  srv = &server;
  http::client_options opts;
  opts.max_response_body = 10;
  opts.max_response_drain = 5000;
  http::client c(io.get_executor(), opts);

  reply = ok(std::string(1000, 'x'));
  auto o = fetch(io, c, get(server.url()));
  REQUIRE(!o.ec);
  CHECK(o.res.body == std::string(10, 'x'));
  CHECK(o.res.body_truncated);
  std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 40; ++i) chunked += "64\r\n" + std::string(100, 'y') + "\r\n";
  reply = chunked + "0\r\n\r\n";
  o = fetch(io, c, get(server.url()));
  REQUIRE(!o.ec);
  CHECK(o.res.body == std::string(10, 'y'));
  CHECK(o.res.body_truncated);
  CHECK(server.accepted == 1);  // drained: the connection was reused

  reply = ok(std::string(100'000, 'z'));  // known too long to drain: completes at once, closes
  o = fetch(io, c, get(server.url()));
  REQUIRE(!o.ec);
  CHECK(o.res.body == std::string(10, 'z'));
  CHECK(o.res.body_truncated);
  CHECK(c.open_connections() == 0);
  for (int i = 0; i < 60; ++i) chunked += "64\r\n" + std::string(100, 'y') + "\r\n";
  reply = chunked + "0\r\n\r\n";  // chunked, found too long while draining
  o = fetch(io, c, get(server.url()));
  REQUIRE(!o.ec);
  CHECK(o.res.body_truncated);
  CHECK(c.open_connections() == 0);
  CHECK(server.accepted == 2);
}

TEST_CASE("client: stale keep-alive connections", "[http_client]") {
  asio::io_context io;
  http::client_options opts;
  opts.response_timeout = 2000ms;

  SECTION("request written to a reused connection the server then closed: retried once, fresh") {
    int seen = 0;
    test_server server(io, [&](tcp::socket s, int i) -> awaitable<void> {
      std::string buf;
      if (!co_await read_request(s, buf)) co_return;
      ++seen;
      if (i == 0) {
        co_await send(s, ok("first"));
        if (co_await read_request(s, buf)) ++seen;  // the second request: dropped with the connection
        co_return;
      }
      co_await send(s, ok("fresh"));
    });
    http::client c(io.get_executor(), opts);
    auto o = fetch(io, c, get(server.url()));
    REQUIRE(!o.ec);
    o = fetch(io, c, {"POST", server.url(), {}, "once more"});
    REQUIRE(!o.ec);
    CHECK(o.res.body == "fresh");
    CHECK(server.accepted == 2);
    CHECK(seen == 3);
  }
  SECTION("closed while idle: noticed, the next request opens a new connection") {
    test_server server(io, [&](tcp::socket s, int) -> awaitable<void> {
      std::string buf;
      if (co_await read_request(s, buf)) co_await send(s, ok());
      s.close();
    });
    http::client c(io.get_executor(), opts);
    REQUIRE(!fetch(io, c, get(server.url())).ec);
    REQUIRE(run_until(io, [&] { return c.open_connections() == 0; }));
    REQUIRE(!fetch(io, c, get(server.url())).ec);
    CHECK(server.accepted == 2);
  }
  SECTION("never resent after a fresh connection, a second stale one, or a partial response") {
    int seen = 0;
    test_server server(io, [&](tcp::socket s, int i) -> awaitable<void> {
      std::string buf;
      if (!co_await read_request(s, buf)) co_return;
      ++seen;
      if (i == 0) {
        co_await send(s, ok());
        if (!co_await read_request(s, buf)) co_return;
        ++seen;
        co_await send(s, ok());
        if (!co_await read_request(s, buf)) co_return;
        ++seen;
        co_await send(s, "HTTP/1.1 200 OK\r\nContent-Le");  // partial, then close
      }
      // every other connection: read, close without answering
    });
    http::client c(io.get_executor(), opts);
    REQUIRE(!fetch(io, c, get(server.url())).ec);
    REQUIRE(!fetch(io, c, get(server.url())).ec);
    auto o = fetch(io, c, get(server.url()));
    CHECK(o.ec == crier::errc::bad_response);
    CHECK(seen == 3);
    CHECK(server.accepted == 1);
    o = fetch(io, c, get(server.url()));  // fresh connection, closed without an answer: no retry
    CHECK(o.ec == asio::error::eof);
    CHECK(seen == 4);
    CHECK(server.accepted == 2);
  }
  SECTION("retried at most once") {
    int seen = 0;
    test_server server(io, [&](tcp::socket s, int i) -> awaitable<void> {
      std::string buf;
      if (!co_await read_request(s, buf)) co_return;
      ++seen;
      if (i == 0) {
        co_await send(s, ok());
        if (co_await read_request(s, buf)) ++seen;
      }
    });
    http::client c(io.get_executor(), opts);
    REQUIRE(!fetch(io, c, get(server.url())).ec);
    auto o = fetch(io, c, get(server.url()));
    CHECK(o.ec == asio::error::eof);
    CHECK(seen == 3);
    CHECK(server.accepted == 2);
  }
}

TEST_CASE("client: timeouts", "[http_client]") {
  asio::io_context io;
  http::client_options opts;
  opts.response_timeout = 200ms;
  opts.connect_timeout = 300ms;
  test_server silent(io, [&](tcp::socket s, int) -> awaitable<void> {
    std::string buf;
    co_await read_request(s, buf);
    co_await read_request(s, buf);  // never answers; returns when the client closes
  });

  SECTION("a server that never answers: response_timeout") {
    http::client c(io.get_executor(), opts);
    auto o = fetch(io, c, {"POST", silent.url(), {}, "x"});
    CHECK(o.ec == crier::errc::response_timeout);
    CHECK(c.open_connections() == 0);
  }
  SECTION("total_timeout, also while waiting for a pool slot") {
    opts.response_timeout = 10s;
    opts.total_timeout = 300ms;
    opts.max_connections_per_origin = 1;
    http::client c(io.get_executor(), opts);
    auto a = start(c, get(silent.url()));
    auto b = start(c, get(silent.url()));
    REQUIRE(run_until(io, [&] { return a->done && b->done; }));
    CHECK(a->ec == crier::errc::request_timeout);
    CHECK(b->ec == crier::errc::request_timeout);
    CHECK(silent.accepted == 1);
    CHECK(c.open_connections() == 0);
  }
  SECTION("connect_timeout: a listener whose accept queue is full drops the SYN") {
    test_server full(io, nullptr, 0);  // never accepts; backlog 0
    std::vector<std::shared_ptr<tcp::socket>> fillers;
    int connected = 0;
    for (int i = 0; i < 3; ++i) {
      auto s = std::make_shared<tcp::socket>(io);
      s->async_connect({asio::ip::address_v4::loopback(), full.port}, [&connected](std::error_code ec) {
        if (!ec) ++connected;
      });
      fillers.push_back(s);
    }
    REQUIRE(run_until(io, [&] { return connected >= 1; }));
    http::client c(io.get_executor(), opts);
    auto o = fetch(io, c, get(full.url()));
    CHECK(o.ec == crier::errc::connect_timeout);
    CHECK(c.open_connections() == 0);
  }
}

TEST_CASE("client: address_allowed is asked before every connect", "[http_client]") {
  asio::io_context io;
  test_server* srv = nullptr;
  test_server server(io, answer_all(srv, [](const raw_request&) { return ok(); }));
  srv = &server;
  std::vector<asio::ip::address> asked;
  http::client_options opts;
  opts.address_allowed = [&](const asio::ip::address& a) {
    asked.push_back(a);
    return !a.is_loopback();
  };
  http::client c(io.get_executor(), opts);
  auto o = fetch(io, c, get(server.url()));
  CHECK(o.ec == crier::errc::address_refused);
  REQUIRE(asked.size() == 1);
  CHECK(asked[0] == asio::ip::make_address("127.0.0.1"));
  o = fetch(io, c, get(server.url("/", "localhost")));  // every address of the name is refused
  CHECK(o.ec == crier::errc::address_refused);
  CHECK(asked.size() >= 2);
  CHECK(server.accepted == 0);

  bool allow = true;  // a later attempt asks again (no cached verdict)
  http::client_options o2;
  o2.max_idle_per_origin = 0;
  o2.address_allowed = [&](const asio::ip::address&) { return allow; };
  http::client c2(io.get_executor(), o2);
  REQUIRE(!fetch(io, c2, get(server.url())).ec);
  allow = false;
  CHECK(fetch(io, c2, get(server.url())).ec == crier::errc::address_refused);
  CHECK(server.accepted == 1);
}

TEST_CASE("client: malformed responses and invalid requests", "[http_client]") {
  asio::io_context io;
  std::string reply;
  test_server server(io, [&](tcp::socket s, int) -> awaitable<void> {
    std::string buf;
    if (co_await read_request(s, buf)) co_await send(s, reply);
    s.close();
  });
  http::client_options opts;
  opts.max_response_head = 1024;
  http::client c(io.get_executor(), opts);
  for (std::string bad : {"garbage\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                          "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "HTTP/2 200\r\n\r\n",
                          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    reply = bad;
    auto o = fetch(io, c, get(server.url()));
    INFO(bad);
    CHECK(o.ec == crier::errc::bad_response);
  }
  reply = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  CHECK(fetch(io, c, get(server.url())).ec == crier::errc::response_too_large);
  int before = server.accepted;

  for (std::string url :
       {"ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "http://[::1/", "http://127.0.0.1:99999/",
        "http:///x", "http://a b/", "127.0.0.1:80/x", "http://[fe80::1%25eth0]/", "http://h/\r\n"})
    CHECK(fetch(io, c, get(url)).ec == crier::errc::invalid_url);
  CHECK(fetch(io, c, {"GET", server.url(), {{"X-Evil", "a\r\nInjected: 1"}}, {}}).ec ==
        crier::errc::bad_request);
  CHECK(fetch(io, c, {"G T", server.url(), {}, {}}).ec == crier::errc::bad_request);
  CHECK(fetch(io, c, {"POST", server.url(), {{"Content-Length", "1"}}, "ab"}).ec == crier::errc::bad_request);
  CHECK(server.accepted == before);
}

TEST_CASE("client: shutdown completes pending requests with client_stopped", "[http_client]") {
  asio::io_context io;
  test_server silent(io, [&](tcp::socket s, int) -> awaitable<void> {
    std::string buf;
    co_await read_request(s, buf);
    co_await read_request(s, buf);
  });
  http::client_options opts;
  opts.max_connections_per_origin = 2;
  http::client c(io.get_executor(), opts);
  std::vector<std::shared_ptr<outcome>> all;
  for (int i = 0; i < 5; ++i) all.push_back(start(c, get(silent.url())));
  REQUIRE(run_until(io, [&] { return silent.accepted == 2; }));
  c.shutdown();
  REQUIRE(run_until(io, [&] {
    for (auto& o : all)
      if (!o->done) return false;
    return true;
  }));
  for (auto& o : all) CHECK(o->ec == crier::errc::client_stopped);
  CHECK(c.open_connections() == 0);
  CHECK(fetch(io, c, get(silent.url())).ec == crier::errc::client_stopped);
}

TEST_CASE("client: strand executor and coroutine completion tokens", "[http_client]") {
  asio::io_context io;
  test_server* srv = nullptr;
  test_server server(io, answer_all(srv, [](const raw_request&) { return ok("s"); }));
  srv = &server;
  auto strand = asio::make_strand(io);
  http::basic_client<asio::strand<asio::io_context::executor_type>> c(strand);
  bool in_strand = false;
  auto o = std::make_shared<outcome>();
  c.async_request(get(server.url()), [&, o](std::error_code ec, http::client_response r) {
    in_strand = strand.running_in_this_thread();
    o->done = true;
    o->ec = ec;
    o->res = std::move(r);
  });
  REQUIRE(run_until(io, [&] { return o->done; }));
  CHECK(!o->ec);
  CHECK(in_strand);

  bool co_done = false;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        auto [ec, r] = co_await c.async_request(get(server.url()), tuple_aw);
        CHECK(!ec);
        CHECK(r.body == "s");
        co_done = true;
      },
      asio::detached);
  REQUIRE(run_until(io, [&] { return co_done; }));
  CHECK(server.accepted == 1);
}

TEST_CASE("client: URL parsing", "[http_client]") {
  namespace d = crier::http::detail;
  d::client_target t;
  REQUIRE(!d::parse_client_url("HTTPS://Example.COM/a b/é?q=1#frag", t));
  CHECK(t.tls);
  CHECK(t.host == "example.com");
  CHECK(t.port == 443);
  CHECK(t.target == "/a%20b/%C3%A9?q=1");
  CHECK(t.host_header == "example.com");
  CHECK(t.origin == "https://example.com:443");
  CHECK_FALSE(t.host_is_ip);
  REQUIRE(!d::parse_client_url("http://[::1]:8080?x", t));
  CHECK(t.host == "::1");
  CHECK(t.host_is_ip);
  CHECK(t.target == "/?x");
  CHECK(t.host_header == "[::1]:8080");
  CHECK(t.origin == "http://[::1]:8080");
  REQUIRE(!d::parse_client_url("http://10.0.0.1:80", t));
  CHECK(t.host_is_ip);
  CHECK(t.target == "/");
  CHECK(t.host_header == "10.0.0.1");
}

TEST_CASE("client: an answer that arrives while the body is still being written", "[http_client]") {
  asio::io_context io;
  std::vector<std::shared_ptr<tcp::socket>> held;  // never read past the head: the upload stalls
  test_server server(io, [&](tcp::socket s, int) -> awaitable<void> {
    std::string buf;
    while (buf.find("\r\n\r\n") == std::string::npos) {
      char tmp[512];
      auto [ec, n] = co_await s.async_read_some(asio::buffer(tmp), tuple_aw);
      if (ec) co_return;
      buf.append(tmp, n);
    }
    co_await send(s, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!");
    held.push_back(std::make_shared<tcp::socket>(std::move(s)));
  });
  http::client c(io.get_executor());
  auto o = fetch(io, c, {"POST", server.url(), {}, std::string(32 * 1024 * 1024, 'p')});
  REQUIRE(!o.ec);
  CHECK(o.res.status == 413);
  CHECK(o.res.body == "big!");
  CHECK(c.open_connections() == 0);
}
