// Options of the front door (crier::server). Designated-initializer friendly.
#pragma once

#include <crier/authorize.hpp>
#include <crier/http/options.hpp>
#include <crier/relay/options.hpp>
#include <crier/transport/sse.hpp>
#include <crier/transport/websocket_handshake.hpp>
#include <crier/webhook/options.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace crier {

struct server_options {
  std::string listen = "127.0.0.1:8080";        // "host:port" ("[::1]:0" = any free port); "" = adopt() only
  std::string prefix = "";                      // route prefix, e.g. "/crier" -> /crier/topics/...
  http::server_options http{};                  // limits and timeouts of the HTTP layer
  sse_options sse{};                            // SSE retry hint
  websocket_options websocket{};                // Origins, subprotocols, sizes, permessage-deflate
  std::chrono::milliseconds heartbeat{15'000};  // keep-alive bytes on idle streams, and the period of
                                                // the stall check below (0 = off, both)
  std::chrono::milliseconds stall_timeout{60'000};  // a stream whose write has not completed for this
                                                // long (client stopped reading) is cut; it resumes by id
  std::chrono::milliseconds max_stream_duration{0};  // end streams cleanly after this (0 = never);
                                                    // clients reconnect and resume by id
  std::chrono::milliseconds max_wait{300'000};  // cap on a long-poll's ?wait=
  std::size_t max_topics_per_request = 64;      // topics and patterns in one subscribe request
  std::size_t max_poll_bytes = 16 * 1024 * 1024;  // a poll answer stops adding messages past this
                                                // (always at least one); the cursor resumes the rest
  std::vector<std::string> cors_origins{};      // allowed Origins for CORS ("*" = any); empty = no CORS headers
  std::string index_html{};                     // served at "/" when not empty
  bool webhooks_api = true;                     // the REST hooks API at /api/v1/subscriptions
  webhook::engine_options webhooks{};           // delivery: client timeouts, caps, breaker, queues
  webhook::websub_options websub{};             // the WebSub hub at /websub (with webhooks_api)
  webhook::rsscloud_options rsscloud{};         // rssCloud at /pleaseNotify (with webhooks_api)
  bool relay_api = true;                        // the relay at /relay (docs/relay.md); the authorizer
                                                // is asked (access::relay) before a client gets a URL
  relay_options relay{};                        // token lifetime, timeouts, limits
  bool client_js = true;                        // serve the browser client at /crier.js and /crier.classic.js
  std::vector<std::string> webhook_allow{};     // CIDR ranges webhook targets may resolve to although
                                                // private / loopback (e.g. "127.0.0.0/8"); the rest of
                                                // those classes is refused (SSRF), unless
                                                // webhooks.client.address_allowed is set by the application
  authorizer authorize{};                       // asked before every subscribe and publish (403 /
                                                // an error frame when it says no); empty = allow all
};

}  // namespace crier
