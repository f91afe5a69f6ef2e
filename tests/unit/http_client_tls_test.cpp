// crier::http::client over https against a loopback TLS server whose self-signed certificate for
// "localhost" is made here with OpenSSL's C API.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "http_client_fixture.hpp"

using namespace client_test;

namespace {

struct test_cert {
  std::string cert_pem, key_pem;
};

std::string bio_string(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// A self-signed certificate (EC P-256) with subjectAltName `san`, e.g. "DNS:localhost".
test_cert make_cert(const char* cn, const char* san) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  REQUIRE(key);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san);
  REQUIRE(ext);
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  REQUIRE(X509_sign(x, key, EVP_sha256()) > 0);
  BIO* cb = BIO_new(BIO_s_mem());
  BIO* kb = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cb, x);
  PEM_write_bio_PrivateKey(kb, key, nullptr, nullptr, 0, nullptr, nullptr);
  test_cert out{bio_string(cb), bio_string(kb)};
  BIO_free(cb);
  BIO_free(kb);
  X509_free(x);
  EVP_PKEY_free(key);
  return out;
}

std::shared_ptr<asio::ssl::context> trusting(const std::string& pem) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->add_certificate_authority(asio::buffer(pem));
  return ctx;
}

}  // namespace

TEST_CASE("client: https with SNI and host-name verification", "[http_client]") {
  static const test_cert cert = make_cert("localhost", "DNS:localhost");
  asio::io_context io;
  asio::ssl::context server_ctx(asio::ssl::context::tls_server);
  server_ctx.use_certificate_chain(asio::buffer(cert.cert_pem));
  server_ctx.use_private_key(asio::buffer(cert.key_pem), asio::ssl::context::pem);
  std::vector<std::string> sni;
  int handshakes = 0, requests = 0;
  test_server server(io, [&](tcp::socket s, int) -> awaitable<void> {
    asio::ssl::stream<tcp::socket> tls(std::move(s), server_ctx);
    auto [ec] = co_await tls.async_handshake(asio::ssl::stream_base::server, tuple_aw);
    if (ec) co_return;
    ++handshakes;
    const char* name = SSL_get_servername(tls.native_handle(), TLSEXT_NAMETYPE_host_name);
    sni.push_back(name ? name : "");
    std::string buf;
    while (auto r = co_await read_request(tls, buf)) {
      ++requests;
      if (!co_await send(tls, ok("secure:" + r->body))) co_return;
    }
  });

  SECTION("trusted: verified, pooled") {
    http::client c(io.get_executor(), {}, trusting(cert.cert_pem));
    for (int i = 0; i < 3; ++i) {
      auto o = fetch(io, c, {"POST", server.url("/x", "localhost", "https"), {}, std::to_string(i)});
      REQUIRE(!o.ec);
      CHECK(o.res.body == "secure:" + std::to_string(i));
    }
    CHECK(handshakes == 1);
    REQUIRE(sni.size() == 1);
    CHECK(sni[0] == "localhost");
    CHECK(c.open_connections() == 1);
  }
  SECTION("untrusted certificate (the system store): refused") {
    http::client c(io.get_executor());
    auto o = fetch(io, c, get(server.url("/", "localhost", "https")));
    CHECK(o.ec);
    CHECK(o.ec.category() == asio::error::get_ssl_category());
    CHECK(requests == 0);
  }
  SECTION("trusted certificate, other host name: refused") {
    http::client c(io.get_executor(), {}, trusting(cert.cert_pem));
    auto o = fetch(io, c, get(server.url("/", "127.0.0.1", "https")));
    CHECK(o.ec);
    CHECK(o.ec.category() == asio::error::get_ssl_category());
    CHECK(requests == 0);
    CHECK(c.open_connections() == 0);
  }
  SECTION("the context's own verify mode cannot switch verification off") {
    auto ctx = trusting(make_cert("other", "DNS:other.example").cert_pem);
    ctx->set_verify_mode(asio::ssl::verify_none);
    http::client c(io.get_executor(), {}, ctx);
    auto o = fetch(io, c, get(server.url("/", "localhost", "https")));
    CHECK(o.ec);
    CHECK(requests == 0);
  }
}
