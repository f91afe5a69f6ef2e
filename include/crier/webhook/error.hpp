// Error codes of the webhook building blocks (signatures, secrets, CIDR ranges). A category
// of its own, "crier.webhook", so these headers stand alone; the enum is not called `errc`
// so that code inside crier::webhook still finds crier::errc (address_refused, ...) unqualified.
#pragma once

#include <string>
#include <system_error>

namespace crier::webhook {

enum class webhook_errc {
  ok = 0,
  // secrets
  invalid_secret = 1,     // not "whsec_" followed by padded standard base64
  bad_secret_size,        // whsec_: decoded size outside 24..64 bytes; raw: outside 1..1024
  // X-Hub-Signature
  unknown_hub_method,     // a method other than sha1, sha256, sha384, sha512
  malformed_hub_signature,// not "method=hex"
  // Standard Webhooks verification
  missing_header,         // webhook-id, webhook-timestamp or webhook-signature is empty
  invalid_timestamp,      // webhook-timestamp is not a plain decimal count of seconds
  timestamp_too_old,      // older than now - tolerance (a replay, or a very late retry)
  timestamp_too_new,      // later than now + tolerance (clock skew, or a forged time)
  signature_mismatch,     // no signature matched any of the secrets
  // CIDR ranges
  invalid_address,        // the address part is not an IPv4 or IPv6 address
  invalid_prefix_length,  // prefix not plain decimal within 0..32 (IPv4) / 0..128 (IPv6)
  host_bits_set,          // bits set past the prefix ("10.1.2.3/8"): say 10.0.0.0/8 or /32
};

namespace detail {
class webhook_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "crier.webhook"; }
  std::string message(int ev) const override {
    switch (static_cast<webhook_errc>(ev)) {
      case webhook_errc::ok: return "ok";
      case webhook_errc::invalid_secret: return "invalid webhook secret (expected whsec_ + base64)";
      case webhook_errc::bad_secret_size: return "webhook secret has the wrong size";
      case webhook_errc::unknown_hub_method: return "unknown X-Hub-Signature method";
      case webhook_errc::malformed_hub_signature: return "malformed X-Hub-Signature";
      case webhook_errc::missing_header: return "missing webhook signature header";
      case webhook_errc::invalid_timestamp: return "invalid webhook timestamp";
      case webhook_errc::timestamp_too_old: return "webhook timestamp too old";
      case webhook_errc::timestamp_too_new: return "webhook timestamp too new";
      case webhook_errc::signature_mismatch: return "no matching webhook signature";
      case webhook_errc::invalid_address: return "invalid IP address";
      case webhook_errc::invalid_prefix_length: return "invalid CIDR prefix length";
      case webhook_errc::host_bits_set: return "CIDR has bits set past its prefix";
    }
    return "unknown crier.webhook error";
  }
};
}  // namespace detail

inline const std::error_category& webhook_category() noexcept {
  static const detail::webhook_category cat;
  return cat;
}

inline std::error_code make_error_code(webhook_errc e) noexcept {
  return {static_cast<int>(e), webhook_category()};
}

}  // namespace crier::webhook

template <>
struct std::is_error_code_enum<crier::webhook::webhook_errc> : std::true_type {};
