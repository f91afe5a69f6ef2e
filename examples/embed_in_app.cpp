// Embedding crier in an application that owns its io_context: the app's own timer ticks on
// the same loop, and a worker thread publishes market data. curl the printed URL:
//   curl -N -H 'Accept: text/event-stream' http://127.0.0.1:PORT/topics/prices/AAPL
#include <crier/crier.hpp>

#include <atomic>
#include <cstdio>
#include <thread>

int main(int argc, char** argv) {
  asio::io_context io;
  crier::hub hub{io, {.history = {.max_messages = 100}}};
  crier::server server{hub, {.listen = argc > 1 ? argv[1] : "127.0.0.1:0"}};
  std::printf("serving on %s\n", server.url().c_str());
  std::fflush(stdout);

  // The application's own work on the same loop: a heartbeat topic every second.
  asio::steady_timer tick{io};
  int ticks = 0;
  std::function<void()> arm = [&] {
    tick.expires_after(std::chrono::seconds(1));
    tick.async_wait([&](std::error_code ec) {
      if (ec) return;
      hub.publish("app/ticks", std::to_string(++ticks));
      arm();
    });
  };
  arm();

  // A feed thread: publish() is safe from any thread.
  std::atomic<bool> running{true};
  std::thread feed([&] {
    double bid = 189.50;
    while (running) {
      bid += 0.01;
      char buf[64];
      std::snprintf(buf, sizeof buf, R"({"bid":%.2f})", bid);
      hub.publish("prices/AAPL", buf, {.event = "quote", .content_type = "application/json"});
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the feed's pace, not a sync
    }
  });

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int) {
    running = false;
    tick.cancel();
    server.stop([&] { hub.stop(); });
  });
  io.run();
  feed.join();
}
