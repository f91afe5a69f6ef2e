// A transport defined only in the tests, the way an application would write its own:
// "topic payload\n" lines for requests with `Accept: text/x-lines`.
#pragma once

#include <crier/concepts.hpp>
#include <crier/core/format.hpp>

namespace crier_test {

struct line_transport {
  static constexpr std::string_view name = "lines";
  std::size_t slot = crier::allocate_format_slot();
  bool accepts(const crier::http::request& r) const {
    auto a = r.header("accept");
    return a && *a == "text/x-lines";
  }
  crier::http::response head(const crier::http::request&, const crier::stream_context&) const {
    crier::http::response r;
    r.set("Content-Type", "text/x-lines");
    return r;
  }
  crier::frame_ptr frame(const crier::message& m, const crier::stream_context&) const {
    return m.frame(slot, [](const crier::message& msg) { return msg.topic() + " " + msg.payload() + "\n"; });
  }
  std::string prefix(const crier::message&, const crier::stream_context&) const { return {}; }
  std::string gap_frame(const crier::gap_notice& g, const crier::stream_context&) const {
    return "! gap " + g.topic + "\n";
  }
  crier::frame_ptr heartbeat() const { return nullptr; }
};

}  // namespace crier_test
