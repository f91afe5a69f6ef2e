// permessage-deflate (RFC 7692), I/O free: offer negotiation, one-message compression
// for the broadcast path and bounded decompression of what clients send.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>

namespace crier::detail::ws {

// WebSocket compression (permessage-deflate). The server always resets its compressor
// after every message (server_no_context_takeover), so a compressed message is built once
// and the same bytes go to every subscriber.
struct deflate_options {
  // Default true: offer to compress when the client asks for permessage-deflate.
  bool enabled = true;
  // Default 15 (32 KiB window): largest window the server compresses with, 9..15
  // (zlib cannot compress with 8; a lower value saves memory and compresses less).
  int server_max_window_bits = 15;
  // Default 15: largest window the server asks clients to compress with, 8..15. Only
  // applied when the client says it can be limited; otherwise clients may use 15.
  int client_max_window_bits = 15;
  // Default true: ask clients to start each message afresh, so the server keeps no
  // decompression state (about 40 KiB) for an idle connection. False compresses client
  // messages better.
  bool client_no_context_takeover = true;
  // Default 8: zlib memLevel, 1..9; higher is faster and uses more memory while compressing.
  int mem_level = 8;
  // Default 6: zlib level, 0 (store) .. 9 (smallest, slowest).
  int level = 6;
  // Default 64: messages shorter than this many bytes are sent uncompressed.
  std::size_t min_size = 64;
  // (Inflated client messages are bounded by websocket_options::max_message_bytes: over it,
  // 1009, however small the compressed frame was.)
};

// What both sides agreed; the server side is always no-context-takeover.
struct deflate_agreement {
  int server_max_window_bits;       // window the server's deflater uses (9..15)
  int client_max_window_bits;       // largest window the client may use (8..15)
  bool client_no_context_takeover;  // the client resets its context per message
};

namespace deflate_detail {
constexpr char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }
constexpr bool is_tchar(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
inline bool iequals(std::string_view a, std::string_view b) noexcept {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return lower(x) == lower(y); });
}

// Cursor over a Sec-WebSocket-Extensions value (RFC 6455 §9.1 grammar).
struct ext_cursor {
  std::string_view s;
  std::size_t i = 0;
  void skip_ows() noexcept {
    while (i < s.size() && is_ows(s[i])) ++i;
  }
  std::string_view token() noexcept {
    std::size_t b = i;
    while (i < s.size() && is_tchar(s[i])) ++i;
    return s.substr(b, i - b);
  }
  // A quoted-string, unescaped into out; false if unterminated.
  bool quoted(std::string& out) {
    for (++i; i < s.size(); ++i) {
      if (s[i] == '"') return ++i, true;
      if (s[i] == '\\' && ++i == s.size()) return false;
      out += s[i];
    }
    return false;
  }
  // After a bad offer: skip to the comma that ends it, not one inside a quoted string.
  void skip_offer() noexcept {
    bool in_quote = false;
    for (; i < s.size(); ++i) {
      if (in_quote && s[i] == '\\')
        ++i;
      else if (s[i] == '"')
        in_quote = !in_quote;
      else if (s[i] == ',' && !in_quote)
        return;
    }
  }
};

// A window-bits value: 8..15, decimal without leading zeros (RFC 7692 §7.1.2).
inline int window_bits_value(std::string_view v) noexcept {  // 0 if invalid
  if (v.size() == 1 && (v[0] == '8' || v[0] == '9')) return v[0] - '0';
  return v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5' ? 10 + (v[1] - '0') : 0;
}

struct offer {
  bool server_nct = false, client_nct = false, client_mwb = false;
  int server_mwb = 0, client_mwb_value = 0;  // 0: absent / no value
};

// Parses one offer's parameters (after its name); false if the offer must be declined.
inline bool parse_params(ext_cursor& c, offer& o) {
  bool seen[4] = {};
  for (;;) {
    c.skip_ows();
    if (c.i == c.s.size() || c.s[c.i] == ',') return true;
    if (c.s[c.i] != ';') return false;
    ++c.i;
    c.skip_ows();
    std::string_view name = c.token();
    if (name.empty()) return false;
    c.skip_ows();
    std::optional<std::string> value;
    if (c.i < c.s.size() && c.s[c.i] == '=') {
      ++c.i;
      c.skip_ows();
      value.emplace();
      if (c.i < c.s.size() && c.s[c.i] == '"') {
        if (!c.quoted(*value)) return false;
      } else {
        *value = c.token();
      }
      // A quoted value must still be a token (RFC 6455 §9.1); "" is no value at all.
      if (value->empty() || !std::all_of(value->begin(), value->end(), is_tchar)) return false;
    }
    static constexpr std::string_view known[4] = {"server_no_context_takeover", "client_no_context_takeover",
                                                  "server_max_window_bits", "client_max_window_bits"};
    int k = 0;
    while (k < 4 && !iequals(name, known[k])) ++k;
    if (k == 4 || seen[k]) return false;  // unknown or duplicate: decline (§5.1)
    seen[k] = true;
    if (k < 2) {
      if (value) return false;  // the no_context_takeover params take no value
      (k == 0 ? o.server_nct : o.client_nct) = true;
    } else if (k == 2) {
      if (!value || !(o.server_mwb = window_bits_value(*value))) return false;
    } else {
      o.client_mwb = true;
      if (value && !(o.client_mwb_value = window_bits_value(*value))) return false;
    }
  }
}
}  // namespace deflate_detail

// Picks the first acceptable permessage-deflate offer of a Sec-WebSocket-Extensions value
// (several header lines may have been joined with ", ") and writes the response value to
// `response_value`, or leaves it empty and returns nullopt when none is acceptable.
inline std::optional<deflate_agreement> negotiate_deflate(std::string_view header, const deflate_options& opt,
                                                          std::string& response_value) {
  using namespace deflate_detail;
  response_value.clear();
  if (!opt.enabled) return std::nullopt;
  const int server_cap = std::clamp(opt.server_max_window_bits, 9, 15);
  const int client_cap = std::clamp(opt.client_max_window_bits, 8, 15);
  ext_cursor c{header};
  while (c.i < c.s.size()) {
    c.skip_ows();
    if (c.i < c.s.size() && c.s[c.i] == ',') {  // empty list element
      ++c.i;
      continue;
    }
    std::string_view name = c.token();
    offer o;
    bool ok = !name.empty() && parse_params(c, o);
    if (!ok) c.skip_offer();
    if (c.i < c.s.size()) ++c.i;  // the comma
    if (!ok || !iequals(name, "permessage-deflate")) continue;
    // zlib's raw deflate refuses an 8-bit window, and answering with more than the
    // client's limit is not allowed (§7.1.2.1): this offer cannot be served.
    if (o.server_mwb == 8) continue;
    deflate_agreement a;
    a.server_max_window_bits = std::min(o.server_mwb ? o.server_mwb : 15, server_cap);
    // Without client_max_window_bits in the offer the server cannot limit the client (and
    // must not name the param, §7.1.2.2): the client may use 15.
    a.client_max_window_bits =
        o.client_mwb ? std::min(o.client_mwb_value ? o.client_mwb_value : 15, client_cap) : 15;
    // The client's client_no_context_takeover is only a hint; echoing it makes it binding.
    a.client_no_context_takeover = opt.client_no_context_takeover || o.client_nct;
    response_value = "permessage-deflate; server_no_context_takeover";
    if (a.client_no_context_takeover) response_value += "; client_no_context_takeover";
    if (o.server_mwb || a.server_max_window_bits < 15)
      response_value += "; server_max_window_bits=" + std::to_string(a.server_max_window_bits);
    if (o.client_mwb_value || a.client_max_window_bits < 15)
      response_value += "; client_max_window_bits=" + std::to_string(a.client_max_window_bits);
    return a;
  }
  return std::nullopt;
}

namespace deflate_detail {
// z_stream must not move once initialised (zlib keeps a back-pointer to it), so it lives
// on the heap; a null pointer means "no zlib state".
struct deflate_end {
  void operator()(z_stream* z) const noexcept { deflateEnd(z), delete z; }
};
struct inflate_end {
  void operator()(z_stream* z) const noexcept { inflateEnd(z), delete z; }
};
template <class End, class Init>
std::unique_ptr<z_stream, End> open_stream(Init init) {
  std::unique_ptr<z_stream, End> z(new z_stream{});
  if (int rc = init(z.get()); rc != Z_OK) {
    delete z.release();  // a failed init holds nothing to end
    if (rc == Z_MEM_ERROR) throw std::bad_alloc();
    throw std::runtime_error("zlib initialisation failed");
  }
  return z;
}
inline constexpr unsigned char sync_tail[4] = {0x00, 0x00, 0xff, 0xff};
}  // namespace deflate_detail

// Raw deflate, no context takeover: each message compresses on its own, so the output
// can be shared by every subscriber regardless of what each one received before.
class deflater {
 public:
  // window_bits 9..15 (zlib refuses raw 8), mem_level 1..9, level -1..9; clamped.
  explicit deflater(int window_bits = 15, int mem_level = 8, int level = 6) noexcept
      : bits_(std::clamp(window_bits, 9, 15)),
        mem_(std::clamp(mem_level, 1, 9)),
        level_(std::clamp(level, -1, 9)) {}

  // Appends the compressed payload of one message to out, without the 00 00 ff ff tail
  // of the sync flush (RFC 7692 §7.2.1).
  void compress(std::string_view in, std::string& out) {
    if (!z_)  // lazy: a deflater that never compresses costs no zlib state
      z_ = deflate_detail::open_stream<deflate_detail::deflate_end>(
          [&](z_stream* z) { return deflateInit2(z, level_, Z_DEFLATED, -bits_, mem_, Z_DEFAULT_STRATEGY); });
    const std::size_t start = out.size();
    std::size_t used = start;
    // Not deflateBound: that would leave a message-sized capacity behind every result.
    out.resize(start + in.size() / 2 + 256);
    std::size_t pos = 0;
    do {  // avail_in is 32-bit: feed very large inputs in slices
      std::size_t n = std::min<std::size_t>(in.size() - pos, std::size_t{1} << 30);
      z_->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + pos));
      z_->avail_in = static_cast<uInt>(n);
      pos += n;
      int flush = pos == in.size() ? Z_SYNC_FLUSH : Z_NO_FLUSH;
      do {
        if (out.size() - used < 64) out.resize(out.size() + std::max<std::size_t>(out.size() - start, 1024));
        std::size_t room = std::min<std::size_t>(out.size() - used, UINT_MAX);
        z_->next_out = reinterpret_cast<Bytef*>(out.data() + used);
        z_->avail_out = static_cast<uInt>(room);
        int rc = deflate(z_.get(), flush);
        if (rc != Z_OK && rc != Z_BUF_ERROR) throw std::runtime_error("deflate failed");
        used += room - z_->avail_out;
      } while (z_->avail_in != 0 || (flush == Z_SYNC_FLUSH && z_->avail_out == 0));
    } while (pos < in.size());
    out.resize(used);
    // A sync flush always ends with the empty stored block 00 00 ff ff.
    if (used - start >= 4 && std::string_view(out).substr(used - 4) == std::string_view("\0\0\xff\xff", 4))
      out.resize(used - 4);
    deflateReset(z_.get());  // keeps the memory, forgets the window
  }
  std::string compress(std::string_view in) {
    std::string out;
    compress(in, out);
    return out;
  }

 private:
  std::unique_ptr<z_stream, deflate_detail::deflate_end> z_;
  int bits_, mem_, level_;
};

// Compresses one message with a deflater kept per thread for each configuration (a few
// at most), so broadcasting does not set up a new zlib state per message.
inline std::string deflate_message(std::string_view in, int window_bits, int mem_level, int level) {
  struct slot {
    std::tuple<int, int, int> key;
    deflater d;
  };
  thread_local std::array<std::optional<slot>, 4> cache;
  thread_local std::size_t next_victim = 0;
  auto key = std::make_tuple(window_bits, mem_level, level);
  for (auto& s : cache)
    if (s && s->key == key) return s->d.compress(in);
  auto& s = cache[next_victim++ % cache.size()];  // evict round-robin
  s.emplace(slot{key, deflater(window_bits, mem_level, level)});
  return s->d.compress(in);
}

enum class inflate_status { ok, too_big, bad_data };

// Raw inflate of client messages, bounded by max_inflated bytes per message.
class inflater {
 public:
  static constexpr std::size_t chunk = 16 * 1024;  // output grows at most this much per step

  // window_bits: the agreed client_max_window_bits.
  explicit inflater(int window_bits = 15, bool no_context_takeover = true,
                    std::size_t max_inflated = std::size_t{16} << 20) noexcept
      // 8 is inflated with 9: zlib's deflate (in most clients) silently uses a 9-bit
      // window when asked for 8 (and recent zlib refuses raw 8), so a client that agreed to
      // 8 may still send 9-bit distances; a bigger inflate window accepts smaller ones.
      : bits_(std::clamp(window_bits, 9, 15)), reset_each_(no_context_takeover), max_(max_inflated) {}

  // Decompresses one piece (e.g. a frame's payload) of the current message, appending to out.
  inflate_status feed(std::string_view piece, std::string& out) {
    if (piece.empty()) return inflate_status::ok;
    fed_ = true;
    return run(reinterpret_cast<const unsigned char*>(piece.data()), piece.size(), out);
  }

  // Ends the message: feeds the 00 00 ff ff the sender removed (§7.2.2), checks that the
  // data ended on a block boundary (a truncated message is bad_data), and drops the zlib
  // state unless context takeover is on, so an idle connection holds none.
  inflate_status finish(std::string& out) {
    inflate_status st = inflate_status::ok;
    // An empty payload is taken as an empty message; a stream that just ended with BFINAL
    // (a sender using Z_FINISH) needs no tail.
    if (fed_ && !just_ended_) {
      st = run(deflate_detail::sync_tail, 4, out);
      if (st == inflate_status::ok && !(z_->data_type & 128)) st = inflate_status::bad_data;
    }
    return end_message(st, st != inflate_status::ok || reset_each_);  // an error ends the connection anyway
  }

  bool holds_state() const noexcept { return z_ != nullptr; }

 private:
  inflate_status run(const unsigned char* p, std::size_t n, std::string& out) {
    if (!z_)
      z_ = deflate_detail::open_stream<deflate_detail::inflate_end>(
          [&](z_stream* z) { return inflateInit2(z, -bits_); });
    for (;;) {
      if (z_->avail_in == 0 && n != 0) {  // avail_in is 32-bit: slice huge pieces
        std::size_t k = std::min<std::size_t>(n, std::size_t{1} << 30);
        z_->next_in = const_cast<Bytef*>(p);
        z_->avail_in = static_cast<uInt>(k);
        p += k, n -= k;
      }
      if (produced_ > max_) return end_message(inflate_status::too_big, true);
      // Never more than one byte past the limit: a zip bomb stops right there.
      std::size_t room = max_ - produced_ >= chunk ? chunk : max_ - produced_ + 1;
      std::size_t old = out.size();
      out.resize(old + room);
      z_->next_out = reinterpret_cast<Bytef*>(out.data() + old);
      z_->avail_out = static_cast<uInt>(room);
      int rc = inflate(z_.get(), Z_SYNC_FLUSH);
      std::size_t got = room - z_->avail_out;
      out.resize(old + got);
      produced_ += got;
      if (got != 0 || rc == Z_OK) just_ended_ = false;
      if (rc == Z_STREAM_END) {
        restart();
      } else if (rc == Z_MEM_ERROR) {
        throw std::bad_alloc();
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {  // Z_BUF_ERROR: no progress, see below
        return end_message(inflate_status::bad_data, true);
      }
      // Done when the input is used up and inflate stopped with room to spare (with a
      // full buffer, a long match may still be pending).
      if (z_->avail_in == 0 && n == 0 && z_->avail_out != 0) break;
    }
    return produced_ > max_ ? end_message(inflate_status::too_big, true) : inflate_status::ok;
  }

  // A block with BFINAL set ends zlib's stream, but the message may go on (RFC 7692
  // §7.2.3.4 appends an empty stored block after it) and later data may refer back to it:
  // start a new stream that keeps the window.
  void restart() {
    std::string dict(std::size_t{1} << bits_, '\0');
    uInt len = 0;
    inflateGetDictionary(z_.get(), reinterpret_cast<Bytef*>(dict.data()), &len);
    const Bytef* next = z_->next_in;
    uInt avail = z_->avail_in;
    inflateReset(z_.get());
    if (len != 0) inflateSetDictionary(z_.get(), reinterpret_cast<const Bytef*>(dict.data()), len);
    z_->next_in = const_cast<Bytef*>(next);
    z_->avail_in = avail;
    just_ended_ = avail == 0;
  }

  inflate_status end_message(inflate_status st, bool drop_state) {
    if (drop_state) z_.reset();
    produced_ = 0;
    fed_ = just_ended_ = false;
    return st;
  }

  std::unique_ptr<z_stream, deflate_detail::inflate_end> z_;
  int bits_;
  bool reset_each_;
  std::size_t max_;
  std::size_t produced_ = 0;  // bytes inflated in the current message
  bool fed_ = false;          // the current message had compressed bytes
  bool just_ended_ = false;   // the last thing inflated was a BFINAL block's end
};

}  // namespace crier::detail::ws
