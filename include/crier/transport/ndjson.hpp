// HTTP streaming as NDJSON: one JSON envelope per line (see core/envelope.hpp), chunked.
// Heartbeats are empty lines, which NDJSON readers skip.
#pragma once

#include <crier/core/envelope.hpp>
#include <crier/core/format.hpp>
#include <crier/http/request.hpp>
#include <crier/http/response.hpp>
#include <crier/transport/context.hpp>

namespace crier {

class ndjson_transport {
 public:
  static constexpr std::string_view name = "ndjson";
  ndjson_transport() : heartbeat_(std::make_shared<const std::string>("\n")) {}

  bool accepts(const http::request& req) const {
    auto accept = req.header("accept");
    return accept && (accept->find("application/x-ndjson") != std::string_view::npos ||
                      accept->find("application/jsonl") != std::string_view::npos);
  }

  http::response head(const http::request&, const stream_context&) const {
    http::response r;
    r.set("Content-Type", "application/x-ndjson");
    r.set("Cache-Control", "no-cache, no-store");
    r.set("X-Accel-Buffering", "no");
    return r;
  }

  frame_ptr frame(const message& m, const stream_context&) const {
    return m.frame(format_slot(builtin_format::ndjson), [](const message& msg) {
      std::string out;
      append_envelope(out, msg);
      out += '\n';
      return out;
    });
  }
  std::string prefix(const message&, const stream_context&) const { return {}; }
  std::string gap_frame(const gap_notice& g, const stream_context&) const {
    std::string out;
    append_envelope(out, g);
    out += '\n';
    return out;
  }
  frame_ptr heartbeat() const { return heartbeat_; }

 private:
  frame_ptr heartbeat_;
};

}  // namespace crier
