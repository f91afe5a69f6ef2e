// Options of the relay (docs/relay.md): how long tokens live, how long relayed requests wait,
// and the limits on what travels through. Designated-initializer friendly.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace crier {

struct relay_options {
  std::chrono::milliseconds idle_expiry{10 * 60'000};  // a token with no client connected this long ends (404)
  std::chrono::milliseconds answer_timeout{30'000};    // a relayed request unanswered this long -> 504
  std::chrono::milliseconds offline_hold{0};           // a request to an offline client waits this long for it
                                                       // to come back; 0 = 503 + Retry-After at once
  std::chrono::milliseconds poll_grace{5'000};         // long-poll clients: online this long after a poll ends
  std::chrono::milliseconds hello_timeout{10'000};     // a WebSocket that sends no hello is closed (1008)
  std::size_t max_body = 1024 * 1024;                  // request and answer bodies -> 413 / 502
  std::size_t max_header_bytes = 64 * 1024;            // forwarded header names + values, both ways
  std::size_t max_in_flight = 64;                      // per token, sent and unanswered (+ held); beyond: 503
  std::size_t max_tokens = 10'000;                     // live tokens; a hello beyond: 503 / close 1013
  std::string public_url{};                            // base of relay URLs, e.g. "https://hub.example";
                                                       // "" = http://<Host of the client's hello request>
};

}  // namespace crier
