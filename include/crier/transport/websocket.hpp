// WebSocket on /topics/{topics}: a stream of the topics' payloads, raw (UTF-8 payloads as text
// frames unless their content type is a binary one; anything else as binary frames), encoded
// once per message and shared by every
// subscriber. Text or binary messages from the client publish to the topic (single-topic
// connections). Gap notices arrive as JSON text frames {"type":"gap",...} (docs/protocol-http.md).
#pragma once

#include <crier/core/envelope.hpp>
#include <crier/core/format.hpp>
#include <crier/core/hub.hpp>
#include <crier/detail/gather.hpp>
#include <crier/detail/ws/frame_parser.hpp>
#include <crier/detail/ws/frame_writer.hpp>
#include <crier/http/exchange.hpp>
#include <crier/http/raw_stream.hpp>
#include <crier/transport/stream_session.hpp>
#include <crier/transport/websocket_handshake.hpp>

#include <array>
#include <deque>

namespace crier {

namespace detail {
inline std::size_t ws_raw_slot() noexcept {
  static const std::size_t slot = allocate_format_slot();
  return slot;
}
}  // namespace detail

// Content types that mean bytes even when they happen to be valid UTF-8: binary frames.
inline bool binary_content_type(std::string_view ct) noexcept {
  for (std::string_view b : {"application/octet-stream", "image/", "audio/", "video/", "application/protobuf",
                             "application/x-protobuf", "application/cbor", "application/msgpack"})
    if (ct.starts_with(b)) return true;
  return false;
}

template <class Executor>
class websocket_session final : public subscriber,
                                public stream_base,
                                public std::enable_shared_from_this<websocket_session<Executor>> {
 public:
  using hub_type = basic_hub<Executor>;
  using done_fn = std::function<void(websocket_session*)>;

  websocket_session(hub_type& hub, const websocket_options& o, done_fn done)
      : hub_(hub), opts_(o), parser_({.max_message_size = o.max_message_bytes}), done_(std::move(done)) {}

  // Subscribes, then answers 101 and takes the connection over. False (with ec) when the hub
  // refused the subscription; the caller answers the error.
  bool start(std::shared_ptr<http::exchange> ex, http::response head, subscribe_request req, std::error_code& ec) {
    if (req.topics.size() == 1 && !is_pattern(req.topics.front())) publish_topic_ = req.topics.front();
    sub_ = hub_.subscribe(req, *this, ec);
    if (ec) return false;
    std::weak_ptr<websocket_session> weak = this->shared_from_this();
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
    return true;
  }

  void on_ready() override {
    if (sub_ && sub_->error() && !closing_)
      return close_with(sub_->error() == errc::queue_overflow ? detail::ws::close_code::try_again_later
                                                               : detail::ws::close_code::going_away,
                        sub_->error().message());
    if (!writing_) write_more();
  }

  // Every heartbeat: cut a stuck writer; end a close handshake the peer never answered (one
  // period of grace); close a peer that did not answer the last ping with anything (1006 for it);
  // ping an idle connection.
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

 private:
  // An idle connection waits with a small buffer; bigger reads only while data is flowing.
  static constexpr std::size_t idle_read = 256;
  static constexpr std::size_t busy_read = 16 * 1024;

  void read() {
    if (!raw_ || read_closed_ || reading_) return;
    if (echo_bytes_ + echo_inflight_ > busy_read * 64) return;  // echo mode: wait for the echoes to drain
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
    std::size_t pos = 0;
    while (pos < rbuf_.size() && !read_closed_) {
      auto ev = parser_.next(rbuf_.data() + pos, rbuf_.size() - pos);
      pos += ev.consumed;
      heard_since_tick_ = true;
      using kind = detail::ws::frame_event::kind;
      switch (ev.type) {
        case kind::need_more: break;
        case kind::data:
          message_.append(ev.payload);
          if (ev.message_begin) message_op_ = ev.op;
          if (ev.message_end) {
            if (opts_.echo) {
              control_.push_back(detail::ws::make_frame(message_op_, message_));
              echo_bytes_ += message_.size();
            } else if (!publish_topic_.empty()) hub_.publish(publish_topic_, std::move(message_));
            message_.clear();
          }
          break;
        case kind::ping: control_.push_back(detail::ws::make_pong(ev.payload)); break;
        case kind::pong: break;
        case kind::close:
          read_closed_ = true;
          if (closing_) {  // the answer to our close: done once our frame is out
            if (!writing_) return kill();
            break;
          }
          close_with(ev.close_code == detail::ws::close_code::no_status ? detail::ws::close_code::normal
                                                                          : ev.close_code, "");
          break;
        case kind::error:
          read_closed_ = true;
          close_with(ev.close_code, ev.payload);
          break;
      }
      if (ev.type == kind::need_more) break;
    }
    rbuf_.erase(0, pos);
    if (rbuf_.empty() && rbuf_.capacity() > idle_read) rbuf_ = std::string();  // back to small when idle
    if (!writing_) write_more();
  }

  // Starts the close handshake (or answers the client's): one close frame, then no data.
  void close_with(std::uint16_t code, std::string_view reason) {
    if (closing_) return;
    closing_ = true;
    sub_.reset();
    control_.push_back(detail::ws::make_close_frame(code, reason));
    if (!writing_) write_more();
  }

  void write_more() {
    if (!raw_ || writing_) return;
    for (auto& c : control_) batch_.add(std::move(c));
    echo_inflight_ += std::exchange(echo_bytes_, 0);
    bool close_sent = closing_ && !control_.empty();
    control_.clear();
    if (!closing_ && sub_) {
      auto& s = sub_.state();
      while (batch_.size() < 256) {
        auto it = s.next();
        if (!it) break;
        if (it.gap) {
          std::string env;
          append_envelope(env, *it.gap);
          batch_.add(detail::ws::make_data_frame(env, true));
          continue;
        }
        batch_.add(it.msg->frame(detail::ws_raw_slot(), [](const message& m) {
          return detail::ws::make_data_frame(m.payload(), m.is_text() && !binary_content_type(m.content_type()));
        }));
      }
    }
    if (batch_.empty()) return;
    writing_ = true;
    wrote_since_tick_ = true;
    write_started_ = std::chrono::steady_clock::now();
    raw_->async_write(batch_.buffers(), [self = this->shared_from_this(), close_sent](std::error_code ec, std::size_t) {
      self->writing_ = false;
      self->batch_.clear();
      if (ec) return self->kill();
      if (self->echo_inflight_ != 0) {
        self->echo_inflight_ = 0;
        self->read();
      }
      if (close_sent || (self->closing_ && self->control_.empty())) {
        // Our close frame is out: stop sending; the client closes the TCP connection.
        self->raw_->shutdown_send();
        if (self->read_closed_) return self->kill();
        return;
      }
      self->write_more();
    });
  }

  void kill() {
    sub_.reset();
    if (auto raw = std::move(raw_)) raw->close();
    finished();
  }
  void finished() {
    if (auto done = std::move(done_)) done(this);
  }

  hub_type& hub_;
  const websocket_options& opts_;
  detail::ws::frame_parser parser_;
  done_fn done_;
  typename hub_type::subscription sub_;
  std::shared_ptr<http::raw_stream> raw_;
  std::string publish_topic_;
  std::string rbuf_;
  std::string message_;
  detail::ws::opcode message_op_ = detail::ws::opcode::text;
  std::size_t echo_bytes_ = 0, echo_inflight_ = 0;  // echo mode: bytes queued, and being written
  std::vector<std::string> control_;  // pongs, pings, the close frame: ahead of data
  detail::gather_batch batch_;  // the write in flight, or the next one
  std::chrono::steady_clock::time_point write_started_{};
  bool writing_ = false;
  bool reading_ = false;
  bool closing_ = false;
  bool read_closed_ = false;
  bool wrote_since_tick_ = false;
  bool heard_since_tick_ = false;
  bool awaiting_pong_ = false;
  unsigned close_ticks_ = 0;
};

}  // namespace crier
