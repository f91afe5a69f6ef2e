// The in-process broker (the default): topic histories in memory, guarded by one mutex so
// publish() can assign ids from any thread. The fan-out itself never takes this lock.
#pragma once

#include <crier/core/history.hpp>
#include <crier/core/options.hpp>
#include <crier/core/topic.hpp>

#include <algorithm>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>

namespace crier {

// What a publisher hands to the broker.
struct publish_args {
  std::string topic;
  std::string payload;
  std::string event;                       // optional event name
  std::string content_type;                // optional; "" = unspecified
};

class local_broker {
 public:
  explicit local_broker(history_options history = {}, std::size_t max_topics = 1'000'000)
      : history_(history), max_topics_(max_topics), rng_(std::random_device{}()) {}

  // Assigns the next id of args.topic, stores the message and calls on_append(message)
  // while still holding the lock, so that callers can order their fan-out by id.
  template <class OnAppend>
  message_ptr append(publish_args&& args, std::error_code& ec, OnAppend&& on_append) {
    std::lock_guard lock(mutex_);
    // Taken under the lock and never backwards, so age trimming sees times in id order.
    auto now = last_time_ = std::max(last_time_, std::chrono::system_clock::now());
    auto* h = find_or_create(args.topic, ec);
    if (!h) return nullptr;
    auto m = std::make_shared<const message>(std::move(args.topic), h->next_id(), std::move(args.event),
                                             std::move(args.content_type), std::move(args.payload), now,
                                             ++order_);
    h->append(m, history_);
    on_append(m);
    return m;
  }

  // Held messages after `from` (nullptr: everything held), with a gap notice when the
  // cursor is older than the history or from another epoch.
  topic_history::read_result read(const std::string& topic, const message_id* from) {
    std::lock_guard lock(mutex_);
    auto it = topics_.find(topic);
    if (it == topics_.end()) {
      topic_history::read_result r;
      if (from && from->epoch != 0) r.gap = gap_notice{topic, gap_reason::reset, *from, {0, 1}, 0};
      return r;
    }
    it->second.trim(history_, std::chrono::system_clock::now());
    return it->second.read_after(topic, from);
  }

  // The topic's newest id ({0, 0} for a topic never published).
  message_id last_id(const std::string& topic) const {
    std::lock_guard lock(mutex_);
    auto it = topics_.find(topic);
    return it == topics_.end() ? message_id{} : it->second.last_id();
  }

  // Names of the topics with history that match `p`.
  std::vector<std::string> topics_matching(const topic_pattern& p) const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (auto& [name, h] : topics_)
      if (p.matches(name)) out.push_back(name);
    return out;
  }

  std::size_t topic_count() const {
    std::lock_guard lock(mutex_);
    return topics_.size();
  }
  const history_options& history() const noexcept { return history_; }

 private:
  topic_history* find_or_create(const std::string& topic, std::error_code& ec) {
    auto it = topics_.find(topic);
    if (it != topics_.end()) return &it->second;
    if (topics_.size() >= max_topics_ && !evict_one_empty()) {
      ec = errc::too_many_topics;
      return nullptr;
    }
    std::uint32_t epoch;
    do epoch = static_cast<std::uint32_t>(rng_()); while (epoch == 0);
    return &topics_.emplace(topic, topic_history{epoch}).first->second;
  }

  // Forgets a topic whose history aged out; a later publish starts a new epoch, so
  // clients resuming on it are told (reset) rather than misled.
  bool evict_one_empty() {
    auto now = std::chrono::system_clock::now();
    for (auto it = topics_.begin(); it != topics_.end(); ++it) {
      it->second.trim(history_, now);
      if (it->second.empty()) {
        topics_.erase(it);
        return true;
      }
    }
    return false;
  }

  history_options history_;
  std::size_t max_topics_;
  mutable std::mutex mutex_;
  std::mt19937 rng_;
  std::uint64_t order_ = 0;
  std::chrono::system_clock::time_point last_time_{};
  std::unordered_map<std::string, topic_history> topics_;
};

}  // namespace crier
