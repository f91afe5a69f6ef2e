// Limits and timeouts of the embedded HTTP/1.1 server.
#pragma once

#include <chrono>
#include <cstddef>

namespace crier::http {

struct server_options {
  std::size_t max_request_line = 8 * 1024;                     // request target longer -> 414
  std::size_t max_header_bytes = 64 * 1024;                    // all header bytes -> 431
  std::size_t max_headers = 100;                               // header count -> 431
  std::size_t max_body_bytes = 16 * 1024 * 1024 + 64 * 1024;   // -> 413 (allows 16 MiB payloads + framing)
  std::chrono::milliseconds header_timeout{10'000};            // head unfinished (slowloris) -> 408 + close
  std::chrono::milliseconds body_timeout{60'000};              // body unfinished -> 408 + close
  std::chrono::milliseconds idle_timeout{60'000};              // idle keep-alive connection closed silently
  std::chrono::milliseconds shutdown_timeout{5'000};           // graceful stop forces connections closed after this
  std::size_t max_connections = 100'000;                       // over -> 503 JSON + close
  std::size_t max_pipelined = 32;                              // requests buffered behind a pending one
  bool require_length = false;                                 // POST/PUT/PATCH without Content-Length or chunked -> 411
  std::chrono::milliseconds linger_timeout{2'000};             // after an error response, drain input this long before closing
  std::size_t max_stream_input = 4 * 1024;                     // bytes a client may send while we stream before we close
};

}  // namespace crier::http
