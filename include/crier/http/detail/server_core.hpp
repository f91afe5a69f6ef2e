// State shared by a server and its connections: options, handler, the connection registry.
#pragma once

#include <crier/detail/asio.hpp>

#include <cstddef>
#include <functional>
#include <utility>

#include "crier/http/exchange.hpp"
#include "crier/http/options.hpp"

namespace crier::http::detail {

// Intrusive list node: the registry costs two pointers per connection and no allocation.
struct connection_base {
  virtual ~connection_base() = default;
  virtual void begin_stop() = 0;   // graceful: notify exchanges, close idle
  virtual void force_close() = 0;  // now
  virtual std::size_t footprint() const = 0;  // approximate heap bytes held in our structures
  connection_base* prev_ = nullptr;
  connection_base* next_ = nullptr;
  bool registered_ = false;
};

// Lives as long as the server or any connection (connections hold a shared_ptr); only touched
// on the server's executor, so no locks.
struct server_core {
  server_core(asio::any_io_executor e, server_options o, handler hd) : ex(std::move(e)), opts(o), h(std::move(hd)) {}

  asio::any_io_executor ex;
  server_options opts;
  handler h;
  connection_base* head = nullptr;
  std::size_t count = 0;
  bool stopping = false;
  std::function<void()> on_drained;  // stop()'s completion, run (posted) when count reaches 0

  void add(connection_base* c) {
    c->registered_ = true;
    c->prev_ = nullptr;
    c->next_ = head;
    if (head) head->prev_ = c;
    head = c;
    ++count;
  }
  void remove(connection_base* c) {
    if (!c->registered_) return;
    c->registered_ = false;
    if (c->prev_) c->prev_->next_ = c->next_; else head = c->next_;
    if (c->next_) c->next_->prev_ = c->prev_;
    c->prev_ = c->next_ = nullptr;
    --count;
    if (count == 0 && on_drained) asio::post(ex, std::exchange(on_drained, nullptr));
  }
  // f may close (unregister) the connection it is given.
  template <class F>
  void for_each(F&& f) {
    for (connection_base* c = head; c;) {
      connection_base* next = c->next_;
      f(c);
      c = next;
    }
  }
};

}  // namespace crier::http::detail
