// The SSE subscribers: rate-limited connect phase, response heads, reactor-style reads and delivery accounting.
#pragma once

#include "common.hpp"
#include "http.hpp"
#include "options.hpp"
#include "sse_parser.hpp"
#include "stats.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace sse_fanout {

// One SSE subscriber.  Kept small: the head buffer is released once parsed.
struct subscriber {
  enum class st : uint8_t { idle, connecting, head, body, done, failed };

  explicit subscriber(asio::io_context& io, uint32_t i) : sock(io), idx(i) {}

  tcp::socket sock;
  uint32_t idx;
  st state = st::idle;
  bool ready = false;
  sse_parser parser;
  int64_t t_start = 0;
  std::unique_ptr<std::string> head;  // only while reading the response head
  delivery_track track;
};

// All subscribers of a run. Opens them at --connect-rate with at most
// --connect-concurrency in progress, calls on_connected once every one is
// ready or failed, then parses what they receive into `deliv`.
class subscriber_pool {
 public:
  subscriber_pool(asio::io_context& io, const options& opt, const run_state& rs, std::function<void()> on_connected)
      : io_(io), opt_(opt), rs_(rs), on_connected_(std::move(on_connected)), conn_timer_(io) {}

  // `request` is the complete GET request every subscriber sends.
  void create(const url& target, std::string request) {
    url_ = target;
    request_ = std::move(request);
    subs.reserve(opt_.subs);
    for (uint32_t i = 0; i < opt_.subs; ++i) subs.push_back(std::make_unique<subscriber>(io_, i));
  }

  void start() {
    t_connect_start = now_ns();
    connect_credit_t_ = t_connect_start;
    connect_credit_ = 1;
    if (opt_.subs == 0) check_connect_done();
    else connect_pump();
  }

  // Read by the bench for draining, progress and the report.
  std::vector<std::unique_ptr<subscriber>> subs;
  uint32_t next_sub = 0, in_progress = 0, ready = 0, failed = 0;
  uint32_t fail_connect = 0, fail_timeout = 0, fail_status = 0, fail_closed = 0;
  std::map<int, uint32_t> fail_status_codes;
  int64_t t_connect_start = 0, t_connect_end = 0;
  histogram connect_hist;
  delivery_stats deliv;
  uint64_t bytes = 0;
  uint32_t disconnects = 0, protocol_errors = 0;

 private:
  // ------------------------------------------------------- connect phase ---
  void connect_pump() {
    if (rs_.finished || connect_done_) return;
    int64_t now = now_ns();
    if (opt_.connect_rate > 0) {
      connect_credit_ += static_cast<double>(now - connect_credit_t_) * 1e-9 * opt_.connect_rate;
      connect_credit_ = std::min(connect_credit_, std::max(1.0, opt_.connect_rate / 50.0));
      connect_credit_t_ = now;
    }
    while (next_sub < opt_.subs && in_progress < opt_.connect_concurrency &&
           (opt_.connect_rate <= 0 || connect_credit_ >= 1.0)) {
      if (opt_.connect_rate > 0) connect_credit_ -= 1.0;
      start_sub(*subs[next_sub++]);
    }
    sweep_timeouts();
    if (next_sub < opt_.subs || in_progress > 0) {
      conn_timer_.expires_after(std::chrono::milliseconds(5));
      conn_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) connect_pump(); });
    }
  }

  void sweep_timeouts() {
    int64_t now = now_ns();
    if (now - last_sweep_ < 100'000'000) return;
    last_sweep_ = now;
    int64_t limit = static_cast<int64_t>(opt_.connect_timeout * 1e9);
    for (uint32_t i = 0; i < next_sub; ++i) {
      subscriber& s = *subs[i];
      if ((s.state == subscriber::st::connecting || s.state == subscriber::st::head) && !s.ready &&
          now - s.t_start > limit) {
        ++fail_timeout;
        sub_fail(s, "timeout");
      }
    }
  }

  void start_sub(subscriber& s) {
    ++in_progress;
    s.state = subscriber::st::connecting;
    s.t_start = now_ns();
    asio::error_code ec;
    if (opt_.src_ips > 0 && url_.addr.is_v4()) {
      s.sock.open(tcp::v4(), ec);
      if (!ec) {
        int one = 1;
        ::setsockopt(s.sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        auto b = asio::ip::make_address_v4("127.0.0.1").to_bytes();
        b[3] = static_cast<unsigned char>(1 + s.idx % opt_.src_ips);
        s.sock.bind(tcp::endpoint(asio::ip::address_v4(b), 0), ec);
      }
      if (ec) { ++fail_connect; sub_fail(s, "bind"); return; }
    }
    s.sock.async_connect(tcp::endpoint(url_.addr, url_.port), [this, &s](const asio::error_code& e) {
      if (s.state != subscriber::st::connecting) return;
      if (e) { ++fail_connect; sub_fail(s, "connect"); return; }
      asio::error_code ig;
      s.sock.set_option(tcp::no_delay(true), ig);
      s.sock.non_blocking(true, ig);
      s.state = subscriber::st::head;
      s.head = std::make_unique<std::string>();
      asio::async_write(s.sock, asio::buffer(request_), [this, &s](const asio::error_code& we, size_t) {
        if (we) { if (s.state == subscriber::st::head) { ++fail_connect; sub_fail(s, "write"); } return; }
        if (opt_.ready_on_sent && s.state == subscriber::st::head) sub_ready(s);
      });
      arm_read(s);
    });
  }

  void sub_ready(subscriber& s) {
    if (s.ready) return;
    s.ready = true;
    ++ready;
    --in_progress;
    connect_hist.add(static_cast<uint64_t>((now_ns() - s.t_start) / 1000));
    check_connect_done();
  }

  void sub_fail(subscriber& s, const char*) {
    bool was_ready = s.ready;
    if (s.state == subscriber::st::failed || s.state == subscriber::st::done) return;
    s.state = subscriber::st::failed;
    asio::error_code ig;
    s.sock.close(ig);
    s.head.reset();
    if (!was_ready) {
      --in_progress;
      ++failed;
      check_connect_done();
    }
  }

  void check_connect_done() {
    if (connect_done_ || next_sub < opt_.subs || in_progress > 0) return;
    connect_done_ = true;
    t_connect_end = now_ns();
    conn_timer_.cancel();
    if (!opt_.quiet)
      std::fprintf(stderr, "[sse_fanout] %u/%u subscribers ready (%u failed) in %.2f s\n", ready, opt_.subs, failed,
                   static_cast<double>(t_connect_end - t_connect_start) / 1e9);
    on_connected_();
  }

  // ------------------------------------------------------- subscriber I/O ---
  void arm_read(subscriber& s) {
    s.sock.async_wait(tcp::socket::wait_read, [this, &s](const asio::error_code& ec) {
      if (ec || s.state == subscriber::st::failed || s.state == subscriber::st::done) return;
      on_readable(s);
    });
  }

  void on_readable(subscriber& s) {
    for (;;) {
      asio::error_code ec;
      size_t n = s.sock.read_some(asio::buffer(rbuf_), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) { arm_read(s); return; }
      if (ec) { sub_closed(s, ec != asio::error::eof); return; }
      bytes += n;
      feed(s, rbuf_.data(), n, now_ns());
      if (s.state == subscriber::st::failed || s.state == subscriber::st::done) return;
      // A short read drained the socket. Re-arming without a second read that
      // would only return EAGAIN is safe on one thread: the edge for data that
      // arrives after this read is picked up by the next epoll_wait, which runs
      // only after this handler has queued the new wait.
      if (n < rbuf_.size()) { arm_read(s); return; }
    }
  }

  void sub_closed(subscriber& s, bool) {
    if (s.state == subscriber::st::head && !s.ready) { ++fail_closed; sub_fail(s, "closed"); return; }
    if (s.state == subscriber::st::failed || s.state == subscriber::st::done) return;
    if (!rs_.finished) ++disconnects;
    s.state = subscriber::st::done;
    asio::error_code ig;
    s.sock.close(ig);
  }

  void feed(subscriber& s, const char* p, size_t n, int64_t now) {
    if (s.state == subscriber::st::head) {
      std::string& h = *s.head;
      size_t old = h.size();
      h.append(p, n);
      size_t e = h.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
      if (e == std::string::npos) {
        if (h.size() > 65536) { ++protocol_errors; ++fail_status; sub_fail(s, "head too large"); }
        return;
      }
      head_info hi = parse_head(std::string_view(h).substr(0, e));
      if (hi.status != 200) {
        ++fail_status;
        ++fail_status_codes[hi.status];
        sub_fail(s, "status");
        return;
      }
      s.parser.chunked = hi.chunked;
      s.state = subscriber::st::body;
      std::string rest = h.substr(e + 4);
      s.head.reset();
      sub_ready(s);
      if (!rest.empty()) feed_body(s, rest.data(), rest.size(), now);
      return;
    }
    if (s.state == subscriber::st::body) feed_body(s, p, n, now);
  }

  void feed_body(subscriber& s, const char* p, size_t n, int64_t now) {
    bool ok = s.parser.feed_body(p, n, [this, &s, now](std::string_view data, bool has_id) {
      ++deliv.events;
      if (has_id) ++deliv.events_with_id;
      uint64_t seq = 0;
      int64_t t = 0;
      if (parse_marker(data, seq, t)) deliv.record(s.track, seq, t, now, rs_.t_run_start, rs_.sent);
      else ++deliv.unparsed;
    });
    if (!ok) {
      ++protocol_errors;
      sub_closed(s, true);
    }
  }

  asio::io_context& io_;
  const options& opt_;
  const run_state& rs_;
  std::function<void()> on_connected_;
  asio::steady_timer conn_timer_;
  url url_;
  std::string request_;
  std::array<char, 1 << 17> rbuf_{};
  double connect_credit_ = 0;
  int64_t connect_credit_t_ = 0;
  int64_t last_sweep_ = 0;
  bool connect_done_ = false;
};

}  // namespace sse_fanout
