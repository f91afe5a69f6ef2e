// Incremental, byte-at-a-time HTTP chunked decoding + SSE event parsing, and the payload marker format.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <system_error>

namespace sse_fanout {

// Parser state for one SSE response body (~72 bytes, no allocation). Only the
// start of each event's data is kept: enough for the "#<seq>:<t_ns>#" marker.
struct sse_parser {
  enum cst : uint8_t { c_size, c_ext, c_size_lf, c_data, c_data_cr, c_data_lf, c_end };
  enum lst : uint8_t { l_start, l_field, l_space, l_value, l_ignore };

  uint64_t chunk_left = 0;
  bool chunked = false;  // Transfer-Encoding: chunked (set from the response head)
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

  // Feeds response-body bytes. on_event(std::string_view data_start, bool has_id)
  // runs for every dispatched event that has a data field. Returns false on a
  // chunked-framing error; the rest of the input is then left unread.
  template <class OnEvent>
  bool feed_body(const char* p, size_t n, OnEvent&& on_event) {
    if (!chunked) { feed_sse(p, n, on_event); return true; }
    const char* end = p + n;
    while (p < end) {
      switch (cstate) {
        case c_size: {
          char c = *p++;
          int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
          if (d >= 0) { chunk_left = chunk_left * 16 + static_cast<uint64_t>(d); break; }
          if (c == '\r') { cstate = c_size_lf; break; }
          if (c == ';' || c == ' ' || c == '\t') { cstate = c_ext; break; }
          if (c == '\n') goto size_done;
          return false;
        }
        case c_ext:
          if (*p++ == '\n') goto size_done;
          break;
        case c_size_lf:
          if (*p++ != '\n') return false;
          goto size_done;
        case c_data: {
          size_t take = static_cast<size_t>(std::min<uint64_t>(chunk_left, static_cast<uint64_t>(end - p)));
          feed_sse(p, take, on_event);
          p += take;
          chunk_left -= take;
          if (chunk_left == 0) cstate = c_data_cr;
          break;
        }
        case c_data_cr: {
          char c = *p++;
          if (c == '\r') cstate = c_data_lf;
          else if (c == '\n') cstate = c_size;
          else return false;
          break;
        }
        case c_data_lf:
          if (*p++ != '\n') return false;
          cstate = c_size;
          break;
        case c_end:
          return true;  // last chunk seen: the server ended the stream
      }
      continue;
    size_done:
      if (chunk_left == 0) { cstate = c_end; continue; }
      cstate = c_data;
    }
    return true;
  }

  // Feeds de-chunked SSE text (lines ending in CR, LF or CRLF).
  template <class OnEvent>
  void feed_sse(const char* p, size_t n, OnEvent& on_event) {
    for (const char* end = p + n; p < end; ++p) {
      char c = *p;
      if (last_cr) {
        last_cr = false;
        if (c == '\n') continue;
      }
      if (c == '\r' || c == '\n') {
        end_line(on_event);
        last_cr = (c == '\r');
        continue;
      }
      switch (lstate) {
        case l_start:
          if (c == ':') { lstate = l_ignore; break; }
          field[0] = c;
          flen = 1;
          lstate = l_field;
          break;
        case l_field:
          if (c == ':') {
            fkind = (flen == 4 && std::memcmp(field, "data", 4) == 0) ? 1
                  : (flen == 2 && std::memcmp(field, "id", 2) == 0)   ? 2 : 0;
            if (fkind == 1) {
              if (has_data && mklen < sizeof mk) mk[mklen++] = '\n';
              has_data = true;
            } else if (fkind == 2) {
              has_id = true;
            }
            lstate = l_space;
          } else if (flen < sizeof field) {
            field[flen++] = c;
          } else {
            flen = 0xff;  // too long to be a field we care about
          }
          break;
        case l_space:
          lstate = l_value;
          if (c == ' ') break;
          [[fallthrough]];
        case l_value:
          if (fkind == 1 && mklen < sizeof mk) mk[mklen++] = c;
          break;
        case l_ignore:
          break;
      }
    }
  }

 private:
  template <class OnEvent>
  void end_line(OnEvent& on_event) {
    switch (lstate) {
      case l_start:
        dispatch(on_event);
        break;
      case l_field:  // a field with no colon: empty value
        if (flen == 4 && std::memcmp(field, "data", 4) == 0) {
          if (has_data && mklen < sizeof mk) mk[mklen++] = '\n';
          has_data = true;
        } else if (flen == 2 && std::memcmp(field, "id", 2) == 0) {
          has_id = true;
        }
        break;
      default:
        break;
    }
    lstate = l_start;
    fkind = 0;
    flen = 0;
  }

  template <class OnEvent>
  void dispatch(OnEvent& on_event) {
    if (!has_data) { has_id = false; return; }
    on_event(std::string_view(mk, mklen), has_id);
    has_data = has_id = false;
    mklen = 0;
  }
};

// Payload marker "#<seq>:<t_ns>#" at the start of an event's data; seq > 0.
inline bool parse_marker(std::string_view data, uint64_t& seq, int64_t& t) {
  const char* p = data.data();
  const char* e = p + data.size();
  if (p < e && *p == '#') {
    auto r1 = std::from_chars(p + 1, e, seq);
    if (r1.ec == std::errc() && r1.ptr < e && *r1.ptr == ':') {
      auto r2 = std::from_chars(r1.ptr + 1, e, t);
      return r2.ec == std::errc() && r2.ptr < e && *r2.ptr == '#' && seq > 0;
    }
  }
  return false;
}

}  // namespace sse_fanout
