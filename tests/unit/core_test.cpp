// Core units: topics, ids, history, subscriptions and the hub, without sockets.
#include <crier/core/hub.hpp>

#include <catch2/catch.hpp>

#include <thread>

using namespace crier;

TEST_CASE("topic names are validated", "[core][topic]") {
  CHECK(!validate_topic("prices/AAPL"));
  CHECK(!validate_topic("a.b-c_d~e/0"));
  CHECK(validate_topic("") == errc::invalid_topic);
  CHECK(validate_topic("/a") == errc::invalid_topic);
  CHECK(validate_topic("a/") == errc::invalid_topic);
  CHECK(validate_topic("a//b") == errc::invalid_topic);
  CHECK(validate_topic("a b") == errc::invalid_topic);
  CHECK(validate_topic("a/*") == errc::invalid_topic);
  CHECK(validate_topic("caf\xc3\xa9") == errc::invalid_topic);
  CHECK(!validate_topic(std::string(255, 'x')));
  CHECK(validate_topic(std::string(256, 'x')) == errc::invalid_topic);
  // URLs are topic names (WebSub): RFC 3986 characters but ',' and '*'.
  CHECK_FALSE(validate_topic("https://example.com/feed?a=1&b=%20#frag"));
  CHECK_FALSE(validate_topic("http://[::1]:8080/x;y=(1)"));
  for (auto bad : {"https://", "https:///x", "http://a b", "https://x/a,b", "https://x/*", "http://x/\xc3\xa9"})
    CHECK(validate_topic(bad) == errc::invalid_topic);
  CHECK(validate_topic("ftp://x") == errc::invalid_topic);  // not a URL topic, and ':' is no name char
}

TEST_CASE("patterns match one segment or any depth", "[core][topic]") {
  std::error_code ec;
  auto one = topic_pattern::parse("a/*", ec);
  REQUIRE(!ec);
  CHECK(one.matches("a/b"));
  CHECK(!one.matches("a"));
  CHECK(!one.matches("a/b/c"));
  CHECK(!one.matches("b/c"));
  auto deep = topic_pattern::parse("a/**", ec);
  REQUIRE(!ec);
  CHECK(deep.matches("a/b"));
  CHECK(deep.matches("a/b/c/d"));
  CHECK(!deep.matches("a"));
  CHECK(!deep.matches("ab/c"));
  auto mid = topic_pattern::parse("a/*/c", ec);
  REQUIRE(!ec);
  CHECK(mid.matches("a/x/c"));
  CHECK(!mid.matches("a/x/d"));
  auto exact = topic_pattern::parse("a/b", ec);
  CHECK(exact.is_exact());
  CHECK(exact.matches("a/b"));
  CHECK(!exact.matches("a/b/c"));
  for (auto bad : {"a/**/b", "a/b*", "**a", "a//*", "", "a/*x"}) {
    auto p = topic_pattern::parse(bad, ec);
    CHECK(ec == errc::invalid_pattern);
    CHECK(!p.matches("a/b"));
  }
}

TEST_CASE("ids and cursors round-trip and reject garbage", "[core][id]") {
  message_id id{0x1f2e3d4c, 42};
  CHECK(id.to_string() == "1f2e3d4c:42");
  message_id back;
  REQUIRE(message_id::parse("1f2e3d4c:42", back));
  CHECK(back == id);
  CHECK(message_id{1, 7}.to_string() == "00000001:7");
  for (auto bad : {"", ":1", "1:", "xyz:1", "1:2:3", "1:-2", "123456789:1", "1:99999999999999999999999"})
    CHECK(!message_id::parse(bad, back));
  std::error_code ec;
  CHECK(cursor::parse("", ec).what == cursor::kind::none);
  CHECK(cursor::parse("0", ec).what == cursor::kind::all);
  auto single = cursor::parse("a:3", ec);
  CHECK(!ec);
  CHECK(single.what == cursor::kind::single);
  CHECK(single.id == message_id{0xa, 3});
  auto list = cursor::parse("x/y=a:3,z=b:4", ec);
  REQUIRE(!ec);
  REQUIRE(list.topics.size() == 2);
  CHECK(*list.find("z") == message_id{0xb, 4});
  CHECK(list.find("q") == nullptr);
  auto url = cursor::parse("https://h/f?a=1&b=2=a:3,z=b:4", ec);  // a URL topic with '=' in it
  REQUIRE(!ec);
  REQUIRE(url.topics.size() == 2);
  CHECK(*url.find("https://h/f?a=1&b=2") == message_id{0xa, 3});
  cursor::parse("x y=a:3", ec);
  CHECK(ec == errc::invalid_id);
  cursor::parse("junk", ec);
  CHECK(ec == errc::invalid_id);
}

namespace {
message_ptr make(std::string topic, message_id id, std::string payload,
                 std::chrono::system_clock::time_point t = std::chrono::system_clock::now()) {
  return std::make_shared<const message>(std::move(topic), id, "", "", std::move(payload), t);
}
}  // namespace

TEST_CASE("history trims by count, bytes and age and reports gaps", "[core][history]") {
  topic_history h{7};
  history_options o{.max_messages = 3, .max_bytes = 1000, .max_age = std::chrono::seconds(0)};
  for (int i = 1; i <= 5; ++i) h.append(make("t", {7, std::uint64_t(i)}, "x"), o);
  CHECK(h.size() == 3);
  CHECK(h.first_seq() == 3);
  CHECK(h.last_seq() == 5);

  auto all = h.read_after("t", nullptr);  // since=0: what is held, no gap
  CHECK(!all.gap);
  CHECK(all.messages.size() == 3);
  CHECK(all.position == message_id{7, 5});

  message_id from{7, 3};
  auto r = h.read_after("t", &from);
  CHECK(!r.gap);
  REQUIRE(r.messages.size() == 2);
  CHECK(r.messages.front()->seq() == 4);

  message_id old{7, 1};
  auto g = h.read_after("t", &old);
  REQUIRE(g.gap);
  CHECK(g.gap->reason == gap_reason::trimmed);
  CHECK(g.gap->missed == 1);  // seq 2
  CHECK(g.gap->next == message_id{7, 3});
  CHECK(g.messages.size() == 3);

  message_id other{8, 3};
  auto reset = h.read_after("t", &other);
  REQUIRE(reset.gap);
  CHECK(reset.gap->reason == gap_reason::reset);
  CHECK(reset.messages.size() == 3);

  message_id future{7, 99};
  CHECK(h.read_after("t", &future).gap->reason == gap_reason::reset);

  // bytes
  topic_history hb{1};
  history_options ob{.max_messages = 100, .max_bytes = 10, .max_age = std::chrono::seconds(0)};
  for (int i = 1; i <= 4; ++i) hb.append(make("t", {1, std::uint64_t(i)}, "abcd"), ob);
  CHECK(hb.size() == 2);
  CHECK(hb.bytes() == 8);

  // age
  topic_history ha{1};
  history_options oa{.max_messages = 100, .max_bytes = 1000, .max_age = std::chrono::seconds(10)};
  auto t0 = std::chrono::system_clock::now() - std::chrono::seconds(60);
  ha.append(make("t", {1, 1}, "a", t0), oa);
  ha.append(make("t", {1, 2}, "b"), oa);
  CHECK(ha.size() == 1);
  ha.trim(oa, std::chrono::system_clock::now() + std::chrono::seconds(11));
  CHECK(ha.empty());
  CHECK(ha.last_seq() == 2);
  CHECK(ha.read_after("t", nullptr).position == message_id{1, 2});
}

namespace {
struct counting_sink : subscriber {
  int wakes = 0;
  void on_ready() override { ++wakes; }
};

std::vector<std::uint64_t> drain(subscription_state& s, std::vector<gap_notice>* gaps = nullptr) {
  std::vector<std::uint64_t> seqs;
  while (auto it = s.next()) {
    if (it.gap) {
      if (gaps) gaps->push_back(*it.gap);
    } else {
      seqs.push_back(it.msg->seq());
    }
  }
  return seqs;
}
}  // namespace

TEST_CASE("subscription queue: disconnect policy ends on overflow", "[core][queue]") {
  counting_sink sink;
  subscription_state s({.max_messages = 2, .max_bytes = 100, .policy = overflow_policy::disconnect}, &sink);
  CHECK(s.offer(make("t", {1, 1}, "a")));   // wake on first
  CHECK(!s.offer(make("t", {1, 2}, "b")));
  CHECK(s.offer(make("t", {1, 3}, "c")));   // overflow: wake to close
  CHECK(s.error() == errc::queue_overflow);
  CHECK(s.queued_messages() == 0);
  CHECK(!s.offer(make("t", {1, 4}, "d")));
}

TEST_CASE("subscription queue: a message larger than the byte bound still goes when empty", "[core][queue]") {
  counting_sink sink;
  subscription_state s({.max_messages = 10, .max_bytes = 4, .policy = overflow_policy::disconnect}, &sink);
  s.offer(make("t", {1, 1}, "0123456789"));
  CHECK(!s.error());
  CHECK(drain(s) == std::vector<std::uint64_t>{1});
}

TEST_CASE("subscription queue: drop_oldest reports an explicit gap", "[core][queue]") {
  counting_sink sink;
  subscription_state s({.max_messages = 3, .max_bytes = 1000, .policy = overflow_policy::drop_oldest}, &sink);
  for (std::uint64_t i = 1; i <= 7; ++i) s.offer(make("t", {1, i}, "x"));
  CHECK(!s.error());
  std::vector<gap_notice> gaps;
  CHECK(drain(s, &gaps) == std::vector<std::uint64_t>{5, 6, 7});
  REQUIRE(gaps.size() == 1);
  CHECK(gaps[0].reason == gap_reason::overflow);
  CHECK(gaps[0].after == message_id{1, 0});
  CHECK(gaps[0].next == message_id{1, 5});
  CHECK(gaps[0].missed == 4);
  CHECK(s.stats().dropped == 4);
  CHECK(s.delivered("t") == message_id{1, 7});
}

TEST_CASE("subscription queue: conflate keeps the newest per topic", "[core][queue]") {
  counting_sink sink;
  subscription_state s({.max_messages = 10, .max_bytes = 1000, .policy = overflow_policy::conflate}, &sink);
  s.offer(make("a", {1, 1}, "a1"));
  s.offer(make("b", {2, 1}, "b1"));
  s.offer(make("a", {1, 2}, "a2"));
  s.offer(make("a", {1, 3}, "a3"));
  s.offer(make("b", {2, 2}, "b2"));
  std::vector<std::string> got;
  while (auto it = s.next()) got.push_back(it.msg->payload());
  CHECK(got == std::vector<std::string>{"a3", "b2"});
  CHECK(s.stats().conflated == 3);
  s.offer(make("a", {1, 4}, "a4"));  // after draining, new ones queue again
  CHECK(drain(s) == std::vector<std::uint64_t>{4});
  CHECK(s.cursor_list() == "a=00000001:4,b=00000002:2");
}

TEST_CASE("subscription queue: duplicates and old ids are skipped", "[core][queue]") {
  counting_sink sink;
  subscription_state s({}, &sink);
  s.set_position("t", {1, 5});
  CHECK(!s.offer(make("t", {1, 4}, "x")));
  CHECK(!s.offer(make("t", {1, 5}, "x")));
  CHECK(s.offer(make("t", {1, 6}, "x")));
  CHECK(!s.offer(make("t", {1, 6}, "x")));
  CHECK(s.stats().duplicates == 3);
  CHECK(drain(s) == std::vector<std::uint64_t>{6});
}

namespace {
struct collecting_sink : subscriber {
  basic_hub<asio::io_context::executor_type>::subscription sub;
  std::vector<std::string> got;
  std::vector<gap_notice> gaps;
  std::vector<std::uint64_t> seqs;
  std::error_code ended;
  void on_ready() override {
    if (sub->error()) {
      ended = sub->error();
      return;
    }
    while (auto it = sub->next()) {
      if (it.gap) gaps.push_back(*it.gap);
      else got.push_back(it.msg->topic() + ":" + it.msg->payload()), seqs.push_back(it.msg->seq());
    }
  }
};
using io_hub = basic_hub<asio::io_context::executor_type>;
}  // namespace

TEST_CASE("hub: publish assigns ids, subscribers get new messages in order", "[core][hub]") {
  asio::io_context io;
  io_hub hub{io};
  collecting_sink s;
  std::error_code ec;
  s.sub = hub.subscribe({.topics = {"a"}}, s, ec);
  REQUIRE(!ec);
  auto r1 = hub.publish("a", "1");
  auto r2 = hub.publish("a", "2");
  REQUIRE(r1);
  CHECK(r2.id.seq == r1.id.seq + 1);
  CHECK(r2.id.epoch == r1.id.epoch);
  hub.publish("b", "x");
  io.run();
  CHECK(s.got == std::vector<std::string>{"a:1", "a:2"});
  CHECK(hub.publish("bad topic", "x").error == errc::invalid_topic);
  CHECK(hub.publish("a", "x", {.event = "a\nb"}).error == errc::invalid_event_name);
}

TEST_CASE("hub: a payload over the limit is refused", "[core][hub]") {
  asio::io_context io;
  io_hub hub{io, hub_options{.max_payload_bytes = 4}};
  CHECK(hub.publish("a", "12345").error == errc::payload_too_large);
  CHECK(hub.publish("a", "1234"));
}

TEST_CASE("hub: resume replays exactly what was missed, or a gap", "[core][hub]") {
  asio::io_context io;
  io_hub hub{io, hub_options{.history = {.max_messages = 5}}};
  std::vector<message_id> ids;
  for (int i = 1; i <= 8; ++i) ids.push_back(hub.publish("t", std::to_string(i)).id);
  io.run();
  io.restart();

  collecting_sink exact;
  std::error_code ec;
  exact.sub = hub.subscribe({.topics = {"t"}, .since = {.what = cursor::kind::single, .id = ids[5]}}, exact, ec);
  REQUIRE(!ec);
  collecting_sink trimmed;
  trimmed.sub = hub.subscribe({.topics = {"t"}, .since = {.what = cursor::kind::single, .id = ids[0]}}, trimmed, ec);
  collecting_sink all;
  all.sub = hub.subscribe({.topics = {"t"}, .since = {.what = cursor::kind::all}}, all, ec);
  collecting_sink other_epoch;
  other_epoch.sub = hub.subscribe(
      {.topics = {"t"}, .since = {.what = cursor::kind::single, .id = {ids[0].epoch + 1, 3}}}, other_epoch, ec);
  io.run();
  CHECK(exact.got == std::vector<std::string>{"t:7", "t:8"});
  CHECK(exact.gaps.empty());
  CHECK(trimmed.got == std::vector<std::string>{"t:4", "t:5", "t:6", "t:7", "t:8"});
  REQUIRE(trimmed.gaps.size() == 1);
  CHECK(trimmed.gaps[0].reason == gap_reason::trimmed);
  CHECK(trimmed.gaps[0].missed == 2);
  CHECK(all.got.size() == 5);
  CHECK(all.gaps.empty());
  REQUIRE(other_epoch.gaps.size() == 1);
  CHECK(other_epoch.gaps[0].reason == gap_reason::reset);
  CHECK(other_epoch.got.size() == 5);
}

TEST_CASE("hub: patterns and several topics share one subscription", "[core][hub]") {
  asio::io_context io;
  io_hub hub{io};
  hub.publish("x/old", "before");
  collecting_sink s;
  std::error_code ec;
  s.sub = hub.subscribe({.topics = {"x/*", "y", "x/a"}}, s, ec);
  REQUIRE(!ec);
  hub.publish("x/a", "1");
  hub.publish("x/b/c", "no");
  hub.publish("y", "2");
  hub.publish("x/new", "3");
  hub.publish("z", "no");
  io.run();
  CHECK(s.got == std::vector<std::string>{"x/a:1", "y:2", "x/new:3"});  // x/a once despite overlap
  CHECK(s.sub->cursor_list().find("x/new=") != std::string::npos);

  io.restart();
  collecting_sink deep;
  deep.sub = hub.subscribe({.topics = {"x/**"}, .since = {.what = cursor::kind::all}}, deep, ec);
  io.run();
  CHECK(deep.got.size() == 4);  // x/old, x/a, x/b/c, x/new from history

  collecting_sink bad;
  hub.subscribe({.topics = {"x/**/y"}}, bad, ec);
  CHECK(ec == errc::invalid_pattern);
  hub.subscribe({.topics = {"a", "b"}, .since = {.what = cursor::kind::single, .id = {1, 1}}}, bad, ec);
  CHECK(ec == errc::invalid_id);
}

TEST_CASE("hub: destroying the handle unsubscribes", "[core][hub]") {
  asio::io_context io;
  io_hub hub{io};
  collecting_sink s;
  std::error_code ec;
  s.sub = hub.subscribe({.topics = {"a"}}, s, ec);
  CHECK(hub.stats().subscriptions == 1);
  s.sub.reset();  // off the strand: detaching is posted, ahead of the publish's fan-out
  hub.publish("a", "1");
  io.run();
  CHECK(hub.stats().subscriptions == 0);
  CHECK(s.got.empty());
}

TEST_CASE("hub: a slow subscriber is bounded and ended by its policy", "[core][hub]") {
  asio::io_context io;
  io_hub hub{io};
  struct lazy : subscriber {
    int wakes = 0;
    void on_ready() override { ++wakes; }  // never drains
  } sink;
  std::error_code ec;
  auto sub = hub.subscribe({.topics = {"a"}, .queue = queue_options{.max_messages = 10}}, sink, ec);
  for (int i = 0; i < 100; ++i) hub.publish("a", "x");
  io.run();
  CHECK(sub->error() == errc::queue_overflow);
  CHECK(sub->queued_messages() == 0);
  CHECK(hub.stats().overflow_disconnects == 1);
}

TEST_CASE("hub: publish from other threads keeps per-topic order", "[core][hub]") {
  asio::io_context io;
  io_hub hub{io};
  collecting_sink s;
  std::error_code ec;
  s.sub = hub.subscribe({.topics = {"t"}}, s, ec);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) hub.publish("t", "x");
    });
  for (auto& t : threads) t.join();
  io.run();
  REQUIRE(s.seqs.size() == 2000);
  for (std::uint64_t i = 0; i < 2000; ++i) REQUIRE(s.seqs[i] == i + 1);
  CHECK(s.sub->delivered("t").seq == 2000);
}

TEST_CASE("hub: stop ends subscriptions and refuses publishes", "[core][hub]") {
  asio::io_context io;
  io_hub hub{io};
  collecting_sink s;
  std::error_code ec;
  s.sub = hub.subscribe({.topics = {"a"}}, s, ec);
  hub.stop();
  io.run();
  CHECK(s.ended == errc::hub_stopped);
  CHECK(hub.publish("a", "x").error == errc::hub_stopped);
}
