// A WebSub hub (W3C Recommendation, 2018) over the delivery engine:
//   POST /websub  hub.mode=subscribe|unsubscribe, hub.callback, hub.topic, hub.lease_seconds,
//                 hub.secret  -> 202, then verification of intent (a GET the callback must echo)
//                 hub.mode=publish, hub.url (or hub.topic) -> 202, then the hub fetches the topic
//                 URL and publishes what it got
// A topic URL is a crier topic, so a publish to it (HTTP or C++) reaches its WebSub
// subscribers as POSTs with the original Content-Type, Link rel="hub"/"self" and, with a secret,
// X-Hub-Signature. Leases end subscriptions by themselves; a renewal keeps the subscription
// (and its position). Refusals after a valid request are denial notifications (hub.mode=denied).
#pragma once

#include <crier/authorize.hpp>
#include <crier/core/hub.hpp>
#include <crier/http/exchange.hpp>
#include <crier/http/url.hpp>
#include <crier/webhook/detail/challenge.hpp>
#include <crier/webhook/engine.hpp>

#include <map>

namespace crier::webhook {

struct websub_stats {
  std::uint64_t verified = 0;              // subscribe/unsubscribe confirmed by the callback
  std::uint64_t verification_failed = 0;   // not confirmed: nothing changed
  std::uint64_t denied = 0;                // refused after a valid request (denial sent)
  std::uint64_t fetched = 0;               // hub.mode=publish: content fetched and published
  std::uint64_t fetch_failed = 0;
};

template <class Executor = asio::any_io_executor>
class basic_websub_hub {
 public:
  using engine_type = basic_engine<Executor>;
  using hub_type = basic_hub<Executor>;

  basic_websub_hub(engine_type& e, hub_type& h, websub_options o = {}, authorizer auth = {})
      : engine_(e), hub_(h), opts_(std::move(o)), auth_(std::move(auth)), fetch_(h.get_executor(), fetch_options(e, opts_.max_fetch_bytes)) {}
  basic_websub_hub(const basic_websub_hub&) = delete;
  basic_websub_hub& operator=(const basic_websub_hub&) = delete;
  ~basic_websub_hub() { shutdown(); }

  // True when the path is ours (answered); false to let the caller route it.
  bool handle(http::exchange& ex, std::string_view path) {
    if (path != opts_.path) return false;
    if (ex.req().method() != "POST") {
      auto r = http::response::error(405, "method_not_allowed", "WebSub requests are POSTed");
      r.set("Allow", "POST");
      return ex.respond(std::move(r)), true;
    }
    auto ct = ex.req().header("content-type").value_or("");
    if (!ct.empty() && !starts_with_icase(ct, "application/x-www-form-urlencoded"))
      return ex.respond(http::response::error(415, "unsupported_media_type",
                                              "WebSub requests are application/x-www-form-urlencoded")), true;
    auto form = http::parse_form(ex.req().body());
    auto mode = field(form, "hub.mode");
    if (mode == "subscribe" || mode == "unsubscribe") return subscription(ex, form, mode == "subscribe"), true;
    if (mode == "publish") return publish(ex, form), true;
    ex.respond(detail::field_error("hub.mode", "subscribe, unsubscribe or publish", 400));
    return true;
  }

  const websub_stats& stats() const noexcept { return stats_; }
  std::size_t pending() const noexcept { return pending_; }
  void shutdown() {
    life_.reset();
    fetch_.shutdown();
  }

 private:
  using form_type = std::vector<std::pair<std::string, std::string>>;
  using key_type = std::pair<std::string, std::string>;  // callback, topic

  static http::client_options fetch_options(engine_type& e, std::size_t max_bytes) {
    auto o = e.options().client;  // same SSRF guard and timeouts as deliveries
    o.max_response_body = max_bytes;
    o.max_response_drain = 0;     // larger content is not published: stop reading it
    return o;
  }
  static bool starts_with_icase(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && http::detail::iequals(s.substr(0, prefix.size()), prefix);
  }
  static std::string field(const form_type& f, std::string_view name) {
    for (auto& [n, v] : f)
      if (n == name) return v;
    return {};
  }
  static bool has(const form_type& f, std::string_view name) {
    return std::any_of(f.begin(), f.end(), [&](auto& p) { return p.first == name; });
  }

  void subscription(http::exchange& ex, const form_type& form, bool subscribe) {
    auto callback = field(form, "hub.callback");
    auto topic = field(form, "hub.topic");
    if (!parse_target(callback))
      return ex.respond(detail::field_error("hub.callback", "required: an absolute http(s) URL", 400));
    if (topic.empty()) return ex.respond(detail::field_error("hub.topic", "required: the topic URL", 400));
    if (auto ec = validate_topic(topic)) return ex.respond(detail::field_error("hub.topic", ec.message(), 400));
    auto lease = opts_.default_lease;
    if (has(form, "hub.lease_seconds")) {
      auto v = field(form, "hub.lease_seconds");
      std::uint64_t n = 0;
      bool ok = !v.empty() && v.size() <= 10;
      for (char c : v) ok = ok && c >= '0' && c <= '9', n = n * 10 + static_cast<unsigned>(c - '0');
      if (!ok || n == 0) return ex.respond(detail::field_error("hub.lease_seconds", "a positive number of seconds", 400));
      lease = std::chrono::seconds(n);
    }
    lease = std::clamp(lease, opts_.min_lease, std::max(opts_.min_lease, opts_.max_lease));
    auto secret = field(form, "hub.secret");
    if (secret.size() >= 200) return ex.respond(detail::field_error("hub.secret", "less than 200 bytes", 400));
    std::string method = "sha256";
    if (has(form, "hub.signature_method")) {  // crier's extension: sha1, sha256, sha384 or sha512
      method = field(form, "hub.signature_method");
      if (!parse_hub_method(method))
        return ex.respond(detail::field_error("hub.signature_method", "sha1, sha256, sha384 or sha512", 400));
    }
    if (pending_ >= opts_.max_pending) return busy(ex);

    ex.respond(http::response::json(202, R"({"status":"verifying"})"));
    key_type key{callback, topic};
    if (subscribe) {
      // Refusals of a valid request are told to the callback, not to whoever asked.
      if (auth_ && !auth_(access_request{.action = access::subscribe, .topic = topic, .request = ex.req()}))
        return deny(key, "not allowed to subscribe to this topic");
      if (engine_.find_same(callback, {topic}).empty() && engine_.size() >= engine_.options().max_subscriptions)
        return deny(key, "the hub has reached its subscription limit");
    }
    subscription_spec spec{.target_url = callback, .topics = {topic}, .style = signature_style::websub,
                           .websub_method = method, .websub_topic = topic, .websub_hub = hub_url(ex.req())};
    if (!secret.empty()) spec.secrets = {secret};
    verify(std::move(key), subscribe, lease, std::move(spec));
  }

  // GET callback?hub.mode=…&hub.topic=…&hub.challenge=…[&hub.lease_seconds=…]; only an echo
  // acts, and only the latest request for a callback and topic (a quick subscribe-then-
  // unsubscribe ends unsubscribed whatever order the answers come in).
  void verify(key_type key, bool subscribe, std::chrono::seconds lease, subscription_spec spec) {
    auto generation = ++generation_;
    latest_[key] = generation;
    ++pending_;
    auto challenge = detail::random_hex();
    std::string q = subscribe ? "hub.mode=subscribe" : "hub.mode=unsubscribe";
    q += "&hub.topic=" + http::percent_encode(key.second) + "&hub.challenge=" + challenge;
    if (subscribe) q += "&hub.lease_seconds=" + std::to_string(lease.count());
    http::client_request req{.method = "GET", .url = detail::with_query(key.first, q)};
    std::weak_ptr<int> life = life_;
    engine_.send(
        std::move(req), [this, life, key = std::move(key), generation, subscribe, lease, challenge,
                         spec = std::move(spec)](std::error_code ec, http::client_response r) mutable {
          if (life.expired()) return;
          --pending_;
          auto it = latest_.find(key);
          if (it == latest_.end() || it->second != generation) return;  // a later request decides
          latest_.erase(it);
          if (ec || !detail::echoes(r, challenge)) return void(++stats_.verification_failed);
          ++stats_.verified;
          auto existing = engine_.find_same(key.first, {key.second});
          if (!subscribe) {
            if (!existing.empty()) engine_.remove(existing);
            return;
          }
          spec.expires_at = std::chrono::system_clock::now() + lease;
          if (!existing.empty()) {  // renewal: same subscription, same position, new lease and secret
            engine_.update(existing, std::move(spec));
            return;
          }
          std::string id;
          if (engine_.create(std::move(spec), id)) deny(key, "the hub has reached its subscription limit");
        });
  }

  // GET callback?hub.mode=denied&hub.topic=…&hub.reason=… (fire and forget).
  void deny(const key_type& key, std::string_view reason) {
    ++stats_.denied;
    http::client_request req{
        .method = "GET",
        .url = detail::with_query(key.first, "hub.mode=denied&hub.topic=" + http::percent_encode(key.second) +
                                                 "&hub.reason=" + http::percent_encode(reason))};
    engine_.send(std::move(req), [](std::error_code, http::client_response) {});
  }

  // hub.mode=publish: each hub.url (or hub.topic) is fetched and its content published to it.
  void publish(http::exchange& ex, const form_type& form) {
    std::vector<std::string> urls;
    for (auto& [n, v] : form)
      if (n == "hub.url" || n == "hub.topic" || n == "hub.url[]") urls.push_back(v);
    if (urls.empty() || urls.size() > 100) return ex.respond(detail::field_error("hub.url", "1 to 100 topic URLs", 400));
    for (auto& u : urls) {
      if (!parse_target(u)) return ex.respond(detail::field_error("hub.url", "\"" + u.substr(0, 100) + "\" is not an http(s) URL", 400));
      if (auto ec = validate_topic(u)) return ex.respond(detail::field_error("hub.url", ec.message(), 400));
      if (auth_ && !auth_(access_request{.action = access::publish, .topic = u, .request = ex.req()}))
        return ex.respond(http::response::error(403, "forbidden", "not allowed to publish to " + u.substr(0, 100)));
    }
    if (pending_ + urls.size() > opts_.max_pending) return busy(ex);
    ex.respond(http::response::json(202, R"({"status":"fetching"})"));
    for (auto& u : urls) fetch(u);
  }

  void fetch(const std::string& url) {
    ++pending_;
    std::weak_ptr<int> life = life_;
    fetch_.async_request(http::client_request{.method = "GET", .url = url},
                         [this, life, url](std::error_code ec, http::client_response r) {
                           if (life.expired()) return;
                           --pending_;
                           if (ec || r.status < 200 || r.status >= 300 || r.body_truncated)
                             return void(++stats_.fetch_failed);
                           publish_options po;
                           if (auto ct = r.header("content-type"); ct && hub_type::valid_content_type(*ct))
                             po.content_type = std::string(*ct);
                           if (hub_.publish(url, std::move(r.body), std::move(po))) ++stats_.fetched;
                           else ++stats_.fetch_failed;
                         });
  }

  std::string hub_url(const http::request& req) const {
    if (!opts_.public_url.empty()) return opts_.public_url;
    auto host = req.header("host").value_or("");
    bool sane = !host.empty() && host.size() < 256 && std::all_of(host.begin(), host.end(), [](char c) {
      return c > 0x20 && c < 0x7f && c != '/' && c != '<' && c != '>' && c != '"' && c != '\\';
    });
    return "http://" + std::string(sane ? host : "localhost") + opts_.path;
  }

  static void busy(http::exchange& ex) {
    auto r = http::response::error(503, "busy", "too many verifications in progress; try again later");
    r.set("Retry-After", "5");
    ex.respond(std::move(r));
  }

  engine_type& engine_;
  hub_type& hub_;
  websub_options opts_;
  authorizer auth_;
  http::basic_client<typename hub_type::executor_type> fetch_;
  std::map<key_type, std::uint64_t> latest_;  // only while a verification is pending
  std::uint64_t generation_ = 0;
  std::size_t pending_ = 0;
  websub_stats stats_;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);  // callbacks after destruction see it expired
};

using websub_hub = basic_websub_hub<>;

}  // namespace crier::webhook
