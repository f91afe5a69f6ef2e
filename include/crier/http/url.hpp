// Percent-decoding and query-string lookup for request targets.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crier::http {

namespace detail {
inline int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace detail

// Decodes %XX escapes; a malformed escape is kept literally (lenient, like browsers).
// With plus_is_space (query strings), '+' becomes ' '.
inline std::string percent_decode(std::string_view s, bool plus_is_space = false) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = detail::hex_value(s[i + 1]), lo = detail::hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plus_is_space && c == '+') ? ' ' : c;
  }
  return out;
}

// Calls f(raw_name, raw_value) for each '&'-separated pair of a raw query string; stops when f returns true.
template <class F>
bool for_each_query_pair(std::string_view query, F&& f) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (f(name, value)) return true;
  }
  return false;
}

// First value of `name` (compared after decoding), percent-decoded with '+' as space.
inline std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  std::optional<std::string> result;
  for_each_query_pair(query, [&](std::string_view n, std::string_view v) {
    // Fast path: most names carry no escapes, so compare raw first.
    bool match = n.find_first_of("%+") == std::string_view::npos ? n == name : percent_decode(n, true) == name;
    if (match) result = percent_decode(v, true);
    return match;
  });
  return result;
}

// Percent-encodes all but RFC 3986's unreserved characters: safe as a query value, a form
// field or a path segment.
inline std::string percent_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xF];
    }
  }
  return out;
}

// The decoded name/value pairs of an application/x-www-form-urlencoded body (or a query
// string), in order, repeated names included.
inline std::vector<std::pair<std::string, std::string>> parse_form(std::string_view body) {
  std::vector<std::pair<std::string, std::string>> out;
  for_each_query_pair(body, [&](std::string_view n, std::string_view v) {
    out.emplace_back(percent_decode(n, true), percent_decode(v, true));
    return false;
  });
  return out;
}

}  // namespace crier::http
