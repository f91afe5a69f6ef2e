// Reads what a subscribe request asks for: topics (from the path), cursor, wait time.
//
//   /topics/a            one topic          /topics/a,b/c,x/*   several topics and patterns
//   ?since=<cursor>      resume position (core/id.hpp); streams (SSE, NDJSON) also take
//                        Last-Event-ID (header, or ?last_event_id= for clients that cannot
//                        set headers)
//   ?wait=<seconds>      long-poll; without it, GET answers at once (poll)
//   ?envelope=1          SSE: JSON envelopes as data even for a single topic
#pragma once

#include <crier/core/hub.hpp>
#include <crier/http/request.hpp>
#include <crier/http/url.hpp>

#include <charconv>
#include <chrono>
#include <optional>

namespace crier {

struct subscribe_params {
  std::vector<std::string> topics;
  cursor since;
  std::optional<std::chrono::milliseconds> wait;  // long-poll when set
  bool envelope = false;
  bool multi_topic() const noexcept { return topics.size() > 1 || (topics.size() == 1 && is_pattern(topics[0])); }
};

struct param_error {
  std::string code;     // machine-readable
  std::string message;  // for people
};

// `topics_part` is the raw path after the route prefix ("a,b/c"), percent-decoded here.
inline std::optional<param_error> parse_subscribe_params(const http::request& req, std::string_view topics_part,
                                                         std::size_t max_topics, bool stream, subscribe_params& out) {
  // A malformed escape stays literal, and '%' is outside the topic charset: refused below.
  auto decoded = http::percent_decode(topics_part);
  std::string_view rest = decoded;
  while (!rest.empty() || out.topics.empty()) {
    auto comma = rest.find(',');
    auto t = rest.substr(0, comma);
    std::error_code ec;
    if (is_pattern(t)) topic_pattern::parse(t, ec);
    else ec = validate_topic(t);
    if (ec)
      return param_error{"invalid_topic", "invalid topic or pattern '" + std::string(t.substr(0, 300)) +
                                              "': segments of [A-Za-z0-9._~-] separated by '/', '*' or a final '**'"};
    out.topics.emplace_back(t);
    if (out.topics.size() > max_topics)
      return param_error{"too_many_topics", "at most " + std::to_string(max_topics) + " topics per request"};
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }

  // A stream's Last-Event-ID header wins over ?since=: EventSource reconnects to the same URL
  // with the header, which is then the newer position.
  std::optional<std::string> since;
  if (stream)
    if (auto h = req.header("last-event-id"); h && !h->empty()) since = std::string(*h);
  if (!since) since = req.query_param("since");
  if (!since && stream) since = req.query_param("last_event_id");
  if (since) {
    std::error_code ec;
    out.since = cursor::parse(*since, ec);
    if (!ec && out.since.what == cursor::kind::single && out.multi_topic())
      ec = errc::invalid_id;
    if (ec)
      return param_error{"invalid_id", "malformed since / Last-Event-ID: expected 0, <epoch>:<seq>, or "
                                       "topic=<epoch>:<seq>,... for several topics"};
  }
  if (auto w = req.query_param("wait")) {
    double secs = 0;
    auto [p, ec] = std::from_chars(w->data(), w->data() + w->size(), secs);
    if (ec != std::errc{} || p != w->data() + w->size() || !(secs >= 0) || secs > 1e6)
      return param_error{"invalid_wait", "wait must be a number of seconds"};
    out.wait = std::chrono::milliseconds(static_cast<long long>(secs * 1000));
  }
  if (auto e = req.query_param("envelope")) out.envelope = *e == "1" || *e == "true";
  return std::nullopt;
}

}  // namespace crier
