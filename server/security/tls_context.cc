#include "server/security/tls_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/pem.h"
#include "common/status_macros.h"

namespace ftd::security {
namespace {

// OpenSSL's reason for the last failure, without file contents.
std::string OpenSslReason() {
  const unsigned long code = ERR_peek_last_error();  // NOLINT(runtime/int): OpenSSL's type
  ERR_clear_error();
  const char* reason = code == 0 ? nullptr : ERR_reason_error_string(code);
  return reason == nullptr ? "OpenSSL refused it" : reason;
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), &BIO_free);
}

}  // namespace

absl::StatusOr<TlsServerContext::ContextPtr> TlsServerContext::Build(const std::string& flag,
                                                                     const Files& files) {
  ContextPtr context(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free);
  if (context == nullptr) {
    return absl::InternalError(absl::StrCat(flag, ": OpenSSL: ", OpenSslReason()));
  }
  SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(context.get(),
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  auto refused = [&](const std::string& path, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": \"", path, "\" does not load: ", why));
  };

  ASSIGN_OR_RETURN(const std::string chain, ReadPem(flag, files.cert_file, "CERTIFICATE"));
  BioPtr bio = MemoryBio(chain);
  X509Ptr leaf(PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (leaf == nullptr || SSL_CTX_use_certificate(context.get(), leaf.get()) != 1) {
    return refused(files.cert_file, OpenSslReason());
  }
  while (X509* more = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(context.get(), more) != 1) {
      X509_free(more);
      return refused(files.cert_file, OpenSslReason());
    }
  }
  ERR_clear_error();  // the end of the chain reads as an error

  ASSIGN_OR_RETURN(std::string key_text, ReadPem(flag, files.key_file, "PRIVATE KEY"));
  BioPtr key_bio = MemoryBio(key_text);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  OPENSSL_cleanse(key_text.data(), key_text.size());
  if (key == nullptr) return refused(files.key_file, OpenSslReason());
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return refused(files.key_file, absl::StrCat("it is not the key of \"", files.cert_file, "\""));
  }
  if (SSL_CTX_use_PrivateKey(context.get(), key.get()) != 1) {
    return refused(files.key_file, OpenSslReason());
  }

  if (!files.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(const std::string cas, ReadPem(flag, files.client_ca_file, "CERTIFICATE"));
    BioPtr ca_bio = MemoryBio(cas);
    X509_STORE* store = SSL_CTX_get_cert_store(context.get());
    int count = 0;
    while (X509* ca = PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, ca);
      SSL_CTX_add_client_CA(context.get(), ca);
      X509_free(ca);
      ++count;
    }
    ERR_clear_error();
    if (count == 0) return refused(files.client_ca_file, "it holds no certificate");
    SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // A TLS 1.2 session resumed under client verification needs one.
    static const unsigned char kSessionContext[] = "ftd-metrics";
    SSL_CTX_set_session_id_context(context.get(), kSessionContext, sizeof(kSessionContext) - 1);
  }
  return context;
}

std::string TlsServerContext::Version() const {
  return absl::StrCat(FileVersion(files_.cert_file), ";", FileVersion(files_.key_file), ";",
                      files_.client_ca_file.empty() ? "" : FileVersion(files_.client_ca_file));
}

absl::StatusOr<std::unique_ptr<TlsServerContext>> TlsServerContext::Load(const std::string& flag,
                                                                         const Files& files) {
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": TLS needs a certificate and its key"));
  }
  ASSIGN_OR_RETURN(ContextPtr context, Build(flag, files));
  std::unique_ptr<TlsServerContext> tls(new TlsServerContext(flag, files, std::move(context), ""));
  absl::MutexLock lock(&tls->mu_);
  tls->version_ = tls->Version();
  return tls;
}

TlsServerContext::TlsServerContext(std::string flag, Files files, ContextPtr context,
                                   std::string version)
    : flag_(std::move(flag)),
      files_(std::move(files)),
      context_(std::move(context)),
      version_(std::move(version)),
      last_look_(absl::Now()) {}

SSL* TlsServerContext::NewConnection(int fd) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  if (now - last_look_ >= files_.reload_interval) {
    last_look_ = now;
    if (std::string version = Version(); version != version_) {
      version_ = std::move(version);
      absl::StatusOr<ContextPtr> next = Build(flag_, files_);
      if (next.ok()) {
        context_ = std::move(*next);  // connections hold their own reference
        Log(LogLevel::kInfo,
            absl::StrCat(flag_, ": loaded the new version of \"", files_.cert_file, "\""));
      } else {
        Log(LogLevel::kWarning,
            absl::StrCat(next.status().message(), "; serving the version before it"));
      }
    }
  }
  SSL* ssl = SSL_new(context_.get());
  if (ssl == nullptr) return nullptr;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

}  // namespace ftd::security
