// Webhook signatures: Standard Webhooks (https://www.standardwebhooks.com: the headers
// webhook-id, webhook-timestamp, webhook-signature) and WebSub's X-Hub-Signature.
// HMAC goes through OpenSSL 3's EVP_MAC (the one-shot HMAC() is deprecated there).
//
// Secrets must never reach a log by accident: `secret` has no conversion to a string and
// its operator<< is deleted; redacted() is what to display, serialize() what to show once
// to the subscriber who owns it.
#pragma once

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "crier/detail/base64.hpp"
#include "crier/webhook/error.hpp"

namespace crier::webhook {

namespace detail {

// RFC 4648 base64 with padding (how whsec_ secrets are written), appended to `out`.
inline bool decode_base64(std::string_view in, std::vector<unsigned char>& out) {
  return crier::detail::decode_base64(in, out);
}

struct mac {
  std::array<unsigned char, EVP_MAX_MD_SIZE> bytes{};
  std::size_t size = 0;
  std::string_view view() const noexcept { return {reinterpret_cast<const char*>(bytes.data()), size}; }
};

// HMAC-<digest>(key, concatenation of parts), fed part by part so a large body is never copied.
// Throws if OpenSSL fails: that is a broken installation (or a FIPS provider refusing the
// key), not something a caller can handle per message.
inline mac hmac(const char* digest, std::span<const unsigned char> key, std::initializer_list<std::string_view> parts) {
  static EVP_MAC* const algorithm = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);  // fetched once
  std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> ctx(algorithm ? EVP_MAC_CTX_new(algorithm) : nullptr,
                                                               &EVP_MAC_CTX_free);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest), 0),
                         OSSL_PARAM_construct_end()};
  mac out;
  bool ok = ctx && EVP_MAC_init(ctx.get(), key.data(), key.size(), params) == 1;
  for (auto part : parts)
    if (ok && !part.empty())
      ok = EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(part.data()), part.size()) == 1;
  ok = ok && EVP_MAC_final(ctx.get(), out.bytes.data(), &out.size, out.bytes.size()) == 1;
  if (!ok) throw std::runtime_error("crier: HMAC computation failed in OpenSSL");
  return out;
}

inline void append_hex(std::string& out, std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  for (unsigned char c : bytes) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
}

// Equal-length compare whose time does not depend on where the first difference is.
inline bool same(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace detail

// The key of an HMAC signature. For Standard Webhooks it is written "whsec_" + base64 of
// 24..64 random bytes (the spec's 192 to 512 bits); from_bytes() takes a key as-is, for
// secrets that predate that format and for WebSub's hub.secret.
class secret {
 public:
  static constexpr std::string_view prefix = "whsec_";
  static constexpr std::size_t min_size = 24;
  static constexpr std::size_t max_size = 64;
  static constexpr std::size_t max_raw_size = 1024;  // only a sanity bound

  // "whsec_<base64>". The prefix is required: without it a string is ambiguous (base64 of a
  // key, or the key itself?), so those callers say which with from_bytes().
  static std::optional<secret> parse(std::string_view text, std::error_code& ec) {
    ec = {};
    secret s;
    if (text.substr(0, prefix.size()) != prefix || !detail::decode_base64(text.substr(prefix.size()), s.key_))
      return ec = webhook_errc::invalid_secret, std::nullopt;
    if (s.key_.size() < min_size || s.key_.size() > max_size)
      return ec = webhook_errc::bad_secret_size, std::nullopt;
    return s;
  }
  static std::optional<secret> parse(std::string_view text) {
    std::error_code ec;
    return parse(text, ec);
  }

  // A key given as raw bytes (1..max_raw_size): no minimum beyond non-empty, because such
  // keys are chosen elsewhere (legacy secrets, WebSub's hub.secret); new ones come from generate().
  static std::optional<secret> from_bytes(std::string_view raw, std::error_code& ec) {
    ec = {};
    if (raw.empty() || raw.size() > max_raw_size)
      return ec = webhook_errc::bad_secret_size, std::nullopt;
    secret s;
    s.key_.assign(raw.begin(), raw.end());
    return s;
  }
  static std::optional<secret> from_bytes(std::string_view raw) {
    std::error_code ec;
    return from_bytes(raw, ec);
  }

  // `size` bytes from OpenSSL's CSPRNG. Throws std::invalid_argument for a size outside
  // min_size..max_size and std::runtime_error if the CSPRNG fails (never a weak secret).
  static secret generate(std::size_t size = 32) {
    if (size < min_size || size > max_size) throw std::invalid_argument("crier: webhook secret size outside 24..64 bytes");
    secret s;
    s.key_.resize(size);
    if (RAND_bytes(s.key_.data(), static_cast<int>(size)) != 1) throw std::runtime_error("crier: RAND_bytes failed");
    return s;
  }

  secret(const secret&) = default;
  secret(secret&&) noexcept = default;
  // By value and swap: the old key ends in `o`, whose destructor wipes it.
  secret& operator=(secret o) noexcept {
    key_.swap(o.key_);
    return *this;
  }
  ~secret() {
    if (!key_.empty()) OPENSSL_cleanse(key_.data(), key_.size());
  }

  std::size_t size() const noexcept { return key_.size(); }
  // The key itself, for computing MACs; never print it.
  std::span<const unsigned char> bytes() const noexcept { return key_; }

  // "whsec_<base64>": to hand the secret once to the subscriber, or to store it.
  std::string serialize() const {
    std::string out(prefix);
    ::crier::detail::append_base64(out, {reinterpret_cast<const char*>(key_.data()), key_.size()});
    return out;
  }
  // Safe to log: "whsec_...(32 bytes)".
  std::string redacted() const { return std::string(prefix) + "...(" + std::to_string(key_.size()) + " bytes)"; }

  friend bool operator==(const secret& a, const secret& b) noexcept {
    return a.key_.size() == b.key_.size() && CRYPTO_memcmp(a.key_.data(), b.key_.data(), a.key_.size()) == 0;
  }
  // Deleted so that `log << secret` does not compile; use redacted().
  friend std::ostream& operator<<(std::ostream&, const secret&) = delete;

 private:
  secret() = default;
  std::vector<unsigned char> key_;
};

// A fresh "whsec_..." secret of `size` random bytes (see secret::generate).
inline std::string generate_secret(std::size_t size = 32) { return secret::generate(size).serialize(); }

// Whether `text` is a well-formed "whsec_" secret of 24..64 bytes (for validating input).
inline bool valid_secret(std::string_view text) { return secret::parse(text).has_value(); }

// ---- Standard Webhooks --------------------------------------------------------------

inline constexpr std::string_view header_id = "webhook-id";
inline constexpr std::string_view header_timestamp = "webhook-timestamp";
inline constexpr std::string_view header_signature = "webhook-signature";
inline constexpr std::chrono::seconds default_tolerance{5 * 60};

// Seconds since the Unix epoch, as webhook-timestamp wants them.
inline std::int64_t unix_now() noexcept {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The webhook-id for delivering crier message `crier_id` (from `topic`) to the subscription
// `subscription_id`: the same on every retry (receivers deduplicate on it), different per
// subscription and per message. Pass the topic when the subscription spans several topics,
// since a crier id is only unique within its topic. It is "msg_" + 32 hex digits of a
// SHA-256 over the length-prefixed inputs: no input can make it contain the '.' that
// delimits the signed content, or anything a header cannot carry.
inline std::string message_id_for(std::string_view crier_id, std::string_view subscription_id,
                                  std::string_view topic = {}) {
  std::string in;
  for (std::string_view part : {subscription_id, topic, crier_id}) {
    in += std::to_string(part.size());
    in += ':';
    in += part;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(in.data(), in.size(), digest, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("crier: SHA-256 failed in OpenSSL");
  std::string out = "msg_";
  detail::append_hex(out, {reinterpret_cast<const char*>(digest), 16});
  return out;
}

namespace detail {
// base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), the part after "v1,".
inline std::string v1_signature(const secret& s, std::string_view msg_id, std::string_view timestamp, std::string_view body) {
  std::string out;
  ::crier::detail::append_base64(out, hmac("SHA256", s.bytes(), {msg_id, ".", timestamp, ".", body}).view());
  return out;
}
}  // namespace detail

// The webhook-signature value: "v1,<base64>" per secret, space-separated (several secrets
// during a rotation, so receivers holding either key accept the message). msg_id must not
// contain '.' (the spec's rule; message_id_for() never does). Empty for no secrets.
inline std::string sign(std::span<const secret> secrets, std::string_view msg_id, std::int64_t timestamp,
                        std::string_view body) {
  char ts[24];
  auto [end, ec] = std::to_chars(ts, ts + sizeof ts, timestamp);
  (void)ec;  // 24 characters always hold an int64
  std::string out;
  for (const secret& s : secrets) {
    if (!out.empty()) out += ' ';
    out += "v1,";
    out += detail::v1_signature(s, msg_id, std::string_view(ts, static_cast<std::size_t>(end - ts)), body);
  }
  return out;
}
inline std::string sign(const secret& s, std::string_view msg_id, std::int64_t timestamp, std::string_view body) {
  return sign(std::span<const secret>(&s, 1), msg_id, timestamp, body);
}

// sign() for secrets kept as their "whsec_..." text (as subscriptions store them). Texts that
// do not parse are skipped: they are validated when a subscription is created.
inline std::string sign_with(std::span<const std::string> whsec_secrets, std::string_view msg_id, std::int64_t timestamp,
                             std::string_view body) {
  std::vector<secret> keys;
  keys.reserve(whsec_secrets.size());
  for (const auto& text : whsec_secrets)
    if (auto s = secret::parse(text)) keys.push_back(std::move(*s));
  return sign(keys, msg_id, timestamp, body);
}

// The three Standard Webhooks headers, in the order id, timestamp, signature.
inline std::array<std::pair<std::string, std::string>, 3> headers(std::span<const secret> secrets, std::string_view msg_id,
                                                                  std::int64_t timestamp, std::string_view body) {
  return {{{std::string(header_id), std::string(msg_id)},
           {std::string(header_timestamp), std::to_string(timestamp)},
           {std::string(header_signature), sign(secrets, msg_id, timestamp, body)}}};
}

struct verify_options {
  std::chrono::seconds tolerance = default_tolerance;  // accepted distance from now, either way
  std::optional<std::int64_t> now;                     // Unix seconds; empty = the system clock
};

// Checks the headers of a received message against any of `secrets` (several during a
// rotation). The timestamp must be within the tolerance of now (replays of old messages
// fail); at least one "v1," signature in the space-separated list must match one secret,
// compared in constant time; other versions ("v1a", ...) are skipped. On false, ec says why.
inline bool verify(std::span<const secret> secrets, std::string_view msg_id, std::string_view timestamp,
                   std::string_view body, std::string_view signature_header, std::error_code& ec,
                   const verify_options& options = {}) {
  ec = {};
  if (msg_id.empty() || timestamp.empty() || signature_header.empty())
    return ec = webhook_errc::missing_header, false;
  // Plain digits only: no sign, spaces or exponent, which other parsers read differently.
  std::int64_t ts = 0;
  bool digits = timestamp.size() <= 19 && timestamp.find_first_not_of("0123456789") == std::string_view::npos;
  auto parsed = std::from_chars(timestamp.data(), timestamp.data() + timestamp.size(), ts);
  if (!digits || parsed.ec != std::errc{} || parsed.ptr != timestamp.data() + timestamp.size())
    return ec = webhook_errc::invalid_timestamp, false;
  std::int64_t now = options.now.value_or(unix_now());
  auto tolerance = static_cast<std::uint64_t>(std::max<std::int64_t>(0, options.tolerance.count()));
  // Unsigned differences: exact for any int64 pair, so no overflow near the limits.
  if (ts < now && static_cast<std::uint64_t>(now) - static_cast<std::uint64_t>(ts) > tolerance)
    return ec = webhook_errc::timestamp_too_old, false;
  if (ts > now && static_cast<std::uint64_t>(ts) - static_cast<std::uint64_t>(now) > tolerance)
    return ec = webhook_errc::timestamp_too_new, false;
  std::vector<std::string> expected;
  expected.reserve(secrets.size());
  for (const secret& s : secrets) expected.push_back(detail::v1_signature(s, msg_id, timestamp, body));
  std::string_view rest = signature_header;
  while (!rest.empty()) {
    auto space = rest.find(' ');
    std::string_view entry = rest.substr(0, space);
    rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
    if (entry.substr(0, 3) != "v1,") continue;
    for (const auto& e : expected)
      if (detail::same(entry.substr(3), e)) return true;
  }
  ec = webhook_errc::signature_mismatch;
  return false;
}
inline bool verify(std::span<const secret> secrets, std::string_view msg_id, std::string_view timestamp,
                   std::string_view body, std::string_view signature_header, const verify_options& options = {}) {
  std::error_code ec;
  return verify(secrets, msg_id, timestamp, body, signature_header, ec, options);
}

// ---- WebSub X-Hub-Signature (W3C WebSub §8: "method=hex(HMAC(secret, body))") -------

inline constexpr std::string_view hub_signature_header = "X-Hub-Signature";

enum class hub_method { sha1, sha256, sha384, sha512 };

namespace detail {
struct hub_method_names {
  std::string_view name;  // in the header
  const char* digest;     // for OpenSSL
};
inline constexpr hub_method_names hub_methods[] = {{"sha1", "SHA1"}, {"sha256", "SHA256"}, {"sha384", "SHA384"}, {"sha512", "SHA512"}};
}  // namespace detail

inline std::string_view to_string(hub_method m) noexcept { return detail::hub_methods[static_cast<int>(m)].name; }

// "sha1", "sha256", "sha384" or "sha512", in any letter case.
inline std::optional<hub_method> parse_hub_method(std::string_view name, std::error_code& ec) {
  ec = {};
  std::string lower(name);
  for (char& c : lower)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  for (int i = 0; i < 4; ++i)
    if (lower == detail::hub_methods[i].name) return static_cast<hub_method>(i);
  ec = webhook_errc::unknown_hub_method;
  return std::nullopt;
}
inline std::optional<hub_method> parse_hub_method(std::string_view name) {
  std::error_code ec;
  return parse_hub_method(name, ec);
}

// The X-Hub-Signature value: "sha256=<lowercase hex>".
inline std::string hub_signature(hub_method m, const secret& s, std::string_view body) {
  std::string out(to_string(m));
  out += '=';
  detail::append_hex(out, detail::hmac(detail::hub_methods[static_cast<int>(m)].digest, s.bytes(), {body}).view());
  return out;
}

// The same for a hub.secret kept as text (WebSub secrets are arbitrary bytes, not whsec_).
// Empty when the secret is empty or longer than secret::max_raw_size.
inline std::string hub_signature(hub_method m, std::string_view raw_secret, std::string_view body) {
  auto s = secret::from_bytes(raw_secret);
  return s ? hub_signature(m, *s, body) : std::string();
}

// Checks a received X-Hub-Signature value; hex digits in either case.
inline bool verify_hub_signature(const secret& s, std::string_view body, std::string_view header_value,
                                 std::error_code& ec) {
  ec = {};
  auto eq = header_value.find('=');
  if (eq == std::string_view::npos)
    return ec = webhook_errc::malformed_hub_signature, false;
  auto method = parse_hub_method(header_value.substr(0, eq), ec);
  if (!method) return false;
  // Lower-casing the received value reveals nothing: only the attacker's own input is read.
  std::string received(header_value.substr(eq + 1));
  for (char& c : received)
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  std::string expected = hub_signature(*method, s, body);
  if (!detail::same(received, std::string_view(expected).substr(to_string(*method).size() + 1)))
    return ec = webhook_errc::signature_mismatch, false;
  return true;
}
inline bool verify_hub_signature(const secret& s, std::string_view body, std::string_view header_value) {
  std::error_code ec;
  return verify_hub_signature(s, body, header_value, ec);
}

}  // namespace crier::webhook
