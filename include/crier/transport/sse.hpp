// Server-Sent Events (WHATWG HTML §9.2).
//
// Single-topic streams: every event carries `id: <epoch>:<seq>`, its event name if any, and
// the payload split on LF into `data:` lines, which EventSource joins back with LF: exact
// for UTF-8 text without CR or NUL. Other payloads (binary, or text with CR/NUL) are sent
// base64-encoded with an extra `encoding: base64` field (ignored by EventSource, read by
// crier.js) and, when the message has no event name, `event: binary`, so `onmessage` never
// sees base64 by surprise. Multi-topic streams (several topics or a pattern) send the JSON
// envelope as data (no `event:` line: the envelope names it, and onmessage gets them all) and
// a cursor list as id, so one Last-Event-ID resumes every topic.
// Gaps are `event: gap` with the gap envelope as data.
#pragma once

#include <crier/core/envelope.hpp>
#include <crier/core/format.hpp>
#include <crier/http/request.hpp>
#include <crier/http/response.hpp>
#include <crier/transport/context.hpp>

#include <chrono>

namespace crier {

struct sse_options {
  std::chrono::milliseconds retry{2000};        // `retry:` hint sent first (reconnect delay)
};

class sse_transport {
 public:
  static constexpr std::string_view name = "sse";
  explicit sse_transport(sse_options o = {}) : opts_(o), heartbeat_(std::make_shared<const std::string>(":\n\n")) {}

  bool accepts(const http::request& req) const {
    auto accept = req.header("accept");
    return accept && accept->find("text/event-stream") != std::string_view::npos;
  }

  http::response head(const http::request&, const stream_context&) const {
    http::response r;
    r.set("Content-Type", "text/event-stream; charset=utf-8");
    r.set("Cache-Control", "no-cache, no-store");
    r.set("X-Accel-Buffering", "no");  // proxies (nginx) must not buffer the stream
    r.body = "retry: " + std::to_string(opts_.retry.count()) + "\n\n";
    return r;
  }

  frame_ptr frame(const message& m, const stream_context& ctx) const {
    auto slot = ctx.envelope ? (ctx.multi_topic ? builtin_format::sse_envelope_no_id : builtin_format::sse_envelope)
                             : (ctx.multi_topic ? builtin_format::sse_no_id : builtin_format::sse);
    return m.frame(format_slot(slot), [&](const message& msg) {
      return encode(msg, !ctx.multi_topic, ctx.envelope);
    });
  }

  // Multi-topic: the id is the subscriber's whole cursor, so it cannot be shared.
  std::string prefix(const message&, const stream_context& ctx) const {
    if (!ctx.multi_topic || !ctx.sub) return {};
    return "id: " + ctx.sub->cursor_list() + "\n";
  }

  std::string gap_frame(const gap_notice& g, const stream_context& ctx) const {
    std::string out;
    out += "id: ";
    if (ctx.multi_topic && ctx.sub) out += ctx.sub->cursor_list();
    else message_id{g.next.epoch, g.next.seq ? g.next.seq - 1 : 0}.append_to(out);
    out += "\nevent: gap\ndata: ";
    append_envelope(out, g);
    out += "\n\n";
    return out;
  }

  frame_ptr heartbeat() const { return heartbeat_; }

  static std::string encode(const message& m, bool with_id, bool envelope) {
    std::string out;
    out.reserve(m.payload().size() + 64);
    if (with_id) {
      out += "id: ";
      m.id().append_to(out);
      out += '\n';
    }
    bool raw = !envelope && m.is_line_safe_text();
    if (!envelope && (!m.event().empty() || !raw)) {  // an envelope names its event itself:
                                                      // onmessage sees every message of the stream
      out += "event: ";
      out += m.event().empty() ? "binary" : m.event();
      out += '\n';
    }
    if (envelope) {
      out += "data: ";
      append_envelope(out, m);  // JSON-escaped: no raw newlines
      out += '\n';
    } else if (raw) {
      std::string_view p = m.payload();
      for (;;) {
        auto nl = p.find('\n');
        out += "data: ";
        out.append(p.substr(0, nl));
        out += '\n';
        if (nl == std::string_view::npos) break;
        p.remove_prefix(nl + 1);
      }
    } else {
      out += "encoding: base64\ndata: ";
      detail::append_base64(out, m.payload());
      out += '\n';
    }
    out += '\n';
    return out;
  }

 private:
  sse_options opts_;
  frame_ptr heartbeat_;
};

}  // namespace crier
