// Option structs for the core: designated-initializer friendly, each default commented.
#pragma once

#include <chrono>
#include <cstddef>

namespace crier {

// What a topic's history keeps (for resume and for `since=`). A message leaves the history
// when any limit is exceeded; the newest message is always kept.
struct history_options {
  std::size_t max_messages = 1000;               // per topic
  std::size_t max_bytes = 64 * 1024 * 1024;      // payload bytes per topic
  std::chrono::seconds max_age{3600};            // 0 = no age limit
};

// What a subscriber does when it falls behind by more than its queue holds.
enum class overflow_policy {
  disconnect,   // default: end the subscription; the client resumes from its last id
  drop_oldest,  // drop the oldest queued messages and deliver an explicit gap notice
  conflate,     // keep only the newest queued message per topic (market-data style)
};

struct queue_options {
  std::size_t max_messages = 4096;               // queued per subscriber
  std::size_t max_bytes = 32 * 1024 * 1024;      // queued payload bytes per subscriber (a message
                                                 // larger than this is still taken when the queue is empty)
  overflow_policy policy = overflow_policy::disconnect;
};

struct hub_options {
  history_options history{};                     // per-topic history bounds
  queue_options queue{};                         // default per-subscriber queue
  std::size_t max_payload_bytes = 16 * 1024 * 1024;  // larger publishes fail with payload_too_large
  std::size_t max_topics = 1'000'000;            // topics with history; the idlest empty ones are forgotten first
  std::size_t max_event_name = 64;               // bytes of an event name
};

}  // namespace crier
