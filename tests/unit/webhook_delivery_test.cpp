// What a webhook delivery looks like on the wire for each style (Standard Webhooks, WebSub,
// rssCloud, batches), the form helpers behind WebSub and rssCloud, and refusals that WebSub
// reports to the callback (denial) rather than to the requester.
#include <crier/crier.hpp>

#include <catch2/catch.hpp>

#include "http_client_fixture.hpp"
#include "http_fixture.hpp"

#include <future>

namespace {

using namespace crier;
using webhook::signature_style;

message_ptr make_message(std::string topic, std::string payload, std::string ct = {}, std::uint64_t seq = 1) {
  return std::make_shared<const message>(std::move(topic), message_id{0x1234, seq}, std::string{}, std::move(ct),
                                         std::move(payload), std::chrono::system_clock::now());
}

std::optional<std::string> header(const http::client_request& r, std::string_view name) {
  for (auto& [n, v] : r.headers)
    if (http::detail::iequals(n, name)) return v;
  return std::nullopt;
}

}  // namespace

TEST_CASE("url: percent_encode and parse_form round-trip", "[webhook][url]") {
  std::string raw = "http://h.example/a b?x=1&y=é+%";
  auto enc = http::percent_encode(raw);
  CHECK(enc.find_first_of(" ?&=+/:") == std::string::npos);  // nothing a query or form would split on
  CHECK(http::percent_decode(enc) == raw);
  auto form = http::parse_form("hub.mode=subscribe&hub.topic=" + enc + "&hub.url=a&hub.url=b+c&empty");
  REQUIRE(form.size() == 5);
  CHECK(form[0] == std::pair<std::string, std::string>{"hub.mode", "subscribe"});
  CHECK(form[1].second == raw);
  CHECK(form[3].second == "b c");  // '+' is a space in forms
  CHECK(form[4] == std::pair<std::string, std::string>{"empty", ""});
}

TEST_CASE("delivery: WebSub style carries Link and X-Hub-Signature", "[webhook]") {
  webhook::subscription_spec spec{.target_url = "http://127.0.0.1:9/cb", .topics = {"http://example.com/feed"},
                                  .secrets = {"s3cret"}, .style = signature_style::websub,
                                  .websub_method = "sha1", .websub_topic = "http://example.com/feed",
                                  .websub_hub = "https://hub.example/websub"};
  auto d = webhook::make_delivery(make_message("http://example.com/feed", "<feed/>", "application/atom+xml"));
  auto r = webhook::build_request(spec, d);
  CHECK(r.body == "<feed/>");
  CHECK(header(r, "content-type") == "application/atom+xml");
  CHECK(header(r, "link") == R"(<https://hub.example/websub>; rel="hub", <http://example.com/feed>; rel="self")");
  // HMAC-SHA1("s3cret", "<feed/>") by hand: openssl dgst -sha1 -hmac s3cret
  auto sig = header(r, "x-hub-signature");
  REQUIRE(sig);
  CHECK(sig->starts_with("sha1="));
  CHECK(sig->size() == 5 + 40);
  CHECK(*sig == webhook::hub_signature(webhook::hub_method::sha1, "s3cret", "<feed/>"));
  CHECK_FALSE(header(r, "webhook-signature"));  // not Standard Webhooks
  spec.secrets.clear();
  CHECK_FALSE(header(webhook::build_request(spec, d), "x-hub-signature"));
}

TEST_CASE("delivery: rssCloud says which feed changed, form-encoded and unsigned", "[webhook]") {
  webhook::subscription_spec spec{.target_url = "http://127.0.0.1:9/rss", .topics = {"http://e.com/f?a=1"},
                                  .style = signature_style::rsscloud};
  auto r = webhook::build_request(spec, webhook::make_delivery(make_message("http://e.com/f?a=1", "ignored")));
  CHECK(r.body == "url=http%3A%2F%2Fe.com%2Ff%3Fa%3D1");
  CHECK(header(r, "content-type") == "application/x-www-form-urlencoded");
  CHECK_FALSE(header(r, "webhook-signature"));
  CHECK_FALSE(header(r, "x-hub-signature"));
}

TEST_CASE("delivery: a batch is a JSON array of envelopes with one stable id", "[webhook]") {
  std::vector<message_ptr> ms{make_message("a", "one", {}, 1), make_message("b", "two", {}, 2)};
  auto d = webhook::make_batch(ms);
  CHECK(d.json_body.front() == '[');
  CHECK(d.json_body.back() == ']');
  CHECK(d.json_body.find(R"("data":"one")") < d.json_body.find(R"("data":"two")"));
  CHECK(d.json_body.find(R"("topic":"b")") != std::string::npos);
  CHECK(webhook::make_batch(ms).webhook_id == d.webhook_id);            // stable across retries
  CHECK(webhook::make_batch({ms[0]}).webhook_id != d.webhook_id);       // another batch, another id
  webhook::subscription_spec spec{.target_url = "http://127.0.0.1:9/", .topics = {"*"},
                                  .secrets = {webhook::generate_secret()}};
  auto r = webhook::build_request(spec, d);
  CHECK(r.body == d.json_body);
  CHECK(header(r, "crier-event") == "batch");
  CHECK(header(r, "content-type") == "application/json");
  CHECK_FALSE(header(r, "crier-topic"));  // envelopes name their topics
  CHECK(header(r, "webhook-id") == d.webhook_id);
}

TEST_CASE("websub: a subscription the authorizer refuses is denied to the callback", "[webhook][websub]") {
  using namespace client_test;
  asio::io_context io;
  std::vector<raw_request> seen;
  test_server* self = nullptr;
  test_server callback(io, nullptr);
  self = &callback;
  callback.serve = answer_all(self, [](const raw_request&) { return ok("whatever"); }, &seen);
  asio::co_spawn(io, callback.accept_loop(), asio::detached);

  crier::hub hub{io};
  crier::server server{hub,
                       {.listen = "127.0.0.1:0",
                        .webhook_allow = {"127.0.0.0/8"},
                        .authorize = [](const crier::access_request& r) {
                          if (r.action == crier::access::relay) return r.request.header("x-relay").has_value();
                          return !r.topic.starts_with("http://private.");
                        }}};
  auto ep = server.local_endpoints().at(0);
  auto run = [&](std::string body, std::string path = "/websub", std::string extra = "") {
    std::string req = "POST " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "Content-Type: application/x-www-form-urlencoded\r\n"
                      "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    auto f = std::async(std::launch::async, [&] {
      auto out = http_test::exchange_bytes(ep, req, "\r\n\r\n");
      return out.substr(0, out.find("\r\n"));
    });
    while (f.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) io.run_one_for(50ms);
    return f.get();
  };
  auto cb = http::percent_encode(callback.url("/cb"));
  CHECK(run("hub.mode=subscribe&hub.callback=" + cb + "&hub.topic=http%3A%2F%2Fprivate.example%2Ff") ==
        "HTTP/1.1 202 Accepted");
  REQUIRE(run_until(io, [&] { return !seen.empty(); }));
  CHECK(seen[0].has("GET /cb?hub.mode=denied&hub.topic=http%3A%2F%2Fprivate.example%2Ff&hub.reason="));
  CHECK(server.webhooks()->size() == 0);
  CHECK(server.websub()->stats().denied == 1);
  // A publisher is told at once.
  CHECK(run("hub.mode=publish&hub.url=http%3A%2F%2Fprivate.example%2Ff") == "HTTP/1.1 403 Forbidden");
  CHECK(run("port=9&path=%2Fx&protocol=http-post&url1=http%3A%2F%2Fprivate.example%2Ff", "/pleaseNotify") ==
        "HTTP/1.1 403 Forbidden");
  CHECK(seen.size() == 1);  // no verification was attempted for either
  // The relay asks too (access::relay).
  CHECK(run("{}", "/relay") == "HTTP/1.1 403 Forbidden");
  CHECK(run("{}", "/relay", "X-Relay: 1\r\n") == "HTTP/1.1 200 OK");
  CHECK(server.relay()->size() == 1);
}
