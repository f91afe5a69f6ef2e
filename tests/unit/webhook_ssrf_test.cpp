// The SSRF guard: address classes at their boundaries, embedded IPv4, CIDR ranges, allow-lists.
#include <catch2/catch.hpp>

#include <functional>

#include "crier/webhook/ssrf.hpp"

namespace wh = crier::webhook;
using wh::address_class;
using wh::webhook_errc;

namespace {
asio::ip::address ip(const char* s) { return asio::ip::make_address(s); }

struct sample {
  const char* address;
  address_class expected;
};

void check_all(std::initializer_list<sample> samples) {
  for (auto& s : samples) {
    INFO(s.address << " expected " << wh::describe(s.expected));
    CHECK(wh::classify(ip(s.address)) == s.expected);
    CHECK(wh::is_public(ip(s.address)) == (s.expected == address_class::global));
  }
}
}  // namespace

TEST_CASE("ssrf: IPv4 classes, inside and just outside each boundary", "[webhook]") {
  using c = address_class;
  check_all({
      {"0.0.0.0", c::unspecified},       {"0.0.0.1", c::this_network},      {"0.255.255.255", c::this_network},
      {"1.0.0.0", c::global},            {"126.255.255.255", c::global},    {"127.0.0.0", c::loopback},
      {"127.0.0.1", c::loopback},        {"127.255.255.255", c::loopback},  {"128.0.0.0", c::global},
      {"9.255.255.255", c::global},      {"10.0.0.0", c::private_network},  {"10.255.255.255", c::private_network},
      {"11.0.0.0", c::global},           {"172.15.255.255", c::global},     {"172.16.0.0", c::private_network},
      {"172.31.255.255", c::private_network}, {"172.32.0.0", c::global},    {"192.167.255.255", c::global},
      {"192.168.0.0", c::private_network}, {"192.168.255.255", c::private_network}, {"192.169.0.0", c::global},
      {"100.63.255.255", c::global},     {"100.64.0.0", c::shared_address}, {"100.127.255.255", c::shared_address},
      {"100.128.0.0", c::global},        {"169.253.255.255", c::global},    {"169.254.0.0", c::link_local},
      {"169.254.169.254", c::link_local}, {"169.254.255.255", c::link_local}, {"169.255.0.0", c::global},
      {"191.255.255.255", c::global},    {"192.0.0.0", c::ietf_protocol},   {"192.0.0.255", c::ietf_protocol},
      {"192.0.1.0", c::global},          {"192.0.1.255", c::global},        {"192.0.2.0", c::documentation},
      {"192.0.2.255", c::documentation}, {"192.0.3.0", c::global},          {"198.51.99.255", c::global},
      {"198.51.100.0", c::documentation}, {"198.51.100.255", c::documentation}, {"198.51.101.0", c::global},
      {"203.0.112.255", c::global},      {"203.0.113.0", c::documentation}, {"203.0.113.255", c::documentation},
      {"203.0.114.0", c::global},        {"198.17.255.255", c::global},     {"198.18.0.0", c::benchmarking},
      {"198.19.255.255", c::benchmarking}, {"198.20.0.0", c::global},       {"192.88.98.255", c::global},
      {"192.88.99.0", c::relay_6to4},    {"192.88.99.255", c::relay_6to4},  {"192.88.100.0", c::global},
      {"223.255.255.255", c::global},    {"224.0.0.0", c::multicast},       {"239.255.255.255", c::multicast},
      {"240.0.0.0", c::reserved},        {"255.255.255.254", c::reserved},  {"255.255.255.255", c::broadcast},
      {"8.8.8.8", c::global},            {"1.1.1.1", c::global},            {"93.184.216.34", c::global},
  });
}

TEST_CASE("ssrf: IPv6 classes, inside and just outside each boundary", "[webhook]") {
  using c = address_class;
  check_all({
      {"::", c::unspecified},
      {"::1", c::loopback},
      {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::reserved},
      {"fe80::", c::link_local},
      {"fe80::1", c::link_local},
      {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::link_local},
      {"fec0::1", c::site_local},
      {"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::site_local},
      {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::reserved},
      {"fc00::", c::unique_local},
      {"fd12:3456:789a::1", c::unique_local},
      {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::unique_local},
      {"fe00::", c::reserved},
      {"ff00::", c::multicast},
      {"ff02::1", c::multicast},
      {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::multicast},
      {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", c::global},
      {"2001:db8::", c::documentation},
      {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", c::documentation},
      {"2001:db9::", c::global},
      {"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::global},
      {"3fff::1", c::documentation},
      {"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", c::documentation},
      {"3fff:1000::", c::global},
      {"2001::1", c::ietf_protocol},  // Teredo
      {"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", c::ietf_protocol},
      {"2001:200::", c::global},
      {"2001:2::1", c::benchmarking},
      {"2001:2:0:ffff:ffff:ffff:ffff:ffff", c::benchmarking},
      {"2001:2:1::", c::ietf_protocol},
      {"100::1", c::reserved},  // discard-only
      {"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::reserved},
      {"2000::", c::global},
      {"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::global},
      {"4000::", c::reserved},
      {"2606:4700:4700::1111", c::global},
      {"2001:4860:4860::8888", c::global},
  });
}

TEST_CASE("ssrf: IPv6 forms of IPv4 addresses are judged by the IPv4", "[webhook]") {
  using c = address_class;
  check_all({
      // mapped ::ffff:0:0/96
      {"::ffff:127.0.0.1", c::loopback},
      {"::ffff:10.1.2.3", c::private_network},
      {"::ffff:169.254.169.254", c::link_local},
      {"::ffff:100.64.0.1", c::shared_address},
      {"::ffff:0.0.0.0", c::unspecified},
      {"::ffff:255.255.255.255", c::broadcast},
      {"::ffff:224.0.0.1", c::multicast},
      {"::ffff:8.8.8.8", c::global},
      {"::fffe:127.0.0.1", c::reserved},  // just outside the mapped range
      {"::1:ffff:127.0.0.1", c::reserved},
      // compatible ::/96
      {"::127.0.0.1", c::loopback},
      {"::10.0.0.1", c::private_network},
      {"::0.0.0.2", c::this_network},
      {"::192.0.2.1", c::documentation},
      {"::8.8.8.8", c::global},
      {"::1:0:0", c::reserved},  // ::/8 but neither form
      // NAT64 64:ff9b::/96
      {"64:ff9b::7f00:1", c::loopback},
      {"64:ff9b::192.168.1.1", c::private_network},
      {"64:ff9b::169.254.169.254", c::link_local},
      {"64:ff9b::8.8.8.8", c::global},
      {"64:ff9b::1:7f00:1", c::reserved},  // just outside the /96
      {"64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", c::reserved},
      {"64:ff9b:1::a00:1", c::private_network},  // local-use NAT64
      // 6to4 2002::/16
      {"2002:7f00:1::1", c::loopback},
      {"2002:a00:1::", c::private_network},
      {"2002:c000:263::1", c::documentation},  // 192.0.2.99
      {"2002:a9fe:a9fe::", c::link_local},      // 169.254.169.254
      {"2002:808:808::1", c::global},
      {"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", c::global},
      {"2003::", c::global},
  });
}

TEST_CASE("ssrf: cidr parsing", "[webhook]") {
  std::error_code ec;
  auto r = wh::cidr::parse("127.0.0.0/8", ec);
  REQUIRE(r);
  CHECK(!ec);
  CHECK(r->prefix_length() == 8);
  CHECK(r->to_string() == "127.0.0.0/8");
  CHECK(r->contains(ip("127.0.0.1")));
  CHECK(r->contains(ip("127.255.255.255")));
  CHECK(r->contains(ip("::ffff:127.0.0.1")));  // mapped form of a contained address
  CHECK(!r->contains(ip("128.0.0.0")));
  CHECK(!r->contains(ip("126.255.255.255")));
  CHECK(!r->contains(ip("::1")));

  auto host = wh::cidr::parse("10.1.2.3");
  REQUIRE(host);
  CHECK(host->to_string() == "10.1.2.3/32");
  CHECK(host->contains(ip("10.1.2.3")));
  CHECK(!host->contains(ip("10.1.2.4")));
  CHECK(*host == wh::cidr::host(ip("10.1.2.3")));

  auto v6 = wh::cidr::parse("::1/128");
  REQUIRE(v6);
  CHECK(v6->contains(ip("::1")));
  CHECK(!v6->contains(ip("::2")));
  CHECK(!v6->contains(ip("127.0.0.1")));
  CHECK(wh::cidr::parse("::1") == v6);
  auto ula = wh::cidr::parse("fc00::/7");
  REQUIRE(ula);
  CHECK(ula->contains(ip("fdff::1")));
  CHECK(!ula->contains(ip("fe00::")));
  auto odd = wh::cidr::parse("2001:db8:8000::/33");
  REQUIRE(odd);
  CHECK(odd->contains(ip("2001:db8:ffff::1")));
  CHECK(!odd->contains(ip("2001:db8:7fff::1")));
  auto all4 = wh::cidr::parse("0.0.0.0/0");
  REQUIRE(all4);
  CHECK(all4->contains(ip("255.255.255.255")));
  CHECK(!all4->contains(ip("2001:db8::1")));
  CHECK(wh::cidr::parse("::/0")->contains(ip("2001:db8::1")));
  // A mapped range is the IPv4 range.
  CHECK(wh::cidr::parse("::ffff:127.0.0.0/104") == wh::cidr::parse("127.0.0.0/8"));

  struct bad {
    const char* text;
    webhook_errc why;
  };
  for (auto [text, why] : {bad{"", webhook_errc::invalid_address}, bad{"/8", webhook_errc::invalid_address},
                           bad{"localhost", webhook_errc::invalid_address}, bad{"1.2.3", webhook_errc::invalid_address},
                           bad{"256.0.0.0/8", webhook_errc::invalid_address}, bad{"01.2.3.4", webhook_errc::invalid_address},
                           bad{" 10.0.0.0/8", webhook_errc::invalid_address}, bad{"fe80::1%eth0", webhook_errc::invalid_address},
                           bad{"fe80::%1/64", webhook_errc::invalid_address}, bad{"::g", webhook_errc::invalid_address},
                           bad{"10.0.0.0/33", webhook_errc::invalid_prefix_length},
                           bad{"::/129", webhook_errc::invalid_prefix_length},
                           bad{"10.0.0.0/", webhook_errc::invalid_prefix_length},
                           bad{"10.0.0.0/8/8", webhook_errc::invalid_prefix_length},
                           bad{"10.0.0.0/-8", webhook_errc::invalid_prefix_length},
                           bad{"10.0.0.0/+8", webhook_errc::invalid_prefix_length},
                           bad{"10.0.0.0/08", webhook_errc::invalid_prefix_length},
                           bad{"10.0.0.0/8 ", webhook_errc::invalid_prefix_length},
                           bad{"10.0.0.0/1000", webhook_errc::invalid_prefix_length},
                           bad{"10.1.2.3/8", webhook_errc::host_bits_set},
                           bad{"127.0.0.1/8", webhook_errc::host_bits_set},
                           bad{"::1/64", webhook_errc::host_bits_set},
                           bad{"2001:db8:8000::/32", webhook_errc::host_bits_set}}) {
    INFO(text);
    CHECK(!wh::cidr::parse(text, ec));
    CHECK(ec == why);
  }
  CHECK(wh::cidr::parse("0.0.0.0/0"));
  CHECK(wh::cidr::parse("10.0.0.0/8"));
}

TEST_CASE("ssrf: address_guard refuses special ranges unless allowed", "[webhook]") {
  wh::address_guard guard;
  CHECK(guard(ip("8.8.8.8")));
  CHECK(guard.reason(ip("8.8.8.8")).empty());
  CHECK(guard(ip("2606:4700:4700::1111")));
  for (const char* refused : {"127.0.0.1", "::1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "10.0.0.1",
                              "169.254.169.254", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "ff02::1",
                              "255.255.255.255", "240.0.0.1", "fd00::1", "fe80::1", "192.0.2.1", "198.18.0.1"}) {
    INFO(refused);
    CHECK(!guard(ip(refused)));
    CHECK(!guard.reason(ip(refused)).empty());
  }
  CHECK(guard.reason(ip("127.0.0.1")) == "loopback address");
  CHECK(guard.reason(ip("::ffff:10.0.0.1")) == "private network address");
  CHECK(guard.reason(ip("169.254.169.254")) == "link-local address");

  // Usable as the HTTP client's std::function hook (a copy: configured first).
  std::function<bool(const asio::ip::address&)> hook = guard;
  CHECK(!hook(ip("127.0.0.1")));
  CHECK(hook(ip("1.1.1.1")));

  // Only the host.
  wh::address_guard one;
  one.allow(*wh::cidr::parse("127.0.0.1"));
  CHECK(one(ip("127.0.0.1")));
  CHECK(one(ip("::ffff:127.0.0.1")));
  CHECK(!one(ip("127.0.0.2")));
  CHECK(!one(ip("::1")));

  // The whole /8; other classes stay refused.
  wh::address_guard lo;
  std::error_code ec;
  CHECK(lo.allow("127.0.0.0/8", ec));
  CHECK(lo(ip("127.0.0.1")));
  CHECK(lo(ip("127.1.2.3")));
  CHECK(!lo(ip("10.0.0.1")));
  CHECK(!lo(ip("::1")));
  CHECK(!lo.allow("127.0.0.1/8", ec));
  CHECK(ec == webhook_errc::host_bits_set);
  CHECK(!lo.allow("nonsense", ec));
  CHECK(ec == webhook_errc::invalid_address);

  // A whole class.
  wh::address_guard intranet;
  intranet.allow(address_class::private_network).allow(*wh::cidr::parse("fd00::/8"));
  CHECK(intranet(ip("10.1.2.3")));
  CHECK(intranet(ip("192.168.1.1")));
  CHECK(intranet(ip("64:ff9b:1::1")));
  CHECK(intranet(ip("fd12::1")));
  CHECK(!intranet(ip("fc00::1")));
  CHECK(!intranet(ip("127.0.0.1")));
  CHECK(intranet(ip("8.8.8.8")));
}
