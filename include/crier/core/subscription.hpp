// One subscriber's state inside the hub: per-topic cursors, a bounded queue and its overflow
// policy. Touched only on the hub's strand; a transport session drains it when told.
#pragma once

#include <crier/core/message.hpp>
#include <crier/core/options.hpp>
#include <crier/detail/ring.hpp>
#include <crier/error.hpp>

#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>
#include <vector>

namespace crier {

// What the hub calls, on its strand, when a subscription has something to deliver or ended.
class subscriber {
 public:
  // Items are queued (drain them with subscription_state::next), or the subscription ended
  // (subscription_state::error() is set).
  virtual void on_ready() = 0;

 protected:
  ~subscriber() = default;
};

// Counts a subscriber's losses and skips, for /metrics and tests.
struct subscription_stats {
  std::uint64_t delivered = 0;   // messages handed to the transport
  std::uint64_t dropped = 0;     // dropped by drop_oldest (each reported in a gap notice)
  std::uint64_t conflated = 0;   // replaced by a newer message of the same topic
  std::uint64_t duplicates = 0;  // offered twice (pattern overlap, replay race) and skipped
};

class subscription_state {
 public:
  subscription_state(queue_options q, subscriber* sink) : opts_(q), sink_(sink) {}

  // One item a session delivers, in order: a gap notice or a message.
  struct item {
    const gap_notice* gap = nullptr;  // valid until the next call to next()
    message_ptr msg;
    explicit operator bool() const noexcept { return gap || msg; }
  };

  // Takes the next item; gap notices come first (they concern messages older than any
  // queued one of the same topic). Moves the delivered cursor.
  item next() {
    if (gap_pos_ < gaps_.size()) {
      auto& g = gaps_[gap_pos_++];
      delivered_at(g.topic) = g.next.seq ? message_id{g.next.epoch, g.next.seq - 1} : g.next;
      return {&g, nullptr};
    }
    if (!gaps_.empty()) gaps_.clear(), gap_pos_ = 0;
    if (queue_.empty()) return {};
    auto m = queue_.pop_front();
    bytes_ -= m->payload().size();
    if (replay_left_) --replay_left_, replay_bytes_left_ -= std::min(replay_bytes_left_, m->payload().size());
    auto& c = cursor_at(m->topic());
    if (opts_.policy == overflow_policy::conflate) --c.queued;
    c.delivered = m->id();
    ++stats_.delivered;
    return {nullptr, std::move(m)};
  }

  bool has_items() const noexcept { return gap_pos_ < gaps_.size() || !queue_.empty(); }
  std::size_t queued_messages() const noexcept { return queue_.size(); }
  std::size_t queued_bytes() const noexcept { return bytes_; }
  // Set when the subscription ended: queue_overflow, unsubscribed or hub_stopped.
  std::error_code error() const noexcept { return error_; }
  const subscription_stats& stats() const noexcept { return stats_; }
  const queue_options& options() const noexcept { return opts_; }

  // The id of the last item delivered on `topic` ({0,0} if none).
  message_id delivered(const std::string& topic) const {
    if (topic == first_topic_) return first_.delivered;
    auto it = others_.find(topic);
    return it == others_.end() ? message_id{} : it->second.delivered;
  }
  // "topic=id,topic=id": the resume cursor of a multi-topic subscription.
  std::string cursor_list() const {
    std::string s;
    auto add = [&](const std::string& t, const topic_cursor& c) {
      if (c.delivered.epoch == 0) return;
      if (!s.empty()) s += ',';
      s += t;
      s += '=';
      c.delivered.append_to(s);
    };
    if (!first_topic_.empty()) add(first_topic_, first_);
    for (auto& [t, c] : others_) add(t, c);
    return s;
  }

  // --- the hub's side -----------------------------------------------------------------

  // Starting point for `topic`: messages up to `id` count as already seen.
  void set_position(const std::string& topic, message_id id) {
    auto& c = cursor_at(topic);
    c.enqueued = c.delivered = id;
  }

  void add_gap(gap_notice g) {
    gaps_.push_back(std::move(g));
  }

  // Queues `m` unless already seen; applies the overflow policy. `replay` bypasses the
  // queue bounds: history replay is bounded by the history itself and already in memory,
  // and the bounds stay that much larger until the replayed messages are delivered.
  // Returns true when the subscriber should be woken.
  bool offer(const message_ptr& m, bool replay = false) {
    if (error_) return false;
    bool was_empty = !has_items();
    auto& c = cursor_at(m->topic());
    if (c.enqueued.epoch == m->id().epoch && m->seq() <= c.enqueued.seq) {
      ++stats_.duplicates;
      return false;
    }
    if (c.enqueued.epoch != 0 && c.enqueued.epoch != m->id().epoch)  // topic was forgotten and recreated
      gaps_.push_back({m->topic(), gap_reason::reset, c.enqueued, m->id(), 0});
    c.enqueued = m->id();
    auto size = m->payload().size();
    if (replay) ++replay_left_, replay_bytes_left_ += size;
    if (opts_.policy == overflow_policy::conflate && c.queued > 0) {
      for (std::size_t i = queue_.size(); i-- > 0;)
        if (queue_[i]->topic() == m->topic()) {
          bytes_ += size - queue_[i]->payload().size();
          queue_[i] = m;
          ++stats_.conflated;
          return false;  // already scheduled: the queue was not empty
        }
    }
    while (!replay && !queue_.empty() &&
           (queue_.size() + 1 > opts_.max_messages + replay_left_ ||
            bytes_ + size > opts_.max_bytes + replay_bytes_left_)) {
      if (opts_.policy != overflow_policy::drop_oldest) {  // conflate falls back here when topics exceed the bound
        close(errc::queue_overflow);
        return true;
      }
      drop_front();
    }
    queue_.push_back(m);
    bytes_ += size;
    if (opts_.policy == overflow_policy::conflate) ++c.queued;
    return was_empty;
  }

  // Ends the subscription with `why`; queued items are released.
  void close(std::error_code why) {
    if (error_) return;
    error_ = why;
    replay_left_ = replay_bytes_left_ = 0;
    queue_.clear();
    gaps_.clear();
    gap_pos_ = 0;
    bytes_ = 0;
  }

  // Atomic: a handle destroyed on another thread detaches at once, before the hub's strand
  // learns of it, so no wake-up reaches a sink the application has destroyed.
  subscriber* sink() const noexcept { return sink_.load(std::memory_order_acquire); }
  void detach() noexcept { sink_.store(nullptr, std::memory_order_release); }
  // Topic entries of the hub this subscription is linked into (hub bookkeeping).
  std::vector<const std::string*> linked_topics;
  bool has_pattern = false;
  bool scheduled = false;  // the hub has a wake-up pending for it

 private:
  struct topic_cursor {
    message_id enqueued;   // newest id accepted into the queue (dedup and order)
    message_id delivered;  // newest id handed to the transport (what the client has)
    std::uint32_t queued = 0;  // messages of this topic in the queue (conflate only)
  };

  topic_cursor& cursor_at(const std::string& topic) {
    if (first_topic_.empty()) first_topic_ = topic;
    if (topic == first_topic_) return first_;
    return others_[topic];
  }
  message_id& delivered_at(const std::string& topic) { return cursor_at(topic).delivered; }

  void drop_front() {
    auto m = queue_.pop_front();
    bytes_ -= m->payload().size();
    if (replay_left_) --replay_left_, replay_bytes_left_ -= std::min(replay_bytes_left_, m->payload().size());
    ++stats_.dropped;
    // Extend this topic's pending overflow gap when contiguous, else open a new one.
    for (std::size_t i = gaps_.size(); i-- > gap_pos_;) {
      auto& g = gaps_[i];
      if (g.topic == m->topic() && g.reason == gap_reason::overflow && g.next == m->id()) {
        g.next.seq = m->seq() + 1;
        ++g.missed;
        return;
      }
    }
    gaps_.push_back({m->topic(), gap_reason::overflow, {m->id().epoch, m->seq() - 1},
                     {m->id().epoch, m->seq() + 1}, 1});
  }

  queue_options opts_;
  std::atomic<subscriber*> sink_;
  std::size_t replay_left_ = 0;        // replayed messages still queued
  std::size_t replay_bytes_left_ = 0;
  std::error_code error_;
  detail::ring<message_ptr> queue_;
  std::size_t bytes_ = 0;
  std::vector<gap_notice> gaps_;
  std::size_t gap_pos_ = 0;
  std::string first_topic_;  // most subscriptions have one topic: no map for them
  topic_cursor first_;
  std::unordered_map<std::string, topic_cursor> others_;
  subscription_stats stats_;
};

}  // namespace crier
