// Drives one streaming subscriber (SSE, NDJSON, or an application's transport) over an HTTP
// exchange: one write in flight; whatever queued meanwhile goes out in one gather write of
// shared frames. Runs on the hub's strand, like the server's connections.
#pragma once

#include <crier/concepts.hpp>
#include <crier/core/hub.hpp>
#include <crier/detail/gather.hpp>
#include <crier/http/exchange.hpp>

#include <asio/buffer.hpp>
#include <asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace crier {

// What the server needs of any live stream (heartbeats, shutdown), whatever its transport.
class stream_base {
 public:
  virtual ~stream_base() = default;
  // Periodic check: write keep-alive bytes if nothing was written lately; cut the connection
  // if one write has been stuck since before `stalled_before` (a client that stopped reading).
  virtual void tick(std::chrono::steady_clock::time_point stalled_before) = 0;
  virtual void end() = 0;        // finish the stream cleanly (shutdown)
  virtual void abandon() = 0;    // the owner is going away: close now, report nothing
};

template <transport Transport, class Executor>
class stream_session final : public subscriber,
                             public stream_base,
                             public std::enable_shared_from_this<stream_session<Transport, Executor>> {
 public:
  using hub_type = basic_hub<Executor>;
  // Called once when the session is over, so its owner can release it.
  using done_fn = std::function<void(stream_session*)>;

  stream_session(std::shared_ptr<const Transport> t, std::shared_ptr<http::exchange> ex, stream_context ctx,
                 done_fn done)
      : transport_ptr_(std::move(t)), transport_(*transport_ptr_), ex_(std::move(ex)), ctx_(ctx), done_(std::move(done)) {}

  // Sends the head and subscribes; false (with ec) if the hub refused.
  // `max_duration` > 0 ends the stream cleanly after that long (clients reconnect and resume;
  // lets load balancers rebalance and proxies with idle limits cope).
  bool start(hub_type& hub, const subscribe_request& req,
             const std::vector<std::pair<std::string, std::string>>& extra_headers,
             std::chrono::milliseconds max_duration, std::error_code& ec) {
    auto head = transport_.head(ex_->req(), ctx_);
    head.headers.insert(head.headers.end(), extra_headers.begin(), extra_headers.end());
    sub_ = hub.subscribe(req, *this, ec);
    if (ec) return false;
    ctx_.sub = &sub_.state();
    std::weak_ptr<stream_session> weak = this->shared_from_this();
    ex_->on_close([weak](std::error_code) {
      if (auto self = weak.lock()) self->end();
    });
    if (max_duration.count() > 0) {
      lifetime_.emplace(hub.get_executor(), max_duration);
      lifetime_->async_wait([weak](std::error_code ec) {
        if (auto self = weak.lock(); self && !ec) self->end();
      });
    }
    preamble_ = std::move(head.body);
    head.body.clear();
    ex_->start_stream(std::move(head));
    if (!preamble_.empty()) {
      batch_.add_view(asio::buffer(preamble_));
      write_now();
    }
    return true;
  }

  void on_ready() override {
    if (auto ec = sub_ ? sub_->error() : std::error_code{}; ec && writing_) return abort();  // stuck writing
    if (!writing_) write_more();
  }

  void tick(std::chrono::steady_clock::time_point stalled_before) override {
    if (writing_ && write_started_ < stalled_before) return abort();
    if (writing_ || !ex_) return;
    if (wrote_since_heartbeat_) {
      wrote_since_heartbeat_ = false;
      return;
    }
    if (auto hb = transport_.heartbeat()) {
      batch_.add(std::move(hb));
      write_now();
    }
  }

  void end() override { finish(std::error_code{}); }
  void abandon() override {
    done_ = nullptr;
    abort();
  }

 private:
  static constexpr std::size_t max_batch_items = 256;
  static constexpr std::size_t max_batch_bytes = 1024 * 1024;

  void write_more() {
    if (!ex_) return;
    auto& s = sub_.state();
    if (s.error()) return finish(s.error());  // overflow: the client resumes from its last id
    std::size_t bytes = 0;
    while (batch_.size() < max_batch_items && bytes < max_batch_bytes) {
      auto it = s.next();
      if (!it) break;
      if (it.gap) {
        batch_.add(transport_.gap_frame(*it.gap, ctx_));
        continue;
      }
      if (auto prefix = transport_.prefix(*it.msg, ctx_); !prefix.empty()) batch_.add(std::move(prefix));
      auto f = transport_.frame(*it.msg, ctx_);
      bytes += f->size();
      batch_.add(std::move(f));
    }
    if (!batch_.empty()) write_now();
  }

  void write_now() {
    writing_ = true;
    write_started_ = std::chrono::steady_clock::now();
    wrote_since_heartbeat_ = true;
    ex_->async_write(batch_.buffers(), [self = this->shared_from_this()](std::error_code ec) {
      self->writing_ = false;
      self->batch_.clear();
      self->preamble_ = std::string();
      if (ec) return self->finish(ec);
      if (self->finishing_) return self->finish({});
      self->write_more();
    });
  }

  // The client is not reading and the subscription ended: a clean end would wait on that
  // client, so the connection is cut; it resumes from its last id.
  void abort() {
    if (!ex_) return;
    sub_.reset();
    ctx_.sub = nullptr;
    if (lifetime_) lifetime_->cancel();
    auto ex = std::move(ex_);
    ex->close();
    if (auto done = std::move(done_)) done(this);
  }

  void finish(std::error_code ec) {
    if (!ex_) return;
    if (writing_ && !ec) {  // let the write in flight complete first
      finishing_ = true;
      return;
    }
    sub_.reset();
    ctx_.sub = nullptr;
    if (lifetime_) lifetime_->cancel();
    auto ex = std::move(ex_);
    if (ec && ec != errc::queue_overflow && ec != errc::hub_stopped) ex->close();
    else ex->finish_stream();
    if (auto done = std::move(done_)) done(this);
  }

  std::shared_ptr<const Transport> transport_ptr_;  // outlives the server's registry if need be
  const Transport& transport_;
  std::chrono::steady_clock::time_point write_started_{};
  std::shared_ptr<http::exchange> ex_;
  stream_context ctx_;
  done_fn done_;
  typename hub_type::subscription sub_;
  std::string preamble_;
  detail::gather_batch batch_;  // the write in flight, or the next one
  std::optional<asio::steady_timer> lifetime_;
  bool writing_ = false;
  bool finishing_ = false;
  bool wrote_since_heartbeat_ = false;
};

}  // namespace crier
