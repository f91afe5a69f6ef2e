// A gRPC front door for a crier hub (README.md): each Subscribe stream is a crier subscriber,
// built on crier's public API only (crier::basic_hub::subscribe, crier::subscriber,
// subscription_state, message::frame with a slot from crier::allocate_format_slot()).
//
//   crier::hub hub{io};
//   grpc_stream::service svc{hub, {}};
//   grpc::ServerBuilder b;  b.RegisterService(&svc);  ...  auto server = b.BuildAndStart();
//   ...
//   svc.stop([&] { /* every stream has ended */ });  // and, on another thread, server->Shutdown()
//
// Two worlds, one rule each:
//   - gRPC's callback API owns the RPCs: its threads call the reactor's reactions (OnWriteDone,
//     OnCancel, OnDone). A reaction does nothing but post to the hub's strand.
//   - The hub's strand owns everything else: the subscription, the stream's state, the frame
//     cache on messages. on_ready(), the pull of the next item and StartWrite() run there.
// So the fan-out path takes no lock of ours: the hub marks the subscription ready, the strand
// pulls ONE item, encodes it (once per message, cached on it, shared by every stream) and hands
// it to gRPC without copying (a grpc::Slice holding a reference to the shared frame); the
// write's completion posts back to the strand, which pulls the next. One write in flight per
// stream: while gRPC's flow control holds a slow client's write, messages wait in the
// subscription's bounded queue, where the hub's overflow policy decides (disconnect with
// RESOURCE_EXHAUSTED, drop_oldest with a gap, conflate with a gap).
#pragma once

#include "crier_stream.grpc.pb.h"

#include <crier/core/format.hpp>
#include <crier/core/hub.hpp>

#include <asio/basic_waitable_timer.hpp>
#include <asio/post.hpp>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace grpc_stream {

namespace pb = crier::grpc_stream::v1;

struct stream_options {
  crier::overflow_policy default_policy = crier::overflow_policy::disconnect;  // for POLICY_DEFAULT
  std::optional<crier::queue_options> queue{};  // per-stream bounds (the policy is per subscribe);
                                                // default: the hub's queue options
  std::size_t max_topics = 64;                  // topics and patterns in one Subscribe
  std::chrono::milliseconds finish_timeout{10'000};  // a stream that ended with a write stuck in
                                                     // gRPC's flow control (the client stopped
                                                     // reading) is cancelled after this
};

// Counters, read on the hub's strand.
struct stream_stats {
  std::uint64_t streams_opened = 0;
  std::uint64_t refused = 0;               // bad request, or the hub refused the subscribe
  std::uint64_t overflow_disconnects = 0;  // ended RESOURCE_EXHAUSTED (policy disconnect)
  std::uint64_t overflow_gaps = 0;         // gap notices sent for drop_oldest
  std::uint64_t conflation_gaps = 0;       // gap notices sent for conflate ...
  std::uint64_t conflated_skipped = 0;     // ... and the seqs they reported skipped
  std::uint64_t cancelled = 0;             // the client went away (or the deadline passed)
  std::uint64_t finish_timeouts = 0;       // ended streams cancelled after finish_timeout
  std::uint64_t messages_written = 0;      // messages handed to gRPC (all streams)
};

namespace detail {

// One wire encoding, so one cache slot on every message: the serialized pb::Message, built on
// first use on the strand and shared by every stream after that.
inline std::size_t message_slot() {
  static const std::size_t slot = crier::allocate_format_slot();
  return slot;
}

inline std::string encode_message(const crier::message& m) {
  pb::Message out;
  out.set_topic(m.topic());
  out.set_id(m.id().to_string());
  out.set_seq(m.seq());
  out.set_payload(m.payload());
  if (!m.event().empty()) out.set_event(m.event());
  if (!m.content_type().empty()) out.set_content_type(m.content_type());
  return out.SerializeAsString();
}

inline std::string encode_gap(const std::string& topic, std::string_view reason, crier::message_id after,
                              crier::message_id next, std::uint64_t missed) {
  pb::Message out;
  out.set_topic(topic);
  auto* g = out.mutable_gap();
  g->set_reason(std::string(reason));
  g->set_after(after.to_string());
  g->set_next(next.to_string());
  g->set_missed(missed);
  return out.SerializeAsString();
}

// A grpc::ByteBuffer over a shared frame, without copying it: the slice keeps a reference to
// the frame and drops it (on whichever gRPC thread) when gRPC is done with the bytes.
inline grpc::ByteBuffer frame_buffer(crier::frame_ptr f) {
  auto* ref = new crier::frame_ptr(std::move(f));
  grpc::Slice s(const_cast<char*>((*ref)->data()), (*ref)->size(),
                [](void* p) { delete static_cast<crier::frame_ptr*>(p); }, ref);
  return grpc::ByteBuffer(&s, 1);
}

inline std::optional<crier::overflow_policy> to_policy(pb::Policy p, crier::overflow_policy dflt) {
  switch (p) {
    case pb::POLICY_DEFAULT: return dflt;
    case pb::DISCONNECT: return crier::overflow_policy::disconnect;
    case pb::DROP_OLDEST: return crier::overflow_policy::drop_oldest;
    case pb::CONFLATE: return crier::overflow_policy::conflate;
    default: return std::nullopt;
  }
}

template <class Executor>
class stream;

// Shared (by the service and every stream, which may outlive the service object while gRPC
// finishes them): the registry of live streams, options, counters. Strand only.
template <class Executor>
struct service_core {
  using hub_type = crier::basic_hub<Executor>;
  service_core(hub_type& h, stream_options o) : hub(h), strand(h.get_executor()), opts(std::move(o)) {}

  hub_type& hub;
  typename hub_type::executor_type strand;
  stream_options opts;
  stream_stats stats;
  std::unordered_map<stream<Executor>*, std::shared_ptr<stream<Executor>>> live;  // owns them until OnDone
  bool stopping = false;
  std::function<void()> on_drained;

  void erase(stream<Executor>* s) {
    live.erase(s);
    if (stopping && live.empty() && on_drained) asio::post(strand, std::exchange(on_drained, nullptr));
  }
};

// One Subscribe RPC: a gRPC write reactor on one side, a crier subscriber on the other.
template <class Executor>
class stream final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                     public crier::subscriber,
                     public std::enable_shared_from_this<stream<Executor>> {
 public:
  using core_type = service_core<Executor>;
  using strand_type = typename core_type::hub_type::executor_type;
  using timer_type = asio::basic_waitable_timer<std::chrono::steady_clock,
                                                asio::wait_traits<std::chrono::steady_clock>, strand_type>;

  // On a gRPC thread (the method handler): nothing but storing the request.
  stream(std::shared_ptr<core_type> core, grpc::CallbackServerContext* ctx, pb::SubscribeRequest req, bool parsed)
      : core_(std::move(core)), ctx_(ctx), req_(std::move(req)), parsed_(parsed), timer_(core_->strand) {}

  // On the strand, once the registry holds the stream: subscribe and start writing.
  void start() {
    if (!parsed_) return refuse(grpc::StatusCode::INVALID_ARGUMENT, "SubscribeRequest does not parse");
    if (core_->stopping) return finish({grpc::StatusCode::UNAVAILABLE, "server stopping"});
    if (req_.topics().empty() || static_cast<std::size_t>(req_.topics_size()) > core_->opts.max_topics)
      return refuse(grpc::StatusCode::INVALID_ARGUMENT, "1.." + std::to_string(core_->opts.max_topics) + " topics per Subscribe");
    auto policy = to_policy(req_.policy(), core_->opts.default_policy);
    if (!policy) return refuse(grpc::StatusCode::INVALID_ARGUMENT, "unknown policy " + std::to_string(req_.policy()));
    std::error_code ec;
    auto since = crier::cursor::parse(req_.since(), ec);
    if (ec) return refuse(grpc::StatusCode::INVALID_ARGUMENT, "since is not a resume cursor: " + req_.since().substr(0, 200));
    auto q = core_->opts.queue.value_or(core_->hub.options().queue);
    q.policy = *policy;
    crier::subscribe_request sr{.topics = {req_.topics().begin(), req_.topics().end()}, .since = std::move(since), .queue = q};
    sub_ = core_->hub.subscribe(sr, *this, ec);
    if (ec) {
      if (ec == crier::errc::hub_stopped) return finish({grpc::StatusCode::UNAVAILABLE, "server stopping"});
      return refuse(grpc::StatusCode::INVALID_ARGUMENT, ec.message());
    }
    ++core_->stats.streams_opened;
    // Where each topic starts, before anything is taken from the queue: the subscription's
    // delivered cursor ("topic=id,..."), also sent to the client as initial metadata, so it
    // knows the subscription is live and where it stands.
    auto start = sub_->cursor_list();
    auto parsed = crier::cursor::parse(start, ec);
    for (auto& [t, id] : parsed.topics) sent_[t] = id;
    ctx_->AddInitialMetadata("crier-cursor", start);
    StartSendInitialMetadata();
    pump();  // replayed history is queued already (the hub also wakes us, harmlessly)
  }

  // The hub: items queued, or the subscription ended. On the strand.
  void on_ready() override { pump(); }

  // Finishes with `s` (no more writes); trailing metadata "crier-cursor" = where to resume.
  void finish(grpc::Status s) {
    if (finished_) return;
    finished_ = true;
    sub_.reset();  // no more on_ready(); queued messages are released
    stash_.reset();
    ctx_->AddTrailingMetadata("crier-cursor", cursor());
    Finish(std::move(s));
    if (writing_) {  // the status goes out after the write in flight; a client that stopped reading never takes it
      timer_.expires_after(core_->opts.finish_timeout);
      timer_.async_wait([self = this->shared_from_this()](std::error_code ec) {
        if (ec || self->done_) return;
        ++self->core_->stats.finish_timeouts;
        self->ctx_->TryCancel();
      });
    }
  }

  // "topic=id,...": what this client has received (or been told it missed), per topic.
  std::string cursor() const {
    std::string s;
    for (auto& [t, id] : sent_) {
      if (id.epoch == 0) continue;
      if (!s.empty()) s += ',';
      s += t;
      s += '=';
      id.append_to(s);
    }
    return s;
  }

 private:
  // --- gRPC's threads: post and return ---------------------------------------------------
  void OnWriteDone(bool ok) override {
    asio::post(core_->strand, [self = this->shared_from_this(), ok] { self->written(ok); });
  }
  void OnCancel() override {
    asio::post(core_->strand, [self = this->shared_from_this()] {
      if (!self->finished_) ++self->core_->stats.cancelled;
      self->finish(grpc::Status::CANCELLED);
    });
  }
  void OnDone() override {
    // After every other reaction; gRPC is done with this object, ctx_ is gone.
    asio::post(core_->strand, [self = this->shared_from_this()] {
      self->done_ = true;
      self->sub_.reset();
      self->timer_.cancel();
      self->core_->erase(self.get());
    });
  }

  // --- the strand -------------------------------------------------------------------------
  void refuse(grpc::StatusCode code, std::string text) {
    ++core_->stats.refused;
    finish({code, std::move(text)});
  }

  void written(bool ok) {
    writing_ = false;
    out_.Clear();
    if (!ok) return finish(grpc::Status::CANCELLED);  // the stream broke; OnCancel / OnDone follow
    pump();
  }

  // One write in flight: pull the next item, hand it to gRPC.
  void pump() {
    if (finished_ || writing_ || !sub_) return;
    if (auto ec = sub_->error()) return ended(ec);
    crier::frame_ptr frame;
    if (stash_) {  // the message whose conflation gap went out first
      frame = take(std::exchange(stash_, nullptr));
    } else {
      auto it = sub_->next();
      if (!it) return;
      if (it.gap) {
        auto& g = *it.gap;
        if (g.reason == crier::gap_reason::overflow) ++core_->stats.overflow_gaps;
        sent_[g.topic] = g.next.seq ? crier::message_id{g.next.epoch, g.next.seq - 1} : g.next;
        frame = std::make_shared<const std::string>(encode_gap(g.topic, to_string(g.reason), g.after, g.next, g.missed));
      } else {
        const auto& m = *it.msg;
        auto& pos = sent_[m.topic()];
        // Same epoch (or a topic that starts at seq 1) and further on than the next seq:
        // conflation replaced the ones in between. Say which, then send the message.
        if ((pos.epoch == m.id().epoch || pos.epoch == 0) && m.seq() > pos.seq + 1) {
          crier::message_id after{m.id().epoch, pos.epoch == 0 ? 0 : pos.seq};
          auto missed = m.seq() - after.seq - 1;
          ++core_->stats.conflation_gaps;
          core_->stats.conflated_skipped += missed;
          pos = {m.id().epoch, m.seq() - 1};
          stash_ = std::move(it.msg);
          frame = std::make_shared<const std::string>(encode_gap(m.topic(), "conflated", after, stash_->id(), missed));
        } else {
          frame = take(std::move(it.msg));
        }
      }
    }
    out_ = frame_buffer(std::move(frame));
    writing_ = true;
    StartWrite(&out_);
  }

  crier::frame_ptr take(crier::message_ptr m) {
    sent_[m->topic()] = m->id();
    ++core_->stats.messages_written;
    return m->frame(message_slot(), encode_message);  // encoded once per message, shared
  }

  void ended(std::error_code ec) {
    if (ec == crier::errc::queue_overflow) {
      ++core_->stats.overflow_disconnects;
      return finish({grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "queue overflow: the subscriber fell too far behind; subscribe again with since = the "
                     "crier-cursor trailer (or the last ids received)"});
    }
    if (ec == crier::errc::hub_stopped) return finish({grpc::StatusCode::UNAVAILABLE, "server stopping"});
    finish({grpc::StatusCode::UNAVAILABLE, ec.message()});
  }

  std::shared_ptr<core_type> core_;
  grpc::CallbackServerContext* ctx_;  // valid until OnDone
  pb::SubscribeRequest req_;
  bool parsed_;
  typename core_type::hub_type::subscription sub_;
  std::unordered_map<std::string, crier::message_id> sent_;  // per topic: last id the client has
  crier::message_ptr stash_;                                 // next to write (after its gap)
  grpc::ByteBuffer out_;                                     // the write in flight
  timer_type timer_;
  bool writing_ = false;
  bool finished_ = false;
  bool done_ = false;
};

}  // namespace detail

// The Crier service: Subscribe is a raw method (it writes pre-serialized pb::Message bytes,
// encoded once per message), Publish a typed unary one.
template <class Executor = asio::any_io_executor>
class basic_service final
    : public pb::Crier::WithRawCallbackMethod_Subscribe<pb::Crier::WithCallbackMethod_Publish<pb::Crier::Service>> {
 public:
  using hub_type = crier::basic_hub<Executor>;

  basic_service(hub_type& hub, stream_options o = {})
      : hub_(hub), core_(std::make_shared<core_type>(hub, std::move(o))) {}
  basic_service(const basic_service&) = delete;
  basic_service& operator=(const basic_service&) = delete;

  // gRPC thread: parse, hand the stream to the strand, return it to gRPC.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Subscribe(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* request) override {
    pb::SubscribeRequest req;
    bool ok = parse(*request, req);
    auto s = std::make_shared<stream_type>(core_, ctx, std::move(req), ok);
    asio::post(core_->strand, [core = core_, s] {
      core->live.emplace(s.get(), s);
      s->start();
    });
    return s.get();
  }

  // gRPC thread: hub.publish() is safe from any thread.
  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* ctx, const pb::PublishRequest* req,
                                    pb::PublishReply* reply) override {
    auto r = hub_.publish(req->topic(), req->payload(), {.event = req->event(), .content_type = req->content_type()});
    grpc::Status status;
    if (r) reply->set_id(r.id.to_string());
    else if (r.error == crier::errc::hub_stopped) status = {grpc::StatusCode::UNAVAILABLE, r.error.message()};
    else if (r.error == crier::errc::payload_too_large) status = {grpc::StatusCode::RESOURCE_EXHAUSTED, r.error.message()};
    else status = {grpc::StatusCode::INVALID_ARGUMENT, r.error.message()};
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

  // Graceful, from any thread: every live stream (and any that arrives later) ends with
  // UNAVAILABLE "server stopping" and its crier-cursor trailer; done() runs on the strand once
  // gRPC has finished them all (OnDone). Call grpc::Server::Shutdown() meanwhile, off the
  // io_context's threads (it blocks until the RPCs are done, and they finish on the strand).
  void stop(std::function<void()> done = {}) {
    asio::dispatch(core_->strand, [core = core_, done = std::move(done)]() mutable {
      if (core->stopping) return;
      core->stopping = true;
      core->on_drained = std::move(done);
      std::vector<std::shared_ptr<stream_type>> all;
      for (auto& [p, s] : core->live) all.push_back(s);
      for (auto& s : all) s->finish({grpc::StatusCode::UNAVAILABLE, "server stopping"});
      if (core->live.empty() && core->on_drained) asio::post(core->strand, std::exchange(core->on_drained, nullptr));
    });
  }

  // On the strand.
  const stream_stats& stats() const noexcept { return core_->stats; }
  std::size_t stream_count() const noexcept { return core_->live.size(); }

 private:
  using core_type = detail::service_core<Executor>;
  using stream_type = detail::stream<Executor>;

  static bool parse(const grpc::ByteBuffer& b, pb::SubscribeRequest& out) {
    std::vector<grpc::Slice> slices;
    if (!b.Dump(&slices).ok()) return false;
    std::string bytes;
    for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    return out.ParseFromString(bytes);
  }

  hub_type& hub_;
  std::shared_ptr<core_type> core_;
};

using service = basic_service<>;

}  // namespace grpc_stream
