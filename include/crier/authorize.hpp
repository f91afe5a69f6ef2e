// The application's say over who may do what: one callback, asked before a subscription or a
// publish takes effect (and, for WebSocket, before the upgrade, so a refusal is a plain 403).
#pragma once

#include <crier/http/request.hpp>

#include <functional>
#include <string_view>

namespace crier {

enum class access {
  connect,    // open a /ws connection (topic is empty)
  subscribe,  // subscribe to `topic` (a name or a pattern)
  publish,    // publish to `topic`
  relay,      // become a relay client (WebSocket or POST /relay; topic is empty): receive the
              // HTTP requests sent to a public URL of this hub
};

struct access_request {
  access action;
  std::string_view topic;
  const http::request& request;  // the HTTP request; for WebSocket, the handshake (its headers,
                                 // cookies, query); its body is empty
};

// True = allowed. Called on the hub's strand; it must not block.
using authorizer = std::function<bool(const access_request&)>;

}  // namespace crier
