// One server-side HTTP/1.1 connection, generic over the stream (tcp socket now, TLS later).
// Everything runs on the stream's executor (the server's); no strand of its own.
#pragma once

#include <crier/detail/asio.hpp>

#include <array>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crier/error.hpp"
#include "crier/http/detail/exchange_impl.hpp"
#include "crier/http/detail/parser.hpp"
#include "crier/http/detail/server_core.hpp"
#include "crier/http/detail/upgrade.hpp"
#include "crier/http/exchange.hpp"

namespace crier::http {

template <class Stream>
class connection final : public detail::connection_base, public std::enable_shared_from_this<connection<Stream>> {
  using xptr = detail::exchange_impl<Stream>*;
  enum class phase : std::uint8_t { none, wait_first, idle, head, body, linger };
  enum class wkind : std::uint8_t { none, interim, response, head, chunk, end, fatal };
  enum class xstate : std::uint8_t { none, pending, responding, streaming, finishing, upgrading };
  static constexpr std::size_t initial_buffer = 2048;
  static constexpr std::size_t max_buffer = 64 * 1024;
  static constexpr std::size_t max_linger_bytes = 256 * 1024;

 public:
  connection(Stream s, std::shared_ptr<detail::server_core> core)
      : stream_(std::move(s)), timer_(stream_.get_executor()), core_(std::move(core)) {}

  asio::any_io_executor executor() { return stream_.get_executor(); }
  Stream& stream() { return stream_; }

  // Registers and starts reading; `initial` are bytes the application already read.
  void start(std::string_view initial = {}, bool reject = false) {
    core_->add(this);
    if (reject) {
      set_fatal(503, "too_many_connections", "the server is at its connection limit");
    } else if (!initial.empty()) {
      ensure_space(initial.size());
      std::memcpy(rbuf_.get() + rend_, initial.data(), initial.size());
      rend_ += initial.size();
    }
    pump();
  }

  void begin_stop() override {
    if (closed_ || lingering_) return;
    close_after_ = true;
    if (xs_ != xstate::none) {
      if (active_) active_->notify_close(crier::errc::server_stopping);
      return;
    }
    if (writing_ != wkind::none || fatal_) return;  // the pending write ends in a close
    close_now({});
  }
  void force_close() override { close_now(asio::error::operation_aborted); }
  std::size_t footprint() const override {
    return sizeof(*this) + rcap_ + (parser_ ? sizeof(detail::parser) : 0) + queue_.capacity() * sizeof(void*) +
           wstr_.capacity() + wbody_.capacity() + wbufs_.capacity() * sizeof(asio::const_buffer) +
           (fatal_ ? fatal_->capacity() : 0);
  }

  // ---- exchange entry points (all on the executor) ----
  void x_respond(xptr x, response r) {
    if (closed_ || x != active_ || xs_ != xstate::pending) return;
    auto keep = this->shared_from_this();
    const request& rq = x->req();
    bool close = decide_close(rq, r);
    wstr_.clear();
    detail::append_head(wstr_, r);
    bool body = detail::status_has_body(r.status);
    if (body) {
      wstr_ += "Content-Length: ";
      wstr_ += std::to_string(r.body.size());
      wstr_ += "\r\n";
    }
    if (close) wstr_ += "Connection: close\r\n";
    else if (rq.version() == 10) wstr_ += "Connection: keep-alive\r\n";
    wstr_ += "\r\n";
    wbody_ = (body && rq.method() != "HEAD") ? std::move(r.body) : std::string();
    close_after_ = close;
    xs_ = xstate::responding;
    start_write(wkind::response);
  }

  void x_start_stream(xptr x, response head) {
    if (closed_ || x != active_ || xs_ != xstate::pending) return;
    auto keep = this->shared_from_this();
    const request& rq = x->req();
    chunked_ = rq.version() == 11;
    bool close = decide_close(rq, head) || !chunked_;  // HTTP/1.0: the body ends at close
    wstr_.clear();
    detail::append_head(wstr_, head);
    if (chunked_) wstr_ += "Transfer-Encoding: chunked\r\n";
    if (close) wstr_ += "Connection: close\r\n";
    wstr_ += "\r\n";
    close_after_ = close;
    xs_ = xstate::streaming;
    // A long-lived stream: drop parser and buffer, keep only a tiny read to notice the peer closing.
    if (queue_.empty() && rbeg_ == rend_ && !(parser_ && parser_->started())) {
      discarding_ = true;
      release_buffers();
    }
    start_write(wkind::head);
  }

  void x_write(xptr x, std::span<const asio::const_buffer> b, std::function<void(std::error_code)> cb) {
    if (closed_ || x != active_ || xs_ != xstate::streaming || wcb_) {
      std::error_code ec = closed_ ? std::error_code(asio::error::not_connected) : std::error_code(asio::error::in_progress);
      asio::post(executor(), [cb = std::move(cb), ec] { cb(ec); });
      return;
    }
    std::size_t total = asio::buffer_size(b);
    if (total == 0) {  // an empty chunk would terminate the body
      asio::post(executor(), [cb = std::move(cb)] { cb({}); });
      return;
    }
    wbufs_.clear();
    if (chunked_) {
      static constexpr char hex[] = "0123456789abcdef";
      char tmp[20];
      int n = 0;
      for (std::size_t v = total; v; v >>= 4) tmp[n++] = hex[v & 0xF];
      int k = 0;
      while (n) chunk_hdr_[k++] = tmp[--n];
      chunk_hdr_[k++] = '\r';
      chunk_hdr_[k++] = '\n';
      wbufs_.push_back(asio::buffer(chunk_hdr_, static_cast<std::size_t>(k)));
    }
    wbufs_.insert(wbufs_.end(), b.begin(), b.end());
    if (chunked_) wbufs_.push_back(asio::buffer("\r\n", 2));
    wcb_ = std::move(cb);
    wbytes_ = total;
    if (writing_ == wkind::none) start_write(wkind::chunk);
  }

  void x_finish(xptr x) {
    if (closed_ || x != active_ || xs_ != xstate::streaming) return;
    auto keep = this->shared_from_this();
    xs_ = xstate::finishing;
    if (writing_ == wkind::none && !wcb_) start_end();
  }

  void x_close(xptr x) {
    if (x != active_) return;
    auto keep = this->shared_from_this();
    close_now({});
  }
  // Hand-over (detail/upgrade.hpp): wait for the in-flight read (cancelled) or 100-continue write.
  void x_upgrade(xptr x, response head, detail::upgrade_callback cb) {
    std::error_code ec;
    if (closed_) ec = asio::error::not_connected;
    else if (x != active_ || xs_ != xstate::pending) ec = asio::error::in_progress;
    else if (!queue_.empty() || fatal_ || (parser_ && parser_->started())) ec = asio::error::operation_not_supported;
    if (ec) return asio::post(executor(), [cb = std::move(cb), ec] { cb(ec, nullptr); });
    auto keep = this->shared_from_this();
    xs_ = xstate::upgrading;
    upgrade_ = std::make_unique<detail::upgrade_request>(detail::upgrade_request{std::move(head), std::move(cb)});
    std::error_code ig;
    if (reading_) stream_.lowest_layer().cancel(ig);
    try_handover();
  }
  bool x_open(const void*) const { return !closed_; }
  std::size_t x_queued(const void* x) const { return x == active_ ? wbytes_ : 0; }

  // The handler dropped its last reference.
  void x_destroyed(xptr x) {
    if (x != active_) return;
    active_ = nullptr;
    if (closed_) return;
    auto keep = this->shared_from_this();
    if (xs_ == xstate::pending) {
      xs_ = xstate::none;
      set_fatal(500, "internal_error", "the request was dropped without a response");
      pump();
    } else if (xs_ == xstate::streaming) {
      close_now({});  // an unfinished stream cannot be completed honestly
    }
  }

 private:
  bool decide_close(const request& rq, const response& r) const {
    if (!rq.keep_alive() || core_->stopping || close_after_ || rq.upgrade()) return true;
    if (eof_ && queue_.empty()) return true;
    for (auto& [n, v] : r.headers)
      if (detail::iequals(n, "connection") && v.find("close") != std::string::npos) return true;
    return false;
  }

  // ---- the state machine: decide what to do next after any event ----
  void pump() {
    if (in_pump_) {
      pump_again_ = true;
      return;
    }
    auto keep = this->shared_from_this();  // a handler may drop the last exchange reference
    in_pump_ = true;
    do {
      pump_again_ = false;
      pump_once();
    } while (pump_again_ && !closed_);
    in_pump_ = false;
  }

  void pump_once() {
    if (closed_ || lingering_) return;
    parse_buffered();
    if (xs_ == xstate::none && writing_ == wkind::none) {
      if (!queue_.empty() && !close_after_) {
        dispatch();
        pump_again_ = true;
        return;
      }
      if (fatal_) {
        wstr_ = std::move(*fatal_);
        fatal_.reset();
        start_write(wkind::fatal);
        return;
      }
      if (close_after_ || eof_ || core_->stopping) {
        begin_linger();
        return;
      }
      if (parser_ && parser_->continue_wanted()) {
        parser_->clear_continue();
        start_write(wkind::interim);
      }
    }
    update_timer();
    do_read();
  }

  void parse_buffered() {
    while (xs_ != xstate::upgrading && !fatal_ && !discarding_ && rbeg_ < rend_ && queue_.size() < core_->opts.max_pipelined &&
           !(parser_ && parser_->upgraded())) {
      if (!parser_) parser_ = std::make_unique<detail::parser>(core_->opts);
      auto r = parser_->feed(rbuf_.get() + rbeg_, rend_ - rbeg_);
      rbeg_ += r.consumed;
      if (r.ev == detail::parser::event::error) {
        auto& e = parser_->error();
        set_fatal(e.status, e.code, e.message);
        break;
      }
      if (r.ev == detail::parser::event::message) queue_.push_back(parser_->take());
      else break;
    }
    if (rbeg_ == rend_) rbeg_ = rend_ = 0;
  }

  void dispatch() {
    auto x = std::make_shared<detail::exchange_impl<Stream>>(this->shared_from_this(), std::move(queue_.front()));
    queue_.erase(queue_.begin());
    active_ = x.get();
    xs_ = xstate::pending;
    any_request_ = true;
    if (eof_) x->notify_close(asio::error::eof);  // the client half-closed; it may still read
    update_timer();
    core_->h(std::move(x));
  }

  void set_fatal(unsigned status, std::string_view code, std::string_view message) {
    response r = response::error(status, code, message);
    auto s = std::make_unique<std::string>();
    detail::append_head(*s, r);
    *s += "Content-Length: " + std::to_string(r.body.size()) + "\r\nConnection: close\r\n\r\n";
    *s += r.body;
    fatal_ = std::move(s);  // requests queued before the bad one are still answered first
    parser_.reset();  // nothing after a framing error can be trusted
    rbeg_ = rend_ = 0;
  }

  // ---- reading ----
  void ensure_space(std::size_t want) {
    if (!rbuf_) {
      rcap_ = std::max(initial_buffer, want);
      rbuf_ = std::make_unique<char[]>(rcap_);
      rbeg_ = rend_ = 0;
    }
    if (rcap_ - rend_ >= want) return;
    if (rbeg_ > 0) {
      std::memmove(rbuf_.get(), rbuf_.get() + rbeg_, rend_ - rbeg_);
      rend_ -= rbeg_;
      rbeg_ = 0;
      if (rcap_ - rend_ >= want) return;
    }
    std::size_t cap = std::max(rcap_ * 2, rend_ + want);
    auto nb = std::make_unique<char[]>(cap);
    std::memcpy(nb.get(), rbuf_.get(), rend_);
    rbuf_ = std::move(nb);
    rcap_ = cap;
  }
  void release_buffers() {
    if (reading_ && !read_tiny_) return;  // the kernel may still be writing into rbuf_
    if (rbeg_ == rend_) {
      rbuf_.reset();
      rcap_ = rbeg_ = rend_ = 0;
    }
    if (parser_ && !parser_->started() && !parser_->upgraded()) parser_.reset();
  }

  void do_read() {
    if (reading_ || closed_ || eof_ || xs_ == xstate::upgrading) return;
    bool discard = fatal_ || discarding_ || lingering_;
    if (!discard && (queue_.size() >= core_->opts.max_pipelined || (parser_ && parser_->upgraded()))) return;
    bool tiny = discard || (rbeg_ == rend_ && !(parser_ && parser_->started()));
    if (tiny) release_buffers();
    reading_ = true;
    read_tiny_ = tiny;
    auto self = this->shared_from_this();
    auto done = [self](std::error_code ec, std::size_t n) { self->on_read(ec, n); };
    if (tiny) {
      stream_.async_read_some(asio::buffer(tiny_), std::move(done));
    } else {
      // A read that filled the buffer suggests a large body: grow towards max_buffer.
      std::size_t want = grow_ ? std::min(rcap_ * 2, max_buffer) : 512;
      grow_ = false;
      ensure_space(want);
      stream_.async_read_some(asio::buffer(rbuf_.get() + rend_, rcap_ - rend_), std::move(done));
    }
  }

  void on_read(std::error_code ec, std::size_t n) {
    reading_ = false;
    if (closed_) return;
    if (xs_ == xstate::upgrading) {  // keep what arrived: it belongs to the new protocol
      if (ec && ec != asio::error::operation_aborted && ec != asio::error::eof) return close_now(ec);
      if (!ec && read_tiny_) {
        ensure_space(n);
        std::memcpy(rbuf_.get() + rend_, tiny_.data(), n);
      }
      if (!ec) rend_ += n;
      return try_handover();
    }
    if (ec) return on_read_error(ec);
    if (lingering_ || fatal_ || discarding_) {
      discarded_ += n;
      if (discarding_ && discarded_ > core_->opts.max_stream_input) return close_now(crier::errc::bad_request);
      if (discarded_ > max_linger_bytes) return close_now({});
      return do_read();
    }
    if (read_tiny_) {
      ensure_space(n);
      std::memcpy(rbuf_.get() + rend_, tiny_.data(), n);
    }
    grow_ = !read_tiny_ && rend_ + n == rcap_;
    rend_ += n;
    pump();
  }

  void on_read_error(std::error_code ec) {
    if (lingering_ || ec != asio::error::eof) return close_now(ec);
    eof_ = true;
    if (xs_ == xstate::streaming || xs_ == xstate::finishing) return close_now(ec);
    if (active_ && xs_ != xstate::none) active_->notify_close(ec);  // it may still answer a half-closed peer
    pump();
  }

  // ---- timers: one per connection, re-armed only when the phase changes ----
  void update_timer() {
    phase p;
    if (xs_ != xstate::none || !queue_.empty() || writing_ != wkind::none || fatal_) p = phase::none;
    else if (parser_ && parser_->in_body()) p = phase::body;
    else if ((parser_ && parser_->started()) || rbeg_ < rend_) p = phase::head;
    else p = any_request_ ? phase::idle : phase::wait_first;
    set_phase(p);
  }
  void set_phase(phase p) {
    if (p == phase_) return;
    bool keep_deadline = phase_ == phase::wait_first && p == phase::head;  // slowloris: from connect
    phase_ = p;
    if (keep_deadline) return;
    ++timer_gen_;
    if (p == phase::none) {
      timer_.cancel();
      return;
    }
    auto& o = core_->opts;
    auto d = p == phase::body ? o.body_timeout
           : p == phase::idle ? o.idle_timeout
           : p == phase::linger ? o.linger_timeout
                                : o.header_timeout;
    timer_.expires_after(d);
    timer_.async_wait([self = this->shared_from_this(), gen = timer_gen_](std::error_code ec) {
      if (!ec && gen == self->timer_gen_ && !self->closed_) self->on_timeout();
    });
  }
  void on_timeout() {
    switch (phase_) {
      case phase::head:
        set_fatal(408, "header_timeout", "request head not received in time");
        break;
      case phase::body:
        set_fatal(408, "body_timeout", "request body not received in time");
        break;
      default:
        return close_now({});  // idle, never spoke, or lingering: close silently
    }
    phase_ = phase::none;
    pump();
  }

  // ---- writing: one write in flight ----
  void start_write(wkind k) {
    writing_ = k;
    update_timer();
    auto self = this->shared_from_this();
    auto done = [self, k](std::error_code ec, std::size_t) { self->on_write(k, ec); };
    static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
    static constexpr std::string_view last_chunk = "0\r\n\r\n";
    switch (k) {
      case wkind::response: {
        std::array<asio::const_buffer, 2> b{asio::buffer(wstr_), asio::buffer(wbody_)};
        // A direct write first: a pipelined burst (e.g. publishes) is answered and the next
        // request parsed in the same turn, instead of one request per event-loop round.
        std::size_t n = write_now(b);
        if (n == b[0].size() + b[1].size()) return on_write(k, {});
        wstr_.erase(0, std::min(n, wstr_.size()));
        if (n > b[0].size()) wbody_.erase(0, n - b[0].size());
        b = {asio::buffer(wstr_), asio::buffer(wbody_)};
        return asio::async_write(stream_, b, std::move(done));
      }
      case wkind::chunk:
        return asio::async_write(stream_, std::span<const asio::const_buffer>(wbufs_), std::move(done));
      case wkind::interim:
        return asio::async_write(stream_, asio::buffer(continue_line), std::move(done));
      case wkind::end:
        return asio::async_write(stream_, asio::buffer(last_chunk), std::move(done));
      default:
        return asio::async_write(stream_, asio::buffer(wstr_), std::move(done));
    }
  }

  // What a plain socket takes at once without blocking (0 for streams that cannot, or on error:
  // the asynchronous write that follows reports it).
  template <class Buffers>
  std::size_t write_now(const Buffers& b) {
    if constexpr (requires(Stream& st, std::error_code& e) {
                    st.non_blocking(true, e);
                    st.write_some(b, e);
                  }) {
      std::error_code ec;
      if (!stream_.non_blocking()) stream_.non_blocking(true, ec);  // sync calls only
      if (ec) return 0;
      std::size_t n = stream_.write_some(b, ec);
      return ec ? 0 : n;
    } else {
      return 0;
    }
  }

  void start_end() {
    if (chunked_) return start_write(wkind::end);
    finish_exchange();  // HTTP/1.0: the close ends the body
    pump();
  }

  void on_write(wkind k, std::error_code ec) {
    writing_ = wkind::none;
    if (k == wkind::chunk) {
      wbufs_.clear();
      wbytes_ = 0;
    }
    if (ec) {
      if (auto cb = std::exchange(wcb_, nullptr)) cb(ec);
      return close_now(ec);
    }
    if (closed_) return;
    if (xs_ == xstate::upgrading) return try_handover();
    switch (k) {
      case wkind::head:
      case wkind::chunk:
        std::string().swap(wstr_);
        if (k == wkind::chunk) {
          auto cb = std::exchange(wcb_, nullptr);
          cb({});  // may write again, finish or drop the exchange
          if (closed_ || writing_ != wkind::none) return;
        }
        if (wcb_) return start_write(wkind::chunk);
        if (xs_ == xstate::finishing) return start_end();
        return;
      case wkind::response:
      case wkind::end:
        finish_exchange();
        break;
      case wkind::fatal:
        return begin_linger();
      default:
        break;
    }
    pump();
  }

  void finish_exchange() {
    auto keep = this->shared_from_this();
    std::string().swap(wstr_);
    std::string().swap(wbody_);
    if (discarded_ > 0) close_after_ = true;  // we threw away bytes the client sent mid-stream
    discarding_ = false;
    discarded_ = 0;
    xs_ = xstate::none;
    if (active_) std::exchange(active_, nullptr)->detach();
  }

  // ---- closing ----
  // Half-close and drain the client's input for a while so our last response is not lost to a reset.
  void begin_linger() {
    if (eof_) return close_now({});
    lingering_ = true;
    std::error_code ig;
    stream_.lowest_layer().shutdown(asio::socket_base::shutdown_send, ig);
    parser_.reset();
    queue_.clear();
    rbeg_ = rend_ = 0;
    release_buffers();
    set_phase(phase::linger);
    do_read();
  }

  void try_handover() {
    if (closed_ || reading_ || writing_ != wkind::none) return;
    auto keep = this->shared_from_this();
    auto u = std::move(upgrade_);
    std::string leftover(rbuf_ ? rbuf_.get() + rbeg_ : nullptr, rend_ - rbeg_);
    auto raw = std::make_shared<detail::raw_stream_impl<Stream>>(std::move(stream_), core_, std::move(leftover));
    xs_ = xstate::none;
    if (active_) std::exchange(active_, nullptr)->detach();
    close_now({});  // stream_ is moved-from (like a new socket): closing it is a no-op; frees the rest
    raw->start(u->head, std::move(u->cb));
  }

  void close_now(std::error_code ec) {
    if (closed_) return;
    closed_ = true;
    if (auto u = std::move(upgrade_))
      asio::post(executor(), [cb = std::move(u->cb), ec = ec ? ec : asio::error::operation_aborted] { cb(ec, nullptr); });
    ++timer_gen_;
    timer_.cancel();
    std::error_code ig;
    stream_.lowest_layer().close(ig);
    if (active_ && xs_ != xstate::none && ec) active_->notify_close(ec);
    parser_.reset();
    queue_.clear();
    fatal_.reset();
    rbeg_ = rend_ = 0;
    release_buffers();
    core_->remove(this);
  }

  Stream stream_;
  asio::steady_timer timer_;
  std::shared_ptr<detail::server_core> core_;
  std::unique_ptr<detail::parser> parser_;  // only while a request is being read
  std::unique_ptr<char[]> rbuf_;            // only while a request is being read; grows on demand
  std::size_t rcap_ = 0, rbeg_ = 0, rend_ = 0;
  std::vector<std::unique_ptr<request>> queue_;  // complete requests behind the active one
  xptr active_ = nullptr;                        // the handler owns it; it clears this when destroyed
  std::unique_ptr<detail::upgrade_request> upgrade_;  // between exchange::upgrade() and the hand-over
  std::unique_ptr<std::string> fatal_;           // error response to send once earlier ones are out
  std::string wstr_, wbody_;
  std::vector<asio::const_buffer> wbufs_;
  std::function<void(std::error_code)> wcb_;
  std::size_t wbytes_ = 0;
  std::size_t discarded_ = 0;
  unsigned timer_gen_ = 0;
  std::array<char, 32> tiny_{};  // idle / streaming reads: enough to notice a close
  char chunk_hdr_[20]{};
  phase phase_ = phase::none;
  wkind writing_ = wkind::none;
  xstate xs_ = xstate::none;
  bool reading_ = false, read_tiny_ = false, grow_ = false, eof_ = false, closed_ = false, close_after_ = false;
  bool chunked_ = false, discarding_ = false, lingering_ = false, any_request_ = false;
  bool in_pump_ = false, pump_again_ = false;
};

}  // namespace crier::http
