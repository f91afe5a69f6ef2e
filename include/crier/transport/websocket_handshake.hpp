// The server side of the RFC 6455 opening handshake: checks a request and builds the 101.
#pragma once

#include <crier/detail/ws/handshake.hpp>
#include <crier/http/request.hpp>
#include <crier/http/response.hpp>

#include <optional>
#include <string>
#include <vector>

namespace crier {

struct websocket_options {
  std::vector<std::string> origins{};          // allowed Origin values ("*" = any); empty = any
  std::size_t max_message_bytes = 16 * 1024 * 1024;  // larger messages close with 1009
  bool echo = false;                           // conformance-test mode (Autobahn): a client's messages
                                               // on /topics/{t} come back to it instead of being published
};

inline bool is_websocket_request(const http::request& req) {
  auto up = req.header("upgrade");
  return up && detail::ws::header_has_token(*up, "websocket");
}

// The 101 answer, or the precise error response when the handshake is not acceptable.
inline http::response websocket_handshake(const http::request& req, const websocket_options& o, bool& ok) {
  ok = false;
  if (req.method() != "GET") {
    auto r = http::response::error(405, "method_not_allowed", "a WebSocket handshake is a GET");
    r.set("Allow", "GET");
    return r;
  }
  auto conn = req.header("connection");
  if (!conn || !detail::ws::header_has_token(*conn, "upgrade") || !is_websocket_request(req))
    return http::response::error(400, "bad_handshake", "Upgrade: websocket and Connection: Upgrade are required");
  auto version = req.header("sec-websocket-version");
  if (!version || *version != "13") {
    auto r = http::response::error(426, "unsupported_version", "only WebSocket version 13 is supported");
    r.set("Sec-WebSocket-Version", "13");
    return r;
  }
  auto key = req.header("sec-websocket-key");
  if (!key || !detail::ws::valid_client_key(*key))
    return http::response::error(400, "bad_handshake", "Sec-WebSocket-Key must be the base64 of 16 bytes");
  if (!o.origins.empty()) {
    auto origin = req.header("origin");
    bool allowed = false;
    for (auto& a : o.origins) allowed = allowed || a == "*" || (origin && *origin == a);
    if (!allowed) return http::response::error(403, "origin_not_allowed", "this Origin may not connect");
  }
  http::response r;
  r.status = 101;
  r.set("Upgrade", "websocket");
  r.set("Connection", "Upgrade");
  r.set("Sec-WebSocket-Accept", detail::ws::accept_key(*key));
  ok = true;
  return r;
}

}  // namespace crier
