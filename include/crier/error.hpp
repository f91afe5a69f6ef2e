// crier's error codes: one std::error_category for everything the library reports.
#pragma once

#include <string>
#include <system_error>

namespace crier {

enum class errc {
  ok = 0,
  // topics and ids
  invalid_topic = 1,      // name outside the documented charset / length
  invalid_pattern,        // wildcard not a whole segment, or `**` not last
  invalid_id,             // a `since` / Last-Event-ID that does not parse
  invalid_event_name,     // event name outside [A-Za-z0-9._:-], too long, or reserved
  invalid_content_type,   // content type with control or non-ASCII bytes, or too long
  payload_too_large,      // over the hub's max_payload_bytes
  too_many_topics,        // the broker holds max_topics topics with history
  // subscriptions
  queue_overflow,         // the subscriber's queue overflowed under policy `disconnect`
  unsubscribed,           // the subscription was cancelled
  hub_stopped,            // the hub is shutting down
  // HTTP
  bad_request,
  header_too_large,
  too_many_headers,
  uri_too_long,
  body_too_large,
  length_required,
  header_timeout,
  idle_timeout,
  too_many_connections,
  server_stopping,
  // outbound HTTP (webhook deliveries)
  invalid_url,            // not an absolute http(s) URL crier can send to
  address_refused,        // the target resolved only to addresses the SSRF guard refuses
  connect_timeout,        // no connection within client_options::connect_timeout
  response_timeout,       // no complete response head within client_options::response_timeout
  request_timeout,        // the whole exchange took longer than client_options::total_timeout
  bad_response,           // the response is not valid HTTP/1.1
  response_too_large,     // the response head exceeded its limit
  client_stopped,         // the client was shut down
};

namespace detail {
class crier_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "crier"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::invalid_topic: return "invalid topic name";
      case errc::invalid_pattern: return "invalid topic pattern";
      case errc::invalid_id: return "invalid message id";
      case errc::invalid_event_name: return "invalid event name";
      case errc::invalid_content_type: return "invalid content type";
      case errc::payload_too_large: return "payload too large";
      case errc::too_many_topics: return "too many topics";
      case errc::queue_overflow: return "subscriber queue overflow";
      case errc::unsubscribed: return "unsubscribed";
      case errc::hub_stopped: return "hub stopped";
      case errc::bad_request: return "bad request";
      case errc::header_too_large: return "request header too large";
      case errc::too_many_headers: return "too many request headers";
      case errc::uri_too_long: return "request target too long";
      case errc::body_too_large: return "request body too large";
      case errc::length_required: return "length required";
      case errc::header_timeout: return "request header timeout";
      case errc::idle_timeout: return "idle timeout";
      case errc::too_many_connections: return "too many connections";
      case errc::server_stopping: return "server stopping";
      case errc::invalid_url: return "invalid URL";
      case errc::address_refused: return "target address refused (private, loopback or reserved)";
      case errc::connect_timeout: return "connect timeout";
      case errc::response_timeout: return "response timeout";
      case errc::request_timeout: return "request timeout";
      case errc::bad_response: return "malformed HTTP response";
      case errc::response_too_large: return "response head too large";
      case errc::client_stopped: return "client stopped";
    }
    return "unknown crier error";
  }
};
}  // namespace detail

inline const std::error_category& crier_category() noexcept {
  static const detail::crier_category cat;
  return cat;
}

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), crier_category()};
}

}  // namespace crier

template <>
struct std::is_error_code_enum<crier::errc> : std::true_type {};
