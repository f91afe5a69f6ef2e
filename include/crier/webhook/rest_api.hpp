// The REST hooks API over the delivery engine (JSON via picojson):
//   GET    /api/v1/subscriptions?after=<id>&limit=<n>    list (paginated)
//   POST   /api/v1/subscriptions                         create -> 201 + Location
//   GET    /api/v1/subscriptions/{id}                    one (secrets are never returned)
//   PUT    /api/v1/subscriptions/{id}                    replace
//   DELETE /api/v1/subscriptions/{id}                    remove -> 204
//   GET    /api/v1/subscriptions/{id}/dead_letters       what was given up
//   POST   /api/v1/subscriptions/{id}/dead_letters/replay[?webhook_id=…]   send again
// Validation errors are 422 naming the field; an unknown id is 404; the same target and
// topics twice is 409.
#pragma once

#include <crier/http/exchange.hpp>
#include <crier/webhook/detail/challenge.hpp>
#include <crier/webhook/engine.hpp>

#include <picojson.h>

namespace crier::webhook {

namespace detail {
// Reads a subscription from JSON; on failure `err` is the 4xx to answer.
inline bool read_spec(std::string_view body, subscription_spec& s, http::response& err) {
  picojson::value v;
  std::string perr;
  picojson::parse(v, body.begin(), body.end(), &perr);
  if (!perr.empty() || !v.is<picojson::object>()) {
    err = http::response::error(400, "bad_json", "the body must be a JSON object");
    return false;
  }
  auto& o = v.get<picojson::object>();
  auto get = [&](const char* k) -> const picojson::value* {
    auto it = o.find(k);
    return it == o.end() || it->second.is<picojson::null>() ? nullptr : &it->second;
  };
  auto strings = [&](const char* k, std::vector<std::string>& out, bool as_list_of_one) -> bool {
    auto p = get(k);
    if (!p) return true;
    if (as_list_of_one && p->is<std::string>()) return out.push_back(p->get<std::string>()), true;
    if (!p->is<picojson::array>()) return false;
    for (auto& e : p->get<picojson::array>()) {
      if (!e.is<std::string>()) return false;
      out.push_back(e.get<std::string>());
    }
    return true;
  };
  auto url = get("target_url");
  if (!url || !url->is<std::string>()) return err = field_error("target_url", "required: an http(s) URL"), false;
  s.target_url = url->get<std::string>();
  if (!parse_target(s.target_url)) return err = field_error("target_url", "not an absolute http(s) URL"), false;
  if (!strings("topics", s.topics, false) || s.topics.empty())
    return err = field_error("topics", "required: an array of topic names or patterns"), false;
  for (auto& t : s.topics) {
    std::error_code ec;
    if (is_pattern(t)) topic_pattern::parse(t, ec);
    else ec = validate_topic(t);
    if (ec) return err = field_error("topics", "\"" + t.substr(0, 100) + "\": " + ec.message()), false;
  }
  if (auto p = get("secret")) {
    if (!p->is<std::string>() || !valid_secret(p->get<std::string>()))
      return err = field_error("secret", "must be \"whsec_\" + base64 of 24 to 64 bytes"), false;
    s.secrets = {p->get<std::string>()};
  }
  if (!strings("events", s.events, false)) return err = field_error("events", "an array of event names"), false;
  for (auto& e : s.events)
    if (e.empty() || e.size() > 64) return err = field_error("events", "event names are 1 to 64 characters"), false;
  if (auto p = get("ordered")) {
    if (!p->is<bool>()) return err = field_error("ordered", "true or false"), false;
    s.ordered = p->get<bool>();
  }
  if (auto p = get("retry_schedule_ms")) {
    if (!p->is<picojson::array>() || p->get<picojson::array>().empty() || p->get<picojson::array>().size() > 50)
      return err = field_error("retry_schedule_ms", "an array of 1 to 50 delays in milliseconds"), false;
    s.retry_schedule.clear();
    for (auto& e : p->get<picojson::array>()) {
      if (!e.is<double>() || e.get<double>() < 0 || e.get<double>() > 7 * 24 * 3600e3)
        return err = field_error("retry_schedule_ms", "each delay is 0 to 604800000 ms"), false;
      s.retry_schedule.push_back(std::chrono::milliseconds(static_cast<std::int64_t>(e.get<double>())));
    }
  }
  if (auto p = get("batch_max")) {
    if (!p->is<double>() || p->get<double>() < 1 || p->get<double>() > 1000 ||
        p->get<double>() != static_cast<double>(static_cast<int>(p->get<double>())))
      return err = field_error("batch_max", "1 (no batching) to 1000 messages per POST"), false;
    s.batch_max = static_cast<std::size_t>(p->get<double>());
  }
  if (auto p = get("verify")) {
    if (!p->is<bool>()) return err = field_error("verify", "true or false"), false;
    s.verify_intent = p->get<bool>();
  }
  if (auto p = get("since")) {
    if (!p->is<std::string>()) return err = field_error("since", "a resume position (string)"), false;
    s.since = p->get<std::string>();
    std::error_code ec;
    cursor::parse(s.since, ec);
    if (ec) return err = field_error("since", "not a resume position"), false;
  }
  return true;
}

inline std::string spec_json(const std::string& id, const subscription_spec& s, const subscription_stats* st,
                             bool verifying = false) {
  std::string b = R"({"id":)" + crier::detail::json_string(id);
  b += verifying ? R"(,"status":"verifying")" : R"(,"status":"active")";
  b += s.style == signature_style::websub     ? R"(,"style":"websub")"
       : s.style == signature_style::rsscloud ? R"(,"style":"rsscloud")"
                                              : R"(,"style":"standard_webhooks")";
  b += R"(,"expires_at":)";
  b += s.expires_at == std::chrono::system_clock::time_point{}
           ? std::string("null")
           : std::to_string(std::chrono::duration_cast<std::chrono::seconds>(s.expires_at.time_since_epoch()).count());
  b += R"(,"target_url":)" + crier::detail::json_string(s.target_url) + R"(,"topics":[)";
  for (std::size_t i = 0; i < s.topics.size(); ++i) b += (i ? "," : "") + crier::detail::json_string(s.topics[i]);
  b += R"(],"events":[)";
  for (std::size_t i = 0; i < s.events.size(); ++i) b += (i ? "," : "") + crier::detail::json_string(s.events[i]);
  b += R"(],"ordered":)";
  b += s.ordered ? "true" : "false";
  b += R"(,"batch_max":)" + std::to_string(s.batch_max);
  b += R"(,"signed":)";
  b += s.secrets.empty() ? "false" : "true";  // the secret itself is never returned
  b += R"(,"retry_schedule_ms":[)";
  for (std::size_t i = 0; i < s.retry_schedule.size(); ++i)
    b += (i ? "," : "") + std::to_string(s.retry_schedule[i].count());
  b += ']';
  if (st)
    b += R"(,"stats":{"delivered":)" + std::to_string(st->delivered) + R"(,"attempts":)" +
         std::to_string(st->attempts) + R"(,"failures":)" + std::to_string(st->failures) + R"(,"dead":)" +
         std::to_string(st->dead) + "}";
  return b + '}';
}
}  // namespace detail

template <class Executor>
class basic_rest_api {
 public:
  // Asked for each topic of a subscription being created or replaced (403 when it says no).
  using topic_check = std::function<bool(std::string_view topic, const http::request&)>;

  explicit basic_rest_api(basic_engine<Executor>& e, topic_check check = {},
                          std::string base = "/api/v1/subscriptions")
      : engine_(e), check_(std::move(check)), base_(std::move(base)) {}

  // True when the path is ours (answered); false to let the caller route it.
  bool handle(http::exchange& ex, std::string_view path) {
    if (!path.starts_with(base_)) return false;
    auto rest = path.substr(base_.size());
    if (!rest.empty() && rest.front() != '/') return false;
    if (!rest.empty()) rest.remove_prefix(1);
    auto method = ex.req().method();
    if (rest.empty()) {
      if (method == "GET") return list(ex), true;
      if (method == "POST") return create(ex), true;
      return not_allowed(ex, "GET, POST"), true;
    }
    auto slash = rest.find('/');
    std::string id(rest.substr(0, slash));
    auto sub = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (!engine_.find(id)) return not_found(ex), true;
    if (sub.empty()) {
      if (method == "GET") return ex.respond(http::response::json(200, json(id))), true;
      if (method == "PUT") return replace(ex, id), true;
      if (method == "DELETE") {
        engine_.remove(id);
        http::response r;
        r.status = 204;
        return ex.respond(std::move(r)), true;
      }
      return not_allowed(ex, "GET, PUT, DELETE"), true;
    }
    if (sub == "dead_letters") {
      if (method != "GET") return not_allowed(ex, "GET"), true;
      return dead_letters(ex, id), true;
    }
    if (sub == "dead_letters/replay") {
      if (method != "POST") return not_allowed(ex, "POST"), true;
      auto only = ex.req().query_param("webhook_id").value_or("");
      auto n = engine_.replay(id, only);
      return ex.respond(http::response::json(202, R"({"replayed":)" + std::to_string(n) + "}")), true;
    }
    return not_found(ex), true;
  }

 private:
  void list(http::exchange& ex) {
    auto after = ex.req().query_param("after").value_or("");
    std::size_t limit = 100;
    if (auto l = ex.req().query_param("limit")) limit = std::clamp<std::size_t>(std::strtoul(l->c_str(), nullptr, 10), 1, 1000);
    auto ids = engine_.list(after, limit + 1);
    std::string b = R"({"data":[)";
    for (std::size_t i = 0; i < ids.size() && i < limit; ++i)
      b += (i ? "," : "") + json(ids[i]);
    b += R"(],"next":)";
    b += ids.size() > limit ? crier::detail::json_string(ids[limit - 1]) : "null";
    ex.respond(http::response::json(200, b + "}"));
  }

  void create(http::exchange& ex) {
    subscription_spec s;
    http::response err;
    if (!detail::read_spec(ex.req().body(), s, err)) return ex.respond(std::move(err));
    if (!allowed(s, ex.req())) return forbidden(ex);
    if (auto same = engine_.find_same(s.target_url, s.topics); !same.empty())
      return ex.respond(http::response::error(409, "duplicate", "a subscription with this target and topics exists: " + same));
    std::string id;
    if (auto ec = engine_.create(std::move(s), id))
      return ex.respond(http::response::error(ec == errc::too_many_topics ? 503 : 422, "rejected", ec.message()));
    auto r = http::response::json(201, json(id));
    r.set("Location", base_ + "/" + id);
    ex.respond(std::move(r));
  }

  void replace(http::exchange& ex, const std::string& id) {
    subscription_spec s;
    http::response err;
    if (!detail::read_spec(ex.req().body(), s, err)) return ex.respond(std::move(err));
    if (!allowed(s, ex.req())) return forbidden(ex);
    if (s.secrets.empty()) s.secrets = engine_.find(id)->secrets;  // PUT without a secret keeps it
    if (auto ec = engine_.update(id, std::move(s))) return ex.respond(http::response::error(422, "rejected", ec.message()));
    ex.respond(http::response::json(200, json(id)));
  }

  std::string json(const std::string& id) const {
    return detail::spec_json(id, *engine_.find(id), engine_.stats(id), engine_.verifying(id));
  }
  bool allowed(const subscription_spec& s, const http::request& req) const {
    if (!check_) return true;
    for (auto& t : s.topics)
      if (!check_(t, req)) return false;
    return true;
  }
  static void forbidden(http::exchange& ex) {
    ex.respond(http::response::error(403, "forbidden", "not allowed to subscribe to these topics"));
  }

  void dead_letters(http::exchange& ex, const std::string& id) {
    std::string b = R"({"data":[)";
    bool first = true;
    for (auto& d : *engine_.dead_letters(id)) {
      b += first ? "" : ",";
      first = false;
      b += R"({"webhook_id":)" + crier::detail::json_string(d.webhook_id) + R"(,"topic":)" +
           crier::detail::json_string(d.topic) + R"(,"id":")" + d.id.to_string() + R"(","attempts":)" +
           std::to_string(d.attempts) + R"(,"last_error":)" + crier::detail::json_string(d.last_error) + "}";
    }
    ex.respond(http::response::json(200, b + "]}"));
  }

  static void not_found(http::exchange& ex) {
    ex.respond(http::response::error(404, "not_found", "no such subscription"));
  }
  static void not_allowed(http::exchange& ex, std::string allow) {
    auto r = http::response::error(405, "method_not_allowed", "allowed: " + allow);
    r.set("Allow", std::move(allow));
    ex.respond(std::move(r));
  }

  basic_engine<Executor>& engine_;
  topic_check check_;
  std::string base_;
};

}  // namespace crier::webhook
