// Pure helpers for the server side of the RFC 6455 opening handshake (§4.2).
#pragma once

#include <openssl/sha.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "crier/detail/base64.hpp"
#include "crier/detail/ws/protocol.hpp"

namespace crier::detail::ws {

// Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) (§4.2.2 step 5.4).
inline std::string accept_key(std::string_view sec_websocket_key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string in;
  in.reserve(sec_websocket_key.size() + guid.size());
  in += sec_websocket_key;
  in += guid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  std::string out;
  append_base64(out, std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
  return out;
}

// Sec-WebSocket-Key must be the base64 of 16 bytes (§4.1): 22 alphabet characters + "==".
// The unused low bits of the last character are not checked (as most decoders do not),
// so a sloppy but decodable key is still accepted.
inline bool valid_client_key(std::string_view key) noexcept {
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  for (std::size_t i = 0; i < 22; ++i) {
    char c = key[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (!ok) return false;
  }
  return true;
}

namespace handshake_detail {
constexpr char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }
}  // namespace handshake_detail

// Whether a comma-separated header value (e.g. Connection: "keep-alive, Upgrade") lists
// `token`, compared case-insensitively; optional whitespace around elements and empty
// elements (RFC 9110 §5.6.1) are allowed.
inline bool header_has_token(std::string_view value, std::string_view token) noexcept {
  using handshake_detail::is_ows;
  using handshake_detail::lower;
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    while (!item.empty() && is_ows(item.front())) item.remove_prefix(1);
    while (!item.empty() && is_ows(item.back())) item.remove_suffix(1);
    if (item.size() != token.size() || item.empty()) continue;
    bool same = true;
    for (std::size_t i = 0; i < item.size() && same; ++i) same = lower(item[i]) == lower(token[i]);
    if (same) return true;
  }
  return false;
}

}  // namespace crier::detail::ws
