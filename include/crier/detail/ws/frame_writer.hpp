// Server-to-client WebSocket frames (RFC 6455 §5.2): never masked (§5.1), so a broadcast
// frame is the same bytes for every subscriber and can be built once and shared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "crier/detail/ws/protocol.hpp"

namespace crier::detail::ws {

// Bytes of an unmasked header for a payload of `len` bytes: 2, 4 or 10.
constexpr std::size_t header_size(std::uint64_t len) noexcept {
  return len <= 125 ? 2 : len <= 0xFFFF ? 4 : 10;
}

inline constexpr std::size_t max_header_size = 10;

// Writes an unmasked frame header into out (room for max_header_size bytes) using the
// minimal length encoding, and returns its size.
inline std::size_t write_header(char* out, opcode op, bool fin, bool rsv1, std::uint64_t payload_len) noexcept {
  out[0] = static_cast<char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | static_cast<std::uint8_t>(op));
  if (payload_len <= 125) {
    out[1] = static_cast<char>(payload_len);
    return 2;
  }
  if (payload_len <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<char>(payload_len >> 8);
    out[3] = static_cast<char>(payload_len & 0xFF);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<char>((payload_len >> (56 - 8 * i)) & 0xFF);
  return 10;
}

// A complete single-frame (FIN) message or control frame: header + payload.
inline std::string make_frame(opcode op, std::string_view payload, bool rsv1 = false) {
  std::string f;
  f.resize(header_size(payload.size()) + payload.size());
  std::size_t h = write_header(f.data(), op, true, rsv1, payload.size());
  if (!payload.empty()) __builtin_memcpy(f.data() + h, payload.data(), payload.size());
  return f;
}

// A text or binary message as one frame. `compressed` sets RSV1 (payload already deflated,
// trailing 00 00 ff ff stripped, per RFC 7692).
inline std::string make_data_frame(std::string_view payload, bool is_text, bool compressed = false) {
  return make_frame(is_text ? opcode::text : opcode::binary, payload, compressed);
}

// The same, built once and shared between every subscriber's write queue.
inline std::shared_ptr<const std::string> make_shared_data_frame(std::string_view payload, bool is_text,
                                                                 bool compressed = false) {
  return std::make_shared<const std::string>(make_data_frame(payload, is_text, compressed));
}

// Control payloads are capped at 125 bytes (§5.5); longer input is cut, and a close reason
// is cut back to a UTF-8 character boundary so the peer does not fail it with 1007.
inline std::string make_close_frame(std::uint16_t code, std::string_view reason = {}) {
  // 1005 means "no code": send an empty close payload (a code is required to send a reason).
  if (code == close_code::no_status || code == 0) return make_frame(opcode::close, {});
  std::size_t max_reason = max_control_payload - 2;
  if (reason.size() > max_reason) {
    std::size_t n = max_reason;
    // Step back over continuation bytes to the start of the cut character, dropping it.
    while (n > 0 && (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80) --n;
    reason = reason.substr(0, n);
  }
  std::string body;
  body.reserve(2 + reason.size());
  body += static_cast<char>(code >> 8);
  body += static_cast<char>(code & 0xFF);
  body += reason;
  return make_frame(opcode::close, body);
}

inline std::string make_ping(std::string_view payload) {
  return make_frame(opcode::ping, payload.substr(0, max_control_payload));
}

// A pong echoes the ping's payload (§5.5.3).
inline std::string make_pong(std::string_view payload) {
  return make_frame(opcode::pong, payload.substr(0, max_control_payload));
}

}  // namespace crier::detail::ws
