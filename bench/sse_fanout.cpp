// crier_bench_sse_fanout: crier's own SSE fan-out benchmark client (run control, JSON report, main).
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

// Layout: sse_fanout/options.hpp (CLI), http.hpp (URLs, response heads),
// sse_parser.hpp (chunked + SSE parsing), stats.hpp (latency, loss/dup/reorder),
// subscriber.hpp, publisher.hpp, proc.hpp (server RSS / CPU), common.hpp.

#include "sse_fanout/common.hpp"
#include "sse_fanout/http.hpp"
#include "sse_fanout/options.hpp"
#include "sse_fanout/proc.hpp"
#include "sse_fanout/publisher.hpp"
#include "sse_fanout/stats.hpp"
#include "sse_fanout/subscriber.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace sse_fanout {
namespace {

std::string json_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (static_cast<unsigned char>(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += c;
  }
  return o;
}
class bench {
 public:
  explicit bench(options o)
      : opt_(std::move(o)), io_(1), subs_(io_, opt_, rs_, [this] { connected(); }),
        pubs_(io_, opt_, rs_, [this] { publishing_started(); }, [this] { start_drain(); }), phase_timer_(io_),
        sample_timer_(io_), deadline_(io_), progress_timer_(io_) {}

  int run();

 private:
  void connected();
  void publishing_started();
  void start_drain();
  void drain_check();
  void finish(const char* why);
  void sample();
  void progress();
  std::string report();

  options opt_;
  asio::io_context io_;
  run_state rs_;
  subscriber_pool subs_;
  publisher_pool pubs_;
  asio::steady_timer phase_timer_, sample_timer_, deadline_, progress_timer_;
  server_probe probe_;
  std::string topic_, run_id_;

  // server / client metrics
  long rss_before_ = -1, rss_after_ = -1, rss_peak_ = -1;
  double srv_cpu_pub_start_ = -1, srv_cpu_pub_end_ = -1;
  double self_cpu_pub_start_ = 0, self_cpu_pub_end_ = 0;
  int64_t t_drain_end_ = 0;

  bool deadline_hit_ = false, all_delivered_ = false;
  std::string end_reason_;
};

// ---------------------------------------------------------------- phases ---
// Every subscriber is ready or failed: settle, sample the server, publish.
void bench::connected() {
  phase_timer_.expires_after(std::chrono::milliseconds(opt_.settle_ms));
  phase_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || rs_.finished) return;
    rss_after_ = probe_.rss_kb();
    if (opt_.count == 0 || subs_.ready == 0) { finish(subs_.ready == 0 ? "no subscriber connected" : "idle run done"); return; }
    pubs_.start();
  });
}

void bench::publishing_started() {
  srv_cpu_pub_start_ = probe_.cpu_seconds();
  self_cpu_pub_start_ = self_cpu_seconds();
}

// Every message is answered: wait up to --drain for the deliveries.
void bench::start_drain() {
  t_drain_end_ = now_ns() + static_cast<int64_t>(opt_.drain * 1e9);
  drain_check();
}

void bench::drain_check() {
  if (rs_.finished) return;
  uint64_t expected = pubs_.acked * subs_.ready;
  if (subs_.deliv.delivered >= expected) { all_delivered_ = true; finish("all delivered"); return; }
  if (now_ns() >= t_drain_end_) { finish("drain timeout"); return; }
  phase_timer_.expires_after(std::chrono::milliseconds(2));
  phase_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) drain_check(); });
}

// ----------------------------------------------------------- run control ---
void bench::sample() {
  if (rs_.finished) return;
  long r = probe_.rss_kb();
  if (r > rss_peak_) rss_peak_ = r;
  sample_timer_.expires_after(std::chrono::milliseconds(100));
  sample_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) sample(); });
}

void bench::progress() {
  if (rs_.finished || opt_.quiet) return;
  std::fprintf(stderr, "[sse_fanout] t=%.1fs ready=%u failed=%u sent=%" PRIu64 " acked=%" PRIu64 " delivered=%" PRIu64 "\n",
               static_cast<double>(now_ns() - rs_.t_run_start) / 1e9, subs_.ready, subs_.failed, rs_.sent, pubs_.acked, subs_.deliv.delivered);
  progress_timer_.expires_after(std::chrono::seconds(1));
  progress_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) progress(); });
}

void bench::finish(const char* why) {
  if (rs_.finished) return;
  rs_.finished = true;
  end_reason_ = why;
  if (pubs_.publishing) {
    srv_cpu_pub_end_ = probe_.cpu_seconds();
    self_cpu_pub_end_ = self_cpu_seconds();
  }
  if (!subs_.t_connect_end) subs_.t_connect_end = now_ns();
  io_.stop();
}

std::string bench::report() {
  std::ostringstream j;
  j.setf(std::ios::fixed);
  j.precision(3);
  auto d = [](double v) { std::ostringstream s; s.setf(std::ios::fixed); s.precision(3); s << v; return s.str(); };
  const delivery_stats& dv = subs_.deliv;
  uint64_t expected = pubs_.acked * subs_.ready;
  uint64_t min_d = UINT64_MAX, max_d = 0, subs_with_loss = 0;
  for (auto& s : subs_.subs) {
    if (!s->ready) continue;
    min_d = std::min(min_d, s->track.delivered);
    max_d = std::max(max_d, s->track.delivered);
    if (s->track.delivered < pubs_.acked) ++subs_with_loss;
  }
  if (min_d == UINT64_MAX) min_d = 0;
  double deliv_s = dv.t_last_deliv > dv.t_first_deliv ? static_cast<double>(dv.t_last_deliv - dv.t_first_deliv) / 1e9 : 0;
  double pub_s = pubs_.t_last_ack > pubs_.t_pub_start && pubs_.publishing ? static_cast<double>(pubs_.t_last_ack - pubs_.t_pub_start) / 1e9 : 0;
  double elapsed = static_cast<double>(now_ns() - rs_.t_run_start) / 1e9;
  uint64_t lost = expected > dv.delivered ? expected - dv.delivered : 0;

  j << "{\"tool\":\"crier_bench_sse_fanout\",\"label\":\"" << json_escape(opt_.label) << "\""
    << ",\"sub_url\":\"" << json_escape(opt_.sub_url) << "\",\"pub_url\":\"" << json_escape(opt_.pub_url) << "\""
    << ",\"topic\":\"" << json_escape(topic_) << "\",\"run_id\":\"" << run_id_ << "\""
    << ",\"payload_size\":" << opt_.size << ",\"rate_target\":" << d(opt_.rate)
    << ",\"pub_conns\":" << opt_.pub_conns << ",\"pub_window\":" << opt_.pub_window
    << ",\"subs_requested\":" << opt_.subs << ",\"subs_connected\":" << subs_.ready << ",\"subs_failed\":" << subs_.failed
    << ",\"connect_failures\":{\"connect\":" << subs_.fail_connect << ",\"timeout\":" << subs_.fail_timeout
    << ",\"status\":" << subs_.fail_status << ",\"closed\":" << subs_.fail_closed << ",\"not_attempted\":" << (opt_.subs - subs_.next_sub)
    << ",\"status_codes\":{";
  bool first = true;
  for (auto& [k, v] : subs_.fail_status_codes) { j << (first ? "" : ",") << "\"" << k << "\":" << v; first = false; }
  j << "}}"
    << ",\"connect_seconds\":" << d(static_cast<double>(subs_.t_connect_end - subs_.t_connect_start) / 1e9)
    << ",\"connect_time_ms\":{\"p50\":" << d(subs_.connect_hist.percentile(50) / 1000) << ",\"p99\":"
    << d(subs_.connect_hist.percentile(99) / 1000) << ",\"max\":" << d(static_cast<double>(subs_.connect_hist.max()) / 1000) << "}"
    << ",\"published\":" << pubs_.acked << ",\"publish_attempted\":" << rs_.sent << ",\"publish_errors\":" << pubs_.pub_errors
    << ",\"publisher_reconnects\":" << pubs_.pub_reconnects << ",\"publish_resent\":" << pubs_.resent
    << ",\"publish_error_status\":{";
  first = true;
  for (auto& [k, v] : pubs_.pub_error_status) { j << (first ? "" : ",") << "\"" << k << "\":" << v; first = false; }
  j << "}"
    << ",\"publish_seconds\":" << d(pub_s) << ",\"publish_rate\":" << d(pub_s > 0 ? static_cast<double>(pubs_.acked) / pub_s : 0)
    << ",\"expected\":" << expected << ",\"delivered\":" << dv.delivered
    << ",\"delivery_ratio\":" << (expected ? static_cast<double>(dv.delivered) / static_cast<double>(expected) : 0.0)
    << ",\"lost\":" << lost << ",\"subs_with_loss\":" << subs_with_loss << ",\"gaps\":" << dv.gaps
    << ",\"duplicated\":" << dv.duplicated << ",\"reordered\":" << dv.reordered << ",\"untracked_late\":" << dv.untracked
    << ",\"stale\":" << dv.stale << ",\"min_delivered_per_sub\":" << min_d << ",\"max_delivered_per_sub\":" << max_d
    << ",\"events\":" << dv.events << ",\"events_with_id\":" << dv.events_with_id << ",\"events_unparsed\":" << dv.unparsed
    << ",\"bytes_received\":" << subs_.bytes
    << ",\"delivery_seconds\":" << d(deliv_s)
    << ",\"delivered_per_sec\":" << d(deliv_s > 0 ? static_cast<double>(dv.delivered) / deliv_s : 0)
    << ",\"latency_us\":{\"count\":" << dv.lat.count() << ",\"min\":" << dv.lat.min() << ",\"mean\":" << d(dv.lat.mean())
    << ",\"p50\":" << d(dv.lat.percentile(50)) << ",\"p90\":" << d(dv.lat.percentile(90)) << ",\"p99\":" << d(dv.lat.percentile(99))
    << ",\"p99_9\":" << d(dv.lat.percentile(99.9)) << ",\"max\":" << dv.lat.max() << "}"
    << ",\"disconnects\":" << subs_.disconnects << ",\"protocol_errors\":" << subs_.protocol_errors;
  if (probe_.pid) {
    double per_conn = (rss_after_ >= 0 && rss_before_ >= 0 && subs_.ready)
                          ? static_cast<double>(rss_after_ - rss_before_) * 1024.0 / subs_.ready : 0;
    j << ",\"server\":{\"pid\":" << probe_.pid << ",\"tree\":" << (probe_.tree ? "true" : "false")
      << ",\"rss_before_kb\":" << rss_before_ << ",\"rss_after_connect_kb\":" << rss_after_
      << ",\"rss_peak_kb\":" << rss_peak_ << ",\"rss_delta_per_conn_bytes\":" << d(per_conn)
      << ",\"cpu_seconds_publish\":" << d(srv_cpu_pub_end_ >= 0 && srv_cpu_pub_start_ >= 0 ? srv_cpu_pub_end_ - srv_cpu_pub_start_ : 0)
      << "}";
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  double pub_window = pubs_.publishing ? static_cast<double>(now_ns() - pubs_.t_pub_start) / 1e9 : 0;
  j << ",\"client\":{\"cpu_seconds_total\":" << d(self_cpu_seconds())
    << ",\"cpu_seconds_publish\":" << d(self_cpu_pub_end_ - self_cpu_pub_start_)
    << ",\"cpu_utilization_publish\":" << d(pub_window > 0 ? (self_cpu_pub_end_ - self_cpu_pub_start_) / pub_window : 0)
    << ",\"max_rss_kb\":" << ru.ru_maxrss << "}"
    << ",\"all_delivered\":" << (all_delivered_ ? "true" : "false")
    << ",\"exact\":"
    << ((subs_.ready == opt_.subs && lost == 0 && dv.duplicated == 0 && dv.reordered == 0 && pubs_.pub_errors == 0 && !deadline_hit_ &&
         subs_.disconnects == 0 && subs_.protocol_errors == 0) ? "true" : "false")
    << ",\"end_reason\":\"" << json_escape(end_reason_) << "\""
    << ",\"deadline_hit\":" << (deadline_hit_ ? "true" : "false") << ",\"elapsed_seconds\":" << d(elapsed) << "}";
  return j.str();
}

int bench::run() {
  rs_.t_run_start = now_ns();
  char rid[32];
  std::snprintf(rid, sizeof rid, "%" PRIx64, static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) & UINT64_C(0xffffffffff));
  run_id_ = rid;
  topic_ = replace_all(opt_.topic, "{run}", run_id_);
  std::string err;
  auto su = parse_url(replace_all(replace_all(opt_.sub_url, "{topic}", topic_), "{run}", run_id_), err);
  if (!su) { std::fprintf(stderr, "sse_fanout: %s\n", err.c_str()); return 2; }
  auto pu = parse_url(replace_all(replace_all(opt_.pub_url, "{topic}", topic_), "{run}", run_id_), err);
  if (!pu) { std::fprintf(stderr, "sse_fanout: %s\n", err.c_str()); return 2; }
  pubs_.set_target(*pu);
  std::string sub_request = "GET " + su->target + " HTTP/1.1\r\nHost: " + su->host_header +
                            "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n";
  for (auto& h : opt_.sub_headers) sub_request += h + "\r\n";
  sub_request += "\r\n";

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

  subs_.create(*su, std::move(sub_request));

  deadline_.expires_after(std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(opt_.max_seconds)));
  deadline_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    deadline_hit_ = true;
    finish("max-seconds reached");
  });
  if (probe_.pid) sample();
  progress_timer_.expires_after(std::chrono::seconds(1));
  progress_timer_.async_wait([this](const asio::error_code& ec) { if (!ec) progress(); });

  subs_.start();
  io_.run();

  std::string r = report();
  std::printf("%s\n", r.c_str());
  std::fflush(stdout);
  if (!opt_.out_file.empty()) {
    std::ofstream f(opt_.out_file);
    f << r << "\n";
  }
  if (!opt_.quiet) {
    const delivery_stats& dv = subs_.deliv;
    std::fprintf(stderr, "[sse_fanout] %s: subs %u/%u, delivered %" PRIu64 "/%" PRIu64 ", %.0f msg/s, p50 %.0f us, p99 %.0f us\n",
                 end_reason_.c_str(), subs_.ready, opt_.subs, dv.delivered, pubs_.acked * subs_.ready,
                 dv.t_last_deliv > dv.t_first_deliv ? static_cast<double>(dv.delivered) / (static_cast<double>(dv.t_last_deliv - dv.t_first_deliv) / 1e9) : 0.0,
                 dv.lat.percentile(50), dv.lat.percentile(99));
  }
  return deadline_hit_ ? 3 : 0;
}

}  // namespace
}  // namespace sse_fanout

int main(int argc, char** argv) {
  sse_fanout::options o = sse_fanout::parse_args(argc, argv);
  // 10k subscribers need 10k descriptors: raise the soft limit to the hard one.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  sse_fanout::bench b(std::move(o));
  return b.run();
}
