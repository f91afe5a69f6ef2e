// One webhook subscription at work: a hub subscriber that turns queued messages into
// deliveries, at most `limit` in flight (1 = ordered), with retries and dead letters.
#pragma once

namespace crier::webhook {

template <class Executor>
class basic_engine<Executor>::runner final : public subscriber, public std::enable_shared_from_this<runner> {
 public:
  runner(basic_engine& e, std::string id, subscription_spec spec)
      : engine_(e), id_(std::move(id)), spec_(std::move(spec)), origin_(*parse_target(spec_.target_url)) {
    if (!spec_.since.empty()) resume_at_ = spec_.since;
  }

  // Subscribes at once (nothing published from now on is missed); holds deliveries until the
  // target proved it wants them, when asked to.
  std::error_code start() {
    if (auto ec = subscribe()) return ec;
    if (spec_.verify_intent) verify();
    if (spec_.expires_at != std::chrono::system_clock::time_point{}) expire_at(spec_.expires_at);
    return {};
  }
  bool verifying() const noexcept { return held_; }
  void stop() {
    stopped_ = true;
    sub_.reset();
    for (auto& t : timers_) t->cancel();
  }

  void on_ready() override {
    if (stopped_) return;
    if (sub_ && sub_->error() == errc::queue_overflow && !behind_) {
      // Fell behind its queue: finish what is queued, then read on from the history.
      behind_ = true;
      ++stats_.resumed;
    }
    pump();
  }

  const subscription_spec& spec() const noexcept { return spec_; }
  const subscription_stats& stats() const noexcept { return stats_; }
  const std::deque<dead_letter>& dead() const noexcept { return dead_; }
  std::string cursor() const { return sub_ ? sub_.state().cursor_list() : resume_at_; }
  void resume_from(std::string c) { resume_at_ = std::move(c); }
  void adopt_dead_letters(runner& old) { dead_ = std::move(old.dead_); }

  std::size_t replay(std::string_view webhook_id) {
    std::size_t n = 0;
    for (auto it = dead_.begin(); it != dead_.end();) {
      if (!webhook_id.empty() && it->webhook_id != webhook_id) {
        ++it;
        continue;
      }
      delivery d{.webhook_id = it->webhook_id, .topic = it->topic, .id = it->id, .msg = it->msg,
                 .json_body = std::move(it->body), .event = std::move(it->event)};
      replays_.push_back(std::move(d));
      it = dead_.erase(it);
      ++n;
    }
    pump();
    return n;
  }

 private:
  std::error_code subscribe() {
    subscribe_request req{.topics = spec_.topics, .queue = engine_.opts_.queue};
    std::error_code ec;
    if (!resume_at_.empty()) req.since = cursor::parse(resume_at_, ec);
    if (ec) return ec;
    sub_ = engine_.hub_.subscribe(req, *this, ec);
    return ec;
  }

  // A lease: the subscription ends by itself then (renewal replaces the runner, and its timer).
  void expire_at(std::chrono::system_clock::time_point when) {
    auto t = std::make_shared<asio::steady_timer>(engine_.hub_.get_executor());
    t->expires_after(std::max(when - std::chrono::system_clock::now(), std::chrono::system_clock::duration::zero()));
    timers_.push_back(t);
    std::weak_ptr<runner> weak = this->shared_from_this();
    t->async_wait([weak](std::error_code ec) {
      auto self = weak.lock();
      if (!ec && self && !self->stopped_) self->engine_.ended(self->id_, "lease expired");
    });
  }

  void verify() {
    held_ = true;
    auto challenge = detail::random_hex();
    http::client_request req;
    req.method = "GET";
    req.url = detail::with_query(spec_.target_url, "crier.challenge=" + challenge + "&crier.subscription=" + id_);
    std::weak_ptr<runner> weak = this->shared_from_this();
    engine_.send(std::move(req), [weak, challenge](std::error_code ec, http::client_response r) {
      auto self = weak.lock();
      if (!self || self->stopped_) return;
      if (ec || !detail::echoes(r, challenge)) return self->engine_.ended(self->id_, "verification of intent failed");
      self->held_ = false;
      self->pump();
    });
  }

  std::size_t limit() const noexcept { return spec_.ordered ? 1 : std::max<std::size_t>(spec_.max_parallel, 1); }

  // Starts deliveries while the limit allows: dead letters being replayed first, then the queue.
  void pump() {
    while (!stopped_ && !held_ && in_flight_ < limit()) {
      if (pending_gap_) {
        begin(std::move(pending_gap_));
        continue;
      }
      if (!replays_.empty()) {
        auto d = std::make_shared<delivery>(std::move(replays_.front()));
        replays_.pop_front();
        begin(std::move(d));
        continue;
      }
      if (!sub_) return;
      auto it = sub_.state().next();
      if (!it) {
        if (!batch_.empty()) begin(std::make_shared<delivery>(take_batch()));
        else if (behind_ && in_flight_ == 0) resubscribe();
        return;
      }
      if (it.msg && !wanted(*it.msg)) {
        ++stats_.filtered;
        continue;
      }
      if (it.gap) {  // a gap notice goes alone, after the messages before it
        if (!batch_.empty()) {
          begin(std::make_shared<delivery>(take_batch()));
          if (in_flight_ >= limit()) {
            pending_gap_ = std::make_shared<delivery>(make_delivery(*it.gap));
            return;
          }
        }
        begin(std::make_shared<delivery>(make_delivery(*it.gap)));
        continue;
      }
      if (spec_.batch_max <= 1) {
        begin(std::make_shared<delivery>(make_delivery(it.msg)));
        continue;
      }
      batch_.push_back(it.msg);  // batching: what is queued now, up to batch_max, goes in one POST
      if (batch_.size() >= spec_.batch_max) begin(std::make_shared<delivery>(take_batch()));
    }
  }

  bool wanted(const message& m) const {
    return spec_.events.empty() || std::find(spec_.events.begin(), spec_.events.end(), m.event()) != spec_.events.end();
  }
  delivery take_batch() {
    auto d = make_batch(batch_);  // an array even of one: a batching receiver parses one shape
    batch_.clear();
    return d;
  }

  void resubscribe() {
    behind_ = false;
    resume_at_ = sub_.state().cursor_list();
    sub_.reset();
    if (resume_at_.empty()) resume_at_ = "0";
    if (subscribe()) return;  // the hub is stopping
    pump();
  }

  void begin(std::shared_ptr<delivery> d) {
    ++in_flight_;
    attempt(std::move(d));
  }

  void attempt(std::shared_ptr<delivery> d) {
    if (stopped_) return;
    if (auto wait = engine_.breaker_wait(origin_); wait.count() > 0) return later(std::move(d), wait);
    ++stats_.attempts;
    ++d->attempts;
    auto req = build_request(spec_, *d);
    std::weak_ptr<runner> weak = this->shared_from_this();
    engine_.send(std::move(req), [weak, d](std::error_code ec, http::client_response r) {
      if (auto self = weak.lock()) self->answered(d, ec, std::move(r));
    });
  }

  void answered(const std::shared_ptr<delivery>& d, std::error_code ec, http::client_response r) {
    if (stopped_) return;
    bool ok = !ec && r.status >= 200 && r.status < 300;
    // An answer of any kind means the endpoint is alive; only no answer or 5xx count against it.
    engine_.breaker_result(origin_, ok || (!ec && r.status < 500 && r.status != 429));
    if (ok) {
      ++stats_.delivered;
      return done();
    }
    ++stats_.failures;
    if (!ec && r.status == 410) {  // Gone: the receiver wants no more (REST hooks)
      done();
      return engine_.ended(id_, "410 Gone");
    }
    std::string why = ec ? ec.message() : "HTTP " + std::to_string(r.status);
    if (d->attempts >= spec_.retry_schedule.size()) return give_up(*d, std::move(why));
    auto delay = engine_.jittered(spec_.retry_schedule[d->attempts]);
    if (!ec && (r.status == 429 || r.status == 503))
      if (auto ra = retry_after(r)) delay = std::max(delay, std::min(*ra, engine_.opts_.max_retry_after));
    later(d, delay);
  }

  void give_up(const delivery& d, std::string why) {
    ++stats_.dead;
    dead_.push_back({.webhook_id = d.webhook_id, .topic = d.topic, .id = d.id, .msg = d.msg, .body = d.json_body,
                     .event = d.event, .last_error = std::move(why), .attempts = d.attempts,
                     .failed_at = std::chrono::system_clock::now()});
    while (dead_.size() > engine_.opts_.max_dead_letters) dead_.pop_front();
    done();
  }

  void done() {
    --in_flight_;
    pump();
  }

  void later(std::shared_ptr<delivery> d, std::chrono::milliseconds delay) {
    if (delay.count() == 0) return attempt(std::move(d));
    auto t = std::make_shared<asio::steady_timer>(engine_.hub_.get_executor(), delay);
    timers_.push_back(t);
    std::weak_ptr<runner> weak = this->shared_from_this();
    t->async_wait([weak, d = std::move(d), raw = t.get()](std::error_code ec) mutable {
      auto self = weak.lock();
      if (!self) return;
      std::erase_if(self->timers_, [raw](auto& p) { return p.get() == raw; });
      if (!ec) self->attempt(std::move(d));
    });
  }

  basic_engine& engine_;
  std::string id_;
  subscription_spec spec_;
  std::string origin_;
  typename hub_type::subscription sub_;
  std::string resume_at_;  // the cursor to subscribe from
  std::deque<delivery> replays_;
  std::vector<message_ptr> batch_;           // being gathered (batch_max > 1)
  std::shared_ptr<delivery> pending_gap_;    // a gap notice that follows a batch
  std::deque<dead_letter> dead_;
  std::vector<std::shared_ptr<asio::steady_timer>> timers_;
  subscription_stats stats_;
  std::size_t in_flight_ = 0;
  bool behind_ = false;
  bool stopped_ = false;
  bool held_ = false;  // verifying intent: nothing is sent yet
};

}  // namespace crier::webhook
