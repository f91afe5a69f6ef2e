// permessage-deflate (RFC 7692): negotiation, compression and bounded decompression.
#include <zlib.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>

#include "crier/detail/ws/deflate.hpp"

using namespace crier::detail::ws;

namespace {
std::optional<deflate_agreement> nego(std::string_view h, std::string& resp, deflate_options o = {}) {
  resp = "stale";  // must be overwritten or cleared
  return negotiate_deflate(h, o, resp);
}

bool declined(std::string_view h) {
  std::string resp;
  return !nego(h, resp) && resp.empty();
}

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s += static_cast<char>(c);
  return s;
}

std::string random_bytes(std::size_t n, unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string repetitive(std::size_t n) {
  std::string s;
  while (s.size() < n) s += "{\"topic\":\"prices/AAPL\",\"bid\":187.25,\"ask\":187.27},";
  s.resize(n);
  return s;
}

// Inflates one message with a plain zlib stream, independent of crier's inflater.
std::string zlib_inflate(std::string payload, int bits = 15) {
  payload += bytes({0, 0, 0xff, 0xff});
  z_stream z{};
  REQUIRE(inflateInit2(&z, -bits) == Z_OK);
  std::string out(payload.size() * 4 + 1024, '\0');
  for (;;) {
    z.next_in = reinterpret_cast<Bytef*>(payload.data());
    z.avail_in = static_cast<uInt>(payload.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    int rc = inflate(&z, Z_SYNC_FLUSH);
    REQUIRE((rc == Z_OK || rc == Z_BUF_ERROR));
    if (z.avail_out != 0) break;
    out.assign(out.size() * 2, '\0');
    inflateReset(&z);
  }
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

// A client-side compressor with context takeover (plain zlib): sync flush, tail stripped.
struct zlib_client {
  z_stream z{};
  explicit zlib_client(int bits = 15) {
    REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  }
  ~zlib_client() { deflateEnd(&z); }
  std::string compress(std::string in, int flush = Z_SYNC_FLUSH) {
    std::string out(in.size() + 1024, '\0');
    z.next_in = reinterpret_cast<Bytef*>(in.data());
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    int rc = deflate(&z, flush);
    REQUIRE((rc == Z_OK || rc == Z_STREAM_END));
    REQUIRE(z.avail_out != 0);
    out.resize(out.size() - z.avail_out);
    if (flush == Z_SYNC_FLUSH) {
      REQUIRE(out.substr(out.size() - 4) == bytes({0, 0, 0xff, 0xff}));
      out.resize(out.size() - 4);
    }
    return out;
  }
};

// Feeds a whole message to the inflater and finishes it.
inflate_status inflate_all(inflater& inf, std::string_view payload, std::string& out) {
  auto st = inf.feed(payload, out);
  return st == inflate_status::ok ? inf.finish(out) : st;
}

std::string round_trip(std::string_view in, int bits = 15) {
  deflater d(bits);
  inflater inf(bits);
  std::string out;
  REQUIRE(inflate_all(inf, d.compress(in), out) == inflate_status::ok);
  return out;
}
}  // namespace

TEST_CASE("deflate: negotiation of a plain offer", "[deflate]") {
  std::string r;
  auto a = nego("permessage-deflate", r);
  REQUIRE(a);
  CHECK(a->server_max_window_bits == 15);
  CHECK(a->client_max_window_bits == 15);
  CHECK(a->client_no_context_takeover);
  CHECK(r == "permessage-deflate; server_no_context_takeover; client_no_context_takeover");

  deflate_options keep;
  keep.client_no_context_takeover = false;
  a = nego("permessage-deflate", r, keep);
  REQUIRE(a);
  CHECK_FALSE(a->client_no_context_takeover);
  CHECK(r == "permessage-deflate; server_no_context_takeover");
  // the client's own client_no_context_takeover is echoed, which makes it binding
  a = nego("permessage-deflate; client_no_context_takeover; server_no_context_takeover", r, keep);
  REQUIRE(a);
  CHECK(a->client_no_context_takeover);
  CHECK(r == "permessage-deflate; server_no_context_takeover; client_no_context_takeover");

  deflate_options off;
  off.enabled = false;
  CHECK_FALSE(nego("permessage-deflate", r, off));
  CHECK(r.empty());
}

TEST_CASE("deflate: window bits negotiation", "[deflate]") {
  std::string r;
  // client_max_window_bits without a value: supported, nothing to say at default options
  auto a = nego("permessage-deflate; client_max_window_bits", r);
  REQUIRE(a);
  CHECK(a->client_max_window_bits == 15);
  CHECK(r == "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  // ... but the server may now limit the client
  deflate_options small;
  small.client_max_window_bits = 10;
  small.server_max_window_bits = 11;
  a = nego("permessage-deflate; client_max_window_bits", r, small);
  REQUIRE(a);
  CHECK(a->client_max_window_bits == 10);
  CHECK(a->server_max_window_bits == 11);
  CHECK(r ==
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=11; "
        "client_max_window_bits=10");
  // without client_max_window_bits in the offer the client cannot be limited and the
  // response must not name it
  a = nego("permessage-deflate", r, small);
  REQUIRE(a);
  CHECK(a->client_max_window_bits == 15);
  CHECK(r.find("client_max_window_bits") == std::string::npos);
  // values: min of the offer and the options; an offered value is always answered
  a = nego("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12", r);
  REQUIRE(a);
  CHECK(a->server_max_window_bits == 10);
  CHECK(a->client_max_window_bits == 12);
  CHECK(r ==
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; "
        "client_max_window_bits=12");
  a = nego("permessage-deflate; server_max_window_bits=15; client_max_window_bits=15", r, small);
  REQUIRE(a);
  CHECK(a->server_max_window_bits == 11);
  CHECK(a->client_max_window_bits == 10);
  a = nego("permessage-deflate; server_max_window_bits=9; client_max_window_bits=8", r, small);
  REQUIRE(a);
  CHECK(a->server_max_window_bits == 9);
  CHECK(a->client_max_window_bits == 8);
  CHECK(r.ends_with("server_max_window_bits=9; client_max_window_bits=8"));
  // options asking for 8 on the server side: zlib cannot, 9 is used
  deflate_options eight;
  eight.server_max_window_bits = 8;
  a = nego("permessage-deflate", r, eight);
  REQUIRE(a);
  CHECK(a->server_max_window_bits == 9);
}

TEST_CASE("deflate: declined offers fall through to the next one", "[deflate]") {
  std::string r;
  // server_max_window_bits=8 cannot be honoured by zlib's raw deflate
  CHECK(declined("permessage-deflate; server_max_window_bits=8"));
  auto a =
      nego("permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=12", r);
  REQUIRE(a);
  CHECK(a->server_max_window_bits == 12);
  // unknown, duplicate
  CHECK(declined("permessage-deflate; foo"));
  CHECK(declined("permessage-deflate; foo=1"));
  CHECK(declined("permessage-deflate; server_no_context_takeover; server_no_context_takeover"));
  CHECK(declined("permessage-deflate; client_max_window_bits; client_max_window_bits=10"));
  CHECK(declined("permessage-deflate; server_max_window_bits=10; Server_Max_Window_Bits=10"));
  a = nego("permessage-deflate; foo, permessage-deflate; client_max_window_bits=9", r);
  REQUIRE(a);
  CHECK(a->client_max_window_bits == 9);
  // invalid values
  for (const char* bad : {"permessage-deflate; server_max_window_bits=16",
                          "permessage-deflate; server_max_window_bits=7",
                          "permessage-deflate; server_max_window_bits=08",
                          "permessage-deflate; server_max_window_bits=010",
                          "permessage-deflate; server_max_window_bits",
                          "permessage-deflate; server_max_window_bits=",
                          "permessage-deflate; server_max_window_bits=-9",
                          "permessage-deflate; client_max_window_bits=abc",
                          "permessage-deflate; client_max_window_bits=\"\"",
                          "permessage-deflate; client_max_window_bits=\"1 0\"",
                          "permessage-deflate; client_max_window_bits=\"10",
                          "permessage-deflate; server_no_context_takeover=1",
                          "permessage-deflate; client_no_context_takeover=\"\"",
                          "permessage-deflate;",
                          "permessage-deflate;;",
                          "permessage-deflate client_max_window_bits",
                          "permessage-deflate; =10",
                          "; permessage-deflate",
                          "\"permessage-deflate\"",
                          "permessage-deflate; client_max_window_bits=1 0",
                          "",
                          " , ,"}) {
    INFO(bad);
    CHECK(declined(bad));
  }
  // other extensions are skipped; so are malformed offers, even with commas in quotes
  a = nego(
      "x-webkit-deflate-frame, foo; bar=\"a,b\"; baz, permessage-deflate; client_max_window_bits=\"1,0\", "
      "permessage-deflate; server_max_window_bits=11",
      r);
  REQUIRE(a);
  CHECK(a->server_max_window_bits == 11);
}

TEST_CASE("deflate: offer syntax", "[deflate]") {
  std::string r;
  // quoted values, escapes included
  auto a = nego("permessage-deflate; client_max_window_bits=\"10\"; server_max_window_bits=\"1\\3\"", r);
  REQUIRE(a);
  CHECK(a->client_max_window_bits == 10);
  CHECK(a->server_max_window_bits == 13);
  // several header lines joined with ", "; the first acceptable offer wins
  a = nego("foo, permessage-deflate; server_max_window_bits=10, permessage-deflate", r);
  REQUIRE(a);
  CHECK(a->server_max_window_bits == 10);
  // case-insensitive names, whitespace and empty list elements tolerated
  a = nego(" ,, PerMessage-Deflate ;\tClient_Max_Window_Bits = 9 ; SERVER_NO_CONTEXT_TAKEOVER  ,", r);
  REQUIRE(a);
  CHECK(a->client_max_window_bits == 9);
  CHECK(r.ends_with("; client_max_window_bits=9"));
  // no acceptable offer at all
  CHECK(declined("x-webkit-deflate-frame, permessage-deflate; foo, permessage-foo"));
}

TEST_CASE("deflate: round trips", "[deflate]") {
  CHECK(round_trip("").empty());
  CHECK(round_trip("Hello") == "Hello");
  auto rnd = random_bytes(1 << 20);
  CHECK(round_trip(rnd) == rnd);
  auto rep = repetitive(1 << 20);
  deflater d;
  auto c = d.compress(rep);
  CHECK(c.size() < rep.size() / 50);
  CHECK(round_trip(rep) == rep);
  for (int bits = 9; bits <= 15; ++bits) {
    INFO(bits);
    CHECK(round_trip(rep.substr(0, 100000), bits) == rep.substr(0, 100000));
  }
  for (int level : {0, 1, 9}) {
    deflater dl(15, 8, level);
    inflater inf;
    std::string out;
    CHECK(inflate_all(inf, dl.compress(rep.substr(0, 5000)), out) == inflate_status::ok);
    CHECK(out == rep.substr(0, 5000));
  }
  // the same deflater serves message after message, each independent of the last
  CHECK(d.compress(rep) == c);
  CHECK(d.compress("x") == deflater().compress("x"));
}

TEST_CASE("deflate: a message split into pieces at every position", "[deflate]") {
  std::string msg = "Hello, Hello, Hello world! " + repetitive(300);
  auto c = deflater().compress(msg);
  inflater inf;  // reused across messages
  for (std::size_t cut = 0; cut <= c.size(); ++cut) {
    INFO(cut);
    std::string out;
    REQUIRE(inf.feed(std::string_view(c).substr(0, cut), out) == inflate_status::ok);
    REQUIRE(inf.feed(std::string_view(c).substr(cut), out) == inflate_status::ok);
    REQUIRE(inf.finish(out) == inflate_status::ok);
    CHECK(out == msg);
  }
  std::string out;  // one byte at a time
  for (char ch : c) REQUIRE(inf.feed(std::string_view(&ch, 1), out) == inflate_status::ok);
  REQUIRE(inf.finish(out) == inflate_status::ok);
  CHECK(out == msg);
}

TEST_CASE("deflate: output format and an independent inflater", "[deflate]") {
  const auto tail = bytes({0, 0, 0xff, 0xff});
  for (std::string in : {std::string(), std::string("Hello"), repetitive(70000), random_bytes(70000, 7)}) {
    auto c = deflater().compress(in);
    REQUIRE(c.size() >= 1);
    CHECK((c.size() < 4 || c.substr(c.size() - 4) != tail));
    CHECK(zlib_inflate(c) == in);
    CHECK(deflate_message(in, 15, 8, 6) == c);
  }
  CHECK(deflater().compress("") == bytes({0}));  // an empty stored block, minus its tail
  // append form
  std::string out = "hdr";
  deflater().compress("Hello", out);
  CHECK(out.substr(0, 3) == "hdr");
  CHECK(zlib_inflate(out.substr(3)) == "Hello");
  // the per-thread cache keeps working across more configs than it holds
  for (int i = 0; i < 3; ++i)
    for (int bits = 9; bits <= 15; ++bits)
      CHECK(zlib_inflate(deflate_message("Hello Hello Hello", bits, 8, 6), bits) == "Hello Hello Hello");
}

TEST_CASE("deflate: RFC 7692 section 7.2.3 examples", "[deflate]") {
  inflater inf(15, false);  // context takeover, needed by the second example
  std::string out;
  // 7.2.3.1 a message compressed with one fixed-Huffman block
  CHECK(inflate_all(inf, bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), out) == inflate_status::ok);
  CHECK(out == "Hello");
  // 7.2.3.2 the same message again, referring back to the first one's window
  out.clear();
  CHECK(inflate_all(inf, bytes({0xf2, 0x00, 0x11, 0x00, 0x00}), out) == inflate_status::ok);
  CHECK(out == "Hello");
  // 7.2.3.3 a stored (uncompressed) block
  out.clear();
  CHECK(inflate_all(inf, bytes({0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}), out) ==
        inflate_status::ok);
  CHECK(out == "Hello");
  // 7.2.3.4 a block with BFINAL set, followed by an empty stored block's header
  inflater fresh;
  out.clear();
  CHECK(inflate_all(fresh, bytes({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}), out) ==
        inflate_status::ok);
  CHECK(out == "Hello");
  // 7.2.3.5 two blocks in one message
  out.clear();
  CHECK(inflate_all(fresh,
                    bytes({0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00}),
                    out) == inflate_status::ok);
  CHECK(out == "Hello");
  // a sender that ended with Z_FINISH and nothing after it is tolerated
  zlib_client fin;
  out.clear();
  CHECK(inflate_all(fresh, fin.compress("Hello Hello", Z_FINISH), out) == inflate_status::ok);
  CHECK(out == "Hello Hello");
  // an empty payload is an empty message
  out.clear();
  CHECK(inflate_all(fresh, "", out) == inflate_status::ok);
  CHECK(out.empty());
  CHECK(inflate_all(fresh, bytes({0x00}), out) == inflate_status::ok);
  CHECK(out.empty());
}

TEST_CASE("deflate: context takeover on and off", "[deflate]") {
  const std::string m1 = "The quick brown fox jumps over the lazy dog; " + repetitive(200);
  zlib_client client;
  auto c1 = client.compress(m1);
  auto c2 = client.compress(m1);  // refers back to m1
  CHECK(c2.size() < c1.size() / 4);

  inflater keep(15, false);
  std::string out;
  REQUIRE(inflate_all(keep, c1, out) == inflate_status::ok);
  CHECK(keep.holds_state());
  out.clear();
  REQUIRE(inflate_all(keep, c2, out) == inflate_status::ok);
  CHECK(out == m1);

  inflater reset(15, true);
  out.clear();
  REQUIRE(inflate_all(reset, c1, out) == inflate_status::ok);
  CHECK_FALSE(reset.holds_state());  // an idle connection holds no zlib state
  out.clear();
  CHECK(inflate_all(reset, c2, out) == inflate_status::bad_data);
  // and works again for the next message
  out.clear();
  REQUIRE(inflate_all(reset, c1, out) == inflate_status::ok);
  CHECK(out == m1);
}

TEST_CASE("deflate: a client agreed to an 8-bit window", "[deflate]") {
  // zlib (and so most clients) compresses with 9 bits when asked for 8; the inflater must
  // still accept that stream
  std::string msg;
  for (int i = 0; i < 400; ++i) msg += static_cast<char>('a' + (i * 7) % 26);
  msg += msg;
  zlib_client client(9);
  auto c = client.compress(msg);
  inflater inf(8);
  std::string out;
  REQUIRE(inflate_all(inf, c, out) == inflate_status::ok);
  CHECK(out == msg);
}

TEST_CASE("deflate: limits and bad data", "[deflate]") {
  // zip bomb: 64 MiB of zeros is about 64 KiB compressed
  auto bomb = deflater().compress(std::string(std::size_t{64} << 20, '\0'));
  CHECK(bomb.size() < (std::size_t{1} << 17));
  const std::size_t max = std::size_t{16} << 20;
  {
    inflater inf(15, true, max);
    std::string out;
    CHECK(inf.feed(bomb, out) == inflate_status::too_big);
    CHECK(out.size() <= max + inflater::chunk);
  }
  {  // fed in pieces: stops at the piece that crosses the limit
    inflater inf(15, true, max);
    std::string out;
    inflate_status st = inflate_status::ok;
    std::size_t pieces = 0;
    for (std::size_t i = 0; i < bomb.size() && st == inflate_status::ok; i += 1024, ++pieces)
      st = inf.feed(std::string_view(bomb).substr(i, 1024), out);
    CHECK(st == inflate_status::too_big);
    CHECK(out.size() <= max + inflater::chunk);
    CHECK(pieces < bomb.size() / 1024);
  }
  {  // exactly the limit is fine, one byte more is not
    auto c = deflater().compress(std::string(1000, 'z'));
    inflater at(15, false, 1000), over(15, false, 999);
    std::string out;
    CHECK(inflate_all(at, c, out) == inflate_status::ok);
    CHECK(out.size() == 1000);
    out.clear();
    CHECK(inflate_all(over, c, out) == inflate_status::too_big);
    CHECK(out.size() <= 1000);
  }
  {  // extreme limits
    auto c = deflater().compress(repetitive(100000));
    inflater unlimited(15, true, SIZE_MAX), zero(15, true, 0);
    std::string out;
    CHECK(inflate_all(unlimited, c, out) == inflate_status::ok);
    CHECK(out == repetitive(100000));
    out.clear();
    CHECK(inflate_all(zero, deflater().compress(""), out) == inflate_status::ok);
    CHECK(inflate_all(zero, c, out) == inflate_status::too_big);
    CHECK(out.size() <= 1);
  }
  {  // the limit is per message, not per connection
    auto c = deflater().compress(std::string(600, 'z'));
    inflater inf(15, false, 1000);
    std::string out;
    for (int i = 0; i < 5; ++i) CHECK(inflate_all(inf, c, out) == inflate_status::ok);
    CHECK(out.size() == 3000);
  }
  // corrupt data: an invalid block type, a bad stored length, a distance before the start
  for (const auto& bad : {bytes({0xff, 0xff, 0xff, 0xff}), bytes({0x00, 0x05, 0x00, 0x00, 0x00}),
                          bytes({0xf2, 0x00, 0x11, 0x00, 0x00})}) {
    inflater inf;
    std::string out;
    CHECK(inflate_all(inf, bad, out) == inflate_status::bad_data);
    out.clear();  // usable again afterwards
    CHECK(inflate_all(inf, deflater().compress("ok"), out) == inflate_status::ok);
    CHECK(out == "ok");
  }
  {  // a truncated message does not end on a block boundary
    auto c = deflater().compress(random_bytes(5000, 3));
    inflater inf;
    std::string out;
    CHECK(inflate_all(inf, std::string_view(c).substr(0, c.size() / 2), out) == inflate_status::bad_data);
  }
}

TEST_CASE("deflate: deflater and inflater are movable", "[deflate]") {
  deflater d;
  auto c = d.compress("Hello Hello");
  deflater d2 = std::move(d);
  CHECK(d2.compress("Hello Hello") == c);
  inflater i;
  std::string out;
  REQUIRE(i.feed(c, out) == inflate_status::ok);
  inflater i2 = std::move(i);  // mid-message: the zlib stream moves with it
  REQUIRE(i2.finish(out) == inflate_status::ok);
  CHECK(out == "Hello Hello");
  static_assert(!std::is_copy_constructible_v<deflater> && !std::is_copy_constructible_v<inflater>);
}
