// WebSocket on /topics/{topics}: a stream of the topics' payloads, raw (UTF-8 payloads as text
// frames unless their content type is a binary one; anything else as binary frames), encoded
// (and compressed, when negotiated) once per message and shared by every subscriber. A
// client's messages publish to the topic (single-topic connections, when the authorizer
// allows). Gap notices arrive as JSON text frames {"type":"gap",...} (docs/protocol-http.md).
#pragma once

#include <crier/core/envelope.hpp>
#include <crier/transport/websocket_session.hpp>

namespace crier {

// Content types that mean bytes even when they happen to be valid UTF-8: binary frames.
inline bool binary_content_type(std::string_view ct) noexcept {
  for (std::string_view b : {"application/octet-stream", "image/", "audio/", "video/", "application/protobuf",
                             "application/x-protobuf", "application/cbor", "application/msgpack"})
    if (ct.starts_with(b)) return true;
  return false;
}

namespace detail {
inline ws_format_slots& ws_raw_slots() {
  static ws_format_slots slots;
  return slots;
}
}  // namespace detail

template <class Executor>
class websocket_session final : public websocket_session_base<Executor> {
  using base = websocket_session_base<Executor>;

 public:
  using typename base::hub_type;
  using typename base::done_fn;
  // Decides, once, whether this connection's messages may publish to its topic.
  using publish_check = std::function<bool(std::string_view topic)>;

  websocket_session(hub_type& hub, const websocket_options& o, std::optional<detail::ws::deflate_agreement> d,
                    publish_check may_publish, done_fn done)
      : base(hub, o, d, std::move(done)), may_publish_(std::move(may_publish)) {}

  // Subscribes, then answers 101 and takes the connection over. False (with ec) when the hub
  // refused the subscription; the caller answers the error.
  bool start(std::shared_ptr<http::exchange> ex, http::response head, subscribe_request req, std::error_code& ec) {
    if (req.topics.size() == 1 && !is_pattern(req.topics.front())) publish_topic_ = req.topics.front();
    sub_ = this->hub().subscribe(req, *this, ec);
    if (ec) return false;
    this->accept(std::move(ex), std::move(head));
    return true;
  }

 private:
  void on_message(detail::ws::opcode op, std::string& payload) override {
    if (this->options().echo) return this->reply(this->own_frame(payload, op == detail::ws::opcode::text));
    if (publish_topic_.empty())
      return this->close_with(detail::ws::close_code::policy_violation, "publish on a single-topic connection");
    if (!publish_checked_) {
      publish_allowed_ = !may_publish_ || may_publish_(publish_topic_);
      publish_checked_ = true;
      may_publish_ = nullptr;
    }
    if (!publish_allowed_) return this->close_with(detail::ws::close_code::policy_violation, "publish not allowed");
    publish_options po;
    if (op == detail::ws::opcode::binary) po.content_type = "application/octet-stream";
    auto r = this->hub().publish(publish_topic_, std::move(payload), std::move(po));
    if (r.error == errc::payload_too_large) return this->close_with(detail::ws::close_code::message_too_big, r.error.message());
    if (r.error) return this->close_with(detail::ws::close_code::policy_violation, r.error.message());
  }

  void fill(detail::gather_batch& batch, std::size_t limit) override {
    if (!sub_) return;
    auto& s = sub_.state();
    while (batch.size() < limit) {
      auto it = s.next();
      if (!it) break;
      if (it.gap) {
        std::string env;
        append_envelope(env, *it.gap);
        batch.add(detail::ws::make_data_frame(env, true));
        continue;
      }
      batch.add(this->data_frame(*it.msg, detail::ws_raw_slots(), [](const message& m, std::string& out) {
        out = m.payload();
        return m.is_text() && !binary_content_type(m.content_type());
      }));
    }
  }

  std::error_code subscription_error() const override { return sub_ ? sub_->error() : std::error_code{}; }
  void drop_subscriptions() override { sub_.reset(); }

  typename hub_type::subscription sub_;
  std::string publish_topic_;
  publish_check may_publish_;
  bool publish_checked_ = false, publish_allowed_ = false;
};

}  // namespace crier
