// The relay's wire format (docs/relay.md) without I/O: request frames, answers in both forms,
// and the headers that may not cross a relay.
#include <crier/relay/wire.hpp>

#include <catch2/catch.hpp>

using namespace crier;

TEST_CASE("relay wire: hop-by-hop headers and Connection-named ones stay behind", "[relay]") {
  std::vector<std::pair<std::string, std::string>> in{
      {"Host", "h"}, {"Connection", "keep-alive, X-Private"}, {"Keep-Alive", "5"}, {"X-Private", "p"},
      {"Transfer-Encoding", "chunked"}, {"TE", "trailers"}, {"Upgrade", "x"}, {"Proxy-Authorization", "a"},
      {"Content-Length", "3"}, {"X-Kept", "k"}, {"Content-Type", "text/plain"}};
  relay_wire::header_list out;
  REQUIRE(relay_wire::forwardable(in, 1024, out));
  CHECK(out == relay_wire::header_list{{"host", "h"}, {"x-kept", "k"}, {"content-type", "text/plain"}});
  relay_wire::header_list small;
  CHECK_FALSE(relay_wire::forwardable(in, 10, small));  // over the byte limit
  relay_wire::header_list bad;
  CHECK_FALSE(relay_wire::forwardable(std::vector<std::pair<std::string, std::string>>{{"x", "a\r\nInjected: 1"}}, 1024, bad));
}

TEST_CASE("relay wire: a request frame carries the head as JSON and the body raw", "[relay]") {
  relay_wire::request r{.id = 7, .method = "POST", .path = "/h?x=1", .headers = {{"a", "\"q\""}},
                        .body = std::string("\0\xff\x01", 3)};
  auto f = relay_wire::request_frame(r);
  REQUIRE(f);
  REQUIRE(static_cast<unsigned char>((*f)[0]) == 1);
  std::size_t n = std::size_t(static_cast<unsigned char>((*f)[1])) << 8 | static_cast<unsigned char>((*f)[2]);
  CHECK(f->substr(3, n) == R"({"type":"request","id":7,"method":"POST","path":"/h?x=1","headers":[["a","\"q\""]]})");
  CHECK(f->substr(3 + n) == r.body);
  std::string j;
  relay_wire::append_request_json(j, r);
  CHECK(j.ends_with(R"(,"body_base64":"AP8B"})"));
  r.headers = {{"big", std::string(70'000, 'x')}};
  CHECK_FALSE(relay_wire::request_frame(r));  // a head over 64 KiB cannot be framed
}

TEST_CASE("relay wire: answers as binary frames or JSON, with limits", "[relay]") {
  auto frame = [](std::string head, std::string body) {
    std::string f(1, '\x01');
    f += static_cast<char>(head.size() >> 8);
    f += static_cast<char>(head.size() & 0xFF);
    return f + head + body;
  };
  relay_wire::response a;
  auto f = frame(R"({"type":"response","id":3,"status":201,"headers":[["X-A","1"],["Connection","close"]]})", "raw");
  REQUIRE_FALSE(relay_wire::read_answer_frame(f, a, 100, 100));
  CHECK(a.id == 3);
  CHECK(a.status == 201);
  CHECK(a.headers == relay_wire::header_list{{"x-a", "1"}});
  CHECK(a.body == "raw");

  auto parse = [](std::string_view json, relay_wire::response& out, std::size_t max_body = 100) {
    picojson::value v;
    std::string err;
    picojson::parse(v, json.begin(), json.end(), &err);
    return relay_wire::read_answer(v.get<picojson::object>(), out, max_body, 100);
  };
  relay_wire::response b;
  CHECK_FALSE(parse(R"({"id":4,"status":200,"body_base64":"AP8B"})", b));
  CHECK(b.body == std::string("\0\xff\x01", 3));
  relay_wire::response c;
  CHECK_FALSE(parse(R"({"id":5,"status":99,"body":"x"})", c));
  CHECK(c.status == 0);  // not a status: the HTTP client will get 502
  relay_wire::response d;
  CHECK(parse(R"({"id":6,"status":200,"body":"0123456789"})", d, 5));  // larger than allowed
  relay_wire::response e;
  CHECK(parse(R"({"type":"request","id":6,"status":200})", e));
  relay_wire::response g;
  CHECK(parse(R"({"status":200})", g));  // no id
  relay_wire::response h;
  auto bin_with_body = frame(R"({"id":1,"status":200,"body":"twice"})", "x");
  CHECK(relay_wire::read_answer_frame(bin_with_body, h, 100, 100));
  std::string short_frame = "\x01\x00\x10{}";
  CHECK(relay_wire::read_answer_frame(short_frame, h, 100, 100));
}
