// A custom crier transport: game state as UDP datagrams to registered endpoints (README.md).
// Built on crier's public API only: basic_hub::subscribe with a crier::subscriber, the
// subscription's queue under overflow_policy::conflate, message::frame with a slot from
// crier::allocate_format_slot(), and crier::http::basic_server for the registration API.
//
//   crier::hub hub{io};
//   udp_game::transport udp{hub, {.udp_bind = "0.0.0.0:0"}};
//   crier::http::basic_server<crier::hub::executor_type> control{hub.get_executor(), {},
//       [&](auto ex) { if (!udp.handle(ex)) ex->respond(crier::http::response::error(404, ...)); }};
//   ...
//   udp.stop();   // every endpoint gets a "bye" notice; subscriptions end
//
// Threading is crier's: the UDP socket, every timer and the registration handlers run on the
// hub's strand, so endpoints touch their subscriptions and the frame cache without locks.
//
// Per endpoint: one hub subscription (policy conflate: at most one queued message per topic,
// the newest) drained through a token bucket (rate datagrams/s, burst). While the bucket is
// empty the endpoint does not drain; the hub replaces queued messages of a topic with newer
// ones meanwhile, so a slow endpoint gets the latest state, never a backlog. The skipped seqs
// show in the seq numbers and in each datagram's `skipped` field.
#pragma once

#include "udp_protocol.hpp"

#include <crier/core/format.hpp>
#include <crier/core/hub.hpp>
#include <crier/http/exchange.hpp>
#include <crier/http/response.hpp>

#include <asio/ip/udp.hpp>
#include <asio/steady_timer.hpp>

#include <picojson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

namespace udp_game {

struct transport_options {
  std::string udp_bind = "127.0.0.1:0";       // "host:port" the datagrams leave from ("[::]:0" for IPv6)
  std::string prefix = "/udp";                // routes: {prefix}/endpoints, {prefix}/stats
  std::size_t max_datagram = proto::default_max_datagram;  // whole UDP payload; bigger messages are
                                              // not sent: an `oversize` notice names them instead
  double max_rate = 120;                      // datagrams/s an endpoint may ask for (more is clamped)
  double default_rate = 30;
  double max_burst = 32;                      // token bucket depth an endpoint may ask for
  double default_burst = 8;
  std::chrono::seconds default_ttl{30};       // registration lifetime without a refresh
  std::chrono::seconds min_ttl{1};
  std::chrono::seconds max_ttl{300};
  std::size_t max_endpoints = 10'000;
  std::size_t max_topics = 64;                // topics and patterns in one registration
  std::size_t max_pending_topics = 4096;      // distinct topics queued per endpoint (conflate keeps one
                                              // message per topic; beyond this: resubscribe, `overflow`)
  std::size_t max_pending_bytes = 64u << 20;  // payload bytes those queued messages may reference
  bool allow_any_target = false;              // false: the UDP address must be the registering HTTP
                                              // client's own IP (no reflection towards third parties)
  int send_buffer = 0;                        // SO_SNDBUF (0 = the OS default)
};

// Counters, read on the hub's strand.
struct transport_stats {
  std::uint64_t registered = 0;
  std::uint64_t refreshed = 0;
  std::uint64_t unregistered = 0;
  std::uint64_t expired = 0;
  std::uint64_t replaced = 0;       // a registration for an address that already had one
  std::uint64_t datagrams = 0;      // sent (messages + notices)
  std::uint64_t messages = 0;
  std::uint64_t notices = 0;
  std::uint64_t oversize = 0;       // messages not sent: larger than max_datagram
  std::uint64_t skipped = 0;        // seqs left out by latest-state (sum of `skipped` fields)
  std::uint64_t rate_waits = 0;     // times an endpoint had work but no token
  std::uint64_t socket_busy = 0;    // sends that found the socket's buffer full (retried)
  std::uint64_t send_errors = 0;
  std::uint64_t overflow_resubscribes = 0;
};

namespace detail {

inline std::size_t frame_slot() {
  static const std::size_t slot = crier::allocate_format_slot();
  return slot;
}

inline std::string random_id() {
  std::random_device rd;
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 4; ++i) {
    auto v = rd();
    for (int j = 0; j < 8; ++j) s += hex[(v >> (4 * j)) & 0xF];
  }
  return s;
}

// "host:port" / "[v6]:port" with a literal address and a non-zero port.
inline bool parse_udp_endpoint(std::string_view s, asio::ip::udp::endpoint& out, bool port_zero_ok = false) {
  std::string_view host, port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc{} || end != port.data() + port.size() || (p == 0 && !port_zero_ok) || p > 65535) return false;
  std::error_code aec;
  auto addr = asio::ip::make_address(std::string(host), aec);
  if (aec) return false;
  out = asio::ip::udp::endpoint(addr, static_cast<unsigned short>(p));
  return true;
}

inline asio::ip::address unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

inline std::string to_string(const asio::ip::udp::endpoint& ep) {
  auto a = ep.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

// What a registration asks for, after validation and clamping to the server's bounds.
struct registration {
  asio::ip::udp::endpoint target;
  std::vector<std::string> topics;
  double rate = 0, burst = 0;
  std::chrono::seconds ttl{0};
};

struct refusal {
  unsigned status = 400;
  std::string code, message;
};

// Parses {"addr":"127.0.0.1:40000","topics":["game/*"],"rate":30,"burst":8,"ttl":30}; rate,
// burst and ttl are optional and clamped to the server's bounds (the answer says what was granted).
inline std::optional<refusal> parse_registration(const std::string& body, const transport_options& opts,
                                                 registration& out) {
  picojson::value v;
  auto err = picojson::parse(v, body);
  if (!err.empty() || !v.is<picojson::object>())
    return refusal{400, "bad_json", "the body must be a JSON object: {\"addr\":\"ip:port\",\"topics\":[...]}"};
  auto& o = v.get<picojson::object>();
  auto field = [&](const char* name) -> const picojson::value* {
    auto it = o.find(name);
    return it == o.end() || it->second.is<picojson::null>() ? nullptr : &it->second;
  };
  auto* addr = field("addr");
  if (!addr || !addr->is<std::string>() || !parse_udp_endpoint(addr->get<std::string>(), out.target))
    return refusal{400, "invalid_addr", "addr must be \"ip:port\" (a literal address, port 1..65535)"};
  out.target = asio::ip::udp::endpoint(unmapped(out.target.address()), out.target.port());
  auto* topics = field("topics");
  if (!topics || !topics->is<picojson::array>() || topics->get<picojson::array>().empty())
    return refusal{400, "invalid_topic", "topics must be a non-empty array of topic names or patterns"};
  auto& tarr = topics->get<picojson::array>();
  if (tarr.size() > opts.max_topics)
    return refusal{400, "too_many_topics", "at most " + std::to_string(opts.max_topics) + " topics per registration"};
  out.topics.clear();
  for (auto& t : tarr) {
    if (!t.is<std::string>()) return refusal{400, "invalid_topic", "topics must be strings"};
    auto& s = t.get<std::string>();
    std::error_code ec;
    if (crier::is_pattern(s)) crier::topic_pattern::parse(s, ec);
    else ec = crier::validate_topic(s);
    if (ec) return refusal{400, "invalid_topic", ec.message() + ": " + s.substr(0, 300)};
    if (std::find(out.topics.begin(), out.topics.end(), s) == out.topics.end()) out.topics.push_back(s);
  }
  out.rate = opts.default_rate;
  out.burst = opts.default_burst;
  out.ttl = opts.default_ttl;
  for (auto [name, dst] : {std::pair{"rate", &out.rate}, std::pair{"burst", &out.burst}}) {
    auto* f = field(name);
    if (!f) continue;
    if (!f->is<double>() || !(f->get<double>() > 0) || !std::isfinite(f->get<double>()))
      return refusal{400, std::string("invalid_") + name, std::string(name) + " must be a positive number"};
    *dst = f->get<double>();
  }
  if (auto* f = field("ttl")) {
    if (!f->is<double>() || !(f->get<double>() > 0) || f->get<double>() > 1e9)
      return refusal{400, "invalid_ttl", "ttl must be a positive number of seconds"};
    out.ttl = std::chrono::seconds(static_cast<long>(std::ceil(f->get<double>())));
  }
  out.rate = std::min(out.rate, opts.max_rate);
  out.burst = std::max(1.0, std::min(out.burst, opts.max_burst));
  out.ttl = std::clamp(out.ttl, opts.min_ttl, opts.max_ttl);
  return std::nullopt;
}

}  // namespace detail

template <class Executor = asio::any_io_executor>
class basic_transport {
 public:
  using hub_type = crier::basic_hub<Executor>;
  using strand_type = typename hub_type::executor_type;
  using clock = std::chrono::steady_clock;

  // Binds the UDP socket (throws std::system_error if it cannot).
  basic_transport(hub_type& hub, transport_options o = {})
      : hub_(hub), opts_(std::move(o)), socket_(asio::any_io_executor(hub.get_executor())) {
    asio::ip::udp::endpoint bind;
    if (!detail::parse_udp_endpoint(opts_.udp_bind, bind, true))
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "udp_game: bad address " + opts_.udp_bind);
    socket_.open(bind.protocol());
    if (bind.address().is_v6()) socket_.set_option(asio::ip::v6_only(false));
    socket_.bind(bind);
    socket_.non_blocking(true);  // send_to returns would_block instead of stalling the strand
    if (opts_.send_buffer > 0) socket_.set_option(asio::socket_base::send_buffer_size(opts_.send_buffer));
  }
  basic_transport(const basic_transport&) = delete;
  basic_transport& operator=(const basic_transport&) = delete;
  ~basic_transport() {
    life_.reset();
    endpoints_.clear();  // subscriptions end (synchronously detached); timers cancel
  }

  asio::ip::udp::endpoint local_endpoint() const { return socket_.local_endpoint(); }
  const transport_stats& stats() const noexcept { return stats_; }
  std::size_t size() const noexcept { return endpoints_.size(); }
  const transport_options& options() const noexcept { return opts_; }

  // Largest payload a message on `topic` may carry to be sent.
  std::size_t max_payload(std::string_view topic) const noexcept {
    auto fixed = proto::header_size + topic.size();
    return opts_.max_datagram > fixed ? opts_.max_datagram - fixed : 0;
  }

  // The registration API; true when `ex` was one of ours (answered), false to let the caller
  // route it elsewhere. Call on the hub's strand (run the HTTP server on hub.get_executor()).
  bool handle(const std::shared_ptr<crier::http::exchange>& ex) {
    auto& req = ex->req();
    std::string_view path = req.path();
    if (!path.starts_with(opts_.prefix)) return false;
    path.remove_prefix(opts_.prefix.size());
    auto method = req.method();
    if (path == "/endpoints") {
      if (method != "POST") return method_not_allowed(*ex, "POST"), true;
      return register_endpoint(*ex), true;
    }
    if (path == "/stats") {
      if (method != "GET") return method_not_allowed(*ex, "GET"), true;
      return ex->respond(crier::http::response::json(200, stats_json())), true;
    }
    if (!path.starts_with("/endpoints/")) return false;
    path.remove_prefix(11);
    bool refresh = path.ends_with("/refresh");
    if (refresh) path.remove_suffix(8);
    auto it = endpoints_.find(std::string(path));
    if (it == endpoints_.end()) {
      ex->respond(crier::http::response::error(
          404, "unknown_endpoint", "no such registration (expired, unregistered or never made): register again"));
      return true;
    }
    auto& e = *it->second;
    if (refresh) {
      if (method != "POST") return method_not_allowed(*ex, "POST"), true;
      e.expires_at = clock::now() + e.ttl;  // the expiry timer re-arms itself when it fires
      ++stats_.refreshed;
      picojson::object o;
      o["id"] = picojson::value(e.id);
      o["ttl"] = picojson::value(static_cast<double>(e.ttl.count()));
      ex->respond(crier::http::response::json(200, picojson::value(o).serialize()));
      return true;
    }
    if (method == "GET") return ex->respond(crier::http::response::json(200, endpoint_json(e).serialize())), true;
    if (method == "DELETE") {
      auto body = picojson::object{{"id", picojson::value(e.id)}, {"unregistered", picojson::value(true)}};
      ++stats_.unregistered;
      finish(e, proto::notice_code::bye, "unregistered");
      ex->respond(crier::http::response::json(200, picojson::value(body).serialize()));
      return true;
    }
    method_not_allowed(*ex, "GET, DELETE");
    return true;
  }

  // Ends every registration with a `bye` notice ("server stopping") and refuses new ones.
  // Call on the hub's strand.
  void stop() {
    if (stopping_) return;
    stopping_ = true;
    std::vector<endpoint*> all;
    for (auto& [id, e] : endpoints_) all.push_back(e.get());
    for (auto* e : all) finish(*e, proto::notice_code::bye, "server stopping");
    std::error_code ig;
    socket_.close(ig);
  }

 private:
  // One datagram waiting for a token (or for the socket): its body is shared when it is a
  // message (the frame cached on the message), its own string when a notice.
  struct outgoing {
    proto::kind kind = proto::kind::message;
    std::uint32_t skipped = 0;
    crier::frame_ptr body;
  };

  struct endpoint final : crier::subscriber, std::enable_shared_from_this<endpoint> {
    endpoint(basic_transport& t, const asio::any_io_executor& ex) : owner(&t), pace(ex), expiry(ex) {}
    void on_ready() override { owner->drain(*this); }

    basic_transport* owner;
    std::string id;
    asio::ip::udp::endpoint target;
    std::vector<std::string> topics;
    double rate = 0, burst = 0, tokens = 0;
    clock::time_point refilled;
    std::chrono::seconds ttl{0};
    clock::time_point expires_at;
    asio::steady_timer pace, expiry;
    bool pacing = false, waiting_socket = false, live = true;
    typename hub_type::subscription sub;
    std::unordered_map<std::string, crier::message_id> last_sent;  // per topic: the last id accounted for
    std::deque<outgoing> notices;
    std::optional<outgoing> held;  // taken, then the socket was full
    std::uint32_t packet = 0;
    std::uint64_t messages = 0, notices_sent = 0, oversize = 0, skipped = 0, conflated_before = 0, rate_waits = 0;

    std::uint64_t conflated() const { return conflated_before + (sub ? sub->stats().conflated : 0); }
  };

  static void method_not_allowed(crier::http::exchange& ex, std::string_view allow) {
    auto r = crier::http::response::error(405, "method_not_allowed", "allowed: " + std::string(allow));
    r.set("Allow", std::string(allow));
    ex.respond(std::move(r));
  }
  static void bad(crier::http::exchange& ex, unsigned status, std::string_view code, std::string_view msg) {
    ex.respond(crier::http::response::error(status, code, msg));
  }

  // POST {prefix}/endpoints  {"addr":"127.0.0.1:40000","topics":["game/*"],"rate":30,"burst":8,"ttl":30}
  void register_endpoint(crier::http::exchange& ex) {
    if (stopping_) return bad(ex, 503, "unavailable", "server stopping");
    detail::registration r;
    if (auto no = detail::parse_registration(ex.req().body(), opts_, r))
      return bad(ex, no->status, no->code, no->message);
    if (!opts_.allow_any_target) {
      auto peer = ex.remote_address();
      if (!peer || detail::unmapped(*peer) != r.target.address())
        return bad(ex, 403, "target_refused",
                   "addr must be your own IP (" + (peer ? detail::unmapped(*peer).to_string() : std::string("?")) +
                       "): the server does not send datagrams to third parties");
    }

    // One registration per UDP address: a receiver that restarts on the same port replaces its
    // old registration (whose id stops working) instead of being refused until it expires.
    for (auto& [id, e] : endpoints_)
      if (e->target == r.target) {
        ++stats_.replaced;
        finish(*e, {}, {});
        break;
      }
    if (endpoints_.size() >= opts_.max_endpoints)
      return bad(ex, 503, "too_many_endpoints", "the server has as many registrations as it takes");

    auto e = std::make_shared<endpoint>(*this, asio::any_io_executor(hub_.get_executor()));
    e->id = detail::random_id();
    e->target = r.target;
    e->topics = r.topics;
    e->rate = r.rate;
    e->burst = e->tokens = r.burst;
    e->refilled = clock::now();
    e->ttl = r.ttl;
    e->expires_at = clock::now() + r.ttl;
    std::error_code ec;
    e->sub = hub_.subscribe({.topics = r.topics, .queue = queue()}, *e, ec);
    if (ec) return bad(ex, ec == crier::errc::hub_stopped ? 503 : 400, "subscribe_failed", ec.message());
    start_positions(*e);
    endpoints_.emplace(e->id, e);
    ++stats_.registered;
    arm_expiry(e);
    std::string text = "id=" + e->id + " ttl=" + std::to_string(r.ttl.count()) + " rate=" + num(r.rate) +
                       " burst=" + num(r.burst);
    e->notices.push_back(notice(proto::notice_code::registered, 0, 0, {}, text));

    picojson::value j = endpoint_json(*e);
    auto& jo = j.template get<picojson::object>();
    jo["max_datagram"] = picojson::value(static_cast<double>(opts_.max_datagram));
    jo["header_bytes"] = picojson::value(static_cast<double>(proto::header_size));
    jo["refresh"] = picojson::value(opts_.prefix + "/endpoints/" + e->id + "/refresh");
    ex.respond(crier::http::response::json(201, j.serialize()));
    drain(*e);  // the `registered` notice
  }

  crier::queue_options queue() const {
    return {.max_messages = opts_.max_pending_topics, .max_bytes = opts_.max_pending_bytes,
            .policy = crier::overflow_policy::conflate};
  }

  // Where each topic starts: the subscription's cursor ("topic=id,...", the public way to read
  // the positions of all its topics), so the first datagram's `skipped` is right.
  void start_positions(endpoint& e) {
    std::error_code ec;
    auto c = crier::cursor::parse(e.sub->cursor_list(), ec);
    for (auto& [t, id] : c.topics) e.last_sent[t] = id;
  }

  static std::string num(double v) {
    char buf[32];
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return ec == std::errc{} ? std::string(buf, p) : "?";
  }

  outgoing notice(proto::notice_code code, std::uint32_t epoch, std::uint64_t seq, std::string_view topic,
                  std::string_view text, std::uint32_t skipped = 0) const {
    return {proto::kind::notice, skipped,
            std::make_shared<const std::string>(
                proto::encode_notice(code, epoch, seq, topic, text, opts_.max_datagram))};
  }

  void arm_expiry(const std::shared_ptr<endpoint>& e) {
    e->expiry.expires_at(e->expires_at);
    auto w = std::weak_ptr<endpoint>(e);
    e->expiry.async_wait([this, life = std::weak_ptr<int>(life_), w](std::error_code ec) {
      if (ec || !life.lock()) return;
      auto e = w.lock();
      if (!e || !e->live) return;
      if (clock::now() < e->expires_at) return arm_expiry(e);  // refreshed meanwhile
      ++stats_.expired;
      finish(*e, proto::notice_code::expired,
             "not refreshed within " + std::to_string(e->ttl.count()) + " s: register again");
    });
  }

  // Ends a registration: one last notice (sent whatever the bucket holds: it is the last
  // datagram), then the subscription and the timers go.
  void finish(endpoint& e, std::optional<proto::notice_code> code, std::string_view text) {
    if (!e.live) return;
    e.live = false;
    if (code && socket_.is_open()) {
      auto o = notice(*code, 0, 0, {}, text);
      transmit(e, o);  // if the socket is full it is lost, as any datagram may be
    }
    accumulated_conflated_ += e.conflated();
    e.sub.reset();
    e.pace.cancel();
    e.expiry.cancel();
    // May destroy `e`: callers touch it no more (drain() holds its own reference).
    auto id = e.id;
    endpoints_.erase(id);
  }

  void refill(endpoint& e, clock::time_point now) {
    std::chrono::duration<double> dt = now - e.refilled;
    e.refilled = now;
    e.tokens = std::min(e.burst, e.tokens + dt.count() * e.rate);
  }

  bool has_work(const endpoint& e) const { return e.held || !e.notices.empty() || (e.sub && e.sub->has_items()); }

  // Sends what the endpoint has, as far as its tokens go. On the strand.
  void drain(endpoint& e) {
    if (!e.live) return;
    auto self = e.shared_from_this();  // finish() below may drop the registry's reference
    if (e.sub) {
      if (auto ec = e.sub->error()) {
        if (ec != crier::errc::queue_overflow)
          return finish(e, proto::notice_code::bye,
                        ec == crier::errc::hub_stopped ? "server stopping" : ec.message());
        resubscribe(e);
        if (!e.live) return;
      }
    }
    refill(e, clock::now());
    while (has_work(e)) {
      if (socket_waiting_) return wait_socket(e);
      if (e.tokens < 1) {
        ++e.rate_waits;
        ++stats_.rate_waits;
        return pace(e);
      }
      outgoing o;
      if (e.held) {
        o = std::move(*e.held);
        e.held.reset();
      } else if (!e.notices.empty()) {
        o = std::move(e.notices.front());
        e.notices.pop_front();
      } else if (!take(e, o)) {
        continue;
      }
      if (!transmit(e, o)) {
        e.held = std::move(o);
        ++stats_.socket_busy;
        return wait_socket(e);
      }
      e.tokens -= 1;
    }
  }

  // The next item of the subscription as a datagram: a message, an oversize notice in its
  // place, or a gap notice. False when there was nothing.
  bool take(endpoint& e, outgoing& o) {
    auto item = e.sub->next();
    if (item.gap) {
      auto& g = *item.gap;
      e.last_sent[g.topic] = {g.next.epoch, g.next.seq ? g.next.seq - 1 : 0};
      std::string text = std::string(crier::to_string(g.reason)) + " after " + g.after.to_string() + " next " +
                         g.next.to_string() + " missed " + std::to_string(g.missed);
      o = notice(proto::notice_code::gap, g.next.epoch, g.next.seq, g.topic, text);
      return true;
    }
    if (!item.msg) return false;
    auto& m = *item.msg;
    auto& last = e.last_sent[m.topic()];
    // No position yet: the topic did not exist when the endpoint subscribed, so every seq
    // before this one was published for it. Another epoch: the hub sent a reset gap first.
    std::uint64_t skipped = last.epoch == 0                                    ? m.seq() - 1
                            : last.epoch == m.id().epoch && m.seq() > last.seq ? m.seq() - last.seq - 1
                                                                               : 0;
    last = m.id();
    auto sk = static_cast<std::uint32_t>(std::min<std::uint64_t>(skipped, UINT32_MAX));
    e.skipped += skipped;
    stats_.skipped += skipped;
    if (m.payload().size() > max_payload(m.topic())) {
      ++e.oversize;
      ++stats_.oversize;
      std::string text = "payload " + std::to_string(m.payload().size()) + " bytes > " +
                         std::to_string(max_payload(m.topic())) + " allowed on this topic (max_datagram " +
                         std::to_string(opts_.max_datagram) + " - header " + std::to_string(proto::header_size) +
                         " - topic " + std::to_string(m.topic().size()) + ")";
      o = notice(proto::notice_code::oversize, m.id().epoch, m.seq(), m.topic(), text, sk);
      return true;
    }
    o.kind = proto::kind::message;
    o.skipped = sk;
    o.body = m.frame(detail::frame_slot(), [](const crier::message& m) {
      return proto::encode_body(m.id().epoch, m.seq(), m.topic(), m.payload());
    });
    return true;
  }

  // One datagram, now. False when the socket's buffer is full (nothing was sent).
  bool transmit(endpoint& e, const outgoing& o) {
    unsigned char prefix[proto::prefix_size];
    proto::write_prefix(prefix, o.kind, e.packet + 1, o.skipped);
    std::array<asio::const_buffer, 2> bufs{asio::buffer(prefix), asio::buffer(*o.body)};
    std::error_code ec;
    socket_.send_to(bufs, e.target, 0, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return false;
    ++e.packet;  // an error counts as a lost datagram: the receiver sees the packet jump
    if (ec) {
      ++stats_.send_errors;
      return true;
    }
    ++stats_.datagrams;
    if (o.kind == proto::kind::message) ++e.messages, ++stats_.messages;
    else ++e.notices_sent, ++stats_.notices;
    return true;
  }

  // No token: come back when one has accrued. Meanwhile the hub conflates the queue.
  void pace(endpoint& e) {
    if (e.pacing) return;
    e.pacing = true;
    auto wait = std::chrono::duration<double>((1.0 - e.tokens) / e.rate);
    e.pace.expires_after(std::chrono::duration_cast<clock::duration>(wait) + std::chrono::microseconds(1));
    e.pace.async_wait([this, life = std::weak_ptr<int>(life_), w = e.weak_from_this()](std::error_code ec) {
      if (ec || !life.lock()) return;
      if (auto e = w.lock()) {
        e->pacing = false;
        drain(*e);
      }
    });
  }

  // The socket's send buffer is full: every endpoint with work waits for it together.
  void wait_socket(endpoint& e) {
    if (!e.waiting_socket) {
      e.waiting_socket = true;
      blocked_.push_back(e.weak_from_this());
    }
    if (socket_waiting_) return;
    socket_waiting_ = true;
    socket_.async_wait(asio::socket_base::wait_write, [this, life = std::weak_ptr<int>(life_)](std::error_code ec) {
      if (!life.lock()) return;
      socket_waiting_ = false;
      auto list = std::move(blocked_);
      blocked_.clear();
      if (ec) return;
      for (auto& w : list)
        if (auto e = w.lock()) {
          e->waiting_socket = false;
          drain(*e);
        }
    });
  }

  // Policy conflate holds one message per topic; more distinct topics than max_pending_topics
  // ends the subscription (crier's fallback to disconnect). Start again from what was sent:
  // a per-topic cursor of the last ids accounted for; topics never sent are not listed, so the
  // hub replays their history, which the conflating queue reduces to the newest message each.
  void resubscribe(endpoint& e) {
    ++stats_.overflow_resubscribes;
    e.conflated_before = e.conflated();
    crier::cursor since;
    since.what = crier::cursor::kind::per_topic;
    for (auto& [t, id] : e.last_sent)
      if (id.epoch != 0) since.topics.emplace_back(t, id);
    e.sub.reset();
    std::error_code ec;
    e.sub = hub_.subscribe({.topics = e.topics, .since = std::move(since), .queue = queue()}, e, ec);
    if (ec) return finish(e, proto::notice_code::bye, ec.message());
    if (e.notices.size() < max_pending_notices)  // one says it all while the endpoint waits for tokens
      e.notices.push_back(notice(proto::notice_code::overflow, 0, 0, {},
                               "more than " + std::to_string(opts_.max_pending_topics) +
                                   " topics pending: resubscribed from the last ids sent"));
  }

  picojson::value endpoint_json(const endpoint& e) const {
    picojson::object o;
    picojson::array topics;
    for (auto& t : e.topics) topics.emplace_back(t);
    auto ms = [](clock::duration d) {
      return picojson::value(static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
    };
    o["id"] = picojson::value(e.id);
    o["addr"] = picojson::value(detail::to_string(e.target));
    o["topics"] = picojson::value(topics);
    o["rate"] = picojson::value(e.rate);
    o["burst"] = picojson::value(e.burst);
    o["ttl"] = picojson::value(static_cast<double>(e.ttl.count()));
    o["expires_in_ms"] = ms(e.expires_at - clock::now());
    o["datagrams"] = picojson::value(static_cast<double>(e.packet));
    o["messages"] = picojson::value(static_cast<double>(e.messages));
    o["notices"] = picojson::value(static_cast<double>(e.notices_sent));
    o["oversize"] = picojson::value(static_cast<double>(e.oversize));
    o["skipped"] = picojson::value(static_cast<double>(e.skipped));
    o["conflated"] = picojson::value(static_cast<double>(e.conflated()));
    o["rate_waits"] = picojson::value(static_cast<double>(e.rate_waits));
    o["queued"] = picojson::value(static_cast<double>(e.sub ? e.sub->queued_messages() : 0));
    return picojson::value(o);
  }

  std::string stats_json() const {
    picojson::object o;
    auto put = [&](const char* k, std::uint64_t v) { o[k] = picojson::value(static_cast<double>(v)); };
    put("endpoints", endpoints_.size());
    put("registered", stats_.registered);
    put("refreshed", stats_.refreshed);
    put("unregistered", stats_.unregistered);
    put("expired", stats_.expired);
    put("replaced", stats_.replaced);
    put("datagrams", stats_.datagrams);
    put("messages", stats_.messages);
    put("notices", stats_.notices);
    put("oversize", stats_.oversize);
    put("skipped", stats_.skipped);
    std::uint64_t conflated = accumulated_conflated_;
    for (auto& [id, e] : endpoints_) conflated += e->conflated();
    put("conflated", conflated);
    put("rate_waits", stats_.rate_waits);
    put("socket_busy", stats_.socket_busy);
    put("send_errors", stats_.send_errors);
    put("overflow_resubscribes", stats_.overflow_resubscribes);
    o["max_datagram"] = picojson::value(static_cast<double>(opts_.max_datagram));
    return picojson::value(o).serialize();
  }

  static constexpr std::size_t max_pending_notices = 4;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);  // handlers hold it weakly: "transport still here"
  hub_type& hub_;
  transport_options opts_;
  asio::ip::udp::socket socket_;
  std::unordered_map<std::string, std::shared_ptr<endpoint>> endpoints_;
  std::vector<std::weak_ptr<endpoint>> blocked_;
  bool socket_waiting_ = false;
  bool stopping_ = false;
  std::uint64_t accumulated_conflated_ = 0;
  transport_stats stats_;
};

using transport = basic_transport<>;

}  // namespace udp_game
