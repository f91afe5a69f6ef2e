// A custom crier transport: a length-prefixed binary feed over plain TCP (README.md), built on
// crier's public API only (crier::basic_hub::subscribe, crier::subscriber, subscription_state,
// message::frame with a slot from crier::allocate_format_slot()).
//
//   crier::hub hub{io};
//   crier::server http{hub, {.listen = "127.0.0.1:8080"}};
//   tcp_feed::feed feed{hub, {.listen = "127.0.0.1:9000"}};
//   ...
//   feed.stop([&] { /* every connection said goodbye */ });
//
// Threading is crier's: the acceptor, every connection socket and timer run on the hub's
// strand, so connections touch subscriptions and the message frame cache without locks. One
// write in flight per connection; what queued meanwhile goes out as one gather write of shared
// frames (a message is encoded once, the same bytes go to every subscriber; gap notices, acks
// and errors are small per-connection frames in the same write).
#pragma once

#include "feed_protocol.hpp"

#include <crier/core/format.hpp>
#include <crier/core/hub.hpp>

#include <asio/basic_socket_acceptor.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/basic_waitable_timer.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

namespace tcp_feed {

struct feed_options {
  std::string listen = "127.0.0.1:0";  // "host:port" (literal address; "[::1]:0" for IPv6)
  proto::policy default_policy = proto::policy::conflate;  // for subscribes that leave it to the server
  std::optional<crier::queue_options> queue{};  // per-subscription bound (policy is per subscribe);
                                                // default: the hub's queue options
  std::size_t max_client_frame = 64 * 1024;     // bytes of one client frame (type + body)
  std::size_t max_subscriptions = 64;           // per connection
  std::size_t max_topics = 64;                  // topics and patterns in one subscribe
  std::size_t max_connections = 100'000;
  std::chrono::milliseconds stall_timeout{60'000};  // a write stuck this long (client stopped
                                                    // reading) cuts the connection; it resumes by id
  std::chrono::milliseconds linger{2'000};      // after our FIN, how long we wait for the client's
  std::chrono::milliseconds shutdown_timeout{5'000};  // stop(): force-close what is left after this
  std::chrono::milliseconds tick{500};          // period of the stall / linger checks
  int send_buffer = 0;                          // SO_SNDBUF per connection (0 = the OS default)
  std::size_t max_batch_frames = 256;           // one gather write: up to this many frames ...
  std::size_t max_batch_bytes = 1024 * 1024;    // ... or this many message bytes
};

// Counters, read on the hub's strand.
struct feed_stats {
  std::uint64_t connections_opened = 0;
  std::uint64_t protocol_errors = 0;      // connections closed for a malformed / unknown frame
  std::uint64_t overflow_ends = 0;        // subscriptions ended by policy disconnect
  std::uint64_t conflation_notices = 0;   // gap (conflated) frames sent
  std::uint64_t conflated_skipped = 0;    // seqs they reported skipped
  std::uint64_t stalled = 0;              // connections cut because a write was stuck
};

namespace detail {

// One wire encoding, so one cache slot on every message: encoded on first use, shared after.
inline std::size_t message_slot() {
  static const std::size_t slot = crier::allocate_format_slot();
  return slot;
}

inline std::string encode_message(const crier::message& m) {
  std::string out;
  out.reserve(proto::header_size + 1 + 12 + 6 + m.topic().size() + m.event().size() + m.content_type().size() +
              m.payload().size());
  proto::writer w(out);
  w.begin(proto::server_op::message)
      .id({m.id().epoch, m.id().seq})
      .str16(m.topic())
      .str16(m.event())
      .str16(m.content_type())
      .bytes(m.payload());
  w.end();
  return out;
}

inline std::string encode_gap(std::uint32_t sub, proto::gap_reason reason, std::string_view topic, crier::message_id after,
                              crier::message_id next, std::uint64_t missed) {
  std::string out;
  proto::writer w(out);
  w.begin(proto::server_op::gap)
      .u32(sub)
      .u8(static_cast<std::uint8_t>(reason))
      .str16(topic)
      .id({after.epoch, after.seq})
      .id({next.epoch, next.seq})
      .u64(missed);
  w.end();
  return out;
}

inline std::string encode_error(std::uint32_t sub, proto::error_code code, std::string_view text) {
  std::string out;
  proto::writer w(out);
  w.begin(proto::server_op::error).u32(sub).u16(static_cast<std::uint16_t>(code)).str16(text.substr(0, 1024));
  w.end();
  return out;
}

inline proto::gap_reason wire_reason(crier::gap_reason r) {
  switch (r) {
    case crier::gap_reason::trimmed: return proto::gap_reason::trimmed;
    case crier::gap_reason::reset: return proto::gap_reason::reset;
    case crier::gap_reason::overflow: return proto::gap_reason::overflow;
  }
  return proto::gap_reason::reset;
}

template <class Executor>
class connection;

// The registry, shared (weakly) with the connections, which may outlive the feed object
// while their last handlers drain.
template <class Executor>
struct feed_core {
  using strand_type = typename crier::basic_hub<Executor>::executor_type;
  explicit feed_core(strand_type s) : strand(std::move(s)) {}

  strand_type strand;
  std::unordered_map<connection<Executor>*, std::shared_ptr<connection<Executor>>> conns;
  feed_stats stats;
  bool stopping = false;
  std::function<void()> on_drained;

  void erase(connection<Executor>* c) {
    conns.erase(c);
    if (stopping && conns.empty() && on_drained) asio::post(strand, std::exchange(on_drained, nullptr));
  }
};

template <class Executor>
class connection final : public crier::subscriber, public std::enable_shared_from_this<connection<Executor>> {
 public:
  using hub_type = crier::basic_hub<Executor>;
  using strand_type = typename hub_type::executor_type;
  using socket_type = asio::basic_stream_socket<asio::ip::tcp, strand_type>;
  using clock = std::chrono::steady_clock;

  connection(hub_type& hub, socket_type s, std::shared_ptr<const feed_options> o, std::weak_ptr<feed_core<Executor>> core)
      : hub_(hub), socket_(std::move(s)), opts_(std::move(o)), core_(std::move(core)) {}

  void start() {
    std::error_code ig;
    socket_.set_option(asio::ip::tcp::no_delay(true), ig);  // every frame is a complete write
    socket_.non_blocking(true, ig);                          // for the direct write_some below
    if (opts_->send_buffer > 0) socket_.set_option(asio::socket_base::send_buffer_size(opts_->send_buffer), ig);
    std::string hello;
    proto::writer w(hello);
    w.begin(proto::server_op::hello).u8(proto::version).u32(static_cast<std::uint32_t>(opts_->max_client_frame));
    w.end();
    control(std::move(hello));
    read();
    write_more();
  }

  // The hub: a subscription has items, or ended. On the strand.
  void on_ready() override {
    if (!open_ || closing_) return;
    auto self = this->shared_from_this();
    for (auto it = subs_.begin(); it != subs_.end();) {
      auto ec = it->second.handle->error();
      if (!ec) {
        ++it;
        continue;
      }
      if (ec == crier::errc::hub_stopped) return goodbye(proto::goodbye_code::server_stopping, "server stopping");
      // Policy disconnect: this subscription is over. The client has everything up to its
      // last message and resumes from there (subscribe again with since = its cursor).
      if (ec == crier::errc::queue_overflow) {
        if (auto core = core_.lock()) ++core->stats.overflow_ends;
        // The undelivered items are gone; cursor_list() still says what the client has.
        control(encode_error(it->first, proto::error_code::queue_overflow,
                             "queue overflow: subscribe again with since=" + it->second.handle->cursor_list()));
      } else {
        control(encode_error(it->first, proto::error_code::unavailable, ec.message()));
      }
      it = subs_.erase(it);
    }
    write_more();
  }

  // Periodic: cut a writer stuck since before `now - stall_timeout`; end a close the client
  // never answered.
  void tick(clock::time_point now) {
    if (!open_) return;
    if (writing_ && now - write_started_ > opts_->stall_timeout) {
      if (auto core = core_.lock()) ++core->stats.stalled;
      return kill();
    }
    if (send_closed_ && now - send_closed_at_ > opts_->linger) return kill();
  }

  // Ends the session cleanly: a goodbye frame, our FIN, then the client's.
  void goodbye(proto::goodbye_code code, std::string_view text) {
    if (!open_ || closing_) return;
    auto self = this->shared_from_this();
    std::string f;
    proto::writer w(f);
    w.begin(proto::server_op::goodbye).u16(static_cast<std::uint16_t>(code)).str16(text);
    w.end();
    control(std::move(f));
    begin_close();
    write_more();
  }

  // The feed is going away: close now, report nothing.
  void abandon() {
    core_.reset();
    kill();
  }

 private:
  static constexpr std::size_t idle_read = 512;
  static constexpr std::size_t busy_read = 16 * 1024;
  static constexpr std::size_t max_pending_control = 1024 * 1024;  // replies not yet written

  struct sub_entry {
    typename hub_type::subscription handle;
    // Per topic, the id of the last message (or gap end) handed to the client: a message
    // further on than the next seq means the queue conflated the ones in between.
    std::unordered_map<std::string, crier::message_id> sent;
    const std::string* last_topic = nullptr;  // one-entry cache: most subscriptions have one topic
    crier::message_id* last_pos = nullptr;

    crier::message_id& position(const std::string& topic) {
      if (last_topic && *last_topic == topic) return *last_pos;
      auto it = sent.try_emplace(topic).first;
      last_topic = &it->first;
      last_pos = &it->second;
      return it->second;
    }
  };

  // ------------------------------------------------------------------ reading
  void read() {
    if (!open_ || reading_ || read_eof_) return;
    if (control_bytes_ + control_inflight_ > max_pending_control) return;  // resumed by written()
    auto old = rbuf_.size();
    auto chunk = old == 0 ? idle_read : busy_read;
    rbuf_.resize(old + chunk);
    reading_ = true;
    socket_.async_read_some(asio::buffer(rbuf_.data() + old, chunk),
                            [self = this->shared_from_this(), old](std::error_code ec, std::size_t n) {
                              self->reading_ = false;
                              if (!self->open_) return;
                              self->rbuf_.resize(old + n);
                              if (ec == asio::error::eof) return self->on_eof();
                              if (ec) return self->kill();
                              self->parse();
                              self->read();
                              self->write_more();
                            });
  }

  void on_eof() {
    read_eof_ = true;
    rbuf_ = std::string();
    if (send_closed_) return kill();  // both directions are done
    // The client will send nothing more: answer what it asked for, then close our side too.
    begin_close();
    write_more();
  }

  void parse() {
    std::size_t pos = 0;
    while (!closing_ && rbuf_.size() - pos >= proto::header_size) {
      auto len = proto::frame_length(rbuf_.data() + pos);
      if (len == 0 || len > opts_->max_client_frame)
        return fail(proto::error_code::frame_too_large,
                    "frame length " + std::to_string(len) + " (1.." + std::to_string(opts_->max_client_frame) + ")");
      if (rbuf_.size() - pos - proto::header_size < len) break;
      const char* body = rbuf_.data() + pos + proto::header_size;
      pos += proto::header_size + len;
      command(static_cast<std::uint8_t>(*body), proto::reader(body + 1, len - 1));
    }
    if (closing_) pos = rbuf_.size();  // after a fatal error the rest is read and discarded
    rbuf_.erase(0, pos);
    if (rbuf_.empty() && rbuf_.capacity() > busy_read) rbuf_ = std::string();  // small again when idle
  }

  void command(std::uint8_t type, proto::reader r) {
    switch (static_cast<proto::client_op>(type)) {
      case proto::client_op::subscribe: return subscribe(r);
      case proto::client_op::unsubscribe: {
        auto id = r.u32();
        if (!r.ok() || !r.done()) return fail(proto::error_code::bad_frame, "malformed unsubscribe");
        auto it = subs_.find(id);
        if (it == subs_.end()) return refuse(id, proto::error_code::not_subscribed, "no subscription with this id");
        subs_.erase(it);
        return control(small_frame(proto::server_op::unsubscribed, id));
      }
      case proto::client_op::ping: {
        auto token = r.u64();
        if (!r.ok() || !r.done()) return fail(proto::error_code::bad_frame, "malformed ping");
        std::string f;
        proto::writer w(f);
        w.begin(proto::server_op::pong).u64(token);
        w.end();
        return control(std::move(f));
      }
    }
    fail(proto::error_code::unknown_command, "unknown frame type " + std::to_string(type));
  }

  void subscribe(proto::reader& r) {
    auto id = r.u32();
    auto pol = r.u8();
    auto since_text = r.str32();
    auto n = r.u16();
    std::vector<std::string> topics;
    for (std::uint16_t i = 0; i < n && r.ok(); ++i) topics.emplace_back(r.str16());
    if (!r.ok() || !r.done()) return fail(proto::error_code::bad_frame, "malformed subscribe");
    if (id == 0) return fail(proto::error_code::invalid_subscription, "subscription id 0 is reserved");
    if (pol > static_cast<std::uint8_t>(proto::policy::conflate))
      return refuse(id, proto::error_code::invalid_subscription, "unknown policy " + std::to_string(pol));
    if (topics.empty() || topics.size() > opts_->max_topics)
      return refuse(id, proto::error_code::invalid_subscription,
                    "1.." + std::to_string(opts_->max_topics) + " topics per subscribe");
    for (auto& t : topics) {
      std::error_code ec;
      if (crier::is_pattern(t)) crier::topic_pattern::parse(t, ec);
      else ec = crier::validate_topic(t);
      if (ec) return refuse(id, proto::error_code::invalid_topic, ec.message() + ": " + t.substr(0, 300));
    }
    std::error_code ec;
    auto since = crier::cursor::parse(since_text, ec);
    if (ec) return refuse(id, proto::error_code::invalid_id, "since is not a resume cursor");
    auto existing = subs_.find(id);
    if (existing == subs_.end() && subs_.size() >= opts_->max_subscriptions)
      return refuse(id, proto::error_code::too_many_subscriptions, "this connection has as many subscriptions as it may");
    if (existing != subs_.end()) subs_.erase(existing);  // the same id again: start over from `since`

    auto q = opts_->queue.value_or(hub_.options().queue);
    auto p = pol == 0 ? opts_->default_policy : static_cast<proto::policy>(pol);
    q.policy = p == proto::policy::disconnect    ? crier::overflow_policy::disconnect
               : p == proto::policy::drop_oldest ? crier::overflow_policy::drop_oldest
                                                 : crier::overflow_policy::conflate;
    auto handle = hub_.subscribe({.topics = std::move(topics), .since = std::move(since), .queue = q}, *this, ec);
    if (ec) {
      auto code = ec == crier::errc::invalid_id ? proto::error_code::invalid_id
                  : ec == crier::errc::invalid_topic || ec == crier::errc::invalid_pattern ? proto::error_code::invalid_topic
                                                                                            : proto::error_code::unavailable;
      return refuse(id, code, ec.message());
    }
    sub_entry e{std::move(handle)};
    // Where each topic starts, before anything is taken from the queue: the subscription's
    // delivered cursor as a "topic=id,..." list (the public way to read it for all topics).
    auto start = e.handle->cursor_list();
    auto parsed = crier::cursor::parse(start, ec);
    for (auto& [t, mid] : parsed.topics) e.sent[t] = mid;
    std::string ack;
    proto::writer w(ack);
    w.begin(proto::server_op::subscribed).u32(id).str32(start.size() + 1024 < opts_->max_client_frame ? start : "");
    w.end();
    control(std::move(ack));  // goes out ahead of the subscription's first message
    subs_.emplace(id, std::move(e));
  }

  // ------------------------------------------------------------------ writing
  void control(std::string frame) {
    control_bytes_ += frame.size();
    control_.push_back(std::make_shared<const std::string>(std::move(frame)));
  }
  void refuse(std::uint32_t sub, proto::error_code code, std::string_view text) { control(encode_error(sub, code, text)); }

  // A fatal protocol error: an error frame for the connection, then a clean close.
  void fail(proto::error_code code, std::string_view text) {
    if (closing_) return;
    if (auto core = core_.lock()) ++core->stats.protocol_errors;
    control(encode_error(0, code, text));
    begin_close();
  }

  void begin_close() {
    closing_ = true;
    subs_.clear();  // no more messages; queued ones are released
  }

  static std::string small_frame(proto::server_op op, std::uint32_t v) {
    std::string f;
    proto::writer w(f);
    w.begin(op).u32(v);
    w.end();
    return f;
  }

  void add(crier::frame_ptr f) {
    bufs_.push_back(asio::buffer(*f));
    keep_.push_back(std::move(f));
  }
  void add(std::string owned) { add(std::make_shared<const std::string>(std::move(owned))); }

  // Round-robin over the subscriptions, so one busy subscription cannot hold the others back.
  void fill() {
    std::size_t bytes = 0;
    bool progress = true;
    while (progress && bufs_.size() < opts_->max_batch_frames && bytes < opts_->max_batch_bytes) {
      progress = false;
      for (auto& [id, e] : subs_) {
        auto it = e.handle->next();
        if (!it) continue;
        progress = true;
        if (it.gap) {
          auto& g = *it.gap;
          e.position(g.topic) = g.next.seq ? crier::message_id{g.next.epoch, g.next.seq - 1} : g.next;
          add(encode_gap(id, wire_reason(g.reason), g.topic, g.after, g.next, g.missed));
        } else {
          const auto& m = *it.msg;
          auto& pos = e.position(m.topic());
          // Same epoch (or a topic we have no position for: it starts at seq 1) and further on
          // than the next seq: conflation replaced the ones in between. Tell the client which.
          if ((pos.epoch == m.id().epoch || pos.epoch == 0) && m.seq() > pos.seq + 1) {
            crier::message_id after{m.id().epoch, pos.epoch == 0 ? 0 : pos.seq};
            auto missed = m.seq() - after.seq - 1;
            add(encode_gap(id, proto::gap_reason::conflated, m.topic(), after, m.id(), missed));
            if (auto core = core_.lock()) ++core->stats.conflation_notices, core->stats.conflated_skipped += missed;
          }
          pos = m.id();
          const auto& f = m.frame(message_slot(), encode_message);  // once per message, shared
          bytes += f->size();
          add(f);
        }
        if (bufs_.size() >= opts_->max_batch_frames) break;
      }
    }
  }

  // One write in flight. A batch first goes out with direct non-blocking writes; only what
  // the socket does not take at once waits for an asynchronous write.
  void write_more() {
    if (!open_ || writing_ || send_closed_) return;
    auto self = this->shared_from_this();  // kill() drops the registry's reference
    for (;;) {
      for (auto& f : control_) add(std::move(f));
      control_.clear();
      control_inflight_ += std::exchange(control_bytes_, 0);
      if (!closing_) fill();
      if (bufs_.empty()) return idle();
      while (!bufs_.empty()) {
        std::error_code ec;
        auto n = socket_.write_some(bufs_, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) break;
        if (ec) return kill();
        consume(n);
      }
      if (!bufs_.empty()) return write_async();
      written();
    }
  }

  void write_async() {
    writing_ = true;
    write_started_ = clock::now();
    asio::async_write(socket_, bufs_, [self = this->shared_from_this()](std::error_code ec, std::size_t) {
      self->writing_ = false;
      if (!self->open_) return;
      if (ec) return self->kill();
      self->bufs_.clear();
      self->written();
      self->write_more();
    });
  }

  // Drops the first n bytes of the batch (written).
  void consume(std::size_t n) {
    std::size_t i = 0;
    while (n > 0 && i < bufs_.size()) {
      if (n < bufs_[i].size()) {
        bufs_[i] += n;
        break;
      }
      n -= bufs_[i].size();
      ++i;
    }
    bufs_.erase(bufs_.begin(), bufs_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  // The whole batch is out: release the frames; memory goes back after a burst.
  void written() {
    bufs_.clear();
    keep_.clear();
    if (keep_.capacity() > 64) {
      bufs_ = {};
      keep_ = {};
    }
    control_inflight_ = 0;
    read();  // resumes reading if replies had piled up (no-op otherwise)
  }

  // Nothing left to write. Closing: send our FIN now, then wait for the client's.
  void idle() {
    if (!closing_ || send_closed_) return;
    std::error_code ig;
    socket_.shutdown(asio::socket_base::shutdown_send, ig);
    send_closed_ = true;
    send_closed_at_ = clock::now();
    if (read_eof_) kill();
  }

  void kill() {
    if (!open_) return;
    auto self = this->shared_from_this();
    open_ = false;
    subs_.clear();
    control_.clear();
    std::error_code ig;
    socket_.close(ig);  // a write in flight completes with operation_aborted; keep_ holds its bytes till then
    if (auto core = core_.lock()) core->erase(this);
  }

  hub_type& hub_;
  socket_type socket_;
  std::shared_ptr<const feed_options> opts_;
  std::weak_ptr<feed_core<Executor>> core_;
  std::map<std::uint32_t, sub_entry> subs_;
  std::string rbuf_;
  std::vector<crier::frame_ptr> control_;  // acks, errors, pongs, goodbye: ahead of messages
  std::size_t control_bytes_ = 0, control_inflight_ = 0;
  std::vector<asio::const_buffer> bufs_;   // the write in flight, or the next one
  std::vector<crier::frame_ptr> keep_;     // what bufs_ points into
  clock::time_point write_started_{}, send_closed_at_{};
  bool open_ = true;
  bool reading_ = false;
  bool writing_ = false;
  bool closing_ = false;     // no more messages; the queued control frames, then our FIN
  bool send_closed_ = false;
  bool read_eof_ = false;
};

}  // namespace detail

template <class Executor = asio::any_io_executor>
class basic_feed {
 public:
  using hub_type = crier::basic_hub<Executor>;
  using strand_type = typename hub_type::executor_type;

  // Listens on o.listen; throws std::system_error if it cannot. Call on the hub's strand or
  // before the io_context runs.
  basic_feed(hub_type& hub, feed_options o)
      : hub_(hub),
        opts_(std::make_shared<const feed_options>(std::move(o))),
        core_(std::make_shared<core_type>(hub.get_executor())),
        acceptor_(hub.get_executor()),
        tick_(hub.get_executor()),
        retry_(hub.get_executor()),
        stop_timer_(hub.get_executor()) {
    auto ep = parse_endpoint(opts_->listen);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    accept();
    arm_tick();
  }
  basic_feed(const basic_feed&) = delete;
  basic_feed& operator=(const basic_feed&) = delete;
  ~basic_feed() {
    auto core = std::move(core_);
    core->on_drained = nullptr;
    auto conns = std::move(core->conns);
    for (auto& [p, c] : conns) c->abandon();
    std::error_code ig;
    acceptor_.close(ig);
  }

  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  std::size_t connection_count() const noexcept { return core_->conns.size(); }
  const feed_stats& stats() const noexcept { return core_->stats; }
  const feed_options& options() const noexcept { return *opts_; }

  // Graceful: stop accepting; every connection gets a goodbye frame and is closed once the
  // client has closed too (or after linger); then done() on the strand. What is left after
  // shutdown_timeout is closed.
  void stop(std::function<void()> done = {}) {
    asio::dispatch(hub_.get_executor(), [this, weak = std::weak_ptr<core_type>(core_), done = std::move(done)]() mutable {
      auto core = weak.lock();
      if (!core || core->stopping) return;
      core->stopping = true;
      std::error_code ig;
      acceptor_.close(ig);
      retry_.cancel();
      core->on_drained = [this, weak, done = std::move(done)] {
        if (!weak.lock()) return;
        tick_.cancel();
        stop_timer_.cancel();
        if (done) done();
      };
      std::vector<std::shared_ptr<detail::connection<Executor>>> all;
      for (auto& [p, c] : core->conns) all.push_back(c);
      for (auto& c : all) c->goodbye(proto::goodbye_code::server_stopping, "server stopping");
      if (core->conns.empty()) {
        if (auto d = std::exchange(core->on_drained, nullptr)) asio::post(core->strand, std::move(d));
        return;
      }
      stop_timer_.expires_after(opts_->shutdown_timeout);
      stop_timer_.async_wait([weak](std::error_code ec) {
        auto core = weak.lock();
        if (ec || !core) return;
        std::vector<std::shared_ptr<detail::connection<Executor>>> left;
        for (auto& [p, c] : core->conns) left.push_back(c);
        for (auto& c : left) c->abandon();  // stuck writers, clients that never closed
        core->conns.clear();
        if (auto d = std::exchange(core->on_drained, nullptr)) asio::post(core->strand, std::move(d));
      });
    });
  }

 private:
  using core_type = detail::feed_core<Executor>;
  using timer_type = asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>,
                                                strand_type>;

  static asio::ip::tcp::endpoint parse_endpoint(const std::string& s) {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) throw std::system_error(make_error_code(asio::error::invalid_argument), "listen " + s);
    auto host = s.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    std::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    unsigned long port = 0;
    try {
      port = std::stoul(s.substr(colon + 1));
    } catch (...) {
      ec = asio::error::invalid_argument;
    }
    if (ec || port > 65535) throw std::system_error(ec ? ec : make_error_code(asio::error::invalid_argument), "listen " + s);
    return {addr, static_cast<unsigned short>(port)};
  }

  void accept() {
    acceptor_.async_accept(hub_.get_executor(), [this, weak = std::weak_ptr<core_type>(core_)](
                                                    std::error_code ec, typename detail::connection<Executor>::socket_type s) {
      auto core = weak.lock();
      if (!core || core->stopping || !acceptor_.is_open()) return;
      if (ec) {
        if (ec == asio::error::operation_aborted) return;
        retry_.expires_after(std::chrono::milliseconds(50));  // EMFILE & co: do not spin
        retry_.async_wait([this, weak](std::error_code e) {
          if (!e && weak.lock()) accept();
        });
        return;
      }
      if (core->conns.size() < opts_->max_connections) {
        auto c = std::make_shared<detail::connection<Executor>>(hub_, std::move(s), opts_, weak);
        core->conns.emplace(c.get(), c);
        ++core->stats.connections_opened;
        c->start();
      }
      accept();
    });
  }

  void arm_tick() {
    tick_.expires_after(opts_->tick);
    tick_.async_wait([this, weak = std::weak_ptr<core_type>(core_)](std::error_code ec) {
      auto core = weak.lock();
      if (ec || !core) return;
      std::vector<std::shared_ptr<detail::connection<Executor>>> all;
      all.reserve(core->conns.size());
      for (auto& [p, c] : core->conns) all.push_back(c);
      auto now = std::chrono::steady_clock::now();
      for (auto& c : all) c->tick(now);
      arm_tick();
    });
  }

  hub_type& hub_;
  std::shared_ptr<const feed_options> opts_;
  std::shared_ptr<core_type> core_;
  asio::basic_socket_acceptor<asio::ip::tcp, strand_type> acceptor_;
  timer_type tick_, retry_, stop_timer_;
};

using feed = basic_feed<>;

}  // namespace tcp_feed
