// The extension points of crier, as C++20 concepts.
#pragma once

#include <crier/core/local_broker.hpp>
#include <crier/core/subscription.hpp>
#include <crier/http/request.hpp>
#include <crier/http/response.hpp>
#include <crier/transport/context.hpp>

#include <concepts>

namespace crier {

// A streaming transport: recognises its requests, writes a response head, and encodes each
// message once into a frame shared by all its subscribers (message::frame caches it).
template <class T>
concept transport = requires(const T& t, const http::request& req, const stream_context& ctx,
                             const message& m, const gap_notice& g) {
  { T::name } -> std::convertible_to<std::string_view>;
  { t.accepts(req) } -> std::same_as<bool>;
  { t.head(req, ctx) } -> std::same_as<http::response>;      // body = bytes sent first (e.g. SSE retry:)
  { t.frame(m, ctx) } -> std::same_as<frame_ptr>;             // shared: encode once per message
  { t.prefix(m, ctx) } -> std::same_as<std::string>;          // per-subscriber bytes before the frame ("" = none)
  { t.gap_frame(g, ctx) } -> std::same_as<std::string>;       // explicit gap notice
  { t.heartbeat() } -> std::same_as<frame_ptr>;               // keep-alive bytes (nullptr = none)
};

// A subscription as seen by a transport session: drain items in order, learn its cursor and
// whether it ended.
template <class S>
concept subscription_like = requires(S& s, const S& cs, const std::string& topic) {
  { s.next() } -> std::same_as<subscription_state::item>;
  { cs.has_items() } -> std::same_as<bool>;
  { cs.error() } -> std::same_as<std::error_code>;
  { cs.delivered(topic) } -> std::same_as<message_id>;
  { cs.cursor_list() } -> std::same_as<std::string>;
};

// Where messages and history live. The hub calls append() from any thread and the rest on
// its strand; append's callback runs under the broker's ordering guarantee.
template <class B>
concept broker = requires(B& b, publish_args args, std::error_code& ec, const std::string& topic,
                          const message_id* from, const topic_pattern& p) {
  { b.append(std::move(args), ec, [](const message_ptr&) {}) } -> std::same_as<message_ptr>;
  { b.read(topic, from) } -> std::same_as<topic_history::read_result>;
  { b.last_id(topic) } -> std::same_as<message_id>;
  { b.topics_matching(p) } -> std::same_as<std::vector<std::string>>;
};

static_assert(broker<local_broker>);
static_assert(subscription_like<subscription_state>);

}  // namespace crier
