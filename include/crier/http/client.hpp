// The outbound HTTP/1.1 client (webhook deliveries): http and https, a keep-alive connection pool
// per origin with a cap and a FIFO of waiting requests, timeouts for every phase, an SSRF guard
// asked before every connect, bounded responses. Redirects are not followed.
//
//   crier::http::client c{io.get_executor()};
//   c.async_request({.method = "POST", .url = "https://example.com/hook", .body = "{}"},
//                   [](std::error_code ec, crier::http::client_response r) { ... });
//
// Call the client's members on its executor (e.g. a strand); every completion handler runs on its
// associated executor, by default the client's, never inside async_request().
#pragma once

#include <crier/detail/asio.hpp>

#include <asio/ssl.hpp>

#include <memory>
#include <system_error>
#include <utility>

#include "crier/error.hpp"
#include "crier/http/client_options.hpp"
#include "crier/http/detail/client_pool.hpp"

namespace crier::http {

namespace detail {
template <class Handler, class IoExecutor>
class client_completion_impl final : public client_completion {
  using work_t =
      std::decay_t<decltype(asio::prefer(std::declval<asio::associated_executor_t<Handler, IoExecutor>>(),
                                         asio::execution::outstanding_work.tracked))>;

 public:
  client_completion_impl(Handler h, const IoExecutor& io)
      : work_(asio::prefer(asio::get_associated_executor(h, io), asio::execution::outstanding_work.tracked)),
        h_(std::move(h)) {}

  void complete(std::error_code ec, client_response r) override {
    // Always posted: the caller is in the middle of the pool's bookkeeping (or of async_request).
    asio::post(work_,
               [h = std::move(h_), ec, r = std::move(r)]() mutable { std::move(h)(ec, std::move(r)); });
  }

 private:
  work_t work_;  // keeps the handler's executor busy while the request is pending
  Handler h_;
};
}  // namespace detail

template <class Executor = asio::any_io_executor>
class basic_client {
 public:
  using executor_type = Executor;

  // A null `tls` means a default context made on first https use: peers verified against the
  // system trust store, TLS 1.2 or newer. Whatever the context, each connection sends SNI (host
  // names only) and verifies the peer and its host name (asio::ssl::host_name_verification).
  explicit basic_client(Executor ex, client_options o = {}, std::shared_ptr<asio::ssl::context> tls = nullptr)
      : ex_(std::move(ex)),
        core_(std::make_shared<detail::client_core>(asio::any_io_executor(ex_), std::move(o),
                                                    std::move(tls))) {}
  basic_client(const basic_client&) = delete;
  basic_client& operator=(const basic_client&) = delete;
  // Like shutdown(): pending requests complete with errc::client_stopped.
  ~basic_client() { shutdown(); }

  // Sends `r` and completes with void(std::error_code, client_response) once the whole response
  // has arrived (a 3xx is returned as is), or with the first error: errc::invalid_url,
  // errc::bad_request (a method or header that cannot be sent), errc::address_refused,
  // errc::connect_timeout, errc::response_timeout, errc::request_timeout, errc::bad_response,
  // errc::response_too_large, errc::too_many_connections (the origin's queue is full),
  // errc::client_stopped, or the resolver's / socket's / TLS error.
  template <class CompletionToken>
  auto async_request(client_request r, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(std::error_code, client_response)>(
        [](auto handler, std::shared_ptr<detail::client_core> core, const Executor& ex, client_request r) {
          using handler_t = std::decay_t<decltype(handler)>;
          std::unique_ptr<detail::client_completion> c =
              std::make_unique<detail::client_completion_impl<handler_t, Executor>>(std::move(handler), ex);
          asio::dispatch(ex, [core = std::move(core), r = std::move(r), c = std::move(c)]() mutable {
            core->start(std::move(r), std::move(c));
          });
        },
        token, core_, ex_, std::move(r));
  }

  // Pending and queued requests complete with errc::client_stopped, connections are closed, and
  // later requests fail the same way.
  void shutdown() {
    asio::dispatch(ex_, [core = core_] { core->shutdown(); });
  }

  // Connections open or being opened, over all origins (tests, metrics).
  std::size_t open_connections() const noexcept { return core_->open_connections(); }
  const client_options& options() const noexcept { return core_->options(); }
  executor_type get_executor() const noexcept { return ex_; }

 private:
  Executor ex_;
  std::shared_ptr<detail::client_core> core_;
};

using client = basic_client<>;

}  // namespace crier::http
