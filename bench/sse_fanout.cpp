// crier_bench_sse_fanout: crier's own SSE fan-out benchmark client.
//
// Opens N Server-Sent-Events subscribers on one topic, waits for every response
// head, publishes M timestamped, sequence-numbered messages over K keep-alive
// HTTP/1.1 connections (pipelined window W) at a fixed rate or as fast as the
// window allows, and reports what arrived as one JSON object on stdout:
// delivered msgs/s, publish->receive latency percentiles, loss / duplicate /
// reorder counts and (with --server-pid) the server's RSS per idle connection.
//
// Single-threaded Asio.  Subscribers use reactor-style reads (async_wait +
// non-blocking read_some into one shared buffer), so an idle subscriber costs
// its socket plus ~150 bytes of parser state.  Loopback targets only.
//
// Payload format: "#<seq>:<t_ns>#" followed by letters up to --size bytes;
// t_ns is CLOCK_MONOTONIC (std::chrono::steady_clock) at the moment the POST
// request is written into the publisher's send buffer.

#include <asio.hpp>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace {

using tcp = asio::ip::tcp;
using clk = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------- options ---
struct options {
  std::string sub_url = "http://127.0.0.1:8080/topics/{topic}";
  std::string pub_url = "http://127.0.0.1:8080/topics/{topic}";
  std::string topic = "bench{run}";
  std::vector<std::string> sub_headers;
  std::vector<std::string> pub_headers;
  std::string pub_content_type = "text/plain";
  std::string label;
  std::string out_file;
  uint32_t subs = 1000;
  uint32_t src_ips = 0;
  double connect_rate = 5000;      // new connections / s (0 = unlimited)
  uint32_t connect_concurrency = 1000;
  double connect_timeout = 10;
  bool ready_on_sent = false;
  uint32_t settle_ms = 500;
  uint64_t count = 1000;           // messages (0 = connect-only memory run)
  uint32_t size = 128;
  double rate = 0;                 // msgs/s (0 = max)
  uint32_t pub_conns = 1;
  uint32_t pub_window = 16;
  double drain = 5;
  double max_seconds = 60;
  int server_pid = 0;
  bool server_pid_tree = false;
  bool quiet = false;
};

[[noreturn]] void usage(int code) {
  std::fputs(
R"(crier_bench_sse_fanout: SSE fan-out benchmark (loopback only)

  --sub-url URL          subscriber URL template (default http://127.0.0.1:8080/topics/{topic})
  --pub-url URL          publish (HTTP POST) URL template (default = same path as crier)
  --topic NAME           topic name template (default bench{run}); {run} = per-run id
  --subs N               SSE subscribers (default 1000)
  --src-ips K            bind subscriber i to 127.0.0.(1 + i % K) (past ~28k ports)
  --connect-rate R       new subscriber connections per second (default 5000; 0 = unlimited)
  --connect-concurrency C  connects+heads in progress at once (default 1000)
  --connect-timeout S    per-subscriber connect+head timeout (default 10)
  --ready-on head|sent   subscriber ready at response head (default) or request sent
  --header "N: V"        extra subscriber request header (repeatable)
  --settle MS            wait after all subscribers are ready (default 500)
  --count M              messages to publish (default 1000; 0 = idle/memory run)
  --size B               payload bytes (default 128)
  --rate R               publish msgs/s (default 0 = as fast as the window allows)
  --pub-conns K          keep-alive publisher connections (default 1)
  --pub-window W         outstanding (pipelined) publishes in total (default 16)
  --pub-header "N: V"    extra publish header (repeatable)
  --pub-content-type T   default text/plain
  --drain S              wait up to S s after the last publish ack (default 5)
  --server-pid P         sample the server's VmRSS / CPU from /proc/P
  --server-pid-tree      include P's descendants (nginx master + workers)
  --max-seconds S        hard bound for the whole run (default 60; exit 3 when hit)
  --out FILE             also write the JSON report to FILE
  --label S              copied into the report
  --quiet                no progress lines on stderr
)", code ? stderr : stdout);
  std::exit(code);
}

options parse_args(int argc, char** argv) {
  options o;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) { std::fprintf(stderr, "missing value for %s\n", argv[i]); usage(2); }
    return argv[++i];
  };
  auto num = [&](int& i) -> double {
    std::string v = need(i);
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != 0 || d < 0) { std::fprintf(stderr, "bad number for %s: %s\n", argv[i - 1], v.c_str()); usage(2); }
    return d;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") usage(0);
    else if (a == "--sub-url") o.sub_url = need(i);
    else if (a == "--pub-url") o.pub_url = need(i);
    else if (a == "--topic") o.topic = need(i);
    else if (a == "--subs") o.subs = static_cast<uint32_t>(num(i));
    else if (a == "--src-ips") o.src_ips = static_cast<uint32_t>(num(i));
    else if (a == "--connect-rate") o.connect_rate = num(i);
    else if (a == "--connect-concurrency") o.connect_concurrency = std::max<uint32_t>(1, static_cast<uint32_t>(num(i)));
    else if (a == "--connect-timeout") o.connect_timeout = num(i);
    else if (a == "--ready-on") { std::string v = need(i); if (v == "sent") o.ready_on_sent = true; else if (v != "head") usage(2); }
    else if (a == "--header") o.sub_headers.push_back(need(i));
    else if (a == "--settle") o.settle_ms = static_cast<uint32_t>(num(i));
    else if (a == "--count") o.count = static_cast<uint64_t>(num(i));
    else if (a == "--size") o.size = static_cast<uint32_t>(num(i));
    else if (a == "--rate") o.rate = num(i);
    else if (a == "--pub-conns") o.pub_conns = std::max<uint32_t>(1, static_cast<uint32_t>(num(i)));
    else if (a == "--pub-window") o.pub_window = std::max<uint32_t>(1, static_cast<uint32_t>(num(i)));
    else if (a == "--pub-header") o.pub_headers.push_back(need(i));
    else if (a == "--pub-content-type") o.pub_content_type = need(i);
    else if (a == "--drain") o.drain = num(i);
    else if (a == "--server-pid") o.server_pid = static_cast<int>(num(i));
    else if (a == "--server-pid-tree") o.server_pid_tree = true;
    else if (a == "--max-seconds") o.max_seconds = num(i);
    else if (a == "--out") o.out_file = need(i);
    else if (a == "--label") o.label = need(i);
    else if (a == "--quiet") o.quiet = true;
    else { std::fprintf(stderr, "unknown option %s\n", argv[i]); usage(2); }
  }
  if (o.max_seconds <= 0) o.max_seconds = 60;
  return o;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

// ------------------------------------------------------------------- url ---
struct url {
  std::string host_header;  // host[:port] as written
  asio::ip::address addr;
  uint16_t port = 80;
  std::string target;       // path + query
};

std::optional<url> parse_url(const std::string& s, std::string& err) {
  constexpr std::string_view scheme = "http://";
  if (s.compare(0, scheme.size(), scheme) != 0) { err = "only http:// URLs are supported: " + s; return std::nullopt; }
  size_t hs = scheme.size();
  size_t pe = s.find('/', hs);
  std::string hp = s.substr(hs, pe == std::string::npos ? std::string::npos : pe - hs);
  url u;
  u.host_header = hp;
  u.target = pe == std::string::npos ? "/" : s.substr(pe);
  std::string host = hp;
  if (!hp.empty() && hp[0] == '[') {
    size_t rb = hp.find(']');
    if (rb == std::string::npos) { err = "bad host in " + s; return std::nullopt; }
    host = hp.substr(1, rb - 1);
    if (rb + 1 < hp.size() && hp[rb + 1] == ':') u.port = static_cast<uint16_t>(std::atoi(hp.c_str() + rb + 2));
  } else if (size_t c = hp.rfind(':'); c != std::string::npos) {
    host = hp.substr(0, c);
    u.port = static_cast<uint16_t>(std::atoi(hp.c_str() + c + 1));
  }
  if (host == "localhost") host = "127.0.0.1";
  asio::error_code ec;
  u.addr = asio::ip::make_address(host, ec);
  if (ec) { err = "host must be a literal loopback address: " + host; return std::nullopt; }
  if (!u.addr.is_loopback()) { err = "refusing non-loopback target " + host; return std::nullopt; }
  return u;
}

// ------------------------------------------------------------ histogram ---
// 1 us buckets below 1024 us, then 64 sub-buckets per power of two (<1.6% wide).
class histogram {
 public:
  void add(uint64_t us) {
    size_t i = index(us);
    if (i >= counts_.size()) counts_.resize(i + 1, 0);
    ++counts_[i];
    ++n_;
    sum_ += static_cast<double>(us);
    min_ = std::min(min_, us);
    max_ = std::max(max_, us);
  }
  uint64_t count() const { return n_; }
  uint64_t min() const { return n_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return n_ ? sum_ / static_cast<double>(n_) : 0; }
  double percentile(double p) const {
    if (!n_) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(n_)));
    rank = std::clamp<uint64_t>(rank, 1, n_);
    uint64_t acc = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      acc += counts_[i];
      if (acc >= rank) {
        double mid = midpoint(i);
        return std::clamp(mid, static_cast<double>(min()), static_cast<double>(max_));
      }
    }
    return static_cast<double>(max_);
  }

 private:
  static size_t index(uint64_t us) {
    if (us < 1024) return static_cast<size_t>(us);
    int e = 63 - __builtin_clzll(us);  // >= 10
    uint64_t sub = (us >> (e - 6)) & 63;
    return 1024 + static_cast<size_t>(e - 10) * 64 + static_cast<size_t>(sub);
  }
  static double midpoint(size_t i) {
    if (i < 1024) return static_cast<double>(i);
    size_t e = (i - 1024) / 64 + 10, sub = (i - 1024) % 64;
    double lo = std::ldexp(1.0, static_cast<int>(e)) * (1.0 + static_cast<double>(sub) / 64.0);
    double w = std::ldexp(1.0, static_cast<int>(e) - 6);
    return lo + w / 2;
  }
  std::vector<uint64_t> counts_;
  uint64_t n_ = 0, min_ = UINT64_MAX, max_ = 0;
  double sum_ = 0;
};

// ------------------------------------------------------------------ /proc ---
long read_rss_kb(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// utime + stime in clock ticks, and the parent pid.
bool read_stat(int pid, uint64_t& ticks, int& ppid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(f, s)) return false;
  size_t rp = s.rfind(')');
  if (rp == std::string::npos) return false;
  std::istringstream is(s.substr(rp + 2));
  std::string tok;
  std::vector<std::string> fld;
  while (is >> tok) fld.push_back(tok);
  // fld[0] = state (field 3); ppid = field 4; utime = field 14; stime = field 15
  if (fld.size() < 13) return false;
  ppid = std::atoi(fld[1].c_str());
  ticks = std::strtoull(fld[11].c_str(), nullptr, 10) + std::strtoull(fld[12].c_str(), nullptr, 10);
  return true;
}

std::vector<int> pid_tree(int root, bool tree) {
  std::vector<int> out{root};
  if (!tree) return out;
  std::vector<std::pair<int, int>> all;  // pid, ppid
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      int pid = std::atoi(e->d_name);
      if (pid <= 0) continue;
      uint64_t t;
      int pp;
      if (read_stat(pid, t, pp)) all.emplace_back(pid, pp);
    }
    closedir(d);
  }
  for (size_t i = 0; i < out.size(); ++i)
    for (auto& [p, pp] : all)
      if (pp == out[i]) out.push_back(p);
  return out;
}

struct server_probe {
  int pid = 0;
  bool tree = false;
  long rss_kb() const {
    if (!pid) return -1;
    long sum = 0;
    bool any = false;
    for (int p : pid_tree(pid, tree)) {
      long r = read_rss_kb(p);
      if (r >= 0) { sum += r; any = true; }
    }
    return any ? sum : -1;
  }
  double cpu_seconds() const {
    if (!pid) return -1;
    uint64_t total = 0;
    for (int p : pid_tree(pid, tree)) {
      uint64_t t;
      int pp;
      if (read_stat(p, t, pp)) total += t;
    }
    return static_cast<double>(total) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
};

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// --------------------------------------------------------------- helpers ---
bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) return false;
  return true;
}

bool icontains(std::string_view s, std::string_view needle) {
  if (needle.size() > s.size()) return false;
  for (size_t i = 0; i + needle.size() <= s.size(); ++i)
    if (iequals_prefix(s.substr(i), needle)) return true;
  return false;
}

struct head_info {
  int status = 0;
  bool chunked = false;
  int64_t content_length = -1;
  bool close = false;
};

// Parses "HTTP/1.1 200 OK\r\nName: v\r\n..." (without the final empty line).
head_info parse_head(std::string_view h) {
  head_info hi;
  size_t sp = h.find(' ');
  if (h.substr(0, 5) != "HTTP/" || sp == std::string_view::npos) return hi;
  std::from_chars(h.data() + sp + 1, h.data() + h.size(), hi.status);
  size_t pos = h.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < h.size()) {
    size_t s = pos + 2;
    size_t e = h.find("\r\n", s);
    std::string_view line = h.substr(s, e == std::string_view::npos ? std::string_view::npos : e - s);
    if (iequals_prefix(line, "transfer-encoding:") && icontains(line, "chunked")) hi.chunked = true;
    if (iequals_prefix(line, "connection:") && icontains(line, "close")) hi.close = true;
    if (iequals_prefix(line, "content-length:")) {
      std::string_view v = line.substr(15);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      int64_t cl = -1;
      std::from_chars(v.data(), v.data() + v.size(), cl);
      hi.content_length = cl;
    }
    pos = e;
  }
  return hi;
}

// ------------------------------------------------------------ the bench ---
class bench;

// One SSE subscriber.  Kept small: the head buffer is released once parsed.
struct subscriber {
  enum class st : uint8_t { idle, connecting, head, body, done, failed };
  enum cst : uint8_t { c_size, c_ext, c_size_lf, c_data, c_data_cr, c_data_lf, c_end };
  enum lst : uint8_t { l_start, l_field, l_space, l_value, l_ignore };

  explicit subscriber(asio::io_context& io, uint32_t i) : sock(io), idx(i) {}

  tcp::socket sock;
  uint32_t idx;
  st state = st::idle;
  bool chunked = false;
  bool ready = false;
  cst cstate = c_size;
  lst lstate = l_start;
  bool last_cr = false;
  bool has_data = false;
  bool has_id = false;
  uint8_t fkind = 0;  // 0 other, 1 data, 2 id
  uint8_t flen = 0;
  uint8_t mklen = 0;
  char field[6]{};
  char mk[48]{};
  uint64_t chunk_left = 0;
  int64_t t_start = 0;
  std::unique_ptr<std::string> head;  // only while reading the response head

  // delivery tracking
  uint64_t highest = 0;
  uint64_t delivered = 0;
  std::unique_ptr<std::vector<std::pair<uint64_t, uint64_t>>> missing;  // [lo, hi] ranges
};

class bench {
 public:
  explicit bench(options o) : opt_(std::move(o)), io_(1), conn_timer_(io_), phase_timer_(io_), pub_timer_(io_),
                              sample_timer_(io_), deadline_(io_), progress_timer_(io_) {}

  int run();

 private:
  struct publisher {
    explicit publisher(asio::io_context& io) : sock(io) {}
    tcp::socket sock;
    uint32_t gen = 0;         // bumped on every reconnect: stale handlers check it
    bool connected = false;
    bool dead = false;        // gave up (connect failed)
    bool writing = false;
    bool closing = false;     // server said "Connection: close": send nothing more here
    std::string pending, writing_buf, rbuf;
    std::array<char, 16384> tmp{};
    std::deque<uint64_t> outstanding;  // seqs written or queued, oldest first
  };

  // --- subscribers
  void connect_pump();
  void start_sub(subscriber& s);
  void sub_ready(subscriber& s);
  void sub_fail(subscriber& s, const char* why);
  void arm_read(subscriber& s);
  void on_readable(subscriber& s);
  void feed(subscriber& s, const char* p, size_t n, int64_t now);
  void feed_body(subscriber& s, const char* p, size_t n, int64_t now);
  void feed_sse(subscriber& s, const char* p, size_t n, int64_t now);
  void end_line(subscriber& s, int64_t now);
  void dispatch(subscriber& s, int64_t now);
  void record(subscriber& s, uint64_t seq, int64_t t_ns, int64_t now);
  void sub_closed(subscriber& s, bool error);
  void check_connect_done();
  void sweep_timeouts();

  // --- publisher
  void start_publishers();
  void pub_pump();
  void pub_connect(publisher& p);
  void pub_send(publisher& p, uint64_t seq);
  void pub_flush(publisher& p);
  void pub_read(publisher& p);
  void pub_parse(publisher& p);
  void pub_lost(publisher& p, const char* why);
  void maybe_publish_done();
  void start_drain();
  void drain_check();

  // --- run control
  void finish(const char* why);
  void sample();
  void progress();
  std::string report();

  options opt_;
  asio::io_context io_;
  url sub_url_, pub_url_;
  std::string topic_, run_id_, sub_target_, pub_target_;
  std::string sub_request_;
  std::vector<std::unique_ptr<subscriber>> subs_;
  std::vector<std::unique_ptr<publisher>> pubs_;
  std::array<char, 1 << 17> rbuf_{};
  asio::steady_timer conn_timer_, phase_timer_, pub_timer_, sample_timer_, deadline_, progress_timer_;
  server_probe probe_;

  // connect phase
  uint32_t next_sub_ = 0, in_progress_ = 0, ready_ = 0, failed_ = 0;
  uint32_t fail_connect_ = 0, fail_timeout_ = 0, fail_status_ = 0, fail_closed_ = 0;
  std::map<int, uint32_t> fail_status_codes_;
  int64_t t_run_start_ = 0, t_connect_start_ = 0, t_connect_end_ = 0;
  double connect_credit_ = 0;
  int64_t last_sweep_ = 0;
  int64_t connect_credit_t_ = 0;
  bool connect_done_ = false;
  histogram connect_hist_;

  // publish phase
  bool publishing_ = false, publish_done_ = false;
  uint64_t sent_ = 0, acked_ = 0, pub_errors_ = 0, inflight_ = 0;
  std::map<int, uint64_t> pub_error_status_;
  int64_t t_pub_start_ = 0, t_last_ack_ = 0;
  uint32_t rr_ = 0, pub_connecting_ = 0, pub_reconnects_ = 0;
  uint64_t resent_ = 0;
  std::deque<uint64_t> retry_;  // seqs the server never answered (closed keep-alive): sent again
  std::string padding_;

  // delivery
  uint64_t delivered_ = 0, duplicated_ = 0, reordered_ = 0, untracked_ = 0, stale_ = 0, unparsed_ = 0,
           events_ = 0, events_with_id_ = 0, gaps_ = 0, bytes_ = 0;
  uint32_t disconnects_ = 0, protocol_errors_ = 0;
  int64_t t_first_deliv_ = 0, t_last_deliv_ = 0;
  histogram lat_;

  // server / client metrics
  long rss_before_ = -1, rss_after_ = -1, rss_peak_ = -1;
  double srv_cpu_pub_start_ = -1, srv_cpu_pub_end_ = -1;
  double self_cpu_pub_start_ = 0, self_cpu_pub_end_ = 0;
  int64_t t_drain_end_ = 0;

  bool finished_ = false, deadline_hit_ = false, all_delivered_ = false;
  std::string end_reason_;
};

// ------------------------------------------------------- connect phase ---
void bench::connect_pump() {
  if (finished_ || connect_done_) return;
  int64_t now = now_ns();
  if (opt_.connect_rate > 0) {
    connect_credit_ += static_cast<double>(now - connect_credit_t_) * 1e-9 * opt_.connect_rate;
    connect_credit_ = std::min(connect_credit_, std::max(1.0, opt_.connect_rate / 50.0));
    connect_credit_t_ = now;
  }
  while (next_sub_ < opt_.subs && in_progress_ < opt_.connect_concurrency &&
         (opt_.connect_rate <= 0 || connect_credit_ >= 1.0)) {
    if (opt_.connect_rate > 0) connect_credit_ -= 1.0;
    start_sub(*subs_[next_sub_++]);
  }
  sweep_timeouts();
  if (next_sub_ < opt_.subs || in_progress_ > 0) {
    conn_timer_.expires_after(std::chrono::milliseconds(5));
    conn_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) connect_pump(); });
  }
}

void bench::sweep_timeouts() {
  int64_t now = now_ns();
  if (now - last_sweep_ < 100'000'000) return;
  last_sweep_ = now;
  int64_t limit = static_cast<int64_t>(opt_.connect_timeout * 1e9);
  for (uint32_t i = 0; i < next_sub_; ++i) {
    subscriber& s = *subs_[i];
    if ((s.state == subscriber::st::connecting || s.state == subscriber::st::head) && !s.ready &&
        now - s.t_start > limit) {
      ++fail_timeout_;
      sub_fail(s, "timeout");
    }
  }
}

void bench::start_sub(subscriber& s) {
  ++in_progress_;
  s.state = subscriber::st::connecting;
  s.t_start = now_ns();
  asio::error_code ec;
  if (opt_.src_ips > 0 && sub_url_.addr.is_v4()) {
    s.sock.open(tcp::v4(), ec);
    if (!ec) {
      int one = 1;
      ::setsockopt(s.sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      auto b = asio::ip::make_address_v4("127.0.0.1").to_bytes();
      b[3] = static_cast<unsigned char>(1 + s.idx % opt_.src_ips);
      s.sock.bind(tcp::endpoint(asio::ip::address_v4(b), 0), ec);
    }
    if (ec) { ++fail_connect_; sub_fail(s, "bind"); return; }
  }
  s.sock.async_connect(tcp::endpoint(sub_url_.addr, sub_url_.port), [this, &s](const asio::error_code& e) {
    if (s.state != subscriber::st::connecting) return;
    if (e) { ++fail_connect_; sub_fail(s, "connect"); return; }
    asio::error_code ig;
    s.sock.set_option(tcp::no_delay(true), ig);
    s.sock.non_blocking(true, ig);
    s.state = subscriber::st::head;
    s.head = std::make_unique<std::string>();
    asio::async_write(s.sock, asio::buffer(sub_request_), [this, &s](const asio::error_code& we, size_t) {
      if (we) { if (s.state == subscriber::st::head) { ++fail_connect_; sub_fail(s, "write"); } return; }
      if (opt_.ready_on_sent && s.state == subscriber::st::head) sub_ready(s);
    });
    arm_read(s);
  });
}

void bench::sub_ready(subscriber& s) {
  if (s.ready) return;
  s.ready = true;
  ++ready_;
  --in_progress_;
  connect_hist_.add(static_cast<uint64_t>((now_ns() - s.t_start) / 1000));
  check_connect_done();
}

void bench::sub_fail(subscriber& s, const char*) {
  bool was_ready = s.ready;
  if (s.state == subscriber::st::failed || s.state == subscriber::st::done) return;
  s.state = subscriber::st::failed;
  asio::error_code ig;
  s.sock.close(ig);
  s.head.reset();
  if (!was_ready) {
    --in_progress_;
    ++failed_;
    check_connect_done();
  }
}

void bench::check_connect_done() {
  if (connect_done_ || next_sub_ < opt_.subs || in_progress_ > 0) return;
  connect_done_ = true;
  t_connect_end_ = now_ns();
  conn_timer_.cancel();
  if (!opt_.quiet)
    std::fprintf(stderr, "[sse_fanout] %u/%u subscribers ready (%u failed) in %.2f s\n", ready_, opt_.subs, failed_,
                 static_cast<double>(t_connect_end_ - t_connect_start_) / 1e9);
  phase_timer_.expires_after(std::chrono::milliseconds(opt_.settle_ms));
  phase_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || finished_) return;
    rss_after_ = probe_.rss_kb();
    if (opt_.count == 0 || ready_ == 0) { finish(ready_ == 0 ? "no subscriber connected" : "idle run done"); return; }
    start_publishers();
  });
}

// ------------------------------------------------------- subscriber I/O ---
void bench::arm_read(subscriber& s) {
  s.sock.async_wait(tcp::socket::wait_read, [this, &s](const asio::error_code& ec) {
    if (ec || s.state == subscriber::st::failed || s.state == subscriber::st::done) return;
    on_readable(s);
  });
}

void bench::on_readable(subscriber& s) {
  for (;;) {
    asio::error_code ec;
    size_t n = s.sock.read_some(asio::buffer(rbuf_), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) { arm_read(s); return; }
    if (ec) { sub_closed(s, ec != asio::error::eof); return; }
    bytes_ += n;
    feed(s, rbuf_.data(), n, now_ns());
    if (s.state == subscriber::st::failed || s.state == subscriber::st::done) return;
    // A short read drained the socket. Re-arming without a second read that
    // would only return EAGAIN is safe on one thread: the edge for data that
    // arrives after this read is picked up by the next epoll_wait, which runs
    // only after this handler has queued the new wait.
    if (n < rbuf_.size()) { arm_read(s); return; }
  }
}

void bench::sub_closed(subscriber& s, bool) {
  if (s.state == subscriber::st::head && !s.ready) { ++fail_closed_; sub_fail(s, "closed"); return; }
  if (s.state == subscriber::st::failed || s.state == subscriber::st::done) return;
  if (!finished_) ++disconnects_;
  s.state = subscriber::st::done;
  asio::error_code ig;
  s.sock.close(ig);
}

void bench::feed(subscriber& s, const char* p, size_t n, int64_t now) {
  if (s.state == subscriber::st::head) {
    std::string& h = *s.head;
    size_t old = h.size();
    h.append(p, n);
    size_t e = h.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
    if (e == std::string::npos) {
      if (h.size() > 65536) { ++protocol_errors_; ++fail_status_; sub_fail(s, "head too large"); }
      return;
    }
    head_info hi = parse_head(std::string_view(h).substr(0, e));
    if (hi.status != 200) {
      ++fail_status_;
      ++fail_status_codes_[hi.status];
      sub_fail(s, "status");
      return;
    }
    s.chunked = hi.chunked;
    s.state = subscriber::st::body;
    std::string rest = h.substr(e + 4);
    s.head.reset();
    sub_ready(s);
    if (!rest.empty()) feed_body(s, rest.data(), rest.size(), now);
    return;
  }
  if (s.state == subscriber::st::body) feed_body(s, p, n, now);
}

void bench::feed_body(subscriber& s, const char* p, size_t n, int64_t now) {
  if (!s.chunked) { feed_sse(s, p, n, now); return; }
  const char* end = p + n;
  while (p < end) {
    switch (s.cstate) {
      case subscriber::c_size: {
        char c = *p++;
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d >= 0) { s.chunk_left = s.chunk_left * 16 + static_cast<uint64_t>(d); break; }
        if (c == '\r') { s.cstate = subscriber::c_size_lf; break; }
        if (c == ';' || c == ' ' || c == '\t') { s.cstate = subscriber::c_ext; break; }
        if (c == '\n') goto size_done;
        ++protocol_errors_;
        sub_closed(s, true);
        return;
      }
      case subscriber::c_ext:
        if (*p++ == '\n') goto size_done;
        break;
      case subscriber::c_size_lf:
        if (*p++ != '\n') { ++protocol_errors_; sub_closed(s, true); return; }
        goto size_done;
      case subscriber::c_data: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(s.chunk_left, static_cast<uint64_t>(end - p)));
        feed_sse(s, p, take, now);
        p += take;
        s.chunk_left -= take;
        if (s.chunk_left == 0) s.cstate = subscriber::c_data_cr;
        break;
      }
      case subscriber::c_data_cr: {
        char c = *p++;
        if (c == '\r') s.cstate = subscriber::c_data_lf;
        else if (c == '\n') s.cstate = subscriber::c_size;
        else { ++protocol_errors_; sub_closed(s, true); return; }
        break;
      }
      case subscriber::c_data_lf:
        if (*p++ != '\n') { ++protocol_errors_; sub_closed(s, true); return; }
        s.cstate = subscriber::c_size;
        break;
      case subscriber::c_end:
        return;  // last chunk seen: the server ended the stream
    }
    continue;
  size_done:
    if (s.chunk_left == 0) { s.cstate = subscriber::c_end; continue; }
    s.cstate = subscriber::c_data;
  }
}

void bench::feed_sse(subscriber& s, const char* p, size_t n, int64_t now) {
  for (const char* end = p + n; p < end; ++p) {
    char c = *p;
    if (s.last_cr) {
      s.last_cr = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      end_line(s, now);
      s.last_cr = (c == '\r');
      continue;
    }
    switch (s.lstate) {
      case subscriber::l_start:
        if (c == ':') { s.lstate = subscriber::l_ignore; break; }
        s.field[0] = c;
        s.flen = 1;
        s.lstate = subscriber::l_field;
        break;
      case subscriber::l_field:
        if (c == ':') {
          s.fkind = (s.flen == 4 && std::memcmp(s.field, "data", 4) == 0) ? 1
                  : (s.flen == 2 && std::memcmp(s.field, "id", 2) == 0)   ? 2 : 0;
          if (s.fkind == 1) {
            if (s.has_data && s.mklen < sizeof s.mk) s.mk[s.mklen++] = '\n';
            s.has_data = true;
          } else if (s.fkind == 2) {
            s.has_id = true;
          }
          s.lstate = subscriber::l_space;
        } else if (s.flen < sizeof s.field) {
          s.field[s.flen++] = c;
        } else {
          s.flen = 0xff;  // too long to be a field we care about
        }
        break;
      case subscriber::l_space:
        s.lstate = subscriber::l_value;
        if (c == ' ') break;
        [[fallthrough]];
      case subscriber::l_value:
        if (s.fkind == 1 && s.mklen < sizeof s.mk) s.mk[s.mklen++] = c;
        break;
      case subscriber::l_ignore:
        break;
    }
  }
}

void bench::end_line(subscriber& s, int64_t now) {
  switch (s.lstate) {
    case subscriber::l_start:
      dispatch(s, now);
      break;
    case subscriber::l_field:  // a field with no colon: empty value
      if (s.flen == 4 && std::memcmp(s.field, "data", 4) == 0) {
        if (s.has_data && s.mklen < sizeof s.mk) s.mk[s.mklen++] = '\n';
        s.has_data = true;
      } else if (s.flen == 2 && std::memcmp(s.field, "id", 2) == 0) {
        s.has_id = true;
      }
      break;
    default:
      break;
  }
  s.lstate = subscriber::l_start;
  s.fkind = 0;
  s.flen = 0;
}

void bench::dispatch(subscriber& s, int64_t now) {
  if (!s.has_data) { s.has_id = false; return; }
  ++events_;
  if (s.has_id) ++events_with_id_;
  // marker "#<seq>:<t_ns>#"
  const char* p = s.mk;
  const char* e = s.mk + s.mklen;
  uint64_t seq = 0;
  int64_t t = 0;
  bool ok = false;
  if (p < e && *p == '#') {
    auto r1 = std::from_chars(p + 1, e, seq);
    if (r1.ec == std::errc() && r1.ptr < e && *r1.ptr == ':') {
      auto r2 = std::from_chars(r1.ptr + 1, e, t);
      ok = r2.ec == std::errc() && r2.ptr < e && *r2.ptr == '#' && seq > 0;
    }
  }
  if (ok) record(s, seq, t, now);
  else ++unparsed_;
  s.has_data = s.has_id = false;
  s.mklen = 0;
}

void bench::record(subscriber& s, uint64_t seq, int64_t t_ns, int64_t now) {
  if (t_ns < t_run_start_ || seq > sent_) { ++stale_; return; }
  bool fresh = false;
  if (seq > s.highest) {
    if (seq > s.highest + 1) {
      if (!s.missing) s.missing = std::make_unique<std::vector<std::pair<uint64_t, uint64_t>>>();
      if (s.missing->size() < 4096) s.missing->emplace_back(s.highest + 1, seq - 1);
      ++gaps_;
    }
    s.highest = seq;
    fresh = true;
  } else if (s.missing) {
    auto& m = *s.missing;
    bool found = false;
    for (size_t i = 0; i < m.size(); ++i) {
      auto [lo, hi] = m[i];
      if (seq < lo || seq > hi) continue;
      found = true;
      if (lo == hi) m.erase(m.begin() + static_cast<std::ptrdiff_t>(i));
      else if (seq == lo) m[i].first = lo + 1;
      else if (seq == hi) m[i].second = hi - 1;
      else { m[i].second = seq - 1; m.insert(m.begin() + static_cast<std::ptrdiff_t>(i) + 1, {seq + 1, hi}); }
      break;
    }
    if (found) { ++reordered_; fresh = true; }
    else if (m.size() >= 4096) ++untracked_;
    else ++duplicated_;
  } else {
    ++duplicated_;
  }
  if (!fresh) return;
  ++s.delivered;
  ++delivered_;
  if (!t_first_deliv_) t_first_deliv_ = now;
  t_last_deliv_ = now;
  lat_.add(static_cast<uint64_t>(std::max<int64_t>(0, now - t_ns) / 1000));
}

// ------------------------------------------------------------ publisher ---
void bench::start_publishers() {
  padding_.clear();
  for (uint32_t i = 0; i < opt_.size; ++i) padding_.push_back(static_cast<char>('a' + i % 26));
  for (uint32_t k = 0; k < opt_.pub_conns; ++k) pubs_.push_back(std::make_unique<publisher>(io_));
  pub_connecting_ = opt_.pub_conns;
  for (auto& p : pubs_) pub_connect(*p);
}

void bench::pub_connect(publisher& p) {
  uint32_t gen = ++p.gen;
  p.sock = tcp::socket(io_);
  p.connected = p.writing = p.closing = false;
  p.pending.clear();
  p.writing_buf.clear();
  p.rbuf.clear();
  p.sock.async_connect(tcp::endpoint(pub_url_.addr, pub_url_.port), [this, &p, gen](const asio::error_code& ec) {
    if (gen != p.gen || finished_) return;
    if (ec) {
      p.dead = true;
      if (!opt_.quiet) std::fprintf(stderr, "[sse_fanout] publisher connect failed: %s\n", ec.message().c_str());
    } else {
      asio::error_code ig;
      p.sock.set_option(tcp::no_delay(true), ig);
      p.connected = true;
      pub_read(p);
    }
    if (!publishing_) {
      if (--pub_connecting_ > 0) return;
      publishing_ = true;
      t_pub_start_ = now_ns();
      srv_cpu_pub_start_ = probe_.cpu_seconds();
      self_cpu_pub_start_ = self_cpu_seconds();
      if (!opt_.quiet) std::fprintf(stderr, "[sse_fanout] publishing %" PRIu64 " messages\n", opt_.count);
    }
    bool any = false;
    for (auto& q : pubs_) any |= !q->dead;
    if (!any) {  // nothing left to publish with
      pub_errors_ += retry_.size() + (opt_.count - sent_);
      pub_error_status_[0] += retry_.size() + (opt_.count - sent_);
      retry_.clear();
      sent_ = opt_.count;
      inflight_ = 0;
    }
    pub_pump();
  });
}

void bench::pub_pump() {
  if (finished_ || !publishing_ || publish_done_) return;
  uint64_t allowed = opt_.count;
  if (opt_.rate > 0) {
    double el = static_cast<double>(now_ns() - t_pub_start_) * 1e-9;
    allowed = std::min<uint64_t>(opt_.count, static_cast<uint64_t>(el * opt_.rate) + 1);
  }
  std::vector<publisher*> touched;
  while ((!retry_.empty() || sent_ < allowed) && inflight_ < opt_.pub_window) {
    publisher* chosen = nullptr;
    for (uint32_t tries = 0; tries < pubs_.size(); ++tries) {
      publisher& p = *pubs_[rr_++ % pubs_.size()];
      if (p.connected && !p.dead && !p.closing) { chosen = &p; break; }
    }
    if (!chosen) break;
    uint64_t seq;
    if (!retry_.empty()) { seq = retry_.front(); retry_.pop_front(); ++resent_; }
    else seq = ++sent_;
    pub_send(*chosen, seq);
    touched.push_back(chosen);
  }
  for (publisher* p : touched) pub_flush(*p);
  maybe_publish_done();
  if (opt_.rate > 0 && sent_ < opt_.count && !publish_done_) {
    pub_timer_.expires_after(std::chrono::microseconds(500));
    pub_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) pub_pump(); });
  }
}

void bench::pub_send(publisher& p, uint64_t seq) {
  char marker[64];
  int ml = std::snprintf(marker, sizeof marker, "#%" PRIu64 ":%" PRId64 "#", seq, now_ns());
  size_t body_len = std::max<size_t>(static_cast<size_t>(ml), opt_.size);
  std::string& w = p.pending;
  w += "POST ";
  w += pub_target_;
  w += " HTTP/1.1\r\nHost: ";
  w += pub_url_.host_header;
  w += "\r\nContent-Type: ";
  w += opt_.pub_content_type;
  w += "\r\nContent-Length: ";
  w += std::to_string(body_len);
  w += "\r\n";
  for (auto& h : opt_.pub_headers) { w += h; w += "\r\n"; }
  w += "\r\n";
  w.append(marker, static_cast<size_t>(ml));
  if (body_len > static_cast<size_t>(ml)) w.append(padding_, 0, body_len - static_cast<size_t>(ml));
  p.outstanding.push_back(seq);
  ++inflight_;
}

void bench::pub_flush(publisher& p) {
  if (p.writing || p.pending.empty() || !p.connected || p.closing) return;
  p.writing = true;
  p.writing_buf.swap(p.pending);
  p.pending.clear();
  uint32_t gen = p.gen;
  asio::async_write(p.sock, asio::buffer(p.writing_buf), [this, &p, gen](const asio::error_code& ec, size_t) {
    if (gen != p.gen) return;
    p.writing = false;
    p.writing_buf.clear();
    if (ec) { if (!finished_) pub_lost(p, "write"); return; }
    pub_flush(p);
  });
}

void bench::pub_read(publisher& p) {
  uint32_t gen = p.gen;
  p.sock.async_read_some(asio::buffer(p.tmp), [this, &p, gen](const asio::error_code& ec, size_t n) {
    if (gen != p.gen || finished_) return;
    if (ec) { pub_lost(p, ec == asio::error::eof ? "closed by server" : "read error"); pub_pump(); return; }
    p.rbuf.append(p.tmp.data(), n);
    pub_parse(p);
    if (gen == p.gen && !p.closing) pub_read(p);
    pub_pump();
  });
}

void bench::pub_parse(publisher& p) {
  size_t off = 0;
  bool close_after = false;
  for (;;) {
    std::string_view b = std::string_view(p.rbuf).substr(off);
    size_t he = b.find("\r\n\r\n");
    if (he == std::string_view::npos) break;
    head_info hi = parse_head(b.substr(0, he));
    size_t body = he + 4, total = 0;
    if (hi.chunked) {
      size_t q = body;
      bool complete = false;
      for (;;) {
        size_t le = b.find("\r\n", q);
        if (le == std::string_view::npos) break;
        uint64_t sz = 0;
        std::from_chars(b.data() + q, b.data() + le, sz, 16);
        if (sz == 0) {
          size_t te = b.find("\r\n\r\n", le);  // trailers (usually none) end with an empty line
          if (te == le) { total = le + 4; complete = true; }
          else if (te != std::string_view::npos) { total = te + 4; complete = true; }
          break;
        }
        if (le + 2 + sz + 2 > b.size()) break;
        q = le + 2 + sz + 2;
      }
      if (!complete) break;
    } else {
      uint64_t cl = hi.content_length > 0 ? static_cast<uint64_t>(hi.content_length) : 0;
      if (body + cl > b.size()) break;
      total = body + cl;
    }
    off += total;
    if (hi.status >= 100 && hi.status < 200) continue;  // interim response
    if (!p.outstanding.empty()) p.outstanding.pop_front();
    if (inflight_) --inflight_;
    if (hi.status >= 200 && hi.status < 300) { ++acked_; t_last_ack_ = now_ns(); }
    else { ++pub_errors_; ++pub_error_status_[hi.status]; }
    if (hi.close) { close_after = true; break; }
  }
  if (off) p.rbuf.erase(0, off);
  // "Connection: close" (e.g. nginx's keepalive_requests, default 1000): the
  // pipelined requests behind it were never processed; send them again.
  if (close_after) pub_lost(p, "server closed keep-alive");
}

// The connection is gone: requests it did not answer go back into the retry
// queue (in seq order) and the connection is re-established.
void bench::pub_lost(publisher& p, const char* why) {
  if (finished_) return;
  (void)why;
  std::vector<uint64_t> back(p.outstanding.begin(), p.outstanding.end());
  inflight_ -= std::min<uint64_t>(inflight_, back.size());
  p.outstanding.clear();
  retry_.insert(retry_.end(), back.begin(), back.end());
  std::sort(retry_.begin(), retry_.end());
  asio::error_code ig;
  p.sock.close(ig);
  p.connected = false;
  ++pub_reconnects_;
  pub_connect(p);
}

void bench::maybe_publish_done() {
  if (publish_done_ || sent_ < opt_.count || inflight_ > 0 || !retry_.empty()) return;
  publish_done_ = true;
  start_drain();
}

void bench::start_drain() {
  if (!t_last_ack_) t_last_ack_ = now_ns();
  pub_timer_.cancel();
  t_drain_end_ = now_ns() + static_cast<int64_t>(opt_.drain * 1e9);
  drain_check();
}

void bench::drain_check() {
  if (finished_) return;
  uint64_t expected = acked_ * ready_;
  if (delivered_ >= expected) { all_delivered_ = true; finish("all delivered"); return; }
  if (now_ns() >= t_drain_end_) { finish("drain timeout"); return; }
  phase_timer_.expires_after(std::chrono::milliseconds(2));
  phase_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) drain_check(); });
}

// ---------------------------------------------------------- run control ---
void bench::sample() {
  if (finished_) return;
  long r = probe_.rss_kb();
  if (r > rss_peak_) rss_peak_ = r;
  sample_timer_.expires_after(std::chrono::milliseconds(100));
  sample_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) sample(); });
}

void bench::progress() {
  if (finished_ || opt_.quiet) return;
  std::fprintf(stderr, "[sse_fanout] t=%.1fs ready=%u failed=%u sent=%" PRIu64 " acked=%" PRIu64 " delivered=%" PRIu64 "\n",
               static_cast<double>(now_ns() - t_run_start_) / 1e9, ready_, failed_, sent_, acked_, delivered_);
  progress_timer_.expires_after(std::chrono::seconds(1));
  progress_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) progress(); });
}

void bench::finish(const char* why) {
  if (finished_) return;
  finished_ = true;
  end_reason_ = why;
  if (publishing_) {
    srv_cpu_pub_end_ = probe_.cpu_seconds();
    self_cpu_pub_end_ = self_cpu_seconds();
  }
  if (!t_connect_end_) t_connect_end_ = now_ns();
  io_.stop();
}

std::string json_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (static_cast<unsigned char>(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += c;
  }
  return o;
}

std::string bench::report() {
  std::ostringstream j;
  j.setf(std::ios::fixed);
  j.precision(3);
  auto d = [](double v) { std::ostringstream s; s.setf(std::ios::fixed); s.precision(3); s << v; return s.str(); };
  uint64_t expected = acked_ * ready_;
  uint64_t min_d = UINT64_MAX, max_d = 0, subs_with_loss = 0;
  for (auto& s : subs_) {
    if (!s->ready) continue;
    min_d = std::min(min_d, s->delivered);
    max_d = std::max(max_d, s->delivered);
    if (s->delivered < acked_) ++subs_with_loss;
  }
  if (min_d == UINT64_MAX) min_d = 0;
  double deliv_s = t_last_deliv_ > t_first_deliv_ ? static_cast<double>(t_last_deliv_ - t_first_deliv_) / 1e9 : 0;
  double pub_s = t_last_ack_ > t_pub_start_ && publishing_ ? static_cast<double>(t_last_ack_ - t_pub_start_) / 1e9 : 0;
  double elapsed = static_cast<double>(now_ns() - t_run_start_) / 1e9;
  uint64_t lost = expected > delivered_ ? expected - delivered_ : 0;

  j << "{\"tool\":\"crier_bench_sse_fanout\",\"label\":\"" << json_escape(opt_.label) << "\""
    << ",\"sub_url\":\"" << json_escape(opt_.sub_url) << "\",\"pub_url\":\"" << json_escape(opt_.pub_url) << "\""
    << ",\"topic\":\"" << json_escape(topic_) << "\",\"run_id\":\"" << run_id_ << "\""
    << ",\"payload_size\":" << opt_.size << ",\"rate_target\":" << d(opt_.rate)
    << ",\"pub_conns\":" << opt_.pub_conns << ",\"pub_window\":" << opt_.pub_window
    << ",\"subs_requested\":" << opt_.subs << ",\"subs_connected\":" << ready_ << ",\"subs_failed\":" << failed_
    << ",\"connect_failures\":{\"connect\":" << fail_connect_ << ",\"timeout\":" << fail_timeout_
    << ",\"status\":" << fail_status_ << ",\"closed\":" << fail_closed_ << ",\"not_attempted\":" << (opt_.subs - next_sub_)
    << ",\"status_codes\":{";
  bool first = true;
  for (auto& [k, v] : fail_status_codes_) { j << (first ? "" : ",") << "\"" << k << "\":" << v; first = false; }
  j << "}}"
    << ",\"connect_seconds\":" << d(static_cast<double>(t_connect_end_ - t_connect_start_) / 1e9)
    << ",\"connect_time_ms\":{\"p50\":" << d(connect_hist_.percentile(50) / 1000) << ",\"p99\":"
    << d(connect_hist_.percentile(99) / 1000) << ",\"max\":" << d(static_cast<double>(connect_hist_.max()) / 1000) << "}"
    << ",\"published\":" << acked_ << ",\"publish_attempted\":" << sent_ << ",\"publish_errors\":" << pub_errors_
    << ",\"publisher_reconnects\":" << pub_reconnects_ << ",\"publish_resent\":" << resent_
    << ",\"publish_error_status\":{";
  first = true;
  for (auto& [k, v] : pub_error_status_) { j << (first ? "" : ",") << "\"" << k << "\":" << v; first = false; }
  j << "}"
    << ",\"publish_seconds\":" << d(pub_s) << ",\"publish_rate\":" << d(pub_s > 0 ? static_cast<double>(acked_) / pub_s : 0)
    << ",\"expected\":" << expected << ",\"delivered\":" << delivered_
    << ",\"delivery_ratio\":" << (expected ? static_cast<double>(delivered_) / static_cast<double>(expected) : 0.0)
    << ",\"lost\":" << lost << ",\"subs_with_loss\":" << subs_with_loss << ",\"gaps\":" << gaps_
    << ",\"duplicated\":" << duplicated_ << ",\"reordered\":" << reordered_ << ",\"untracked_late\":" << untracked_
    << ",\"stale\":" << stale_ << ",\"min_delivered_per_sub\":" << min_d << ",\"max_delivered_per_sub\":" << max_d
    << ",\"events\":" << events_ << ",\"events_with_id\":" << events_with_id_ << ",\"events_unparsed\":" << unparsed_
    << ",\"bytes_received\":" << bytes_
    << ",\"delivery_seconds\":" << d(deliv_s)
    << ",\"delivered_per_sec\":" << d(deliv_s > 0 ? static_cast<double>(delivered_) / deliv_s : 0)
    << ",\"latency_us\":{\"count\":" << lat_.count() << ",\"min\":" << lat_.min() << ",\"mean\":" << d(lat_.mean())
    << ",\"p50\":" << d(lat_.percentile(50)) << ",\"p90\":" << d(lat_.percentile(90)) << ",\"p99\":" << d(lat_.percentile(99))
    << ",\"p99_9\":" << d(lat_.percentile(99.9)) << ",\"max\":" << lat_.max() << "}"
    << ",\"disconnects\":" << disconnects_ << ",\"protocol_errors\":" << protocol_errors_;
  if (probe_.pid) {
    double per_conn = (rss_after_ >= 0 && rss_before_ >= 0 && ready_)
                          ? static_cast<double>(rss_after_ - rss_before_) * 1024.0 / ready_ : 0;
    j << ",\"server\":{\"pid\":" << probe_.pid << ",\"tree\":" << (probe_.tree ? "true" : "false")
      << ",\"rss_before_kb\":" << rss_before_ << ",\"rss_after_connect_kb\":" << rss_after_
      << ",\"rss_peak_kb\":" << rss_peak_ << ",\"rss_delta_per_conn_bytes\":" << d(per_conn)
      << ",\"cpu_seconds_publish\":" << d(srv_cpu_pub_end_ >= 0 && srv_cpu_pub_start_ >= 0 ? srv_cpu_pub_end_ - srv_cpu_pub_start_ : 0)
      << "}";
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  double pub_window = publishing_ ? static_cast<double>(now_ns() - t_pub_start_) / 1e9 : 0;
  j << ",\"client\":{\"cpu_seconds_total\":" << d(self_cpu_seconds())
    << ",\"cpu_seconds_publish\":" << d(self_cpu_pub_end_ - self_cpu_pub_start_)
    << ",\"cpu_utilization_publish\":" << d(pub_window > 0 ? (self_cpu_pub_end_ - self_cpu_pub_start_) / pub_window : 0)
    << ",\"max_rss_kb\":" << ru.ru_maxrss << "}"
    << ",\"all_delivered\":" << (all_delivered_ ? "true" : "false")
    << ",\"exact\":"
    << ((ready_ == opt_.subs && lost == 0 && duplicated_ == 0 && reordered_ == 0 && pub_errors_ == 0 && !deadline_hit_ &&
         disconnects_ == 0 && protocol_errors_ == 0) ? "true" : "false")
    << ",\"end_reason\":\"" << json_escape(end_reason_) << "\""
    << ",\"deadline_hit\":" << (deadline_hit_ ? "true" : "false") << ",\"elapsed_seconds\":" << d(elapsed) << "}";
  return j.str();
}

int bench::run() {
  t_run_start_ = now_ns();
  char rid[32];
  std::snprintf(rid, sizeof rid, "%" PRIx64, static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) & UINT64_C(0xffffffffff));
  run_id_ = rid;
  topic_ = replace_all(opt_.topic, "{run}", run_id_);
  std::string err;
  auto su = parse_url(replace_all(replace_all(opt_.sub_url, "{topic}", topic_), "{run}", run_id_), err);
  if (!su) { std::fprintf(stderr, "sse_fanout: %s\n", err.c_str()); return 2; }
  auto pu = parse_url(replace_all(replace_all(opt_.pub_url, "{topic}", topic_), "{run}", run_id_), err);
  if (!pu) { std::fprintf(stderr, "sse_fanout: %s\n", err.c_str()); return 2; }
  sub_url_ = *su;
  pub_url_ = *pu;
  pub_target_ = pub_url_.target;
  sub_request_ = "GET " + sub_url_.target + " HTTP/1.1\r\nHost: " + sub_url_.host_header +
                 "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n";
  for (auto& h : opt_.sub_headers) sub_request_ += h + "\r\n";
  sub_request_ += "\r\n";

  // Hard watchdog in case the orderly stop ever hangs.
  double hard = opt_.max_seconds + 15;
  std::thread([hard] {
    std::this_thread::sleep_for(std::chrono::duration<double>(hard));
    std::fprintf(stderr, "sse_fanout: watchdog: run did not stop, aborting\n");
    std::_Exit(3);
  }).detach();

  probe_.pid = opt_.server_pid;
  probe_.tree = opt_.server_pid_tree;
  if (probe_.pid && probe_.rss_kb() < 0) { std::fprintf(stderr, "sse_fanout: cannot read /proc/%d/status\n", probe_.pid); return 2; }
  rss_before_ = probe_.rss_kb();
  rss_peak_ = rss_before_;

  subs_.reserve(opt_.subs);
  for (uint32_t i = 0; i < opt_.subs; ++i) subs_.push_back(std::make_unique<subscriber>(io_, i));

  deadline_.expires_after(std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(opt_.max_seconds)));
  deadline_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    deadline_hit_ = true;
    finish("max-seconds reached");
  });
  if (probe_.pid) sample();
  progress_timer_.expires_after(std::chrono::seconds(1));
  progress_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) progress(); });

  t_connect_start_ = now_ns();
  connect_credit_t_ = t_connect_start_;
  connect_credit_ = 1;
  if (opt_.subs == 0) check_connect_done();
  else connect_pump();
  io_.run();

  std::string r = report();
  std::printf("%s\n", r.c_str());
  std::fflush(stdout);
  if (!opt_.out_file.empty()) {
    std::ofstream f(opt_.out_file);
    f << r << "\n";
  }
  if (!opt_.quiet) {
    std::fprintf(stderr, "[sse_fanout] %s: subs %u/%u, delivered %" PRIu64 "/%" PRIu64 ", %.0f msg/s, p50 %.0f us, p99 %.0f us\n",
                 end_reason_.c_str(), ready_, opt_.subs, delivered_, acked_ * ready_,
                 t_last_deliv_ > t_first_deliv_ ? static_cast<double>(delivered_) / (static_cast<double>(t_last_deliv_ - t_first_deliv_) / 1e9) : 0.0,
                 lat_.percentile(50), lat_.percentile(99));
  }
  return deadline_hit_ ? 3 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse_args(argc, argv);
  // 10k subscribers need 10k descriptors: raise the soft limit to the hard one.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  bench b(std::move(o));
  return b.run();
}
