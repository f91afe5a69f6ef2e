// A relay client on WebSocket (GET /relay): hello, then relayed requests go down as binary
// frames and the client's answers come back as binary or text frames (docs/relay.md).
#pragma once

#include <crier/relay/relay.hpp>
#include <crier/transport/websocket_session.hpp>

namespace crier {

template <class Executor>
class relay_websocket_session final : public websocket_session_base<Executor>, public basic_relay<Executor>::link {
  using base = websocket_session_base<Executor>;
  using opcode = detail::ws::opcode;
  using relay_type = basic_relay<Executor>;

 public:
  using typename base::hub_type;
  using typename base::done_fn;

  relay_websocket_session(hub_type& hub, const websocket_options& o, std::optional<detail::ws::deflate_agreement> d,
                          relay_type& relay, std::weak_ptr<int> relay_life, http::request handshake, done_fn done)
      : base(hub, o, d, std::move(done)),
        relay_(relay),
        life_(std::move(relay_life)),
        handshake_(std::move(handshake)),
        opened_(std::chrono::steady_clock::now()) {}

  void start(std::shared_ptr<http::exchange> ex, http::response head) { this->accept(std::move(ex), std::move(head)); }

  void deliver(const relay_wire::request& r) override {
    if (auto f = relay_wire::request_frame(r)) this->reply(this->own_frame(*f, false));
  }
  void replaced() override {
    token_.clear();  // no longer ours: closing must not detach the new connection
    this->close_with(4000, "replaced");
  }

  void tick(std::chrono::steady_clock::time_point stalled_before) override {
    if (token_.empty() && !this->closing() && std::chrono::steady_clock::now() - opened_ > relay_.options().hello_timeout)
      this->close_with(detail::ws::close_code::policy_violation, "no hello");
    base::tick(stalled_before);
  }

 private:
  void on_message(opcode op, std::string& payload) override {
    if (life_.expired()) return;
    if (op == opcode::binary) {
      if (token_.empty()) return this->close_with(detail::ws::close_code::policy_violation, "hello first");
      relay_wire::response r;
      auto bad = relay_wire::read_answer_frame(payload, r, relay_.options().max_body, relay_.options().max_header_bytes);
      return settle(bad, std::move(r));
    }
    picojson::value v;
    std::string err;
    picojson::parse(v, payload.begin(), payload.end(), &err);
    if (!err.empty() || !v.is<picojson::object>()) return send(relay_wire::error_json("bad_request", "not a JSON object"));
    auto& o = v.get<picojson::object>();
    auto type = o.find("type");
    std::string t = type != o.end() && type->second.is<std::string>() ? type->second.get<std::string>() : "";
    if (t == "hello") return hello(o);
    if (token_.empty()) return this->close_with(detail::ws::close_code::policy_violation, "hello first");
    if (t == "ping") return send(R"({"type":"pong"})");
    if (t != "response") return send(relay_wire::error_json("unknown_type", "hello, response or ping"));
    relay_wire::response r;
    auto bad = relay_wire::read_answer(o, r, relay_.options().max_body, relay_.options().max_header_bytes);
    settle(bad, std::move(r));
  }

  void hello(const picojson::object& o) {
    if (!token_.empty()) return send(relay_wire::error_json("bad_request", "hello was already said"));
    auto str = [&](const char* k) {
      auto it = o.find(k);
      return it != o.end() && it->second.is<std::string>() ? it->second.get<std::string>() : std::string();
    };
    auto h = relay_.hello(str("token"), str("secret"), this);
    if (!h) return this->close_with(detail::ws::close_code::try_again_later, "too many relay clients");
    token_ = h->token;
    send(relay_wire::ready_json(h->token, h->secret, relay_.url_for(handshake_, h->token), h->resumed,
                                relay_.options().idle_expiry.count()));
  }

  void settle(const std::optional<std::string>& bad, relay_wire::response r) {
    if (bad) return send(relay_wire::error_json("bad_request", *bad));
    std::string why;
    if (!relay_.answer(token_, std::move(r), why)) send(relay_wire::error_json("bad_request", why));
  }

  void send(std::string_view json) { this->reply(this->own_frame(json, true)); }

  // No hub subscriptions: only this connection's own frames.
  void fill(detail::gather_batch&, std::size_t) override {}
  std::error_code subscription_error() const override { return {}; }
  void drop_subscriptions() override {
    if (!token_.empty() && !life_.expired()) relay_.detach(std::exchange(token_, std::string()), this);
  }

  relay_type& relay_;
  std::weak_ptr<int> life_;  // the relay's: it may be gone before this connection
  http::request handshake_;
  std::string token_;        // after hello
  std::chrono::steady_clock::time_point opened_;
};

}  // namespace crier
