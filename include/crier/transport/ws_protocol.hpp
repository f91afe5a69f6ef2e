// The multiplexed protocol spoken on /ws (docs/protocol.md), without I/O: client commands in,
// server frames out.
//
// Text frames carry one JSON object each. Binary frames carry a payload behind a small header:
//   byte 0      format version, 1
//   bytes 1-2   n, big-endian: length of the JSON header that follows
//   n bytes     JSON header (the text form's object, without "data")
//   the rest    the payload, as is
#pragma once

#include <crier/core/envelope.hpp>
#include <crier/core/id.hpp>
#include <crier/detail/json.hpp>

#include <picojson.h>

#include <optional>
#include <string>
#include <string_view>

namespace crier::ws_protocol {

inline constexpr std::string_view subprotocol = "crier.v1";
inline constexpr unsigned char binary_version = 1;
inline constexpr std::size_t max_ref_bytes = 128;

enum class command_type { subscribe, unsubscribe, publish, ping };

struct command {
  command_type type = command_type::ping;
  std::string ref;    // the client's id for this command, as JSON text (string or number); may be empty
  std::string topic;  // subscribe/unsubscribe: topic or pattern; publish: topic
  std::string since;  // subscribe: resume position (empty = live only)
  std::string event;  // publish
  std::string content_type;  // publish
  std::string data;   // publish: the payload bytes
};

// Why a command was refused: a code for programs, a message for people.
struct command_error {
  std::string code;
  std::string message;
  std::string ref;                   // when the malformed command still had a usable ref
  std::optional<command_type> op{};  // when its type was known
  std::string topic{};               // when its topic was known
};

namespace detail {
inline std::string_view type_name(command_type t) noexcept {
  switch (t) {
    case command_type::subscribe: return "subscribe";
    case command_type::unsubscribe: return "unsubscribe";
    case command_type::publish: return "publish";
    case command_type::ping: return "ping";
  }
  return "";
}

// Reads the common fields of a command object (text frames and binary headers alike).
// An optional string field: false when present with another type.
inline bool read_string(const picojson::object& o, const char* name, std::string& out) {
  auto it = o.find(name);
  if (it == o.end() || it->second.is<picojson::null>()) return true;
  if (!it->second.is<std::string>()) return false;
  out = it->second.get<std::string>();
  return true;
}

inline std::optional<command_error> read_typed_fields(const picojson::object& o, command& c, bool binary);

inline std::optional<command_error> read_fields(const picojson::object& o, command& c, bool binary) {
  auto str = [&](const char* name, std::string& out) { return read_string(o, name, out); };
  if (auto it = o.find("ref"); it != o.end()) {
    if (!it->second.is<std::string>() && !it->second.is<double>())
      return command_error{"bad_request", "\"ref\" must be a string or a number", {}};
    c.ref = it->second.serialize();
    if (c.ref.size() > max_ref_bytes) {
      c.ref.clear();
      return command_error{"bad_request", "\"ref\" is longer than 128 bytes", {}};
    }
  }
  std::string type;
  if (!str("type", type)) return command_error{"bad_request", "\"type\" must be a string", c.ref};
  if (type == "subscribe") c.type = command_type::subscribe;
  else if (type == "unsubscribe") c.type = command_type::unsubscribe;
  else if (type == "publish") c.type = command_type::publish;
  else if (type == "ping") c.type = command_type::ping;
  else if (type.empty()) return command_error{"bad_request", "a command needs a \"type\"", c.ref};
  else return command_error{"unknown_type", "unknown command type \"" + type.substr(0, 64) + "\"", c.ref};
  auto e = read_typed_fields(o, c, binary);
  if (e) {
    e->op = c.type;
    e->topic = c.topic.size() <= 255 ? c.topic : std::string();
  }
  return e;
}

inline std::optional<command_error> read_typed_fields(const picojson::object& o, command& c, bool binary) {
  auto str = [&](const char* name, std::string& out) { return read_string(o, name, out); };
  if (binary && c.type != command_type::publish)
    return command_error{"bad_request", "binary frames carry publish commands only", c.ref};
  if (c.type == command_type::ping) return std::nullopt;
  if (!str("topic", c.topic) || c.topic.empty())
    return command_error{"bad_request", "\"topic\" (a string) is required", c.ref};
  if (c.type == command_type::subscribe) {
    // A position is a string ("0", "1f2e3d4c:7", "a=…,b=…"); the number 0 is taken as "0".
    auto it = o.find("since");
    if (it != o.end() && it->second.is<double>() && it->second.get<double>() == 0) c.since = "0";
    else if (!str("since", c.since))
      return command_error{"bad_request", "\"since\" must be a resume position (a string)", c.ref};
  }
  if (c.type == command_type::publish) {
    if (!str("event", c.event)) return command_error{"bad_request", "\"event\" must be a string", c.ref};
    if (!str("content_type", c.content_type))
      return command_error{"bad_request", "\"content_type\" must be a string", c.ref};
    if (!binary) {
      auto it = o.find("data");
      if (it == o.end()) return command_error{"bad_request", "publish needs \"data\"", c.ref};
      if (it->second.is<std::string>()) {
        c.data = it->second.get<std::string>();
      } else {  // any other JSON value is published as its JSON text
        c.data = it->second.serialize();
        if (c.content_type.empty()) c.content_type = "application/json";
      }
    }
  }
  return std::nullopt;
}

inline std::optional<command_error> parse_object(std::string_view json, picojson::value& v) {
  std::string err;
  picojson::parse(v, json.begin(), json.end(), &err);
  if (!err.empty()) return command_error{"bad_request", "invalid JSON: " + err.substr(0, 120), {}};
  if (!v.is<picojson::object>()) return command_error{"bad_request", "a command is a JSON object", {}};
  return std::nullopt;
}
}  // namespace detail

// A text frame: one JSON command.
inline std::optional<command_error> parse_text(std::string_view frame, command& out) {
  picojson::value v;
  if (auto e = detail::parse_object(frame, v)) return e;
  return detail::read_fields(v.get<picojson::object>(), out, false);
}

// A binary frame: header + JSON publish command + payload.
inline std::optional<command_error> parse_binary(std::string& frame, command& out) {
  auto u = reinterpret_cast<const unsigned char*>(frame.data());
  if (frame.size() < 3 || u[0] != binary_version)
    return command_error{"bad_request", "a binary frame starts with version 1 and a 2-byte header length", {}};
  std::size_t n = static_cast<std::size_t>(u[1]) << 8 | u[2];
  if (frame.size() < 3 + n) return command_error{"bad_request", "binary frame shorter than its header length", {}};
  picojson::value v;
  if (auto e = detail::parse_object(std::string_view(frame).substr(3, n), v)) return e;
  if (auto e = detail::read_fields(v.get<picojson::object>(), out, true)) return e;
  frame.erase(0, 3 + n);  // the payload stays in place of the frame: no copy of its bytes
  out.data = std::move(frame);
  if (out.content_type.empty()) out.content_type = "application/octet-stream";
  return std::nullopt;
}

// --- server to client --------------------------------------------------------------------

// {"type":"ack","ref":R,"op":"publish","topic":T,"id":I} (id: publish only)
inline std::string ack(command_type op, std::string_view ref, std::string_view topic, const message_id* id = nullptr) {
  std::string s = R"({"type":"ack")";
  if (!ref.empty()) (s += R"(,"ref":)") += ref;
  ((s += R"(,"op":")") += detail::type_name(op)) += '"';
  s += R"(,"topic":)";
  crier::detail::append_json_string(s, topic);
  if (id) {
    s += R"(,"id":")";
    id->append_to(s);
    s += '"';
  }
  s += '}';
  return s;
}

inline std::string pong(std::string_view ref) {
  std::string s = R"({"type":"pong")";
  if (!ref.empty()) (s += R"(,"ref":)") += ref;
  return s += '}';
}

// {"type":"error","ref":R,"op":"subscribe","topic":T,"code":C,"message":M}
inline std::string error(std::string_view ref, std::optional<command_type> op, std::string_view topic,
                         std::string_view code, std::string_view message) {
  std::string s = R"({"type":"error")";
  if (!ref.empty()) (s += R"(,"ref":)") += ref;
  if (op) ((s += R"(,"op":")") += detail::type_name(*op)) += '"';
  if (!topic.empty()) {
    s += R"(,"topic":)";
    crier::detail::append_json_string(s, topic);
  }
  (s += R"(,"code":)") += crier::detail::json_string(code);
  (s += R"(,"message":)") += crier::detail::json_string(message);
  return s += '}';
}

// A message's payload for a /ws frame: the JSON envelope (text), or for binary payloads the
// binary header + payload. Returns true for a text frame.
inline bool encode_message(const message& m, bool binary_payload, std::string& out) {
  if (!binary_payload) {
    append_envelope(out, m);
    return true;
  }
  std::string head;
  append_envelope_head(head, m);
  head += '}';
  out.reserve(3 + head.size() + m.payload().size());
  out += static_cast<char>(binary_version);
  out += static_cast<char>(head.size() >> 8);
  out += static_cast<char>(head.size() & 0xFF);
  out += head;
  out += m.payload();
  return false;
}

}  // namespace crier::ws_protocol
