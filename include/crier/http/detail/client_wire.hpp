// Outbound HTTP client, private: URL parsing and request serialization.
#pragma once

#include <crier/detail/asio.hpp>

#include <charconv>
#include <string>
#include <string_view>
#include <system_error>

#include "crier/error.hpp"
#include "crier/http/client_options.hpp"

namespace crier::http::detail {

// Where a request goes: one origin (scheme, host, port) and the request target.
struct client_target {
  bool tls = false;
  std::string host;         // lower case; an IPv6 literal without brackets
  bool host_is_ip = false;  // no SNI for address literals
  unsigned short port = 0;
  std::string target;       // origin-form: path and query, at least "/"
  std::string host_header;  // host[:port], brackets around IPv6
  std::string origin;       // scheme://host:port, the pool key
};

inline char client_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline bool client_is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Parses an absolute http(s) URL; errc::invalid_url when crier cannot send to it.
inline std::error_code parse_client_url(std::string_view url, client_target& out) {
  const std::error_code bad = make_error_code(errc::invalid_url);
  if (url.size() > 64 * 1024) return bad;
  auto sep = url.find("://");
  if (sep == std::string_view::npos) return bad;
  std::string scheme;
  for (char c : url.substr(0, sep)) scheme += client_lower(c);
  if (scheme == "http")
    out.tls = false;
  else if (scheme == "https")
    out.tls = true;
  else
    return bad;
  std::string_view rest = url.substr(sep + 3);
  auto auth_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, auth_end);
  std::string_view tail = auth_end == std::string_view::npos ? std::string_view{} : rest.substr(auth_end);
  if (authority.find('@') != std::string_view::npos) return bad;  // userinfo: never sent, never guessed

  std::string_view host, port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad;
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') return bad;
    if (!after.empty()) port = after.substr(1);
    std::error_code ec;
    auto a = asio::ip::make_address_v6(std::string(host), ec);  // zone ids ("%eth0") are refused too
    if (ec || a.scope_id() != 0 || host.find('%') != std::string_view::npos) return bad;
    out.host_is_ip = true;
  } else {
    auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    if (host.empty() || host.size() > 253) return bad;
    for (char c : host)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_'))
        return bad;
    std::error_code ec;
    asio::ip::make_address_v4(std::string(host), ec);
    out.host_is_ip = !ec;
  }
  out.host.clear();
  for (char c : host) out.host += client_lower(c);

  unsigned p = out.tls ? 443 : 80;
  if (!port.empty()) {
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535) return bad;
  }
  out.port = static_cast<unsigned short>(p);

  // Target: drop the fragment, make it origin-form, percent-encode what may not appear raw.
  if (auto hash = tail.find('#'); hash != std::string_view::npos) tail = tail.substr(0, hash);
  out.target.clear();
  if (tail.empty() || tail.front() == '?') out.target = "/";
  static constexpr char hex[] = "0123456789ABCDEF";
  for (char ch : tail) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return bad;
    if (c == ' ' || c >= 0x80 || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' ||
        c == '{' || c == '|' || c == '}') {
      out.target += '%';
      out.target += hex[c >> 4];
      out.target += hex[c & 0xF];
    } else {
      out.target += ch;
    }
  }

  const bool v6 = host.find(':') != std::string_view::npos;
  out.host_header = v6 ? "[" + out.host + "]" : out.host;
  if (out.port != (out.tls ? 443 : 80)) out.host_header += ":" + std::to_string(out.port);
  out.origin = scheme + "://" + (v6 ? "[" + out.host + "]" : out.host) + ":" + std::to_string(out.port);
  return {};
}

// What the exchange needs to know about the request it sends.
struct client_wire {
  std::string head;          // request line and header fields
  std::string body;          // written after head, in one gather write per attempt
  bool head_method = false;  // the response has no body
  bool close = false;        // the request asked for `Connection: close`
};

inline bool client_header_value_ok(std::string_view v) {
  for (char c : v)
    if (c == '\r' || c == '\n' || c == '\0') return false;
  return true;
}

inline bool client_has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
  }
  return false;
}

// Serializes the request (its body is moved out); errc::bad_request for a method or header that
// cannot be sent safely.
inline std::error_code serialize_client_request(client_request& r, const client_target& t,
                                                const client_options& o, client_wire& out) {
  const std::error_code bad = make_error_code(errc::bad_request);
  if (r.method.empty() || r.method.size() > 64) return bad;
  for (char c : r.method)
    if (!client_is_tchar(c)) return bad;
  if (r.method == "CONNECT") return bad;  // a tunnel is not a request/response exchange
  bool has_host = false, has_agent = false;
  for (auto& [n, v] : r.headers) {
    if (n.empty()) return bad;
    for (char c : n)
      if (!client_is_tchar(c)) return bad;
    if (!client_header_value_ok(v)) return bad;
    if (iequals(n, "content-length") || iequals(n, "transfer-encoding")) return bad;
    if (iequals(n, "host")) {
      if (has_host) return bad;
      has_host = true;
    }
    if (iequals(n, "user-agent")) has_agent = true;
    if (iequals(n, "connection") && client_has_token(v, "close")) out.close = true;
  }
  if (!client_header_value_ok(o.user_agent)) return bad;
  out.head_method = r.method == "HEAD";
  std::string& s = out.head;
  s.clear();
  std::size_t est = r.method.size() + t.target.size() + t.host_header.size() + o.user_agent.size() + 96;
  for (auto& [n, v] : r.headers) est += n.size() + v.size() + 4;
  s.reserve(est);
  s += r.method;
  s += ' ';
  s += t.target;
  s += " HTTP/1.1\r\n";
  if (!has_host) {
    s += "Host: ";
    s += t.host_header;
    s += "\r\n";
  }
  if (!has_agent && !o.user_agent.empty()) {
    s += "User-Agent: ";
    s += o.user_agent;
    s += "\r\n";
  }
  for (auto& [n, v] : r.headers) {
    s += n;
    s += ": ";
    s += v;
    s += "\r\n";
  }
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH") {
    s += "Content-Length: ";
    s += std::to_string(r.body.size());
    s += "\r\n";
  }
  s += "\r\n";
  out.body = std::move(r.body);
  return {};
}

}  // namespace crier::http::detail
