// Delivery statistics: latency histogram and per-subscriber loss / duplicate / reorder tracking.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace sse_fanout {

// 1 us buckets below 1024 us, then 64 sub-buckets per power of two (<1.6% wide).
class histogram {
 public:
  void add(uint64_t us) {
    size_t i = index(us);
    if (i >= counts_.size()) counts_.resize(i + 1, 0);
    ++counts_[i];
    ++n_;
    sum_ += static_cast<double>(us);
    min_ = std::min(min_, us);
    max_ = std::max(max_, us);
  }
  uint64_t count() const { return n_; }
  uint64_t min() const { return n_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return n_ ? sum_ / static_cast<double>(n_) : 0; }
  double percentile(double p) const {
    if (!n_) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(n_)));
    rank = std::clamp<uint64_t>(rank, 1, n_);
    uint64_t acc = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      acc += counts_[i];
      if (acc >= rank) {
        double mid = midpoint(i);
        return std::clamp(mid, static_cast<double>(min()), static_cast<double>(max_));
      }
    }
    return static_cast<double>(max_);
  }

 private:
  static size_t index(uint64_t us) {
    if (us < 1024) return static_cast<size_t>(us);
    int e = 63 - __builtin_clzll(us);  // >= 10
    uint64_t sub = (us >> (e - 6)) & 63;
    return 1024 + static_cast<size_t>(e - 10) * 64 + static_cast<size_t>(sub);
  }
  static double midpoint(size_t i) {
    if (i < 1024) return static_cast<double>(i);
    size_t e = (i - 1024) / 64 + 10, sub = (i - 1024) % 64;
    double lo = std::ldexp(1.0, static_cast<int>(e)) * (1.0 + static_cast<double>(sub) / 64.0);
    double w = std::ldexp(1.0, static_cast<int>(e) - 6);
    return lo + w / 2;
  }
  std::vector<uint64_t> counts_;
  uint64_t n_ = 0, min_ = UINT64_MAX, max_ = 0;
  double sum_ = 0;
};

// One subscriber's view of the sequence: the highest seq seen, how many
// distinct seqs arrived and (only once a gap appeared) the missing ranges.
struct delivery_track {
  uint64_t highest = 0;
  uint64_t delivered = 0;
  std::unique_ptr<std::vector<std::pair<uint64_t, uint64_t>>> missing;  // [lo, hi] ranges
};

// Totals over all subscribers.
struct delivery_stats {
  uint64_t delivered = 0, duplicated = 0, reordered = 0, untracked = 0, stale = 0, unparsed = 0,
           events = 0, events_with_id = 0, gaps = 0;
  int64_t t_first_deliv = 0, t_last_deliv = 0;
  histogram lat;

  // A parsed marker (seq, t_ns) arrived at `now` on subscriber `s`. Markers
  // stamped before this run started or beyond the highest seq handed out
  // (`sent`) belong to someone else and count as stale.
  void record(delivery_track& s, uint64_t seq, int64_t t_ns, int64_t now, int64_t t_run_start, uint64_t sent) {
    if (t_ns < t_run_start || seq > sent) { ++stale; return; }
    bool fresh = false;
    if (seq > s.highest) {
      if (seq > s.highest + 1) {
        if (!s.missing) s.missing = std::make_unique<std::vector<std::pair<uint64_t, uint64_t>>>();
        if (s.missing->size() < 4096) s.missing->emplace_back(s.highest + 1, seq - 1);
        ++gaps;
      }
      s.highest = seq;
      fresh = true;
    } else if (s.missing) {
      auto& m = *s.missing;
      bool found = false;
      for (size_t i = 0; i < m.size(); ++i) {
        auto [lo, hi] = m[i];
        if (seq < lo || seq > hi) continue;
        found = true;
        if (lo == hi) m.erase(m.begin() + static_cast<std::ptrdiff_t>(i));
        else if (seq == lo) m[i].first = lo + 1;
        else if (seq == hi) m[i].second = hi - 1;
        else { m[i].second = seq - 1; m.insert(m.begin() + static_cast<std::ptrdiff_t>(i) + 1, {seq + 1, hi}); }
        break;
      }
      if (found) { ++reordered; fresh = true; }
      else if (m.size() >= 4096) ++untracked;
      else ++duplicated;
    } else {
      ++duplicated;
    }
    if (!fresh) return;
    ++s.delivered;
    ++delivered;
    if (!t_first_deliv) t_first_deliv = now;
    t_last_deliv = now;
    lat.add(static_cast<uint64_t>(std::max<int64_t>(0, now - t_ns) / 1000));
  }
};

}  // namespace sse_fanout
