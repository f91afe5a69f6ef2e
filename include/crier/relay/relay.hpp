// The relay (docs/relay.md): tokens, and HTTP requests to /relay/{token}/… carried down the
// token's client connection — a WebSocket (websocket_link.hpp) or the long-poll pair handled
// here — with the client's answers sent back as the HTTP responses. Runs on the hub's strand.
#pragma once

#include <crier/core/hub.hpp>
#include <crier/http/client_options.hpp>
#include <crier/http/exchange.hpp>
#include <crier/relay/options.hpp>
#include <crier/relay/wire.hpp>
#include <crier/webhook/detail/challenge.hpp>

#include <asio/steady_timer.hpp>

#include <deque>
#include <map>
#include <memory>
#include <set>

namespace crier {

struct relay_stats {
  std::uint64_t forwarded = 0;   // requests sent down to a client
  std::uint64_t answered = 0;    // answers passed back
  std::uint64_t timeouts = 0;    // 504: no answer in time
  std::uint64_t offline = 0;     // 503: no client online (after any hold)
  std::uint64_t unknown = 0;     // 404: no such token
};

template <class Executor = asio::any_io_executor>
class basic_relay {
 public:
  using strand_type = typename basic_hub<Executor>::executor_type;
  using answer_fn = std::function<void(relay_wire::response)>;

  // A connection carrying a token's requests to its client (the WebSocket session).
  class link {
   public:
    virtual ~link() = default;
    virtual void deliver(const relay_wire::request& r) = 0;
    virtual void replaced() = 0;  // another connection took the token over: close
  };

  struct hello_result {
    std::string token, secret;
    bool resumed = false;
  };

  basic_relay(strand_type ex, relay_options o, std::string prefix = {})
      : ex_(std::move(ex)), opts_(std::move(o)), prefix_(std::move(prefix)) {}
  basic_relay(const basic_relay&) = delete;
  basic_relay& operator=(const basic_relay&) = delete;
  ~basic_relay() { shutdown(); }

  // A client says hello (with the token and secret of an earlier connection, to keep its URL).
  // `l` is its WebSocket, or null for the long-poll pair. Nullopt when no token can be made.
  std::optional<hello_result> hello(std::string_view token, std::string_view secret, link* l) {
    std::shared_ptr<session> s;
    bool resumed = false;
    if (auto it = sessions_.find(token); !token.empty() && it != sessions_.end() &&
                                         webhook_same(it->second->secret, secret)) {
      s = it->second;
      resumed = true;
      if (s->conn && s->conn != l) {
        auto old = std::exchange(s->conn, nullptr);
        fail_in_flight(*s, 502, "the relay client reconnected");
        old->replaced();
      }
    } else {
      if (sessions_.size() >= opts_.max_tokens) return std::nullopt;
      s = std::make_shared<session>(ex_);
      s->token = webhook::detail::random_hex(16);
      s->secret = webhook::detail::random_hex(32);
      sessions_.emplace(s->token, s);
    }
    s->conn = l;
    if (!l) s->poll_ended = std::chrono::steady_clock::now();  // long-poll: online for poll_grace
    s->expiry.cancel();
    // Held requests go once the caller has sent `ready` (it does so before returning to the loop).
    asio::post(ex_, [this, life = std::weak_ptr<int>(life_), token = s->token] {
      if (life.expired()) return;
      if (auto it = sessions_.find(token); it != sessions_.end() && is_online(*it->second)) online(*it->second);
    });
    return hello_result{s->token, s->secret, resumed};
  }

  // The WebSocket `l` of `token` has closed.
  void detach(const std::string& token, link* l) {
    auto it = sessions_.find(token);
    if (it == sessions_.end() || it->second->conn != l) return;
    auto& s = *it->second;
    s.conn = nullptr;
    fail_in_flight(s, 502, "the relay client disconnected");
    maybe_offline(s);
  }

  // An answer from the client of `token`; false (with why) when it answers nothing in flight.
  bool answer(const std::string& token, relay_wire::response r, std::string& why) {
    auto it = sessions_.find(token);
    if (it == sessions_.end()) return why = "unknown token", false;
    auto& s = *it->second;
    auto p = s.in_flight.find(r.id);
    if (p == s.in_flight.end()) return why = "no request in flight has id " + std::to_string(r.id), false;
    auto done = std::move(p->second.done);
    p->second.timer->cancel();
    s.in_flight.erase(p);
    ++stats_.answered;
    if (r.status == 0) {
      r.status = 502;
      r.headers = {{"content-type", "application/json"}};
      r.body = R"({"error":{"status":502,"code":"bad_gateway","message":"the relay client answered an invalid status"}})";
    }
    done(std::move(r));
    return true;
  }

  // Sends `r` to the client of `token`; `done` gets its answer or the relay's own error
  // (404, 503, 504, 502), always later, never from inside this call.
  void forward(std::string_view token, relay_wire::request r, answer_fn done) {
    auto post = [this](answer_fn& d, relay_wire::response res) {
      asio::post(ex_, [d = std::move(d), res = std::move(res)]() mutable { d(std::move(res)); });
    };
    auto it = sessions_.find(token);
    if (it == sessions_.end()) {
      ++stats_.unknown;
      return post(done, error(404, "unknown_token", "no relay client has this URL"));
    }
    auto& s = *it->second;
    if (relay_wire::request_head_json(r).size() > 0xFF00)
      return post(done, error(431, "headers_too_large", "the request's headers are too large to relay"));
    if (s.in_flight.size() + s.held.size() >= opts_.max_in_flight)
      return post(done, unavailable("the relay client has too many requests in flight"));
    if (!is_online(s)) {
      if (opts_.offline_hold.count() <= 0) {
        ++stats_.offline;
        return post(done, unavailable("the relay client is offline"));
      }
      return hold(s, std::move(r), std::move(done));
    }
    send(s, std::move(r), std::move(done));
  }

  // HTTP: POST /relay (long-poll hello), /relay/{token}/… (forwarded), and the long-poll pair
  // below /relay/{token}/.well-known/crier-relay/. True when the path is ours.
  bool handle(const std::shared_ptr<http::exchange>& ex, std::string_view path) {
    if (path == "/relay") return hello_http(*ex), true;
    if (!path.starts_with("/relay/")) return false;
    auto rest = path.substr(7);
    auto slash = rest.find('/');
    std::string token(rest.substr(0, slash));
    std::string_view below = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (below.starts_with(relay_wire::control_prefix)) {
      auto what = below.substr(relay_wire::control_prefix.size());
      auto it = sessions_.find(token);
      if (it == sessions_.end()) return ex->respond(error_http(404, "unknown_token", "no such relay token")), true;
      auto secret = ex->req().header("crier-relay-secret").value_or("");
      if (!webhook_same(it->second->secret, secret))
        return ex->respond(error_http(403, "forbidden", "Crier-Relay-Secret is missing or wrong")), true;
      if (what == "requests" && ex->req().method() == "GET") return poll(it->second, ex), true;
      if (what == "responses" && ex->req().method() == "POST") return responses(*it->second, *ex), true;
      return ex->respond(error_http(404, "not_found", "the long-poll pair is GET …/requests and POST …/responses")), true;
    }
    relay_wire::request r;
    r.method = std::string(ex->req().method());
    r.path = std::string(below);
    if (auto q = ex->req().query(); !q.empty()) r.path += "?" + std::string(q);
    if (!relay_wire::forwardable(ex->req().headers(), opts_.max_header_bytes, r.headers))
      return ex->respond(error_http(431, "headers_too_large", "the request's headers cannot be relayed")), true;
    // Browsers attach the hub's cookies to a relay URL: they are not the relay client's to read.
    std::erase_if(r.headers, [](auto& h) { return h.first == "cookie"; });
    if (ex->req().body().size() > opts_.max_body)
      return ex->respond(error_http(413, "payload_too_large", "the body is larger than the relay allows")), true;
    r.body = ex->req().body();
    forward(token, std::move(r), [ex](relay_wire::response res) { ex->respond(to_http(std::move(res))); });
    return true;
  }

  // The public URL of a token, for a client whose hello came with `req`.
  std::string url_for(const http::request& req, std::string_view token) {
    std::string base = opts_.public_url;
    if (base.empty()) {
      auto host = req.header("host").value_or("");
      bool sane = !host.empty() && host.size() < 256 && std::all_of(host.begin(), host.end(), [](char c) {
        return c > 0x20 && c < 0x7f && c != '/' && c != '<' && c != '>' && c != '"' && c != '\\' && c != '@';
      });
      base = "http://" + std::string(sane ? host : "localhost");
    }
    while (!base.empty() && base.back() == '/') base.pop_back();
    base += prefix_;
    if (bases_.size() < 16) bases_.insert(base);  // deliveries to these go straight down the link
    return base + "/relay/" + std::string(token);
  }

  // webhook::engine_options::local_route: a delivery to one of our relay URLs is forwarded
  // here instead of making a loopback HTTP request.
  bool local_route(http::client_request& req, std::function<void(std::error_code, http::client_response)>& done) {
    for (auto& base : bases_) {
      std::string_view url = req.url;
      if (!url.starts_with(base) || !url.substr(base.size()).starts_with("/relay/")) continue;
      auto rest = url.substr(base.size() + 7);
      auto end = rest.find_first_of("/?#");
      std::string token(rest.substr(0, end));
      std::string_view below = end == std::string_view::npos ? std::string_view("/") : rest.substr(end);
      if (below.front() == '?') return false;  // keep it simple: such targets go over the network
      below = below.substr(0, below.find('#'));
      if (below.starts_with(relay_wire::control_prefix)) return false;
      relay_wire::request r{.method = req.method, .path = std::string(below)};
      auto authority = std::string_view(base).substr(base.find("://") + 3);
      r.headers.emplace_back("host", std::string(authority.substr(0, authority.find('/'))));
      if (!relay_wire::forwardable(req.headers, opts_.max_header_bytes, r.headers)) return false;
      r.body = std::move(req.body);
      forward(token, std::move(r), [done = std::move(done)](relay_wire::response res) {
        http::client_response cr{.status = res.status, .headers = std::move(res.headers), .body = std::move(res.body)};
        done({}, std::move(cr));
      });
      return true;
    }
    return false;
  }

  std::size_t size() const noexcept { return sessions_.size(); }
  const relay_stats& stats() const noexcept { return stats_; }
  const relay_options& options() const noexcept { return opts_; }

  // Everything waiting is answered (503, an empty poll); tokens end.
  void shutdown() {
    auto all = std::move(sessions_);
    sessions_.clear();
    for (auto& [t, s] : all) {
      s->expiry.cancel();
      s->grace.cancel();
      if (s->poll_timer) s->poll_timer->cancel();
      if (auto p = std::exchange(s->poll, nullptr)) p->respond(http::response::json(200, R"({"requests":[]})"));
      for (auto& [id, p] : s->in_flight) {
        p.timer->cancel();
        p.done(unavailable("the hub is stopping"));
      }
      for (auto& h : s->held) {
        h.timer->cancel();
        h.done(unavailable("the hub is stopping"));
      }
      if (s->conn) s->conn->replaced();
    }
  }
  // Observed by connections that may outlive the relay.
  std::weak_ptr<int> life() const noexcept { return life_; }

 private:
  struct pending {
    answer_fn done;
    std::unique_ptr<asio::steady_timer> timer;
  };
  struct held_request {
    relay_wire::request req;
    answer_fn done;
    std::unique_ptr<asio::steady_timer> timer;
  };
  struct session {
    explicit session(const strand_type& ex) : expiry(ex), grace(ex) {}
    std::string token, secret;
    link* conn = nullptr;                       // the WebSocket, if connected that way
    std::shared_ptr<http::exchange> poll;       // the long-poll waiting for requests
    std::unique_ptr<asio::steady_timer> poll_timer;
    std::chrono::steady_clock::time_point poll_ended{};  // long-poll: online until this + poll_grace
    std::deque<relay_wire::request> outbox;     // in flight, for the next poll
    std::map<std::uint64_t, pending> in_flight; // sent (or in the outbox), unanswered
    std::deque<held_request> held;              // waiting for an offline client (offline_hold)
    std::uint64_t next_id = 1;
    asio::steady_timer expiry;                  // idle_expiry after the client went away
    asio::steady_timer grace;                   // poll_grace after a poll ended
  };

  static bool webhook_same(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char d = 0;  // constant time: the secret is not guessable byte by byte
    for (std::size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
    return d == 0;
  }

  bool is_online(const session& s) const {
    return s.conn || s.poll ||
           (s.poll_ended != std::chrono::steady_clock::time_point{} &&
            std::chrono::steady_clock::now() - s.poll_ended < opts_.poll_grace);
  }

  static relay_wire::response error(unsigned status, std::string_view code, std::string_view message) {
    auto h = http::response::error(status, code, message);
    relay_wire::response r{.status = status, .body = std::move(h.body)};
    r.headers.emplace_back("content-type", "application/json");
    return r;
  }
  static relay_wire::response unavailable(std::string_view why) {
    auto r = error(503, "relay_unavailable", why);
    r.headers.emplace_back("retry-after", "5");  // webhook senders retry
    return r;
  }
  static http::response error_http(unsigned status, std::string_view code, std::string_view message) {
    return http::response::error(status, code, message);
  }
  // A relay client is not trusted with the hub's origin: it cannot set cookies there, and
  // what it serves cannot run as a page of the hub (CSP sandbox) or be sniffed into one.
  static http::response to_http(relay_wire::response res) {
    http::response r;
    r.status = res.status;
    for (auto& [n, v] : res.headers)
      if (n != "set-cookie" && n != "set-cookie2" && n != "content-security-policy" &&
          n != "x-content-type-options")
        r.headers.emplace_back(std::move(n), std::move(v));
    r.headers.emplace_back("Content-Security-Policy", "sandbox");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.body = std::move(res.body);
    return r;
  }

  void send(session& s, relay_wire::request r, answer_fn done) {
    r.id = s.next_id++;
    ++stats_.forwarded;
    auto& p = s.in_flight[r.id];
    p.done = std::move(done);
    p.timer = std::make_unique<asio::steady_timer>(ex_, opts_.answer_timeout);
    p.timer->async_wait([this, life = std::weak_ptr<int>(life_), token = s.token, id = r.id](std::error_code ec) {
      if (ec || life.expired()) return;
      auto it = sessions_.find(token);
      if (it == sessions_.end()) return;
      auto f = it->second->in_flight.find(id);
      if (f == it->second->in_flight.end()) return;
      auto d = std::move(f->second.done);
      it->second->in_flight.erase(f);
      ++stats_.timeouts;
      d(error(504, "relay_timeout", "the relay client did not answer in time"));
    });
    if (s.conn) return s.conn->deliver(r);
    s.outbox.push_back(std::move(r));
    if (s.poll) flush_poll(s);
  }

  void hold(session& s, relay_wire::request r, answer_fn done) {
    auto& h = s.held.emplace_back(held_request{std::move(r), std::move(done),
                                               std::make_unique<asio::steady_timer>(ex_, opts_.offline_hold)});
    h.timer->async_wait([this, life = std::weak_ptr<int>(life_), token = s.token, raw = h.timer.get()](std::error_code ec) {
      if (ec || life.expired()) return;
      auto it = sessions_.find(token);
      if (it == sessions_.end()) return;
      auto& q = it->second->held;
      auto f = std::find_if(q.begin(), q.end(), [raw](auto& x) { return x.timer.get() == raw; });
      if (f == q.end()) return;
      auto d = std::move(f->done);
      q.erase(f);
      ++stats_.offline;
      d(unavailable("the relay client did not come back in time"));
    });
  }

  // The client is (back) online: the token lives on; held requests go now.
  void online(session& s) {
    s.expiry.cancel();
    s.grace.cancel();
    auto held = std::move(s.held);
    s.held.clear();
    for (auto& h : held) {
      h.timer->cancel();
      send(s, std::move(h.req), std::move(h.done));
    }
  }

  // No WebSocket and no poll: after poll_grace the client is offline — what waits in the outbox
  // cannot reach it (503) — and after idle_expiry the token ends.
  void maybe_offline(session& s) {
    if (s.conn || s.poll) return;
    auto left = opts_.poll_grace - (std::chrono::steady_clock::now() - s.poll_ended);
    if (s.poll_ended != std::chrono::steady_clock::time_point{} && left > std::chrono::steady_clock::duration::zero()) {
      s.grace.expires_after(left);
      s.grace.async_wait([this, life = std::weak_ptr<int>(life_), token = s.token](std::error_code ec) {
        if (ec || life.expired()) return;
        if (auto it = sessions_.find(token); it != sessions_.end()) maybe_offline(*it->second);
      });
      return;
    }
    for (auto& r : std::exchange(s.outbox, {})) {
      auto f = s.in_flight.find(r.id);
      if (f == s.in_flight.end()) continue;
      auto d = std::move(f->second.done);
      f->second.timer->cancel();
      s.in_flight.erase(f);
      d(unavailable("the relay client went away"));
    }
    s.expiry.expires_after(opts_.idle_expiry);
    s.expiry.async_wait([this, life = std::weak_ptr<int>(life_), token = s.token](std::error_code ec) {
      if (ec || life.expired()) return;
      auto it = sessions_.find(token);
      if (it == sessions_.end() || is_online(*it->second)) return;
      auto s = it->second;
      sessions_.erase(it);
      for (auto& h : s->held) {
        h.timer->cancel();
        h.done(error(404, "unknown_token", "the relay token expired"));
      }
      for (auto& [id, p] : s->in_flight) {
        p.timer->cancel();
        p.done(error(502, "relay_expired", "the relay token expired"));
      }
    });
  }

  void fail_in_flight(session& s, unsigned status, std::string_view why) {
    auto all = std::move(s.in_flight);
    s.in_flight.clear();
    s.outbox.clear();
    for (auto& [id, p] : all) {
      p.timer->cancel();
      p.done(error(status, "relay_client_gone", why));
    }
  }

  // POST /relay {"token","secret"} -> the ready object (long-poll clients).
  void hello_http(http::exchange& ex) {
    if (ex.req().method() != "POST") {
      auto r = error_http(405, "method_not_allowed", "GET /relay with Upgrade: websocket, or POST /relay");
      r.set("Allow", "POST");
      return ex.respond(std::move(r));
    }
    std::string token, secret;
    if (!ex.req().body().empty()) {
      picojson::value v;
      std::string err;
      picojson::parse(v, ex.req().body().begin(), ex.req().body().end(), &err);
      if (!err.empty() || !v.is<picojson::object>())
        return ex.respond(error_http(400, "bad_json", "the body is {} or {\"token\":…,\"secret\":…}"));
      auto& o = v.get<picojson::object>();
      if (auto t = o.find("token"); t != o.end() && t->second.is<std::string>()) token = t->second.get<std::string>();
      if (auto t = o.find("secret"); t != o.end() && t->second.is<std::string>()) secret = t->second.get<std::string>();
    }
    auto h = hello(token, secret, nullptr);
    if (!h) return ex.respond(error_http(503, "too_many_tokens", "the relay has as many clients as it may"));
    if (auto it = sessions_.find(h->token); it != sessions_.end()) maybe_offline(*it->second);  // grace timer
    ex.respond(http::response::json(200, relay_wire::ready_json(h->token, h->secret, url_for(ex.req(), h->token),
                                                                h->resumed, opts_.idle_expiry.count())));
  }

  // GET …/requests?wait=S: what is in the outbox, or wait for it.
  void poll(const std::shared_ptr<session>& sp, const std::shared_ptr<http::exchange>& ex) {
    auto& s = *sp;
    long wait = 25;
    if (auto w = ex->req().query_param("wait"); w && !w->empty() && w->find_first_not_of("0123456789") == std::string::npos)
      wait = std::clamp(std::strtol(w->c_str(), nullptr, 10), 0L, 60L);  // 0: answer at once
    if (s.poll) {  // a newer poll replaces the one waiting
      auto old = std::exchange(s.poll, nullptr);
      old->respond(http::response::json(200, R"({"requests":[]})"));
    }
    s.poll = ex;
    online(s);  // held requests go out, which may answer this poll at once
    if (s.poll != ex) return;
    if (!s.outbox.empty() || wait == 0) return flush_poll(s);
    if (!s.poll_timer) s.poll_timer = std::make_unique<asio::steady_timer>(ex_);
    s.poll_timer->expires_after(std::chrono::seconds(wait));
    std::weak_ptr<session> weak = sp;
    // Only a raw pointer to compare: the exchange keeps its on_close callback, which must not
    // keep the exchange alive in turn.
    auto* raw = ex.get();
    s.poll_timer->async_wait([this, life = std::weak_ptr<int>(life_), weak, raw](std::error_code ec) {
      auto s = weak.lock();
      if (ec || life.expired() || !s || s->poll.get() != raw) return;
      flush_poll(*s);
    });
    ex->on_close([this, life = std::weak_ptr<int>(life_), weak, raw](std::error_code) {
      auto s = weak.lock();
      if (life.expired() || !s || s->poll.get() != raw) return;
      s->poll = nullptr;
      s->poll_ended = std::chrono::steady_clock::now();
      maybe_offline(*s);
    });
  }

  void flush_poll(session& s) {
    auto ex = std::exchange(s.poll, nullptr);
    if (s.poll_timer) s.poll_timer->cancel();
    std::string b = R"({"requests":[)";
    for (std::size_t i = 0; i < s.outbox.size(); ++i) {
      if (i) b += ',';
      relay_wire::append_request_json(b, s.outbox[i]);
    }
    b += "]}";
    s.outbox.clear();
    s.poll_ended = std::chrono::steady_clock::now();
    ex->respond(http::response::json(200, std::move(b)));
    maybe_offline(s);
  }

  // POST …/responses: one answer object or an array of them.
  void responses(session& s, http::exchange& ex) {
    picojson::value v;
    std::string err;
    auto& body = ex.req().body();
    picojson::parse(v, body.begin(), body.end(), &err);
    if (!err.empty() || !(v.is<picojson::object>() || v.is<picojson::array>()))
      return ex.respond(error_http(400, "bad_json", "an answer object or an array of them"));
    std::vector<const picojson::value*> items;
    if (v.is<picojson::object>()) items.push_back(&v);
    else
      for (auto& e : v.get<picojson::array>()) items.push_back(&e);
    std::string problems;
    for (auto* e : items) {
      relay_wire::response r;
      std::string why;
      if (!e->is<picojson::object>()) why = "an answer is a JSON object";
      else if (auto bad = relay_wire::read_answer(e->get<picojson::object>(), r, opts_.max_body, opts_.max_header_bytes))
        why = *bad;
      else
        answer(s.token, std::move(r), why);
      if (!why.empty()) problems += (problems.empty() ? "" : "; ") + why;
    }
    if (!problems.empty()) return ex.respond(error_http(400, "bad_answer", problems));
    http::response r;
    r.status = 204;
    ex.respond(std::move(r));
  }

  strand_type ex_;
  relay_options opts_;
  std::string prefix_;
  std::map<std::string, std::shared_ptr<session>, std::less<>> sessions_;
  std::set<std::string, std::less<>> bases_;
  relay_stats stats_;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

using relay = basic_relay<>;

}  // namespace crier
