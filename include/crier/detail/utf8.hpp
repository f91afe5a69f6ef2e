// UTF-8 validation (RFC 3629: no overlongs, no surrogates, max U+10FFFF), incremental for
// WebSocket text messages (RFC 6455 §8.1) and whole-buffer for payload classification.
// Why incremental: a text message may arrive in many fragments and TCP reads, and a
// character may be split anywhere; RFC 6455 wants the connection failed as soon as an
// invalid sequence is seen, not only once the whole message is buffered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace crier::detail {

class utf8_validator {
 public:
  // Feeds the next bytes. Returns false at the first byte that makes the stream invalid;
  // once false, the validator stays failed until reset().
  bool feed(std::string_view bytes) noexcept {
    if (failed_) return false;
    auto p = reinterpret_cast<const unsigned char*>(bytes.data());
    auto end = p + bytes.size();
    while (p < end) {
      if (need_ == 0) {
        // ASCII fast path, 8 bytes at a time (the common case for JSON payloads).
        while (end - p >= 8) {
          std::uint64_t w;
          __builtin_memcpy(&w, p, 8);
          if (w & 0x8080808080808080ULL) break;
          p += 8;
        }
        if (p == end) break;
        unsigned char c = *p++;
        if (c < 0x80) continue;
        // Lead byte: how many continuation bytes follow, and the allowed range of the
        // first one (narrowed to exclude overlongs, surrogates and > U+10FFFF).
        lo_ = 0x80;
        hi_ = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need_ = 1;
        else if (c == 0xE0) need_ = 2, lo_ = 0xA0;          // overlong 3-byte
        else if (c >= 0xE1 && c <= 0xEC) need_ = 2;
        else if (c == 0xED) need_ = 2, hi_ = 0x9F;          // surrogates D800-DFFF
        else if (c >= 0xEE && c <= 0xEF) need_ = 2;
        else if (c == 0xF0) need_ = 3, lo_ = 0x90;          // overlong 4-byte
        else if (c >= 0xF1 && c <= 0xF3) need_ = 3;
        else if (c == 0xF4) need_ = 3, hi_ = 0x8F;          // > U+10FFFF
        else return fail();  // 0x80-0xC1 (stray continuation / overlong 2-byte), 0xF5+
      } else {
        unsigned char c = *p++;
        if (c < lo_ || c > hi_) return fail();
        // Only the first continuation byte has a narrowed range.
        lo_ = 0x80;
        hi_ = 0xBF;
        --need_;
      }
    }
    return true;
  }

  // True when the bytes fed so far end on a character boundary (and nothing failed).
  bool complete() const noexcept { return !failed_ && need_ == 0; }
  bool failed() const noexcept { return failed_; }

  void reset() noexcept {
    need_ = 0;
    lo_ = 0x80;
    hi_ = 0xBF;
    failed_ = false;
  }

 private:
  bool fail() noexcept {
    failed_ = true;
    return false;
  }

  std::uint8_t need_ = 0;  // continuation bytes still expected
  unsigned char lo_ = 0x80, hi_ = 0xBF;
  bool failed_ = false;
};

// Whole-buffer check: valid UTF-8 and no sequence left unfinished.
inline bool is_valid_utf8(std::string_view s) noexcept {
  utf8_validator v;
  return v.feed(s) && v.complete();
}

}  // namespace crier::detail
