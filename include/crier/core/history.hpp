// One topic's history: its epoch, sequence counter and a bounded window of recent messages.
#pragma once

#include <crier/core/message.hpp>
#include <crier/core/options.hpp>

#include <chrono>
#include <deque>
#include <optional>

namespace crier {

class topic_history {
 public:
  explicit topic_history(std::uint32_t epoch) : epoch_(epoch) {}

  std::uint32_t epoch() const noexcept { return epoch_; }
  std::uint64_t last_seq() const noexcept { return last_seq_; }
  message_id last_id() const noexcept { return {epoch_, last_seq_}; }
  std::size_t size() const noexcept { return messages_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }
  bool empty() const noexcept { return messages_.empty(); }
  // Lowest sequence still held (last_seq + 1 when empty).
  std::uint64_t first_seq() const noexcept { return messages_.empty() ? last_seq_ + 1 : messages_.front()->seq(); }

  message_id next_id() const noexcept { return {epoch_, last_seq_ + 1}; }

  void append(message_ptr m, const history_options& o) {
    last_seq_ = m->seq();
    bytes_ += m->payload().size();
    messages_.push_back(std::move(m));
    trim(o, messages_.back()->published());
  }

  // Drops what is over the count, byte or age limits; the newest message always stays.
  void trim(const history_options& o, std::chrono::system_clock::time_point now) {
    while (messages_.size() > 1 &&
           (messages_.size() > o.max_messages || bytes_ > o.max_bytes ||
            (o.max_age.count() > 0 && now - messages_.front()->published() > o.max_age)))
      pop_front();
    if (o.max_messages == 0 && !messages_.empty()) pop_front();
    if (messages_.size() == 1 && o.max_age.count() > 0 && now - messages_.front()->published() > o.max_age)
      pop_front();
  }

  // Result of asking "what comes after `c`".
  struct read_result {
    std::optional<gap_notice> gap;      // set when messages after the cursor are gone
    std::vector<message_ptr> messages;  // held messages after the cursor, oldest first
    message_id position;                // id of the last message covered (the new cursor)
  };

  // `from`: nullptr = everything held (since=0); else the client's last id.
  read_result read_after(const std::string& topic, const message_id* from) const {
    read_result r;
    std::uint64_t start = first_seq();
    if (from && from->epoch == 0 && from->seq == 0) from = nullptr;  // "nothing seen yet"
    if (from) {
      if (from->epoch != epoch_ || from->seq > last_seq_)
        r.gap = gap_notice{topic, gap_reason::reset, *from, {epoch_, start}, 0};
      else if (from->seq + 1 < start)
        r.gap = gap_notice{topic, gap_reason::trimmed, *from, {epoch_, start}, start - from->seq - 1};
      else
        start = from->seq + 1;
    }
    r.position = {epoch_, start - 1};
    // Held sequences are contiguous (first_seq .. last_seq), so the start is an offset.
    for (auto i = start - first_seq(); i < messages_.size(); ++i) r.messages.push_back(messages_[i]);
    if (!r.messages.empty()) r.position = r.messages.back()->id();
    return r;
  }

 private:
  void pop_front() {
    bytes_ -= messages_.front()->payload().size();
    messages_.pop_front();
  }

  std::uint32_t epoch_;
  std::uint64_t last_seq_ = 0;
  std::size_t bytes_ = 0;
  std::deque<message_ptr> messages_;
};

}  // namespace crier
