// rssCloud's REST flavour over the delivery engine:
//   POST /pleaseNotify  port, path, protocol=http-post, [domain], url1..urlN
// The callback is http://<domain or the requester's address>:<port><path>. With a domain the
// hub verifies by GET …?url=<url1>&challenge=<c> (echo c); without one, by a first
// notification that must be answered 2xx. The answer is rssCloud's <notifyResult/>. Each feed
// URL is a crier topic; a publish to it POSTs "url=<feed URL>" to the callback. Registrations
// last 25 hours; registering again renews them.
#pragma once

#include <crier/authorize.hpp>
#include <crier/http/exchange.hpp>
#include <crier/http/url.hpp>
#include <crier/webhook/detail/challenge.hpp>
#include <crier/webhook/engine.hpp>

namespace crier::webhook {

template <class Executor = asio::any_io_executor>
class basic_rsscloud {
 public:
  using engine_type = basic_engine<Executor>;

  explicit basic_rsscloud(engine_type& e, rsscloud_options o = {}, authorizer auth = {})
      : engine_(e), opts_(std::move(o)), auth_(std::move(auth)) {}
  basic_rsscloud(const basic_rsscloud&) = delete;
  basic_rsscloud& operator=(const basic_rsscloud&) = delete;
  ~basic_rsscloud() { life_.reset(); }

  // True when the path is ours; the answer may come later (after verification).
  bool handle(const std::shared_ptr<http::exchange>& ex, std::string_view path) {
    if (path != opts_.path) return false;
    if (ex->req().method() != "POST") {
      auto r = result(405, false, "pleaseNotify is POSTed");
      r.set("Allow", "POST");
      return ex->respond(std::move(r)), true;
    }
    please_notify(ex);
    return true;
  }
  std::size_t pending() const noexcept { return pending_; }

 private:
  // <notifyResult success="…" msg="…"/>, rssCloud's answer (errors too, so its clients can read them).
  static http::response result(unsigned status, bool ok, std::string_view msg) {
    http::response r;
    r.status = status;
    r.set("Content-Type", "text/xml; charset=utf-8");
    std::string b = "<?xml version=\"1.0\"?>\n<notifyResult success=\"";
    b += ok ? "true" : "false";
    b += "\" msg=\"";
    for (char c : msg) {
      switch (c) {
        case '&': b += "&amp;"; break;
        case '<': b += "&lt;"; break;
        case '>': b += "&gt;"; break;
        case '"': b += "&quot;"; break;
        default: b += c;
      }
    }
    b += "\"/>\n";
    r.body = std::move(b);
    return r;
  }

  void please_notify(const std::shared_ptr<http::exchange>& ex) {
    auto form = http::parse_form(ex->req().body());
    auto get = [&](std::string_view name) -> std::optional<std::string> {
      for (auto& [n, v] : form)
        if (n == name) return v;
      return std::nullopt;
    };
    auto bad = [&](std::string_view msg) { ex->respond(result(400, false, msg)); };
    auto protocol = get("protocol").value_or("");
    if (protocol != "http-post") return bad("protocol: only http-post is supported");
    auto port_text = get("port").value_or("");
    unsigned port = 0;
    bool port_ok = !port_text.empty() && port_text.size() <= 5;
    for (char c : port_text) port_ok = port_ok && c >= '0' && c <= '9', port = port * 10 + static_cast<unsigned>(c - '0');
    if (!port_ok || port == 0 || port > 65535) return bad("port: 1 to 65535");
    auto path = get("path").value_or("");
    if (path.empty() || path.front() != '/' || path.size() > 2048 ||
        std::any_of(path.begin(), path.end(), [](char c) { return c <= 0x20 || c >= 0x7f || c == '#'; }))
      return bad("path: an absolute path starting with /");
    std::vector<std::string> urls;
    for (auto& [n, v] : form)
      if (n.size() > 3 && n.starts_with("url") && std::all_of(n.begin() + 3, n.end(), [](char c) { return c >= '0' && c <= '9'; }))
        urls.push_back(v);
    if (!get("url1") || urls.size() > opts_.max_urls) return bad("url1..urlN: 1 to 100 feed URLs, from url1");
    for (auto& u : urls) {
      if (auto ec = validate_topic(u)) return bad("\"" + u.substr(0, 100) + "\": " + ec.message());
      if (auth_ && !auth_(access_request{.action = access::subscribe, .topic = u, .request = ex->req()}))
        return ex->respond(result(403, false, "not allowed to subscribe to " + u.substr(0, 100)));
    }
    auto domain = get("domain");
    std::string host;
    if (domain) {
      host = *domain;
      if (host.empty() || host.size() > 253 ||
          !std::all_of(host.begin(), host.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
          }))
        return bad("domain: a host name or IPv4 address");
    } else {
      auto addr = ex->remote_address();
      if (!addr) return bad("domain: required (the requester's address is unknown)");
      if (addr->is_v6() && addr->to_v6().is_v4_mapped())
        host = asio::ip::make_address_v4(asio::ip::v4_mapped, addr->to_v6()).to_string();
      else
        host = addr->is_v6() ? "[" + addr->to_string() + "]" : addr->to_string();
    }
    auto callback = "http://" + host + ":" + std::to_string(port) + path;
    if (!parse_target(callback)) return bad("domain, port and path do not make a URL");
    std::size_t fresh = 0;
    for (auto& u : urls) fresh += engine_.find_same(callback, {u}).empty();
    if (engine_.size() + fresh > engine_.options().max_subscriptions)
      return ex->respond(result(503, false, "the hub has reached its subscription limit"));
    if (pending_ >= opts_.max_pending) return ex->respond(result(503, false, "too many registrations in progress"));
    verify(ex, std::move(callback), std::move(urls), domain.has_value());
  }

  void verify(std::shared_ptr<http::exchange> ex, std::string callback, std::vector<std::string> urls, bool by_get) {
    ++pending_;
    auto challenge = detail::random_hex();
    http::client_request req;
    if (by_get) {
      req.method = "GET";
      req.url = detail::with_query(callback, "url=" + http::percent_encode(urls.front()) + "&challenge=" + challenge);
    } else {  // rssCloud without a domain: the first notification is the test
      req.method = "POST";
      req.url = callback;
      req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
      req.body = "url=" + http::percent_encode(urls.front());
    }
    std::weak_ptr<int> life = life_;
    engine_.send(
        std::move(req), [this, life, ex = std::move(ex), callback = std::move(callback), urls = std::move(urls),
                         by_get, challenge](std::error_code ec, http::client_response r) {
          if (life.expired()) return;
          --pending_;
          bool ok = !ec && (by_get ? detail::echoes(r, challenge) : r.status >= 200 && r.status < 300);
          if (!ok) {
            auto why = ec ? ec.message() : "HTTP " + std::to_string(r.status);
            return ex->respond(result(200, false, "the subscriber did not confirm (" + why + ")"));
          }
          auto expires = std::chrono::system_clock::now() + opts_.lease;
          for (auto& u : urls) {
            subscription_spec spec{.target_url = callback, .topics = {u}, .style = signature_style::rsscloud,
                                   .expires_at = expires};
            if (auto same = engine_.find_same(callback, spec.topics); !same.empty()) {
              engine_.update(same, std::move(spec));  // renewal
            } else if (std::string id; engine_.create(std::move(spec), id)) {
              return ex->respond(result(503, false, "the hub has reached its subscription limit"));
            }
          }
          ex->respond(result(200, true, "Registered: a POST with url=<feed> follows each change; register again "
                                        "within 25 hours to keep it."));
        });
  }

  engine_type& engine_;
  rsscloud_options opts_;
  authorizer auth_;
  std::size_t pending_ = 0;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

using rsscloud = basic_rsscloud<>;

}  // namespace crier::webhook
