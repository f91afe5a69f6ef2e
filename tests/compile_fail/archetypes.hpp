// Minimal models of crier's concepts for the compile-fail tests. Each member can be left out
// with -DCRIER_OMIT_<member> (or given a wrong return type with -DCRIER_WRONG_<member>), so
// every "bad" type is exactly the control type minus one requirement.
#pragma once

#include <crier/concepts.hpp>

namespace compile_fail {

// crier::transport: an HTTP streaming transport (server::add_transport).
struct transport_model {
#ifndef CRIER_OMIT_name
  static constexpr std::string_view name = "model";
#endif
#ifndef CRIER_OMIT_accepts
  bool accepts(const crier::http::request&) const { return false; }
#endif
#ifndef CRIER_OMIT_head
  crier::http::response head(const crier::http::request&, const crier::stream_context&) const { return {}; }
#endif
#ifndef CRIER_OMIT_frame
#ifdef CRIER_WRONG_frame
  std::string frame(const crier::message& m, const crier::stream_context&) const { return m.payload(); }
#else
  crier::frame_ptr frame(const crier::message& m, const crier::stream_context&) const {
    return m.frame(0, [](const crier::message& msg) { return msg.payload(); });
  }
#endif
#endif
#ifndef CRIER_OMIT_prefix
  std::string prefix(const crier::message&, const crier::stream_context&) const { return {}; }
#endif
#ifndef CRIER_OMIT_gap_frame
  std::string gap_frame(const crier::gap_notice&, const crier::stream_context&) const { return {}; }
#endif
#ifndef CRIER_OMIT_heartbeat
  crier::frame_ptr heartbeat() const { return nullptr; }
#endif
};

// crier::subscription_like: what a session drains.
struct subscription_model {
#ifndef CRIER_OMIT_next
  crier::subscription_state::item next() { return {}; }
#endif
#ifndef CRIER_OMIT_has_items
  bool has_items() const { return false; }
#endif
#ifndef CRIER_OMIT_error
  std::error_code error() const { return {}; }
#endif
#ifndef CRIER_OMIT_delivered
  crier::message_id delivered(const std::string&) const { return {}; }
#endif
#ifndef CRIER_OMIT_cursor_list
  std::string cursor_list() const { return {}; }
#endif
};

// crier::broker: where messages and history live.
struct broker_model {
#ifndef CRIER_OMIT_append
  template <class OnAppend>
  crier::message_ptr append(crier::publish_args&&, std::error_code&, OnAppend&&) { return nullptr; }
#endif
#ifndef CRIER_OMIT_read
  crier::topic_history::read_result read(const std::string&, const crier::message_id*) { return {}; }
#endif
#ifndef CRIER_OMIT_last_id
  crier::message_id last_id(const std::string&) const { return {}; }
#endif
#ifndef CRIER_OMIT_topics_matching
  std::vector<std::string> topics_matching(const crier::topic_pattern&) const { return {}; }
#endif
};

}  // namespace compile_fail
