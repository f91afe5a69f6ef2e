// A parsed HTTP/1.x request (head + complete body).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crier/http/url.hpp"

namespace crier::http {

namespace detail {
inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}
class parser;
}  // namespace detail

class request {
 public:
  request() = default;

  std::string_view method() const { return method_; }
  std::string_view target() const { return target_; }
  std::string_view path() const { return std::string_view(target_).substr(0, query_pos_); }
  std::string_view query() const {
    return query_pos_ >= target_.size() ? std::string_view{} : std::string_view(target_).substr(query_pos_ + 1);
  }
  std::optional<std::string_view> header(std::string_view name) const {
    for (auto& [n, v] : headers_)
      if (detail::iequals(n, name)) return std::string_view(v);
    return std::nullopt;
  }
  const std::vector<std::pair<std::string, std::string>>& headers() const { return headers_; }
  std::optional<std::string> query_param(std::string_view name) const { return http::query_param(query(), name); }
  const std::string& body() const { return body_; }
  std::string& body() { return body_; }
  unsigned version() const { return version_; }
  bool keep_alive() const { return keep_alive_; }
  // True for `Connection: upgrade` requests (e.g. WebSocket handshakes) and CONNECT.
  bool upgrade() const { return upgrade_; }

  // Test / adapter construction.
  void set_method(std::string_view m) { method_ = m; }
  void set_target(std::string t) {
    target_ = std::move(t);
    query_pos_ = target_.find('?');
    if (query_pos_ == std::string::npos) query_pos_ = target_.size();
  }
  void add_header(std::string name, std::string value) { headers_.emplace_back(std::move(name), std::move(value)); }
  void set_version(unsigned v) { version_ = v; }
  void set_keep_alive(bool k) { keep_alive_ = k; }

 private:
  friend class detail::parser;
  std::string_view method_;  // points at llhttp's static method names (or a caller literal)
  std::string target_;
  std::size_t query_pos_ = 0;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string body_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool upgrade_ = false;
};

}  // namespace crier::http
