// One webhook delivery, without I/O: the target's origin, the stable delivery id, and the
// request (body, Content-Type, crier's headers, the signature).
#pragma once

#include <crier/core/envelope.hpp>
#include <crier/http/client.hpp>
#include <crier/http/url.hpp>
#include <crier/webhook/options.hpp>
#include <crier/webhook/signature.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace crier::webhook {

// "http(s)://host[:port]" of an absolute http(s) URL, or nullopt when it is not one.
inline std::optional<std::string> parse_target(std::string_view url) {
  std::size_t scheme_end = url.starts_with("https://") ? 8 : url.starts_with("http://") ? 7 : 0;
  if (scheme_end == 0) return std::nullopt;
  auto rest = url.substr(scheme_end);
  auto host_end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, host_end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  for (char c : authority)
    if (static_cast<unsigned char>(c) <= 0x20 || c == '\\') return std::nullopt;
  return std::string(url.substr(0, scheme_end + authority.size()));
}

// What is POSTed: a message as it was published, or a JSON body crier made: a gap notice (an
// envelope, event "gap") or a batch (an array of envelopes, event "batch").
struct delivery {
  std::string webhook_id;   // stable across retries and replays: receivers deduplicate on it
  std::string topic;
  message_id id;            // the (first) message's id; zero for a gap notice
  message_ptr msg;          // the message; null for a gap notice or a batch
  std::string json_body;    // the gap notice or the batch
  std::string event{};      // "gap", "batch", or "" for a message
  unsigned attempts = 0;
};

inline delivery make_delivery(const message_ptr& m) {
  // Stable per topic and message (not per subscription): receivers deduplicate on it.
  return {.webhook_id = message_id_for(m->id().to_string(), {}, m->topic()), .topic = m->topic(), .id = m->id(),
          .msg = m};
}
inline delivery make_delivery(const gap_notice& g) {
  delivery d{.webhook_id = message_id_for(g.next.to_string(), "gap", g.topic), .topic = g.topic, .event = "gap"};
  append_envelope(d.json_body, g);
  return d;
}
// Several messages in one POST: a JSON array of envelopes. Its id names the first and last
// message; receivers of batches deduplicate on the envelopes' ids.
inline delivery make_batch(const std::vector<message_ptr>& ms) {
  auto& first = *ms.front();
  delivery d{.webhook_id = message_id_for(first.id().to_string() + "+" + ms.back()->id().to_string(), "batch",
                                          first.topic()),
             .topic = first.topic(), .id = first.id(), .event = "batch"};
  d.json_body = "[";
  for (auto& m : ms) {
    if (d.json_body.size() > 1) d.json_body += ',';
    append_envelope(d.json_body, *m);
  }
  d.json_body += ']';
  return d;
}

// The request for one attempt (a fresh timestamp and signature each time).
inline http::client_request build_request(const subscription_spec& spec, const delivery& d) {
  http::client_request r;
  r.method = "POST";
  r.url = spec.target_url;
  std::string_view ct;
  if (spec.style == signature_style::rsscloud) {  // rssCloud says which feed changed, not what
    r.body = "url=" + http::percent_encode(d.topic);
    ct = "application/x-www-form-urlencoded";
  } else if (d.msg) {
    r.body = d.msg->payload();
    ct = d.msg->content_type();
    if (ct.empty()) ct = d.msg->is_text() ? "text/plain; charset=utf-8" : "application/octet-stream";
  } else {
    r.body = d.json_body;
    ct = "application/json";
  }
  r.headers.emplace_back("Content-Type", std::string(ct));
  if (d.event != "batch") r.headers.emplace_back("Crier-Topic", d.topic);  // a batch's envelopes say theirs
  if (d.msg) {
    r.headers.emplace_back("Crier-Id", d.id.to_string());
    if (!d.msg->event().empty()) r.headers.emplace_back("Crier-Event", d.msg->event());
  } else {
    r.headers.emplace_back("Crier-Event", d.event);
  }
  if (spec.style == signature_style::websub) {
    if (!spec.websub_hub.empty() && !spec.websub_topic.empty())
      r.headers.emplace_back("Link", "<" + spec.websub_hub + ">; rel=\"hub\", <" + spec.websub_topic + ">; rel=\"self\"");
    if (!spec.secrets.empty()) {
      auto method = parse_hub_method(spec.websub_method);
      if (method) r.headers.emplace_back("X-Hub-Signature", hub_signature(*method, spec.secrets.front(), r.body));
    }
    return r;
  }
  if (spec.style == signature_style::rsscloud) return r;
  auto ts = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  r.headers.emplace_back("webhook-id", d.webhook_id);
  r.headers.emplace_back("webhook-timestamp", std::to_string(ts));
  if (!spec.secrets.empty()) r.headers.emplace_back("webhook-signature", sign_with(spec.secrets, d.webhook_id, ts, r.body));
  return r;
}

// Seconds or an HTTP date in Retry-After (RFC 9110 §10.2.3); nullopt when absent or unreadable.
inline std::optional<std::chrono::milliseconds> retry_after(const http::client_response& r) {
  auto v = r.header("retry-after");
  if (!v || v->empty()) return std::nullopt;
  std::int64_t secs = 0;
  for (char c : *v) {
    if (c < '0' || c > '9') return std::nullopt;  // HTTP dates: treated as absent (the schedule applies)
    secs = secs * 10 + (c - '0');
    if (secs > 10'000'000) break;
  }
  return std::chrono::seconds(secs);
}

}  // namespace crier::webhook
