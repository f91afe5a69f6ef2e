// Command-line options of crier_bench_sse_fanout: defaults, --help text and parsing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace sse_fanout {

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

[[noreturn]] inline void usage(int code) {
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

inline options parse_args(int argc, char** argv) {
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

}  // namespace sse_fanout
