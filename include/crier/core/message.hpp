// One published message: immutable once published and shared by every subscriber, every
// transport and the history. Wire frames are encoded from it once per format and cached on it.
#pragma once

#include <crier/core/id.hpp>
#include <crier/detail/utf8.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace crier {

// Shared, immutable bytes: one encoded frame written to many connections.
using frame_ptr = std::shared_ptr<const std::string>;

class message {
 public:
  message(std::string topic, message_id id, std::string event, std::string content_type, std::string payload,
          std::chrono::system_clock::time_point published, std::uint64_t order = 0)
      : order_(order),
        topic_(std::move(topic)),
        id_(id),
        event_(std::move(event)),
        content_type_(std::move(content_type)),
        payload_(std::move(payload)),
        published_(published),
        utf8_(detail::is_valid_utf8(payload_)),
        has_cr_or_nul_(payload_.find_first_of(std::string_view("\r\0", 2)) != std::string::npos) {}

  const std::string& topic() const noexcept { return topic_; }
  message_id id() const noexcept { return id_; }
  std::uint64_t seq() const noexcept { return id_.seq; }
  const std::string& event() const noexcept { return event_; }  // empty: none
  const std::string& content_type() const noexcept { return content_type_; }
  const std::string& payload() const noexcept { return payload_; }
  std::chrono::system_clock::time_point published() const noexcept { return published_; }
  // Publish order across all topics of one broker (replays of several topics merge on it;
  // wall-clock time can step back or tie).
  std::uint64_t order() const noexcept { return order_; }
  // Valid UTF-8: text-based formats (SSE, JSON) can carry it as is.
  bool is_text() const noexcept { return utf8_; }
  // Text that line-based formats (SSE) can rebuild byte-exactly: UTF-8 without CR or NUL.
  bool is_line_safe_text() const noexcept { return utf8_ && !has_cr_or_nul_; }

  // The frame for wire format `format` (a small integer a transport got from
  // format_registry), encoding it with `encode(message)` on first use. Not thread-safe: the
  // hub calls it only on its strand.
  template <class Encode>
  const frame_ptr& frame(std::size_t format, Encode&& encode) const {
    if (frames_.size() <= format) frames_.resize(format + 1);
    auto& f = frames_[format];
    if (!f) f = std::make_shared<const std::string>(encode(*this));
    return f;
  }

 private:
  std::uint64_t order_;
  std::string topic_;
  message_id id_;
  std::string event_;
  std::string content_type_;
  std::string payload_;
  std::chrono::system_clock::time_point published_;
  bool utf8_;
  bool has_cr_or_nul_;
  mutable std::vector<frame_ptr> frames_;
};

using message_ptr = std::shared_ptr<const message>;

// Why a subscriber could not get every message after its cursor.
enum class gap_reason {
  trimmed,   // the history no longer holds them (count, bytes or age limit)
  reset,     // the cursor's epoch is unknown: the history was lost or restarted
  overflow,  // the subscriber's queue overflowed under policy drop_oldest
};

inline std::string_view to_string(gap_reason r) noexcept {
  switch (r) {
    case gap_reason::trimmed: return "trimmed";
    case gap_reason::reset: return "reset";
    case gap_reason::overflow: return "overflow";
  }
  return "unknown";
}

// An explicit notice, delivered in order with the messages: "between `after` and `next`
// you missed messages". `missed` is their count when known (0 = unknown, as for reset).
struct gap_notice {
  std::string topic;
  gap_reason reason = gap_reason::trimmed;
  message_id after;   // the last id the subscriber had (epoch may be stale for reset)
  message_id next;    // the next id it will receive, or the topic's current position
  std::uint64_t missed = 0;
};

}  // namespace crier
