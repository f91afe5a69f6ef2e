// A webhook receiver behind NAT: it asks a crier hub for a public URL (the relay) and answers
// the requests sent there over its own outbound connection. Point a webhook at the URL it prints.
//   relay_receiver http://127.0.0.1:8080                  # prints "url <public URL>", then one line per request
//   relay_receiver http://127.0.0.1:8080 --count 3        # exits after answering 3 requests
//   relay_receiver HUB --token T --secret S               # keeps the URL of an earlier run
#include <crier/relay_client.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: relay_receiver HUB_URL [--count N] [--token T --secret S]\n");
    return 2;
  }
  long count = -1;
  std::string token, secret;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--count") count = std::strtol(argv[i + 1], nullptr, 10);
    else if (a == "--token") token = argv[i + 1];
    else if (a == "--secret") secret = argv[i + 1];
  }

  asio::io_context io;
  crier::relay_client relay{io.get_executor(), argv[1]};
  if (!token.empty()) relay.resume_with(token, secret);
  long answered = 0;
  relay.start(
      [&](const crier::relay_client::request& r, crier::relay_client::respond_fn respond) {
        std::string event;
        for (auto& [n, v] : r.headers)
          if (n == "crier-event" || n == "webhook-id") event += " " + n + "=" + v;
        std::printf("request %s %s %zu bytes%s: %.*s\n", r.method.c_str(), r.path.c_str(), r.body.size(),
                    event.c_str(), static_cast<int>(std::min<std::size_t>(r.body.size(), 200)), r.body.data());
        std::fflush(stdout);
        respond({.status = 200, .headers = {{"content-type", "application/json"}}, .body = R"({"received":true})"});
        if (count >= 0 && ++answered >= count) relay.stop_when_answered();
      },
      [&](std::error_code ec, const std::string& url) {
        if (ec) std::fprintf(stderr, "relay: %s (retrying)\n", ec.message().c_str());
        else std::printf("url %s\ntoken %s\nsecret %s\n", url.c_str(), relay.token().c_str(), relay.secret().c_str());
        std::fflush(stdout);
      });
  io.run();
}
