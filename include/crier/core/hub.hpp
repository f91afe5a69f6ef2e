// The hub: topics, publish, subscribe and fan-out, on the application's executor.
//
// State lives on a strand. publish() may be called from any thread: it takes the broker's
// lock only to assign the id and store the message, then posts the fan-out to the strand,
// where delivery to every subscriber runs without locks. Fan-out hands the same immutable
// message to every subscriber; transports cache one encoded frame per wire format on it.
#pragma once

#include <crier/core/local_broker.hpp>
#include <crier/core/subscription.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/dispatch.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>

#include <algorithm>
#include <atomic>
#include <memory>

namespace crier {

// Optional parts of a publish.
struct publish_options {
  std::string event;         // event name ("" = none); SSE `event:`, JSON `event`
  std::string content_type;  // "" = unspecified
};

struct publish_result {
  message_id id;             // valid when !error
  std::error_code error;
  explicit operator bool() const noexcept { return !error; }
};

// What to subscribe to and where to start.
struct subscribe_request {
  std::vector<std::string> topics;  // names or patterns (`a/*`, `a/**`)
  cursor since;                     // resume position (default: only new messages)
  std::optional<queue_options> queue;  // default: the hub's
};

// Hub counters (read on the strand).
struct hub_stats {
  std::uint64_t published = 0;
  std::uint64_t fanned_out = 0;     // message × subscriber offers
  std::uint64_t overflow_disconnects = 0;
  std::size_t subscriptions = 0;
};

namespace detail {

// The strand-side state, shared with subscription handles (which may outlive the hub).
template <class Executor>
class hub_core : public std::enable_shared_from_this<hub_core<Executor>> {
 public:
  using strand_type = asio::strand<Executor>;

  hub_core(const Executor& ex, hub_options o)
      : strand_(asio::make_strand(ex)), opts_(o), broker_(o.history, o.max_topics) {}

  strand_type strand_;
  hub_options opts_;
  local_broker broker_;
  hub_stats stats_;
  std::atomic<bool> stopped_{false};  // read by publish() on any thread

  struct topic_entry {
    std::vector<subscription_state*> subs;
  };
  std::unordered_map<std::string, topic_entry> topics_;
  std::vector<std::pair<topic_pattern, subscription_state*>> patterns_;
  // Subscribers to wake once the current burst of fan-outs is done (coalescing).
  std::vector<std::shared_ptr<subscription_state>> ready_;
  bool flush_pending_ = false;
  // Fan-outs posted but not yet run. While some are queued, the flush waits for them (a few
  // rounds at most), so a burst of publishes leaves as one gather write per subscriber.
  std::atomic<std::size_t> pending_fanouts_{0};
  unsigned flush_deferrals_ = 0;
  static constexpr unsigned max_flush_deferrals = 64;
  // Every live subscription, to end them on stop(); owned by their handles.
  std::unordered_map<subscription_state*, std::weak_ptr<subscription_state>> all_;

  void fan_out(const message_ptr& m) {
    pending_fanouts_.fetch_sub(1, std::memory_order_relaxed);
    ++stats_.published;
    auto it = topics_.find(m->topic());
    if (it == topics_.end()) {
      bool any = false;
      for (auto& [p, s] : patterns_) any = any || p.matches(m->topic());
      if (!any) return;
      it = topics_.try_emplace(m->topic()).first;
      for (auto& [p, s] : patterns_)
        if (p.matches(m->topic())) link(*it, s);
    }
    for (auto* s : it->second.subs) {
      ++stats_.fanned_out;
      if (s->offer(m)) schedule(*s);
    }
  }

  void schedule(subscription_state& s) {
    if (s.scheduled) return;
    auto it = all_.find(&s);
    if (it == all_.end()) return;
    s.scheduled = true;
    ready_.push_back(it->second.lock());
    if (!flush_pending_) {
      flush_pending_ = true;
      asio::post(strand_, [self = this->shared_from_this()] { self->flush(); });
    }
  }

  void flush() {
    if (pending_fanouts_.load(std::memory_order_relaxed) > 0 && flush_deferrals_ < max_flush_deferrals) {
      ++flush_deferrals_;
      asio::post(strand_, [self = this->shared_from_this()] { self->flush(); });
      return;
    }
    flush_deferrals_ = 0;
    flush_pending_ = false;
    auto ready = std::move(ready_);
    ready_.clear();
    for (auto& s : ready) {
      if (!s) continue;
      s->scheduled = false;
      if (s->error() == errc::queue_overflow) ++stats_.overflow_disconnects;
      if (auto* sink = s->sink()) sink->on_ready();
    }
  }

  // Adds `s` to a topic's subscribers once, remembering the link so detach() is O(links).
  static void link(std::pair<const std::string, topic_entry>& entry, subscription_state* s) {
    auto& v = entry.second.subs;
    if (std::find(v.begin(), v.end(), s) != v.end()) return;
    v.push_back(s);
    s->linked_topics.push_back(&entry.first);  // unordered_map keys do not move
  }

  void attach_exact(const std::string& topic, subscription_state* s) {
    auto [it, fresh] = topics_.try_emplace(topic);
    if (fresh)
      for (auto& [p, ps] : patterns_)
        if (p.matches(topic)) link(*it, ps);
    link(*it, s);
  }

  void attach_pattern(topic_pattern p, subscription_state* s) {
    for (auto& entry : topics_)
      if (p.matches(entry.first)) link(entry, s);
    patterns_.emplace_back(std::move(p), s);
  }

  void detach(subscription_state* s) {
    for (auto* key : s->linked_topics) {
      auto it = topics_.find(*key);
      if (it == topics_.end()) continue;
      auto& v = it->second.subs;
      v.erase(std::remove(v.begin(), v.end(), s), v.end());
      if (v.empty()) topics_.erase(it);
    }
    s->linked_topics.clear();
    if (s->has_pattern) std::erase_if(patterns_, [s](auto& e) { return e.second == s; });
    all_.erase(s);
    s->detach();
    stats_.subscriptions = all_.size();
  }

  // Sets the starting position for `topic` per `since` and collects the history to replay.
  void resume(subscription_state& s, const std::string& topic, const cursor& since, bool from_pattern,
              std::vector<message_ptr>& replay) {
    const message_id* from = nullptr;
    switch (since.what) {
      case cursor::kind::none:
        s.set_position(topic, broker_.last_id(topic));
        return;
      case cursor::kind::all:
        break;
      case cursor::kind::single:
        from = &since.id;
        break;
      case cursor::kind::per_topic:
        from = since.find(topic);  // unlisted: the client never saw this topic, so all of it
        break;
    }
    auto r = broker_.read(topic, from);
    if (from_pattern && r.messages.empty() && !r.gap && r.position.epoch == 0) return;
    // Position just before the replayed messages, so offer() accepts them.
    s.set_position(topic, r.messages.empty() ? r.position
                                             : message_id{r.position.epoch, r.messages.front()->seq() - 1});
    if (r.gap) s.add_gap(std::move(*r.gap));
    replay.insert(replay.end(), std::make_move_iterator(r.messages.begin()),
                  std::make_move_iterator(r.messages.end()));
  }
};

}  // namespace detail

template <class Executor>
class basic_subscription;

template <class Executor = asio::any_io_executor>
class basic_hub {
 public:
  using executor_type = asio::strand<Executor>;
  using subscription = basic_subscription<Executor>;

  explicit basic_hub(const Executor& ex, hub_options opts = {})
      : core_(std::make_shared<detail::hub_core<Executor>>(ex, opts)) {}
  template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
  explicit basic_hub(ExecutionContext& ctx, hub_options opts = {}) : basic_hub(Executor(ctx.get_executor()), opts) {}

  basic_hub(const basic_hub&) = delete;
  basic_hub& operator=(const basic_hub&) = delete;
  ~basic_hub() { stop(); }

  // The strand every hub callback runs on; transports use it for their connections.
  executor_type get_executor() const noexcept { return core_->strand_; }
  const hub_options& options() const noexcept { return core_->opts_; }
  local_broker& broker() noexcept { return core_->broker_; }
  const hub_stats& stats() const noexcept { return core_->stats_; }

  // Publishes `payload` on `topic` from any thread; returns its id or why it was refused.
  publish_result publish(std::string_view topic, std::string payload, publish_options o = {}) {
    publish_result r;
    if ((r.error = validate_topic(topic))) return r;
    if (payload.size() > core_->opts_.max_payload_bytes) return r.error = errc::payload_too_large, r;
    if (!valid_event_name(o.event, core_->opts_.max_event_name)) return r.error = errc::invalid_event_name, r;
    if (!valid_content_type(o.content_type)) return r.error = errc::invalid_content_type, r;
    if (core_->stopped_) return r.error = errc::hub_stopped, r;
    auto core = core_;
    auto m = core->broker_.append(
        publish_args{std::string(topic), std::move(payload), std::move(o.event), std::move(o.content_type)},
        r.error, [&](const message_ptr& m) {
          // Posted under the broker's lock so fan-outs run in id order.
          core->pending_fanouts_.fetch_add(1, std::memory_order_relaxed);
          asio::post(core->strand_, [core, m] { core->fan_out(m); });
        });
    if (m) r.id = m->id();
    return r;
  }

  // Event names: [A-Za-z0-9._:-], at most max_event_name bytes; "gap" and "binary" are
  // crier's own SSE events, so a publisher cannot pass a message off as one of them.
  static bool valid_event_name(std::string_view e, std::size_t max) noexcept {
    if (e.size() > max || e == "gap" || e == "binary") return false;
    return std::all_of(e.begin(), e.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
             c == ':' || c == '-';
    });
  }
  // Content types: printable ASCII (it goes into JSON and headers as is).
  static bool valid_content_type(std::string_view ct) noexcept {
    return ct.size() <= 255 && std::all_of(ct.begin(), ct.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
  }

  // As publish(), completing with (error_code, message_id) on the hub's strand.
  template <class CompletionToken>
  auto async_publish(std::string_view topic, std::string payload, publish_options o, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(std::error_code, message_id)>(
        [this](auto handler, std::string topic, std::string payload, publish_options o) {
          auto r = publish(topic, std::move(payload), std::move(o));
          asio::post(core_->strand_, [h = std::move(handler), r]() mutable { h(r.error, r.id); });
        },
        token, std::string(topic), std::move(payload), std::move(o));
  }

  // Subscribes `sink` (must be called on the hub's strand). History is replayed into the
  // queue per `req.since`; sink.on_ready() follows on the strand if anything is queued.
  subscription subscribe(const subscribe_request& req, subscriber& sink, std::error_code& ec);

  // Ends every subscription with hub_stopped and refuses further publishes.
  void stop() {
    if (!core_ || core_->stopped_) return;
    core_->stopped_ = true;
    asio::dispatch(core_->strand_, [core = core_] {
      for (auto& [raw, weak] : core->all_)
        if (auto s = weak.lock()) {
          s->close(errc::hub_stopped);
          core->schedule(*s);
        }
    });
  }

 private:
  std::shared_ptr<detail::hub_core<Executor>> core_;
};

// RAII handle: destroying it (on any thread) unsubscribes.
template <class Executor>
class basic_subscription {
 public:
  basic_subscription() = default;
  basic_subscription(std::shared_ptr<detail::hub_core<Executor>> core, std::shared_ptr<subscription_state> s)
      : core_(core), state_(std::move(s)) {}
  basic_subscription(basic_subscription&&) noexcept = default;
  basic_subscription& operator=(basic_subscription&& o) noexcept {
    if (this != &o) {
      reset();
      core_ = std::move(o.core_);
      state_ = std::move(o.state_);
    }
    return *this;
  }
  ~basic_subscription() { reset(); }

  explicit operator bool() const noexcept { return state_ != nullptr; }
  subscription_state* operator->() const noexcept { return state_.get(); }
  subscription_state& state() const noexcept { return *state_; }

  void reset() {
    if (!state_) return;
    auto core = core_.lock();
    state_->detach();  // at once, on this thread: no on_ready() after this returns
    if (core) {
      auto detach = [core, s = std::move(state_)] { core->detach(s.get()); };
      if (core->strand_.running_in_this_thread()) detach();
      else asio::post(core->strand_, std::move(detach));
    }
    state_.reset();
  }

 private:
  std::weak_ptr<detail::hub_core<Executor>> core_;
  std::shared_ptr<subscription_state> state_;
};

template <class Executor>
auto basic_hub<Executor>::subscribe(const subscribe_request& req, subscriber& sink, std::error_code& ec)
    -> subscription {
  ec = {};
  auto& core = *core_;
  if (core.stopped_) return ec = errc::hub_stopped, subscription{};
  if (req.topics.empty()) return ec = errc::invalid_topic, subscription{};
  std::vector<topic_pattern> patterns;
  std::vector<std::string> topics;  // without repeats: `a,a` is `a`
  for (auto& t : req.topics)
    if (std::find(topics.begin(), topics.end(), t) == topics.end()) topics.push_back(t);
  for (auto& t : topics) {
    if (is_pattern(t)) {
      patterns.push_back(topic_pattern::parse(t, ec));
      if (ec) return {};
    } else if ((ec = validate_topic(t))) {
      return {};
    }
  }
  // One bare id only makes sense for one exact topic.
  if (req.since.what == cursor::kind::single && (req.topics.size() != 1 || !patterns.empty()))
    return ec = errc::invalid_id, subscription{};

  auto s = std::make_shared<subscription_state>(req.queue.value_or(core.opts_.queue), &sink);
  core.all_.emplace(s.get(), s);
  core.stats_.subscriptions = core.all_.size();
  std::vector<message_ptr> replay;
  s->has_pattern = !patterns.empty();
  for (auto& t : topics)
    if (!is_pattern(t)) {
      core.attach_exact(t, s.get());
      core.resume(*s, t, req.since, false, replay);
    }
  for (auto& p : patterns) {
    for (auto& t : core.broker_.topics_matching(p)) core.resume(*s, t, req.since, true, replay);
    core.attach_pattern(std::move(p), s.get());
  }
  // Several topics: replay in publish order, as a live subscriber would have seen them
  // (by the broker's order counter: per topic it follows the sequence numbers).
  if (topics.size() > 1 || !patterns.empty())
    std::sort(replay.begin(), replay.end(),
              [](const message_ptr& a, const message_ptr& b) { return a->order() < b->order(); });
  for (auto& m : replay) s->offer(m, /*replay=*/true);
  if (s->has_items()) core.schedule(*s);
  return subscription{core_, std::move(s)};
}

using hub = basic_hub<>;
using subscription = basic_subscription<asio::any_io_executor>;

}  // namespace crier
