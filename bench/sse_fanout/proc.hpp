// Server and client resource sampling from /proc and getrusage: VmRSS and CPU seconds.
#pragma once

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace sse_fanout {

inline long read_rss_kb(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// utime + stime in clock ticks, and the parent pid.
inline bool read_stat(int pid, uint64_t& ticks, int& ppid) {
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

inline std::vector<int> pid_tree(int root, bool tree) {
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

inline double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace sse_fanout
