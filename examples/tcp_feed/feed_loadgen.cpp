// crier_tcp_feed_loadgen: fan-out load generator and meter for the TCP feed. N subscriber
// connections on the feed, one publisher that POSTs timestamped, sequence-numbered payloads to
// crier's HTTP publish endpoint (pipelined, as fanout-meter does), and a JSON report of what
// arrived: delivered / lost / duplicated / reordered, latency percentiles, delivery rate, and
// the server's CPU.
//
// It takes fanout-meter's command line (the options bench/ws_sweep.py passes) and writes the
// same JSON fields, so bench/run_tcp_feed.sh drives the TCP feed and crier's WebSocket through
// the same sweep with the same pass criteria. --mode is accepted and ignored: the subscriber
// URL's tcp:// scheme selects the feed. Loopback targets only; every run is bounded
// (--max-seconds, plus a watchdog 15 s later).
//
//   crier_tcp_feed_loadgen --url tcp://127.0.0.1:9000 --subs 2000 --size 128 --rate 50 --count 200
//       --pub-url 'http://127.0.0.1:8080/topics/{topic}' --pub-window 16
//
// Payload marker (as fanout-meter): "#<seq>:<topic index>:<t_ns>#" padded with letters to
// --size; t_ns = CLOCK_MONOTONIC when the POST was queued for writing.
#include "feed_protocol.hpp"

#include <crier/detail/asio.hpp>

#include <netinet/in.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace proto = tcp_feed::proto;
using asio::ip::tcp;

namespace {

std::uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1000000000ull + std::uint64_t(ts.tv_nsec);
}

// ------------------------------------------------------------------ config
struct config {
  std::vector<std::string> urls;
  std::uint32_t subs = 1, topics = 1;
  std::string topic_prefix = "t";
  int src_ips = 0;
  double connect_rate = 5000, connect_timeout = 10, settle_ms = 500;
  std::uint32_t connect_conc = 1000;
  std::string pub_url;
  std::uint32_t pub_window = 1;
  double rate = 1000, duration = -1, drain = 5, max_seconds = 120, progress = 1;
  std::int64_t count = -1;
  std::uint32_t size = 64;
  int server_pid = 0;
  bool pid_tree = false, strict = false, quiet = false;
  std::string out_file, label;
  proto::policy policy = proto::policy::disconnect;  // as crier's WebSocket runs in bench/run_ws.sh
};

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "crier_tcp_feed_loadgen: %s\n", m.c_str());
  std::exit(2);
}

void usage(int code) {
  std::fputs(
      "crier_tcp_feed_loadgen - fan-out load generator for the TCP feed (loopback only)\n"
      "  --url tcp://HOST:PORT     feed address (repeatable: subscribers spread over them)\n"
      "  --subs N                  subscriber connections (default 1)\n"
      "  --topics T                topics; subscriber i gets topic i % T (default 1)\n"
      "  --topic-prefix S          topic name = S + index; {run} = a per-run id (default t)\n"
      "  --policy P                feed overflow policy: disconnect (default), drop_oldest, conflate\n"
      "  --src-ips K               bind subscriber i to 127.0.0.(1 + i % K)\n"
      "  --connect-rate R          new connections per second (default 5000)\n"
      "  --connect-concurrency C   connects + subscribes in progress at once (default 1000)\n"
      "  --connect-timeout S       per connection (default 10)\n"
      "  --settle MS               wait after all subscribers are ready (default 500)\n"
      "  --pub-url URL             http://HOST:PORT/topics/{topic}: pipelined POSTs on one connection\n"
      "  --pub-window W            POSTs in flight (default 1)\n"
      "  --rate R                  messages/s over all topics (default 1000; 0 = as fast as the window allows)\n"
      "  --duration S | --count N  how long / how many to publish\n"
      "  --size B                  payload bytes (default 64)\n"
      "  --drain S                 after publishing, wait up to S s for stragglers (default 5)\n"
      "  --server-pid P            report the server's CPU and RSS\n"
      "  --max-seconds S           hard deadline for the whole run (default 120; exit 3)\n"
      "  --out FILE, --label S, --strict, --progress S, --quiet, --mode M (ignored), --server-pid-tree (ignored)\n",
      code ? stderr : stdout);
  std::exit(code);
}

config parse_args(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], val;
    bool has_eq = false;
    if (a.rfind("--", 0) == 0)
      if (auto eq = a.find('='); eq != std::string::npos) val = a.substr(eq + 1), a = a.substr(0, eq), has_eq = true;
    auto v = [&]() -> std::string {
      if (has_eq) return val;
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    auto num = [&]() {
      auto s = v();
      char* end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (s.empty() || !end || *end) die("bad number for " + a + ": " + s);
      return d;
    };
    if (a == "-h" || a == "--help") usage(0);
    else if (a == "--mode") v();
    else if (a == "--url") c.urls.push_back(v());
    else if (a == "--subs") c.subs = std::uint32_t(num());
    else if (a == "--topics") c.topics = std::uint32_t(num());
    else if (a == "--topic-prefix") c.topic_prefix = v();
    else if (a == "--policy") {
      auto p = v();
      if (p == "disconnect") c.policy = proto::policy::disconnect;
      else if (p == "drop_oldest") c.policy = proto::policy::drop_oldest;
      else if (p == "conflate") c.policy = proto::policy::conflate;
      else die("unknown policy " + p);
    } else if (a == "--src-ips") c.src_ips = int(num());
    else if (a == "--connect-rate") c.connect_rate = num();
    else if (a == "--connect-concurrency") c.connect_conc = std::uint32_t(num());
    else if (a == "--connect-timeout") c.connect_timeout = num();
    else if (a == "--settle") c.settle_ms = num();
    else if (a == "--pub-url") c.pub_url = v();
    else if (a == "--pub-window") c.pub_window = std::max<std::uint32_t>(1, std::uint32_t(num()));
    else if (a == "--rate") c.rate = num();
    else if (a == "--duration") c.duration = num();
    else if (a == "--count") c.count = std::int64_t(num());
    else if (a == "--size") c.size = std::uint32_t(num());
    else if (a == "--drain") c.drain = num();
    else if (a == "--server-pid") c.server_pid = int(num());
    else if (a == "--server-pid-tree") c.pid_tree = true;
    else if (a == "--max-seconds") c.max_seconds = num();
    else if (a == "--out") c.out_file = v();
    else if (a == "--label") c.label = v();
    else if (a == "--strict") c.strict = true;
    else if (a == "--progress") c.progress = num();
    else if (a == "--quiet") c.quiet = true;
    else die("unknown option " + a + " (see --help)");
  }
  if (c.urls.empty()) die("--url is required");
  if (c.topics < 1) die("--topics must be >= 1");
  if (c.max_seconds <= 0) die("--max-seconds must be > 0");
  if (c.src_ips < 0 || c.src_ips > 254) die("--src-ips must be 0..254");
  if (c.count < 0 && c.duration < 0) c.duration = 10;
  return c;
}

// "scheme://host:port[/path]" with a loopback host only.
struct target {
  tcp::endpoint ep;
  std::string host_hdr, path;
};
target parse_target(const std::string& url, const std::string& scheme) {
  if (url.rfind(scheme + "://", 0) != 0) die("URL must start with " + scheme + "://: " + url);
  auto rest = url.substr(scheme.size() + 3);
  auto slash = rest.find('/');
  auto hostport = rest.substr(0, slash);
  target t;
  t.path = slash == std::string::npos ? "/" : rest.substr(slash);
  t.host_hdr = hostport;
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) die("URL needs a port: " + url);
  auto host = hostport.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  std::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec || !addr.is_loopback()) die("loopback targets only (127.0.0.0/8, ::1, localhost): " + url);
  t.ep = tcp::endpoint(addr, static_cast<unsigned short>(std::stoul(hostport.substr(colon + 1))));
  return t;
}

// ------------------------------------------------------------------ measurement
// Latency histogram: 1 us buckets below 1024 us, then 128 sub-buckets per power of two.
struct histogram {
  static constexpr int linear = 1024, sub_bits = 7, subs = 1 << sub_bits, max_exp = 43;
  static constexpr int nb = linear + (max_exp - 10 + 1) * subs;
  std::vector<std::uint64_t> counts = std::vector<std::uint64_t>(nb, 0);
  std::uint64_t total = 0, min_ns = UINT64_MAX, max_ns = 0;
  double sum_ns = 0;

  static int index_of_us(std::uint64_t us) {
    if (us < std::uint64_t(linear)) return int(us);
    int e = 63 - __builtin_clzll(us);
    if (e > max_exp) return nb - 1;
    return linear + (e - 10) * subs + int((us >> (e - sub_bits)) & (subs - 1));
  }
  void record(std::uint64_t ns) {
    ++counts[std::size_t(index_of_us(ns / 1000))];
    ++total;
    sum_ns += double(ns);
    min_ns = std::min(min_ns, ns);
    max_ns = std::max(max_ns, ns);
  }
  double percentile_us(double q) const {
    if (!total) return 0;
    auto rank = std::max<std::uint64_t>(1, std::uint64_t(std::ceil(q * double(total))));
    std::uint64_t acc = 0;
    for (int i = 0; i < nb; ++i) {
      acc += counts[std::size_t(i)];
      if (acc < rank) continue;
      double lo, hi;
      if (i < linear) lo = i, hi = i + 1;
      else {
        int e = (i - linear) / subs + 10, sub = (i - linear) % subs;
        double w = std::ldexp(1.0, e - sub_bits);
        lo = std::ldexp(1.0, e) + sub * w;
        hi = lo + w;
      }
      return std::min(std::max((lo + hi) / 2, double(min_ns) / 1000.0), double(max_ns) / 1000.0);
    }
    return double(max_ns) / 1000.0;
  }
  std::string json() const {
    char b[512];
    std::snprintf(b, sizeof b,
                  "{\"count\": %llu, \"min\": %.1f, \"mean\": %.1f, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
                  "\"p99_9\": %.1f, \"max\": %.1f}",
                  (unsigned long long)total, total ? double(min_ns) / 1000.0 : 0.0,
                  total ? sum_ns / double(total) / 1000.0 : 0.0, percentile_us(0.5), percentile_us(0.9),
                  percentile_us(0.99), percentile_us(0.999), double(max_ns) / 1000.0);
    return b;
  }
};

// Per subscriber: exact loss / duplicate / reorder accounting; missing ranges kept (bounded)
// only once a gap appears.
struct seq_tracker {
  enum result { fresh, late, dup, untracked };
  struct range {
    std::uint64_t lo, hi;
  };
  std::uint64_t max_seen = 0, forgotten_upto = 0;
  std::uint32_t unique = 0, gaps = 0;
  std::unique_ptr<std::vector<range>> holes;

  result add(std::uint64_t seq) {
    if (seq > max_seen) {
      if (seq > max_seen + 1) hole(max_seen + 1, seq - 1);
      max_seen = seq;
      ++unique;
      return fresh;
    }
    if (holes && fill(seq)) return ++unique, late;
    return seq <= forgotten_upto ? untracked : dup;
  }
  void hole(std::uint64_t lo, std::uint64_t hi) {
    ++gaps;
    if (!holes) holes = std::make_unique<std::vector<range>>();
    holes->push_back({lo, hi});
    if (holes->size() > 4096) {
      forgotten_upto = std::max(forgotten_upto, holes->front().hi);
      holes->erase(holes->begin());
    }
  }
  bool fill(std::uint64_t seq) {
    auto& v = *holes;
    auto it = std::upper_bound(v.begin(), v.end(), seq, [](std::uint64_t s, const range& r) { return s < r.lo; });
    if (it == v.begin()) return false;
    --it;
    if (seq > it->hi) return false;
    if (it->lo == it->hi) v.erase(it);
    else if (seq == it->lo) ++it->lo;
    else if (seq == it->hi) --it->hi;
    else {
      range right{seq + 1, it->hi};
      it->hi = seq - 1;
      v.insert(it + 1, right);
    }
    return true;
  }
};

// ------------------------------------------------------------------ the run
enum class phase { connect, settle, publish, drain, done };

struct subscriber;

struct run_state {
  config cfg;
  asio::io_context io;
  std::vector<target> targets;
  target pub_target;
  bool has_pub = false;
  std::vector<std::string> topic_names;
  std::string run_id, filler;
  phase ph = phase::connect;
  std::uint64_t run_start = 0, t_connect0 = 0, t_connect1 = 0, settle_until = 0, pub_t0 = 0, pub_deadline = 0,
                pub_stop = 0, drain_until = 0, t_done = 0, last_progress = 0;
  std::vector<std::unique_ptr<subscriber>> subs;
  std::uint32_t next_conn = 0, ready = 0, failed = 0;
  std::vector<std::uint64_t> ready_per_topic;
  // subscriber side
  std::vector<char> buf = std::vector<char>(256 * 1024);
  histogram hist, conn_hist;
  std::uint64_t delivered = 0, dups = 0, late = 0, untracked = 0, foreign = 0, stale = 0, invalid = 0, messages = 0,
                bytes = 0, markers = 0, proto_errors = 0, disconnects = 0, gap_notices = 0, first_rx = 0, last_rx = 0;
  std::uint64_t fail_connect = 0, fail_timeout = 0, fail_handshake = 0, fail_closed = 0;
  // publisher side
  std::uint64_t sent = 0, pub_errors = 0, pub_last_ack = 0, count_limit = UINT64_MAX;
  std::vector<std::uint64_t> topic_seq, pub_ok;
  std::uint32_t next_topic = 0;
  bool pub_stopped = false, all_delivered = false, deadline_hit = false, interrupted = false, finished = false;
  // server
  std::uint64_t rss_base = 0, rss_connected = 0, rss_peak = 0;
  double cpu0 = -1, cpu1 = -1;
  rusage ru0{}, ru_pub0{}, ru_pub1{};
};
run_state* G = nullptr;

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}
std::uint64_t rss_kb(int pid) {
  std::string s;
  if (!read_file("/proc/" + std::to_string(pid) + "/status", s)) return 0;
  auto p = s.find("VmRSS:");
  return p == std::string::npos ? 0 : std::strtoull(s.c_str() + p + 6, nullptr, 10);
}
double cpu_seconds(int pid) {
  std::string s;
  if (!read_file("/proc/" + std::to_string(pid) + "/stat", s)) return -1;
  auto rp = s.rfind(')');
  if (rp == std::string::npos) return -1;
  const char* p = s.c_str() + rp + 2;
  for (int field = 3; *p && field < 14; ++p)
    if (*p == ' ') ++field;
  unsigned long long ut = 0, st = 0;
  std::sscanf(p, "%llu %llu", &ut, &st);
  return double(ut + st) / double(sysconf(_SC_CLK_TCK));
}
double ru_cpu(const rusage& r) {
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + double(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

void finish();

// ------------------------------------------------------------------ subscribers
struct subscriber {
  tcp::socket sock;
  std::uint32_t idx = 0, topic = 0;
  std::uint64_t t0 = 0;
  bool connecting = false, ready = false, failed = false, closed = false;
  std::string pending;  // an incomplete frame from the previous read
  seq_tracker trk;

  explicit subscriber(asio::io_context& io) : sock(io) {}

  void start() {
    auto& tg = G->targets[idx % G->targets.size()];
    connecting = true;
    t0 = mono_ns();
    std::error_code ec;
    sock.open(tg.ep.protocol(), ec);
    if (!ec && G->cfg.src_ips > 0 && tg.ep.address().is_v4()) {
      int one = 1;
      ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sock.bind(tcp::endpoint(asio::ip::address_v4(0x7f000001u + idx % std::uint32_t(G->cfg.src_ips)), 0), ec);
    }
    if (ec) return fail(G->fail_connect);
    sock.async_connect(tg.ep, [this](std::error_code ec) {
      if (G->finished || closed) return;
      if (ec) return fail(G->fail_connect);
      std::error_code ig;
      sock.set_option(tcp::no_delay(true), ig);
      sock.non_blocking(true, ig);
      std::string f;
      proto::writer w(f);
      w.begin(proto::client_op::subscribe).u32(1).u8(static_cast<std::uint8_t>(G->cfg.policy)).str32("").u16(1);
      w.str16(G->topic_names[topic]);
      w.end();
      std::error_code wec;
      auto n = asio::write(sock, asio::buffer(f), wec);  // a few bytes on a fresh socket
      if (wec || n != f.size()) return fail(G->fail_handshake);
      wait();
    });
  }

  void fail(std::uint64_t& counter) {
    if (failed || ready) return close();
    ++counter;
    failed = true;
    connecting = false;
    ++G->failed;
    close();
  }
  void lost() {
    if (!ready) return fail(G->fail_closed);
    if (!closed) ++G->disconnects;
    close();
  }
  void close() {
    closed = true;
    std::error_code ig;
    sock.close(ig);
  }

  void wait() {
    sock.async_wait(tcp::socket::wait_read, [this](std::error_code ec) {
      if (G->finished || closed) return;
      if (ec) return lost();
      on_readable();
    });
  }

  void on_readable() {
    auto& buf = G->buf;
    for (int round = 0; round < 4; ++round) {
      std::error_code ec;
      auto n = sock.read_some(asio::buffer(buf), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec) return lost();  // eof included: the server ended this subscriber
      G->bytes += n;
      std::uint64_t now = mono_ns();
      if (pending.empty()) {
        auto used = parse(buf.data(), n, now);
        if (closed) return;
        pending.assign(buf.data() + used, n - used);
      } else {
        pending.append(buf.data(), n);
        auto used = parse(pending.data(), pending.size(), now);
        if (closed) return;
        pending.erase(0, used);
      }
      if (n < buf.size()) break;
    }
    wait();
  }

  // Returns the bytes of complete frames consumed.
  std::size_t parse(const char* p, std::size_t n, std::uint64_t now) {
    std::size_t pos = 0;
    while (n - pos >= proto::header_size) {
      auto len = proto::frame_length(p + pos);
      if (len == 0 || len > (64u << 20)) {
        ++G->proto_errors;
        lost();
        return pos;
      }
      if (n - pos - proto::header_size < len) break;
      frame(p + pos + proto::header_size, len, now);
      pos += proto::header_size + len;
      if (closed) return pos;
    }
    return pos;
  }

  void frame(const char* body, std::size_t len, std::uint64_t now) {
    auto type = static_cast<proto::server_op>(static_cast<std::uint8_t>(body[0]));
    proto::reader r(body + 1, len - 1);
    switch (type) {
      case proto::server_op::hello:
      case proto::server_op::pong:
      case proto::server_op::unsubscribed:
        return;
      case proto::server_op::subscribed:
        if (!ready && !failed) {
          ready = true;
          connecting = false;
          ++G->ready;
          G->conn_hist.record(now - t0);
        }
        return;
      case proto::server_op::message: {
        r.id();
        r.str16();
        r.str16();
        r.str16();
        auto payload = r.rest();
        if (!r.ok()) return ++G->proto_errors, lost();
        ++G->messages;
        return marker(payload, now);
      }
      case proto::server_op::gap:
        ++G->gap_notices;
        return;
      case proto::server_op::error:
      case proto::server_op::goodbye:
        if (type == proto::server_op::error && r.u32() == 0) ++G->proto_errors;
        return lost();  // queue overflow (policy disconnect), refusal, or shutdown
    }
    ++G->proto_errors;
    lost();
  }

  // "#seq:topic:t_ns#" at the start of the payload.
  void marker(std::string_view p, std::uint64_t now) {
    std::uint64_t v[3] = {0, 0, 0};
    std::size_t i = 1;
    int field = 0;
    if (p.empty() || p[0] != '#') return void(++G->invalid);
    for (; i < p.size() && i < 64; ++i) {
      char c = p[i];
      if (c >= '0' && c <= '9') v[field] = v[field] * 10 + std::uint64_t(c - '0');
      else if (c == ':' && field < 2) ++field;
      else if (c == '#' && field == 2) break;
      else return void(++G->invalid);
    }
    if (i >= p.size() || p[i] != '#') return void(++G->invalid);
    ++G->markers;
    auto seq = v[0], t = v[1], tns = v[2];
    if (tns < G->run_start || tns > now + 1000000000ull) return void(++G->stale);
    if (t != topic) return void(++G->foreign);
    if (seq == 0) return void(++G->invalid);
    switch (trk.add(seq)) {
      case seq_tracker::late: ++G->late; [[fallthrough]];
      case seq_tracker::fresh:
        ++G->delivered;
        G->hist.record(now > tns ? now - tns : 0);
        if (!G->first_rx) G->first_rx = now;
        G->last_rx = now;
        break;
      case seq_tracker::dup: ++G->dups; break;
      case seq_tracker::untracked: ++G->untracked; break;
    }
  }
};

// ------------------------------------------------------------------ publisher
struct publisher {
  tcp::socket sock;
  bool connected = false, dead = false, writing = false;
  std::string wbuf, wnext, rbuf;
  std::deque<std::uint32_t> outstanding;  // topics of the POSTs not answered yet, in order
  asio::steady_timer rate_timer;
  bool timer_armed = false;

  explicit publisher(asio::io_context& io) : sock(io), rate_timer(io) {}

  void start() {
    sock.async_connect(G->pub_target.ep, [this](std::error_code ec) {
      if (G->finished) return;
      if (ec) {
        dead = true;
        std::fprintf(stderr, "crier_tcp_feed_loadgen: publisher: %s\n", ec.message().c_str());
        return;
      }
      std::error_code ig;
      sock.set_option(tcp::no_delay(true), ig);
      connected = true;
      read();
      if (G->ph == phase::publish) pump();
    });
  }

  void failed(const std::string& why) {
    if (dead) return;
    if (!G->cfg.quiet) std::fprintf(stderr, "crier_tcp_feed_loadgen: publisher: %s\n", why.c_str());
    dead = true;
    connected = false;
    G->pub_errors += outstanding.size();
    outstanding.clear();
    std::error_code ig;
    sock.close(ig);
  }

  void publish_one() {
    std::uint32_t t = G->next_topic;
    G->next_topic = (t + 1) % G->cfg.topics;
    std::uint64_t seq = ++G->topic_seq[t];
    ++G->sent;
    char mark[80];
    int m = std::snprintf(mark, sizeof mark, "#%llu:%u:%llu#", (unsigned long long)seq, t, (unsigned long long)mono_ns());
    std::string payload(mark, std::size_t(m));
    if (payload.size() < G->cfg.size) payload.append(G->filler, 0, G->cfg.size - payload.size());
    std::string path = G->pub_target.path;
    if (auto p = path.find("{topic}"); p != std::string::npos) path.replace(p, 7, G->topic_names[t]);
    wnext += "POST " + path + " HTTP/1.1\r\nHost: " + G->pub_target.host_hdr +
             "\r\nUser-Agent: crier-tcp-feed-loadgen\r\nContent-Type: text/plain\r\nContent-Length: " +
             std::to_string(payload.size()) + "\r\n\r\n";
    wnext += payload;
    outstanding.push_back(t);
  }

  void pump() {
    if (G->ph != phase::publish || G->pub_stopped || dead || !connected) return;
    auto now = mono_ns();
    if (now >= G->pub_deadline || G->sent >= G->count_limit) return stop_publishing(now);
    auto allowed = G->count_limit;
    if (G->cfg.rate > 0) allowed = std::min(allowed, std::uint64_t(double(now - G->pub_t0) * G->cfg.rate / 1e9) + 1);
    int guard = 0;
    while (G->sent < allowed && outstanding.size() < G->cfg.pub_window && ++guard < 2048) publish_one();
    flush();
    if (G->sent >= G->count_limit) return stop_publishing(mono_ns());
    if (G->cfg.rate > 0 && G->sent >= allowed && !timer_armed) {
      auto due = G->pub_t0 + std::uint64_t(double(G->sent) * 1e9 / G->cfg.rate);
      auto n2 = mono_ns();
      auto wait = std::max<std::uint64_t>(due > n2 ? due - n2 : 0, 20000);
      timer_armed = true;
      rate_timer.expires_after(std::chrono::nanoseconds(wait));
      rate_timer.async_wait([this](std::error_code ec) {
        timer_armed = false;
        if (!ec) pump();
      });
    }
  }

  static void stop_publishing(std::uint64_t now) {
    if (G->pub_stopped) return;
    G->pub_stopped = true;
    G->pub_stop = now;
    G->drain_until = now + std::uint64_t(G->cfg.drain * 1e9);
    G->ph = phase::drain;
  }

  void flush() {
    if (writing || wnext.empty() || !connected) return;
    wbuf.swap(wnext);
    wnext.clear();
    writing = true;
    asio::async_write(sock, asio::buffer(wbuf), [this](std::error_code ec, std::size_t) {
      writing = false;
      wbuf.clear();
      if (G->finished) return;
      if (ec) return failed("write: " + ec.message());
      flush();
    });
  }

  void read() {
    auto old = rbuf.size();
    rbuf.resize(old + 16384);
    sock.async_read_some(asio::buffer(rbuf.data() + old, 16384), [this, old](std::error_code ec, std::size_t n) {
      rbuf.resize(old + n);
      if (G->finished || dead) return;
      if (ec) return failed("read: " + ec.message());
      responses();
      if (dead) return;
      read();
      pump();
    });
  }

  // Complete responses at the front of rbuf (crier answers with Content-Length).
  void responses() {
    std::size_t pos = 0;
    for (;;) {
      auto end = rbuf.find("\r\n\r\n", pos);
      if (end == std::string::npos) break;
      std::string_view head(rbuf.data() + pos, end - pos);
      int status = 0;
      if (head.size() > 12) status = std::atoi(std::string(head.substr(9, 3)).c_str());
      std::size_t cl = 0;
      for (std::size_t l = head.find("\r\n"); l != std::string_view::npos; l = head.find("\r\n", l + 2)) {
        auto line = head.substr(l + 2, head.find("\r\n", l + 2) - (l + 2));
        if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0)
          cl = std::strtoull(std::string(line.substr(15)).c_str(), nullptr, 10);
      }
      if (rbuf.size() < end + 4 + cl) break;
      pos = end + 4 + cl;
      if (outstanding.empty()) return failed("response without a request");
      auto t = outstanding.front();
      outstanding.pop_front();
      if (status >= 200 && status < 300) ++G->pub_ok[t], G->pub_last_ack = mono_ns();
      else ++G->pub_errors;
    }
    rbuf.erase(0, pos);
  }
};
std::unique_ptr<publisher> PUB;

// ------------------------------------------------------------------ orchestration
std::uint64_t expected_now() {
  std::uint64_t e = 0;
  for (std::uint32_t t = 0; t < G->cfg.topics; ++t) e += G->pub_ok[t] * G->ready_per_topic[t];
  return e;
}

void start_publishing() {
  G->ph = phase::publish;
  G->ready_per_topic.assign(G->cfg.topics, 0);
  for (auto& s : G->subs)
    if (s->ready) ++G->ready_per_topic[s->topic];
  if (G->cfg.server_pid) G->rss_connected = rss_kb(G->cfg.server_pid), G->cpu0 = cpu_seconds(G->cfg.server_pid);
  getrusage(RUSAGE_SELF, &G->ru_pub0);
  G->pub_t0 = mono_ns();
  double dur = G->cfg.duration > 0 ? G->cfg.duration : (G->cfg.count >= 0 ? 1e7 : 10.0);
  G->pub_deadline = G->pub_t0 + std::uint64_t(dur * 1e9);
  if (!G->has_pub || G->cfg.count == 0) return publisher::stop_publishing(G->pub_t0);
  PUB->pump();
}

void finish() {
  if (G->finished) return;
  G->finished = true;
  G->t_done = mono_ns();
  G->ph = phase::done;
  if (G->cfg.server_pid) G->cpu1 = cpu_seconds(G->cfg.server_pid);
  getrusage(RUSAGE_SELF, &G->ru_pub1);
  G->io.stop();
}

void tick(asio::steady_timer& t) {
  t.expires_after(std::chrono::milliseconds(10));
  t.async_wait([&t](std::error_code ec) {
    if (ec || G->finished) return;
    auto now = mono_ns();
    auto& C = G->cfg;
    if (C.server_pid && now - G->last_progress >= 100000000ull) G->rss_peak = std::max(G->rss_peak, rss_kb(C.server_pid));
    if (G->ph == phase::connect) {
      std::uint64_t resolved = G->ready + G->failed;
      std::uint64_t by_rate = C.connect_rate > 0 ? std::uint64_t(double(now - G->t_connect0) * C.connect_rate / 1e9) + 1
                                                 : UINT64_MAX;
      while (G->next_conn < C.subs && G->next_conn < by_rate && G->next_conn - resolved < C.connect_conc)
        G->subs[G->next_conn++]->start();
      for (std::uint32_t i = 0; i < G->next_conn; ++i) {
        auto& s = *G->subs[i];
        if (s.connecting && !s.ready && !s.failed && now > s.t0 + std::uint64_t(C.connect_timeout * 1e9))
          s.fail(G->fail_timeout);
      }
      if (G->ready + G->failed >= C.subs) {
        G->t_connect1 = now;
        G->ph = phase::settle;
        G->settle_until = now + std::uint64_t(C.settle_ms * 1e6);
        if (G->has_pub) PUB->start();
      }
    } else if (G->ph == phase::settle) {
      bool pub_resolved = !G->has_pub || PUB->connected || PUB->dead;
      if (now >= G->settle_until && (pub_resolved || now >= G->settle_until + std::uint64_t(C.connect_timeout * 1e9)))
        start_publishing();
    } else if (G->ph == phase::publish) {
      PUB->pump();
    }
    if (G->ph == phase::drain) {
      bool out = G->has_pub && !PUB->dead && !PUB->outstanding.empty();
      if (!out && G->delivered >= expected_now()) {
        G->all_delivered = true;
        return finish();
      }
      if (now >= G->drain_until) return finish();
    }
    if (!C.quiet && C.progress > 0 && now - G->last_progress >= std::uint64_t(C.progress * 1e9)) {
      G->last_progress = now;
      std::uint64_t ok = 0;
      for (auto v : G->pub_ok) ok += v;
      std::fprintf(stderr, "[%6.1fs] ready=%u failed=%u published=%llu ok=%llu delivered=%llu\n",
                   double(now - G->run_start) / 1e9, G->ready, G->failed, (unsigned long long)G->sent,
                   (unsigned long long)ok, (unsigned long long)G->delivered);
    }
    tick(t);
  });
}

struct json {
  std::string s = "{";
  bool first = true;
  void key(const char* k) {
    s += first ? "\n  \"" : ",\n  \"";
    first = false;
    s += k;
    s += "\": ";
  }
  static std::string esc(const std::string& v) {
    std::string o = "\"";
    for (unsigned char c : v) {
      if (c == '"' || c == '\\') o += '\\', o += char(c);
      else if (c < 0x20) {
        char b[8];
        std::snprintf(b, sizeof b, "\\u%04x", c);
        o += b;
      } else o += char(c);
    }
    return o + "\"";
  }
  void str(const char* k, const std::string& v) { key(k), s += esc(v); }
  void u(const char* k, std::uint64_t v) { key(k), s += std::to_string(v); }
  void d(const char* k, double v, int prec = 3) {
    key(k);
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, std::isfinite(v) ? v : 0.0);
    s += b;
  }
  void b(const char* k, bool v) { key(k), s += v ? "true" : "false"; }
  void raw(const char* k, const std::string& v) { key(k), s += v; }
};

std::string report() {
  auto& C = G->cfg;
  std::uint64_t connected = 0, expected = 0, lost = 0, subs_with_loss = 0, gaps = 0, lost_gaps = 0;
  std::uint64_t min_got = UINT64_MAX, max_got = 0;
  for (auto& s : G->subs) {
    if (!s->ready) continue;
    ++connected;
    std::uint64_t exp = G->pub_ok[s->topic], got = s->trk.unique;
    expected += exp;
    gaps += s->trk.gaps;
    if (got < exp) {
      lost += exp - got;
      ++subs_with_loss;
      lost_gaps += std::min(s->trk.max_seen > got ? s->trk.max_seen - got : 0, exp - got);
    }
    min_got = std::min(min_got, got);
    max_got = std::max(max_got, got);
  }
  std::uint64_t never = C.subs - connected - G->failed, pub_ok = 0;
  for (auto v : G->pub_ok) pub_ok += v;
  auto pub_end = G->pub_last_ack ? G->pub_last_ack : G->pub_stop;
  double pub_secs = G->pub_t0 && pub_end > G->pub_t0 ? double(pub_end - G->pub_t0) / 1e9 : 0;
  double deliv_secs = G->last_rx > G->first_rx ? double(G->last_rx - G->first_rx) / 1e9 : 0;
  double conn_secs = double((G->t_connect1 ? G->t_connect1 : G->t_done) - G->t_connect0) / 1e9;
  bool exact = expected > 0 && lost == 0 && G->dups == 0 && G->late == 0 && G->foreign == 0 && G->untracked == 0 &&
               G->failed == 0 && never == 0 && G->pub_errors == 0 && !G->deadline_hit;
  json j;
  j.str("tool", "crier_tcp_feed_loadgen");
  if (!C.label.empty()) j.str("label", C.label);
  j.str("mode", "tcp-feed");
  std::string urls = "[";
  for (std::size_t i = 0; i < C.urls.size(); ++i) urls += (i ? ", " : "") + json::esc(C.urls[i]);
  j.raw("urls", urls + "]");
  j.str("publish_via", G->has_pub ? "http " + C.pub_url : "none");
  j.str("policy", C.policy == proto::policy::disconnect ? "disconnect"
                  : C.policy == proto::policy::drop_oldest ? "drop_oldest" : "conflate");
  j.str("run_id", G->run_id);
  j.u("threads", 1);
  j.u("topics", C.topics);
  j.u("payload_size", C.size);
  j.d("rate_target", C.rate, 1);
  j.u("subs_requested", C.subs);
  j.u("subs_connected", connected);
  j.u("subs_failed", G->failed + never);
  j.raw("connect_failures", "{\"connect\": " + std::to_string(G->fail_connect) + ", \"timeout\": " +
                                std::to_string(G->fail_timeout) + ", \"handshake\": " + std::to_string(G->fail_handshake) +
                                ", \"closed\": " + std::to_string(G->fail_closed) +
                                ", \"not_attempted\": " + std::to_string(never) + "}");
  j.d("connect_seconds", conn_secs);
  char b[640];
  std::snprintf(b, sizeof b, "{\"p50\": %.2f, \"p99\": %.2f, \"max\": %.2f}", G->conn_hist.percentile_us(0.5) / 1000.0,
                G->conn_hist.percentile_us(0.99) / 1000.0, double(G->conn_hist.max_ns) / 1e6);
  j.raw("connect_time_ms", b);
  j.u("published", pub_ok);
  j.u("publish_attempted", G->sent);
  j.u("publish_errors", G->pub_errors);
  j.u("publisher_reconnects", 0);
  j.d("publish_seconds", pub_secs);
  j.d("publish_rate", pub_secs > 0 ? double(pub_ok) / pub_secs : 0, 1);
  j.u("expected", expected);
  j.u("delivered", G->delivered);
  j.d("delivery_ratio", expected ? double(G->delivered) / double(expected) : 0, 6);
  j.u("lost", lost);
  j.u("lost_in_gaps", lost_gaps);
  j.u("lost_tail", lost - lost_gaps);
  j.u("subs_with_loss", subs_with_loss);
  j.u("gaps", gaps);
  j.u("gap_notices", G->gap_notices);
  j.u("duplicated", G->dups);
  j.u("reordered", G->late);
  j.u("untracked_late", G->untracked);
  j.u("foreign_topic", G->foreign);
  j.u("stale", G->stale);
  j.u("min_delivered_per_sub", connected ? min_got : 0);
  j.u("max_delivered_per_sub", max_got);
  j.u("messages_received", G->messages);
  j.u("markers_seen", G->markers);
  j.u("bytes_received", G->bytes);
  j.d("delivery_seconds", deliv_secs);
  j.d("delivered_per_sec", deliv_secs > 0 ? double(G->delivered) / deliv_secs : 0, 1);
  j.raw("latency_us", G->hist.json());
  j.u("disconnects", G->disconnects);
  j.u("reconnects", 0);
  j.u("protocol_errors", G->proto_errors);
  if (C.server_pid) {
    double cpu = G->cpu0 >= 0 && G->cpu1 >= 0 ? G->cpu1 - G->cpu0 : -1;
    double win = G->pub_t0 && G->t_done > G->pub_t0 ? double(G->t_done - G->pub_t0) / 1e9 : 0;
    std::snprintf(b, sizeof b,
                  "{\"pid\": %d, \"tree\": false, \"rss_baseline_kb\": %llu, \"rss_after_connect_kb\": %llu, "
                  "\"rss_peak_kb\": %llu, \"rss_per_conn_bytes\": %.0f, \"rss_delta_per_conn_bytes\": %.0f, "
                  "\"cpu_seconds_publish\": %.2f, \"cpu_window_seconds\": %.3f, \"cpu_utilization\": %.3f}",
                  C.server_pid, (unsigned long long)G->rss_base, (unsigned long long)G->rss_connected,
                  (unsigned long long)std::max(G->rss_peak, G->rss_connected),
                  connected ? double(G->rss_connected) * 1024.0 / double(connected) : 0.0,
                  connected && G->rss_connected >= G->rss_base
                      ? double(G->rss_connected - G->rss_base) * 1024.0 / double(connected)
                      : 0.0,
                  cpu, win, win > 0.05 && cpu >= 0 ? cpu / win : 0.0);
    j.raw("server", b);
  }
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double pubwin = G->pub_t0 && G->t_done > G->pub_t0 ? double(G->t_done - G->pub_t0) / 1e9 : 0;
  double pubcpu = G->pub_t0 ? ru_cpu(G->ru_pub1) - ru_cpu(G->ru_pub0) : 0;
  std::snprintf(b, sizeof b,
                "{\"cpu_seconds_total\": %.2f, \"cpu_seconds_publish\": %.2f, \"cpu_utilization_publish\": %.3f, "
                "\"max_rss_kb\": %ld}",
                ru_cpu(ru) - ru_cpu(G->ru0), pubcpu, pubwin > 0.05 ? pubcpu / pubwin : 0.0, ru.ru_maxrss);
  j.raw("meter", b);
  j.b("all_delivered", G->all_delivered);
  j.b("exact", exact);
  j.b("deadline_hit", G->deadline_hit);
  j.b("interrupted", G->interrupted);
  j.d("elapsed_seconds", double(G->t_done - G->run_start) / 1e9);
  if (!C.quiet)
    std::fprintf(stderr,
                 "== tcp feed: %llu/%u subs, published %llu (%llu errors), delivered %llu/%llu, lost %llu, dup %llu, "
                 "reordered %llu; %.0f deliveries/s; latency us p50 %.0f p99 %.0f max %.0f\n",
                 (unsigned long long)connected, C.subs, (unsigned long long)pub_ok, (unsigned long long)G->pub_errors,
                 (unsigned long long)G->delivered, (unsigned long long)expected, (unsigned long long)lost,
                 (unsigned long long)G->dups, (unsigned long long)G->late,
                 deliv_secs > 0 ? double(G->delivered) / deliv_secs : 0.0, G->hist.percentile_us(0.5),
                 G->hist.percentile_us(0.99), double(G->hist.max_ns) / 1000.0);
  return j.s + "\n}\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  auto state = std::make_unique<run_state>();
  G = state.get();
  G->run_start = mono_ns();
  getrusage(RUSAGE_SELF, &G->ru0);
  G->cfg = parse_args(argc, argv);
  auto& C = G->cfg;
  for (auto& u : C.urls) G->targets.push_back(parse_target(u, "tcp"));
  if (!C.pub_url.empty()) G->pub_target = parse_target(C.pub_url, "http"), G->has_pub = true;
  if (C.server_pid && kill(C.server_pid, 0) != 0 && errno == ESRCH) die("--server-pid does not exist");

  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) rl.rlim_cur = rl.rlim_max, setrlimit(RLIMIT_NOFILE, &rl), getrlimit(RLIMIT_NOFILE, &rl);
  if (std::uint64_t(C.subs) + 64 > rl.rlim_cur) die("need about " + std::to_string(C.subs + 64) + " file descriptors");

  char idb[32];
  std::snprintf(idb, sizeof idb, "%x%04x", unsigned(time(nullptr) & 0xffffff), unsigned(getpid() & 0xffff));
  G->run_id = idb;
  std::string prefix = C.topic_prefix;
  if (auto p = prefix.find("{run}"); p != std::string::npos) prefix.replace(p, 5, G->run_id);
  for (std::uint32_t t = 0; t < C.topics; ++t) G->topic_names.push_back(prefix + std::to_string(t));
  static const char* letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  G->filler.resize(std::max<std::uint32_t>(C.size, 64));
  for (std::size_t i = 0; i < G->filler.size(); ++i) G->filler[i] = letters[i % 52];
  G->topic_seq.assign(C.topics, 0);
  G->pub_ok.assign(C.topics, 0);
  G->count_limit = C.count >= 0 ? std::uint64_t(C.count) : UINT64_MAX;
  for (std::uint32_t i = 0; i < C.subs; ++i) {
    auto s = std::make_unique<subscriber>(G->io);
    s->idx = i;
    s->topic = i % C.topics;
    G->subs.push_back(std::move(s));
  }
  if (G->has_pub) PUB = std::make_unique<publisher>(G->io);
  if (C.server_pid) G->rss_base = G->rss_peak = rss_kb(C.server_pid);

  // The run ends by itself even if something wedges.
  std::atomic<bool> wd_stop{false};
  std::thread watchdog([&wd_stop] {
    auto limit = G->run_start + std::uint64_t((G->cfg.max_seconds + 15) * 1e9);
    while (!wd_stop) {
      if (mono_ns() > limit) {
        std::fprintf(stderr, "crier_tcp_feed_loadgen: watchdog: no stop 15 s after --max-seconds, aborting\n");
        _exit(3);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  asio::steady_timer ticker(G->io), deadline(G->io);
  asio::signal_set signals(G->io, SIGINT, SIGTERM);
  signals.async_wait([](std::error_code ec, int) {
    if (!ec) G->interrupted = true, finish();
  });
  deadline.expires_after(std::chrono::milliseconds(std::int64_t(C.max_seconds * 1000)));
  deadline.async_wait([](std::error_code ec) {
    if (!ec) G->deadline_hit = true, finish();
  });
  G->t_connect0 = mono_ns();
  tick(ticker);
  G->io.run();
  finish();
  wd_stop = true;
  watchdog.join();

  auto out = report();
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  if (!C.out_file.empty()) std::ofstream(C.out_file) << out;
  G->subs.clear();
  PUB.reset();  // a global: its socket and timer must go before the io_context in `state`
  if (G->deadline_hit) return 3;
  return C.strict && out.find("\"exact\": true") == std::string::npos ? 1 : 0;
}
