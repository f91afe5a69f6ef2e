// One request/response exchange as seen by a handler (router, transports).
#pragma once

#include <crier/detail/asio.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <system_error>

#include "crier/http/raw_stream.hpp"
#include "crier/http/request.hpp"
#include "crier/http/response.hpp"

namespace crier::http {

// All calls on the server's executor. Handlers keep the shared_ptr as long as they need it;
// dropping the last one before responding makes the connection answer 500 (or close if streaming).
class exchange {
 public:
  virtual ~exchange() = default;
  virtual const request& req() const = 0;
  virtual request& req() = 0;
  // Fixed response: Content-Length added, `Connection: close` when closing; then the next
  // pipelined request is processed.
  virtual void respond(response r) = 0;
  // Sends the head; HTTP/1.1 -> Transfer-Encoding: chunked; HTTP/1.0 -> body until close.
  virtual void start_stream(response head) = 0;
  // One chunk made of these buffers (gather write). At most one in flight; buffers stay valid
  // until cb(ec) runs. An empty write completes without sending anything.
  virtual void async_write(std::span<const asio::const_buffer> buffers, std::function<void(std::error_code)> cb) = 0;
  // Terminating chunk (1.1: keep-alive continues) or close (1.0).
  virtual void finish_stream() = 0;
  // Abort the connection now (on_close is not called for a close the handler asked for).
  virtual void close() = 0;
  // Called once if the exchange ends before it completed: peer closed/reset (asio error), or the
  // server is stopping gracefully (crier::errc::server_stopping: finish/respond promptly).
  virtual void on_close(std::function<void(std::error_code)> cb) = 0;
  virtual bool is_open() const = 0;
  virtual asio::any_io_executor get_executor() const = 0;
  // Protocol upgrade (e.g. WebSocket), also on a request that did not ask for one (the handler's choice).
  // Sends `head` as is (status 101 and its headers; no body, no Content-Length/Transfer-Encoding added)
  // and hands the connection over: the exchange is done, the HTTP connection no longer reads or writes
  // it, its timers stop, and the server counts it until the raw stream is closed (see raw_stream::on_stop).
  // `cb` gets the stream once the head is written, or an error: not_connected (closed), in_progress
  // (already answered), operation_not_supported (further pipelined requests already parsed; the
  // exchange is still pending then), or the write's error.
  virtual void upgrade(response head, std::function<void(std::error_code, std::shared_ptr<raw_stream>)> cb) = 0;
  // Bytes of the write in flight (backpressure accounting), 0 if none.
  virtual std::size_t bytes_queued() const = 0;
  // The peer's IP address (the TCP connection's, not a forwarded one); nullopt when unknown.
  virtual std::optional<asio::ip::address> remote_address() const { return std::nullopt; }
};

using handler = std::function<void(std::shared_ptr<exchange>)>;

}  // namespace crier::http
