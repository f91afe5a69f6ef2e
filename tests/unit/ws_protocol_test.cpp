// The /ws protocol codec, the handshake's negotiation (subprotocol, permessage-deflate), and
// the application's authorizer at the front door.
#include <crier/crier.hpp>

#include <catch2/catch.hpp>

#include "http_fixture.hpp"

#include <future>

namespace {

using crier::ws_protocol::command;
using crier::ws_protocol::command_type;

crier::http::request handshake(std::vector<std::pair<std::string, std::string>> extra = {}) {
  crier::http::request r;
  r.set_method("GET");
  r.set_target("/ws");
  r.add_header("Host", "x");
  r.add_header("Upgrade", "websocket");
  r.add_header("Connection", "Upgrade");
  r.add_header("Sec-WebSocket-Version", "13");
  r.add_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
  for (auto& [n, v] : extra) r.add_header(n, v);
  return r;
}

}  // namespace

TEST_CASE("ws_protocol: text commands", "[ws_protocol]") {
  command c;
  REQUIRE_FALSE(crier::ws_protocol::parse_text(R"({"type":"subscribe","ref":"a1","topic":"x/*","since":"0"})", c));
  CHECK(c.type == command_type::subscribe);
  CHECK(c.ref == R"("a1")");
  CHECK(c.topic == "x/*");
  CHECK(c.since == "0");

  command p;
  REQUIRE_FALSE(crier::ws_protocol::parse_text(R"({"type":"publish","ref":12,"topic":"t","data":{"k":[1,true]}})", p));
  CHECK(p.ref == "12");
  CHECK(p.data == R"({"k":[1,true]})");
  CHECK(p.content_type == "application/json");

  command q;
  REQUIRE_FALSE(crier::ws_protocol::parse_text(R"({"type":"publish","topic":"t","data":"caf\u00e9","event":"e"})", q));
  CHECK(q.data == "caf\xc3\xa9");
  CHECK(q.content_type.empty());
  CHECK(q.event == "e");

  struct bad_case {
    const char* text;
    const char* code;
    const char* ref;
  };
  for (auto [text, code, ref] : {bad_case{"{", "bad_request", ""}, bad_case{"[]", "bad_request", ""},
                                 bad_case{R"({"type":"x","ref":"r"})", "unknown_type", R"("r")"},
                                 bad_case{R"({"ref":1})", "bad_request", "1"},
                                 bad_case{R"({"type":"subscribe","ref":[1]})", "bad_request", ""},
                                 bad_case{R"({"type":"subscribe","topic":5})", "bad_request", ""},
                                 bad_case{R"({"type":"subscribe","topic":"a","since":1})", "bad_request", ""},
                                 bad_case{R"({"type":"subscribe","topic":"a","since":[]})", "bad_request", ""},
                                 bad_case{R"({"type":"publish","topic":"a"})", "bad_request", ""}}) {
    command x;
    auto e = crier::ws_protocol::parse_text(text, x);
    INFO(text);
    REQUIRE(e);
    CHECK(e->code == code);
    CHECK(e->ref == ref);
    CHECK_FALSE(e->message.empty());
  }
  command zero;
  REQUIRE_FALSE(crier::ws_protocol::parse_text(R"({"type":"subscribe","topic":"a","since":0})", zero));
  CHECK(zero.since == "0");
  command typed;
  auto te = crier::ws_protocol::parse_text(R"({"type":"publish","ref":1,"topic":"t"})", typed);
  REQUIRE(te);
  CHECK(te->op == command_type::publish);  // the error frame names the command and topic
  CHECK(te->topic == "t");

  command long_ref;
  auto e = crier::ws_protocol::parse_text(R"({"type":"ping","ref":")" + std::string(200, 'r') + R"("})", long_ref);
  REQUIRE(e);
  CHECK(e->ref.empty());  // never echoed back
}

TEST_CASE("ws_protocol: binary publish frames keep the payload in place", "[ws_protocol]") {
  std::string head = R"({"type":"publish","ref":"b","topic":"cam"})";
  std::string frame;
  frame += '\x01';
  frame += static_cast<char>(head.size() >> 8);
  frame += static_cast<char>(head.size() & 0xFF);
  frame += head;
  frame += std::string("\x00\xff\x01", 3);
  command c;
  REQUIRE_FALSE(crier::ws_protocol::parse_binary(frame, c));
  CHECK(c.type == command_type::publish);
  CHECK(c.data == std::string("\x00\xff\x01", 3));
  CHECK(c.content_type == "application/octet-stream");

  for (std::string bad : {std::string("\x02\x00\x02{}", 5), std::string("\x01\x00", 2), std::string("\x01\x00\x09{}", 5),
                          std::string("\x01\x00\x10{\"type\":\"ping\"}", 18)}) {
    command x;
    CHECK(crier::ws_protocol::parse_binary(bad, x));
  }
}

TEST_CASE("ws_protocol: server frames", "[ws_protocol]") {
  auto id = crier::message_id{.epoch = 0x1f, .seq = 7};
  CHECK(crier::ws_protocol::ack(command_type::publish, R"("p")", "t", &id) ==
        R"({"type":"ack","ref":"p","op":"publish","topic":"t","id":"0000001f:7"})");
  CHECK(crier::ws_protocol::ack(command_type::subscribe, "", "a/*") == R"({"type":"ack","op":"subscribe","topic":"a/*"})");
  CHECK(crier::ws_protocol::pong("3") == R"({"type":"pong","ref":3})");
  CHECK(crier::ws_protocol::error("", std::nullopt, {}, "bad_request", "say \"hi\"") ==
        R"({"type":"error","code":"bad_request","message":"say \"hi\""})");
}

TEST_CASE("websocket handshake: subprotocols and permessage-deflate", "[ws_protocol]") {
  crier::websocket_options o;
  static constexpr std::string_view builtin[] = {crier::ws_protocol::subprotocol};

  auto a = crier::websocket_handshake(handshake({{"Sec-WebSocket-Protocol", "mqtt, crier.v1"}}), o, builtin);
  REQUIRE(a.ok);
  CHECK(a.subprotocol == "crier.v1");
  CHECK(a.response.header("Sec-WebSocket-Protocol") == "crier.v1");

  o.subprotocols = {"app.v2"};
  a = crier::websocket_handshake(handshake({{"Sec-WebSocket-Protocol", "crier.v1"}, {"Sec-WebSocket-Protocol", "app.v2"}}),
                                 o, builtin);
  REQUIRE(a.ok);
  CHECK(a.subprotocol == "app.v2");  // the application's first

  a = crier::websocket_handshake(handshake({{"Sec-WebSocket-Protocol", "CRIER.V1"}}), o, builtin);
  CHECK_FALSE(a.ok);
  CHECK(a.response.status == 400);  // exact match only: browsers compare byte for byte

  a = crier::websocket_handshake(handshake(), o, builtin);
  REQUIRE(a.ok);
  CHECK(a.subprotocol.empty());
  CHECK_FALSE(a.response.header("Sec-WebSocket-Protocol"));
  CHECK_FALSE(a.deflate);

  a = crier::websocket_handshake(
      handshake({{"Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"}}), o, builtin);
  REQUIRE(a.ok);
  REQUIRE(a.deflate);
  auto ext = a.response.header("Sec-WebSocket-Extensions");
  REQUIRE(ext);
  CHECK(ext->find("server_no_context_takeover") != std::string::npos);

  o.deflate.enabled = false;
  a = crier::websocket_handshake(handshake({{"Sec-WebSocket-Extensions", "permessage-deflate"}}), o, builtin);
  REQUIRE(a.ok);
  CHECK_FALSE(a.deflate);
  CHECK_FALSE(a.response.header("Sec-WebSocket-Extensions"));
}


TEST_CASE("server: the authorizer is asked before publishes, subscribes and upgrades", "[ws_protocol][server]") {
  asio::io_context io;
  crier::hub hub{io};
  std::vector<std::string> asked;
  crier::server server{hub,
                       {.listen = "127.0.0.1:0", .authorize = [&](const crier::access_request& r) {
                          asked.push_back(std::to_string(static_cast<int>(r.action)) + ":" + std::string(r.topic));
                          if (r.action == crier::access::connect) return r.request.header("x-token").has_value();
                          return !r.topic.starts_with("private");
                        }}};
  auto ep = server.local_endpoints().at(0);
  const std::string ws_head =
      " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  auto run = [&](std::string request) {
    auto f = std::async(std::launch::async, [&] {
      auto out = http_test::exchange_bytes(ep, request, "\r\n\r\n");
      return out.substr(0, out.find("\r\n"));  // the status line
    });
    while (f.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready)
      io.run_one_for(std::chrono::milliseconds(50));
    return f.get();
  };
  CHECK(run("POST /topics/private HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx") ==
        "HTTP/1.1 403 Forbidden");
  CHECK(run("POST /topics/open HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx") ==
        "HTTP/1.1 200 OK");
  CHECK(run("GET /topics/open,private/x?since=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") ==
        "HTTP/1.1 403 Forbidden");
  CHECK(run("GET /topics/private/x" + ws_head + "\r\n") == "HTTP/1.1 403 Forbidden");
  CHECK(run("GET /ws" + ws_head + "\r\n") == "HTTP/1.1 403 Forbidden");
  CHECK(run("GET /ws" + ws_head + "X-Token: t\r\n\r\n") == "HTTP/1.1 101 Switching Protocols");
  const std::string hook = R"({"target_url":"http://127.0.0.1:9/h","topics":["open","private/y"]})";
  CHECK(run("POST /api/v1/subscriptions HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(hook.size()) +
            "\r\nConnection: close\r\n\r\n" + hook) == "HTTP/1.1 403 Forbidden");  // webhooks too
  CHECK(std::find(asked.begin(), asked.end(), "1:private/y") != asked.end());
  CHECK(std::find(asked.begin(), asked.end(), "2:private") != asked.end());  // publish asked with its topic
  CHECK(std::find(asked.begin(), asked.end(), "1:private/x") != asked.end());
  CHECK(std::count(asked.begin(), asked.end(), "0:") == 2);
}
