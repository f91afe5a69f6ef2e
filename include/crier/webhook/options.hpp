// Options and descriptions of webhook subscriptions: what the REST API, WebSub and the C++
// API create, and how the delivery engine treats them. Designated-initializer friendly.
#pragma once

#include <crier/core/options.hpp>
#include <crier/http/client.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace crier::webhook {

using namespace std::chrono_literals;

// Close to Standard Webhooks' schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
inline std::vector<std::chrono::milliseconds> default_retry_schedule() {
  return {0ms, 5s, 5min, 30min, 2h, 5h, 10h, 10h};
}

enum class signature_style {
  standard_webhooks,  // webhook-id, webhook-timestamp, webhook-signature (v1, HMAC-SHA256)
  websub,             // X-Hub-Signature: <method>=<hex HMAC of the body>; Link rel="hub" and "self"
  rsscloud,           // not the content: a form-encoded "url=<topic>" saying the feed changed; unsigned
};

// One subscription: where, what, and how.
struct subscription_spec {
  std::string target_url;                  // http(s) URL the messages are POSTed to
  std::vector<std::string> topics;         // names or patterns
  std::vector<std::string> secrets{};      // "whsec_…" (Standard Webhooks; several while rotating)
                                           // or the WebSub hub.secret; empty = unsigned
  std::vector<std::string> events{};       // only messages with one of these event names; empty = all
  bool ordered = true;                     // one delivery in flight; N+1 waits for N to succeed or
                                           // be given up. false = up to max_parallel at once, unordered
  std::size_t max_parallel = 8;            // when !ordered
  std::size_t batch_max = 1;               // > 1: the messages queued when a delivery starts, up to
                                           // this many, go in one POST as a JSON array of envelopes
  std::vector<std::chrono::milliseconds> retry_schedule = default_retry_schedule();  // delay before
                                           // each attempt; its length is the number of attempts
  signature_style style = signature_style::standard_webhooks;
  std::string websub_method = "sha256";    // X-Hub-Signature method (websub style)
  std::string websub_topic{};              // WebSub: the topic URL (Link rel="self")
  std::string websub_hub{};                // WebSub: this hub's URL (Link rel="hub")
  std::string since{};                     // start position ("" = new messages only)
  bool verify_intent = false;              // first GET target_url?crier.challenge=…; deliveries start
                                           // once it answers 2xx with the challenge as its body (the
                                           // subscription is removed if it does not)
  std::chrono::system_clock::time_point expires_at{};  // the subscription ends then (a WebSub lease,
                                           // rssCloud's 25 hours); the epoch (default) = never
};

struct engine_options {
  http::client_options client{};           // timeouts, pool caps, the SSRF guard (address_allowed)
  queue_options queue{.max_messages = 10'000, .max_bytes = 64 * 1024 * 1024,
                      .policy = overflow_policy::disconnect};  // per subscription; `disconnect` here
                                           // means: fall back to the history from the last delivered id
  double jitter = 0.2;                     // retry delays are scaled by a random factor in [1-j, 1+j]
  std::chrono::milliseconds max_retry_after{24h};  // cap on a receiver's Retry-After
  std::size_t breaker_failures = 5;        // consecutive failures that open an endpoint's breaker
  std::chrono::milliseconds breaker_open{30s};  // then one probe is let through
  std::size_t max_dead_letters = 1000;     // per subscription; the oldest are dropped past this
  std::size_t max_subscriptions = 100'000;  // webhook, WebSub and rssCloud together
  // Requests the application answers itself instead of sending them (crier's relay: a delivery
  // to one of this hub's relay URLs goes straight down the relay connection). Returns true when
  // it took the request — then it calls `done` later, never from inside this call.
  std::function<bool(http::client_request& req, std::function<void(std::error_code, http::client_response)>& done)>
      local_route{};
};

// The WebSub hub (websub.hpp).
struct websub_options {
  std::string path = "/websub";
  std::string public_url{};                     // this hub's URL (Link rel="hub"); "" = http://<Host of
                                                // the subscribe request><path>. Set it behind TLS or a proxy
  std::chrono::seconds default_lease{10 * 24 * 3600};  // when hub.lease_seconds is absent
  std::chrono::seconds min_lease{60};           // asked leases are clamped into [min_lease, max_lease]
  std::chrono::seconds max_lease{30 * 24 * 3600};
  std::size_t max_pending = 10'000;             // verifications and fetches in flight; beyond: 503
  std::size_t max_fetch_bytes = 1024 * 1024;    // hub.mode=publish: larger content is not published
};


// rssCloud registrations (rsscloud.hpp).
struct rsscloud_options {
  std::string path = "/pleaseNotify";
  std::chrono::seconds lease{25 * 3600};  // rssCloud: subscribers re-register every 24 hours
  std::size_t max_urls = 100;             // feeds in one request
  std::size_t max_pending = 10'000;       // verifications in flight; beyond: 503
};

}  // namespace crier::webhook
