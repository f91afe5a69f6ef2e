// The server side of the RFC 6455 opening handshake: checks a request, negotiates the
// subprotocol and permessage-deflate (RFC 7692), and builds the 101.
#pragma once

#include <crier/detail/ws/deflate.hpp>
#include <crier/detail/ws/handshake.hpp>
#include <crier/http/request.hpp>
#include <crier/http/response.hpp>

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace crier {

using deflate_options = detail::ws::deflate_options;

struct websocket_options {
  std::vector<std::string> origins{};          // allowed Origin values ("*" = any); empty = any
  std::vector<std::string> subprotocols{};     // offered by the application, in preference order; a
                                               // client that asks only for others gets 400 (/ws also
                                               // speaks "crier.v1")
  std::size_t max_message_bytes = 16 * 1024 * 1024;  // larger messages (inflated) close with 1009
  std::size_t max_subscriptions = 1024;        // per /ws connection
  deflate_options deflate{};                   // permessage-deflate (on by default)
  bool echo = false;                           // conformance-test mode (Autobahn): a client's messages
                                               // on /topics/{t} come back to it instead of being published
};

inline bool is_websocket_request(const http::request& req) {
  auto up = req.header("upgrade");
  return up && detail::ws::header_has_token(*up, "websocket");
}

// What the handshake agreed on; `response` is the 101 when ok, else the precise error.
struct websocket_accept {
  bool ok = false;
  http::response response;
  std::string subprotocol;                                  // "" = none
  std::optional<detail::ws::deflate_agreement> deflate;     // permessage-deflate parameters
};

namespace detail {
// Every value of a header that may be sent several times, joined as one comma list.
inline std::string joined_header(const http::request& req, std::string_view name) {
  std::string out;
  for (auto& [n, v] : req.headers())
    if (http::detail::iequals(n, name)) {
      if (!out.empty()) out += ", ";
      out += v;
    }
  return out;
}

// The first protocol of ours (the application's, then `builtin`) the client asked for.
inline std::optional<std::string> pick_subprotocol(std::string_view offered, const std::vector<std::string>& ours,
                                                   std::span<const std::string_view> builtin) {
  // Exact (case-sensitive) match: browsers check the answer against what they sent, byte for byte.
  auto asked = [&](std::string_view p) {
    std::string_view rest = offered;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto item = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (!item.empty() && item == p) return true;
    }
    return false;
  };
  for (auto& p : ours)
    if (asked(p)) return p;
  for (auto p : builtin)
    if (asked(p)) return std::string(p);
  return std::nullopt;
}
}  // namespace detail

inline websocket_accept websocket_handshake(const http::request& req, const websocket_options& o,
                                            std::span<const std::string_view> builtin_protocols = {}) {
  websocket_accept a;
  if (req.method() != "GET") {
    a.response = http::response::error(405, "method_not_allowed", "a WebSocket handshake is a GET");
    a.response.set("Allow", "GET");
    return a;
  }
  auto conn = req.header("connection");
  if (!conn || !detail::ws::header_has_token(*conn, "upgrade") || !is_websocket_request(req)) {
    a.response = http::response::error(400, "bad_handshake", "Upgrade: websocket and Connection: Upgrade are required");
    return a;
  }
  auto version = req.header("sec-websocket-version");
  if (!version || *version != "13") {
    a.response = http::response::error(426, "unsupported_version", "only WebSocket version 13 is supported");
    a.response.set("Sec-WebSocket-Version", "13");
    return a;
  }
  auto key = req.header("sec-websocket-key");
  if (!key || !detail::ws::valid_client_key(*key)) {
    a.response = http::response::error(400, "bad_handshake", "Sec-WebSocket-Key must be the base64 of 16 bytes");
    return a;
  }
  if (!o.origins.empty()) {
    auto origin = req.header("origin");
    bool allowed = false;
    for (auto& allowed_origin : o.origins) allowed = allowed || allowed_origin == "*" || (origin && *origin == allowed_origin);
    if (!allowed) {
      a.response = http::response::error(403, "origin_not_allowed", "this Origin may not connect");
      return a;
    }
  }
  if (auto offered = detail::joined_header(req, "sec-websocket-protocol"); !offered.empty()) {
    auto p = detail::pick_subprotocol(offered, o.subprotocols, builtin_protocols);
    if (!p) {
      std::string known;
      for (auto& s : o.subprotocols) known += (known.empty() ? "" : ", ") + s;
      for (auto s : builtin_protocols) known += (known.empty() ? "" : ", ") + std::string(s);
      a.response = http::response::error(400, "unsupported_subprotocol",
                                         known.empty() ? "no subprotocol is spoken here"
                                                       : "supported subprotocols: " + known);
      return a;
    }
    a.subprotocol = std::move(*p);
  }
  std::string extensions;
  if (o.deflate.enabled)
    if (auto ext = detail::joined_header(req, "sec-websocket-extensions"); !ext.empty())
      a.deflate = detail::ws::negotiate_deflate(ext, o.deflate, extensions);
  a.response.status = 101;
  a.response.set("Upgrade", "websocket");
  a.response.set("Connection", "Upgrade");
  a.response.set("Sec-WebSocket-Accept", detail::ws::accept_key(*key));
  if (!a.subprotocol.empty()) a.response.set("Sec-WebSocket-Protocol", a.subprotocol);
  if (a.deflate) a.response.set("Sec-WebSocket-Extensions", extensions);
  a.ok = true;
  return a;
}

}  // namespace crier
