// Outbound HTTP client, private: llhttp (HTTP_RESPONSE mode) turned into one client_response per
// request, with client_options' limits. 1xx interim responses are skipped; the body of a response
// to HEAD, of 204 and of 304 is empty whatever the head says.
#pragma once

#include <llhttp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>

#include "crier/error.hpp"
#include "crier/http/client_options.hpp"
#include "crier/http/detail/client_wire.hpp"

namespace crier::http::detail {

class client_parser {
 public:
  enum class event { need_more, complete, error };
  struct result {
    std::size_t consumed;
    event ev;
  };
  static constexpr unsigned max_interim = 32;  // 1xx responses before the final one

  client_parser(const client_options& o, bool head_request) : o_(&o), head_request_(head_request) {
    llhttp_init(&p_, HTTP_RESPONSE, &settings());
    p_.data = this;
  }
  client_parser(const client_parser&) = delete;
  client_parser& operator=(const client_parser&) = delete;

  // Parses up to the end of the final response; event::complete leaves the rest unconsumed.
  result feed(const char* data, std::size_t n) {
    if (done_) return {0, event::complete};
    if (failed_) return {0, event::error};
    if (n > 0) started_ = true;
    llhttp_errno_t e = llhttp_execute(&p_, data, n);
    if (e == HPE_OK) return {n, event::need_more};
    auto pos = static_cast<std::size_t>(llhttp_get_error_pos(&p_) - data);
    if (e == HPE_PAUSED && done_) return {pos, event::complete};
    if (overflow_) {  // more than max_response_drain to discard: stop here, the connection closes
      finish_message(false);
      return {pos, event::complete};
    }
    failed_ = true;
    if (!err_) err_ = make_error_code(errc::bad_response);
    return {pos, event::error};
  }

  // The server closed the connection: completes a body delimited by the close, else an error.
  event finish() {
    if (done_) return event::complete;
    if (failed_) return event::error;
    if (final_head_) {
      llhttp_finish(&p_);  // runs on_message_complete when the close delimits the body
      if (done_) {
        keep_alive_ = false;
        return event::complete;
      }
    }
    failed_ = true;
    if (!err_) err_ = make_error_code(errc::bad_response);
    return event::error;
  }

  bool started() const { return started_; }           // some bytes of a response arrived
  bool head_complete() const { return final_head_; }  // the final (non-1xx) head is complete
  bool complete() const { return done_; }
  // The connection may carry another request after this response.
  bool keep_alive() const { return keep_alive_; }
  std::error_code error() const { return err_; }
  client_response take() { return std::move(res_); }

 private:
  static client_parser& self(llhttp_t* p) { return *static_cast<client_parser*>(p->data); }

  int fail(errc e) {
    err_ = make_error_code(e);
    return HPE_USER;
  }
  int count_head(std::size_t n) {
    std::size_t& c = headers_done_ ? trailer_bytes_ : head_bytes_;
    c += n;
    return c > o_->max_response_head ? fail(errc::response_too_large) : 0;
  }
  void finish_message(bool keep_alive) {
    keep_alive_ = keep_alive;
    done_ = true;
  }

  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_message_begin = [](llhttp_t* p) -> int {
        auto& s = self(p);
        s.res_ = client_response{};
        s.headers_done_ = false;
        s.interim_ = false;
        s.in_field_ = false;
        s.head_bytes_ = 16;  // "HTTP/1.1 200 " + CRLF
        s.trailer_bytes_ = 0;
        s.discarded_ = 0;
        return 0;
      };
      st.on_status = [](llhttp_t* p, const char*, std::size_t n) -> int { return self(p).count_head(n); };
      st.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) -> int {
        auto& s = self(p);
        if (int r = s.count_head(n + (s.in_field_ ? 0 : 4))) return r;  // +4: ": " and CRLF
        if (s.headers_done_) return 0;                                  // trailers: counted, not kept
        if (!s.in_field_) {
          s.res_.headers.emplace_back();
          s.in_field_ = true;
        }
        s.res_.headers.back().first.append(at, n);
        return 0;
      };
      st.on_header_field_complete = [](llhttp_t* p) -> int {
        auto& s = self(p);
        s.in_field_ = false;
        if (s.headers_done_) return 0;
        auto& name = s.res_.headers.back().first;
        if (name.empty() || !std::all_of(name.begin(), name.end(), client_is_tchar))
          return s.fail(errc::bad_response);
        return 0;
      };
      st.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) -> int {
        auto& s = self(p);
        if (int r = s.count_head(n)) return r;
        if (!s.headers_done_) s.res_.headers.back().second.append(at, n);
        return 0;
      };
      st.on_header_value_complete = [](llhttp_t* p) -> int {
        auto& s = self(p);
        if (s.headers_done_) return 0;
        auto& v = s.res_.headers.back().second;
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
        return 0;
      };
      st.on_headers_complete = [](llhttp_t* p) -> int { return self(p).headers_complete(); };
      st.on_body = [](llhttp_t* p, const char* at, std::size_t n) -> int {
        auto& s = self(p);
        std::size_t room = s.o_->max_response_body - std::min(s.o_->max_response_body, s.res_.body.size());
        std::size_t keep = std::min(room, n);
        s.res_.body.append(at, keep);
        if (keep < n) {
          s.res_.body_truncated = true;
          s.discarded_ += n - keep;
          if (s.discarded_ > s.drain_limit_) {
            s.overflow_ = true;
            return HPE_USER;
          }
        }
        return 0;
      };
      st.on_message_complete = [](llhttp_t* p) -> int {
        auto& s = self(p);
        if (s.interim_) return 0;  // a 1xx: the final response follows on the same connection
        s.finish_message(llhttp_should_keep_alive(p) != 0);
        return HPE_PAUSED;
      };
      return st;
    }();
    return s;
  }

  int headers_complete() {
    headers_done_ = true;
    if (llhttp_get_http_major(&p_) != 1) return fail(errc::bad_response);
    unsigned status = p_.status_code;
    if (status < 100 || status > 599) return fail(errc::bad_response);
    if (status == 101) return fail(errc::bad_response);  // crier never asks to switch protocols
    if (status < 200) {
      if (++interims_ > max_interim) return fail(errc::bad_response);
      interim_ = true;
      return 1;  // no body; the next message is parsed on
    }
    final_head_ = true;
    res_.status = status;
    const bool has_length = (p_.flags & F_CONTENT_LENGTH) != 0 && (p_.flags & F_CHUNKED) == 0;
    drain_limit_ = o_->max_response_drain;
    if (head_request_ || status == 204 || status == 304) return 1;
    if (has_length) {
      res_.body.reserve(
          static_cast<std::size_t>(std::min<std::uint64_t>(p_.content_length, o_->max_response_body)));
      // Known in advance to need more draining than allowed: stop at max_response_body instead.
      if (p_.content_length > std::uint64_t(o_->max_response_body) + o_->max_response_drain) drain_limit_ = 0;
    }
    return 0;
  }

  llhttp_t p_;
  const client_options* o_;
  client_response res_;
  std::error_code err_;
  std::size_t head_bytes_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::size_t discarded_ = 0;
  std::size_t drain_limit_ = 0;
  unsigned interims_ = 0;
  bool head_request_;
  bool started_ = false;
  bool headers_done_ = false;
  bool final_head_ = false;
  bool interim_ = false;
  bool in_field_ = false;
  bool done_ = false;
  bool failed_ = false;
  bool overflow_ = false;
  bool keep_alive_ = false;
};

}  // namespace crier::http::detail
