// A consumer of crier as an outside project sees it: one include, link crier::crier.
// Built by tests/package/run.cmake against an installed crier (find_package) and against
// the source tree (add_subdirectory, FetchContent).
#include <llhttp.h>  // reachable through crier::crier -> crier::llhttp

#include <crier/crier.hpp>
#include <cstdio>
#include <cstring>
#include <string>

int main() {
  const std::string msg = crier::make_error_code(crier::errc::invalid_topic).message();
  if (msg.empty()) return 1;

  // The README's two objects, constructed (not served: nothing listens).
  asio::io_context io;
  crier::hub hub{io};
  crier::server server{hub, {.listen = ""}};
  auto published = hub.publish("prices/AAPL", R"({"bid":189.5})");
  if (!published) return 3;
  if (hub.publish("bad topic", "x")) return 4;
  io.poll();  // run the fan-out that is ready; a hub keeps its context busy, so no run()

  // llhttp must link, not only compile: parse one request with it.
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings);
  const char req[] = "GET /topics/a HTTP/1.1\r\nHost: x\r\n\r\n";
  if (llhttp_execute(&parser, req, std::strlen(req)) != HPE_OK) return 2;

  std::printf("crier consumer ok: %s\n", msg.c_str());
  return 0;
}
