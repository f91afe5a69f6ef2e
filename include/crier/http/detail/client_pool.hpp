// Outbound HTTP client, private: the per-origin connection pool and the state machine of one
// request (an "exchange"). Everything runs on the client's executor.
#pragma once

#include <crier/detail/asio.hpp>

#include <asio/ssl.hpp>

#include <array>
#include <list>
#include <memory>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "crier/error.hpp"
#include "crier/http/client_options.hpp"
#include "crier/http/detail/client_connection.hpp"
#include "crier/http/detail/client_parser.hpp"
#include "crier/http/detail/client_wire.hpp"

namespace crier::http::detail {

// The user's completion handler, type-erased (move-only); complete() hands it to its executor.
struct client_completion {
  virtual ~client_completion() = default;
  virtual void complete(std::error_code ec, client_response r) = 0;
};

struct client_exchange {
  enum class state : std::uint8_t { starting, queued, connecting, sending, done };
  explicit client_exchange(const asio::any_io_executor& ex) : total(ex), phase(ex) {}

  client_target target;
  client_wire wire;
  std::unique_ptr<client_completion> completion;
  asio::steady_timer total;  // total_timeout
  asio::steady_timer phase;  // connect_timeout, then response_timeout
  unsigned phase_gen = 0;    // a timer that fired before being cancelled is recognised as stale
  state st = state::starting;
  std::shared_ptr<client_connection> conn;
  std::unique_ptr<client_parser> parser;  // one per attempt
  bool written = false;                   // the request is out on the current connection
  bool retried = false;
  std::list<std::shared_ptr<client_exchange>>::iterator live_pos, wait_pos;
};

class client_core : public std::enable_shared_from_this<client_core> {
  using xptr = std::shared_ptr<client_exchange>;
  using cptr = std::shared_ptr<client_connection>;
  struct origin {
    std::size_t open = 0;    // connections open or opening, against max_connections_per_origin
    std::vector<cptr> idle;  // most recently used last
    std::list<xptr> waiting;
  };

 public:
  client_core(asio::any_io_executor ex, client_options o, std::shared_ptr<asio::ssl::context> tls)
      : ex_(std::move(ex)), opts_(std::move(o)), tls_(std::move(tls)) {
    if (opts_.max_connections_per_origin == 0) opts_.max_connections_per_origin = 1;
  }

  const asio::any_io_executor& executor() const { return ex_; }
  std::size_t open_connections() const noexcept { return open_count_; }
  const client_options& options() const noexcept { return opts_; }
  bool stopped() const { return stopped_; }

  void start(client_request r, std::unique_ptr<client_completion> c) {
    if (stopped_) return c->complete(make_error_code(errc::client_stopped), {});
    auto x = std::make_shared<client_exchange>(ex_);
    if (auto ec = parse_client_url(r.url, x->target)) return c->complete(ec, {});
    if (auto ec = serialize_client_request(r, x->target, opts_, x->wire)) return c->complete(ec, {});
    x->completion = std::move(c);
    x->live_pos = live_.insert(live_.end(), x);
    x->total.expires_after(opts_.total_timeout);
    x->total.async_wait([self = shared_from_this(), x](std::error_code ec) {
      if (!ec && x->st != client_exchange::state::done) self->fail(x, make_error_code(errc::request_timeout));
    });
    acquire(x);
  }

  // Pending requests complete with errc::client_stopped; every connection is closed.
  void shutdown() {
    stopped_ = true;
    std::vector<xptr> live(live_.begin(), live_.end());
    for (auto& x : live) fail(x, make_error_code(errc::client_stopped));
    std::vector<std::string> keys;
    for (auto& [k, o] : origins_) keys.push_back(k);
    for (auto& k : keys) {
      auto it = origins_.find(k);
      if (it == origins_.end()) continue;
      auto idle = std::move(it->second.idle);
      it->second.idle.clear();
      for (auto& c : idle) close_conn(k, c);
      maybe_erase(k);
    }
  }

 private:
  // ---- the pool ----
  void acquire(const xptr& x) {
    const std::string& key = x->target.origin;
    origin& o = origins_[key];
    while (!o.idle.empty()) {
      cptr c = std::move(o.idle.back());
      o.idle.pop_back();
      unidle(*c);
      if (c->is_open()) return use(x, std::move(c));
    }
    if (o.open < opts_.max_connections_per_origin) {
      ++o.open;
      return connect(x);
    }
    if (o.waiting.size() >= opts_.max_queued_per_origin)
      return fail(x, make_error_code(errc::too_many_connections));
    x->st = client_exchange::state::queued;
    x->wait_pos = o.waiting.insert(o.waiting.end(), x);
  }

  // A response ended and the connection can carry another request.
  void release(const std::string& key, cptr c) {
    origin& o = origins_[key];
    c->reused = true;
    if (!o.waiting.empty() && !stopped_) {
      xptr w = std::move(o.waiting.front());
      o.waiting.pop_front();
      return use(w, std::move(c));
    }
    if (stopped_ || o.idle.size() >= opts_.max_idle_per_origin || opts_.idle_timeout.count() <= 0)
      return close_conn(key, c);
    c->idle = true;
    o.idle.push_back(c);
    // While idle, any byte or close from the server retires the connection.
    std::weak_ptr<client_core> weak = shared_from_this();
    std::weak_ptr<client_connection> wc = c;
    c->set_reader([weak, wc, key](std::error_code, std::size_t) {
      auto self = weak.lock();
      auto conn = wc.lock();
      if (self && conn) self->drop_idle(key, conn);
    });
    c->read();
    unsigned gen = ++c->idle_gen;
    c->idle_timer.expires_after(opts_.idle_timeout);
    c->idle_timer.async_wait([weak, wc, key, gen](std::error_code ec) {
      auto self = weak.lock();
      auto conn = wc.lock();
      if (!ec && self && conn && conn->idle && conn->idle_gen == gen) self->drop_idle(key, conn);
    });
  }

  void drop_idle(const std::string& key, const cptr& c) {
    if (!c->idle) return;
    auto it = origins_.find(key);
    if (it == origins_.end()) return;
    auto& idle = it->second.idle;
    for (auto i = idle.begin(); i != idle.end(); ++i)
      if (*i == c) {
        idle.erase(i);
        break;
      }
    unidle(*c);
    close_conn(key, c);
    maybe_erase(key);
  }

  static void unidle(client_connection& c) {
    c.idle = false;
    ++c.idle_gen;
    c.idle_timer.cancel();
    c.set_reader(nullptr);
  }

  // Closes a connection and gives its slot to the first waiting request, if any.
  void close_conn(const std::string& key, const cptr& c) {
    if (!c->is_open()) return;
    c->close();
    --open_count_;
    origin& o = origins_[key];
    --o.open;
    if (!o.waiting.empty() && !stopped_) {
      xptr w = std::move(o.waiting.front());
      o.waiting.pop_front();
      ++o.open;
      connect(w);
    }
  }

  void maybe_erase(const std::string& key) {
    auto it = origins_.find(key);
    if (it != origins_.end() && it->second.open == 0 && it->second.idle.empty() && it->second.waiting.empty())
      origins_.erase(it);
  }

  // ---- one exchange ----
  void arm_phase(const xptr& x, std::chrono::milliseconds d, errc e) {
    unsigned gen = ++x->phase_gen;
    x->phase.expires_after(d);
    x->phase.async_wait([self = shared_from_this(), x, gen, e](std::error_code ec) {
      if (!ec && x->phase_gen == gen && x->st != client_exchange::state::done)
        self->fail(x, make_error_code(e));
    });
  }
  void disarm_phase(const xptr& x) {
    ++x->phase_gen;
    x->phase.cancel();
  }

  // A new connection for x (its slot is already counted).
  void connect(const xptr& x) {
    if (x->target.tls && !tls_) tls_ = make_default_client_tls();
    auto c = std::make_shared<client_connection>(ex_);
    ++open_count_;
    x->conn = c;
    x->st = client_exchange::state::connecting;
    x->written = false;
    arm_phase(x, opts_.connect_timeout, errc::connect_timeout);
    // Callbacks the connection stores hold weak references (no cycle through the connection).
    c->async_connect(x->target, opts_, x->target.tls ? tls_ : nullptr,
                     [wself = weak_from_this(), wx = std::weak_ptr<client_exchange>(x),
                      raw = c.get()](std::error_code ec) {
                       auto self = wself.lock();
                       auto x = wx.lock();
                       if (!self || !x || x->conn.get() != raw || x->st != client_exchange::state::connecting)
                         return;
                       self->disarm_phase(x);
                       if (ec) return self->fail(x, ec);
                       self->send(x);
                     });
  }

  void use(const xptr& x, cptr c) {
    x->conn = std::move(c);
    send(x);
  }

  void send(const xptr& x) {
    const cptr& c = x->conn;
    x->st = client_exchange::state::sending;
    x->written = false;
    x->parser = std::make_unique<client_parser>(opts_, x->wire.head_method);
    c->set_reader([wself = weak_from_this(), wx = std::weak_ptr<client_exchange>(x), raw = c.get()](
                      std::error_code ec, std::size_t n) {
      auto self = wself.lock();
      auto x = wx.lock();
      if (self && x && x->conn.get() == raw && x->st == client_exchange::state::sending)
        self->on_read(x, ec, n);
    });
    c->read();  // also reads an early answer (e.g. 413 before the whole body is sent)
    std::array<asio::const_buffer, 2> b{asio::buffer(x->wire.head), asio::buffer(x->wire.body)};
    c->async_write(b, [self = shared_from_this(), x, c](std::error_code ec) {
      if (x->conn != c || x->st != client_exchange::state::sending) return;
      if (ec) return self->connection_failed(x, ec);
      x->written = true;
      if (!x->parser->head_complete())
        self->arm_phase(x, self->opts_.response_timeout, errc::response_timeout);
    });
  }

  void on_read(const xptr& x, std::error_code ec, std::size_t n) {
    client_parser& p = *x->parser;
    const bool had_head = p.head_complete();
    if (ec) {
      if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
        if (!p.started()) return connection_failed(x, ec);
        if (p.finish() == client_parser::event::complete) return succeed(x, false);
        return fail(x, p.error());
      }
      if (!p.started()) return connection_failed(x, ec);
      return fail(x, ec);
    }
    auto r = p.feed(x->conn->data(), n);
    if (!had_head && p.head_complete()) disarm_phase(x);
    switch (r.ev) {
      case client_parser::event::need_more:
        return x->conn->read();
      case client_parser::event::complete:
        // Bytes after the response (we never pipeline) or an unfinished request: not reusable.
        return succeed(x, p.keep_alive() && r.consumed == n && x->written && !x->wire.close);
      case client_parser::event::error:
        return fail(x, p.error());
    }
  }

  // The connection broke before any byte of a response arrived. A reused connection the server
  // closed while it sat idle gets one more try on a fresh connection; nothing else is resent.
  void connection_failed(const xptr& x, std::error_code ec) {
    const bool stale = ec == asio::error::eof || ec == asio::error::connection_reset ||
                       ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
                       ec == asio::ssl::error::stream_truncated;
    if (stale && x->conn->reused && !x->retried && !stopped_ && !x->parser->started()) {
      x->retried = true;
      x->conn->close();  // the slot passes straight to the new connection
      --open_count_;
      x->conn = nullptr;
      return connect(x);
    }
    fail(x, ec);
  }

  void succeed(const xptr& x, bool reusable) {
    client_response r = x->parser->take();
    cptr c = std::move(x->conn);
    x->conn = nullptr;
    if (reusable && !stopped_)
      release(x->target.origin, std::move(c));
    else
      close_conn(x->target.origin, c);
    finish(x, {}, std::move(r));
  }

  void fail(const xptr& x, std::error_code ec) {
    if (x->st == client_exchange::state::done) return;
    const std::string& key = x->target.origin;
    if (x->st == client_exchange::state::queued) {
      auto it = origins_.find(key);
      if (it != origins_.end()) it->second.waiting.erase(x->wait_pos);
    } else if (x->conn) {
      cptr c = std::move(x->conn);
      x->conn = nullptr;
      close_conn(key, c);
    }
    finish(x, ec, {});
  }

  void finish(const xptr& x, std::error_code ec, client_response r) {
    x->st = client_exchange::state::done;
    disarm_phase(x);
    x->total.cancel();
    x->parser.reset();
    live_.erase(x->live_pos);
    maybe_erase(x->target.origin);
    auto c = std::move(x->completion);
    c->complete(ec, std::move(r));
  }

  asio::any_io_executor ex_;
  client_options opts_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::unordered_map<std::string, origin> origins_;
  std::list<xptr> live_;  // every exchange not yet completed
  std::size_t open_count_ = 0;
  bool stopped_ = false;
};

}  // namespace crier::http::detail
