// Topic names and subscription patterns.
//
// A topic name is 1..255 bytes of segments separated by '/'; a segment is one or more of
// [A-Za-z0-9] and '-', '_', '.', '~' (RFC 3986 "unreserved": no escaping in URLs, headers
// or SSE ids). No empty segments, so no leading, trailing or doubled '/'.
// A pattern is a topic name in which a whole segment may be '*' (exactly one segment) and
// the last segment may be '**' (one or more further segments).
// A URL is a topic name too (WebSub and rssCloud topics are URLs): "http://" or "https://",
// a host, then RFC 3986 characters except ',' (it separates topics) and '*' (patterns), up to
// 255 bytes. Percent-encode it in /topics/{topic} paths.
#pragma once

#include <crier/error.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace crier {

inline constexpr std::size_t max_topic_length = 255;

namespace detail {
constexpr bool is_topic_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

// Calls f(segment) for each '/'-separated segment.
template <class F>
constexpr void for_each_segment(std::string_view s, F&& f) {
  std::size_t start = 0;
  for (;;) {
    auto slash = s.find('/', start);
    if (!f(s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start)))
      return;
    if (slash == std::string_view::npos) return;
    start = slash + 1;
  }
}
}  // namespace detail

namespace detail {
constexpr bool is_url_topic_char(char c) noexcept {
  if (is_topic_char(c)) return true;
  for (char u : std::string_view(":/?#[]@!$&'()+;=%"))
    if (c == u) return true;
  return false;
}
}  // namespace detail

inline bool is_url_topic(std::string_view name) noexcept {
  return name.starts_with("http://") || name.starts_with("https://");
}

// Empty error_code when `name` is a valid topic name.
inline std::error_code validate_topic(std::string_view name) noexcept {
  if (name.empty() || name.size() > max_topic_length) return errc::invalid_topic;
  if (is_url_topic(name)) {
    auto rest = name.substr(name.find("//") + 2);
    if (rest.empty() || rest.front() == '/' || rest.front() == '?' || rest.front() == '#') return errc::invalid_topic;
    for (char c : rest)
      if (!detail::is_url_topic_char(c)) return errc::invalid_topic;
    return {};
  }
  bool ok = true;
  detail::for_each_segment(name, [&](std::string_view seg) {
    if (seg.empty()) return ok = false;
    for (char c : seg)
      if (!detail::is_topic_char(c)) return ok = false;
    return true;
  });
  return ok ? std::error_code{} : make_error_code(errc::invalid_topic);
}

inline bool is_pattern(std::string_view s) noexcept { return s.find('*') != std::string_view::npos; }

// A validated subscription pattern (or plain topic name, which matches only itself).
class topic_pattern {
 public:
  // Parses `text`; on failure ec is set and the pattern matches nothing.
  static topic_pattern parse(std::string_view text, std::error_code& ec) {
    topic_pattern p;
    ec = {};
    if (text.empty() || text.size() > max_topic_length) {
      ec = errc::invalid_pattern;
      return p;
    }
    p.text_ = std::string(text);
    bool ok = true;
    detail::for_each_segment(text, [&](std::string_view seg) {
      if (p.any_depth_ || seg.empty()) return ok = false;  // "**" must be last
      if (seg == "*" || seg == "**") {
        p.any_depth_ = seg == "**";
        if (!p.any_depth_) p.segments_.emplace_back("*");
        return true;
      }
      for (char c : seg)
        if (!detail::is_topic_char(c)) return ok = false;
      p.segments_.emplace_back(seg);
      return true;
    });
    if (!ok) {
      ec = errc::invalid_pattern;
      return topic_pattern{};
    }
    return p;
  }

  const std::string& text() const noexcept { return text_; }
  bool is_exact() const noexcept { return !any_depth_ && text_.find('*') == std::string::npos; }

  bool matches(std::string_view topic) const noexcept {
    if (text_.empty()) return false;
    std::size_t i = 0;
    bool ok = true, extra = false;
    detail::for_each_segment(topic, [&](std::string_view seg) {
      if (i == segments_.size()) return extra = true, false;
      if (segments_[i] != "*" && segments_[i] != seg) return ok = false;
      ++i;
      return true;
    });
    if (!ok || i != segments_.size()) return false;
    return any_depth_ == extra;  // "**" needs at least one more segment; otherwise none may follow
  }

 private:
  std::string text_;
  std::vector<std::string> segments_;
  bool any_depth_ = false;
};

}  // namespace crier
