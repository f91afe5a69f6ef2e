// Webhook receiver for bench/run_webhooks.sh: the C++ twin of `webhook_bench.py recv`
// (same command line, stdin commands and JSON report), for when the Python receiver would
// cost more CPU per delivery than crier itself. One thread, epoll, level-triggered.
//
//   webhook_receiver --healthy H --hang N [--reserve PER_SUB]
//
// Listens on H + N ephemeral ports on 127.0.0.1 and prints one JSON line
// {"pid":…,"healthy_ports":[…],"hang_ports":[…]}. A healthy port answers every request with
// `HTTP/1.1 200 OK` + `Content-Length: 0` (keep-alive) and records it: the subscription is the
// number after the last '/' of the path, the message `#<seq>:<t_ns>#` at the start of the body
// (t_ns = CLOCK_MONOTONIC at publish), deduplicated on webhook-id. A body that starts with '['
// is a batch (crier's `batch_max`: a JSON array of envelopes): every `#<seq>:<t_ns>#` in it,
// in order, is one message, deduplicated on its envelope's "id" (the last `"id":"…"` before
// it), all received at the POST's time. POSTs are counted apart from messages (`posts`,
// `post_sizes`: messages per POST -> POSTs). A hang port accepts, reads and never answers. stdin: `expect TOTAL TIMEOUT_S STALL_S` (finish once TOTAL distinct
// healthy deliveries arrived, after TIMEOUT_S, or after STALL_S without a new one), `quit`.
// --reserve: the deliveries expected per subscription, to size the tables up front.
// Then one JSON line with the results, and exit. With WEBHOOK_RECEIVER_DUMP=FILE it also writes
// every healthy delivery as "receive_ns latency_ns subscription" lines to FILE.
//
//   g++ -O2 -std=c++17 -o webhook_receiver bench/webhook_receiver.cpp
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

std::int64_t now_ns(clockid_t c = CLOCK_MONOTONIC) {
  timespec ts{};
  clock_gettime(c, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct sub_state {
  std::uint64_t n = 0, reordered = 0, dup = 0, posts = 0;
  std::int64_t last = 0, first_ns = 0, last_ns = 0;
  std::unordered_set<std::string> wids;
};

struct conn {
  int fd = -1;
  int port = 0;
  bool hang = false;
  std::string in;
  std::string out;  // unsent response bytes (rare)
};

constexpr std::string_view resp200 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

std::map<long, sub_state> subs;
std::vector<std::int64_t> lat;
struct sample { std::int64_t t, lat; long sub; };
std::vector<sample> samples;  // only with WEBHOOK_RECEIVER_DUMP=FILE
bool dump = false;
std::size_t reserve_per_sub = 0;  // --reserve: expected deliveries per subscription
std::uint64_t total = 0, protocol_errors = 0, hang_bytes = 0;
std::uint64_t posts = 0, batch_posts = 0;        // healthy POSTs (parsed), of which JSON arrays
std::map<std::size_t, std::uint64_t> post_sizes;  // messages in a POST -> POSTs
std::int64_t first_ns = 0, last_ns = 0, cpu_first = -1;
std::map<int, std::uint64_t> conns_per_port;

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  return true;
}
std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}
bool to_i64(std::string_view v, std::int64_t& out) {
  if (v.empty()) return false;
  std::int64_t x = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    x = x * 10 + (c - '0');
  }
  out = x;
  return true;
}

// `#<seq>:<t_ns>#` at body[at]; end = the closing '#'.
bool parse_marker(std::string_view body, std::size_t at, std::int64_t& seq, std::int64_t& t, std::size_t& end) {
  if (at >= body.size() || body[at] != '#') return false;
  auto c = body.find(':', at + 1);
  if (c == std::string_view::npos) return false;
  auto h = body.find('#', c + 1);
  if (h == std::string_view::npos) return false;
  if (!to_i64(body.substr(at + 1, c - at - 1), seq) || !to_i64(body.substr(c + 1, h - c - 1), t)) return false;
  end = h;
  return true;
}

// One message delivered to subscription s (key: its webhook-id, or its envelope id in a batch).
void deliver(sub_state& s, long idx, std::string_view key, bool have_key, std::int64_t seq, std::int64_t t,
             std::int64_t now) {
  if (!have_key || !s.wids.emplace(key).second) return void(++s.dup);
  if (seq < s.last) ++s.reordered;
  else s.last = seq;
  ++s.n;
  s.last_ns = now;
  lat.push_back(now - t);
  if (dump) samples.push_back({now, now - t, idx});
  if (total == 0) {
    first_ns = now;
    cpu_first = now_ns(CLOCK_PROCESS_CPUTIME_ID);
  }
  ++total;
  last_ns = now;
}

void record(std::string_view reqline, std::string_view wid, bool have_wid, std::string_view body, std::int64_t now) {
  auto sp1 = reqline.find(' ');
  auto sp2 = reqline.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) return void(++protocol_errors);
  auto path = reqline.substr(sp1 + 1, sp2 - sp1 - 1);
  std::int64_t idx = 0, seq = 0, t = 0;
  std::size_t end = 0;
  bool batch = !body.empty() && body[0] == '[';
  if (!to_i64(path.substr(path.rfind('/') + 1), idx) || (!batch && !parse_marker(body, 0, seq, t, end)))
    return void(++protocol_errors);
  auto [it, fresh] = subs.try_emplace(idx);
  sub_state& s = it->second;
  if (fresh) {
    s.first_ns = now;
    // Sized up front: a rehash of every subscription's set at the same message (they all grow
    // in step) would stall the receiver for milliseconds and show up as crier's tail latency.
    s.wids.reserve(reserve_per_sub);
  }
  ++posts;
  ++s.posts;
  if (!batch) {
    ++post_sizes[1];
    return deliver(s, static_cast<long>(idx), wid, have_wid, seq, t, now);
  }
  ++batch_posts;
  std::size_t found = 0, pos = 0, prev = 0;
  while ((pos = body.find('#', pos)) != std::string_view::npos) {
    if (!parse_marker(body, pos, seq, t, end)) {
      ++pos;
      continue;
    }
    // The envelope's id: the last "id":"…" between the previous message and this one.
    std::string_view key;
    bool have_key = false;
    constexpr std::string_view id_key = "\"id\":\"";
    auto ik = body.substr(prev, pos - prev).rfind(id_key);
    if (ik != std::string_view::npos) {
      auto v0 = prev + ik + id_key.size();
      auto v1 = body.find('"', v0);
      if (v1 != std::string_view::npos && v1 < pos) {
        key = body.substr(v0, v1 - v0);
        have_key = true;
      }
    }
    deliver(s, static_cast<long>(idx), key, have_key, seq, t, now);
    ++found;
    pos = prev = end + 1;
  }
  ++post_sizes[found];
  if (found == 0) ++protocol_errors;
}

// Parses and answers every complete request in c.in; false = close the connection.
bool serve(conn& c) {
  std::size_t pos = 0;
  std::string_view d(c.in);
  while (true) {
    auto he = d.find("\r\n\r\n", pos);
    if (he == std::string_view::npos) break;
    auto head = d.substr(pos, he - pos);
    auto eol = head.find("\r\n");
    auto reqline = head.substr(0, eol);
    std::int64_t cl = 0;
    std::string_view wid;
    bool have_wid = false;
    while (eol != std::string_view::npos) {
      auto next = head.find("\r\n", eol + 2);
      auto line = head.substr(eol + 2, next == std::string_view::npos ? std::string_view::npos : next - eol - 2);
      auto colon = line.find(':');
      if (colon != std::string_view::npos) {
        auto k = trim(line.substr(0, colon));
        auto v = trim(line.substr(colon + 1));
        if (ieq(k, "content-length")) {
          if (!to_i64(v, cl)) return false;
        } else if (ieq(k, "webhook-id")) {
          wid = v;
          have_wid = true;
        }
      }
      eol = next;
    }
    std::size_t end = he + 4 + static_cast<std::size_t>(cl);
    if (end > d.size()) break;
    std::int64_t now = now_ns();
    c.out.append(resp200);
    record(reqline, wid, have_wid, d.substr(he + 4, static_cast<std::size_t>(cl)), now);
    pos = end;
  }
  c.in.erase(0, pos);
  while (!c.out.empty()) {
    ssize_t w = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (w > 0) c.out.erase(0, static_cast<std::size_t>(w));
    else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    else return false;
  }
  return true;
}

int listen_port(int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(fd, 1024) < 0) return -1;
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  int healthy = 1, hang = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--healthy") healthy = std::atoi(argv[i + 1]);
    else if (a == "--hang") hang = std::atoi(argv[i + 1]);
    else if (a == "--reserve") reserve_per_sub = std::strtoull(argv[i + 1], nullptr, 10);
    else return std::fprintf(stderr, "usage: webhook_receiver --healthy H --hang N [--reserve PER_SUB]\n"), 2;
  }
  dump = std::getenv("WEBHOOK_RECEIVER_DUMP") != nullptr;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  // epoll data: fd; listening sockets and connections are told apart by these maps.
  std::unordered_map<int, std::pair<int, bool>> listeners;  // fd -> (port, hang)
  std::unordered_map<int, conn> conns;
  std::string hp, np;
  for (int k = 0; k < healthy + hang; ++k) {
    int port = 0, fd = listen_port(port);
    if (fd < 0) return std::perror("listen"), 1;
    bool is_hang = k >= healthy;
    listeners[fd] = {port, is_hang};
    std::string& list = is_hang ? np : hp;
    list += (list.empty() ? "" : ",") + std::to_string(port);
    epoll_event e{EPOLLIN, {.fd = fd}};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  }
  std::printf("{\"pid\": %d, \"healthy_ports\": [%s], \"hang_ports\": [%s]}\n", getpid(), hp.c_str(), np.c_str());
  std::fflush(stdout);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  epoll_event se{EPOLLIN, {.fd = 0}};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &se);

  std::string cmd;
  std::uint64_t target = 0;
  bool have_target = false;
  std::int64_t deadline = 0, stall_ns = 0, next_stall = 0;
  std::uint64_t stall_total = ~0ull;
  std::string why;
  std::vector<char> buf(256 * 1024);
  epoll_event evs[256];
  lat.reserve(std::max<std::size_t>(1 << 20, reserve_per_sub * static_cast<std::size_t>(healthy)));
  if (dump) samples.reserve(lat.capacity());

  while (why.empty()) {
    int timeout = -1;
    if (have_target) {
      std::int64_t until = std::min(deadline, next_stall) - now_ns();
      timeout = until <= 0 ? 0 : static_cast<int>(until / 1'000'000 + 1);
    }
    int n = epoll_wait(ep, evs, 256, timeout);
    if (n < 0 && errno != EINTR) return std::perror("epoll_wait"), 1;
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == 0) {
        ssize_t r = ::read(0, buf.data(), buf.size());
        if (r == 0) {
          why = "stdin closed";
          epoll_ctl(ep, EPOLL_CTL_DEL, 0, nullptr);
          break;
        }
        if (r < 0) continue;
        cmd.append(buf.data(), static_cast<std::size_t>(r));
        std::size_t nl;
        while ((nl = cmd.find('\n')) != std::string::npos) {
          std::string line = cmd.substr(0, nl);
          cmd.erase(0, nl + 1);
          unsigned long long t = 0;
          double to = 0, st = 0;
          if (std::sscanf(line.c_str(), "expect %llu %lf %lf", &t, &to, &st) == 3) {
            target = t;
            have_target = true;
            deadline = now_ns() + static_cast<std::int64_t>(to * 1e9);
            stall_ns = static_cast<std::int64_t>(st * 1e9);
            next_stall = now_ns() + stall_ns;
            stall_total = total;
          } else if (line.rfind("quit", 0) == 0) {
            why = "quit";
          }
        }
        continue;
      }
      if (auto l = listeners.find(fd); l != listeners.end()) {
        while (true) {
          int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn& cn = conns[c];
          cn.fd = c;
          cn.port = l->second.first;
          cn.hang = l->second.second;
          ++conns_per_port[cn.port];
          epoll_event e{EPOLLIN | EPOLLRDHUP, {.fd = c}};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      conn& c = it->second;
      bool close_it = false;
      ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
      if (r > 0) {
        if (c.hang) hang_bytes += static_cast<std::uint64_t>(r);
        else {
          c.in.append(buf.data(), static_cast<std::size_t>(r));
          close_it = !serve(c);
        }
      } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close_it = true;
      }
      if (close_it) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        conns.erase(it);
      }
    }
    if (have_target && why.empty()) {
      std::int64_t t = now_ns();
      if (total >= target) why = "complete";
      else if (t >= deadline) why = "timeout";
      else if (t >= next_stall) {
        if (total == stall_total) why = "stalled";
        stall_total = total;
        next_stall = t + stall_ns;
      }
    }
  }

  std::int64_t cpu_end = now_ns(CLOCK_PROCESS_CPUTIME_ID);
  if (dump) {  // "receive_ns latency_ns subscription" per healthy delivery, for plotting tails over time
    if (FILE* f = std::fopen(std::getenv("WEBHOOK_RECEIVER_DUMP"), "w")) {
      for (auto& x : samples) std::fprintf(f, "%lld %lld %ld\n", (long long)x.t, (long long)x.lat, x.sub);
      std::fclose(f);
    }
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) -> std::string {
    if (lat.empty()) return "null";
    long k = std::lround(p / 100.0 * double(lat.size()) + 0.5) - 1;
    k = std::clamp<long>(k, 0, long(lat.size()) - 1);
    char b[64];
    std::snprintf(b, sizeof b, "%.3f", double(lat[std::size_t(k)]) / 1000.0);
    return b;
  };
  std::string out = "{\"why\": \"" + why + "\", \"total\": " + std::to_string(total) +
                    ", \"first_ns\": " + std::to_string(first_ns) + ", \"last_ns\": " + std::to_string(last_ns);
  char cpu[64];
  std::snprintf(cpu, sizeof cpu, "%.6f", cpu_first < 0 ? 0.0 : double(cpu_end - cpu_first) / 1e9);
  out += ", \"cpu_s\": " + std::string(cpu) + ", \"lat_us\": {\"50\": " + pct(50) + ", \"90\": " + pct(90) +
         ", \"99\": " + pct(99) + ", \"99.9\": " + pct(99.9) + ", \"100\": " + pct(100) + "}, \"subs\": {";
  bool first = true;
  for (auto& [idx, s] : subs) {
    out += (first ? "\"" : ", \"") + std::to_string(idx) + "\": {\"n\": " + std::to_string(s.n) +
           ", \"reordered\": " + std::to_string(s.reordered) + ", \"dup\": " + std::to_string(s.dup) +
           ", \"posts\": " + std::to_string(s.posts) +
           ", \"first_ns\": " + std::to_string(s.first_ns) + ", \"last_ns\": " + std::to_string(s.last_ns) + "}";
    first = false;
  }
  out += "}, \"conns\": {";
  first = true;
  for (auto& [port, n] : conns_per_port) {
    out += (first ? "\"" : ", \"") + std::to_string(port) + "\": " + std::to_string(n);
    first = false;
  }
  out += "}, \"posts\": " + std::to_string(posts) + ", \"batch_posts\": " + std::to_string(batch_posts) +
         ", \"post_sizes\": {";
  first = true;
  for (auto& [size, n] : post_sizes) {
    out += (first ? "\"" : ", \"") + std::to_string(size) + "\": " + std::to_string(n);
    first = false;
  }
  out += "}, \"hang_bytes\": " + std::to_string(hang_bytes) + ", \"protocol_errors\": " + std::to_string(protocol_errors) + "}\n";
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  return 0;
}
