// The extension concepts, checked with positive and negative archetypes, including a custom
// transport defined only here.
#include <crier/concepts.hpp>
#include <crier/transport/ndjson.hpp>
#include <crier/transport/sse.hpp>

#include "line_transport.hpp"

#include <catch2/catch.hpp>

namespace {

using crier_test::line_transport;

struct not_a_transport {  // no encoder
  static constexpr std::string_view name = "nope";
  bool accepts(const crier::http::request&) const { return false; }
};

struct wrong_frame_type : line_transport {  // returns a copy per subscriber: not shareable
  std::string frame(const crier::message& m, const crier::stream_context&) const { return m.payload(); }
};

struct not_a_broker {
  crier::message_id last_id(const std::string&) const { return {}; }
};

}  // namespace

static_assert(crier::transport<crier::sse_transport>);
static_assert(crier::transport<crier::ndjson_transport>);
static_assert(crier::transport<line_transport>);
static_assert(!crier::transport<not_a_transport>);
static_assert(!crier::transport<wrong_frame_type>);
static_assert(crier::broker<crier::local_broker>);
static_assert(!crier::broker<not_a_broker>);
static_assert(crier::subscription_like<crier::subscription_state>);
static_assert(!crier::subscription_like<not_a_broker>);

TEST_CASE("a custom transport encodes once per message", "[core][concepts]") {
  line_transport t;
  auto m = std::make_shared<const crier::message>("a/b", crier::message_id{1, 1}, "", "", "hi",
                                                  std::chrono::system_clock::now());
  crier::stream_context ctx;
  auto f1 = t.frame(*m, ctx);
  auto f2 = t.frame(*m, ctx);
  CHECK(*f1 == "a/b hi\n");
  CHECK(f1.get() == f2.get());  // the same bytes for every subscriber
  auto sse1 = crier::sse_transport{}.frame(*m, ctx);
  CHECK(*sse1 == "id: 00000001:1\ndata: hi\n\n");
  CHECK(sse1.get() == crier::sse_transport{}.frame(*m, ctx).get());
}

TEST_CASE("sse encoding splits lines and base64s what it cannot carry", "[core][sse]") {
  auto now = std::chrono::system_clock::now();
  crier::message text("t", {0xab, 2}, "quote", "", "a\nb\n", now);
  CHECK(crier::sse_transport::encode(text, true, false) == "id: 000000ab:2\nevent: quote\ndata: a\ndata: b\ndata: \n\n");
  crier::message cr("t", {0xab, 3}, "", "", "a\r\nb", now);
  CHECK(crier::sse_transport::encode(cr, true, false) ==
        "id: 000000ab:3\nevent: binary\nencoding: base64\ndata: YQ0KYg==\n\n");
  crier::message env("t", {0xab, 4}, "", "", "x\"y", now);
  auto e = crier::sse_transport::encode(env, false, true);
  CHECK(e.rfind("data: {\"type\":\"message\",\"topic\":\"t\",\"id\":\"000000ab:4\"", 0) == 0);
  CHECK(e.find(R"("data":"x\"y"})") != std::string::npos);
}
