// A connection taken over by a handler after a protocol upgrade (exchange::upgrade), e.g. WebSocket.
// Type-erased over the server's stream type (plain TCP now, TLS later).
#pragma once

#include <crier/detail/asio.hpp>

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <system_error>

namespace crier::http {

// All calls on get_executor() (the server's). The stream pins itself while an operation is in flight;
// otherwise the owner's shared_ptr keeps it. Dropping the last reference closes the socket.
class raw_stream {
 public:
  virtual ~raw_stream() = default;
  // Bytes the client sent after the upgrade request that the HTTP parser already read (pipelined),
  // handed out once; call it before the first read.
  virtual std::string take_leftover() = 0;
  // Completes with eof when the peer closed, operation_aborted after close().
  virtual void async_read_some(asio::mutable_buffer b, std::function<void(std::error_code, std::size_t)> cb) = 0;
  // Gather write of all buffers; at most one in flight (a second completes with in_progress);
  // the buffers (and the array they sit in) stay valid until cb runs.
  virtual void async_write(std::span<const asio::const_buffer> b, std::function<void(std::error_code, std::size_t)> cb) = 0;
  // Writes what the socket takes at once, without blocking and without an asynchronous
  // operation (fan-out to thousands of connections: one system call each, no handler).
  // Returns the bytes written, 0 when the socket's buffer is full or the stream cannot (TLS);
  // sets ec on a broken connection. Not while an async_write is in flight.
  virtual std::size_t try_write(std::span<const asio::const_buffer> b, std::error_code& ec) = 0;
  // Closes the socket; pending operations complete with operation_aborted. Drops the on_stop callback.
  virtual void close() = 0;
  // Half-close (no more sends), e.g. after a WebSocket close handshake.
  virtual void shutdown_send() = 0;
  virtual bool is_open() const = 0;
  virtual asio::any_io_executor get_executor() const = 0;
  // Called once (posted) when the server stops gracefully (crier::errc::server_stopping), also when
  // registered after the stop began: close the protocol cleanly (e.g. WebSocket close 1001), then close().
  // The server's stop() completes when every raw stream is closed, or after shutdown_timeout (then it
  // force-closes them).
  virtual void on_stop(std::function<void()> cb) = 0;
};

}  // namespace crier::http
