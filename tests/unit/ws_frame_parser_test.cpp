// The incremental client-frame parser: framing rules a server must enforce (RFC 6455 §5).
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "crier/detail/ws/frame_parser.hpp"

using namespace crier::detail::ws;
using kind = frame_event::kind;

namespace {

// A masked client frame. len_bytes: 0 = minimal encoding, 2 or 8 = forced (non-minimal).
std::string client_frame(std::uint8_t b0, std::string_view payload, int len_bytes = 0, bool masked = true) {
  const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::string f(1, static_cast<char>(b0));
  std::uint64_t n = payload.size();
  std::uint8_t m = masked ? 0x80 : 0;
  if (len_bytes == 0) len_bytes = n <= 125 ? 0 : n <= 0xFFFF ? 2 : 8;
  if (len_bytes == 0) {
    f += static_cast<char>(m | n);
  } else if (len_bytes == 2) {
    f += static_cast<char>(m | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xFF);
  } else {
    f += static_cast<char>(m | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xFF);
  }
  if (!masked) return f + std::string(payload);
  for (auto c : mask) f += static_cast<char>(c);
  for (std::size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ mask[i & 3]);
  return f;
}

struct record {
  kind type;
  opcode op;
  std::string payload;  // whole message for data (pieces joined)
  std::uint16_t code;
  bool compressed;
};

// Feeds `wire` in chunks of `chunk` bytes the way a connection would: appends to a read
// buffer, parses until need_more, drops what was consumed. Stops at the first error.
std::vector<record> run(std::string_view wire, std::size_t chunk = 1 << 20, parser_options o = {}) {
  frame_parser p(o);
  std::vector<record> out;
  std::string buf, msg;
  for (std::size_t off = 0; off < wire.size(); off += chunk) {
    buf += wire.substr(off, chunk);
    std::size_t pos = 0;
    while (true) {
      auto ev = p.next(buf.data() + pos, buf.size() - pos);
      pos += ev.consumed;
      if (ev.type == kind::need_more) break;
      if (ev.type == kind::data) {
        REQUIRE(ev.message_begin == msg.empty());  // holds for these tests' non-empty pieces
        msg += ev.payload;
        if (ev.message_end) {
          out.push_back({kind::data, ev.op, msg, 0, ev.compressed});
          msg.clear();
        }
        continue;
      }
      out.push_back({ev.type, ev.op, std::string(ev.payload), ev.close_code, false});
      if (ev.type == kind::error) return out;
    }
    REQUIRE(pos == buf.size());  // need_more means everything was consumed
    buf.erase(0, pos);
  }
  return out;
}

std::uint16_t error_of(std::string_view wire, parser_options o = {}) {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{1} << 20}) {
    auto r = run(wire, chunk, o);
    if (r.empty() || r.back().type != kind::error) return 0;
    if (chunk == (std::size_t{1} << 20)) return r.back().code;
  }
  return 0;
}

std::string close_body(std::uint16_t code, std::string_view reason = "") {
  std::string b;
  b += static_cast<char>(code >> 8);
  b += static_cast<char>(code & 0xFF);
  return b + std::string(reason);
}

}  // namespace

TEST_CASE("ws parser: messages survive any split, down to 1 byte", "[ws]") {
  std::string big(70000, 'z');
  std::string wire = client_frame(0x81, "hello") + client_frame(0x82, std::string("\0\x01\xff", 3)) +
                     client_frame(0x81, "") + client_frame(0x82, big) + client_frame(0x89, "pi") +
                     client_frame(0x8A, "po") + client_frame(0x88, close_body(1000, "bye"));
  for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{4096}, wire.size()}) {
    auto r = run(wire, chunk);
    REQUIRE(r.size() == 7);
    CHECK(r[0].op == opcode::text);
    CHECK(r[0].payload == "hello");
    CHECK(r[1].op == opcode::binary);
    CHECK(r[1].payload == std::string("\0\x01\xff", 3));
    CHECK(r[2].payload.empty());
    CHECK(r[3].payload == big);
    CHECK(r[4].type == kind::ping);
    CHECK(r[4].payload == "pi");
    CHECK(r[5].type == kind::pong);
    CHECK(r[6].type == kind::close);
    CHECK(r[6].code == 1000);
    CHECK(r[6].payload == "bye");
  }
}

TEST_CASE("ws parser: payload is unmasked in place as a view of the input", "[ws]") {
  std::string wire = client_frame(0x82, "abcdefghijklmnop");
  frame_parser p;
  auto ev = p.next(wire.data(), wire.size());
  REQUIRE(ev.type == kind::data);
  CHECK(ev.payload.data() == wire.data() + 6);
  CHECK(ev.payload == "abcdefghijklmnop");
  CHECK(ev.message_begin);
  CHECK(ev.frame_end);
  CHECK(ev.message_end);
  CHECK(ev.consumed == wire.size());
}

TEST_CASE("ws parser: fragmentation with interleaved control frames", "[ws]") {
  std::string wire = client_frame(0x01, "He") + client_frame(0x89, "p") + client_frame(0x00, "ll") +
                     client_frame(0x8A, "") + client_frame(0x80, "o");
  for (std::size_t chunk : {std::size_t{1}, std::size_t{5}, wire.size()}) {
    auto r = run(wire, chunk);
    REQUIRE(r.size() == 3);
    CHECK(r[0].type == kind::ping);
    CHECK(r[1].type == kind::pong);
    CHECK(r[2].type == kind::data);
    CHECK(r[2].op == opcode::text);  // continuation frames report the message's opcode
    CHECK(r[2].payload == "Hello");
  }
}

TEST_CASE("ws parser: non-minimal length encodings are accepted", "[ws]") {
  auto r = run(client_frame(0x81, "abc", 2) + client_frame(0x82, "de", 8));
  REQUIRE(r.size() == 2);
  CHECK(r[0].payload == "abc");
  CHECK(r[1].payload == "de");
}

TEST_CASE("ws parser: protocol errors close with 1002", "[ws]") {
  CHECK(error_of(client_frame(0x81, "x", 0, false)) == 1002);  // unmasked
  CHECK(error_of(client_frame(0xC1, "x")) == 1002);            // RSV1 without deflate
  CHECK(error_of(client_frame(0xA1, "x")) == 1002);            // RSV2
  CHECK(error_of(client_frame(0x91, "x")) == 1002);            // RSV3
  for (std::uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF})
    CHECK(error_of(client_frame(static_cast<std::uint8_t>(0x80 | op), "")) == 1002);
  CHECK(error_of(client_frame(0x89, std::string(126, 'a'))) == 1002);  // control > 125
  CHECK(error_of(client_frame(0x09, "a")) == 1002);                    // fragmented ping
  CHECK(error_of(client_frame(0x08, "")) == 1002);                     // fragmented close
  CHECK(error_of(client_frame(0x80, "a")) == 1002);                    // continuation first
  CHECK(error_of(client_frame(0x81, "a") + client_frame(0x80, "b")) == 1002);
  CHECK(error_of(client_frame(0x01, "a") + client_frame(0x81, "b")) == 1002);  // new message
  CHECK(error_of(client_frame(0x01, "a") + client_frame(0x02, "b")) == 1002);
  // 64-bit length with the most significant bit set
  std::string huge("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01", 10);
  CHECK(error_of(huge + "abcd") == 1002);
}

TEST_CASE("ws parser: RSV1 with permessage-deflate", "[ws]") {
  parser_options o;
  o.permessage_deflate = true;
  auto r = run(client_frame(0x41, "comp") + client_frame(0x80, "ressed") + client_frame(0xC2, "b"), 3, o);
  REQUIRE(r.size() == 2);
  CHECK(r[0].compressed);
  CHECK(r[0].payload == "compressed");
  CHECK(r[1].compressed);
  CHECK_FALSE(run(client_frame(0x81, "plain"), 1, o)[0].compressed);
  // compressed text is not UTF-8 checked by the parser (it must be inflated first)
  CHECK(run(client_frame(0xC1, "\xff"), 1, o)[0].type == kind::data);
  CHECK(error_of(client_frame(0x41, "a") + client_frame(0xC0, "b"), o) == 1002);  // RSV1 on continuation
  CHECK(error_of(client_frame(0xC9, ""), o) == 1002);                             // RSV1 on ping
  CHECK(error_of(client_frame(0xC8, ""), o) == 1002);                             // RSV1 on close
  CHECK(error_of(client_frame(0xA1, "x"), o) == 1002);                            // RSV2 still bad
}

TEST_CASE("ws parser: message size limit over the whole message", "[ws]") {
  parser_options o;
  o.max_message_size = 10;
  CHECK(run(client_frame(0x82, std::string(10, 'a')), 1, o)[0].type == kind::data);
  CHECK(error_of(client_frame(0x82, std::string(11, 'a')), o) == 1009);
  CHECK(error_of(client_frame(0x02, "123456") + client_frame(0x80, "12345"), o) == 1009);
  // the limit is per message: two messages of 10 are fine
  auto r = run(client_frame(0x02, "12345") + client_frame(0x80, "12345") + client_frame(0x82, std::string(10, 'b')), 1, o);
  REQUIRE(r.size() == 2);
  // fails at the header, before the payload arrives
  frame_parser p(o);
  std::string hdr = client_frame(0x82, std::string(1000, 'a')).substr(0, 8);
  CHECK(p.next(hdr.data(), hdr.size()).close_code == 1009);
}

TEST_CASE("ws parser: text is validated incrementally (1007)", "[ws]") {
  CHECK(error_of(client_frame(0x81, "ok \xc0\x80")) == 1007);
  // a character split across fragments is fine
  auto r = run(client_frame(0x01, "\xf0\x9f") + client_frame(0x80, "\x98\x80"), 1);
  REQUIRE(r.size() == 1);
  CHECK(r[0].payload == "\xf0\x9f\x98\x80");
  // ending in the middle of a character
  CHECK(error_of(client_frame(0x81, "ab\xf0\x9f")) == 1007);
  CHECK(error_of(client_frame(0x01, "ab") + client_frame(0x80, "\xe2\x82")) == 1007);
  // fail fast: the bad first fragment errors before the message ends
  frame_parser p;
  std::string w = client_frame(0x01, "\xed\xa0\x80");
  auto ev = p.next(w.data(), w.size());
  CHECK(ev.type == kind::error);
  CHECK(ev.close_code == 1007);
  // binary is never UTF-8 checked
  CHECK(run(client_frame(0x82, "\xff\xfe"))[0].type == kind::data);
}

TEST_CASE("ws parser: close frame payload rules", "[ws]") {
  auto r = run(client_frame(0x88, ""));
  REQUIRE(r.size() == 1);
  CHECK(r[0].type == kind::close);
  CHECK(r[0].code == close_code::no_status);
  CHECK(error_of(client_frame(0x88, "\x03")) == 1002);  // 1 byte
  for (std::uint16_t c : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999}) {
    auto rr = run(client_frame(0x88, close_body(c)));
    REQUIRE(rr.size() == 1);
    CHECK(rr[0].type == kind::close);
    CHECK(rr[0].code == c);
  }
  for (std::uint16_t c : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535})
    CHECK(error_of(client_frame(0x88, close_body(c))) == 1002);
  CHECK(error_of(client_frame(0x88, close_body(1000, "\xce\xba\xe1\xbd"))) == 1007);
  CHECK(error_of(client_frame(0x88, close_body(1000, "\xff"))) == 1007);
  CHECK(run(client_frame(0x88, close_body(1000, "\xce\xba")))[0].payload == "\xce\xba");
}

TEST_CASE("ws parser: errors are sticky", "[ws]") {
  frame_parser p;
  std::string w = client_frame(0x83, "") + client_frame(0x81, "ok");
  auto ev = p.next(w.data(), w.size());
  CHECK(ev.type == kind::error);
  CHECK(ev.consumed == 0);
  CHECK_FALSE(ev.payload.empty());  // a reason for logs / the close frame
  auto ev2 = p.next(w.data() + 6, w.size() - 6);
  CHECK(ev2.type == kind::error);
  CHECK(ev2.close_code == 1002);
}
