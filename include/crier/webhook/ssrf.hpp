// SSRF defence for webhook deliveries: which resolved addresses crier may connect to.
// Subscribers choose the URLs, so without this a subscription could make the hub POST to its
// own loopback services, the cloud metadata endpoint (169.254.169.254) or the private network.
//
// classify() names the special-purpose range of an address (IANA's IPv4 and IPv6
// special-purpose registries, RFC 6890 and successors); address_guard refuses every range but
// global unicast unless the deployment allows it. The guard is meant to be asked about every
// resolved address immediately before connecting (http::client_options::address_allowed), so a
// host name that resolves to a public address first and a private one later (DNS rebinding)
// is still caught. IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are
// judged by that IPv4 address, since that is where the packets end up.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "crier/detail/asio.hpp"
#include "crier/webhook/error.hpp"

namespace crier::webhook {

enum class address_class : std::uint8_t {
  global,           // globally reachable unicast: the only class allowed by default
  unspecified,      // 0.0.0.0, ::
  this_network,     // 0.0.0.0/8
  loopback,         // 127.0.0.0/8, ::1
  private_network,  // 10/8, 172.16/12, 192.168/16; 64:ff9b:1::/48 (local-use NAT64)
  shared_address,   // 100.64.0.0/10 (carrier-grade NAT)
  link_local,       // 169.254.0.0/16 (cloud metadata), fe80::/10
  site_local,       // fec0::/10 (deprecated, still routed inside sites)
  unique_local,     // fc00::/7
  ietf_protocol,    // 192.0.0.0/24, 2001::/23 (Teredo and other protocol assignments)
  documentation,    // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  benchmarking,     // 198.18.0.0/15, 2001:2::/48
  relay_6to4,       // 192.88.99.0/24 (deprecated 6to4 relay anycast)
  multicast,        // 224.0.0.0/4, ff00::/8
  reserved,         // 240.0.0.0/4 but broadcast; IPv6 outside 2000::/3 not listed above
  broadcast,        // 255.255.255.255
};

// A short phrase for errors and logs ("loopback address").
inline std::string_view describe(address_class c) noexcept {
  switch (c) {
    case address_class::global: return "global unicast address";
    case address_class::unspecified: return "unspecified address";
    case address_class::this_network: return "\"this network\" address (0.0.0.0/8)";
    case address_class::loopback: return "loopback address";
    case address_class::private_network: return "private network address";
    case address_class::shared_address: return "shared (carrier-grade NAT) address";
    case address_class::link_local: return "link-local address";
    case address_class::site_local: return "site-local address";
    case address_class::unique_local: return "unique local address";
    case address_class::ietf_protocol: return "IETF protocol assignment";
    case address_class::documentation: return "documentation address";
    case address_class::benchmarking: return "benchmarking address";
    case address_class::relay_6to4: return "6to4 relay anycast address";
    case address_class::multicast: return "multicast address";
    case address_class::reserved: return "reserved address";
    case address_class::broadcast: return "broadcast address";
  }
  return "reserved address";
}

namespace detail {
using v6_bytes = asio::ip::address_v6::bytes_type;

constexpr bool in_v4(std::uint32_t a, std::uint32_t net, unsigned bits) noexcept {
  return bits == 0 || (a ^ net) >> (32 - bits) == 0;
}
inline bool in_v6(const v6_bytes& a, const v6_bytes& net, unsigned bits) noexcept {
  for (unsigned i = 0; bits > 0; ++i, bits = bits >= 8 ? bits - 8 : 0) {
    unsigned mask = bits >= 8 ? 0xFFu : (0xFFu << (8 - bits)) & 0xFFu;
    if ((a[i] ^ net[i]) & mask) return false;
  }
  return true;
}
constexpr std::uint32_t v4(unsigned a, unsigned b, unsigned c, unsigned d) noexcept { return a << 24 | b << 16 | c << 8 | d; }
inline std::uint32_t v4_at(const v6_bytes& b, std::size_t i) noexcept {
  return std::uint32_t(b[i]) << 24 | std::uint32_t(b[i + 1]) << 16 | std::uint32_t(b[i + 2]) << 8 | b[i + 3];
}
// The IPv4 address behind ::ffff:a.b.c.d, for treating both spellings alike.
inline std::optional<asio::ip::address_v4> unmapped(const asio::ip::address_v6& a) noexcept {
  if (!a.is_v4_mapped()) return std::nullopt;
  return asio::ip::address_v4(v4_at(a.to_bytes(), 12));
}
}  // namespace detail

inline address_class classify(const asio::ip::address_v4& address) noexcept {
  using detail::in_v4;
  using detail::v4;
  std::uint32_t a = address.to_uint();
  if (a == 0) return address_class::unspecified;
  if (a == 0xFFFFFFFFu) return address_class::broadcast;
  if (in_v4(a, 0, 8)) return address_class::this_network;
  if (in_v4(a, v4(127, 0, 0, 0), 8)) return address_class::loopback;
  if (in_v4(a, v4(10, 0, 0, 0), 8) || in_v4(a, v4(172, 16, 0, 0), 12) || in_v4(a, v4(192, 168, 0, 0), 16))
    return address_class::private_network;
  if (in_v4(a, v4(100, 64, 0, 0), 10)) return address_class::shared_address;
  if (in_v4(a, v4(169, 254, 0, 0), 16)) return address_class::link_local;
  if (in_v4(a, v4(192, 0, 0, 0), 24)) return address_class::ietf_protocol;
  if (in_v4(a, v4(192, 0, 2, 0), 24) || in_v4(a, v4(198, 51, 100, 0), 24) || in_v4(a, v4(203, 0, 113, 0), 24))
    return address_class::documentation;
  if (in_v4(a, v4(198, 18, 0, 0), 15)) return address_class::benchmarking;
  if (in_v4(a, v4(192, 88, 99, 0), 24)) return address_class::relay_6to4;
  if (in_v4(a, v4(224, 0, 0, 0), 4)) return address_class::multicast;
  if (in_v4(a, v4(240, 0, 0, 0), 4)) return address_class::reserved;
  return address_class::global;
}

inline address_class classify(const asio::ip::address_v6& address) noexcept {
  using detail::in_v6;
  using detail::v4_at;
  const detail::v6_bytes b = address.to_bytes();
  auto in = [&](std::initializer_list<unsigned char> head, unsigned bits) {
    detail::v6_bytes net{};
    std::size_t i = 0;
    for (unsigned char c : head) net[i++] = c;
    return in_v6(b, net, bits);
  };
  if (address.is_unspecified()) return address_class::unspecified;
  if (address.is_loopback()) return address_class::loopback;
  // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64): the IPv4 decides.
  if (in({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, 96) || in({}, 96) || in({0, 0x64, 0xFF, 0x9B}, 96))
    return classify(asio::ip::address_v4(v4_at(b, 12)));
  if (in({0, 0x64, 0xFF, 0x9B, 0, 1}, 48)) return address_class::private_network;
  if (in({0x20, 0x01, 0x0D, 0xB8}, 32) || in({0x3F, 0xFF}, 20)) return address_class::documentation;
  if (in({0x20, 0x01, 0, 0x02, 0, 0}, 48)) return address_class::benchmarking;
  if (in({0x20, 0x01}, 23)) return address_class::ietf_protocol;
  if (in({0x20, 0x02}, 16)) return classify(asio::ip::address_v4(v4_at(b, 2)));  // 6to4: 2002:a.b.c.d::/48
  if (in({0x20}, 3)) return address_class::global;
  if (in({0xFC}, 7)) return address_class::unique_local;
  if (in({0xFE, 0x80}, 10)) return address_class::link_local;
  if (in({0xFE, 0xC0}, 10)) return address_class::site_local;
  if (in({0xFF}, 8)) return address_class::multicast;
  return address_class::reserved;  // ::/8 leftovers, 100::/64 (discard), unallocated space
}

inline address_class classify(const asio::ip::address& a) noexcept {
  return a.is_v4() ? classify(a.to_v4()) : classify(a.to_v6());
}
inline bool is_public(const asio::ip::address& a) noexcept { return classify(a) == address_class::global; }

// An address range: "10.0.0.0/8", "fc00::/7", or one host ("10.1.2.3", "::1"). An IPv4-mapped
// IPv6 range of prefix >= 96 is stored as the IPv4 range, and contains() matches mapped
// addresses against IPv4 ranges, so "127.0.0.0/8" also covers ::ffff:127.0.0.1.
class cidr {
 public:
  // Strict: no spaces, no zone ids ("%eth0"), the prefix in plain decimal, and no bits set
  // past the prefix ("10.1.2.3/8" is an error rather than a guess between /8 and /32).
  static std::optional<cidr> parse(std::string_view text, std::error_code& ec) {
    ec = {};
    auto slash = text.find('/');
    std::string_view host = text.substr(0, slash);
    asio::error_code aec;
    asio::ip::address net;
    if (!host.empty() && host.find_first_of("% \t") == std::string_view::npos)
      net = asio::ip::make_address(std::string(host), aec);
    if (host.empty() || host.find_first_of("% \t") != std::string_view::npos || aec) {
      ec = webhook_errc::invalid_address;
      return std::nullopt;
    }
    unsigned max = net.is_v4() ? 32 : 128, prefix = max;
    if (slash != std::string_view::npos) {
      std::string_view p = text.substr(slash + 1);
      bool ok = !p.empty() && p.size() <= 3 && (p.size() == 1 || p[0] != '0');
      prefix = 0;
      for (char c : p) {
        ok = ok && c >= '0' && c <= '9';
        if (ok) prefix = prefix * 10 + static_cast<unsigned>(c - '0');
      }
      if (!ok || prefix > max) {
        ec = webhook_errc::invalid_prefix_length;
        return std::nullopt;
      }
    }
    cidr r(net, prefix);
    if (r.net_ != net) {  // masking changed it: host bits were set
      ec = webhook_errc::host_bits_set;
      return std::nullopt;
    }
    r.normalize();
    return r;
  }
  static std::optional<cidr> parse(std::string_view text) {
    std::error_code ec;
    return parse(text, ec);
  }
  // The single-address range of `a`.
  static cidr host(const asio::ip::address& a) {
    cidr r(a, a.is_v4() ? 32 : 128);
    r.normalize();
    return r;
  }

  bool contains(const asio::ip::address& address) const noexcept {
    asio::ip::address a = address;
    if (a.is_v6())
      if (auto v4 = detail::unmapped(a.to_v6())) a = *v4;
    if (a.is_v4() != net_.is_v4()) return false;
    if (a.is_v4()) return detail::in_v4(a.to_v4().to_uint(), net_.to_v4().to_uint(), prefix_);
    return detail::in_v6(a.to_v6().to_bytes(), net_.to_v6().to_bytes(), prefix_);
  }
  const asio::ip::address& network() const noexcept { return net_; }
  unsigned prefix_length() const noexcept { return prefix_; }
  std::string to_string() const { return net_.to_string() + "/" + std::to_string(prefix_); }
  friend bool operator==(const cidr& a, const cidr& b) noexcept { return a.net_ == b.net_ && a.prefix_ == b.prefix_; }

 private:
  // Stores `a` with the bits past `prefix` cleared (and any zone id dropped).
  cidr(const asio::ip::address& a, unsigned prefix) : prefix_(prefix) {
    if (a.is_v4()) {
      std::uint32_t v = a.to_v4().to_uint();
      net_ = asio::ip::address_v4(prefix == 0 ? 0 : v & (0xFFFFFFFFu << (32 - prefix)));
      return;
    }
    auto b = a.to_v6().to_bytes();
    for (unsigned i = 0; i < 16; ++i) {
      unsigned keep = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
      b[i] = static_cast<unsigned char>(b[i] & ((0xFF00u >> keep) & 0xFFu));
    }
    net_ = asio::ip::address_v6(b);
  }
  void normalize() {
    if (net_.is_v6() && prefix_ >= 96)
      if (auto v4 = detail::unmapped(net_.to_v6())) net_ = *v4, prefix_ -= 96;
  }
  asio::ip::address net_;
  unsigned prefix_ = 0;
};

// The SSRF guard: refuses every address_class but `global`, except what allow() admits (the
// allow-list wins over the refusal). Callable as std::function<bool(const asio::ip::address&)>,
// e.g. client_options::address_allowed = guard; that copies it, so configure it first.
// Const member functions may be called from several threads at once.
class address_guard {
 public:
  address_guard() = default;

  // Admits one range, e.g. a private network deployment's webhook receivers.
  address_guard& allow(const cidr& range) {
    ranges_.push_back(range);
    return *this;
  }
  // Parses and admits `range`; false (and nothing admitted) when it does not parse.
  bool allow(std::string_view range, std::error_code& ec) {
    auto r = cidr::parse(range, ec);
    if (r) ranges_.push_back(*r);
    return r.has_value();
  }
  // Admits a whole class, e.g. private_network for an intranet-only hub.
  address_guard& allow(address_class c) {
    classes_ |= 1u << static_cast<unsigned>(c);
    return *this;
  }

  bool operator()(const asio::ip::address& a) const noexcept { return reason(a).empty(); }

  // Empty when `a` may be connected to, else what it is ("loopback address"): for the error
  // a refused delivery reports and for the log.
  std::string_view reason(const asio::ip::address& a) const noexcept {
    address_class c = classify(a);
    if (classes_ & (1u << static_cast<unsigned>(c))) return {};
    for (const auto& r : ranges_)
      if (r.contains(a)) return {};
    return describe(c);
  }

 private:
  std::vector<cidr> ranges_;
  std::uint32_t classes_ = 1u << static_cast<unsigned>(address_class::global);
};

}  // namespace crier::webhook
