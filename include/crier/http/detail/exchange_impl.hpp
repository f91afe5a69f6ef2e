// The exchange a handler holds: forwards to its connection until the exchange completes.
#pragma once

#include <crier/detail/asio.hpp>

#include <functional>
#include <memory>
#include <span>
#include <system_error>

#include "crier/http/detail/upgrade.hpp"
#include "crier/http/exchange.hpp"

namespace crier::http {

template <class Stream>
class connection;

namespace detail {

template <class Stream>
class exchange_impl final : public exchange {
 public:
  exchange_impl(std::shared_ptr<connection<Stream>> c, std::unique_ptr<request> r)
      : conn_(std::move(c)), req_(std::move(r)), ex_(conn_->executor()) {}
  ~exchange_impl() override {
    if (conn_) conn_->x_destroyed(this);
  }
  const request& req() const override { return *req_; }
  request& req() override { return *req_; }
  void respond(response r) override {
    if (conn_) conn_->x_respond(this, std::move(r));
  }
  void start_stream(response head) override {
    if (conn_) conn_->x_start_stream(this, std::move(head));
  }
  void async_write(std::span<const asio::const_buffer> b, std::function<void(std::error_code)> cb) override {
    if (conn_) return conn_->x_write(this, b, std::move(cb));
    asio::post(ex_, [cb = std::move(cb)] { cb(asio::error::not_connected); });
  }
  void finish_stream() override {
    if (conn_) conn_->x_finish(this);
  }
  void close() override {
    if (conn_) conn_->x_close(this);
  }
  void upgrade(response head, detail::upgrade_callback cb) override {
    if (conn_) return conn_->x_upgrade(this, std::move(head), std::move(cb));
    asio::post(ex_, [cb = std::move(cb)] { cb(asio::error::not_connected, nullptr); });
  }
  void on_close(std::function<void(std::error_code)> cb) override {
    if (delivered_) return;
    if (notified_) {
      delivered_ = true;
      asio::post(ex_, [cb = std::move(cb), ec = close_ec_] { cb(ec); });
    } else {
      cb_ = std::move(cb);
    }
  }
  bool is_open() const override { return conn_ && conn_->x_open(this); }
  asio::any_io_executor get_executor() const override { return ex_; }
  std::size_t bytes_queued() const override { return conn_ ? conn_->x_queued(this) : 0; }
  std::optional<asio::ip::address> remote_address() const override {
    if constexpr (requires(Stream& s) { s.lowest_layer().remote_endpoint().address(); }) {
      std::error_code ec;
      if (conn_) {
        auto ep = conn_->stream().lowest_layer().remote_endpoint(ec);
        if (!ec) return ep.address();
      }
    }
    return std::nullopt;
  }

  // ---- connection side ----
  void notify_close(std::error_code ec) {
    if (notified_) return;
    notified_ = true;
    close_ec_ = ec;
    if (cb_) {
      delivered_ = true;
      asio::post(ex_, [cb = std::move(cb_), ec] { cb(ec); });
    }
  }
  // The exchange completed: stop pinning the connection.
  void detach() { conn_.reset(); }

 private:
  std::shared_ptr<connection<Stream>> conn_;
  std::unique_ptr<request> req_;
  asio::any_io_executor ex_;
  std::function<void(std::error_code)> cb_;
  std::error_code close_ec_;
  bool notified_ = false;
  bool delivered_ = false;
};

}  // namespace detail

}  // namespace crier::http
