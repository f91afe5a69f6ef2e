// Standard Webhooks signatures, secrets, and WebSub's X-Hub-Signature.
#include <catch2/catch.hpp>

#include <ostream>
#include <set>

#include "crier/error.hpp"
#include "crier/webhook/signature.hpp"

namespace wh = crier::webhook;
using wh::webhook_errc;

namespace {
// The published Standard Webhooks vector (the spec's reference libraries: go/webhook_test.go
// TestWebhookSign, php/tests/WebhookTest.php testSignFunctionWorks, ...).
constexpr std::string_view vector_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr std::string_view vector_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr std::int64_t vector_ts = 1614265330;
constexpr std::string_view vector_body = R"({"test": 2432232314})";
constexpr std::string_view vector_sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

wh::secret parse_ok(std::string_view text) {
  std::error_code ec;
  auto s = wh::secret::parse(text, ec);
  INFO(text << ": " << ec.message());
  REQUIRE(s);
  return *s;
}
wh::secret raw(std::string_view bytes) { return *wh::secret::from_bytes(bytes); }
wh::verify_options at(std::int64_t now) { return {.now = now}; }
}  // namespace

// A secret must not be printable by accident.
template <class T>
concept streamable = requires(std::ostream& os, const T& t) { os << t; };
static_assert(!streamable<wh::secret>);
static_assert(!std::is_convertible_v<wh::secret, std::string>);

TEST_CASE("webhook: Standard Webhooks reference vector", "[webhook]") {
  auto s = parse_ok(vector_secret);
  CHECK(s.size() == 24);
  CHECK(wh::sign(s, vector_id, vector_ts, vector_body) == vector_sig);
  CHECK(wh::verify({&s, 1}, vector_id, "1614265330", vector_body, vector_sig, at(vector_ts)));

  std::vector<wh::secret> one{s};
  auto h = wh::headers(one, vector_id, vector_ts, vector_body);
  CHECK(h[0] == std::pair<std::string, std::string>("webhook-id", std::string(vector_id)));
  CHECK(h[1] == std::pair<std::string, std::string>("webhook-timestamp", "1614265330"));
  CHECK(h[2] == std::pair<std::string, std::string>("webhook-signature", std::string(vector_sig)));

  std::vector<std::string> texts{std::string(vector_secret), "not a secret"};
  CHECK(wh::sign_with(texts, vector_id, vector_ts, vector_body) == vector_sig);  // bad text skipped
  CHECK(wh::sign(std::span<const wh::secret>{}, vector_id, vector_ts, vector_body).empty());
}

TEST_CASE("webhook: HMAC vectors of RFC 2202 and RFC 4231 through X-Hub-Signature", "[webhook]") {
  // Test case 1 (key 20 x 0x0b, "Hi There") and 2 (key "Jefe") of RFC 2202 (SHA-1) / RFC 4231.
  auto k1 = raw(std::string(20, '\x0b'));
  auto k2 = raw("Jefe");
  std::string d1 = "Hi There", d2 = "what do ya want for nothing?";
  using m = wh::hub_method;
  CHECK(wh::hub_signature(m::sha1, k1, d1) == "sha1=b617318655057264e28bc0b6fb378c8ef146be00");
  CHECK(wh::hub_signature(m::sha1, k2, d2) == "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  CHECK(wh::hub_signature(m::sha256, k1, d1) == "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(wh::hub_signature(m::sha256, k2, d2) == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(wh::hub_signature(m::sha384, k1, d1) ==
        "sha384=afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6");
  CHECK(wh::hub_signature(m::sha384, k2, d2) ==
        "sha384=af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649");
  CHECK(wh::hub_signature(m::sha512, k1, d1) ==
        "sha512=87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
        "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854");
  CHECK(wh::hub_signature(m::sha512, k2, d2) ==
        "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
  // The text-secret overload (WebSub hub.secret) is the same computation.
  CHECK(wh::hub_signature(m::sha256, std::string_view("Jefe"), d2) == wh::hub_signature(m::sha256, k2, d2));
  CHECK(wh::hub_signature(m::sha256, std::string_view(""), d2).empty());
}

TEST_CASE("webhook: X-Hub-Signature methods and verification", "[webhook]") {
  std::error_code ec;
  CHECK(wh::parse_hub_method("sha1", ec) == wh::hub_method::sha1);
  CHECK(wh::parse_hub_method("sha256", ec) == wh::hub_method::sha256);
  CHECK(wh::parse_hub_method("SHA384", ec) == wh::hub_method::sha384);
  CHECK(wh::parse_hub_method("sha512", ec) == wh::hub_method::sha512);
  CHECK(!ec);
  for (std::string_view bad : {"md5", "", "sha", "sha256 ", "sha-256", "sha224"}) {
    INFO(bad);
    CHECK(!wh::parse_hub_method(bad, ec));
    CHECK(ec == webhook_errc::unknown_hub_method);
  }
  for (auto m : {wh::hub_method::sha1, wh::hub_method::sha256, wh::hub_method::sha384, wh::hub_method::sha512})
    CHECK(wh::parse_hub_method(wh::to_string(m)) == m);

  auto k = raw("a hub.secret");
  std::string good = wh::hub_signature(wh::hub_method::sha256, k, "body");
  CHECK(wh::verify_hub_signature(k, "body", good, ec));
  CHECK(!ec);
  std::string upper = good;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(wh::verify_hub_signature(k, "body", upper));  // "SHA256=ABC..." too
  CHECK(!wh::verify_hub_signature(k, "bodY", good, ec));
  CHECK(ec == webhook_errc::signature_mismatch);
  CHECK(!wh::verify_hub_signature(raw("another secret"), "body", good));
  CHECK(!wh::verify_hub_signature(k, "body", "sha512" + good.substr(6), ec));  // right hex, wrong method
  CHECK(ec == webhook_errc::signature_mismatch);
  CHECK(!wh::verify_hub_signature(k, "body", good.substr(0, good.size() - 1)));
  CHECK(!wh::verify_hub_signature(k, "body", "md5=00", ec));
  CHECK(ec == webhook_errc::unknown_hub_method);
  CHECK(!wh::verify_hub_signature(k, "body", "sha256", ec));
  CHECK(ec == webhook_errc::malformed_hub_signature);
}

TEST_CASE("webhook: secret rotation signs with both and either verifies", "[webhook]") {
  auto old_key = wh::secret::generate();
  auto new_key = wh::secret::generate();
  std::vector<wh::secret> both{new_key, old_key};
  std::string header = wh::sign(both, "msg_1", 1700000000, "{}");
  auto space = header.find(' ');
  REQUIRE(space != std::string::npos);
  CHECK(header.substr(0, space) == wh::sign(new_key, "msg_1", 1700000000, "{}"));
  CHECK(header.substr(space + 1) == wh::sign(old_key, "msg_1", 1700000000, "{}"));
  CHECK(header.find(' ', space + 1) == std::string::npos);

  // A receiver that holds only one of the keys, or both, accepts; one holding neither refuses.
  CHECK(wh::verify({&old_key, 1}, "msg_1", "1700000000", "{}", header, at(1700000000)));
  CHECK(wh::verify({&new_key, 1}, "msg_1", "1700000000", "{}", header, at(1700000000)));
  CHECK(wh::verify(both, "msg_1", "1700000000", "{}", header, at(1700000000)));
  auto other = wh::secret::generate();
  std::error_code ec;
  CHECK(!wh::verify({&other, 1}, "msg_1", "1700000000", "{}", header, ec, at(1700000000)));
  CHECK(ec == webhook_errc::signature_mismatch);
  CHECK(!wh::verify(std::span<const wh::secret>{}, "msg_1", "1700000000", "{}", header, at(1700000000)));
}

TEST_CASE("webhook: tampering and foreign signature lists", "[webhook]") {
  auto s = parse_ok(vector_secret);
  std::span<const wh::secret> keys{&s, 1};
  auto opt = at(vector_ts);
  std::error_code ec;
  CHECK(!wh::verify(keys, vector_id, "1614265330", R"({"test": 2432232315})", vector_sig, ec, opt));
  CHECK(ec == webhook_errc::signature_mismatch);
  CHECK(!wh::verify(keys, vector_id, "1614265330", std::string(vector_body) + " ", vector_sig, opt));
  CHECK(!wh::verify(keys, "msg_p5jXN8AQM9LWM0D4loKWxJeK", "1614265330", vector_body, vector_sig, opt));
  CHECK(!wh::verify(keys, vector_id, "1614265331", vector_body, vector_sig, ec, opt));  // within tolerance
  CHECK(ec == webhook_errc::signature_mismatch);

  // Lists as the reference libraries see them: other versions and junk skipped, any v1 match wins.
  std::string mixed = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,x v1a,abc junk  " + std::string(vector_sig);
  CHECK(wh::verify(keys, vector_id, "1614265330", vector_body, mixed, opt));
  CHECK(!wh::verify(keys, vector_id, "1614265330", vector_body, "v2," + std::string(vector_sig.substr(3)), opt));
  CHECK(!wh::verify(keys, vector_id, "1614265330", vector_body, std::string(vector_sig) + "=", opt));
  CHECK(!wh::verify(keys, vector_id, "1614265330", vector_body, vector_sig.substr(0, vector_sig.size() - 1), opt));

  // Missing headers and malformed timestamps.
  CHECK(!wh::verify(keys, "", "1614265330", vector_body, vector_sig, ec, opt));
  CHECK(ec == webhook_errc::missing_header);
  CHECK(!wh::verify(keys, vector_id, "", vector_body, vector_sig, ec, opt));
  CHECK(ec == webhook_errc::missing_header);
  CHECK(!wh::verify(keys, vector_id, "1614265330", vector_body, "", ec, opt));
  CHECK(ec == webhook_errc::missing_header);
  for (std::string_view bad : {"-1614265330", "+1614265330", " 1614265330", "1614265330 ", "1.6e9", "0x60377", "1614265330.0",
                               "99999999999999999999", "9223372036854775808"}) {
    INFO(bad);
    CHECK(!wh::verify(keys, vector_id, bad, vector_body, vector_sig, ec, opt));
    CHECK(ec == webhook_errc::invalid_timestamp);
  }
}

TEST_CASE("webhook: timestamp tolerance", "[webhook]") {
  auto s = wh::secret::generate();
  std::span<const wh::secret> keys{&s, 1};
  const std::int64_t ts = 1700000000;
  std::string sig = wh::sign(s, "msg_t", ts, "x");
  std::error_code ec;
  auto check = [&](std::int64_t now, wh::verify_options o = {}) {
    o.now = now;
    return wh::verify(keys, "msg_t", "1700000000", "x", sig, ec, o);
  };
  CHECK(check(ts));
  CHECK(check(ts + 300));  // 5 minutes either way, inclusive
  CHECK(check(ts - 300));
  CHECK(!check(ts + 301));
  CHECK(ec == webhook_errc::timestamp_too_old);
  CHECK(!check(ts - 301));
  CHECK(ec == webhook_errc::timestamp_too_new);
  CHECK(!check(ts + 11, {.tolerance = std::chrono::seconds(10)}));
  CHECK(check(ts + 10, {.tolerance = std::chrono::seconds(10)}));
  CHECK(!check(ts + 1, {.tolerance = std::chrono::seconds(-5)}));  // a negative tolerance means exact
  CHECK(check(ts, {.tolerance = std::chrono::seconds(-5)}));
  CHECK(!check(-9'000'000'000'000'000'000));  // extreme clocks do not overflow into acceptance
  CHECK(ec == webhook_errc::timestamp_too_new);

  // Without a pinned clock the system clock is used.
  auto now = wh::unix_now();
  auto fresh = wh::sign(s, "msg_t", now, "x");
  CHECK(wh::verify(keys, "msg_t", std::to_string(now), "x", fresh));
  auto stale = wh::sign(s, "msg_t", now - 3600, "x");
  CHECK(!wh::verify(keys, "msg_t", std::to_string(now - 3600), "x", stale, ec));
  CHECK(ec == webhook_errc::timestamp_too_old);
}

TEST_CASE("webhook: secrets parse, validate, generate and stay redacted", "[webhook]") {
  std::error_code ec;
  auto b64 = [](std::size_t n) {
    std::string out;
    crier::detail::append_base64(out, std::string(n, 'k'));
    return out;
  };
  CHECK(wh::secret::parse("whsec_" + b64(24), ec));
  CHECK(wh::secret::parse("whsec_" + b64(64), ec));
  CHECK(wh::secret::parse("whsec_" + b64(32), ec)->size() == 32);
  for (std::size_t n : {0, 16, 23, 65, 128}) {
    INFO(n);
    CHECK(!wh::secret::parse("whsec_" + b64(n), ec));
    CHECK(ec == webhook_errc::bad_secret_size);
  }
  for (std::string bad : {std::string(vector_secret.substr(6)),              // no prefix
                          "WHSEC_" + std::string(vector_secret.substr(6)),   // prefix case
                          "whsk_" + std::string(vector_secret.substr(6)),    // asymmetric prefix
                          "whsec_" + b64(32).substr(1),                      // length not a multiple of 4
                          "whsec_" + b64(32).substr(0, 40) + "====",         // too much padding
                          "whsec_" + b64(31).substr(0, 20) + "=" + b64(31).substr(21),  // '=' inside
                          "whsec_" + b64(32).replace(5, 1, "-"),             // base64url alphabet
                          "whsec_" + b64(32).replace(5, 1, " "), std::string()}) {
    INFO(bad);
    CHECK(!wh::secret::parse(bad, ec));
    CHECK(ec == webhook_errc::invalid_secret);
    CHECK(!wh::valid_secret(bad));
  }
  CHECK(wh::valid_secret(vector_secret));

  CHECK(!wh::secret::from_bytes("", ec));
  CHECK(ec == webhook_errc::bad_secret_size);
  CHECK(!wh::secret::from_bytes(std::string(1025, 'x'), ec));
  CHECK(ec == webhook_errc::bad_secret_size);
  CHECK(wh::secret::from_bytes(std::string(1024, 'x'), ec));

  // Every size in range, so both padding forms ("=", "==") and none decode to the same bytes.
  for (std::size_t n = 24; n <= 64; ++n) {
    std::string key;
    for (std::size_t i = 0; i < n; ++i) key += static_cast<char>(i * 37 + n);
    std::string text = "whsec_";
    crier::detail::append_base64(text, key);
    INFO(text);
    auto s = parse_ok(text);
    CHECK(s == raw(key));
    CHECK(s.serialize() == text);
  }

  // Serialization round-trips; redaction shows the size and nothing of the key.
  auto s = parse_ok(vector_secret);
  CHECK(s.serialize() == vector_secret);
  CHECK(s.redacted() == "whsec_...(24 bytes)");
  CHECK(wh::secret::parse(s.serialize()) == s);
  CHECK(!(s == raw("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")));

  std::string g = wh::generate_secret();
  CHECK(g.starts_with("whsec_"));
  CHECK(g.size() == 6 + 44);
  CHECK(parse_ok(g).size() == 32);
  CHECK(wh::secret::generate(24).size() == 24);
  CHECK(wh::secret::generate(64).size() == 64);
  CHECK_THROWS_AS(wh::secret::generate(23), std::invalid_argument);
  CHECK_THROWS_AS(wh::secret::generate(65), std::invalid_argument);
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) seen.insert(wh::generate_secret());
  CHECK(seen.size() == 50);

  // Copies and assignments keep the key; the moved-to secret signs like the original.
  auto copy = s;
  auto moved = std::move(copy);
  copy = moved;
  CHECK(copy == s);
  CHECK(wh::sign(moved, vector_id, vector_ts, vector_body) == vector_sig);
}

TEST_CASE("webhook: message ids are stable, distinct and delimiter-free", "[webhook]") {
  auto id = wh::message_id_for("1a2b3c4d:42", "sub_1");
  CHECK(id == wh::message_id_for("1a2b3c4d:42", "sub_1"));
  CHECK(id.size() == 4 + 32);
  CHECK(id.starts_with("msg_"));
  CHECK(id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos);
  CHECK(id != wh::message_id_for("1a2b3c4d:43", "sub_1"));
  CHECK(id != wh::message_id_for("1a2b3c4d:42", "sub_2"));
  CHECK(id != wh::message_id_for("1a2b3c4d:42", "sub_1", "orders/eu"));
  CHECK(wh::message_id_for("1:1", "s", "a.b") != wh::message_id_for("1:1", "s", "a.c"));
  // Length-prefixed, so shifting characters between fields gives another id.
  CHECK(wh::message_id_for("ab", "c") != wh::message_id_for("b", "ca"));
  CHECK(wh::message_id_for("x", "sub", "") == wh::message_id_for("x", "sub"));
}

TEST_CASE("webhook: error category", "[webhook]") {
  std::error_code ec = webhook_errc::timestamp_too_old;
  CHECK(ec.category().name() == std::string("crier.webhook"));
  CHECK(ec.message() == "webhook timestamp too old");
  CHECK(ec != crier::errc::invalid_id);
}
