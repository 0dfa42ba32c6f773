#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
// OpenSSL for the Crypto and TLS targets. Macros and variadic functions that Swift cannot import are
// wrapped here as static inline functions prefixed cossl_ (STYLE.md §6).
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/ec.h>
#include <openssl/pem.h>

static inline long cossl_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline long cossl_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long cossl_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline int cossl_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }
static inline int cossl_SSL_VERIFY_PEER(void) { return SSL_VERIFY_PEER; }
static inline long cossl_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER(void) { return SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER; }
static inline long cossl_SSL_MODE_ENABLE_PARTIAL_WRITE(void) { return SSL_MODE_ENABLE_PARTIAL_WRITE; }
static inline long cossl_SSL_MODE_RELEASE_BUFFERS(void) { return SSL_MODE_RELEASE_BUFFERS; }
static inline int cossl_BIO_eof(BIO *bio) { return (int)BIO_eof(bio); }
static inline long cossl_BIO_set_mem_eof_return(BIO *bio, int v) { return BIO_set_mem_eof_return(bio, v); }
static inline unsigned long cossl_SSL_OP_IGNORE_UNEXPECTED_EOF(void) {
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    return SSL_OP_IGNORE_UNEXPECTED_EOF;
#else
    return 0;
#endif
}
static inline EVP_PKEY *cossl_EVP_EC_gen_p256(void) { return EVP_EC_gen("P-256"); }
static inline int cossl_MBSTRING_ASC(void) { return MBSTRING_ASC; }
#endif
