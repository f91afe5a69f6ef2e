// llhttp wrapper: turns bytes into complete `request`s, enforcing server_options limits and the
// strictness rules llhttp 8.1 leaves to us (obs-fold, duplicate Host, missing Host, TE on 1.0, ...).
#pragma once

#include <llhttp.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "crier/http/options.hpp"
#include "crier/http/request.hpp"

namespace crier::http::detail {

struct parse_error {
  unsigned status = 400;
  std::string_view code = "bad_request";
  std::string message;
};

class parser {
 public:
  enum class event { need_more, message, error };
  struct result {
    std::size_t consumed;
    event ev;
  };

  explicit parser(const server_options& o) : o_(&o) {
    llhttp_init(&p_, HTTP_REQUEST, &settings());
    p_.data = this;
  }
  parser(const parser&) = delete;
  parser& operator=(const parser&) = delete;

  // Parses at most up to the end of one message; event::message means take() has a request.
  result feed(const char* data, std::size_t n) {
    if (failed_) return {0, event::error};
    if (paused_) {
      llhttp_resume(&p_);
      paused_ = false;
    }
    std::size_t safe = n;
    bool scan_failed = false;
    if (scanning_) {
      std::size_t k = scan(data, n);
      if (scan_failed_) {
        safe = k;
        scan_failed = true;
      }
    }
    llhttp_errno_t e = llhttp_execute(&p_, data, safe);
    if (e == HPE_PAUSED) {
      paused_ = true;
      return {static_cast<std::size_t>(llhttp_get_error_pos(&p_) - data), event::message};
    }
    if (e != HPE_OK) {
      failed_ = true;
      // Our own verdicts surface as HPE_USER, or HPE_CB_HEADERS_COMPLETE from on_headers_complete.
      if (!user_failed_) {  // llhttp's own verdict: a framing / syntax error
        err_.status = 400;
        err_.code = "bad_request";
        err_.message = llhttp_get_error_reason(&p_) ? llhttp_get_error_reason(&p_) : llhttp_errno_name(e);
      }
      return {safe, event::error};
    }
    if (scan_failed) {
      failed_ = true;
      err_ = scan_err_;
      return {safe, event::error};
    }
    return {safe, event::need_more};
  }

  std::unique_ptr<request> take() { return std::move(done_); }
  const parse_error& error() const { return err_; }
  // Some bytes of a message have arrived (the head timer runs from here).
  bool started() const { return in_message_ || head_bytes_ > 0; }
  bool in_head() const { return started() && !headers_done_; }
  bool in_body() const { return in_message_ && headers_done_; }
  // The message being read asked for `100 Continue` and has not had it.
  bool continue_wanted() const { return continue_wanted_; }
  void clear_continue() { continue_wanted_ = false; }
  // The last message switched protocols: bytes after it are not HTTP.
  bool upgraded() const { return upgraded_; }

 private:
  // ---- own pre-scan of head bytes: what llhttp 8.1 accepts but RFC 9112 says to reject ----
  // Returns bytes scanned; stops at the end of the head or at the first offending byte.
  std::size_t scan(const char* d, std::size_t n) {
    const std::size_t limit = o_->max_request_line + o_->max_header_bytes + 1024;
    for (std::size_t i = 0; i < n; ++i) {
      char c = d[i];
      if (++head_bytes_ > limit) return scan_fail(i, first_line_ ? 414 : 431, first_line_ ? "uri_too_long" : "header_too_large",
                                                  first_line_ ? "request line too long" : "request head too large");
      if (cr_) {
        cr_ = false;
        if (c != '\n') return scan_fail(i, 400, "bad_request", "bare CR in request head");
        if (line_len_ == 0 && !first_line_) {
          scanning_ = false;  // blank line: head complete; body bytes are llhttp's business
          return i + 1;
        }
        if (line_len_ > 0) first_line_ = false;  // empty lines before the request line are tolerated
        line_len_ = 0;
        continue;
      }
      if (c == '\r') {
        cr_ = true;
        continue;
      }
      if (c == '\n') return scan_fail(i, 400, "bad_request", "bare LF in request head");
      if (c == '\0') return scan_fail(i, 400, "bad_request", "NUL in request head");
      if (line_len_ == 0 && !first_line_ && (c == ' ' || c == '\t'))
        return scan_fail(i, 400, "bad_request", "obsolete header line folding");
      ++line_len_;
    }
    return n;
  }
  std::size_t scan_fail(std::size_t at, unsigned status, std::string_view code, std::string_view msg) {
    scan_failed_ = true;
    scan_err_ = {status, code, std::string(msg)};
    return at;
  }
  void reset_scan() {
    scanning_ = true;
    cr_ = false;
    first_line_ = true;
    line_len_ = 0;
    head_bytes_ = 0;
  }

  int fail(unsigned status, std::string_view code, std::string msg) {
    err_ = {status, code, std::move(msg)};
    user_failed_ = true;
    return HPE_USER;
  }

  static parser& self(llhttp_t* p) { return *static_cast<parser*>(p->data); }

  static bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  }

  int count_header_bytes(std::size_t n) {
    header_bytes_ += n;
    if (header_bytes_ > o_->max_header_bytes) return fail(431, "header_too_large", "request headers too large");
    return 0;
  }

  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_message_begin = [](llhttp_t* p) -> int {
        auto& s = self(p);
        s.cur_ = std::make_unique<request>();
        s.in_message_ = true;
        s.headers_done_ = false;
        s.in_field_ = false;
        s.header_bytes_ = 0;
        s.host_count_ = 0;
        s.continue_wanted_ = false;
        return 0;
      };
      st.on_url = [](llhttp_t* p, const char* at, std::size_t n) -> int {
        auto& s = self(p);
        if (s.cur_->target_.size() + n > s.o_->max_request_line)
          return s.fail(414, "uri_too_long", "request target longer than " + std::to_string(s.o_->max_request_line) + " bytes");
        s.cur_->target_.append(at, n);
        return 0;
      };
      st.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) -> int {
        auto& s = self(p);
        if (int r = s.count_header_bytes(n + (s.in_field_ ? 0 : 4))) return r;  // +4: ": " and CRLF
        if (s.headers_done_) return 0;  // trailer fields: counted, not kept
        if (!s.in_field_) {
          if (s.cur_->headers_.size() >= s.o_->max_headers)
            return s.fail(431, "too_many_headers", "more than " + std::to_string(s.o_->max_headers) + " request headers");
          s.cur_->headers_.emplace_back();
          s.in_field_ = true;
        }
        s.cur_->headers_.back().first.append(at, n);
        return 0;
      };
      st.on_header_field_complete = [](llhttp_t* p) -> int {
        auto& s = self(p);
        s.in_field_ = false;
        if (s.headers_done_) return 0;
        auto& name = s.cur_->headers_.back().first;
        // llhttp 8.1 lets "Name : v" through with a trailing space in the name.
        if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar))
          return s.fail(400, "bad_request", "invalid character in header name");
        return 0;
      };
      st.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) -> int {
        auto& s = self(p);
        if (int r = s.count_header_bytes(n)) return r;
        if (!s.headers_done_) s.cur_->headers_.back().second.append(at, n);
        return 0;
      };
      st.on_header_value_complete = [](llhttp_t* p) -> int {
        auto& s = self(p);
        if (s.headers_done_) return 0;
        auto& [name, value] = s.cur_->headers_.back();
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
        if (iequals(name, "host")) ++s.host_count_;
        return 0;
      };
      st.on_headers_complete = [](llhttp_t* p) -> int { return self(p).headers_complete(); };
      st.on_body = [](llhttp_t* p, const char* at, std::size_t n) -> int {
        auto& s = self(p);
        if (s.cur_->body_.size() + n > s.o_->max_body_bytes)
          return s.fail(413, "body_too_large", "request body larger than " + std::to_string(s.o_->max_body_bytes) + " bytes");
        s.cur_->body_.append(at, n);
        return 0;
      };
      st.on_message_complete = [](llhttp_t* p) -> int {
        auto& s = self(p);
        s.cur_->keep_alive_ = llhttp_should_keep_alive(p) != 0;
        s.upgraded_ = s.cur_->upgrade_;
        s.done_ = std::move(s.cur_);
        s.in_message_ = false;
        s.headers_done_ = false;
        s.continue_wanted_ = false;
        s.reset_scan();
        return HPE_PAUSED;  // one message per feed(): the connection decides whether to read on
      };
      return st;
    }();
    return s;
  }

  int headers_complete() {
    request& r = *cur_;
    headers_done_ = true;
    unsigned major = llhttp_get_http_major(&p_), minor = llhttp_get_http_minor(&p_);
    if (major != 1 || minor > 1) return fail(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported");
    r.version_ = major * 10 + minor;
    r.method_ = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(&p_)));
    r.set_target(std::move(r.target_));
    r.keep_alive_ = llhttp_should_keep_alive(&p_) != 0;
    r.upgrade_ = p_.upgrade != 0;
    if (r.target_.empty()) return fail(400, "bad_request", "empty request target");
    if (host_count_ > 1) return fail(400, "bad_request", "more than one Host header");
    if (host_count_ == 0 && r.version_ == 11) return fail(400, "bad_request", "missing Host header");
    const bool chunked = (p_.flags & F_CHUNKED) != 0;
    const bool has_length = (p_.flags & F_CONTENT_LENGTH) != 0;
    if ((p_.flags & F_TRANSFER_ENCODING) && r.version_ == 10)
      return fail(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
    if (has_length && p_.content_length > o_->max_body_bytes)
      return fail(413, "body_too_large", "request body larger than " + std::to_string(o_->max_body_bytes) + " bytes");
    if (o_->require_length && !has_length && !chunked &&
        (r.method_ == "POST" || r.method_ == "PUT" || r.method_ == "PATCH"))
      return fail(411, "length_required", "Content-Length or chunked Transfer-Encoding required");
    if (has_length) r.body_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(p_.content_length, 1 << 20)));
    auto expect = r.header("expect");
    if (expect && r.version_ == 11 && iequals(*expect, "100-continue") && (chunked || (has_length && p_.content_length > 0)))
      continue_wanted_ = true;
    return 0;
  }

  llhttp_t p_;
  const server_options* o_;
  std::unique_ptr<request> cur_;   // message being parsed
  std::unique_ptr<request> done_;  // last complete message, until take()
  parse_error err_;
  parse_error scan_err_;
  std::size_t header_bytes_ = 0;
  std::size_t host_count_ = 0;
  std::size_t head_bytes_ = 0;
  std::size_t line_len_ = 0;
  bool in_message_ = false;
  bool headers_done_ = false;
  bool in_field_ = false;
  bool continue_wanted_ = false;
  bool paused_ = false;
  bool failed_ = false;
  bool user_failed_ = false;
  bool upgraded_ = false;
  bool scanning_ = true;
  bool scan_failed_ = false;
  bool cr_ = false;
  bool first_line_ = true;
};

}  // namespace crier::http::detail
