// Incremental, I/O-free parser for client-to-server WebSocket frames (RFC 6455 §5).
//
// Usage: the connection hands its read buffer to next() repeatedly; each call consumes some
// bytes and returns at most one event. Data payload is unmasked in place and returned as a
// view into the caller's buffer (so it is copied at most once, by whoever keeps it); partial
// headers and control payloads (<= 125 bytes) are buffered inside the parser, so the input
// may be split anywhere. Data payload is delivered in pieces as it arrives: a message is
// complete when an event has `message_end` set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>

#include "crier/detail/ws/protocol.hpp"
#include "crier/detail/utf8.hpp"

namespace crier::detail::ws {

struct parser_options {
  // Largest message, summed over all its fragments (payload bytes on the wire). For
  // compressed messages this bounds the compressed size only: the inflater must bound the
  // inflated size itself.
  std::size_t max_message_size = std::numeric_limits<std::size_t>::max();
  // permessage-deflate negotiated: RSV1 is then allowed on the first frame of a data message.
  bool permessage_deflate = false;
};

struct frame_event {
  enum class kind : std::uint8_t {
    need_more,  // every byte given was consumed; call again with more input
    data,       // a piece of a text/binary message's payload
    ping,
    pong,
    close,
    error,      // fail the connection: send Close(close_code) and stop reading
  };
  kind type = kind::need_more;
  std::size_t consumed = 0;  // input bytes used by this call (always all of them for need_more)

  // data: the message's opcode (text or binary, also for continuation frames).
  opcode op = opcode::continuation;
  bool message_begin = false;  // first piece of a message
  bool frame_end = false;      // last piece of the current frame
  bool message_end = false;    // last piece of the message (frame_end of a FIN frame)
  bool compressed = false;     // the message had RSV1 set (permessage-deflate)

  // data: unmasked view into the input buffer. ping/pong: the payload (view into the parser,
  // valid until the next call). close: the reason.
  std::string_view payload;

  // close: the received code (close_code::no_status for an empty payload).
  // error: the code to close with (1002, 1007 or 1009); `payload` is then a static reason.
  std::uint16_t close_code = 0;
};

class frame_parser {
 public:
  explicit frame_parser(parser_options opts = {}) noexcept : opts_(opts) {}

  // Parses from data[0, size), unmasking data payload in place. Returns one event.
  // After an error event, every further call returns the same error, consuming nothing.
  frame_event next(char* data, std::size_t size) noexcept {
    frame_event ev;
    if (error_code_ != 0) return error_event();
    std::size_t pos = 0;
    if (state_ == state::header) {
      pos = take_header(data, size);
      if (error_code_ != 0) return error_event();
      if (state_ == state::header) {  // still incomplete: everything was consumed
        ev.consumed = pos;
        return ev;
      }
      // A zero-length frame is finished by its header alone.
      if (remaining_ == 0) return finish_empty_frame(pos);
    }
    std::size_t n = take(remaining_, size - pos);
    if (state_ == state::control_payload) {
      unmask(data + pos, n);
      std::memcpy(ctrl_buf_ + ctrl_len_, data + pos, n);
      ctrl_len_ += n;
      remaining_ -= n;
      pos += n;
      if (remaining_ == 0) {
        state_ = state::header;
        return control_event(pos);
      }
      ev.consumed = pos;
      return ev;
    }
    if (n == 0) {
      ev.consumed = pos;
      return ev;
    }
    return data_piece(data + pos, n, pos + n);
  }

  // True between the first and the last frame of a fragmented data message.
  bool in_message() const noexcept { return in_message_; }
  const parser_options& options() const noexcept { return opts_; }

 private:
  enum class state : std::uint8_t { header, control_payload, data_payload };

  static std::size_t take(std::uint64_t want, std::size_t have) noexcept {
    return want < have ? static_cast<std::size_t>(want) : have;
  }

  frame_event fail(std::uint16_t code, const char* reason) noexcept {
    error_code_ = code;
    error_reason_ = reason;
    return error_event();
  }

  frame_event error_event() const noexcept {
    frame_event ev;
    ev.type = frame_event::kind::error;
    ev.close_code = error_code_;
    ev.payload = error_reason_;
    return ev;
  }

  // Copies header bytes into hdr_ until the header is complete, validating as early as
  // possible (after the first 2 bytes) so a bad frame fails before its length is read.
  std::size_t take_header(const char* data, std::size_t size) noexcept {
    std::size_t pos = 0;
    while (pos < size) {
      std::size_t want = hdr_need_ - hdr_len_;
      std::size_t n = take(want, size - pos);
      std::memcpy(hdr_ + hdr_len_, data + pos, n);
      hdr_len_ += n;
      pos += n;
      if (hdr_len_ < hdr_need_) break;
      if (hdr_need_ == 2) {
        if (!check_first_two()) return pos;
        auto len7 = static_cast<unsigned char>(hdr_[1]) & 0x7F;
        hdr_need_ = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
        continue;
      }
      finish_header();
      return pos;
    }
    return pos;
  }

  bool check_first_two() noexcept {
    auto b0 = static_cast<unsigned char>(hdr_[0]);
    auto b1 = static_cast<unsigned char>(hdr_[1]);
    bool fin = b0 & 0x80, rsv1 = b0 & 0x40;
    std::uint8_t op = b0 & 0x0F;
    if (b0 & 0x30) return fail(close_code::protocol_error, "reserved bits set"), false;
    if (!is_known_opcode(op)) return fail(close_code::protocol_error, "unknown opcode"), false;
    // §5.1: a server MUST close the connection upon receiving an unmasked frame.
    if (!(b1 & 0x80)) return fail(close_code::protocol_error, "unmasked client frame"), false;
    auto o = static_cast<opcode>(op);
    if (is_control(o)) {
      if (rsv1) return fail(close_code::protocol_error, "RSV1 on a control frame"), false;
      if (!fin) return fail(close_code::protocol_error, "fragmented control frame"), false;
      if ((b1 & 0x7F) > max_control_payload)
        return fail(close_code::protocol_error, "control frame too long"), false;
    } else if (o == opcode::continuation) {
      if (!in_message_) return fail(close_code::protocol_error, "continuation without message"), false;
      // permessage-deflate (RFC 7692 §6): RSV1 marks the whole message, set on its first frame.
      if (rsv1) return fail(close_code::protocol_error, "RSV1 on a continuation frame"), false;
    } else {
      if (in_message_) return fail(close_code::protocol_error, "data frame inside a fragmented message"), false;
      if (rsv1 && !opts_.permessage_deflate)
        return fail(close_code::protocol_error, "RSV1 without permessage-deflate"), false;
    }
    return true;
  }

  void finish_header() noexcept {
    auto b0 = static_cast<unsigned char>(hdr_[0]);
    auto b1 = static_cast<unsigned char>(hdr_[1]);
    auto u = reinterpret_cast<const unsigned char*>(hdr_);
    std::uint64_t len = b1 & 0x7F;
    std::size_t mask_at = 2;
    // Non-minimal length encodings are legal per RFC 6455 and accepted as is.
    if (len == 126) {
      len = static_cast<std::uint64_t>(u[2]) << 8 | u[3];
      mask_at = 4;
    } else if (len == 127) {
      len = 0;
      for (int i = 2; i < 10; ++i) len = len << 8 | u[i];
      mask_at = 10;
      if (len >> 63) return void(fail(close_code::protocol_error, "64-bit length with MSB set"));
    }
    std::memcpy(mask_, hdr_ + mask_at, 4);
    mask_pos_ = 0;
    hdr_len_ = 0;
    hdr_need_ = 2;
    remaining_ = len;
    frame_fin_ = b0 & 0x80;
    auto op = static_cast<opcode>(b0 & 0x0F);
    if (is_control(op)) {
      ctrl_op_ = op;
      ctrl_len_ = 0;
      state_ = state::control_payload;
      return;
    }
    if (op != opcode::continuation) {  // first frame of a message
      in_message_ = true;
      message_begin_ = true;
      msg_op_ = op;
      msg_size_ = 0;
      compressed_ = b0 & 0x40;
      utf8_.reset();
    }
    // Fail before reading the payload: counted over the whole fragmented message.
    if (len > opts_.max_message_size - msg_size_)
      return void(fail(close_code::message_too_big, "message too big"));
    msg_size_ += static_cast<std::size_t>(len);
    state_ = state::data_payload;
  }

  void unmask(char* p, std::size_t n) noexcept {
    std::size_t i = 0;
    // Word-at-a-time when the mask is aligned to position 0 (the usual case).
    if (mask_pos_ == 0 && n >= 8) {
      std::uint64_t m;
      unsigned char m8[8];
      for (int k = 0; k < 8; ++k) m8[k] = static_cast<unsigned char>(mask_[k & 3]);
      std::memcpy(&m, m8, 8);
      for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        w ^= m;
        std::memcpy(p + i, &w, 8);
      }
    }
    for (; i < n; ++i) p[i] = static_cast<char>(p[i] ^ mask_[(mask_pos_ + i) & 3]);
    mask_pos_ = (mask_pos_ + n) & 3;
  }

  frame_event finish_empty_frame(std::size_t consumed) noexcept {
    if (state_ == state::control_payload) {
      state_ = state::header;
      return control_event(consumed);
    }
    return data_piece(nullptr, 0, consumed);
  }

  frame_event data_piece(char* p, std::size_t n, std::size_t consumed) noexcept {
    unmask(p, n);
    remaining_ -= n;
    frame_event ev;
    ev.type = frame_event::kind::data;
    ev.consumed = consumed;
    ev.op = msg_op_;
    ev.message_begin = message_begin_;
    ev.compressed = compressed_;
    ev.payload = std::string_view(p, n);
    ev.frame_end = remaining_ == 0;
    ev.message_end = ev.frame_end && frame_fin_;
    message_begin_ = false;
    // Compressed text can only be validated after inflating; the caller does that.
    if (msg_op_ == opcode::text && !compressed_) {
      if (!utf8_.feed(ev.payload)) return fail(close_code::invalid_payload, "invalid UTF-8 in text message");
      if (ev.message_end && !utf8_.complete())
        return fail(close_code::invalid_payload, "text message ends inside a UTF-8 sequence");
    }
    if (ev.frame_end) state_ = state::header;
    if (ev.message_end) in_message_ = false;
    return ev;
  }

  frame_event control_event(std::size_t consumed) noexcept {
    frame_event ev;
    ev.consumed = consumed;
    ev.op = ctrl_op_;
    ev.frame_end = ev.message_end = true;
    std::string_view body(ctrl_buf_, ctrl_len_);
    if (ctrl_op_ == opcode::ping) {
      ev.type = frame_event::kind::ping;
      ev.payload = body;
      return ev;
    }
    if (ctrl_op_ == opcode::pong) {
      ev.type = frame_event::kind::pong;
      ev.payload = body;
      return ev;
    }
    ev.type = frame_event::kind::close;
    if (body.empty()) {
      ev.close_code = close_code::no_status;
      return ev;
    }
    if (body.size() == 1) return fail(close_code::protocol_error, "close payload of 1 byte");
    auto u = reinterpret_cast<const unsigned char*>(body.data());
    ev.close_code = static_cast<std::uint16_t>(u[0] << 8 | u[1]);
    if (!close_code_valid(ev.close_code)) return fail(close_code::protocol_error, "invalid close code");
    ev.payload = body.substr(2);
    utf8_validator v;
    if (!v.feed(ev.payload) || !v.complete())
      return fail(close_code::invalid_payload, "invalid UTF-8 in close reason");
    return ev;
  }

  parser_options opts_;
  state state_ = state::header;
  char hdr_[14] = {};
  std::size_t hdr_len_ = 0, hdr_need_ = 2;
  char mask_[4] = {};
  std::size_t mask_pos_ = 0;
  std::uint64_t remaining_ = 0;  // payload bytes left in the current frame
  bool frame_fin_ = false;
  // current data message
  bool in_message_ = false, message_begin_ = false, compressed_ = false;
  opcode msg_op_ = opcode::continuation;
  std::size_t msg_size_ = 0;
  utf8_validator utf8_;
  // current control frame
  opcode ctrl_op_ = opcode::close;
  char ctrl_buf_[max_control_payload] = {};
  std::size_t ctrl_len_ = 0;
  // sticky error
  std::uint16_t error_code_ = 0;
  const char* error_reason_ = "";
};

}  // namespace crier::detail::ws
