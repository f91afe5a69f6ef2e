// Shared basics for the SSE fan-out client: Asio aliases, the monotonic clock and run-wide state.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>

namespace sse_fanout {

using tcp = asio::ip::tcp;
using clk = std::chrono::steady_clock;

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count();
}

// State every part of a run reads: written by the bench (finished, t_run_start)
// and by the publisher side (sent), read by the subscriber side.
struct run_state {
  bool finished = false;
  int64_t t_run_start = 0;
  uint64_t sent = 0;  // highest sequence number handed out for publishing
};

}  // namespace sse_fanout
