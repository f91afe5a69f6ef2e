// Long-poll and poll: one JSON answer per request.
//
//   GET /topics/a?since=<cursor>&wait=<s>   long-poll: answers at once when something after
//                                           the cursor exists, else waits up to s seconds
//   GET /topics/a?since=<cursor>            poll: answers at once
// Answer: 200 {"messages":[<envelope>...],"cursor":"<resume cursor>"} where gap notices
// appear in order among the messages; 204 with a `Crier-Cursor` header when the wait ended
// empty. Without `since`, a long-poll waits for the next message published after it
// arrived, and a poll returns everything the history holds. `cursor` goes into the next
// request's `since`.
#pragma once

#include <crier/core/envelope.hpp>
#include <crier/core/hub.hpp>
#include <crier/http/exchange.hpp>

#include <asio/steady_timer.hpp>

#include <memory>

namespace crier {

template <class Executor>
class longpoll_session final : public subscriber, public std::enable_shared_from_this<longpoll_session<Executor>> {
 public:
  using hub_type = basic_hub<Executor>;
  using done_fn = std::function<void(longpoll_session*)>;

  longpoll_session(std::shared_ptr<http::exchange> ex, bool multi_topic, std::size_t max_bytes,
                   std::vector<std::pair<std::string, std::string>> extra_headers, done_fn done)
      : ex_(std::move(ex)),
        multi_(multi_topic),
        max_bytes_(max_bytes),
        extra_(std::move(extra_headers)),
        done_(std::move(done)) {}

  // Subscribes; answers now if anything is there or `wait` is zero, else waits.
  bool start(hub_type& hub, const subscribe_request& req, std::chrono::milliseconds wait, std::error_code& ec) {
    sub_ = hub.subscribe(req, *this, ec);
    if (ec) return false;
    if (sub_->has_items() || wait.count() == 0) {
      answer();
      return true;
    }
    timer_.emplace(hub.get_executor(), wait);
    std::weak_ptr<longpoll_session> weak = this->shared_from_this();
    timer_->async_wait([weak](std::error_code ec) {
      if (auto self = weak.lock(); self && !ec) self->answer();
    });
    ex_->on_close([weak](std::error_code) {
      if (auto self = weak.lock()) self->answer();  // shutdown: answer now; peer gone: answer is dropped
    });
    return true;
  }

  void on_ready() override { answer(); }
  // The server is going away: close without answering.
  void abandon() {
    done_ = nullptr;
    if (timer_) timer_->cancel();
    sub_.reset();
    if (auto ex = std::move(ex_)) ex->close();
  }

 private:
  void answer() {
    if (!ex_) return;
    auto ex = std::move(ex_);
    if (timer_) timer_->cancel();
    auto& s = sub_.state();
    std::string body = R"({"messages":[)";
    bool any = false;
    while (body.size() < max_bytes_) {
      auto it = s.next();
      if (!it) break;
      if (any) body += ',';
      any = true;
      if (it.gap) append_envelope(body, *it.gap);
      else append_envelope(body, *it.msg);
    }
    std::string cursor = position();
    sub_.reset();
    http::response r;
    if (!any) {
      r.status = 204;
    } else {
      body += R"(],"cursor":)";
      detail::append_json_string(body, cursor);
      body += '}';
      r = http::response::json(200, std::move(body));
    }
    r.set("Crier-Cursor", std::move(cursor));
    r.set("Cache-Control", "no-store");
    r.headers.insert(r.headers.end(), extra_.begin(), extra_.end());
    ex->respond(std::move(r));
    if (auto done = std::move(done_)) done(this);
  }

  std::string position() const {
    auto& s = sub_.state();
    if (multi_) {
      // Nothing seen on any topic yet: "0" is exact, since none had history at the start.
      auto list = s.cursor_list();
      return list.empty() ? "0" : list;
    }
    auto id = s.delivered(first_topic());
    return id.to_string();
  }
  const std::string& first_topic() const { return topic_; }

 public:
  std::string topic_;  // the single topic, for the cursor of single-topic requests

 private:
  std::shared_ptr<http::exchange> ex_;
  bool multi_;
  std::size_t max_bytes_;
  std::vector<std::pair<std::string, std::string>> extra_;  // CORS
  done_fn done_;
  typename hub_type::subscription sub_;
  std::optional<asio::steady_timer> timer_;
};

}  // namespace crier
