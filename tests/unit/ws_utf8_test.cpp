// Incremental UTF-8 validation for WebSocket text messages.
#include <catch2/catch.hpp>

#include <string>

#include "crier/detail/utf8.hpp"

using crier::detail::utf8_validator;

namespace {
bool valid_whole(std::string_view s) {
  utf8_validator v;
  return v.feed(s) && v.complete();
}
}  // namespace

TEST_CASE("ws utf8: valid 1-4 byte sequences", "[ws]") {
  CHECK(valid_whole(""));
  CHECK(valid_whole("hello, world: plain ASCII longer than eight bytes"));
  CHECK(valid_whole("\x7f"));
  CHECK(valid_whole("\xc2\x80"));            // U+0080
  CHECK(valid_whole("\xdf\xbf"));            // U+07FF
  CHECK(valid_whole("\xe0\xa0\x80"));        // U+0800
  CHECK(valid_whole("\xed\x9f\xbf"));        // U+D7FF (just below surrogates)
  CHECK(valid_whole("\xee\x80\x80"));        // U+E000 (just above)
  CHECK(valid_whole("\xef\xbf\xbf"));        // U+FFFF
  CHECK(valid_whole("\xf0\x90\x80\x80"));    // U+10000
  CHECK(valid_whole("\xf4\x8f\xbf\xbf"));    // U+10FFFF
  CHECK(valid_whole("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 ok \xf0\x9f\x98\x80 done 12345678"));
}

TEST_CASE("ws utf8: every invalid class", "[ws]") {
  // stray continuation bytes
  CHECK_FALSE(valid_whole("\x80"));
  CHECK_FALSE(valid_whole("a\xbf"));
  // overlongs
  CHECK_FALSE(valid_whole("\xc0\x80"));
  CHECK_FALSE(valid_whole("\xc1\xbf"));
  CHECK_FALSE(valid_whole("\xe0\x80\x80"));
  CHECK_FALSE(valid_whole("\xe0\x9f\xbf"));
  CHECK_FALSE(valid_whole("\xf0\x80\x80\x80"));
  CHECK_FALSE(valid_whole("\xf0\x8f\xbf\xbf"));
  // surrogates U+D800-DFFF
  CHECK_FALSE(valid_whole("\xed\xa0\x80"));
  CHECK_FALSE(valid_whole("\xed\xbf\xbf"));
  CHECK_FALSE(valid_whole("\xed\xa0\x80\xed\xb0\x80"));  // a CESU-8 pair
  // above U+10FFFF and invalid lead bytes
  CHECK_FALSE(valid_whole("\xf4\x90\x80\x80"));
  CHECK_FALSE(valid_whole("\xf5\x80\x80\x80"));
  CHECK_FALSE(valid_whole("\xf8\x88\x80\x80\x80"));
  CHECK_FALSE(valid_whole("\xfe"));
  CHECK_FALSE(valid_whole("\xff"));
  // bad continuation (ASCII or a lead byte where a continuation is due)
  CHECK_FALSE(valid_whole("\xc2\x41"));
  CHECK_FALSE(valid_whole("\xe1\x80\x41"));
  CHECK_FALSE(valid_whole("\xf1\x80\x80\xc2"));
  // truncated: feed() accepts, complete() does not
  utf8_validator v;
  CHECK(v.feed("ab\xf0\x9f\x98"));
  CHECK_FALSE(v.complete());
  CHECK_FALSE(v.failed());
}

TEST_CASE("ws utf8: a 4-byte character split at every position", "[ws]") {
  const std::string s = "x\xf0\x9f\x98\x80y";
  for (std::size_t a = 0; a <= s.size(); ++a) {
    for (std::size_t b = a; b <= s.size(); ++b) {
      utf8_validator v;
      CHECK(v.feed(std::string_view(s).substr(0, a)));
      CHECK(v.complete() == (a <= 1 || a >= 5));
      CHECK(v.feed(std::string_view(s).substr(a, b - a)));
      CHECK(v.feed(std::string_view(s).substr(b)));
      CHECK(v.complete());
    }
  }
  // one byte at a time, with an invalid byte in the middle of the character
  const std::string bad = "x\xf0\x9f\x41\x80";
  utf8_validator v;
  CHECK(v.feed(bad.substr(0, 1)));
  CHECK(v.feed(bad.substr(1, 1)));
  CHECK(v.feed(bad.substr(2, 1)));
  CHECK_FALSE(v.feed(bad.substr(3, 1)));
}

TEST_CASE("ws utf8: fails fast and stays failed", "[ws]") {
  utf8_validator v;
  CHECK(v.feed("valid prefix "));
  CHECK_FALSE(v.feed("\xed\xa0"));  // the surrogate is known bad at its second byte
  CHECK(v.failed());
  CHECK_FALSE(v.complete());
  CHECK_FALSE(v.feed("more ascii"));
  v.reset();
  CHECK(v.feed("ok"));
  CHECK(v.complete());
}

TEST_CASE("ws utf8: a split feed agrees with a whole one on all 1-3 byte prefixes of interest", "[ws]") {
  // Exhaustive over two bytes and a sample of three: where the bytes are split must not
  // change the verdict (is_valid_utf8 is the whole-buffer feed).
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      char buf[3] = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(0x80 + (a + b) % 64)};
      for (std::size_t len : {std::size_t{2}, std::size_t{3}}) {
        std::string_view s(buf, len);
        bool whole = crier::detail::is_valid_utf8(s);
        utf8_validator v;
        bool inc = v.feed(s.substr(0, 1)) && v.feed(s.substr(1)) && v.complete();
        if (inc != whole) FAIL("mismatch at " << a << "," << b << " len " << len);
      }
    }
  }
}
