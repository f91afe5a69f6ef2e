// The front door: an HTTP server on the hub's strand that routes
//   /topics/{topics}   POST publishes; GET subscribes over WebSocket, SSE, NDJSON, long-poll or poll
//   /ws                WebSocket, the multiplexed JSON protocol (docs/protocol.md)
//   /api/v1/subscriptions   webhook subscriptions (REST hooks)
//   /websub, /pleaseNotify  a WebSub hub and rssCloud, delivering through the same engine
//   /relay, /relay/{token}/…  public URLs for clients behind NAT (docs/relay.md)
//   /crier.js, /crier.classic.js  the browser client
//   /healthz, /metrics, and "/" when an index page is configured
// and hands sockets an application accepted itself to crier (adopt()).
#pragma once

#include <crier/core/hub.hpp>
#include <crier/http/server.hpp>
#include <crier/server_options.hpp>
#include <crier/transport/longpoll.hpp>
#include <crier/transport/ndjson.hpp>
#include <crier/transport/sse.hpp>
#include <crier/transport/stream_session.hpp>
#include <crier/transport/subscribe_params.hpp>
#include <crier/transport/websocket.hpp>
#include <crier/transport/websocket_mux.hpp>
#include <crier/relay/relay.hpp>
#include <crier/relay/websocket_link.hpp>
#include <crier/detail/client_js.hpp>
#include <crier/webhook/engine.hpp>
#include <crier/webhook/rest_api.hpp>
#include <crier/webhook/rsscloud.hpp>
#include <crier/webhook/websub.hpp>
#include <crier/webhook/ssrf.hpp>

#include <asio/steady_timer.hpp>

#include <stdexcept>
#include <unordered_map>

namespace crier {

template <class Executor = asio::any_io_executor>
class basic_server {
 public:
  using hub_type = basic_hub<Executor>;
  using strand_type = typename hub_type::executor_type;

  // Listens on o.listen (unless empty); throws std::system_error if it cannot.
  explicit basic_server(hub_type& hub, server_options o = {})
      : hub_(hub),
        opts_(std::move(o)),
        http_(hub.get_executor(), opts_.http, [this](std::shared_ptr<http::exchange> ex) { route(std::move(ex)); }),
        heartbeat_timer_(hub.get_executor()) {
    add_transport(sse_transport{opts_.sse});
    add_transport(ndjson_transport{});
    if (opts_.relay_api) relay_ = std::make_unique<basic_relay<Executor>>(hub.get_executor(), opts_.relay, opts_.prefix);
    if (opts_.webhooks_api) {
      auto eo = opts_.webhooks;
      if (relay_ && !eo.local_route)  // deliveries to our relay URLs skip the network
        eo.local_route = [r = relay_.get()](http::client_request& req, auto& done) { return r->local_route(req, done); };
      if (!eo.client.address_allowed) {  // refuse private and reserved targets (SSRF) by default
        webhook::address_guard guard;
        for (auto& r : opts_.webhook_allow) {
          std::error_code ec;
          if (!guard.allow(r, ec)) throw std::system_error(ec, "crier: webhook_allow \"" + r + "\"");
        }
        eo.client.address_allowed = std::move(guard);
      }
      webhooks_ = std::make_unique<webhook::basic_engine<Executor>>(hub_, std::move(eo));
      rest_ = std::make_unique<webhook::basic_rest_api<Executor>>(
          *webhooks_, [this](std::string_view topic, const http::request& req) {
            return allowed(access::subscribe, topic, req);
          });
      websub_ = std::make_unique<webhook::basic_websub_hub<Executor>>(*webhooks_, hub_, opts_.websub, opts_.authorize);
      rsscloud_ = std::make_unique<webhook::basic_rsscloud<Executor>>(*webhooks_, opts_.rsscloud, opts_.authorize);
    }
    if (!opts_.listen.empty())
      if (auto ec = http_.listen(opts_.listen)) throw std::system_error(ec, "crier: listen on " + opts_.listen);
    if (opts_.heartbeat.count() > 0) arm_heartbeat();
  }
  basic_server(const basic_server&) = delete;
  basic_server& operator=(const basic_server&) = delete;
  // Closes what is left; handlers still queued find the server gone (life_ expired).
  ~basic_server() {
    life_.reset();
    rest_.reset();
    websub_.reset();
    rsscloud_.reset();
    if (webhooks_) webhooks_->shutdown();
    if (relay_) relay_->shutdown();
    heartbeat_timer_.cancel();
    auto streams = std::move(streams_);
    for (auto& [p, s] : streams) s->abandon();
    auto polls = std::move(polls_);
    for (auto& [p, s] : polls) s->abandon();
  }

  // Registers a streaming transport; the ones added last are asked first, so an
  // application's transport can take requests before the built-ins.
  template <transport T>
  void add_transport(T t) {
    transports_.insert(transports_.begin(), std::make_unique<transport_slot<T>>(std::move(t)));
  }

  std::vector<asio::ip::tcp::endpoint> local_endpoints() const { return http_.local_endpoints(); }
  // "http://127.0.0.1:8080/" for the first listening endpoint.
  std::string url() const {
    auto eps = local_endpoints();
    if (eps.empty()) return {};
    auto addr = eps.front().address();
    auto host = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
    return "http://" + host + ":" + std::to_string(eps.front().port()) + opts_.prefix + "/";
  }
  void adopt(asio::ip::tcp::socket s, std::string_view already_read = {}) { http_.adopt(std::move(s), already_read); }

  // Graceful: stop accepting; streams end cleanly, waiting long-polls answer; then done().
  void stop(std::function<void()> done = {}) {
    heartbeat_timer_.cancel();
    if (websub_) websub_->shutdown();
    if (webhooks_) webhooks_->shutdown();  // deliveries in flight are abandoned; timers end
    if (relay_) relay_->shutdown();        // relayed requests waiting get 503
    http_.stop(std::move(done));
  }

  std::size_t stream_count() const noexcept { return streams_.size(); }
  std::size_t waiting_polls() const noexcept { return polls_.size(); }
  const server_options& options() const noexcept { return opts_; }
  // The webhook engine (the C++ API behind /api/v1/subscriptions); null when webhooks_api is off.
  webhook::basic_engine<Executor>* webhooks() noexcept { return webhooks_.get(); }
  webhook::basic_websub_hub<Executor>* websub() noexcept { return websub_.get(); }
  // The relay (null when relay_api is off).
  basic_relay<Executor>* relay() noexcept { return relay_.get(); }

 private:
  // Type erasure for streaming transports: a user's type works alongside the built-ins.
  struct transport_slot_base {
    virtual ~transport_slot_base() = default;
    virtual bool accepts(const http::request&) const = 0;
    virtual void start(basic_server&, std::shared_ptr<http::exchange>, subscribe_params&) const = 0;
  };
  template <class T>
  struct transport_slot final : transport_slot_base {
    explicit transport_slot(T t) : t_(std::make_shared<const T>(std::move(t))) {}
    bool accepts(const http::request& r) const override { return t_->accepts(r); }
    void start(basic_server& srv, std::shared_ptr<http::exchange> ex, subscribe_params& p) const override {
      stream_context ctx{.multi_topic = p.multi_topic(), .envelope = p.envelope || p.multi_topic()};
      auto s = std::make_shared<stream_session<T, Executor>>(
          t_, ex, ctx, [&srv, life = std::weak_ptr<int>(srv.life_)](stream_session<T, Executor>* s) {
            if (life.lock()) srv.streams_.erase(s);
          });
      http::response cors;
      srv.apply_cors(ex->req(), &cors);
      std::error_code ec;
      if (!s->start(srv.hub_, {.topics = std::move(p.topics), .since = std::move(p.since)}, cors.headers,
                    srv.opts_.max_stream_duration, ec))
        return srv.fail(*ex, 400, ec);
      srv.streams_.emplace(s.get(), s);
      ++srv.streams_opened_;
    }
    std::shared_ptr<const T> t_;
  };

  void route(std::shared_ptr<http::exchange> ex) {
    auto& req = ex->req();
    std::string_view path = req.path();
    if (!path.starts_with(opts_.prefix)) return not_found(*ex);
    path.remove_prefix(opts_.prefix.size());
    if (path.starts_with("/topics/")) return topics(std::move(ex), path.substr(8));
    if (path == "/ws") return websocket_mux(std::move(ex));
    if (relay_ && (path == "/relay" || path.starts_with("/relay/"))) return relay_route(std::move(ex), path);
    if (opts_.client_js && (path == "/crier.js" || path == "/crier.classic.js")) return client_js(*ex, path);
    if (rest_ && rest_->handle(*ex, path)) return;
    if (websub_ && websub_->handle(*ex, path)) return;
    if (rsscloud_ && rsscloud_->handle(ex, path)) return;
    if (path == "/healthz") {
      if (only_get(*ex)) ex->respond(http::response::json(200, R"({"status":"ok"})"));
      return;
    }
    if (path == "/metrics") {
      if (only_get(*ex)) ex->respond(metrics());
      return;
    }
    if (path == "/" && !opts_.index_html.empty()) {
      if (!only_get(*ex)) return;
      http::response r;
      r.set("Content-Type", "text/html; charset=utf-8");
      r.body = opts_.index_html;
      return ex->respond(std::move(r));
    }
    not_found(*ex);
  }

  void topics(std::shared_ptr<http::exchange> ex, std::string_view topics_part) {
    auto& req = ex->req();
    auto method = req.method();
    if (method == "OPTIONS") {
      http::response r;
      r.status = 204;
      r.set("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      r.set("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID, Crier-Event");
      r.set("Access-Control-Max-Age", "600");
      apply_cors(req, &r);
      return ex->respond(std::move(r));
    }
    if (method == "POST") return publish(*ex, topics_part);
    if (is_websocket_request(req)) return websocket(std::move(ex), topics_part);
    if (method != "GET") {
      auto r = http::response::error(405, "method_not_allowed", "use GET to subscribe or POST to publish");
      r.set("Allow", "GET, POST, OPTIONS");
      return ex->respond(std::move(r));
    }
    const transport_slot_base* stream = nullptr;
    for (auto& t : transports_)
      if (t->accepts(req)) {
        stream = t.get();
        break;
      }
    subscribe_params p;
    if (auto err = parse_subscribe_params(req, topics_part, opts_.max_topics_per_request, stream != nullptr, p))
      return ex->respond(with_cors(req, http::response::error(400, err->code, err->message)));
    for (auto& t : p.topics)
      if (!allowed(access::subscribe, t, req)) return forbid(*ex);
    if (stream) return stream->start(*this, std::move(ex), p);

    bool longpoll = p.wait.has_value();
    auto wait = longpoll ? std::min<std::chrono::milliseconds>(*p.wait, opts_.max_wait) : std::chrono::milliseconds(0);
    if (!longpoll && p.since.what == cursor::kind::none) p.since.what = cursor::kind::all;  // poll: all held
    http::response cors;
    apply_cors(req, &cors);
    auto s = std::make_shared<longpoll_session<Executor>>(
        ex, p.multi_topic(), opts_.max_poll_bytes, std::move(cors.headers),
        [this, life = std::weak_ptr<int>(life_)](longpoll_session<Executor>* s) {
          if (life.lock()) polls_.erase(s);
        });
    s->topic_ = p.topics.front();
    polls_.emplace(s.get(), s);  // before start(): it may answer (and erase) at once
    std::error_code ec;
    if (!s->start(hub_, {.topics = std::move(p.topics), .since = std::move(p.since)}, wait, ec)) {
      polls_.erase(s.get());
      fail(*ex, 400, ec);
    }
  }

  void websocket(std::shared_ptr<http::exchange> ex, std::string_view topics_part) {
    auto& req = ex->req();
    subscribe_params p;
    if (auto err = parse_subscribe_params(req, topics_part, opts_.max_topics_per_request, false, p))
      return ex->respond(http::response::error(400, err->code, err->message));
    auto hs = websocket_handshake(req, opts_.websocket);
    if (!hs.ok) return ex->respond(std::move(hs.response));
    for (auto& t : p.topics)
      if (!allowed(access::subscribe, t, req)) return forbid(*ex);
    // The publish right is asked on the first message, so a read-only client costs nothing.
    typename websocket_session<Executor>::publish_check may_publish;
    if (opts_.authorize)
      may_publish = [this, life = std::weak_ptr<int>(life_), handshake = without_body(req)](std::string_view topic) {
        return life.lock() && allowed(access::publish, topic, handshake);
      };
    auto s = std::make_shared<websocket_session<Executor>>(hub_, opts_.websocket, hs.deflate, std::move(may_publish),
                                                           stream_done());
    const void* key = static_cast<websocket_session_base<Executor>*>(s.get());  // what stream_done() erases
    streams_.emplace(key, s);
    std::error_code ec;
    if (!s->start(ex, std::move(hs.response), {.topics = std::move(p.topics), .since = std::move(p.since)}, ec)) {
      streams_.erase(key);
      return fail(*ex, 400, ec);
    }
    ++streams_opened_;
  }

  void websocket_mux(std::shared_ptr<http::exchange> ex) {
    auto& req = ex->req();
    if (!is_websocket_request(req))
      return ex->respond(http::response::error(426, "upgrade_required", "/ws speaks WebSocket only"));
    static constexpr std::string_view builtin[] = {ws_protocol::subprotocol};
    auto hs = websocket_handshake(req, opts_.websocket, builtin);
    if (!hs.ok) return ex->respond(std::move(hs.response));
    if (!allowed(access::connect, {}, req)) return forbid(*ex);
    typename websocket_mux_session<Executor>::access_check check;
    if (opts_.authorize)
      check = [this, life = std::weak_ptr<int>(life_), handshake = without_body(req)](access a, std::string_view topic) {
        return life.lock() && allowed(a, topic, handshake);
      };
    auto s = std::make_shared<websocket_mux_session<Executor>>(hub_, opts_.websocket, hs.deflate, std::move(check),
                                                               stream_done());
    streams_.emplace(static_cast<websocket_session_base<Executor>*>(s.get()), s);
    s->start(ex, std::move(hs.response));
    ++streams_opened_;
  }

  void relay_route(std::shared_ptr<http::exchange> ex, std::string_view path) {
    auto& req = ex->req();
    if (path == "/relay" && (is_websocket_request(req) || req.method() == "POST") &&
        !allowed(access::relay, {}, req))
      return forbid(*ex);
    if (path != "/relay" || !is_websocket_request(req)) {
      relay_->handle(ex, path);
      return;
    }
    auto hs = websocket_handshake(req, opts_.websocket, {});
    if (!hs.ok) return ex->respond(std::move(hs.response));
    auto s = std::make_shared<relay_websocket_session<Executor>>(hub_, opts_.websocket, hs.deflate, *relay_,
                                                                 relay_->life(), without_body(req), stream_done());
    streams_.emplace(static_cast<websocket_session_base<Executor>*>(s.get()), s);
    s->start(ex, std::move(hs.response));
    ++streams_opened_;
  }

  // The browser client (clients/js/crier.js, embedded by scripts/gen-client-js), revalidated by ETag.
  void client_js(http::exchange& ex, std::string_view path) {
    if (!only_get(ex)) return;
    bool classic = path == "/crier.classic.js";
    auto etag = classic ? detail::client_js_classic_etag() : detail::client_js_module_etag();
    http::response r;
    r.set("ETag", std::string(etag));
    r.set("Cache-Control", "no-cache");
    r.set("Access-Control-Allow-Origin", "*");  // a public script: any page may import it
    if (ex.req().header("if-none-match") == etag) {
      r.status = 304;
      return ex.respond(std::move(r));
    }
    r.set("Content-Type", "text/javascript; charset=utf-8");
    r.body = std::string(classic ? detail::client_js_classic() : detail::client_js_module());
    ex.respond(std::move(r));
  }

  // Removes a finished WebSocket session from streams_ (if the server still exists).
  auto stream_done() {
    return [this, life = std::weak_ptr<int>(life_)](websocket_session_base<Executor>* s) {
      if (life.lock()) streams_.erase(s);
    };
  }

  bool allowed(access a, std::string_view topic, const http::request& req) const {
    return !opts_.authorize || opts_.authorize(access_request{.action = a, .topic = topic, .request = req});
  }
  void forbid(http::exchange& ex) {
    ex.respond(with_cors(ex.req(), http::response::error(403, "forbidden", "not allowed")));
  }
  // The handshake, kept for later authorization questions (without a body, which it has not).
  static http::request without_body(const http::request& r) {
    http::request copy = r;
    copy.body().clear();
    return copy;
  }

  void publish(http::exchange& ex, std::string_view topic_part) {
    auto& req = ex.req();
    auto topic = http::percent_decode(topic_part);
    if (topic.find(',') != std::string::npos || is_pattern(topic))
      return ex.respond(with_cors(req, http::response::error(400, "invalid_topic", "publish to exactly one topic name")));
    if (!allowed(access::publish, topic, req)) return forbid(ex);
    publish_options o;
    if (auto e = req.header("crier-event")) o.event = std::string(*e);
    else if (auto q = req.query_param("event")) o.event = std::move(*q);
    if (auto ct = req.header("content-type")) o.content_type = std::string(*ct);
    auto r = hub_.publish(topic, std::move(ex.req().body()), std::move(o));
    if (r.error) return fail(ex, 400, r.error);
    std::string body = R"({"id":")" + r.id.to_string() + R"(","topic":)" + detail::json_string(topic) + "}";
    auto resp = http::response::json(200, std::move(body));
    resp.set("Crier-Id", r.id.to_string());
    ex.respond(with_cors(req, std::move(resp)));
  }

  void fail(http::exchange& ex, unsigned status, std::error_code ec) {
    std::string code = "bad_request";
    if (ec == errc::invalid_topic) code = "invalid_topic";
    else if (ec == errc::invalid_pattern) code = "invalid_topic", status = 400;
    else if (ec == errc::invalid_id) code = "invalid_id";
    else if (ec == errc::invalid_event_name) code = "invalid_event_name";
    else if (ec == errc::invalid_content_type) code = "invalid_content_type";
    else if (ec == errc::payload_too_large) code = "payload_too_large", status = 413;
    else if (ec == errc::too_many_topics) code = "too_many_topics", status = 503;
    else if (ec == errc::hub_stopped) code = "unavailable", status = 503;
    ex.respond(with_cors(ex.req(), http::response::error(status, code, ec.message())));
  }

  bool only_get(http::exchange& ex) {
    if (ex.req().method() == "GET" || ex.req().method() == "HEAD") return true;
    auto r = http::response::error(405, "method_not_allowed", "only GET is allowed here");
    r.set("Allow", "GET");
    ex.respond(std::move(r));
    return false;
  }
  void not_found(http::exchange& ex) {
    ex.respond(http::response::error(404, "not_found", "no route for " + std::string(ex.req().path().substr(0, 200))));
  }

  // CORS per opts_.cors_origins ("*" allows any origin).
  void apply_cors(const http::request& req, http::response* r) const {
    if (opts_.cors_origins.empty()) return;
    auto origin = req.header("origin");
    if (!origin) return;
    for (auto& o : opts_.cors_origins)
      if (o == "*" || o == *origin) {
        r->set("Access-Control-Allow-Origin", o == "*" ? "*" : std::string(*origin));
        if (o != "*") r->set("Vary", "Origin");
        r->set("Access-Control-Expose-Headers", "Crier-Id, Crier-Cursor");
        return;
      }
  }
  http::response with_cors(const http::request& req, http::response r) const {
    apply_cors(req, &r);
    return r;
  }

  http::response metrics() const {
    auto& s = hub_.stats();
    std::string b;
    auto line = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
      b += "# HELP crier_";
      b += name;
      b += ' ';
      b += help;
      b += "\n# TYPE crier_";
      b += name;
      b += ' ';
      b += type;
      b += "\ncrier_";
      b += name;
      b += ' ';
      b += std::to_string(v);
      b += '\n';
    };
    line("published_total", "counter", "Messages fanned out by the hub.", s.published);
    line("deliveries_offered_total", "counter", "Message x subscriber offers.", s.fanned_out);
    line("overflow_disconnects_total", "counter", "Subscribers ended by queue overflow.", s.overflow_disconnects);
    line("subscriptions", "gauge", "Live subscriptions.", s.subscriptions);
    line("streams", "gauge", "Open streams: SSE, NDJSON, WebSocket, custom.", streams_.size());
    line("streams_opened_total", "counter", "Streams started.", streams_opened_);
    line("waiting_polls", "gauge", "Long-polls waiting.", polls_.size());
    line("connections", "gauge", "Open HTTP connections.", http_.connection_count());
    line("websocket_compressed_total", "counter", "Broadcast WebSocket frames compressed (process-wide).",
         detail::ws_compressed_total().load(std::memory_order_relaxed));
    if (relay_) {
      auto& rs = relay_->stats();
      line("relay_tokens", "gauge", "Live relay tokens.", relay_->size());
      line("relay_forwarded_total", "counter", "Requests sent down to relay clients.", rs.forwarded);
      line("relay_answered_total", "counter", "Answers from relay clients.", rs.answered);
      line("relay_timeouts_total", "counter", "Relayed requests unanswered in time (504).", rs.timeouts);
      line("relay_offline_total", "counter", "Requests to offline relay clients (503).", rs.offline);
    }
    http::response r;
    r.set("Content-Type", "text/plain; version=0.0.4");
    r.body = std::move(b);
    return r;
  }

  void arm_heartbeat() {
    heartbeat_timer_.expires_after(opts_.heartbeat);
    heartbeat_timer_.async_wait([this, life = std::weak_ptr<int>(life_)](std::error_code ec) {
      if (ec || !life.lock()) return;
      std::vector<std::shared_ptr<stream_base>> all;
      all.reserve(streams_.size());
      for (auto& [p, s] : streams_) all.push_back(s);
      auto stalled_before = std::chrono::steady_clock::now() - opts_.stall_timeout;
      for (auto& s : all) s->tick(stalled_before);
      arm_heartbeat();
    });
  }

  std::shared_ptr<int> life_ = std::make_shared<int>(0);  // handlers hold it weakly: "server still here"
  hub_type& hub_;
  server_options opts_;
  http::basic_server<strand_type> http_;
  asio::steady_timer heartbeat_timer_;
  std::vector<std::unique_ptr<transport_slot_base>> transports_;
  std::unordered_map<const void*, std::shared_ptr<stream_base>> streams_;
  std::uint64_t streams_opened_ = 0;
  std::unordered_map<const void*, std::shared_ptr<longpoll_session<Executor>>> polls_;
  std::unique_ptr<webhook::basic_engine<Executor>> webhooks_;
  std::unique_ptr<webhook::basic_rest_api<Executor>> rest_;
  std::unique_ptr<webhook::basic_websub_hub<Executor>> websub_;
  std::unique_ptr<webhook::basic_rsscloud<Executor>> rsscloud_;
  std::unique_ptr<basic_relay<Executor>> relay_;
};

using server = basic_server<>;

}  // namespace crier
