// Server frame writing and the opening-handshake helpers.
#include <catch2/catch.hpp>

#include <string>

#include "crier/detail/ws/frame_parser.hpp"
#include "crier/detail/ws/frame_writer.hpp"
#include "crier/detail/ws/handshake.hpp"

using namespace crier::detail::ws;

namespace {
std::string hex(std::string_view s) {
  static constexpr char d[] = "0123456789abcdef";
  std::string o;
  for (unsigned char c : s) o += d[c >> 4], o += d[c & 15];
  return o;
}
}  // namespace

TEST_CASE("ws writer: header sizes and length encodings", "[ws]") {
  char h[max_header_size];
  CHECK(write_header(h, opcode::text, true, false, 0) == 2);
  CHECK(hex({h, 2}) == "8100");
  CHECK(write_header(h, opcode::binary, true, false, 125) == 2);
  CHECK(hex({h, 2}) == "827d");
  CHECK(write_header(h, opcode::text, false, true, 126) == 4);
  CHECK(hex({h, 4}) == "417e007e");
  CHECK(write_header(h, opcode::continuation, true, false, 65535) == 4);
  CHECK(hex({h, 4}) == "807effff");
  CHECK(write_header(h, opcode::binary, true, false, 65536) == 10);
  CHECK(hex({h, 10}) == "827f0000000000010000");
  CHECK(write_header(h, opcode::binary, true, false, 0x0102030405060708ULL) == 10);
  CHECK(hex({h, 10}) == "827f0102030405060708");
  CHECK(header_size(125) == 2);
  CHECK(header_size(126) == 4);
  CHECK(header_size(65536) == 10);
}

TEST_CASE("ws writer: complete frames", "[ws]") {
  CHECK(make_data_frame("Hello", true) == std::string("\x81\x05Hello"));  // RFC 6455 §5.7
  CHECK(hex(make_data_frame("ab", false)) == "82026162");
  CHECK(hex(make_data_frame("ab", true, true)) == "c1026162");
  auto shared = make_shared_data_frame(std::string(300, 'x'), false);
  REQUIRE(shared->size() == 304);
  CHECK(hex(shared->substr(0, 4)) == "827e012c");
  CHECK(make_pong("Hello") == std::string("\x8a\x05Hello"));
  CHECK(make_ping("") == std::string("\x89\x00", 2));
  CHECK(make_pong(std::string(200, 'p')).size() == 2 + 125);
}

TEST_CASE("ws writer: close frames", "[ws]") {
  CHECK(hex(make_close_frame(1000)) == "880203e8");
  CHECK(hex(make_close_frame(1001, "bye")) == "880503e9627965");
  CHECK(hex(make_close_frame(close_code::no_status)) == "8800");
  // a long reason is cut to 123 bytes, on a UTF-8 boundary
  std::string reason = std::string(122, 'r') + "\xe2\x82\xac";  // 125 bytes, the euro sign spans 122-124
  auto f = make_close_frame(1011, reason);
  CHECK(f.size() == 2 + 2 + 122);
  std::string ascii(200, 'a');
  CHECK(make_close_frame(1011, ascii).size() == 2 + 125);
}

TEST_CASE("ws writer: close frames parse back as valid", "[ws]") {
  // Our own frames, masked as a client would, pass our parser's checks.
  std::string reason = std::string(121, 'r') + "\xf0\x9f\x98\x80";
  std::string f = make_close_frame(4000, reason);
  std::string masked;
  masked += f[0];
  masked += static_cast<char>(f[1] | 0x80);
  masked += std::string(4, '\0');  // all-zero mask: payload unchanged
  masked += f.substr(2);
  frame_parser p;
  auto ev = p.next(masked.data(), masked.size());
  CHECK(ev.type == frame_event::kind::close);
  CHECK(ev.close_code == 4000);
  CHECK(ev.payload == std::string(121, 'r'));
}

TEST_CASE("ws handshake: accept key (RFC 6455 §1.3 example)", "[ws]") {
  CHECK(accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST_CASE("ws handshake: client key shape", "[ws]") {
  CHECK(valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK(valid_client_key("AAAAAAAAAAAAAAAAAAAAAA=="));
  CHECK(valid_client_key("+/+/+/+/+/+/+/+/+/+/+w=="));
  CHECK_FALSE(valid_client_key(""));
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ="));     // 23 chars
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ==="));   // 25 chars
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQAA"));    // no padding: 18 bytes
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZ=A="));
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZ-=="));    // base64url alphabet
  CHECK_FALSE(valid_client_key(" GhlIHNhbXBsZSBub25jZQ=="));
}

TEST_CASE("ws handshake: header token lists", "[ws]") {
  CHECK(header_has_token("Upgrade", "upgrade"));
  CHECK(header_has_token("keep-alive, Upgrade", "upgrade"));
  CHECK(header_has_token("keep-alive,Upgrade", "upgrade"));
  CHECK(header_has_token(" \tUPGRADE\t , close", "upgrade"));
  CHECK(header_has_token(",,websocket,", "websocket"));
  CHECK_FALSE(header_has_token("keep-alive", "upgrade"));
  CHECK_FALSE(header_has_token("upgrades", "upgrade"));
  CHECK_FALSE(header_has_token("up grade", "upgrade"));
  CHECK_FALSE(header_has_token("", "upgrade"));
  CHECK_FALSE(header_has_token(", ,", ""));
}

TEST_CASE("ws handshake: close code validity", "[ws]") {
  for (std::uint32_t c = 0; c <= 0xFFFF; ++c) {
    bool expect = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
    if (close_code_valid(static_cast<std::uint16_t>(c)) != expect) FAIL("close code " << c);
  }
  CHECK_FALSE(close_code_valid(1005));
  CHECK_FALSE(close_code_valid(1015));
  CHECK(close_code_valid(1014));
}
