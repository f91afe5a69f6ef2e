// The bytes of one gather write: shared frames, plus the references that keep them alive
// until the write completes (one write in flight per connection).
#pragma once

#include <crier/core/message.hpp>
#include <crier/detail/asio.hpp>

#include <span>
#include <string>
#include <vector>

namespace crier::detail {

class gather_batch {
 public:
  void add(frame_ptr f) {
    bufs_.push_back(asio::buffer(*f));
    keep_.push_back(std::move(f));
  }
  // Per-connection bytes (a gap notice, an id prefix) become a frame too.
  void add(std::string owned) { add(std::make_shared<const std::string>(std::move(owned))); }
  // Bytes the caller keeps alive until the write completes.
  void add_view(asio::const_buffer b) { bufs_.push_back(b); }

  bool empty() const noexcept { return first_ == bufs_.size(); }
  std::size_t size() const noexcept { return bufs_.size() - first_; }
  std::span<const asio::const_buffer> buffers() const noexcept {
    return std::span<const asio::const_buffer>(bufs_).subspan(first_);
  }
  // Drops the first n bytes (written already); the frames stay referenced until clear().
  void consume(std::size_t n) {
    while (n > 0 && first_ < bufs_.size()) {
      auto& b = bufs_[first_];
      if (n < b.size()) {
        b += n;
        return;
      }
      n -= b.size();
      ++first_;
    }
  }

  // After the write: drop the references; give the memory back after a burst, so idle
  // connections stay small.
  void clear() {
    bufs_.clear();
    keep_.clear();
    first_ = 0;
    if (bufs_.capacity() > 32) {
      bufs_ = {};
      keep_ = {};
    }
  }

 private:
  std::vector<asio::const_buffer> bufs_;
  std::vector<frame_ptr> keep_;
  std::size_t first_ = 0;  // buffers before it were written
};

}  // namespace crier::detail
