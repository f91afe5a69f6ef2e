// Regressions found in review: each of these lost messages or a wake-up before its fix.
#include <crier/core/hub.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <thread>

using namespace crier;

namespace {
using io_hub = basic_hub<asio::io_context::executor_type>;

struct seq_sink : subscriber {
  io_hub::subscription sub;
  std::map<std::string, std::vector<std::uint64_t>> seqs;
  std::vector<gap_notice> gaps;
  int wakes = 0;
  void on_ready() override {
    ++wakes;
    while (auto it = sub->next()) {
      if (it.gap) gaps.push_back(*it.gap);
      else seqs[it.msg->topic()].push_back(it.msg->seq());
    }
  }
};
}  // namespace

TEST_CASE("replay of several topics keeps every message despite concurrent publishers", "[core][regression]") {
  asio::io_context io;
  io_hub hub{io, hub_options{.history = {.max_messages = 100000}}};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) hub.publish(t == 2 ? "y" : "x", "p");
    });
  for (auto& t : threads) t.join();
  io.run();
  io.restart();
  seq_sink s;
  std::error_code ec;
  s.sub = hub.subscribe({.topics = {"x", "y"}, .since = {.what = cursor::kind::all}}, s, ec);
  REQUIRE(!ec);
  io.run();
  REQUIRE(s.seqs["x"].size() == 10000);
  REQUIRE(s.seqs["y"].size() == 5000);
  for (std::size_t i = 0; i < 10000; ++i) REQUIRE(s.seqs["x"][i] == i + 1);
  CHECK(s.sub->stats().duplicates == 0);
}

TEST_CASE("a reset gap for a recreated topic wakes the subscriber", "[core][regression]") {
  asio::io_context io;
  // one topic at most, history of one second: the topic is forgotten once it ages out
  io_hub hub{io, hub_options{.history = {.max_messages = 10, .max_age = std::chrono::seconds(1)}, .max_topics = 1}};
  seq_sink s;
  std::error_code ec;
  s.sub = hub.subscribe({.topics = {"a/**"}}, s, ec);
  hub.publish("a/x", "1");
  io.run();
  io.restart();
  REQUIRE(s.seqs["a/x"] == std::vector<std::uint64_t>{1});
  // Age the history out by publishing with a clock we cannot move: instead, fill the only
  // topic slot elsewhere once a/x is empty. Simulate by a direct offer of a new epoch.
  auto other_epoch = std::make_shared<const message>("a/x", message_id{s.sub->delivered("a/x").epoch + 1, 1}, "",
                                                     "", "2", std::chrono::system_clock::now());
  bool wake = s.sub->offer(other_epoch);
  CHECK(wake);  // was: false, and the subscriber slept for good
}

TEST_CASE("a replay larger than the queue bound does not disconnect on the next publish", "[core][regression]") {
  asio::io_context io;
  io_hub hub{io, hub_options{.history = {.max_messages = 50}, .queue = {.max_messages = 10}}};
  for (int i = 0; i < 50; ++i) hub.publish("t", "x");
  io.run();
  io.restart();
  struct lazy : subscriber {
    void on_ready() override {}
  } sink;
  std::error_code ec;
  auto sub = hub.subscribe({.topics = {"t"}, .since = {.what = cursor::kind::all}}, sink, ec);
  hub.publish("t", "live");
  io.run();
  CHECK(!sub->error());
  CHECK(sub->queued_messages() == 51);
  for (int i = 0; i < 10; ++i) hub.publish("t", "more");  // past bound + replay left: overflow
  io.restart();
  io.run();
  CHECK(sub->error() == errc::queue_overflow);
}

TEST_CASE("a handle destroyed off the strand gets no wake-up afterwards", "[core][regression]") {
  asio::io_context io;
  io_hub hub{io};
  struct counting : subscriber {
    int wakes = 0;
    void on_ready() override { ++wakes; }
  } sink;
  std::error_code ec;
  auto sub = hub.subscribe({.topics = {"t"}}, sink, ec);
  hub.publish("t", "x");
  io.poll_one();  // fan-out ran; the flush is queued
  sub.reset();    // not on the strand (io is not running here)
  io.run();
  CHECK(sink.wakes == 0);
}

TEST_CASE("publish rejects reserved or malformed event names and content types", "[core][regression]") {
  asio::io_context io;
  io_hub hub{io};
  CHECK(hub.publish("t", "x", {.event = "gap"}).error == errc::invalid_event_name);
  CHECK(hub.publish("t", "x", {.event = "binary"}).error == errc::invalid_event_name);
  CHECK(hub.publish("t", "x", {.event = "caf\xc3\xa9"}).error == errc::invalid_event_name);
  CHECK(hub.publish("t", "x", {.event = "price.update:v2"}));
  CHECK(hub.publish("t", "x", {.content_type = "text/plain\x01"}).error == errc::invalid_content_type);
  CHECK(hub.publish("t", "x", {.content_type = "application/json; charset=utf-8"}));
}
