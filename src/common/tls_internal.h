/* tls_internal.h: what the parts of the TLS module (tls_policy.c, tls_pin.c, tls_cert.c,
 * tls_kafka.c) share; not part of any public or cross-module interface. */
#ifndef PB_COMMON_TLS_INTERNAL_H
#define PB_COMMON_TLS_INTERNAL_H

#include "common/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define PBTLS_VERIFIER_MAGIC 0x70627476U /* "pbtv" */
#define PBTLS_PASS_MAX 1024              /* OpenSSL's PEM password buffer (PEM_BUFSIZE) */
#define PBTLS_DAY 86400
#define PBTLS_MSG_MAX 2048 /* a verification failure's cause */


__attribute__((format(printf, 3, 4))) static inline void seterr(char *errstr, size_t size, const char *fmt, ...) {
    if (!errstr || size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

/* The reason of the latest OpenSSL error, then clears the queue. OpenSSL's reasons are fixed texts,
 * never data, so they cannot carry a passphrase. */
static inline const char *ossl_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

int pbtlsi_spki_sha256(const X509 *x, uint8_t out[PBTLS_PIN_LEN]);
X509 *pbtlsi_x509_from_der(const unsigned char *der, size_t len);
void pbtlsi_describe_x509(X509 *x, pbtls_cert_info_t *info);
void pbtlsi_copy_clean(char *dst, size_t size, const char *src, size_t len);
void pbtlsi_sans_str(const X509 *x, char *out, size_t size);
int pbtlsi_read_passphrase(const char *key, const char *path, char *buf, size_t size, char *errstr,
                           size_t errstr_size);
void pbtlsi_verify_error_text(int err, int depth, X509 *cur, const char *trust_hint, char *out, size_t size);
/* The settings name a CA and exactly one form of client material; errstr names the missing key. */
int pbtlsi_settings_complete(const pbtls_settings_t *s, char *errstr, size_t errstr_size);

#endif
