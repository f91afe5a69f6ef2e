// crier_grpc_client: subscribe to a crier hub over gRPC (crier_stream.proto), print one JSON line
// per item, and (with --resume) reconnect from where it stopped: since = the server's
// crier-cursor trailer, or the ids it received itself when the connection broke.
//
//   crier_grpc_client --target 127.0.0.1:50051 --topic 'prices/*' [--since 0] [--resume]
//   crier_grpc_client --target 127.0.0.1:50051 --publish prices/AAPL '{"bid":189.5}'
//
// Output (stdout, one JSON object per line):
//   {"type":"subscribed","cursor":"..."}                     the stream is live (initial metadata)
//   {"type":"message","topic":..,"id":..,"seq":N,"event":..,"payload":..}
//   {"type":"gap","topic":..,"reason":..,"after":..,"next":..,"missed":N}
//   {"type":"end","code":N,"status":"RESOURCE_EXHAUSTED","message":..,"cursor":..}
//   {"type":"published","id":".."}
#include "crier_stream.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace pb = crier::grpc_stream::v1;

void usage(std::FILE* out) {
  std::fputs(
      "usage: crier_grpc_client --target HOST:PORT --topic T [--topic T2 ...] [options]\n"
      "       crier_grpc_client --target HOST:PORT --publish TOPIC PAYLOAD [--event E]\n"
      "  --since C          resume cursor: \"\" (new only, default), 0 (all held), EPOCH:SEQ, topic=ID,...\n"
      "  --policy P         disconnect, drop_oldest, conflate (default: the server's)\n"
      "  --count N          exit after N messages (default 0: until the stream ends)\n"
      "  --resume           reconnect after the stream ends (not after INVALID_ARGUMENT), resuming\n"
      "  --read-delay-ms MS sleep this long before each read (a slow consumer)\n"
      "  --start-delay-ms MS after subscribing, sleep this long before the first read\n"
      "  --no-bdp-probe     keep gRPC's flow-control window at its initial 64 KiB, so the server\n"
      "                     feels a slow read sooner (gRPC otherwise grows it to several MiB)\n"
      "  --help             this text\n",
      out);
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c == '\n') out += "\\n";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string_view status_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    default: return "OTHER";
  }
}

std::string metadata(const std::multimap<grpc::string_ref, grpc::string_ref>& md, std::string_view key) {
  auto it = md.find(grpc::string_ref(key.data(), key.size()));
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::string target = "127.0.0.1:50051";
  pb::SubscribeRequest req;
  std::string publish_topic, publish_payload, publish_event;
  bool publish = false, resume = false, no_bdp = false;
  std::uint64_t count = 0;
  long read_delay_ms = 0, start_delay_ms = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "crier_grpc_client: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    auto num = [&](auto& out) {
      std::string_view v = value();
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      if (ec != std::errc{} || p != v.data() + v.size()) {
        std::fprintf(stderr, "crier_grpc_client: bad number %s\n", argv[i]);
        std::exit(2);
      }
    };
    if (a == "--help" || a == "-h") return usage(stdout), 0;
    if (a == "--target") target = value();
    else if (a == "--topic") req.add_topics(value());
    else if (a == "--since") req.set_since(value());
    else if (a == "--policy") {
      std::string_view p = value();
      if (p == "disconnect") req.set_policy(pb::DISCONNECT);
      else if (p == "drop_oldest") req.set_policy(pb::DROP_OLDEST);
      else if (p == "conflate") req.set_policy(pb::CONFLATE);
      else return std::fprintf(stderr, "crier_grpc_client: unknown policy\n"), 2;
    } else if (a == "--count") num(count);
    else if (a == "--resume") resume = true;
    else if (a == "--no-bdp-probe") no_bdp = true;
    else if (a == "--read-delay-ms") num(read_delay_ms);
    else if (a == "--start-delay-ms") num(start_delay_ms);
    else if (a == "--publish") {
      publish = true;
      publish_topic = value();
      publish_payload = value();
    } else if (a == "--event") publish_event = value();
    else return std::fprintf(stderr, "crier_grpc_client: unknown option %s\n", argv[i]), usage(stderr), 2;
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);  // crier has no small payload limit; neither does its client
  if (no_bdp) args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  auto stub = pb::Crier::NewStub(channel);

  if (publish) {
    pb::PublishRequest p;
    p.set_topic(publish_topic);
    p.set_payload(publish_payload);
    p.set_event(publish_event);
    pb::PublishReply r;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto s = stub->Publish(&ctx, p, &r);
    if (!s.ok()) {
      std::printf("{\"type\":\"end\",\"code\":%d,\"status\":\"%s\",\"message\":%s}\n", static_cast<int>(s.error_code()),
                  std::string(status_name(s.error_code())).c_str(), json_string(s.error_message()).c_str());
      return 1;
    }
    std::printf("{\"type\":\"published\",\"id\":%s}\n", json_string(r.id()).c_str());
    return 0;
  }
  if (req.topics().empty()) return std::fprintf(stderr, "crier_grpc_client: give --topic or --publish\n"), usage(stderr), 2;

  // Per topic, the last id received (or the end of a gap): the cursor if the server's
  // trailer does not come (connection lost).
  std::map<std::string, std::string> own;
  auto own_cursor = [&] {
    std::string s;
    for (auto& [t, id] : own) s += (s.empty() ? "" : ",") + t + "=" + id;
    return s;
  };
  std::uint64_t received = 0;
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext ctx;
    auto reader = stub->Subscribe(&ctx, req);
    reader->WaitForInitialMetadata();
    auto start = metadata(ctx.GetServerInitialMetadata(), "crier-cursor");
    std::printf("{\"type\":\"subscribed\",\"cursor\":%s}\n", json_string(start).c_str());
    // Where each topic started ("topic=id,..."): a topic missing from it had no history then.
    for (std::size_t pos = 0; pos < start.size();) {
      auto comma = std::min(start.find(',', pos), start.size());
      auto item = start.substr(pos, comma - pos);
      auto eq = item.rfind('=');
      if (eq != std::string::npos && !own.count(item.substr(0, eq))) own[item.substr(0, eq)] = item.substr(eq + 1);
      pos = comma + 1;
    }
    std::fflush(stdout);
    if (start_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(start_delay_ms));
    pb::Message m;
    bool enough = false;
    for (;;) {
      if (read_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(read_delay_ms));
      if (!reader->Read(&m)) break;
      if (m.has_gap()) {
        auto& g = m.gap();
        std::printf("{\"type\":\"gap\",\"topic\":%s,\"reason\":%s,\"after\":%s,\"next\":%s,\"missed\":%llu}\n",
                    json_string(m.topic()).c_str(), json_string(g.reason()).c_str(), json_string(g.after()).c_str(),
                    json_string(g.next()).c_str(), static_cast<unsigned long long>(g.missed()));
        // The next id is what comes next: the client "has" everything before it.
        auto colon = g.next().find(':');
        std::uint64_t seq = 0;
        if (colon != std::string::npos) std::from_chars(g.next().data() + colon + 1, g.next().data() + g.next().size(), seq);
        if (seq > 0) own[m.topic()] = g.next().substr(0, colon + 1) + std::to_string(seq - 1);
      } else {
        std::printf("{\"type\":\"message\",\"topic\":%s,\"id\":%s,\"seq\":%llu,\"event\":%s,\"payload\":%s}\n",
                    json_string(m.topic()).c_str(), json_string(m.id()).c_str(), static_cast<unsigned long long>(m.seq()),
                    json_string(m.event()).c_str(), json_string(m.payload()).c_str());
        own[m.topic()] = m.id();
        if (count && ++received >= count) {
          enough = true;
          break;
        }
      }
      std::fflush(stdout);
    }
    if (enough) {
      ctx.TryCancel();
      reader->Finish();
      std::fflush(stdout);
      return 0;
    }
    auto s = reader->Finish();
    auto cursor = metadata(ctx.GetServerTrailingMetadata(), "crier-cursor");
    std::printf("{\"type\":\"end\",\"code\":%d,\"status\":\"%s\",\"message\":%s,\"cursor\":%s}\n",
                static_cast<int>(s.error_code()), std::string(status_name(s.error_code())).c_str(),
                json_string(s.error_message()).c_str(), json_string(cursor).c_str());
    std::fflush(stdout);
    if (!resume || s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) return s.ok() ? 0 : 1;
    // Resume: the server's cursor when it sent one, else what we saw and where we started;
    // a topic in neither had no history when we subscribed, so all it holds now is new: "0".
    if (cursor.empty()) cursor = own_cursor();
    req.set_since(cursor.empty() ? "0" : cursor);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100 * (attempt + 1), 2000)));
  }
}
