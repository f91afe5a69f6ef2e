// Base64 (RFC 4648, with padding) for binary payloads in text formats.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace crier::detail {

inline void append_base64(std::string& out, std::string_view in) {
  static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto p = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t n = in.size(), i = 0;
  out.reserve(out.size() + (n + 2) / 3 * 4);
  for (; i + 3 <= n; i += 3) {
    unsigned v = p[i] << 16 | p[i + 1] << 8 | p[i + 2];
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (n - i == 1) {
    unsigned v = p[i] << 16;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (n - i == 2) {
    unsigned v = p[i] << 16 | p[i + 1] << 8;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
}

inline int base64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Decodes padded base64 onto `out` (a std::string or a vector of bytes); false when it is not.
// The unused low bits of the last character are not checked, as most decoders do not.
template <class Bytes>
bool decode_base64(std::string_view in, Bytes& out) {
  if (in.size() % 4 != 0) return false;
  std::size_t pad = in.ends_with("==") ? 2 : in.ends_with('=') ? 1 : 0;
  out.reserve(out.size() + in.size() / 4 * 3);
  std::uint32_t acc = 0;  // only its low bits matter; older ones may shift out
  int bits = 0;
  for (char c : in.substr(0, in.size() - pad)) {
    int v = base64_value(c);  // also refuses a '=' anywhere but the end
    if (v < 0) return false;
    acc = acc << 6 | static_cast<std::uint32_t>(v);
    if ((bits += 6) >= 8) out.push_back(static_cast<typename Bytes::value_type>(acc >> (bits -= 8)));
  }
  return true;
}

}  // namespace crier::detail
