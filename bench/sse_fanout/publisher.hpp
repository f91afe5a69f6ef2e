// The publishing side: M sequence-numbered POSTs over K keep-alive HTTP/1.1 connections, pipelined and rate-limited.
#pragma once

#include "common.hpp"
#include "http.hpp"
#include "options.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sse_fanout {

// Payload: "#<seq>:<t_ns>#" followed by letters up to --size bytes; t_ns is
// now_ns() when the request is written into the connection's send buffer.
// Requests a connection loses (closed keep-alive) are sent again on a new one.
class publisher_pool {
 public:
  // on_started: all connections attempted, publishing begins (t_pub_start set).
  // on_done: every message is answered (t_last_ack set).
  publisher_pool(asio::io_context& io, const options& opt, run_state& rs, std::function<void()> on_started,
                 std::function<void()> on_done)
      : io_(io), opt_(opt), rs_(rs), on_started_(std::move(on_started)), on_done_(std::move(on_done)), pub_timer_(io) {}

  // `target` is where every message is POSTed.
  void set_target(const url& target) { url_ = target; }

  void start() {
    padding_.clear();
    for (uint32_t i = 0; i < opt_.size; ++i) padding_.push_back(static_cast<char>('a' + i % 26));
    for (uint32_t k = 0; k < opt_.pub_conns; ++k) pubs_.push_back(std::make_unique<publisher>(io_));
    pub_connecting_ = opt_.pub_conns;
    for (auto& p : pubs_) pub_connect(*p);
  }

  // Read by the bench for draining, progress and the report (rs.sent is the attempted count).
  bool publishing = false;
  uint64_t acked = 0, pub_errors = 0, resent = 0;
  std::map<int, uint64_t> pub_error_status;
  int64_t t_pub_start = 0, t_last_ack = 0;
  uint32_t pub_reconnects = 0;

 private:
  struct publisher {
    explicit publisher(asio::io_context& io) : sock(io) {}
    tcp::socket sock;
    uint32_t gen = 0;         // bumped on every reconnect: stale handlers check it
    bool connected = false;
    bool dead = false;        // gave up (connect failed)
    bool writing = false;
    bool closing = false;     // server said "Connection: close": send nothing more here
    std::string pending, writing_buf, rbuf;
    std::array<char, 16384> tmp{};
    std::deque<uint64_t> outstanding;  // seqs written or queued, oldest first
  };

  void pub_connect(publisher& p) {
    uint32_t gen = ++p.gen;
    p.sock = tcp::socket(io_);
    p.connected = p.writing = p.closing = false;
    p.pending.clear();
    p.writing_buf.clear();
    p.rbuf.clear();
    p.sock.async_connect(tcp::endpoint(url_.addr, url_.port), [this, &p, gen](const asio::error_code& ec) {
      if (gen != p.gen || rs_.finished) return;
      if (ec) {
        p.dead = true;
        if (!opt_.quiet) std::fprintf(stderr, "[sse_fanout] publisher connect failed: %s\n", ec.message().c_str());
      } else {
        asio::error_code ig;
        p.sock.set_option(tcp::no_delay(true), ig);
        p.connected = true;
        pub_read(p);
      }
      if (!publishing) {
        if (--pub_connecting_ > 0) return;
        publishing = true;
        t_pub_start = now_ns();
        on_started_();
        if (!opt_.quiet) std::fprintf(stderr, "[sse_fanout] publishing %" PRIu64 " messages\n", opt_.count);
      }
      bool any = false;
      for (auto& q : pubs_) any |= !q->dead;
      if (!any) {  // nothing left to publish with
        pub_errors += retry_.size() + (opt_.count - rs_.sent);
        pub_error_status[0] += retry_.size() + (opt_.count - rs_.sent);
        retry_.clear();
        rs_.sent = opt_.count;
        inflight_ = 0;
      }
      pub_pump();
    });
  }

  void pub_pump() {
    if (rs_.finished || !publishing || publish_done_) return;
    uint64_t allowed = opt_.count;
    if (opt_.rate > 0) {
      double el = static_cast<double>(now_ns() - t_pub_start) * 1e-9;
      allowed = std::min<uint64_t>(opt_.count, static_cast<uint64_t>(el * opt_.rate) + 1);
    }
    std::vector<publisher*> touched;
    while ((!retry_.empty() || rs_.sent < allowed) && inflight_ < opt_.pub_window) {
      publisher* chosen = nullptr;
      for (uint32_t tries = 0; tries < pubs_.size(); ++tries) {
        publisher& p = *pubs_[rr_++ % pubs_.size()];
        if (p.connected && !p.dead && !p.closing) { chosen = &p; break; }
      }
      if (!chosen) break;
      uint64_t seq;
      if (!retry_.empty()) { seq = retry_.front(); retry_.pop_front(); ++resent; }
      else seq = ++rs_.sent;
      pub_send(*chosen, seq);
      touched.push_back(chosen);
    }
    for (publisher* p : touched) pub_flush(*p);
    maybe_publish_done();
    if (opt_.rate > 0 && rs_.sent < opt_.count && !publish_done_) {
      pub_timer_.expires_after(std::chrono::microseconds(500));
      pub_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) pub_pump(); });
    }
  }

  void pub_send(publisher& p, uint64_t seq) {
    char marker[64];
    int ml = std::snprintf(marker, sizeof marker, "#%" PRIu64 ":%" PRId64 "#", seq, now_ns());
    size_t body_len = std::max<size_t>(static_cast<size_t>(ml), opt_.size);
    std::string& w = p.pending;
    w += "POST ";
    w += url_.target;
    w += " HTTP/1.1\r\nHost: ";
    w += url_.host_header;
    w += "\r\nContent-Type: ";
    w += opt_.pub_content_type;
    w += "\r\nContent-Length: ";
    w += std::to_string(body_len);
    w += "\r\n";
    for (auto& h : opt_.pub_headers) { w += h; w += "\r\n"; }
    w += "\r\n";
    w.append(marker, static_cast<size_t>(ml));
    if (body_len > static_cast<size_t>(ml)) w.append(padding_, 0, body_len - static_cast<size_t>(ml));
    p.outstanding.push_back(seq);
    ++inflight_;
  }

  void pub_flush(publisher& p) {
    if (p.writing || p.pending.empty() || !p.connected || p.closing) return;
    p.writing = true;
    p.writing_buf.swap(p.pending);
    p.pending.clear();
    uint32_t gen = p.gen;
    asio::async_write(p.sock, asio::buffer(p.writing_buf), [this, &p, gen](const asio::error_code& ec, size_t) {
      if (gen != p.gen) return;
      p.writing = false;
      p.writing_buf.clear();
      if (ec) { if (!rs_.finished) pub_lost(p, "write"); return; }
      pub_flush(p);
    });
  }

  void pub_read(publisher& p) {
    uint32_t gen = p.gen;
    p.sock.async_read_some(asio::buffer(p.tmp), [this, &p, gen](const asio::error_code& ec, size_t n) {
      if (gen != p.gen || rs_.finished) return;
      if (ec) { pub_lost(p, ec == asio::error::eof ? "closed by server" : "read error"); pub_pump(); return; }
      p.rbuf.append(p.tmp.data(), n);
      pub_parse(p);
      if (gen == p.gen && !p.closing) pub_read(p);
      pub_pump();
    });
  }

  void pub_parse(publisher& p) {
    size_t off = 0;
    bool close_after = false;
    for (;;) {
      std::string_view b = std::string_view(p.rbuf).substr(off);
      size_t he = b.find("\r\n\r\n");
      if (he == std::string_view::npos) break;
      head_info hi = parse_head(b.substr(0, he));
      size_t body = he + 4, total = 0;
      if (hi.chunked) {
        size_t q = body;
        bool complete = false;
        for (;;) {
          size_t le = b.find("\r\n", q);
          if (le == std::string_view::npos) break;
          uint64_t sz = 0;
          std::from_chars(b.data() + q, b.data() + le, sz, 16);
          if (sz == 0) {
            size_t te = b.find("\r\n\r\n", le);  // trailers (usually none) end with an empty line
            if (te == le) { total = le + 4; complete = true; }
            else if (te != std::string_view::npos) { total = te + 4; complete = true; }
            break;
          }
          if (le + 2 + sz + 2 > b.size()) break;
          q = le + 2 + sz + 2;
        }
        if (!complete) break;
      } else {
        uint64_t cl = hi.content_length > 0 ? static_cast<uint64_t>(hi.content_length) : 0;
        if (body + cl > b.size()) break;
        total = body + cl;
      }
      off += total;
      if (hi.status >= 100 && hi.status < 200) continue;  // interim response
      if (!p.outstanding.empty()) p.outstanding.pop_front();
      if (inflight_) --inflight_;
      if (hi.status >= 200 && hi.status < 300) { ++acked; t_last_ack = now_ns(); }
      else { ++pub_errors; ++pub_error_status[hi.status]; }
      if (hi.close) { close_after = true; break; }
    }
    if (off) p.rbuf.erase(0, off);
    // "Connection: close" (e.g. nginx's keepalive_requests, default 1000): the
    // pipelined requests behind it were never processed; send them again.
    if (close_after) pub_lost(p, "server closed keep-alive");
  }

  // The connection is gone: requests it did not answer go back into the retry
  // queue (in seq order) and the connection is re-established.
  void pub_lost(publisher& p, const char* why) {
    if (rs_.finished) return;
    (void)why;
    std::vector<uint64_t> back(p.outstanding.begin(), p.outstanding.end());
    inflight_ -= std::min<uint64_t>(inflight_, back.size());
    p.outstanding.clear();
    retry_.insert(retry_.end(), back.begin(), back.end());
    std::sort(retry_.begin(), retry_.end());
    asio::error_code ig;
    p.sock.close(ig);
    p.connected = false;
    ++pub_reconnects;
    pub_connect(p);
  }

  void maybe_publish_done() {
    if (publish_done_ || rs_.sent < opt_.count || inflight_ > 0 || !retry_.empty()) return;
    publish_done_ = true;
    if (!t_last_ack) t_last_ack = now_ns();
    pub_timer_.cancel();
    on_done_();
  }


  asio::io_context& io_;
  const options& opt_;
  run_state& rs_;
  std::function<void()> on_started_, on_done_;
  asio::steady_timer pub_timer_;
  url url_;
  std::vector<std::unique_ptr<publisher>> pubs_;
  bool publish_done_ = false;
  uint64_t inflight_ = 0;
  uint32_t rr_ = 0, pub_connecting_ = 0;
  std::deque<uint64_t> retry_;  // seqs the server never answered (closed keep-alive): sent again
  std::string padding_;
};

}  // namespace sse_fanout
