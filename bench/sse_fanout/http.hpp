// HTTP/1.1 client basics: URL templates, loopback-only URL parsing and response-head parsing.
#pragma once

#include "common.hpp"

#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace sse_fanout {

inline std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

struct url {
  std::string host_header;  // host[:port] as written
  asio::ip::address addr;
  uint16_t port = 80;
  std::string target;       // path + query
};

inline std::optional<url> parse_url(const std::string& s, std::string& err) {
  constexpr std::string_view scheme = "http://";
  if (s.compare(0, scheme.size(), scheme) != 0) { err = "only http:// URLs are supported: " + s; return std::nullopt; }
  size_t hs = scheme.size();
  size_t pe = s.find('/', hs);
  std::string hp = s.substr(hs, pe == std::string::npos ? std::string::npos : pe - hs);
  url u;
  u.host_header = hp;
  u.target = pe == std::string::npos ? "/" : s.substr(pe);
  std::string host = hp;
  if (!hp.empty() && hp[0] == '[') {
    size_t rb = hp.find(']');
    if (rb == std::string::npos) { err = "bad host in " + s; return std::nullopt; }
    host = hp.substr(1, rb - 1);
    if (rb + 1 < hp.size() && hp[rb + 1] == ':') u.port = static_cast<uint16_t>(std::atoi(hp.c_str() + rb + 2));
  } else if (size_t c = hp.rfind(':'); c != std::string::npos) {
    host = hp.substr(0, c);
    u.port = static_cast<uint16_t>(std::atoi(hp.c_str() + c + 1));
  }
  if (host == "localhost") host = "127.0.0.1";
  asio::error_code ec;
  u.addr = asio::ip::make_address(host, ec);
  if (ec) { err = "host must be a literal loopback address: " + host; return std::nullopt; }
  if (!u.addr.is_loopback()) { err = "refusing non-loopback target " + host; return std::nullopt; }
  return u;
}

inline bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) return false;
  return true;
}

inline bool icontains(std::string_view s, std::string_view needle) {
  if (needle.size() > s.size()) return false;
  for (size_t i = 0; i + needle.size() <= s.size(); ++i)
    if (iequals_prefix(s.substr(i), needle)) return true;
  return false;
}

struct head_info {
  int status = 0;
  bool chunked = false;
  int64_t content_length = -1;
  bool close = false;
};

// Parses "HTTP/1.1 200 OK\r\nName: v\r\n..." (without the final empty line).
inline head_info parse_head(std::string_view h) {
  head_info hi;
  size_t sp = h.find(' ');
  if (h.substr(0, 5) != "HTTP/" || sp == std::string_view::npos) return hi;
  std::from_chars(h.data() + sp + 1, h.data() + h.size(), hi.status);
  size_t pos = h.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < h.size()) {
    size_t s = pos + 2;
    size_t e = h.find("\r\n", s);
    std::string_view line = h.substr(s, e == std::string_view::npos ? std::string_view::npos : e - s);
    if (iequals_prefix(line, "transfer-encoding:") && icontains(line, "chunked")) hi.chunked = true;
    if (iequals_prefix(line, "connection:") && icontains(line, "close")) hi.close = true;
    if (iequals_prefix(line, "content-length:")) {
      std::string_view v = line.substr(15);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      int64_t cl = -1;
      std::from_chars(v.data(), v.data() + v.size(), cl);
      hi.content_length = cl;
    }
    pos = e;
  }
  return hi;
}

}  // namespace sse_fanout
