// Wire-format slots: each encoded frame is cached on the message under one of these, so a
// message is encoded once per format however many subscribers read it.
#pragma once

#include <atomic>
#include <cstddef>

namespace crier {

enum class builtin_format : std::size_t {
  sse = 0,           // id + event + data lines (single-topic streams)
  sse_no_id,         // event + data lines; the id line is per subscriber (multi-topic)
  sse_envelope,      // id + data = JSON envelope
  sse_envelope_no_id,
  ndjson,            // JSON envelope + "\n"
  count
};

constexpr std::size_t format_slot(builtin_format f) noexcept { return static_cast<std::size_t>(f); }

// A fresh slot for an application's own transport.
inline std::size_t allocate_format_slot() noexcept {
  static std::atomic<std::size_t> next{static_cast<std::size_t>(builtin_format::count)};
  return next++;
}

}  // namespace crier
