// The TCP feed's wire format (README.md, "Wire format"): length-prefixed binary frames over
// plain TCP. Shared by the server (tcp_feed.hpp), the client (client.cpp) and the load
// generator (feed_loadgen.cpp); it depends on nothing but the standard library.
//
//   frame   = length:u32  type:u8  body        length counts type + body (>= 1)
//   str16   = n:u16  n bytes                   str32 = n:u32  n bytes
//   id      = epoch:u32  seq:u64
// All integers are big-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tcp_feed::proto {

inline constexpr std::uint8_t version = 1;
inline constexpr std::size_t header_size = 4;  // the length prefix

// Client -> server.
enum class client_op : std::uint8_t {
  subscribe = 0x01,    // sub:u32 policy:u8 since:str32 n:u16 n x topic:str16
  unsubscribe = 0x02,  // sub:u32
  ping = 0x03,         // token:u64
};

// Server -> client.
enum class server_op : std::uint8_t {
  hello = 0x80,         // version:u8 max_client_frame:u32
  subscribed = 0x81,    // sub:u32 cursor:str32 (the starting position, a resume cursor)
  unsubscribed = 0x82,  // sub:u32
  message = 0x83,       // id topic:str16 event:str16 content_type:str16 payload (rest of frame)
  gap = 0x84,           // sub:u32 reason:u8 topic:str16 after:id next:id missed:u64
  error = 0x85,         // sub:u32 code:u16 text:str16   (sub 0: the connection closes after it)
  pong = 0x86,          // token:u64
  goodbye = 0x87,       // code:u16 text:str16           (then the server closes its side)
};

// What a subscription does when its client reads slower than messages arrive.
enum class policy : std::uint8_t {
  server_default = 0,
  disconnect = 1,   // the subscription ends with error queue_overflow; resume from your cursor
  drop_oldest = 2,  // the oldest queued messages are dropped; a gap (overflow) says how many
  conflate = 3,     // the newest message per topic replaces an unsent older one; a gap
                    // (conflated) before it says which seqs were skipped
};

enum class gap_reason : std::uint8_t {
  trimmed = 1,    // the history no longer holds them
  reset = 2,      // the resume id's epoch is unknown (history lost or restarted); missed = 0
  overflow = 3,   // drop_oldest dropped them
  conflated = 4,  // conflate replaced them with a newer message of the topic
};

enum class error_code : std::uint16_t {
  bad_frame = 1,               // malformed frame or body                         (fatal)
  frame_too_large = 2,         // length 0 or over the server's max_client_frame  (fatal)
  unknown_command = 3,         // unknown frame type                              (fatal)
  invalid_topic = 4,           // a topic or pattern that does not validate
  invalid_id = 5,              // `since` is not a cursor (or one id for several topics)
  invalid_subscription = 6,    // sub id 0, unknown policy, no topics or too many
  not_subscribed = 7,          // unsubscribe of an unknown sub id
  too_many_subscriptions = 8,  // over the server's per-connection limit
  queue_overflow = 9,          // policy disconnect: this subscription ended; resume it
  unavailable = 10,            // the hub refused (stopping, too many topics)
};

enum class goodbye_code : std::uint16_t {
  server_stopping = 1,
};

inline std::string_view to_string(gap_reason r) noexcept {
  switch (r) {
    case gap_reason::trimmed: return "trimmed";
    case gap_reason::reset: return "reset";
    case gap_reason::overflow: return "overflow";
    case gap_reason::conflated: return "conflated";
  }
  return "unknown";
}

inline std::string_view to_string(error_code c) noexcept {
  switch (c) {
    case error_code::bad_frame: return "bad_frame";
    case error_code::frame_too_large: return "frame_too_large";
    case error_code::unknown_command: return "unknown_command";
    case error_code::invalid_topic: return "invalid_topic";
    case error_code::invalid_id: return "invalid_id";
    case error_code::invalid_subscription: return "invalid_subscription";
    case error_code::not_subscribed: return "not_subscribed";
    case error_code::too_many_subscriptions: return "too_many_subscriptions";
    case error_code::queue_overflow: return "queue_overflow";
    case error_code::unavailable: return "unavailable";
  }
  return "unknown";
}

struct wire_id {
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;
  friend bool operator==(const wire_id&, const wire_id&) = default;
};

// "epoch:seq" as crier writes ids (8 hex digits, decimal seq).
inline std::string to_string(wire_id id) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = hex[(id.epoch >> (28 - 4 * i)) & 0xF];
  s += ':';
  s += std::to_string(id.seq);
  return s;
}

// Appends frames to a string.
class writer {
 public:
  explicit writer(std::string& out) : out_(out) {}

  // Starts a frame: the length is filled in by end().
  writer& begin(std::uint8_t type) {
    start_ = out_.size();
    out_.append(header_size, '\0');
    return u8(type);
  }
  template <class Op>
  writer& begin(Op op) { return begin(static_cast<std::uint8_t>(op)); }
  void end() {
    auto n = static_cast<std::uint32_t>(out_.size() - start_ - header_size);
    for (int i = 0; i < 4; ++i) out_[start_ + static_cast<std::size_t>(i)] = static_cast<char>(n >> (24 - 8 * i));
  }

  writer& u8(std::uint8_t v) {
    out_ += static_cast<char>(v);
    return *this;
  }
  writer& u16(std::uint16_t v) { return be(v, 2); }
  writer& u32(std::uint32_t v) { return be(v, 4); }
  writer& u64(std::uint64_t v) { return be(v, 8); }
  writer& id(wire_id v) { return u32(v.epoch).u64(v.seq); }
  // Strings longer than the length field allows are cut (callers keep them short).
  writer& str16(std::string_view s) {
    s = s.substr(0, 0xFFFF);
    u16(static_cast<std::uint16_t>(s.size()));
    out_.append(s);
    return *this;
  }
  writer& str32(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
    return *this;
  }
  writer& bytes(std::string_view s) {
    out_.append(s);
    return *this;
  }

 private:
  writer& be(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_ += static_cast<char>(v >> (8 * i));
    return *this;
  }
  std::string& out_;
  std::size_t start_ = 0;
};

// Reads one frame's body; any read past the end clears ok() and returns zeros / empty.
class reader {
 public:
  reader(const char* p, std::size_t n) : p_(p), e_(p + n) {}
  explicit reader(std::string_view s) : reader(s.data(), s.size()) {}

  bool ok() const noexcept { return ok_; }
  bool done() const noexcept { return p_ == e_; }
  std::size_t left() const noexcept { return static_cast<std::size_t>(e_ - p_); }

  std::uint8_t u8() { return static_cast<std::uint8_t>(be(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(be(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(be(4)); }
  std::uint64_t u64() { return be(8); }
  wire_id id() {
    wire_id v;
    v.epoch = u32();
    v.seq = u64();
    return v;
  }
  std::string_view str16() { return take(u16()); }
  std::string_view str32() { return take(u32()); }
  std::string_view rest() { return take(left()); }

 private:
  std::uint64_t be(int n) {
    if (!ok_ || left() < static_cast<std::size_t>(n)) return ok_ = false, 0;
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(*p_++);
    return v;
  }
  std::string_view take(std::size_t n) {
    if (!ok_ || left() < n) return ok_ = false, std::string_view{};
    std::string_view s(p_, n);
    p_ += n;
    return s;
  }
  const char* p_;
  const char* e_;
  bool ok_ = true;
};

// The length of the frame starting at `p` (which holds at least header_size bytes).
inline std::uint32_t frame_length(const char* p) noexcept {
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<unsigned char>(p[i]);
  return n;
}

}  // namespace tcp_feed::proto
