// The embedded HTTP/1.1 server: acceptors + connections, all on one executor (e.g. the hub's strand).
#pragma once

#include <crier/detail/asio.hpp>

#include <charconv>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crier/http/connection.hpp"
#include "crier/http/detail/server_core.hpp"
#include "crier/http/exchange.hpp"
#include "crier/http/options.hpp"

namespace crier::http {

namespace detail {
// Parses "host:port", "[v6]:port" or ":port" (any v4 address).
inline std::error_code parse_host_port(std::string_view s, std::string& host, unsigned short& port) {
  std::string_view h, p;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return std::make_error_code(std::errc::invalid_argument);
    h = s.substr(1, close - 1);
    p = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::make_error_code(std::errc::invalid_argument);
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
  }
  unsigned v = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (ec != std::errc() || end != p.data() + p.size() || p.empty() || v > 65535)
    return std::make_error_code(std::errc::invalid_argument);
  host = h.empty() ? std::string("0.0.0.0") : std::string(h);
  port = static_cast<unsigned short>(v);
  return {};
}

struct listener {
  explicit listener(const asio::any_io_executor& ex) : acceptor(ex), retry(ex) {}
  asio::ip::tcp::acceptor acceptor;
  asio::steady_timer retry;  // back off after accept errors such as EMFILE
};
}  // namespace detail

template <class Executor = asio::any_io_executor>
class basic_server {
  using conn = connection<asio::ip::tcp::socket>;

 public:
  basic_server(Executor ex, server_options opts, handler h)
      : ex_(std::move(ex)), core_(std::make_shared<detail::server_core>(asio::any_io_executor(ex_), opts, std::move(h))) {}
  basic_server(const basic_server&) = delete;
  basic_server& operator=(const basic_server&) = delete;
  ~basic_server() {
    for (auto& l : listeners_) close_listener(*l);
    core_->on_drained = nullptr;
    core_->for_each([](detail::connection_base* c) { c->force_close(); });
  }

  // Call on the server's executor (or before it runs). May be called several times.
  std::error_code listen(const asio::ip::tcp::endpoint& ep) {
    auto l = std::make_shared<detail::listener>(core_->ex);
    std::error_code ec;
    l->acceptor.open(ep.protocol(), ec);
    if (!ec) l->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && ep.protocol() == asio::ip::tcp::v6()) l->acceptor.set_option(asio::ip::v6_only(true), ec);
    if (!ec) l->acceptor.bind(ep, ec);
    if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return ec;
    listeners_.push_back(l);
    accept(l);
    return {};
  }

  std::error_code listen(std::string_view host_port) {
    std::string host;
    unsigned short port = 0;
    if (auto ec = detail::parse_host_port(host_port, host, port)) return ec;
    std::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec) return listen(asio::ip::tcp::endpoint(addr, port));
    // A name: resolve synchronously (start-up only) and listen on every address.
    asio::io_context tmp;
    asio::ip::tcp::resolver r(tmp);
    auto results = r.resolve(host, std::to_string(port), asio::ip::tcp::resolver::passive, ec);
    if (ec) return ec;
    std::error_code first;
    bool any = false;
    for (auto& e : results) {
      if (auto e2 = listen(e.endpoint())) first = first ? first : e2;
      else any = true;
    }
    return any ? std::error_code{} : first;
  }

  std::vector<asio::ip::tcp::endpoint> local_endpoints() const {
    std::vector<asio::ip::tcp::endpoint> out;
    for (auto& l : listeners_) {
      std::error_code ec;
      auto ep = l->acceptor.local_endpoint(ec);
      if (!ec) out.push_back(ep);
    }
    return out;
  }

  // Serve a socket the application's own server accepted, with bytes it already read from it.
  void adopt(asio::ip::tcp::socket s, std::string_view already_read = {}) {
    asio::dispatch(ex_, [core = core_, s = std::move(s), data = std::string(already_read)]() mutable {
      // Re-home the socket on our executor so every completion runs there.
      std::error_code ec;
      auto proto = s.local_endpoint(ec).protocol();
      if (ec) return;
      auto fd = s.release(ec);
      if (ec) return;
      asio::ip::tcp::socket mine(core->ex);
      mine.assign(proto, fd, ec);
      if (ec) return;
      if (core->stopping) return;  // `mine` closes
      start_connection(core, std::move(mine), data);
    });
  }

  // Graceful: stop accepting, notify pending/streaming exchanges (server_stopping), let in-flight
  // requests finish, close idle connections; done runs when all are gone (forced after shutdown_timeout).
  void stop(std::function<void()> done = {}) {
    core_->stopping = true;
    for (auto& l : listeners_) close_listener(*l);
    auto timer = std::make_shared<asio::steady_timer>(core_->ex, core_->opts.shutdown_timeout);
    std::weak_ptr<detail::server_core> weak = core_;
    // A second stop() keeps the first one's callback.
    core_->on_drained = [timer, done = std::move(done), prev = std::move(core_->on_drained)] {
      timer->cancel();
      if (prev) prev();
      if (done) done();
    };
    timer->async_wait([weak](std::error_code ec) {
      if (ec) return;
      if (auto core = weak.lock()) core->for_each([](detail::connection_base* c) { c->force_close(); });
    });
    core_->for_each([](detail::connection_base* c) { c->begin_stop(); });
    if (core_->count == 0 && core_->on_drained) asio::post(core_->ex, std::exchange(core_->on_drained, nullptr));
  }

  std::size_t connection_count() const { return core_->count; }
  // Heap held by the connections' own structures (not the kernel's or asio's), for tests and metrics.
  std::size_t memory_footprint() const {
    std::size_t n = 0;
    core_->for_each([&](const detail::connection_base* c) { n += c->footprint(); });
    return n;
  }
  const server_options& options() const { return core_->opts; }
  Executor get_executor() const { return ex_; }

 private:
  static void start_connection(const std::shared_ptr<detail::server_core>& core, asio::ip::tcp::socket s,
                               std::string_view initial) {
    std::error_code ig;
    s.set_option(asio::ip::tcp::no_delay(true), ig);  // responses and frames are complete writes
    bool reject = core->count >= core->opts.max_connections;
    auto c = std::make_shared<conn>(std::move(s), core);
    c->start(initial, reject);
  }

  static void close_listener(detail::listener& l) {
    std::error_code ig;
    l.acceptor.close(ig);
    l.retry.cancel();
  }

  void accept(std::shared_ptr<detail::listener> l) { do_accept(core_, std::move(l)); }

  static void do_accept(std::shared_ptr<detail::server_core> core, std::shared_ptr<detail::listener> l) {
    auto& acc = l->acceptor;
    acc.async_accept(core->ex, [core, l](std::error_code ec, asio::ip::tcp::socket s) mutable {
      if (!l->acceptor.is_open() || core->stopping) return;
      if (ec) {
        if (ec == asio::error::operation_aborted) return;
        // EMFILE & co: accepting again at once would spin.
        l->retry.expires_after(std::chrono::milliseconds(50));
        l->retry.async_wait([core, l](std::error_code e) {
          if (!e) do_accept(core, l);
        });
        return;
      }
      start_connection(core, std::move(s), {});
      do_accept(std::move(core), std::move(l));
    });
  }

  Executor ex_;
  std::shared_ptr<detail::server_core> core_;
  std::vector<std::shared_ptr<detail::listener>> listeners_;
};

using server = basic_server<>;

}  // namespace crier::http
