// Outbound HTTP client, private: one connection (TCP, or TLS over TCP) to one origin.
// Everything runs on the client's executor. After close() no callback runs again, but every
// operation in flight keeps the connection (and what its callback captured) alive until it ends.
#pragma once

#include <crier/detail/asio.hpp>

#include <asio/ssl.hpp>

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "crier/error.hpp"
#include "crier/http/client_options.hpp"
#include "crier/http/detail/client_wire.hpp"

namespace crier::http::detail {

// The context used when the application gives none: peers verified against the system's trust
// store (host names are checked per connection), TLS 1.2 at least.
inline std::shared_ptr<asio::ssl::context> make_default_client_tls() {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  std::error_code ig;
  ctx->set_default_verify_paths(ig);  // without a store every peer fails verification: safe
  ctx->set_verify_mode(asio::ssl::verify_peer, ig);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  return ctx;
}

class client_connection : public std::enable_shared_from_this<client_connection> {
 public:
  using read_handler = std::function<void(std::error_code, std::size_t)>;
  static constexpr std::size_t buffer_size = 16 * 1024;

  explicit client_connection(const asio::any_io_executor& ex) : idle_timer(ex), sock_(ex), resolver_(ex) {}
  client_connection(const client_connection&) = delete;
  client_connection& operator=(const client_connection&) = delete;

  // Resolves, asks the guard about each address right before connecting to it, connects to the
  // first allowed address that accepts, then (https) handshakes with SNI and host-name verification.
  void async_connect(const client_target& t, const client_options& o, std::shared_ptr<asio::ssl::context> tls,
                     std::function<void(std::error_code)> cb) {
    connect_cb_ = std::move(cb);
    guard_ = o.address_allowed;
    host_ = t.host;
    host_is_ip_ = t.host_is_ip;
    if (t.tls) ctx_ = std::move(tls);
    auto self = shared_from_this();
    resolver_.async_resolve(t.host, std::to_string(t.port), asio::ip::tcp::resolver::numeric_service,
                            [self](std::error_code ec, asio::ip::tcp::resolver::results_type res) {
                              if (self->closed_) return;
                              if (ec) return self->connected(ec);
                              for (auto& e : res) self->endpoints_.push_back(e.endpoint());
                              self->try_next();
                            });
  }

  // At most one read in flight; its bytes land in data() and go to the reader set at completion
  // time (the pool's while idle, the exchange's while in use).
  void set_reader(read_handler h) { reader_ = std::move(h); }
  void read() {
    if (reading_ || closed_) return;
    reading_ = true;
    auto self = shared_from_this();
    auto done = [self](std::error_code ec, std::size_t n) {
      self->reading_ = false;
      if (self->closed_ || !self->reader_) return;
      auto h = self->reader_;  // the reader may close the connection or replace itself
      h(ec, n);
    };
    if (tls_)
      tls_->async_read_some(asio::buffer(buf_), std::move(done));
    else
      sock_.async_read_some(asio::buffer(buf_), std::move(done));
  }
  const char* data() const { return buf_.data(); }
  bool reading() const { return reading_; }

  // Writes all of `b` (which must stay valid until cb runs, e.g. owned by what cb captures).
  void async_write(std::array<asio::const_buffer, 2> b, std::function<void(std::error_code)> cb) {
    auto self = shared_from_this();
    auto done = [self, cb = std::move(cb)](std::error_code ec, std::size_t) {
      if (!self->closed_) cb(ec);
    };
    if (tls_)
      asio::async_write(*tls_, b, std::move(done));
    else
      asio::async_write(sock_, b, std::move(done));
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    reader_ = nullptr;
    connect_cb_ = nullptr;
    std::error_code ig;
    resolver_.cancel();
    idle_timer.cancel();
    sock_.shutdown(asio::socket_base::shutdown_both, ig);
    sock_.close(ig);
  }
  bool is_open() const { return !closed_; }

  // Pool bookkeeping (client_core).
  asio::steady_timer idle_timer;
  unsigned idle_gen = 0;
  bool idle = false;
  bool reused = false;  // has carried a request before the current one

 private:
  void try_next() {
    while (next_ < endpoints_.size()) {
      const auto& ep = endpoints_[next_++];
      if (guard_ && !guard_(ep.address())) continue;  // SSRF guard, asked before every connect
      attempted_ = true;
      std::error_code ec;
      if (sock_.is_open()) sock_.close(ec);
      sock_.open(ep.protocol(), ec);
      if (ec) {
        last_ = ec;
        continue;
      }
      auto self = shared_from_this();
      sock_.async_connect(ep, [self](std::error_code ec) {
        if (self->closed_) return;
        if (ec) {
          self->last_ = ec;
          return self->try_next();
        }
        self->tcp_connected();
      });
      return;
    }
    connected(attempted_ ? last_ : make_error_code(errc::address_refused));
  }

  void tcp_connected() {
    std::error_code ig;
    sock_.set_option(asio::ip::tcp::no_delay(true), ig);
    endpoints_ = {};
    guard_ = nullptr;
    if (!ctx_) return connected({});
    tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(sock_, *ctx_);
    if (!host_is_ip_ && !SSL_set_tlsext_host_name(tls_->native_handle(), host_.c_str()))
      return connected(std::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()));
    std::error_code ec;
    tls_->set_verify_mode(asio::ssl::verify_peer, ec);
    if (!ec) tls_->set_verify_callback(asio::ssl::host_name_verification(host_), ec);
    if (ec) return connected(ec);
    auto self = shared_from_this();
    tls_->async_handshake(asio::ssl::stream_base::client, [self](std::error_code ec) {
      if (!self->closed_) self->connected(ec);
    });
  }

  void connected(std::error_code ec) {
    auto cb = std::move(connect_cb_);
    connect_cb_ = nullptr;
    if (cb) cb(ec);
  }

  std::shared_ptr<asio::ssl::context> ctx_;  // outlives the stream made from it
  asio::ip::tcp::socket sock_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;  // over sock_
  asio::ip::tcp::resolver resolver_;
  std::vector<asio::ip::tcp::endpoint> endpoints_;
  std::size_t next_ = 0;
  std::error_code last_;
  bool attempted_ = false;
  std::function<bool(const asio::ip::address&)> guard_;
  std::string host_;
  bool host_is_ip_ = false;
  std::function<void(std::error_code)> connect_cb_;
  read_handler reader_;
  std::array<char, buffer_size> buf_{};
  bool reading_ = false;
  bool closed_ = false;
};

}  // namespace crier::http::detail
