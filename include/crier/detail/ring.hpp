// A growable ring buffer that holds no memory while empty (std::deque allocates ~600 bytes
// up front, too much for 100k idle subscribers).
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

namespace crier::detail {

template <class T>
class ring {
 public:
  ring() = default;
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  T& front() noexcept { return buf_[head_]; }
  T& back() noexcept { return buf_[(head_ + size_ - 1) & (cap_ - 1)]; }
  T& operator[](std::size_t i) noexcept { return buf_[(head_ + i) & (cap_ - 1)]; }

  void push_back(T v) {
    if (size_ == cap_) grow();
    buf_[(head_ + size_) & (cap_ - 1)] = std::move(v);
    ++size_;
  }
  T pop_front() {
    T v = std::move(buf_[head_]);
    buf_[head_] = T{};
    head_ = (head_ + 1) & (cap_ - 1);
    if (--size_ == 0) release_if_large();
    return v;
  }
  // Removes element i (order kept).
  void erase(std::size_t i) {
    for (; i + 1 < size_; ++i) (*this)[i] = std::move((*this)[i + 1]);
    back() = T{};
    if (--size_ == 0) release_if_large();
  }
  void clear() {
    while (size_) pop_front();
    buf_.reset();
    cap_ = head_ = 0;
  }

 private:
  void grow() {
    std::size_t ncap = cap_ ? cap_ * 2 : 4;
    auto nbuf = std::make_unique<T[]>(ncap);
    for (std::size_t i = 0; i < size_; ++i) nbuf[i] = std::move((*this)[i]);
    buf_ = std::move(nbuf);
    cap_ = ncap;
    head_ = 0;
  }
  void release_if_large() {
    head_ = 0;
    if (cap_ > 64) {  // a burst is over: give the memory back
      buf_.reset();
      cap_ = 0;
    }
  }

  std::unique_ptr<T[]> buf_;
  std::size_t cap_ = 0, head_ = 0, size_ = 0;
};

}  // namespace crier::detail
