// The relay's messages (docs/relay.md), without I/O: relayed requests as binary WebSocket
// frames (version 1, 2-byte header length, JSON header, raw body) or JSON (long-poll), the
// client's answers in either form, and which headers may cross.
#pragma once

#include <crier/detail/base64.hpp>
#include <crier/detail/json.hpp>
#include <crier/http/request.hpp>

#include <picojson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crier::relay_wire {

using header_list = std::vector<std::pair<std::string, std::string>>;

inline constexpr unsigned char version = 1;
// Control paths below a token's URL that are never forwarded (the long-poll pair).
inline constexpr std::string_view control_prefix = "/.well-known/crier-relay/";

struct request {
  std::uint64_t id = 0;
  std::string method;
  std::string path;  // below /relay/{token}, at least "/", query included
  header_list headers;
  std::string body;
};

struct response {
  std::uint64_t id = 0;
  unsigned status = 0;
  header_list headers;
  std::string body;
};

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// RFC 9110 §7.6.1: meaningful for one connection only, plus those the Connection header names.
inline bool hop_by_hop(std::string_view lower_name, std::string_view connection_value) {
  static constexpr std::string_view fixed[] = {"connection", "keep-alive", "te", "trailer", "transfer-encoding",
                                               "upgrade"};
  for (auto f : fixed)
    if (lower_name == f) return true;
  if (lower_name.starts_with("proxy-")) return true;  // meant for the proxy, never for the far end
  while (!connection_value.empty()) {
    auto comma = connection_value.find(',');
    auto item = connection_value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty() && http::detail::iequals(item, lower_name)) return true;
    connection_value = comma == std::string_view::npos ? std::string_view{} : connection_value.substr(comma + 1);
  }
  return false;
}

// The headers that may cross, names lower-cased; `content-length` too is dropped (the receiving
// side sets its own). False when what is left exceeds `max_bytes` or a header is malformed.
template <class Headers>
bool forwardable(const Headers& in, std::size_t max_bytes, header_list& out) {
  std::string_view connection;
  for (auto& [n, v] : in)
    if (http::detail::iequals(n, "connection")) connection = v;
  std::size_t bytes = 0;
  for (auto& [n, v] : in) {
    auto name = lower(n);
    if (name.empty() || hop_by_hop(name, connection) || name == "content-length") continue;
    for (char c : name)
      if (c <= 0x20 || c >= 0x7f || c == ':') return false;
    for (char c : v)
      if (c == '\r' || c == '\n' || c == '\0') return false;
    bytes += name.size() + v.size() + 4;
    if (bytes > max_bytes) return false;
    out.emplace_back(std::move(name), std::string(v));
  }
  return true;
}

inline void append_headers_json(std::string& out, const header_list& h) {
  out += '[';
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (i) out += ',';
    out += '[';
    crier::detail::append_json_string(out, h[i].first);
    out += ',';
    crier::detail::append_json_string(out, h[i].second);
    out += ']';
  }
  out += ']';
}

inline std::string request_head_json(const request& r) {
  std::string j = R"({"type":"request","id":)" + std::to_string(r.id) + R"(,"method":)";
  crier::detail::append_json_string(j, r.method);
  j += R"(,"path":)";
  crier::detail::append_json_string(j, r.path);
  j += R"(,"headers":)";
  append_headers_json(j, r.headers);
  return j;
}

// A binary WebSocket payload; nullopt when the JSON header does not fit its 2-byte length.
inline std::optional<std::string> request_frame(const request& r) {
  auto head = request_head_json(r) + "}";
  if (head.size() > 0xFFFF) return std::nullopt;
  std::string f;
  f.reserve(3 + head.size() + r.body.size());
  f += static_cast<char>(version);
  f += static_cast<char>(head.size() >> 8);
  f += static_cast<char>(head.size() & 0xFF);
  f += head;
  f += r.body;
  return f;
}

// For long-poll: the body as base64 inside the JSON.
inline void append_request_json(std::string& out, const request& r) {
  out += request_head_json(r);
  out += R"(,"body_base64":")";
  crier::detail::append_base64(out, r.body);
  out += "\"}";
}

inline std::string ready_json(std::string_view token, std::string_view secret, std::string_view url, bool resumed,
                              std::int64_t idle_expiry_ms) {
  std::string j = R"({"type":"ready","token":)";
  crier::detail::append_json_string(j, token);
  j += R"(,"secret":)";
  crier::detail::append_json_string(j, secret);
  j += R"(,"url":)";
  crier::detail::append_json_string(j, url);
  j += resumed ? R"(,"resumed":true)" : R"(,"resumed":false)";
  j += R"(,"idle_expiry_ms":)" + std::to_string(idle_expiry_ms) + "}";
  return j;
}

inline std::string error_json(std::string_view code, std::string_view message) {
  std::string j = R"({"type":"error","code":)";
  crier::detail::append_json_string(j, code);
  j += R"(,"message":)";
  crier::detail::append_json_string(j, message);
  return j + "}";
}

// An answer's fields from its JSON object; `binary_body` is the body of a binary frame (then the
// JSON may not carry one). Returns what is wrong, or nullopt.
inline std::optional<std::string> read_answer(const picojson::object& o, response& out, std::size_t max_body,
                                              std::size_t max_header_bytes, std::string* binary_body = nullptr) {
  auto field = [&](const char* k) -> const picojson::value* {
    auto it = o.find(k);
    return it == o.end() ? nullptr : &it->second;
  };
  auto type = field("type");
  if (type && (!type->is<std::string>() || type->get<std::string>() != "response"))
    return "an answer is {\"type\":\"response\",\"id\":…,\"status\":…}";
  auto id = field("id");
  if (!id || !id->is<double>() || id->get<double>() < 1 || id->get<double>() > 9.0e15) return "\"id\": the request's id";
  out.id = static_cast<std::uint64_t>(id->get<double>());
  auto status = field("status");
  if (!status || !status->is<double>()) return "\"status\": a number";
  auto st = status->get<double>();
  out.status = st >= 200 && st <= 599 ? static_cast<unsigned>(st) : 0;  // 0: the HTTP client gets 502
  if (auto h = field("headers")) {
    if (!h->is<picojson::array>()) return "\"headers\": an array of [name, value] pairs";
    header_list raw;
    for (auto& e : h->get<picojson::array>()) {
      if (!e.is<picojson::array>() || e.get<picojson::array>().size() != 2 ||
          !e.get<picojson::array>()[0].is<std::string>() || !e.get<picojson::array>()[1].is<std::string>())
        return "\"headers\": an array of [name, value] pairs";
      raw.emplace_back(e.get<picojson::array>()[0].get<std::string>(), e.get<picojson::array>()[1].get<std::string>());
    }
    if (!forwardable(raw, max_header_bytes, out.headers)) return "\"headers\": malformed or too large";
  }
  auto body = field("body");
  auto b64 = field("body_base64");
  if (binary_body) {
    if (body || b64) return "a binary answer carries its body after the header";
    out.body = std::move(*binary_body);
  } else if (body) {
    if (!body->is<std::string>()) return "\"body\": a string";
    out.body = body->get<std::string>();
  } else if (b64) {
    if (!b64->is<std::string>() || !crier::detail::decode_base64(b64->get<std::string>(), out.body))
      return "\"body_base64\": base64";
  }
  if (out.body.size() > max_body) return "the answer's body is larger than the relay allows";
  return std::nullopt;
}

// A binary answer frame: version, header length, JSON header, body.
inline std::optional<std::string> read_answer_frame(std::string& frame, response& out, std::size_t max_body,
                                                    std::size_t max_header_bytes) {
  auto u = reinterpret_cast<const unsigned char*>(frame.data());
  if (frame.size() < 3 || u[0] != version) return "a binary frame starts with version 1 and a 2-byte header length";
  std::size_t n = std::size_t(u[1]) << 8 | u[2];
  if (frame.size() < 3 + n) return "binary frame shorter than its header length";
  picojson::value v;
  std::string err;
  picojson::parse(v, frame.begin() + 3, frame.begin() + 3 + static_cast<std::ptrdiff_t>(n), &err);
  if (!err.empty() || !v.is<picojson::object>()) return "the header is not a JSON object";
  std::string body = frame.substr(3 + n);
  return read_answer(v.get<picojson::object>(), out, max_body, max_header_bytes, &body);
}

}  // namespace crier::relay_wire
