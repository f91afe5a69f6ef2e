// A relay client in C++ (docs/relay.md): a program behind NAT gets a public URL on a crier hub
// and answers the HTTP requests sent to it — its webhooks, typically — over its own outbound
// connection (the long-poll pair, through crier's HTTP client). Reconnects with backoff and
// keeps its URL (token + secret) across reconnects; resume_with() keeps it across restarts.
//
//   crier::relay_client rc{io.get_executor(), "http://hub.example:8080"};
//   rc.start([](const crier::relay_client::request& r, auto respond) {
//              respond({.status = 200, .body = "thanks"});
//            },
//            [](std::error_code ec, const std::string& url) { std::cout << url << "\n"; });
#pragma once

#include <crier/error.hpp>
#include <crier/http/client.hpp>
#include <crier/relay/wire.hpp>

#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <random>

namespace crier {

struct relay_client_options {
  std::chrono::seconds poll_wait{25};                 // how long one poll waits for requests (1-60)
  std::chrono::milliseconds backoff_initial{500};     // after a failure; doubles (with jitter) up to
  std::chrono::milliseconds backoff_max{30'000};
  std::size_t max_poll_bytes = 64 * 1024 * 1024;      // one poll's answer (several requests, base64)
  std::shared_ptr<asio::ssl::context> tls{};          // for an https hub; default: system trust store
};

template <class Executor = asio::any_io_executor>
class basic_relay_client {
 public:
  using request = relay_wire::request;
  using response = relay_wire::response;
  // Answer each request once, from any thread, in any order; `id` is filled in for you.
  using respond_fn = std::function<void(response)>;
  using handler = std::function<void(const request&, respond_fn)>;
  // After every (re)connection: the public URL (the same one when the token was kept), or why
  // connecting failed (it is retried with backoff until stop()).
  using ready_fn = std::function<void(std::error_code, const std::string& url)>;

  basic_relay_client(const Executor& ex, std::string hub_url, relay_client_options o = {})
      : strand_(asio::make_strand(ex)),
        hub_(std::move(hub_url)),
        opts_(std::move(o)),
        client_(strand_, client_options(opts_), opts_.tls),
        timer_(strand_),
        rng_(std::random_device{}()) {
    while (!hub_.empty() && hub_.back() == '/') hub_.pop_back();
    backoff_ = opts_.backoff_initial;
  }
  basic_relay_client(const basic_relay_client&) = delete;
  basic_relay_client& operator=(const basic_relay_client&) = delete;
  ~basic_relay_client() { stop(); }

  // Ask for this token again (saved from an earlier run) to keep its URL. Before start().
  void resume_with(std::string token, std::string secret) {
    token_ = std::move(token);
    secret_ = std::move(secret);
  }

  void start(handler h, ready_fn on_ready = {}) {
    asio::dispatch(strand_, [this, h = std::move(h), r = std::move(on_ready), life = std::weak_ptr<int>(life_)]() mutable {
      if (life.expired()) return;
      handler_ = std::move(h);
      ready_ = std::move(r);
      stopped_ = false;
      hello();
    });
  }
  // Stops polling; requests being answered are abandoned (the hub answers them 502/504).
  // Call it on the client's executor or when nothing else runs it (e.g. after io.run()).
  void stop() {
    stopped_ = true;
    timer_.cancel();
    client_.shutdown();
  }

  // Stops once the answers given so far have reached the hub (from the client's executor).
  void stop_when_answered() {
    asio::dispatch(strand_, [this, life = std::weak_ptr<int>(life_)] {
      if (life.expired()) return;
      stop_when_answered_ = true;
      if (answers_in_flight_ == 0) stop();
    });
  }

  const std::string& url() const noexcept { return url_; }
  const std::string& token() const noexcept { return token_; }
  const std::string& secret() const noexcept { return secret_; }

 private:
  static http::client_options client_options(const relay_client_options& o) {
    http::client_options c;
    c.response_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(o.poll_wait) + std::chrono::seconds(15);
    c.total_timeout = c.response_timeout + std::chrono::seconds(15);
    c.max_response_body = o.max_poll_bytes;
    c.user_agent = "crier-relay-client";
    return c;
  }
  std::string control(std::string_view what) const {
    return url_ + std::string(relay_wire::control_prefix) + std::string(what);
  }

  void hello() {
    if (stopped_) return;
    http::client_request req{.method = "POST", .url = hub_ + "/relay"};
    req.headers.emplace_back("Content-Type", "application/json");
    req.body = token_.empty() ? "{}"
                              : R"({"token":)" + crier::detail::json_string(token_) + R"(,"secret":)" +
                                    crier::detail::json_string(secret_) + "}";
    client_.async_request(std::move(req), [this, life = std::weak_ptr<int>(life_)](std::error_code ec, http::client_response r) {
      if (life.expired() || stopped_) return;
      if (!ec && r.status != 200) ec = make_error_code(errc::bad_response);
      picojson::value v;
      if (!ec) {
        std::string err;
        picojson::parse(v, r.body.begin(), r.body.end(), &err);
        if (!err.empty() || !v.is<picojson::object>()) ec = make_error_code(errc::bad_response);
      }
      auto field = [&](const char* k) {
        auto& o = v.get<picojson::object>();
        auto it = o.find(k);
        return it != o.end() && it->second.is<std::string>() ? it->second.get<std::string>() : std::string();
      };
      if (!ec) {
        token_ = field("token");
        secret_ = field("secret");
        url_ = field("url");
        if (token_.empty() || secret_.empty() || url_.empty()) ec = make_error_code(errc::bad_response);
      }
      if (ready_) ready_(ec, url_);
      if (ec) return retry(/*keep_token=*/true);
      backoff_ = opts_.backoff_initial;
      poll();
    });
  }

  void poll() {
    if (stopped_) return;
    http::client_request req{.method = "GET", .url = control("requests?wait=" + std::to_string(opts_.poll_wait.count()))};
    req.headers.emplace_back("Crier-Relay-Secret", secret_);
    client_.async_request(std::move(req), [this, life = std::weak_ptr<int>(life_)](std::error_code ec, http::client_response r) {
      if (life.expired() || stopped_) return;
      if (ec) return retry(true);
      if (r.status == 404 || r.status == 403) return retry(false);  // the token expired: a new URL
      if (r.status != 200 || r.body_truncated) return retry(true);
      picojson::value v;
      std::string err;
      picojson::parse(v, r.body.begin(), r.body.end(), &err);
      if (!err.empty() || !v.is<picojson::object>()) return retry(true);
      auto& o = v.get<picojson::object>();
      if (auto it = o.find("requests"); it != o.end() && it->second.is<picojson::array>())
        for (auto& e : it->second.get<picojson::array>())
          if (e.is<picojson::object>()) dispatch(e.get<picojson::object>());
      backoff_ = opts_.backoff_initial;
      poll();
    });
  }

  void dispatch(const picojson::object& o) {
    request q;
    auto str = [&](const char* k) {
      auto it = o.find(k);
      return it != o.end() && it->second.is<std::string>() ? it->second.get<std::string>() : std::string();
    };
    auto id = o.find("id");
    if (id == o.end() || !id->second.is<double>()) return;
    q.id = static_cast<std::uint64_t>(id->second.get<double>());
    q.method = str("method");
    q.path = str("path");
    if (auto h = o.find("headers"); h != o.end() && h->second.is<picojson::array>())
      for (auto& p : h->second.get<picojson::array>())
        if (p.is<picojson::array>() && p.get<picojson::array>().size() == 2 && p.get<picojson::array>()[0].is<std::string>() &&
            p.get<picojson::array>()[1].is<std::string>())
          q.headers.emplace_back(p.get<picojson::array>()[0].get<std::string>(), p.get<picojson::array>()[1].get<std::string>());
    if (!crier::detail::decode_base64(str("body_base64"), q.body)) return;
    auto respond = [this, life = std::weak_ptr<int>(life_), id = q.id](response a) {
      asio::dispatch(strand_, [this, life, id, a = std::move(a)]() mutable {
        if (!life.expired() && !stopped_) answer(id, std::move(a));
        if (!life.expired() && stop_when_answered_ && answers_in_flight_ == 0) stop();
      });
    };
    handler_(q, std::move(respond));
  }

  void answer(std::uint64_t id, response a) {
    std::string b = R"({"id":)" + std::to_string(id) + R"(,"status":)" + std::to_string(a.status) + R"(,"headers":)";
    relay_wire::append_headers_json(b, a.headers);
    b += R"(,"body_base64":")";
    crier::detail::append_base64(b, a.body);
    b += "\"}";
    http::client_request req{.method = "POST", .url = control("responses"), .body = std::move(b)};
    req.headers.emplace_back("Content-Type", "application/json");
    req.headers.emplace_back("Crier-Relay-Secret", secret_);
    // A lost answer is the hub's to time out (504); the poll loop notices a broken hub.
    ++answers_in_flight_;
    client_.async_request(std::move(req), [this, life = std::weak_ptr<int>(life_)](std::error_code, http::client_response) {
      if (life.expired()) return;
      if (--answers_in_flight_ == 0 && stop_when_answered_) stop();
    });
  }

  void retry(bool keep_token) {
    if (!keep_token) token_.clear(), secret_.clear();
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto wait = std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(backoff_.count()) * jitter(rng_)));
    backoff_ = std::min(backoff_ * 2, opts_.backoff_max);
    timer_.expires_after(wait);
    timer_.async_wait([this, life = std::weak_ptr<int>(life_)](std::error_code ec) {
      if (!ec && !life.expired()) hello();
    });
  }

  asio::strand<Executor> strand_;
  std::string hub_;
  relay_client_options opts_;
  http::basic_client<asio::strand<Executor>> client_;
  asio::steady_timer timer_;
  std::mt19937_64 rng_;
  std::chrono::milliseconds backoff_;
  handler handler_;
  ready_fn ready_;
  std::string token_, secret_, url_;
  bool stopped_ = true;
  bool stop_when_answered_ = false;
  std::size_t answers_in_flight_ = 0;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

using relay_client = basic_relay_client<>;

}  // namespace crier
