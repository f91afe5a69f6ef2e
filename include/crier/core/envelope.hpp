// The JSON envelope of one message or gap notice, shared by NDJSON streaming, long-poll and
// poll (documented in docs/protocol-http.md):
//   {"type":"message","topic":"a","id":"1f2e3d4c:7","event":"x","time":1700000000123,
//    "data":"..."}                       text payload (valid UTF-8)
//   {... "encoding":"base64","data":"..."}   any other payload
//   {"type":"gap","topic":"a","reason":"trimmed","after":"..:3","next":"..:9","missed":5}
#pragma once

#include <crier/core/message.hpp>
#include <crier/detail/base64.hpp>
#include <crier/detail/json.hpp>

#include <chrono>

namespace crier {

// The envelope without its payload and closing brace: {"type":"message",...,"time":T
inline void append_envelope_head(std::string& out, const message& m) {
  out += R"({"type":"message","topic":)";
  detail::append_json_string(out, m.topic());
  out += R"(,"id":")";
  m.id().append_to(out);
  out += '"';
  if (!m.event().empty()) {
    out += R"(,"event":)";
    detail::append_json_string(out, m.event());
  }
  if (!m.content_type().empty()) {
    out += R"(,"content_type":)";
    detail::append_json_string(out, m.content_type());
  }
  out += R"(,"time":)";
  out += std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(m.published().time_since_epoch()).count());
}

inline void append_envelope(std::string& out, const message& m) {
  out.reserve(out.size() + m.payload().size() + m.topic().size() + 96);
  append_envelope_head(out, m);
  if (m.is_text()) {
    out += R"(,"data":)";
    detail::append_json_string(out, m.payload());
  } else {
    out += R"(,"encoding":"base64","data":")";
    detail::append_base64(out, m.payload());
    out += '"';
  }
  out += '}';
}

inline void append_envelope(std::string& out, const gap_notice& g) {
  out += R"({"type":"gap","topic":)";
  detail::append_json_string(out, g.topic);
  out += R"(,"reason":")";
  out += to_string(g.reason);
  out += R"(","after":")";
  g.after.append_to(out);
  out += R"(","next":")";
  g.next.append_to(out);
  out += R"(","missed":)";
  out += std::to_string(g.missed);
  out += '}';
}

}  // namespace crier
