// The implementation of http::raw_stream: a connection handed over by exchange::upgrade.
// It owns the socket (moved out of the HTTP connection, whose memory is then freed) and takes the
// connection's place in the server's registry, so connection_count() and stop() still see it.
#pragma once

#include <crier/detail/asio.hpp>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "crier/http/detail/server_core.hpp"
#include "crier/http/raw_stream.hpp"
#include "crier/http/response.hpp"

namespace crier::http::detail {

using upgrade_callback = std::function<void(std::error_code, std::shared_ptr<raw_stream>)>;

// What the connection keeps between exchange::upgrade() and the hand-over.
struct upgrade_request {
  response head;
  upgrade_callback cb;
};

template <class Stream>
class raw_stream_impl final : public raw_stream,
                              public connection_base,
                              public std::enable_shared_from_this<raw_stream_impl<Stream>> {
 public:
  // Registers itself; the caller unregisters the connection afterwards (count never dips to 0).
  raw_stream_impl(Stream s, std::shared_ptr<server_core> core, std::string leftover)
      : stream_(std::move(s)), ex_(stream_.get_executor()), core_(std::move(core)), leftover_(std::move(leftover)) {
    core_->add(this);
    stop_pending_ = core_->stopping;
  }
  ~raw_stream_impl() override { core_->remove(this); }  // the socket closes with stream_

  // Writes the 101 head, then hands the stream to cb.
  void start(const response& head, upgrade_callback cb) {
    append_head(head_, head);
    head_ += "\r\n";
    writing_ = true;
    asio::async_write(stream_, asio::buffer(head_),
                      [self = this->shared_from_this(), cb = std::move(cb)](std::error_code ec, std::size_t) {
                        self->writing_ = false;
                        std::string().swap(self->head_);
                        if (!ec && self->closed_) ec = asio::error::operation_aborted;
                        if (ec) {
                          self->close();
                          return cb(ec, nullptr);
                        }
                        cb({}, self);
                      });
  }

  // ---- raw_stream ----
  std::string take_leftover() override { return std::exchange(leftover_, std::string()); }

  void async_read_some(asio::mutable_buffer b, std::function<void(std::error_code, std::size_t)> cb) override {
    if (closed_) return fail(std::move(cb), asio::error::operation_aborted);
    stream_.async_read_some(b, [self = this->shared_from_this(), cb = std::move(cb)](std::error_code ec, std::size_t n) {
      cb(ec, n);
    });
  }

  void async_write(std::span<const asio::const_buffer> b, std::function<void(std::error_code, std::size_t)> cb) override {
    if (closed_) return fail(std::move(cb), asio::error::operation_aborted);
    if (writing_) return fail(std::move(cb), asio::error::in_progress);
    writing_ = true;
    asio::async_write(stream_, b, [self = this->shared_from_this(), cb = std::move(cb)](std::error_code ec, std::size_t n) {
      self->writing_ = false;
      cb(ec, n);
    });
  }

  std::size_t try_write(std::span<const asio::const_buffer> b, std::error_code& ec) override {
    ec.clear();
    if (closed_ || writing_) return 0;
    if constexpr (requires(Stream& s, std::error_code& e) {
                    s.non_blocking(true, e);
                    s.write_some(b, e);
                  }) {
      if (!non_blocking_) {
        stream_.non_blocking(true, ec);  // sync calls only; async operations are unaffected
        if (ec) return 0;
        non_blocking_ = true;
      }
      std::size_t total = 0;
      // One write_some sends at most 64 buffers (IOV_MAX-bounded inside Asio): go on while the
      // socket takes everything.
      for (std::size_t i = 0; i < b.size();) {
        std::size_t n = std::min<std::size_t>(b.size() - i, 64);
        std::size_t want = asio::buffer_size(b.subspan(i, n));
        std::size_t got = stream_.write_some(b.subspan(i, n), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
          ec.clear();
          break;
        }
        if (ec) break;
        total += got;
        if (got < want) break;
        i += n;
      }
      return total;
    } else {
      return 0;
    }
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    std::error_code ig;
    stream_.lowest_layer().close(ig);
    std::string().swap(leftover_);
    auto cb = std::move(stop_cb_);  // it may hold a reference to us: no cycle past close()
    stop_cb_ = nullptr;
    core_->remove(this);
  }

  void shutdown_send() override {
    std::error_code ig;
    if (!closed_) stream_.lowest_layer().shutdown(asio::socket_base::shutdown_send, ig);
  }
  bool is_open() const override { return !closed_; }
  asio::any_io_executor get_executor() const override { return ex_; }

  void on_stop(std::function<void()> cb) override {
    if (closed_ || stop_delivered_) return;
    stop_cb_ = std::move(cb);
    if (stop_pending_) deliver_stop();
  }

  // ---- connection_base (the server's registry) ----
  void begin_stop() override {
    if (closed_ || stop_pending_) return;
    stop_pending_ = true;
    if (stop_cb_) deliver_stop();
  }
  void force_close() override { close(); }
  std::size_t footprint() const override { return sizeof(*this) + leftover_.capacity() + head_.capacity(); }

 private:
  template <class Cb>
  void fail(Cb cb, std::error_code ec) {
    asio::post(ex_, [cb = std::move(cb), ec] { cb(ec, 0); });
  }
  void deliver_stop() {
    stop_delivered_ = true;
    asio::post(ex_, [self = this->shared_from_this(), cb = std::exchange(stop_cb_, nullptr)] {
      if (!self->closed_) cb();
    });
  }

  Stream stream_;
  asio::any_io_executor ex_;
  std::shared_ptr<server_core> core_;
  std::string leftover_;
  std::string head_;
  std::function<void()> stop_cb_;
  bool closed_ = false, writing_ = false, stop_pending_ = false, stop_delivered_ = false;
  bool non_blocking_ = false;
};

}  // namespace crier::http::detail
