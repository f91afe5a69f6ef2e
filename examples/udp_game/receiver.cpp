// crier_udp_game_receiver: registers a UDP endpoint with the game server (POST /udp/endpoints),
// prints every datagram with its topic, id and seq accounting, refreshes the registration
// every ttl/3, and unregisters on SIGINT/SIGTERM (README.md).
//
//   crier_udp_game_receiver --register http://127.0.0.1:8081/udp/endpoints --topic 'game/**'
//
// One JSON object per line on stdout:
//   {"type":"registered","id":...,"addr":"127.0.0.1:PORT","rate":R,"burst":B,"ttl":S,...}   (HTTP answer)
//   {"type":"message","packet":P,"topic":T,"id":"e:s","seq":S,"skipped":K,"gap":G,"lost":L,"bytes":N,"data":...}
//   {"type":"notice","packet":P,"code":"registered|oversize|gap|expired|bye|overflow","topic":T,"id":..,"text":..}
//   {"type":"end","reason":"count|bye|expired|signal|timeout|error","messages":N,"skipped":K,"lost":L,...}
// gap  = seqs between this datagram and the previous one of the topic (null for the first)
// lost = gap - skipped: seqs the server sent but that never arrived (network loss or reorder)
// Exit status: 0 after count/bye/expired/signal, 1 registration failed, 2 usage, 4 timeout.
#include "udp_protocol.hpp"

#include <crier/http/client.hpp>

#include <asio/ip/udp.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <picojson.h>

#include <charconv>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace proto = udp_game::proto;
using asio::ip::udp;

namespace {

struct options {
  std::string url;  // http://HOST:PORT/udp/endpoints
  std::vector<std::string> topics;
  std::string bind = "127.0.0.1:0";
  double rate = 0, burst = 0, ttl = 0;  // 0 = the server's default
  bool refresh = true;
  std::uint64_t count = 0;  // exit after this many messages (0 = never)
  double max_seconds = 0;
  bool no_data = false;
  bool quiet = false;  // only the registered and end lines
};

void usage(std::FILE* out) {
  std::fputs(
      "usage: crier_udp_game_receiver --register URL --topic T [options]\n"
      "  --register URL      the server's registration URL, e.g. http://127.0.0.1:8081/udp/endpoints\n"
      "  --topic T           topic or pattern (a/*, a/**); repeatable\n"
      "  --bind HOST:PORT    local UDP address to receive on (default 127.0.0.1:0)\n"
      "  --rate R            datagrams/s to ask for (default: the server's)\n"
      "  --burst B           token bucket depth to ask for (default: the server's)\n"
      "  --ttl S             registration lifetime to ask for; refreshed every ttl/3 (default: the server's)\n"
      "  --no-refresh        never refresh: the registration expires (for tests and demos)\n"
      "  --count N           exit after N messages\n"
      "  --max-seconds S     give up after S seconds (exit 4)\n"
      "  --no-data           leave payloads out of the output\n"
      "  --quiet             print only the registered and end lines\n",
      out);
}

bool valid_utf8(std::string_view s) {  // and no control characters but tab and newline
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    if (c < 0x80) {
      if (c < 0x20 && c != '\t' && c != '\n') return false;
      ++i;
      continue;
    }
    if ((c >> 5) == 6) n = 1;
    else if ((c >> 4) == 14) n = 2;
    else if ((c >> 3) == 30) n = 3;
    else return false;
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n + 1;
  }
  return true;
}

std::string hex(std::string_view s) {
  static constexpr char h[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) out += h[c >> 4], out += h[c & 15];
  return out;
}

class receiver {
 public:
  receiver(asio::io_context& io, options o)
      : io_(io),
        opts_(std::move(o)),
        socket_(io),
        http_(io.get_executor()),
        refresh_(io),
        deadline_(io),
        signals_(io, SIGINT, SIGTERM) {}

  int run() {
    udp::endpoint bind;
    auto colon = opts_.bind.rfind(':');
    std::error_code ec;
    unsigned port = 0;
    if (colon == std::string::npos) return std::fprintf(stderr, "receiver: bad --bind\n"), 2;
    auto host = opts_.bind.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    auto addr = asio::ip::make_address(host, ec);
    auto pstr = std::string_view(opts_.bind).substr(colon + 1);
    auto [p, pec] = std::from_chars(pstr.data(), pstr.data() + pstr.size(), port);
    if (ec || pec != std::errc{} || p != pstr.data() + pstr.size() || port > 65535)
      return std::fprintf(stderr, "receiver: bad --bind %s\n", opts_.bind.c_str()), 2;
    socket_.open(addr.is_v6() ? udp::v6() : udp::v4());
    socket_.set_option(asio::socket_base::receive_buffer_size(1 << 20), ec);
    socket_.bind(udp::endpoint(addr, static_cast<unsigned short>(port)));
    receive();
    register_endpoint();
    signals_.async_wait([this](std::error_code e, int) {
      if (!e) unregister_and_end("signal");
    });
    if (opts_.max_seconds > 0) {
      deadline_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(opts_.max_seconds)));
      deadline_.async_wait([this](std::error_code e) {
        if (!e) end("timeout", 4);
      });
    }
    io_.run();
    return status_;
  }

 private:
  void print(const picojson::object& o) {
    std::string s = picojson::value(o).serialize();
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  static picojson::value n(double v) { return picojson::value(v); }

  std::string local_addr() const {
    auto ep = socket_.local_endpoint();
    auto a = ep.address();
    return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
  }

  void register_endpoint() {
    picojson::object body;
    picojson::array topics;
    for (auto& t : opts_.topics) topics.emplace_back(t);
    body["addr"] = picojson::value(local_addr());
    body["topics"] = picojson::value(topics);
    if (opts_.rate > 0) body["rate"] = n(opts_.rate);
    if (opts_.burst > 0) body["burst"] = n(opts_.burst);
    if (opts_.ttl > 0) body["ttl"] = n(opts_.ttl);
    http_.async_request({.method = "POST", .url = opts_.url, .headers = {{"Content-Type", "application/json"}},
                         .body = picojson::value(body).serialize()},
                        [this](std::error_code ec, crier::http::client_response r) {
                          if (ended_) return;
                          picojson::value v;
                          if (ec || r.status != 201 || !picojson::parse(v, r.body).empty() ||
                              !v.is<picojson::object>()) {
                            std::fprintf(stderr, "receiver: registration failed: %s %u %s\n", ec.message().c_str(),
                                         r.status, r.body.c_str());
                            return end("error", 1);
                          }
                          auto o = v.get<picojson::object>();
                          id_ = o["id"].to_str();
                          ttl_ = o["ttl"].is<double>() ? o["ttl"].get<double>() : 30;
                          o["type"] = picojson::value("registered");
                          print(o);
                          arm_refresh();
                        });
  }

  void arm_refresh() {
    if (!opts_.refresh) return;
    refresh_.expires_after(std::chrono::milliseconds(static_cast<long>(ttl_ * 1000 / 3)));
    refresh_.async_wait([this](std::error_code ec) {
      if (ec || ended_) return;
      http_.async_request({.method = "POST", .url = opts_.url + "/" + id_ + "/refresh"},
                          [this](std::error_code ec, crier::http::client_response r) {
                            if (ended_) return;
                            if (!ec && r.status == 200) return arm_refresh();
                            // Expired (e.g. the process was paused) or the server restarted: start over.
                            print({{"type", picojson::value("refresh_failed")}, {"status", n(r.status)}});
                            register_endpoint();
                          });
    });
  }

  void receive() {
    socket_.async_receive_from(asio::buffer(buf_), from_, [this](std::error_code ec, std::size_t len) {
      if (ended_) return;
      if (ec == asio::error::operation_aborted) return;
      if (!ec) on_datagram(std::string_view(buf_.data(), len));
      receive();
    });
  }

  void on_datagram(std::string_view d) {
    auto g = proto::parse(d);
    if (!g) {
      ++malformed_;
      if (!opts_.quiet) print({{"type", picojson::value("malformed")}, {"bytes", n(static_cast<double>(d.size()))}});
      return;
    }
    if (last_packet_ && g->packet != last_packet_ + 1) {
      if (g->packet > last_packet_) packets_lost_ += g->packet - last_packet_ - 1;
      else ++reordered_;
    }
    if (g->packet == 1 || g->packet > last_packet_) last_packet_ = g->packet;
    std::string topic(g->topic);
    picojson::object o;
    o["packet"] = n(g->packet);
    if (!topic.empty()) o["topic"] = picojson::value(topic);
    if (g->epoch) {
      o["id"] = picojson::value(proto::id_string(g->epoch, g->seq));
      o["seq"] = n(static_cast<double>(g->seq));
    }

    // Seq accounting for datagrams about a message: messages, and oversize notices in their place.
    bool about_seq = g->what == proto::kind::message || g->code == proto::notice_code::oversize;
    if (about_seq) {
      o["skipped"] = n(g->skipped);
      auto it = topics_.find(topic);
      if (it != topics_.end() && it->second.first == g->epoch) {
        auto last = it->second.second;
        if (g->seq <= last) {
          o["gap"] = picojson::value();
          o["out_of_order"] = picojson::value(true);
          ++reordered_;
        } else {
          auto gap = g->seq - last - 1;
          o["gap"] = n(static_cast<double>(gap));
          auto lost = gap > g->skipped ? gap - g->skipped : 0;
          o["lost"] = n(static_cast<double>(lost));
          lost_ += lost;
        }
      } else {
        o["gap"] = picojson::value();
      }
      if (it == topics_.end() || it->second.first != g->epoch || g->seq > it->second.second)
        topics_[topic] = {g->epoch, g->seq};
      skipped_ += g->skipped;
    }

    if (g->what == proto::kind::message) {
      ++messages_;
      o["type"] = picojson::value("message");
      o["bytes"] = n(static_cast<double>(g->payload.size()));
      if (!opts_.no_data) {
        if (valid_utf8(g->payload)) o["data"] = picojson::value(std::string(g->payload));
        else o["data_hex"] = picojson::value(hex(g->payload));
      }
      if (!opts_.quiet) print(o);
      if (opts_.count && messages_ >= opts_.count) end("count", 0);
      return;
    }
    ++notices_;
    o["type"] = picojson::value("notice");
    o["code"] = picojson::value(std::string(proto::to_string(g->code)));
    o["text"] = picojson::value(valid_utf8(g->payload) ? std::string(g->payload) : hex(g->payload));
    if (g->code == proto::notice_code::gap && g->epoch)  // the next message of the topic is g->seq
      topics_[topic] = {g->epoch, g->seq ? g->seq - 1 : 0};
    if (!opts_.quiet) print(o);
    if (g->code == proto::notice_code::bye) return end(leaving_ ? leaving_ : "bye", 0);
    if (g->code == proto::notice_code::expired) {
      if (!opts_.refresh) return end("expired", 0);
      register_endpoint();  // refreshes came too late: register again
    }
  }

  void unregister_and_end(const char* why) {
    if (ended_ || id_.empty()) return end(why, 0);
    leaving_ = why;
    // Tell the server (best effort, a few seconds at most), then finish.
    deadline_.expires_after(std::chrono::seconds(3));
    deadline_.async_wait([this, why](std::error_code ec) {
      if (!ec) end(why, 0);
    });
    http_.async_request({.method = "DELETE", .url = opts_.url + "/" + id_},
                        [this, why](std::error_code, crier::http::client_response) { end(why, 0); });
  }

  void end(const char* why, int status) {
    if (ended_) return;
    ended_ = true;
    status_ = status;
    print({{"type", picojson::value("end")},
           {"reason", picojson::value(why)},
           {"messages", n(static_cast<double>(messages_))},
           {"notices", n(static_cast<double>(notices_))},
           {"skipped", n(static_cast<double>(skipped_))},
           {"lost", n(static_cast<double>(lost_))},
           {"packets_lost", n(static_cast<double>(packets_lost_))},
           {"reordered", n(static_cast<double>(reordered_))},
           {"malformed", n(static_cast<double>(malformed_))}});
    std::error_code ig;
    socket_.close(ig);
    refresh_.cancel();
    deadline_.cancel();
    signals_.cancel();
    http_.shutdown();
  }

  asio::io_context& io_;
  options opts_;
  udp::socket socket_;
  crier::http::client http_;
  asio::steady_timer refresh_, deadline_;
  asio::signal_set signals_;
  std::array<char, 65536> buf_{};
  udp::endpoint from_;
  std::string id_;
  double ttl_ = 30;
  bool ended_ = false;
  const char* leaving_ = nullptr;  // unregistering: the `bye` that answers it is ours
  int status_ = 0;
  std::map<std::string, std::pair<std::uint32_t, std::uint64_t>> topics_;  // topic -> (epoch, last seq)
  std::uint32_t last_packet_ = 0;
  std::uint64_t messages_ = 0, notices_ = 0, skipped_ = 0, lost_ = 0;
  std::uint64_t packets_lost_ = 0, reordered_ = 0, malformed_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return usage(stdout), 0;
    if (a == "--no-refresh") o.refresh = false;
    else if (a == "--no-data") o.no_data = true;
    else if (a == "--quiet") o.quiet = true;
    else if (i + 1 >= argc) return std::fprintf(stderr, "receiver: %s needs a value\n", argv[i]), usage(stderr), 2;
    else {
      std::string_view v = argv[++i];
      double d = 0;
      auto num = [&] {
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
        return ec == std::errc{} && p == v.data() + v.size() && d >= 0;
      };
      bool ok = true;
      if (a == "--register") o.url = v;
      else if (a == "--topic") o.topics.emplace_back(v);
      else if (a == "--bind") o.bind = v;
      else if (!(ok = num())) {
      } else if (a == "--rate") o.rate = d;
      else if (a == "--burst") o.burst = d;
      else if (a == "--ttl") o.ttl = d;
      else if (a == "--count") o.count = static_cast<std::uint64_t>(d);
      else if (a == "--max-seconds") o.max_seconds = d;
      else ok = false;
      if (!ok) return std::fprintf(stderr, "receiver: bad option %s %s\n", argv[i - 1], argv[i]), usage(stderr), 2;
    }
  }
  if (o.url.empty() || o.topics.empty()) return usage(stderr), 2;
  asio::io_context io;
  receiver r{io, std::move(o)};
  return r.run();
}
