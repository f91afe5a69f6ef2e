// What every crier WebSocket connection shares, whatever it speaks on top: the read loop and
// frame parser, permessage-deflate, one write in flight, control frames ahead of data,
// ping/pong liveness and the close handshake. A protocol (raw topic stream, the /ws JSON
// protocol) derives from it, handles complete messages and fills the write batch from its
// subscriptions.
#pragma once

#include <crier/core/hub.hpp>
#include <crier/detail/gather.hpp>
#include <crier/detail/utf8.hpp>
#include <crier/detail/ws/deflate.hpp>
#include <crier/detail/ws/frame_parser.hpp>
#include <crier/detail/ws/frame_writer.hpp>
#include <crier/http/exchange.hpp>
#include <crier/http/raw_stream.hpp>
#include <crier/transport/stream_session.hpp>
#include <crier/transport/websocket_handshake.hpp>

#include <array>
#include <optional>

namespace crier {

namespace detail {
// Cache slots of one wire encoding: the plain frame, and a compressed one per window size a
// peer may have asked for (allocated on first use).
class ws_format_slots {
 public:
  std::size_t plain() const noexcept { return plain_; }
  std::size_t deflated(int window_bits) {
    auto& s = deflated_[static_cast<std::size_t>(window_bits - 8)];
    if (s == 0) s = allocate_format_slot();
    return s;
  }

 private:
  std::size_t plain_ = allocate_format_slot();
  std::array<std::size_t, 8> deflated_{};  // window bits 8..15
};

// Broadcast frames compressed, process-wide: once per message and window size, however many
// subscribers (crier_websocket_compressed_total).
inline std::atomic<std::uint64_t>& ws_compressed_total() noexcept {
  static std::atomic<std::uint64_t> n{0};
  return n;
}
}  // namespace detail

template <class Executor>
class websocket_session_base : public subscriber,
                               public stream_base,
                               public std::enable_shared_from_this<websocket_session_base<Executor>> {
 public:
  using hub_type = basic_hub<Executor>;
  using done_fn = std::function<void(websocket_session_base*)>;

  websocket_session_base(hub_type& hub, const websocket_options& o, std::optional<detail::ws::deflate_agreement> d,
                         done_fn done)
      : hub_(hub),
        opts_(o),
        parser_({.max_message_size = o.max_message_bytes, .permessage_deflate = d.has_value()}),
        deflate_(d),
        done_(std::move(done)) {}

  // Answers 101 and takes the connection over.
  void accept(std::shared_ptr<http::exchange> ex, http::response head) {
    std::weak_ptr<websocket_session_base> weak = this->shared_from_this();
    ex->upgrade(std::move(head), [weak](std::error_code ec, std::shared_ptr<http::raw_stream> raw) {
      auto self = weak.lock();
      if (!self) return;
      if (ec) return self->finished();
      self->raw_ = std::move(raw);
      self->raw_->on_stop([weak] {
        if (auto s = weak.lock()) s->close_with(detail::ws::close_code::going_away, "server stopping");
      });
      self->rbuf_ = self->raw_->take_leftover();
      self->parse();
      self->read();
      self->write_more();
    });
  }

  void on_ready() override {
    if (closing_) return;
    if (auto e = subscription_error())
      return close_with(e == errc::queue_overflow ? detail::ws::close_code::try_again_later
                                                   : detail::ws::close_code::going_away,
                        e.message());
    if (!writing_) write_more();
  }

  // Every heartbeat: cut a stuck writer; end a close handshake the peer never answered (one
  // period of grace); close a peer that did not answer the last ping with anything; ping an
  // idle connection.
  void tick(std::chrono::steady_clock::time_point stalled_before) override {
    if (!raw_) return;
    if (writing_ && write_started_ < stalled_before) return kill();
    if (closing_ && close_ticks_++ > 0) return kill();
    if (awaiting_pong_ && !heard_since_tick_) return kill();
    awaiting_pong_ = false;
    if (!writing_ && !wrote_since_tick_ && !closing_) {
      control_.push_back(detail::ws::make_ping({}));
      awaiting_pong_ = true;
    }
    wrote_since_tick_ = heard_since_tick_ = false;
    if (!writing_) write_more();
  }
  void end() override { close_with(detail::ws::close_code::going_away, "server stopping"); }
  void abandon() override {
    done_ = nullptr;
    kill();
  }

 protected:
  // A complete, inflated, validated data message from the peer.
  virtual void on_message(detail::ws::opcode op, std::string& payload) = 0;
  // Appends queued data frames (at most up to `limit` buffers in the batch).
  virtual void fill(detail::gather_batch& batch, std::size_t limit) = 0;
  // The error that ended a subscription (queue overflow, hub stopped), if any.
  virtual std::error_code subscription_error() const = 0;
  // Closing: subscriptions end now, nothing more is sent after the close frame.
  virtual void drop_subscriptions() = 0;

  // A frame for `m`, cached on the message per encoding (and per compression window): the
  // payload is built by encode(m, out) -> is_text, compressed once when negotiated and at
  // least deflate.min_size bytes.
  template <class Encode>
  const frame_ptr& data_frame(const message& m, detail::ws_format_slots& slots, Encode&& encode) {
    if (deflate_ && m.payload().size() >= opts_.deflate.min_size) {
      int bits = deflate_->server_max_window_bits;
      return m.frame(slots.deflated(bits), [&](const message& msg) {
        std::string payload;
        bool text = encode(msg, payload);
        auto z = detail::ws::deflate_message(payload, bits, opts_.deflate.mem_level, opts_.deflate.level);
        detail::ws_compressed_total().fetch_add(1, std::memory_order_relaxed);
        return detail::ws::make_data_frame(z, text, true);
      });
    }
    return m.frame(slots.plain(), [&](const message& msg) {
      std::string payload;
      bool text = encode(msg, payload);
      return detail::ws::make_data_frame(payload, text);
    });
  }

  // A per-connection data frame (a reply, an echo), compressed like broadcasts.
  std::string own_frame(std::string_view payload, bool text) const {
    if (deflate_ && payload.size() >= opts_.deflate.min_size)
      return detail::ws::make_data_frame(detail::ws::deflate_message(payload, deflate_->server_max_window_bits,
                                                                     opts_.deflate.mem_level, opts_.deflate.level),
                                         text, true);
    return detail::ws::make_data_frame(payload, text);
  }

  // Queues a frame of this connection's own ahead of broadcast data. While replies pile up
  // (a peer that sends faster than it reads), reading pauses: no unbounded queue.
  void reply(std::string frame) {
    if (closing_) return;
    reply_bytes_ += frame.size();
    control_.push_back(std::move(frame));
    if (!writing_) write_more();
  }

  // Starts the close handshake (or answers the peer's): one close frame, then no data.
  void close_with(std::uint16_t code, std::string_view reason) {
    if (closing_) return;
    closing_ = true;
    drop_subscriptions();
    control_.push_back(detail::ws::make_close_frame(code, reason));
    if (!writing_) write_more();
  }

  bool closing() const noexcept { return closing_; }
  hub_type& hub() noexcept { return hub_; }
  const websocket_options& options() const noexcept { return opts_; }

 private:
  // An idle connection waits with a small buffer; bigger reads only while data is flowing.
  static constexpr std::size_t idle_read = 256;
  static constexpr std::size_t busy_read = 16 * 1024;
  static constexpr std::size_t max_pending_replies = 1024 * 1024;

  void read() {
    if (!raw_ || read_closed_ || reading_ || parsing_) return;  // parse() reads again when done
    if (reply_bytes_ + replies_inflight_ > max_pending_replies) return;  // resumed after the write
    auto old = rbuf_.size();
    auto chunk = old == 0 && !parser_.in_message() ? idle_read : busy_read;
    rbuf_.resize(old + chunk);
    reading_ = true;
    raw_->async_read_some(asio::buffer(rbuf_.data() + old, chunk),
                          [self = this->shared_from_this(), old](std::error_code ec, std::size_t n) {
                            self->reading_ = false;
                            self->rbuf_.resize(old + n);
                            if (ec) return self->kill();
                            self->parse();
                            self->read();
                          });
  }

  void parse() {
    parsing_ = true;
    std::size_t pos = 0;
    while (pos < rbuf_.size() && !read_closed_) {
      auto ev = parser_.next(rbuf_.data() + pos, rbuf_.size() - pos);
      pos += ev.consumed;
      heard_since_tick_ = true;
      using kind = detail::ws::frame_event::kind;
      switch (ev.type) {
        case kind::need_more: break;
        case kind::data: data_piece(ev); break;
        case kind::ping: reply(detail::ws::make_pong(ev.payload)); break;
        case kind::pong: break;
        case kind::close:
          read_closed_ = true;
          if (closing_) {  // the answer to our close: done once our frame is out
            if (!writing_) {
              parsing_ = false;
              return kill();
            }
            break;
          }
          close_with(ev.close_code == detail::ws::close_code::no_status ? detail::ws::close_code::normal
                                                                          : ev.close_code,
                     "");
          break;
        case kind::error:
          fail(ev.close_code, ev.payload);
          break;
      }
      if (ev.type == kind::need_more) break;
    }
    rbuf_.erase(0, pos);
    if (rbuf_.empty() && rbuf_.capacity() > idle_read) rbuf_ = std::string();  // back to small when idle
    parsing_ = false;
    if (!writing_) write_more();
  }

  void data_piece(const detail::ws::frame_event& ev) {
    if (ev.message_begin) {
      message_op_ = ev.op;
      message_compressed_ = ev.compressed;
      message_utf8_.reset();
    }
    if (!message_compressed_) {
      message_.append(ev.payload);  // the parser validated text already
    } else {
      if (!inflater_)
        inflater_.emplace(deflate_->client_max_window_bits, deflate_->client_no_context_takeover, opts_.max_message_bytes);
      auto before = message_.size();
      auto st = inflater_->feed(ev.payload, message_);
      if (st == detail::ws::inflate_status::ok && ev.message_end) st = inflater_->finish(message_);
      if (st == detail::ws::inflate_status::too_big) return fail(detail::ws::close_code::message_too_big, "message too big");
      if (st != detail::ws::inflate_status::ok)
        return fail(detail::ws::close_code::invalid_payload, "invalid compressed data");
      if (message_op_ == detail::ws::opcode::text &&
          (!message_utf8_.feed(std::string_view(message_).substr(before)) ||
           (ev.message_end && !message_utf8_.complete())))
        return fail(detail::ws::close_code::invalid_payload, "invalid UTF-8 in text message");
    }
    if (!ev.message_end) return;
    on_message(message_op_, message_);
    message_.clear();
    if (message_.capacity() > busy_read) message_ = std::string();
  }

  void fail(std::uint16_t code, std::string_view reason) {
    read_closed_ = true;
    close_with(code, reason);
  }

  // One write in flight. A batch goes out with a direct non-blocking write first; only what
  // the socket does not take at once waits for an asynchronous write.
  void write_more() {
    if (!raw_ || writing_) return;
    auto self = this->shared_from_this();  // kill() may drop the server's reference
    for (;;) {
      for (auto& c : control_) batch_.add(std::move(c));
      replies_inflight_ += std::exchange(reply_bytes_, 0);
      bool close_sent = closing_ && !control_.empty();
      control_.clear();
      if (!closing_) fill(batch_, 256);
      if (batch_.empty()) return;
      wrote_since_tick_ = true;
      std::error_code ec;
      batch_.consume(raw_->try_write(batch_.buffers(), ec));
      if (ec) {
        batch_.clear();
        return kill();
      }
      if (!batch_.empty()) return write_async(close_sent);
      batch_.clear();
      if (!written(close_sent)) return;
    }
  }

  void write_async(bool close_sent) {
    writing_ = true;
    write_started_ = std::chrono::steady_clock::now();
    raw_->async_write(batch_.buffers(), [self = this->shared_from_this(), close_sent](std::error_code ec, std::size_t) {
      self->writing_ = false;
      self->batch_.clear();
      if (ec) return self->kill();
      if (self->written(close_sent)) self->write_more();
    });
  }

  // A whole batch is out. False when the connection is done sending.
  bool written(bool close_sent) {
    if (close_sent || (closing_ && control_.empty())) {
      // Our close frame is out: stop sending; the client closes the TCP connection.
      raw_->shutdown_send();
      if (read_closed_) kill();
      return false;
    }
    if (std::exchange(replies_inflight_, 0) != 0) read();
    return true;
  }

  void kill() {
    drop_subscriptions();
    if (auto raw = std::move(raw_)) raw->close();
    finished();
  }
  void finished() {
    if (auto done = std::move(done_)) done(this);
  }

  hub_type& hub_;
  const websocket_options& opts_;
  detail::ws::frame_parser parser_;
  std::optional<detail::ws::deflate_agreement> deflate_;
  std::optional<detail::ws::inflater> inflater_;  // created on the first compressed message
  done_fn done_;
  std::shared_ptr<http::raw_stream> raw_;
  std::string rbuf_;
  std::string message_;  // the data message being received
  detail::ws::opcode message_op_ = detail::ws::opcode::text;
  bool message_compressed_ = false;
  detail::utf8_validator message_utf8_;  // inflated text is validated here, piece by piece
  std::vector<std::string> control_;     // pongs, pings, replies, the close frame: ahead of data
  std::size_t reply_bytes_ = 0, replies_inflight_ = 0;
  detail::gather_batch batch_;  // the write in flight, or the next one
  std::chrono::steady_clock::time_point write_started_{};
  bool writing_ = false;
  bool reading_ = false;
  bool parsing_ = false;
  bool closing_ = false;
  bool read_closed_ = false;
  bool wrote_since_tick_ = false;
  bool heard_since_tick_ = false;
  bool awaiting_pong_ = false;
  unsigned close_ticks_ = 0;
};

}  // namespace crier
