// What a streaming transport knows about the subscriber it is encoding for.
#pragma once

#include <crier/core/subscription.hpp>

namespace crier {

struct stream_context {
  bool multi_topic = false;  // several topics or a pattern: ids carry a cursor per topic
  bool envelope = false;     // payloads wrapped in the JSON envelope
  const subscription_state* sub = nullptr;  // set once subscribed
};

}  // namespace crier
