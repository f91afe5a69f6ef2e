// Options, request and response of the outbound HTTP/1.1 client (crier/http/client.hpp).
#pragma once

#include <crier/detail/asio.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crier/http/request.hpp"  // detail::iequals

namespace crier::http {

struct client_options {
  // At most this many connections (open or opening) per origin (scheme://host:port);
  // requests beyond it wait in a FIFO for a connection to become free. 0 counts as 1.
  std::size_t max_connections_per_origin = 8;
  // Requests waiting for a connection of one origin; more fail at once with
  // errc::too_many_connections.
  std::size_t max_queued_per_origin = 10'000;
  // Kept-alive idle connections per origin; a connection beyond it is closed after its response.
  // As many as the connection cap by default: a subscription's next request arrives just after
  // its connection went idle, and closing it then would reopen a connection per delivery.
  std::size_t max_idle_per_origin = 8;
  // An idle kept-alive connection is closed after this long (0: connections are not kept).
  std::chrono::milliseconds idle_timeout{30'000};
  // Resolve + TCP connect (+ TLS handshake) of a new connection -> errc::connect_timeout.
  std::chrono::milliseconds connect_timeout{5'000};
  // Request written -> complete (final) response head -> errc::response_timeout.
  std::chrono::milliseconds response_timeout{10'000};
  // The whole exchange, including waiting for a pooled connection -> errc::request_timeout.
  std::chrono::milliseconds total_timeout{30'000};
  // Status line + header fields of one response (and its trailers) -> errc::response_too_large.
  std::size_t max_response_head = 16 * 1024;
  // Body bytes kept in client_response::body; the rest is read and discarded
  // (client_response::body_truncated) so that the connection stays reusable ...
  std::size_t max_response_body = 64 * 1024;
  // ... up to this many discarded bytes; beyond it the response completes at once (truncated)
  // and the connection is closed instead of drained.
  std::size_t max_response_drain = 1024 * 1024;
  // SSRF guard: asked for every resolved address immediately before connecting to it, on every
  // attempt (so DNS rebinding cannot slip past); a refused address is skipped; when none is left
  // the request fails with errc::address_refused. Runs on the client's executor; must not throw.
  // Empty: every address is allowed.
  std::function<bool(const asio::ip::address&)> address_allowed{};
  // User-Agent sent unless the request carries its own; empty: none.
  std::string user_agent = "crier";
};

struct client_request {
  std::string method = "POST";
  // Absolute http:// or https:// URL. Userinfo (user@) is refused; IPv6 literals as [::1];
  // default ports 80 / 443; a #fragment is dropped.
  std::string url;
  // Sent as given after Host (from the URL unless set here) and User-Agent. Content-Length and
  // Transfer-Encoding are the client's (a request carrying them fails with errc::bad_request);
  // `Connection: close` is honoured (the connection is not reused).
  std::vector<std::pair<std::string, std::string>> headers;
  // Sent with Content-Length (also `Content-Length: 0` for an empty POST, PUT or PATCH).
  std::string body;
};

struct client_response {
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;             // at most client_options::max_response_body bytes
  bool body_truncated = false;  // the server sent more than that

  // First value of `name`, case-insensitive.
  std::optional<std::string_view> header(std::string_view name) const {
    for (auto& [n, v] : headers)
      if (detail::iequals(n, name)) return std::string_view(v);
    return std::nullopt;
  }
};

}  // namespace crier::http
