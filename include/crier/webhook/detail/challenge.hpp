// What the subscription front doors share: unguessable challenges, the echo check of a
// verification of intent, query strings added to a callback URL, and 4xx bodies naming a field.
#pragma once

#include <crier/detail/json.hpp>
#include <crier/http/client_options.hpp>
#include <crier/http/response.hpp>

#include <openssl/rand.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace crier::webhook::detail {

// `bytes` random bytes from OpenSSL as hex: a subscriber cannot guess the challenge it must echo.
inline std::string random_hex(std::size_t bytes = 16) {
  static constexpr char hex[] = "0123456789abcdef";
  unsigned char buf[64];
  bytes = std::min(bytes, sizeof buf);
  if (RAND_bytes(buf, static_cast<int>(bytes)) != 1) throw std::runtime_error("crier: RAND_bytes failed");
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    out += hex[buf[i] >> 4];
    out += hex[buf[i] & 0xF];
  }
  return out;
}

// A 2xx whose body is the challenge (trailing whitespace forgiven: many frameworks add a newline).
inline bool echoes(const http::client_response& r, std::string_view challenge) {
  if (r.status < 200 || r.status >= 300 || r.body_truncated) return false;
  std::string_view body = r.body;
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' ')) body.remove_suffix(1);
  return body == challenge;
}

// `url` with `query` ("a=1&b=2", already encoded) appended to its query string.
inline std::string with_query(std::string_view url, std::string_view query) {
  auto hash = url.find('#');
  auto base = url.substr(0, hash);
  std::string out(base);
  out += base.find('?') == std::string_view::npos ? '?' : '&';
  out += query;
  return out;
}

// {"error":{"code":"invalid_field","field":…,"message":…}} with `status` (422 for JSON APIs,
// 400 for form posts).
inline http::response field_error(std::string_view field, std::string_view message, unsigned status = 422) {
  std::string b = R"({"error":{"code":"invalid_field","field":)";
  b += crier::detail::json_string(field);
  b += R"(,"message":)";
  b += crier::detail::json_string(message);
  b += "}}";
  return http::response::json(status, std::move(b));
}

}  // namespace crier::webhook::detail
