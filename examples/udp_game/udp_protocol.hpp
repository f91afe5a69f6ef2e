// The UDP game feed's datagram format (README.md, "Datagram format"). Shared by the server
// (udp_transport.hpp) and the receiver (receiver.cpp); it depends on nothing but the standard
// library. All integers are big-endian. One datagram = one message or one notice:
//
//   offset size
//    0     2   magic "CG"
//    2     1   version (1)
//    3     1   kind: 1 message, 2 notice
//    4     4   packet   per-registration datagram counter 1, 2, 3 ... (a jump = datagrams lost
//                       or reordered on the way; the server never skips one)
//    8     4   skipped  seqs of this topic the server deliberately did not send since the
//                       previous datagram of the topic to this endpoint (latest-state
//                       conflation under the rate cap); 0 for notices but `oversize`
//   12     4   epoch    \ the message id "epoch:seq" (8 hex digits ':' decimal), as crier's
//   16     8   seq      / other transports show it; 0:0 for notices about no message
//   24     1   n        topic length (crier topics are at most 255 bytes)
//   25     n   topic
//   25+n   ..  payload  (message: the published bytes; notice: code:u8 then UTF-8 text)
//
// Bytes 0..11 are per endpoint; bytes 12.. of a message are the same for every endpoint, so
// the server encodes them once per message and sends them with a per-endpoint prefix in one
// gathered sendmsg().
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace udp_game::proto {

inline constexpr char magic[2] = {'C', 'G'};
inline constexpr std::uint8_t version = 1;
inline constexpr std::size_t prefix_size = 12;            // per-endpoint part
inline constexpr std::size_t header_size = 25;            // prefix + epoch + seq + topic length
inline constexpr std::size_t default_max_datagram = 1200;  // whole UDP payload (README.md, "Size limit")

enum class kind : std::uint8_t { message = 1, notice = 2 };

enum class notice_code : std::uint8_t {
  registered = 1,  // the registration is live: text "id=... ttl=S rate=R burst=B"
  oversize = 2,    // message topic/epoch:seq was not sent: it does not fit max_datagram
  gap = 3,         // crier reported a gap (reset: the topic's history was recreated, new epoch;
                   // trimmed: history no longer holds what was skipped); epoch:seq = the next id
  expired = 4,     // the registration was not refreshed in time and is gone: register again
  bye = 5,         // the registration ended: "unregistered", "server stopping"
  overflow = 6,    // more distinct topics were pending than the server queues per endpoint:
                   // the endpoint was resubscribed from its last sent ids (latest state follows)
};

inline std::string_view to_string(notice_code c) noexcept {
  switch (c) {
    case notice_code::registered: return "registered";
    case notice_code::oversize: return "oversize";
    case notice_code::gap: return "gap";
    case notice_code::expired: return "expired";
    case notice_code::bye: return "bye";
    case notice_code::overflow: return "overflow";
  }
  return "unknown";
}

// --- writing ---------------------------------------------------------------------------
inline void put_u8(std::string& out, std::uint8_t v) { out += static_cast<char>(v); }
inline void put_u32(std::string& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFF);
}
inline void put_u64(std::string& out, std::uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFF);
}

// The per-endpoint prefix, written into a fixed buffer.
inline void write_prefix(unsigned char (&out)[prefix_size], kind k, std::uint32_t packet, std::uint32_t skipped) {
  out[0] = static_cast<unsigned char>(magic[0]);
  out[1] = static_cast<unsigned char>(magic[1]);
  out[2] = version;
  out[3] = static_cast<unsigned char>(k);
  for (int i = 0; i < 4; ++i) out[4 + i] = static_cast<unsigned char>(packet >> (24 - 8 * i));
  for (int i = 0; i < 4; ++i) out[8 + i] = static_cast<unsigned char>(skipped >> (24 - 8 * i));
}

// Bytes 12.. of a datagram: id, topic, then the payload (or the notice body).
inline std::string encode_body(std::uint32_t epoch, std::uint64_t seq, std::string_view topic,
                               std::string_view payload) {
  std::string out;
  out.reserve(header_size - prefix_size + topic.size() + payload.size());
  put_u32(out, epoch);
  put_u64(out, seq);
  put_u8(out, static_cast<std::uint8_t>(topic.size() > 255 ? 255 : topic.size()));
  out.append(topic.substr(0, 255));
  out.append(payload);
  return out;
}

// A notice body; the text is cut so the whole datagram fits `max_datagram`.
inline std::string encode_notice(notice_code code, std::uint32_t epoch, std::uint64_t seq, std::string_view topic,
                                 std::string_view text, std::size_t max_datagram) {
  std::string payload;
  put_u8(payload, static_cast<std::uint8_t>(code));
  std::size_t used = header_size + topic.size() + 1;
  std::size_t room = max_datagram > used ? max_datagram - used : 0;
  payload.append(text.substr(0, room));
  return encode_body(epoch, seq, topic, payload);
}

// --- reading ---------------------------------------------------------------------------
struct datagram {
  kind what = kind::message;
  std::uint32_t packet = 0;
  std::uint32_t skipped = 0;
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;
  std::string_view topic;
  std::string_view payload;  // message: the payload; notice: the text (code is separate)
  notice_code code = notice_code::registered;
};

inline std::uint64_t get_be(const unsigned char* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// Parses one datagram; nullopt when it is not a well-formed version-1 datagram.
inline std::optional<datagram> parse(std::string_view d) {
  if (d.size() < header_size || d[0] != magic[0] || d[1] != magic[1] || static_cast<unsigned char>(d[2]) != version)
    return std::nullopt;
  auto p = reinterpret_cast<const unsigned char*>(d.data());
  datagram g;
  if (p[3] != 1 && p[3] != 2) return std::nullopt;
  g.what = static_cast<kind>(p[3]);
  g.packet = static_cast<std::uint32_t>(get_be(p + 4, 4));
  g.skipped = static_cast<std::uint32_t>(get_be(p + 8, 4));
  g.epoch = static_cast<std::uint32_t>(get_be(p + 12, 4));
  g.seq = get_be(p + 16, 8);
  std::size_t n = p[24];
  if (d.size() < header_size + n) return std::nullopt;
  g.topic = d.substr(header_size, n);
  g.payload = d.substr(header_size + n);
  if (g.what == kind::notice) {
    if (g.payload.empty()) return std::nullopt;
    g.code = static_cast<notice_code>(static_cast<unsigned char>(g.payload.front()));
    g.payload.remove_prefix(1);
  }
  return g;
}

// "epoch:seq" as crier prints ids (8 lowercase hex digits).
inline std::string id_string(std::uint32_t epoch, std::uint64_t seq) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = hex[(epoch >> (28 - 4 * i)) & 0xF];
  s += ':';
  s += std::to_string(seq);
  return s;
}

}  // namespace udp_game::proto
