// Percent-decoding and query parsing.
#include <catch2/catch.hpp>

#include "crier/http/request.hpp"
#include "crier/http/response.hpp"
#include "crier/http/url.hpp"

using crier::http::percent_decode;
using crier::http::query_param;

TEST_CASE("http: percent_decode", "[http]") {
  CHECK(percent_decode("a%20b%2Fc") == "a b/c");
  CHECK(percent_decode("a+b") == "a+b");
  CHECK(percent_decode("a+b", true) == "a b");
  CHECK(percent_decode("%zz%4") == "%zz%4");  // malformed escapes stay literal
  CHECK(percent_decode("%e2%82%AC") == "\xe2\x82\xac");
}

TEST_CASE("http: query_param", "[http]") {
  CHECK(query_param("a=1&b=2&a=3", "a") == "1");
  CHECK(query_param("a=1&b=2", "b") == "2");
  CHECK(query_param("a=1&&flag", "flag") == "");
  CHECK(!query_param("a=1", "c"));
  CHECK(query_param("x%5By%5D=v+w", "x[y]") == "v w");
  crier::http::request r;
  r.set_target("/p?since=42&topic=a%2Fb");
  CHECK(r.path() == "/p");
  CHECK(r.query() == "since=42&topic=a%2Fb");
  CHECK(r.query_param("topic") == "a/b");
  r.set_target("/only");
  CHECK(r.query().empty());
  CHECK(r.path() == "/only");
}

TEST_CASE("http: response::error escapes JSON", "[http]") {
  auto r = crier::http::response::error(400, "bad_request", "say \"hi\"\n");
  CHECK(r.status == 400);
  CHECK(r.body == R"({"error":{"status":400,"code":"bad_request","message":"say \"hi\"\n"}})");
  CHECK(r.headers.at(0).second == "application/json");
}
