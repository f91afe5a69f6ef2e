// crier_tcp_feed_client: subscribes on the TCP feed (README.md), prints every message with its
// id, checks the ids (in order, no duplicates, every jump explained by a gap notice), and
// reconnects and resumes from its cursor when the connection drops.
//
//   crier_tcp_feed_client --connect 127.0.0.1:9000 --topic prices/AAPL --topic 'news/*' --reconnect
//
// Output: one line per event (--json: one JSON object per line) — hello, subscribed, message,
// gap, error, goodbye, disconnect, reconnect — and a final "end" line with the counts and the
// resume cursor. Exit status: 0 done (--count reached, or the server said goodbye and
// --reconnect is off), 1 an id check failed, 2 usage, 3 the connection ended otherwise,
// 4 --max-seconds reached.
#include "feed_protocol.hpp"

#include <crier/detail/asio.hpp>  // <asio.hpp>, included the way every crier target does

#include <charconv>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace proto = tcp_feed::proto;
using asio::ip::tcp;

namespace {

struct options {
  std::string host = "127.0.0.1";
  std::string port = "9000";
  std::vector<std::string> topics;
  std::string since;          // first subscribe ("" = new messages only, "0" = all the history holds)
  proto::policy policy = proto::policy::server_default;
  std::uint64_t count = 0;    // stop after this many messages (0 = never)
  std::uint64_t disconnect_after = 0;  // drop the first connection after this many messages (tests resume)
  bool reconnect = false;
  bool json = false;
  bool quiet = false;         // only the final line
  bool no_data = false;       // leave payloads out of the output
  double max_seconds = 0;     // 0 = no limit
  unsigned read_delay_ms = 0; // a slow consumer: pause this long after each read
  std::size_t max_frame = 64u << 20;
};

void usage(std::FILE* out) {
  std::fputs(
      "usage: crier_tcp_feed_client --connect HOST:PORT --topic T [options]\n"
      "  --topic T              topic or pattern (a/*, a/**); repeatable: one subscription with all of them\n"
      "  --since CURSOR         start after this cursor: \"0\" (all held), EPOCH:SEQ, or topic=EPOCH:SEQ,...\n"
      "  --policy P             conflate, drop_oldest or disconnect (default: the server's)\n"
      "  --count N              exit after N messages\n"
      "  --reconnect            on a lost connection (or an overflow), reconnect and resume from the cursor\n"
      "  --disconnect-after N   close the first connection after N messages (to exercise resume)\n"
      "  --read-delay-ms MS     pause after each read: a deliberately slow consumer\n"
      "  --max-seconds S        give up after S seconds (exit 4)\n"
      "  --json                 one JSON object per line\n"
      "  --no-data              do not print payloads\n"
      "  --quiet                print only the final line\n",
      out);
}

std::string json_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size() + 2);
  o += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += static_cast<char>(c);
    else if (c < 0x20 || c >= 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);  // bytes, not code points: payloads may be binary
      o += b;
    } else o += static_cast<char>(c);
  }
  o += '"';
  return o;
}

// "topic=EPOCH:SEQ,..." -> per topic ids (ids that do not parse are skipped).
std::map<std::string, proto::wire_id> parse_cursor_list(std::string_view s) {
  std::map<std::string, proto::wire_id> out;
  while (!s.empty()) {
    auto comma = s.find(',');
    auto item = s.substr(0, comma);
    auto eq = item.rfind('=');
    auto colon = item.rfind(':');
    if (eq != std::string_view::npos && colon != std::string_view::npos && colon > eq) {
      proto::wire_id id;
      auto e = std::from_chars(item.data() + eq + 1, item.data() + colon, id.epoch, 16);
      auto q = std::from_chars(item.data() + colon + 1, item.data() + item.size(), id.seq);
      if (e.ec == std::errc{} && q.ec == std::errc{}) out[std::string(item.substr(0, eq))] = id;
    }
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

class client {
 public:
  client(asio::io_context& io, options o) : io_(io), o_(std::move(o)), socket_(io), timer_(io), deadline_(io) {}

  int run() {
    if (o_.max_seconds > 0) {
      deadline_.expires_after(std::chrono::milliseconds(static_cast<long long>(o_.max_seconds * 1000)));
      deadline_.async_wait([this](std::error_code ec) {
        if (!ec) finish(4, "max-seconds");
      });
    }
    connect();
    io_.run();
    return status_;
  }

 private:
  // ------------------------------------------------------------------ connection
  void connect() {
    rbuf_.clear();
    tcp::resolver resolver(io_);
    std::error_code ec;
    auto eps = resolver.resolve(o_.host, o_.port, ec);
    if (ec) return lost("resolve: " + ec.message());
    asio::async_connect(socket_, eps, [this](std::error_code ec, const tcp::endpoint&) {
      if (done_) return;
      if (ec) return lost("connect: " + ec.message());
      std::error_code ig;
      socket_.set_option(tcp::no_delay(true), ig);
      ++connections_;
      on_connection_ = 0;
      backoff_ms_ = 100;
      subscribe();
      read();
    });
  }

  // The resume cursor: per topic, the last id we have. Before any message (or subscribed
  // ack with a position) on a reconnect: "0", since everything held is then new to us.
  std::string cursor() const {
    std::string s;
    for (auto& [t, id] : last_) {
      if (id.epoch == 0) continue;
      if (!s.empty()) s += ',';
      s += t + "=" + proto::to_string(id);
    }
    return s;
  }

  void subscribe() {
    std::string since = subscribed_once_ ? cursor() : o_.since;
    if (subscribed_once_ && since.empty()) since = "0";
    if (subscribed_once_) emit_reconnect(since);
    std::string f;
    proto::writer w(f);
    w.begin(proto::client_op::subscribe).u32(1).u8(static_cast<std::uint8_t>(o_.policy)).str32(since);
    w.u16(static_cast<std::uint16_t>(o_.topics.size()));
    for (auto& t : o_.topics) w.str16(t);
    w.end();
    send(std::move(f));
  }

  void send(std::string frame) {
    bool idle = wqueue_.empty();
    wqueue_.push_back(std::move(frame));
    if (idle) write_next();
  }
  void write_next() {
    asio::async_write(socket_, asio::buffer(wqueue_.front()), [this](std::error_code ec, std::size_t) {
      if (done_ || ec) return;  // a broken connection shows on the read side
      wqueue_.erase(wqueue_.begin());
      if (!wqueue_.empty()) write_next();
    });
  }

  void read() {
    auto old = rbuf_.size();
    rbuf_.resize(old + 64 * 1024);
    socket_.async_read_some(asio::buffer(rbuf_.data() + old, 64 * 1024), [this, old](std::error_code ec, std::size_t n) {
      rbuf_.resize(old + n);
      if (done_) return;
      if (ec) return lost(ec == asio::error::eof ? (goodbye_ ? "closed after goodbye" : "server closed the connection")
                                                 : ec.message());
      if (!parse()) return;
      if (o_.read_delay_ms == 0) return read();
      timer_.expires_after(std::chrono::milliseconds(o_.read_delay_ms));
      timer_.async_wait([this](std::error_code e) {
        if (!e && !done_) read();
      });
    });
  }

  // False when the connection was dropped or the run ended.
  bool parse() {
    std::size_t pos = 0;
    auto gen = connections_;
    while (rbuf_.size() - pos >= proto::header_size) {
      auto len = proto::frame_length(rbuf_.data() + pos);
      if (len == 0 || len > o_.max_frame) {
        violation("frame length " + std::to_string(len));
        return false;
      }
      if (rbuf_.size() - pos - proto::header_size < len) break;
      const char* body = rbuf_.data() + pos + proto::header_size;
      pos += proto::header_size + len;
      frame(static_cast<std::uint8_t>(*body), proto::reader(body + 1, len - 1));
      if (done_ || gen != connections_ || !socket_.is_open()) return false;
    }
    rbuf_.erase(0, pos);
    return true;
  }

  void frame(std::uint8_t type, proto::reader r) {
    switch (static_cast<proto::server_op>(type)) {
      case proto::server_op::hello: {
        auto v = r.u8();
        auto max = r.u32();
        if (!r.ok()) return violation("bad hello");
        return line("hello", "version " + std::to_string(v),
                    "\"version\":" + std::to_string(v) + ",\"max_client_frame\":" + std::to_string(max));
      }
      case proto::server_op::subscribed: {
        auto sub = r.u32();
        auto cur = r.str32();
        if (!r.ok()) return violation("bad subscribed");
        subscribed_once_ = true;
        for (auto& [t, id] : parse_cursor_list(cur))
          if (!last_.count(t)) last_[t] = id;  // where each topic starts for us
        return line("subscribed", "sub " + std::to_string(sub) + " at " + (cur.empty() ? "(new)" : std::string(cur)),
                    "\"sub\":" + std::to_string(sub) + ",\"cursor\":" + json_escape(cur));
      }
      case proto::server_op::unsubscribed: return line("unsubscribed", std::to_string(r.u32()), "");
      case proto::server_op::message: return message(r);
      case proto::server_op::gap: {
        auto sub = r.u32();
        auto reason = static_cast<proto::gap_reason>(r.u8());
        std::string topic(r.str16());
        auto after = r.id();
        auto next = r.id();
        auto missed = r.u64();
        if (!r.ok() || !r.done()) return violation("bad gap");
        ++gaps_;
        if (reason == proto::gap_reason::conflated) skipped_ += missed;
        else missed_ += missed;
        // The next message of the topic is `next`: the gap explains the jump to it.
        last_[topic] = next.seq ? proto::wire_id{next.epoch, next.seq - 1} : next;
        return line("gap",
                    topic + " " + std::string(proto::to_string(reason)) + " after " + proto::to_string(after) + " next " +
                        proto::to_string(next) + " missed " + std::to_string(missed),
                    "\"sub\":" + std::to_string(sub) + ",\"reason\":\"" + std::string(proto::to_string(reason)) +
                        "\",\"topic\":" + json_escape(topic) + ",\"after\":\"" + proto::to_string(after) +
                        "\",\"next\":\"" + proto::to_string(next) + "\",\"missed\":" + std::to_string(missed));
      }
      case proto::server_op::error: {
        auto sub = r.u32();
        auto code = static_cast<proto::error_code>(r.u16());
        std::string text(r.str16());
        if (!r.ok()) return violation("bad error frame");
        line("error", "sub " + std::to_string(sub) + " " + std::string(proto::to_string(code)) + ": " + text,
             "\"sub\":" + std::to_string(sub) + ",\"code\":\"" + std::string(proto::to_string(code)) +
                 "\",\"text\":" + json_escape(text));
        if (code == proto::error_code::queue_overflow && o_.reconnect) {
          ++resumes_;
          return subscribe();  // the same connection: resume this subscription from our cursor
        }
        if (sub == 0 || code == proto::error_code::queue_overflow) fatal_error_ = true;  // the server closes / we are done
        if (code == proto::error_code::queue_overflow) finish(3, "subscription ended: queue overflow");
        else if (sub != 0) finish(3, "subscribe refused");
        return;
      }
      case proto::server_op::pong: return;
      case proto::server_op::goodbye: {
        auto code = r.u16();
        std::string text(r.str16());
        goodbye_ = true;
        return line("goodbye", text, "\"code\":" + std::to_string(code) + ",\"text\":" + json_escape(text));
      }
    }
    violation("unknown frame type " + std::to_string(type));
  }

  void message(proto::reader& r) {
    auto id = r.id();
    std::string topic(r.str16());
    auto event = r.str16();
    auto ctype = r.str16();
    auto payload = r.rest();
    if (!r.ok()) return violation("bad message frame");
    auto it = last_.find(topic);
    std::string check;
    if (it != last_.end() && it->second.epoch != 0) {
      auto& prev = it->second;
      if (prev.epoch != id.epoch) check = "epoch changed without a reset gap";
      else if (id.seq <= prev.seq) {
        ++duplicates_;
        line("duplicate", topic + " " + proto::to_string(id), "\"topic\":" + json_escape(topic) + ",\"id\":\"" +
                                                                  proto::to_string(id) + "\"");
        return;
      } else if (id.seq != prev.seq + 1) {
        check = "seq jumped from " + std::to_string(prev.seq) + " to " + std::to_string(id.seq) + " without a gap notice";
      }
    }  // a topic we have no position for starts wherever the server starts it
    if (!check.empty()) {
      ++unexplained_;
      line("check", topic + ": " + check, "\"topic\":" + json_escape(topic) + ",\"problem\":" + json_escape(check));
    }
    last_[topic] = id;
    ++messages_;
    ++on_connection_;
    if (!o_.quiet) {
      std::string data = o_.no_data ? std::string() : std::string(payload.substr(0, 4096));
      if (o_.json) {
        std::string extra = "\"topic\":" + json_escape(topic) + ",\"id\":\"" + proto::to_string(id) +
                            "\",\"size\":" + std::to_string(payload.size());
        if (!event.empty()) extra += ",\"event\":" + json_escape(event);
        if (!ctype.empty()) extra += ",\"content_type\":" + json_escape(ctype);
        if (!o_.no_data) extra += ",\"data\":" + json_escape(data);
        line("message", "", extra);
      } else {
        std::printf("%s %s %s\n", topic.c_str(), proto::to_string(id).c_str(), data.c_str());
      }
    }
    if (o_.count && messages_ >= o_.count) return finish(0, "count reached");
    if (o_.disconnect_after && connections_ == 1 && on_connection_ == o_.disconnect_after) {
      line("disconnect", "after " + std::to_string(on_connection_) + " messages (--disconnect-after)",
           "\"reason\":\"disconnect-after\"");
      std::error_code ig;
      socket_.close(ig);
      if (!o_.reconnect) return finish(3, "disconnected");
      return schedule_reconnect();
    }
  }

  // ------------------------------------------------------------------ ending
  void lost(const std::string& why) {
    if (done_) return;
    std::error_code ig;
    socket_.close(ig);
    wqueue_.clear();
    if (goodbye_ && !o_.reconnect) return finish(0, why);
    line("disconnect", why, "\"reason\":" + json_escape(why));
    if (!o_.reconnect || fatal_error_) return finish(3, why);
    schedule_reconnect();
  }

  void schedule_reconnect() {
    wqueue_.clear();
    socket_ = tcp::socket(io_);
    goodbye_ = false;
    timer_.cancel();
    // At once after a connection that delivered; with a growing pause while connects fail.
    timer_.expires_after(std::chrono::milliseconds(on_connection_ > 0 ? 0 : backoff_ms_));
    if (on_connection_ == 0) backoff_ms_ = std::min(backoff_ms_ * 2, 2000u);
    on_connection_ = 0;
    timer_.async_wait([this](std::error_code ec) {
      if (!ec && !done_) connect();
    });
  }

  void violation(const std::string& what) {
    ++unexplained_;
    line("check", "protocol: " + what, "\"problem\":" + json_escape("protocol: " + what));
    finish(1, "protocol violation");
  }

  void finish(int status, const std::string& why) {
    if (done_) return;
    done_ = true;
    status_ = unexplained_ || duplicates_ ? 1 : status;
    std::error_code ig;
    socket_.shutdown(tcp::socket::shutdown_both, ig);
    socket_.close(ig);
    timer_.cancel();
    deadline_.cancel();
    bool q = o_.quiet;
    o_.quiet = false;
    line("end", why + ": " + std::to_string(messages_) + " messages, " + std::to_string(gaps_) + " gaps (" +
                    std::to_string(skipped_) + " conflated, " + std::to_string(missed_) + " missed), " +
                    std::to_string(unexplained_) + " unexplained, " + std::to_string(duplicates_) + " duplicates, " +
                    std::to_string(connections_ > 0 ? connections_ - 1 : 0) + " reconnects; cursor " + cursor(),
         "\"why\":" + json_escape(why) + ",\"messages\":" + std::to_string(messages_) + ",\"gaps\":" +
             std::to_string(gaps_) + ",\"conflated\":" + std::to_string(skipped_) + ",\"missed\":" +
             std::to_string(missed_) + ",\"unexplained\":" + std::to_string(unexplained_) + ",\"duplicates\":" +
             std::to_string(duplicates_) + ",\"reconnects\":" + std::to_string(connections_ > 0 ? connections_ - 1 : 0) +
             ",\"resumes\":" + std::to_string(resumes_) + ",\"cursor\":" + json_escape(cursor()) +
             ",\"status\":" + std::to_string(status_));
    o_.quiet = q;
    io_.stop();
  }

  void emit_reconnect(const std::string& since) {
    line("reconnect", "resuming from " + since, "\"since\":" + json_escape(since));
  }

  void line(const char* type, const std::string& text, const std::string& json_fields) {
    if (o_.quiet) return;
    if (o_.json) std::printf("{\"type\":\"%s\"%s%s}\n", type, json_fields.empty() ? "" : ",", json_fields.c_str());
    else std::printf("# %s %s\n", type, text.c_str());
    std::fflush(stdout);
  }

  asio::io_context& io_;
  options o_;
  tcp::socket socket_;
  asio::steady_timer timer_, deadline_;
  std::string rbuf_;
  std::vector<std::string> wqueue_;
  std::map<std::string, proto::wire_id> last_;  // per topic: the last id we have (or a gap's end)
  std::uint64_t messages_ = 0, on_connection_ = 0, gaps_ = 0, skipped_ = 0, missed_ = 0, unexplained_ = 0,
                duplicates_ = 0, connections_ = 0, resumes_ = 0;
  unsigned backoff_ms_ = 100;
  bool subscribed_once_ = false, goodbye_ = false, fatal_error_ = false, done_ = false;
  int status_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  bool have_connect = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return usage(stdout), 0;
    if (a == "--reconnect") { o.reconnect = true; continue; }
    if (a == "--json") { o.json = true; continue; }
    if (a == "--quiet") { o.quiet = true; continue; }
    if (a == "--no-data") { o.no_data = true; continue; }
    if (i + 1 >= argc) return std::fprintf(stderr, "crier_tcp_feed_client: %s needs a value\n", argv[i]), usage(stderr), 2;
    std::string v = argv[++i];
    bool ok = true;
    auto num = [&](auto& out) {
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      ok = ec == std::errc{} && p == v.data() + v.size();
    };
    if (a == "--connect") {
      auto colon = v.rfind(':');
      ok = colon != std::string::npos && colon + 1 < v.size();
      if (ok) {
        o.host = v.substr(0, colon);
        if (o.host.size() >= 2 && o.host.front() == '[') o.host = o.host.substr(1, o.host.size() - 2);
        o.port = v.substr(colon + 1);
        have_connect = true;
      }
    } else if (a == "--topic") o.topics.push_back(v);
    else if (a == "--since") o.since = v;
    else if (a == "--policy") {
      if (v == "conflate") o.policy = proto::policy::conflate;
      else if (v == "drop_oldest") o.policy = proto::policy::drop_oldest;
      else if (v == "disconnect") o.policy = proto::policy::disconnect;
      else ok = false;
    } else if (a == "--count") num(o.count);
    else if (a == "--disconnect-after") num(o.disconnect_after);
    else if (a == "--read-delay-ms") num(o.read_delay_ms);
    else if (a == "--max-seconds") {
      char* end = nullptr;
      o.max_seconds = std::strtod(v.c_str(), &end);
      ok = end && *end == '\0' && o.max_seconds >= 0;
    } else ok = false;
    if (!ok) return std::fprintf(stderr, "crier_tcp_feed_client: bad option %s %s\n", argv[i - 1], argv[i]), usage(stderr), 2;
  }
  if (!have_connect || o.topics.empty()) return usage(stderr), 2;
  asio::io_context io;
  client c(io, std::move(o));
  return c.run();
}
