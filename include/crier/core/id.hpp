// Message ids and resume cursors.
//
// An id is "<epoch>:<seq>": epoch is 8 lowercase hex digits naming one incarnation of a
// topic's history (a new one when the history is created, e.g. after a restart), seq the
// topic's sequence number (1, 2, 3 ...). A client resuming with an id from another epoch is
// told its position is unknown (a `reset` gap) instead of silently missing messages.
//
// A cursor is what a client hands back to resume: "0" (everything the history holds), one id
// (single-topic subscriptions), or a list "topic=id,topic=id" (several topics or patterns).
#pragma once

#include <crier/core/topic.hpp>
#include <crier/error.hpp>

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crier {

struct message_id {
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;

  friend bool operator==(const message_id&, const message_id&) = default;

  // "epoch:seq"; appends to `out` to avoid a temporary on hot paths.
  void append_to(std::string& out) const {
    static constexpr char hex[] = "0123456789abcdef";
    char buf[32];
    for (int i = 0; i < 8; ++i) buf[i] = hex[(epoch >> (28 - 4 * i)) & 0xF];
    buf[8] = ':';
    auto [end, ec] = std::to_chars(buf + 9, buf + sizeof buf, seq);
    (void)ec;
    out.append(buf, end);
  }
  std::string to_string() const {
    std::string s;
    append_to(s);
    return s;
  }

  // Parses "epoch:seq" (epoch 1..8 hex digits, seq decimal).
  static bool parse(std::string_view s, message_id& out) noexcept {
    auto colon = s.find(':');
    if (colon == 0 || colon == std::string_view::npos || colon > 8 || colon + 1 == s.size()) return false;
    message_id id;
    auto e = std::from_chars(s.data(), s.data() + colon, id.epoch, 16);
    if (e.ec != std::errc{} || e.ptr != s.data() + colon) return false;
    auto q = std::from_chars(s.data() + colon + 1, s.data() + s.size(), id.seq, 10);
    if (q.ec != std::errc{} || q.ptr != s.data() + s.size()) return false;
    out = id;
    return true;
  }
};

// A parsed resume position.
struct cursor {
  enum class kind {
    none,      // no position given: only messages published from now on
    all,       // "0": everything the history still holds
    single,    // one id, for a single-topic subscription
    per_topic  // "topic=id,..."
  };
  kind what = kind::none;
  message_id id;                                             // kind::single
  std::vector<std::pair<std::string, message_id>> topics;    // kind::per_topic

  // What to resume `topic` from: nullptr = not listed.
  const message_id* find(std::string_view topic) const noexcept {
    for (auto& [t, i] : topics)
      if (t == topic) return &i;
    return nullptr;
  }

  static cursor parse(std::string_view s, std::error_code& ec) {
    ec = {};
    cursor c;
    if (s.empty()) return c;
    if (s == "0") {
      c.what = kind::all;
      return c;
    }
    if (s.find('=') == std::string_view::npos) {
      if (!message_id::parse(s, c.id)) ec = errc::invalid_id;
      c.what = kind::single;
      return c;
    }
    c.what = kind::per_topic;
    while (!s.empty()) {
      auto comma = s.find(',');
      auto item = s.substr(0, comma);
      auto eq = item.rfind('=');  // URL topics may contain '='; ids never do
      message_id id;
      if (eq == std::string_view::npos || validate_topic(item.substr(0, eq)) ||
          !message_id::parse(item.substr(eq + 1), id) || c.topics.size() >= 1024) {
        ec = errc::invalid_id;
        return {};
      }
      c.topics.emplace_back(std::string(item.substr(0, eq)), id);
      if (comma == std::string_view::npos) break;
      s.remove_prefix(comma + 1);
    }
    return c;
  }
};

}  // namespace crier
