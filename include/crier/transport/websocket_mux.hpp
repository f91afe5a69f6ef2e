// WebSocket on /ws: many subscriptions and publishes over one connection, in the JSON
// protocol of ws_protocol.hpp (docs/protocol.md). Message frames are encoded (and compressed)
// once per message and shared by every /ws subscriber of it.
#pragma once

#include <crier/authorize.hpp>
#include <crier/transport/websocket.hpp>
#include <crier/transport/ws_protocol.hpp>

#include <map>

namespace crier {

namespace detail {
inline ws_format_slots& ws_mux_slots() {
  static ws_format_slots slots;
  return slots;
}
}  // namespace detail

template <class Executor>
class websocket_mux_session final : public websocket_session_base<Executor> {
  using base = websocket_session_base<Executor>;
  using opcode = detail::ws::opcode;
  using command_type = ws_protocol::command_type;

 public:
  using typename base::hub_type;
  using typename base::done_fn;
  // Asked before each subscribe and publish (empty = all allowed).
  using access_check = std::function<bool(access, std::string_view topic)>;

  websocket_mux_session(hub_type& hub, const websocket_options& o, std::optional<detail::ws::deflate_agreement> d,
                        access_check check, done_fn done)
      : base(hub, o, d, std::move(done)), check_(std::move(check)) {}

  void start(std::shared_ptr<http::exchange> ex, http::response head) { this->accept(std::move(ex), std::move(head)); }

 private:
  void on_message(opcode op, std::string& payload) override {
    ws_protocol::command c;
    auto err = op == opcode::text ? ws_protocol::parse_text(payload, c) : ws_protocol::parse_binary(payload, c);
    if (err) return send(ws_protocol::error(err->ref, err->op, err->topic, err->code, err->message));
    switch (c.type) {
      case command_type::ping: return send(ws_protocol::pong(c.ref));
      case command_type::subscribe: return subscribe(c);
      case command_type::unsubscribe: return unsubscribe(c);
      case command_type::publish: return publish(c);
    }
  }

  void subscribe(const ws_protocol::command& c) {
    auto refuse = [&](std::string_view code, std::string_view msg) {
      send(ws_protocol::error(c.ref, c.type, c.topic, code, msg));
    };
    auto existing = subs_.find(c.topic);
    if (existing == subs_.end() && subs_.size() >= this->options().max_subscriptions)
      return refuse("too_many_subscriptions", "this connection has as many subscriptions as it may");
    std::error_code ec;
    subscribe_request req{.topics = {c.topic}};
    if (!c.since.empty()) req.since = cursor::parse(c.since, ec);
    if (ec) return refuse("invalid_id", "\"since\" is not a resume position");
    if (is_pattern(c.topic)) topic_pattern::parse(c.topic, ec);
    else ec = validate_topic(c.topic);
    if (ec) return refuse("invalid_topic", ec.message());
    if (check_ && !check_(access::subscribe, c.topic)) return refuse("forbidden", "not allowed to subscribe here");
    // Ack first: it goes out ahead of every message of the new subscription.
    send(ws_protocol::ack(c.type, c.ref, c.topic));
    if (existing != subs_.end()) existing->second.reset();  // again = start over from `since`
    auto sub = this->hub().subscribe(req, *this, ec);
    if (ec) {
      if (existing != subs_.end()) subs_.erase(existing);
      return refuse(ec == errc::too_many_topics ? "too_many_topics" : "unavailable", ec.message());
    }
    subs_.insert_or_assign(c.topic, std::move(sub));
  }

  void unsubscribe(const ws_protocol::command& c) {
    auto it = subs_.find(c.topic);
    if (it == subs_.end())
      return send(ws_protocol::error(c.ref, c.type, c.topic, "not_subscribed", "no subscription to this topic"));
    subs_.erase(it);
    send(ws_protocol::ack(c.type, c.ref, c.topic));
  }

  void publish(ws_protocol::command& c) {
    auto refuse = [&](std::string_view code, std::string_view msg) {
      send(ws_protocol::error(c.ref, c.type, c.topic, code, msg));
    };
    if (is_pattern(c.topic)) return refuse("invalid_topic", "publish to exactly one topic name");
    if (check_ && !check_(access::publish, c.topic)) return refuse("forbidden", "not allowed to publish here");
    auto r = this->hub().publish(c.topic, std::move(c.data), {.event = std::move(c.event),
                                                                .content_type = std::move(c.content_type)});
    if (!r.error) return send(ws_protocol::ack(c.type, c.ref, c.topic, &r.id));
    std::string_view code = "bad_request";
    if (r.error == errc::invalid_topic) code = "invalid_topic";
    else if (r.error == errc::payload_too_large) code = "payload_too_large";
    else if (r.error == errc::invalid_event_name) code = "invalid_event_name";
    else if (r.error == errc::invalid_content_type) code = "invalid_content_type";
    else if (r.error == errc::hub_stopped) code = "unavailable";
    refuse(code, r.error.message());
  }

  void send(std::string json) { this->reply(this->own_frame(json, true)); }

  // Round-robin over the subscriptions, so one busy topic cannot hold the others back.
  void fill(detail::gather_batch& batch, std::size_t limit) override {
    if (subs_.empty()) return;
    bool progress = true;
    while (progress && batch.size() < limit) {
      progress = false;
      for (auto& [topic, sub] : subs_) {
        auto it = sub.state().next();
        if (!it) continue;
        progress = true;
        if (it.gap) {
          std::string env;
          append_envelope(env, *it.gap);
          batch.add(detail::ws::make_data_frame(env, true));
        } else {
          batch.add(this->data_frame(*it.msg, detail::ws_mux_slots(), [](const message& m, std::string& out) {
            return ws_protocol::encode_message(m, !m.is_text() || binary_content_type(m.content_type()), out);
          }));
        }
        if (batch.size() >= limit) break;
      }
    }
  }

  std::error_code subscription_error() const override {
    for (auto& [topic, sub] : subs_)
      if (auto e = sub->error()) return e;
    return {};
  }
  void drop_subscriptions() override { subs_.clear(); }

  access_check check_;
  std::map<std::string, typename hub_type::subscription, std::less<>> subs_;  // by topic or pattern
};

}  // namespace crier
