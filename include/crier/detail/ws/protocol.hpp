// WebSocket protocol constants shared by the frame parser and writer (RFC 6455 §5.2, §7.4).
#pragma once

#include <cstddef>
#include <cstdint>

namespace crier::detail::ws {

enum class opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

constexpr bool is_control(opcode op) noexcept { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }

// Opcodes RFC 6455 defines; 0x3-0x7 and 0xB-0xF are reserved and fail the connection.
constexpr bool is_known_opcode(std::uint8_t op) noexcept {
  return op <= 0x2 || (op >= 0x8 && op <= 0xA);
}

// Close codes the server sends (and a few it must recognise).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;  // never on the wire: "close had no payload"
inline constexpr std::uint16_t abnormal = 1006;   // never on the wire
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t message_too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t try_again_later = 1013;
}  // namespace close_code

// Whether a close code may appear in a Close frame on the wire. 1004 is reserved, 1005,
// 1006 and 1015 are "pseudo" codes for APIs only, 1016-2999 are unassigned IANA space,
// 0-999 and >= 5000 are outside every range. 1012-1014 are registered with IANA since.
constexpr bool close_code_valid(std::uint16_t code) noexcept {
  if (code >= 1000 && code <= 1003) return true;
  if (code >= 1007 && code <= 1014) return true;
  return code >= 3000 && code <= 4999;
}

// Maximum payload of a control frame (§5.5).
inline constexpr std::size_t max_control_payload = 125;

}  // namespace crier::detail::ws
