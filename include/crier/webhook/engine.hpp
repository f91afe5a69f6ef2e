// The webhook delivery engine: each webhook subscription is a hub subscriber whose messages
// are POSTed to its target URL — in order (one delivery in flight unless it opts out),
// retried on a schedule with jitter and Retry-After, given up into a dead-letter list, ended
// by 410 Gone, signed, and kept apart from other endpoints (per-origin connection caps in the
// client, a circuit breaker per origin). Runs on the hub's strand.
#pragma once

#include <crier/core/envelope.hpp>
#include <crier/core/hub.hpp>
#include <crier/http/client.hpp>
#include <crier/webhook/delivery.hpp>
#include <crier/webhook/detail/challenge.hpp>
#include <crier/webhook/options.hpp>

#include <asio/steady_timer.hpp>

#include <deque>
#include <map>
#include <random>
#include <unordered_map>

namespace crier::webhook {

struct dead_letter {
  std::string webhook_id;     // the delivery's stable id (webhook-id)
  std::string topic;
  message_id id;              // zero for a gap notice; the first message's for a batch
  message_ptr msg;            // null for a gap notice or a batch (then `body` holds it)
  std::string body;
  std::string event;          // "gap", "batch" or "" (a message)
  std::string last_error;     // "HTTP 500", "connect timeout", …
  unsigned attempts = 0;
  std::chrono::system_clock::time_point failed_at;
};

struct subscription_stats {
  std::uint64_t delivered = 0;     // 2xx answers
  std::uint64_t attempts = 0;      // requests sent (or refused before sending)
  std::uint64_t failures = 0;      // failed attempts
  std::uint64_t dead = 0;          // messages given up
  std::uint64_t filtered = 0;      // skipped by the event filter
  std::uint64_t resumed = 0;       // fell behind its queue and went back to the history
};

template <class Executor = asio::any_io_executor>
class basic_engine {
 public:
  using hub_type = basic_hub<Executor>;
  using strand_type = typename hub_type::executor_type;
  using client_type = http::basic_client<strand_type>;
  // Told when a subscription ends by itself (410 Gone), e.g. to update a registry.
  using ended_fn = std::function<void(const std::string& id, std::string_view why)>;

  explicit basic_engine(hub_type& hub, engine_options o = {})
      : hub_(hub), opts_(std::move(o)), client_(hub.get_executor(), opts_.client), rng_(std::random_device{}()) {}
  basic_engine(const basic_engine&) = delete;
  basic_engine& operator=(const basic_engine&) = delete;
  ~basic_engine() { shutdown(); }

  // --- the C++ API (on the hub's strand) -------------------------------------------------

  // Validates and starts a subscription; its id is returned in `id`.
  std::error_code create(subscription_spec spec, std::string& id) {
    if (runners_.size() >= opts_.max_subscriptions) return errc::too_many_topics;
    if (auto ec = validate(spec)) return ec;
    id = new_id();
    auto r = std::make_shared<runner>(*this, id, std::move(spec));
    if (auto ec = r->start()) return ec;
    by_target_.emplace(r->spec().target_url, id);
    runners_.emplace(id, std::move(r));
    return {};
  }

  // Replaces a subscription's spec; deliveries in flight finish under the old one.
  std::error_code update(const std::string& id, subscription_spec spec) {
    auto it = runners_.find(id);
    if (it == runners_.end()) return errc::unsubscribed;
    if (auto ec = validate(spec)) return ec;
    auto r = std::make_shared<runner>(*this, id, std::move(spec));
    if (r->spec().since.empty()) r->resume_from(it->second->cursor());
    if (auto ec = r->start()) return ec;
    r->adopt_dead_letters(*it->second);
    it->second->stop();
    unindex(id, it->second->spec().target_url);
    by_target_.emplace(r->spec().target_url, id);
    it->second = std::move(r);
    return {};
  }

  bool remove(const std::string& id) {
    auto it = runners_.find(id);
    if (it == runners_.end()) return false;
    it->second->stop();
    unindex(id, it->second->spec().target_url);
    runners_.erase(it);
    return true;
  }

  // The subscription with this target and exactly these topics, or "" (duplicates, WebSub renewals).
  std::string find_same(std::string_view target_url, const std::vector<std::string>& topics) const {
    auto [b, e] = by_target_.equal_range(std::string(target_url));
    for (auto it = b; it != e; ++it)
      if (auto* s = find(it->second); s && s->topics == topics) return it->second;
    return {};
  }

  const subscription_spec* find(const std::string& id) const {
    auto it = runners_.find(id);
    return it == runners_.end() ? nullptr : &it->second->spec();
  }
  // True while the subscription waits for its target to confirm (verify_intent).
  bool verifying(const std::string& id) const {
    auto it = runners_.find(id);
    return it != runners_.end() && it->second->verifying();
  }
  const subscription_stats* stats(const std::string& id) const {
    auto it = runners_.find(id);
    return it == runners_.end() ? nullptr : &it->second->stats();
  }
  // Ids in order, starting after `after` (pagination), at most `limit`.
  std::vector<std::string> list(std::string_view after = {}, std::size_t limit = 100) const {
    std::vector<std::string> out;
    for (auto it = runners_.upper_bound(std::string(after)); it != runners_.end() && out.size() < limit; ++it)
      out.push_back(it->first);
    return out;
  }
  std::size_t size() const noexcept { return runners_.size(); }

  const std::deque<dead_letter>* dead_letters(const std::string& id) const {
    auto it = runners_.find(id);
    return it == runners_.end() ? nullptr : &it->second->dead();
  }
  // Sends dead letters again (all, or the one with this webhook id), in their order, ahead of
  // new messages. Returns how many were queued.
  std::size_t replay(const std::string& id, std::string_view webhook_id = {}) {
    auto it = runners_.find(id);
    return it == runners_.end() ? 0 : it->second->replay(webhook_id);
  }

  void on_ended(ended_fn f) { ended_ = std::move(f); }
  void shutdown() {
    for (auto& [id, r] : runners_) r->stop();
    runners_.clear();
    by_target_.clear();
    client_.shutdown();
  }
  client_type& client() noexcept { return client_; }
  // Sends a request of the engine's (a delivery, a verification, a denial): through
  // engine_options::local_route when it takes it, else over the network with the SSRF guard.
  void send(http::client_request req, std::function<void(std::error_code, http::client_response)> done) {
    if (opts_.local_route && opts_.local_route(req, done)) return;
    client_.async_request(std::move(req), std::move(done));
  }
  const engine_options& options() const noexcept { return opts_; }

 private:
  class runner;

  std::error_code validate(const subscription_spec& s) const {
    if (!parse_target(s.target_url)) return errc::invalid_url;
    if (s.topics.empty() || s.retry_schedule.empty()) return errc::invalid_topic;
    for (auto& t : s.topics) {
      std::error_code ec;
      if (is_pattern(t)) topic_pattern::parse(t, ec);
      else ec = validate_topic(t);
      if (ec) return ec;
    }
    for (auto& e : s.events)
      if (!hub_type::valid_event_name(e, 64)) return errc::invalid_event_name;
    std::error_code ec;
    if (!s.since.empty()) cursor::parse(s.since, ec);
    return ec;
  }

  std::string new_id() {
    static constexpr char hex[] = "0123456789abcdef";
    std::string id = "sub_";
    for (int i = 0; i < 2; ++i) {
      auto v = rng_();
      for (int k = 0; k < 16; ++k) id += hex[(v >> (4 * k)) & 0xF];
    }
    return id;
  }

  // Per origin: consecutive failures open the breaker for a while; then one probe at a time.
  struct breaker {
    std::size_t failures = 0;
    std::chrono::steady_clock::time_point open_until{};
    bool probing = false;
  };
  // How long a delivery to `origin` must wait before it may be sent (0 = now).
  std::chrono::milliseconds breaker_wait(const std::string& origin) {
    auto& b = breakers_[origin];
    if (b.failures < opts_.breaker_failures) return {};
    auto now = std::chrono::steady_clock::now();
    if (now < b.open_until || b.probing)
      return std::max<std::chrono::milliseconds>(
          std::chrono::duration_cast<std::chrono::milliseconds>(b.open_until - now), 100ms);
    b.probing = true;  // half-open: this one goes, the others wait for its answer
    return {};
  }
  void breaker_result(const std::string& origin, bool ok) {
    auto& b = breakers_[origin];
    b.probing = false;
    if (ok) {
      breakers_.erase(origin);
      return;
    }
    if (++b.failures >= opts_.breaker_failures) b.open_until = std::chrono::steady_clock::now() + opts_.breaker_open;
  }

  std::chrono::milliseconds jittered(std::chrono::milliseconds d) {
    if (d.count() == 0 || opts_.jitter <= 0) return d;
    std::uniform_real_distribution<double> f(1 - opts_.jitter, 1 + opts_.jitter);
    return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(d.count()) * f(rng_)));
  }

  void unindex(const std::string& id, const std::string& target) {
    auto [b, e] = by_target_.equal_range(target);
    for (auto it = b; it != e; ++it)
      if (it->second == id) return void(by_target_.erase(it));
  }

  void ended(const std::string& id, std::string_view why) {
    auto it = runners_.find(id);
    if (it == runners_.end()) return;
    auto keep = it->second;  // the runner is on the stack of the caller
    keep->stop();
    unindex(id, keep->spec().target_url);
    runners_.erase(it);
    if (ended_) ended_(id, why);
  }

  hub_type& hub_;
  engine_options opts_;
  client_type client_;
  std::mt19937_64 rng_;
  std::map<std::string, std::shared_ptr<runner>, std::less<>> runners_;
  std::unordered_multimap<std::string, std::string> by_target_;  // target_url -> ids
  std::unordered_map<std::string, breaker> breakers_;
  ended_fn ended_;
};

using engine = basic_engine<>;

}  // namespace crier::webhook

#include <crier/webhook/impl/runner.hpp>
