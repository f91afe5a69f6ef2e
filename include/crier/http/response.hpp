// A response to send with exchange::respond() / the head for exchange::start_stream().
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crier/detail/json.hpp"
#include "crier/http/request.hpp"

namespace crier::http {

struct response {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  response& set(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  // The first header of that name (case-insensitive).
  std::optional<std::string_view> header(std::string_view name) const {
    for (auto& [n, v] : headers)
      if (detail::iequals(n, name)) return std::string_view(v);
    return std::nullopt;
  }

  static response json(unsigned status, std::string json_body) {
    response r;
    r.status = status;
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = std::move(json_body);
    return r;
  }

  // {"error":{"status":N,"code":"...","message":"..."}}
  static response error(unsigned status, std::string_view code, std::string_view message) {
    std::string b = "{\"error\":{\"status\":";
    b += std::to_string(status);
    b += ",\"code\":";
    crier::detail::append_json_string(b, code);
    b += ",\"message\":";
    crier::detail::append_json_string(b, message);
    b += "}}";
    return json(status, std::move(b));
  }
};

inline std::string_view reason_phrase(unsigned status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

namespace detail {
// Status 1xx, 204 and 304 never carry a body (RFC 9112 6.3).
inline bool status_has_body(unsigned status) noexcept { return status >= 200 && status != 204 && status != 304; }

// Header names the connection owns; a handler's copies are dropped so framing stays ours.
// (Connection passes through: an upgrade needs it; the connection adds `close` when it closes.)
inline bool is_framing_header(std::string_view n) noexcept {
  auto ieq = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
    return true;
  };
  return ieq(n, "content-length") || ieq(n, "transfer-encoding");
}

// Serializes the status line and the handler's headers (no final CRLF).
inline void append_head(std::string& out, const response& r) {
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += reason_phrase(r.status);
  out += "\r\n";
  for (auto& [n, v] : r.headers) {
    if (is_framing_header(n)) continue;
    // CR/LF in a name or value would split the response: neutralise them.
    for (char c : n) out += (c == '\r' || c == '\n') ? ' ' : c;
    out += ": ";
    for (char c : v) out += (c == '\r' || c == '\n') ? ' ' : c;
    out += "\r\n";
  }
}
}  // namespace detail

}  // namespace crier::http
