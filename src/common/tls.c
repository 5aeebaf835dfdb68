/* tls.c: predbridge's TLS policy (a TLS 1.3 floor loaded into OpenSSL), SPKI pins, checks of our own
 * certificate material, and the broker-certificate verify callback handed to librdkafka. */
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

/*
 * The policy, loaded with appname "predbridge". `openssl_conf` is there too only so the very same
 * text works as an OPENSSL_CONF file for other tools (config/openssl-tls13.cnf is a copy; a test
 * compares them). system_default is applied by SSL_CTX_new() to every context, librdkafka's
 * included. Loading it replaces the whole system_default section of any earlier configuration, so
 * the security level Debian sets there is restated: for TLS 1.3, @SECLEVEL is what still matters
 * (minimum key sizes, no SHA-1 signatures); the cipher list itself only governs TLS <= 1.2.
 */
static const char pbtls_policy[] = "openssl_conf = predbridge_init\n"
                                   "predbridge = predbridge_init\n"
                                   "\n"
                                   "[predbridge_init]\n"
                                   "ssl_conf = predbridge_ssl\n"
                                   "\n"
                                   "[predbridge_ssl]\n"
                                   "system_default = predbridge_tls\n"
                                   "\n"
                                   "[predbridge_tls]\n"
                                   "MinProtocol = TLSv1.3\n"
                                   "CipherString = DEFAULT:@SECLEVEL=2\n";

struct pbtls_verifier {
    uint32_t magic;
    size_t pin_count;
    uint8_t pins[PBTLS_MAX_PINS][PBTLS_PIN_LEN];
    atomic_ulong failures;
    pthread_mutex_t lock; /* guards last_failure */
    char last_failure[PBTLS_MSG_MAX];
};

__attribute__((format(printf, 3, 4))) static void seterr(char *errstr, size_t size, const char *fmt, ...) {
    if (!errstr || size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

/* The reason of the latest OpenSSL error, then clears the queue. OpenSSL's reasons are fixed texts,
 * never data, so they cannot carry a passphrase. */
static const char *ossl_reason(void) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

/* ---- policy ---- */

static pthread_once_t g_policy_once = PTHREAD_ONCE_INIT;
/* Process-wide by nature: OpenSSL's configuration is. Written once under g_policy_once. */
static int g_policy_rc = -1;
static char g_policy_err[512];

const char *pbtls_policy_text(void) {
    return pbtls_policy;
}

static const char *proto_name(long v) {
    switch (v) {
    case 0:
        return "(no limit)";
    case TLS1_VERSION:
        return "TLSv1";
    case TLS1_1_VERSION:
        return "TLSv1.1";
    case TLS1_2_VERSION:
        return "TLSv1.2";
    case TLS1_3_VERSION:
        return "TLSv1.3";
    default:
        return "(unknown)";
    }
}

int pbtls_policy_verify(char *errstr, size_t errstr_size) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        seterr(errstr, errstr_size, "TLS policy: cannot create an OpenSSL client context: %s", ossl_reason());
        return -1;
    }
    long min = SSL_CTX_get_min_proto_version(ctx), max = SSL_CTX_get_max_proto_version(ctx);
    int level = SSL_CTX_get_security_level(ctx);
    SSL_CTX_free(ctx);
    if (min != TLS1_3_VERSION || (max != 0 && max < TLS1_3_VERSION) || level < 2) {
        seterr(errstr, errstr_size,
               "TLS policy not in effect: a new OpenSSL client context allows minimum %s, maximum %s, "
               "security level %d; predbridge requires minimum TLSv1.3 at level 2 or more (was OpenSSL's "
               "configuration reloaded by other code after predbridge loaded its policy?)",
               proto_name(min), proto_name(max), level);
        return -1;
    }
    return 0;
}

static int policy_load(char *errstr, size_t errstr_size) {
    int rc = -1;
    BIO *bio = NULL;
    CONF *conf = NULL;
    long errline = -1;

    /* OpenSSL's own configuration first. Its loading runs once per process: once done here, nobody
     * (librdkafka included) re-reads it over ours, and ssl_conf keeps only the last-loaded settings. */
    if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1) {
        const char *env = getenv("OPENSSL_CONF");
        seterr(errstr, errstr_size, "OpenSSL could not load its configuration (%s%s%s): %s",
               env ? "$OPENSSL_CONF '" : "the system openssl.cnf", env ? env : "", env ? "'" : "",
               ossl_reason());
        goto out;
    }
    ERR_clear_error(); /* a tolerated problem in the system file is not ours to report */
    bio = BIO_new_mem_buf(pbtls_policy, -1);
    conf = NCONF_new(NULL);
    if (!bio || !conf) {
        seterr(errstr, errstr_size, "TLS policy: out of memory");
        goto out;
    }
    if (NCONF_load_bio(conf, bio, &errline) <= 0) {
        seterr(errstr, errstr_size, "built-in TLS policy does not parse at line %ld: %s", errline,
               ossl_reason());
        goto out;
    }
    if (CONF_modules_load(conf, "predbridge", 0) <= 0) {
        seterr(errstr, errstr_size, "OpenSSL refused the built-in TLS policy: %s", ossl_reason());
        goto out;
    }
    rc = pbtls_policy_verify(errstr, errstr_size);
out:
    NCONF_free(conf);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

static void policy_once(void) {
    g_policy_rc = policy_load(g_policy_err, sizeof g_policy_err);
}

int pbtls_policy_init(char *errstr, size_t errstr_size) {
    if (pthread_once(&g_policy_once, policy_once) != 0) {
        seterr(errstr, errstr_size, "TLS policy: pthread_once failed");
        return -1;
    }
    if (g_policy_rc != 0) seterr(errstr, errstr_size, "%s", g_policy_err);
    return g_policy_rc;
}

/* ---- pins ---- */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict base64 of exactly 32 bytes: standard alphabet, canonical, padded, nothing else. A lenient
 * decoder would let two spellings of one pin differ, or accept a pasted line break silently. */
static int pin_decode(const char *s, uint8_t out[PBTLS_PIN_LEN], char *errstr, size_t errstr_size) {
    size_t n = strlen(s), pad = 0;
    if (n == 0) {
        seterr(errstr, errstr_size, "empty pin: expected sha256// followed by 44 base64 characters");
        return -1;
    }
    if (n == 64 && strspn(s, "0123456789abcdefABCDEF") == 64) {
        seterr(errstr, errstr_size,
               "pin is hex; pins are base64 of the 32-byte SHA-256 (openssl x509 -in CERT -pubkey -noout | "
               "openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') {
            continue; /* placement checked below, once the text is known to be base64 at all */
        } else if (isspace(c)) {
            seterr(errstr, errstr_size, "whitespace at offset %zu of the pin: remove spaces and line breaks",
                   i);
            return -1;
        } else if (c == '-' || c == '_') {
            seterr(errstr, errstr_size,
                   "URL-safe base64 character '%c' at offset %zu of the pin: use standard base64 ('+', '/')",
                   c, i);
            return -1;
        } else if (c == ';' || c == ',') {
            seterr(errstr, errstr_size, "'%c' at offset %zu of the pin: give one pin per entry", c, i);
            return -1;
        } else if (b64_value(c) < 0) {
            if (isprint(c))
                seterr(errstr, errstr_size, "invalid base64 character '%c' at offset %zu of the pin", c, i);
            else
                seterr(errstr, errstr_size, "invalid byte 0x%02x at offset %zu of the pin", c, i);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=' && (i + 2 < n || (i + 2 == n && s[n - 1] != '='))) {
            seterr(errstr, errstr_size, "'=' at offset %zu of the pin: base64 padding may only end it", i);
            return -1;
        }
    }
    if (n % 4 != 0) {
        seterr(errstr, errstr_size, "pin has %zu base64 characters; a SHA-256 pin has 44, ending in '='", n);
        return -1;
    }
    pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    if (n / 4 * 3 - pad != PBTLS_PIN_LEN) {
        seterr(errstr, errstr_size, "pin decodes to %zu bytes; a SHA-256 pin has %d (44 base64 characters)",
               n / 4 * 3 - pad, PBTLS_PIN_LEN);
        return -1;
    }
    /* Here n == 44 and pad == 1: 43 data characters carry 258 bits, the last 2 must be zero. */
    if (b64_value((unsigned char)s[n - 2]) & 0x3) {
        seterr(errstr, errstr_size, "pin is not canonical base64: unused bits of its last character are set");
        return -1;
    }
    uint8_t buf[PBTLS_PIN_LEN + 2];
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = s[i + k] == '=' ? 0 : b64_value((unsigned char)s[i + k]);
            v = (v << 6) | (uint32_t)d;
        }
        buf[o++] = (uint8_t)(v >> 16);
        buf[o++] = (uint8_t)(v >> 8);
        buf[o++] = (uint8_t)v;
    }
    memcpy(out, buf, PBTLS_PIN_LEN);
    return 0;
}

/* Hash names people write in pins (curl knows only sha256//). Matched case-insensitively before the
 * first "//"; anything else is read as bare base64, whose alphabet contains '/' too. */
static const char *const pbtls_hash_names[] = {"md5",     "sha1",     "sha-1",    "sha224",   "sha-224",
                                               "sha256",  "sha-256",  "sha384",   "sha-384",  "sha512",
                                               "sha-512", "sha3-256", "sha3-384", "sha3-512", NULL};

int pbtls_pin_parse(const char *text, uint8_t out[PBTLS_PIN_LEN], char *errstr, size_t errstr_size) {
    if (!text || !out) {
        seterr(errstr, errstr_size, "empty pin: expected sha256// followed by 44 base64 characters");
        return -1;
    }
    if (strncmp(text, "sha256//", 8) == 0) return pin_decode(text + 8, out, errstr, errstr_size);
    const char *sep = strstr(text, "//");
    if (sep) {
        size_t len = (size_t)(sep - text);
        for (size_t i = 0; pbtls_hash_names[i]; i++) {
            if (strlen(pbtls_hash_names[i]) != len || strncasecmp(text, pbtls_hash_names[i], len) != 0)
                continue;
            if (!strcasecmp(pbtls_hash_names[i], "sha256") || !strcasecmp(pbtls_hash_names[i], "sha-256"))
                seterr(errstr, errstr_size,
                       "pin prefix '%.*s//': write it as 'sha256//' (lower case, no dash)", (int)len, text);
            else
                seterr(
                    errstr, errstr_size,
                    "unsupported hash '%.*s' in pin: only sha256// (SHA-256 of the public key) is supported",
                    (int)len, text);
            return -1;
        }
    }
    return pin_decode(text, out, errstr, errstr_size);
}

void pbtls_pin_format(const uint8_t pin[PBTLS_PIN_LEN], char *out, size_t out_size) {
    unsigned char b64[4 * ((PBTLS_PIN_LEN + 2) / 3) + 1];
    if (!out || out_size == 0) return;
    EVP_EncodeBlock(b64, pin, PBTLS_PIN_LEN);
    snprintf(out, out_size, "sha256//%s", (const char *)b64);
}

static int spki_sha256(const X509 *x, uint8_t out[PBTLS_PIN_LEN]) {
    unsigned char *der = NULL;
    const X509_PUBKEY *pk = X509_get_X509_PUBKEY(x);
    int n = pk ? i2d_X509_PUBKEY(pk, &der) : -1;
    if (n <= 0) return -1;
    int ok = EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL);
    OPENSSL_free(der);
    return ok == 1 ? 0 : -1;
}

/* Exactly one DER certificate filling [der, der+len). */
static X509 *x509_from_der(const unsigned char *der, size_t len) {
    const unsigned char *p = der;
    if (!der || len == 0 || len > (size_t)LONG_MAX) return NULL;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x && p != der + len) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

int pbtls_spki_sha256_der(const unsigned char *der, size_t len, uint8_t out[PBTLS_PIN_LEN]) {
    ERR_set_mark();
    X509 *x = x509_from_der(der, len);
    int rc = x ? spki_sha256(x, out) : -1;
    X509_free(x);
    ERR_pop_to_mark();
    return rc;
}

/* ---- describing certificates ---- */

void pbtls_format_time(time_t t, char *out, size_t out_size) {
    struct tm tm;
    if (!out || out_size == 0) return;
    if (!gmtime_r(&t, &tm) || strftime(out, out_size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) out[0] = '\0';
}

static time_t asn1_time(const ASN1_TIME *t) {
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    return timegm(&tm);
}

/* Copies len bytes, replacing control characters: names come from certificates, i.e. from whoever
 * made them, and end up in logs. */
static void copy_clean(char *dst, size_t size, const char *src, size_t len) {
    size_t j = 0;
    if (size == 0) return;
    for (size_t i = 0; i < len && src[i] && j + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[j] = '\0';
}

static void name_str(const X509_NAME *name, char *out, size_t size) {
    BIO *b = BIO_new(BIO_s_mem());
    out[0] = '\0';
    /* RFC 2253 order and escaping: the form Kafka's SSL principals (and so its ACLs) use. */
    if (b && name && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0) copy_clean(out, size, p, (size_t)n);
    }
    BIO_free(b);
}

static void append(char *buf, size_t size, const char *sep, const char *item) {
    size_t len = strlen(buf);
    if (len + 1 >= size) return;
    snprintf(buf + len, size - len, "%s%s", len ? sep : "", item);
}

static void sans_str(const X509 *x, char *out, size_t size) {
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    out[0] = '\0';
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char item[300], clean[256];
        const char *prefix = g->type == GEN_DNS ? "DNS" : g->type == GEN_URI ? "URI" : "email";
        if (g->type == GEN_DNS || g->type == GEN_URI || g->type == GEN_EMAIL) {
            copy_clean(clean, sizeof clean, (const char *)ASN1_STRING_get0_data(g->d.ia5),
                       (size_t)ASN1_STRING_length(g->d.ia5));
            snprintf(item, sizeof item, "%s:%s", prefix, clean);
        } else if (g->type == GEN_IPADD) {
            int len = ASN1_STRING_length(g->d.ip);
            if ((len != 4 && len != 16) || !inet_ntop(len == 4 ? AF_INET : AF_INET6,
                                                      ASN1_STRING_get0_data(g->d.ip), clean, sizeof clean))
                continue;
            snprintf(item, sizeof item, "IP:%s", clean);
        } else {
            continue;
        }
        append(out, size, ", ", item);
    }
    GENERAL_NAMES_free(gens);
}

static int client_auth_allowed(X509 *x) {
    uint32_t flags = X509_get_extension_flags(x); /* also computes the cached extension data */
    return !(flags & EXFLAG_XKUSAGE) || (X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
}

static void describe_x509(X509 *x, pbtls_cert_info_t *info) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    uint8_t pin[PBTLS_PIN_LEN];
    const X509_NAME *subj = X509_get_subject_name(x);

    memset(info, 0, sizeof *info);
    name_str(subj, info->subject, sizeof info->subject);
    name_str(X509_get_issuer_name(x), info->issuer, sizeof info->issuer);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
        if (n > 0) copy_clean(info->common_name, sizeof info->common_name, (const char *)utf8, (size_t)n);
        OPENSSL_free(utf8);
    }
    sans_str(x, info->sans, sizeof info->sans);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex) copy_clean(info->serial, sizeof info->serial, hex, strlen(hex));
    OPENSSL_free(hex);
    BN_free(bn);
    if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1) {
        for (unsigned int i = 0; i < mdlen && 3 * i + 3 <= sizeof info->sha256_fingerprint; i++)
            snprintf(info->sha256_fingerprint + 3 * i, 4, i + 1 < mdlen ? "%02X:" : "%02X", md[i]);
    }
    if (spki_sha256(x, pin) == 0) pbtls_pin_format(pin, info->spki_pin, sizeof info->spki_pin);
    info->not_before = asn1_time(X509_get0_notBefore(x));
    info->not_after = asn1_time(X509_get0_notAfter(x));
    info->client_auth_usage = client_auth_allowed(x);
}

int pbtls_describe_der(const unsigned char *der, size_t len, pbtls_cert_info_t *info) {
    X509 *x = NULL;
    if (!der || !info) return -1;
    ERR_set_mark();
    if (len > 10 && memcmp(der, "-----BEGIN", 10) == 0 && len <= INT_MAX) {
        BIO *b = BIO_new_mem_buf(der, (int)len);
        x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    } else {
        x = x509_from_der(der, len);
    }
    if (x) describe_x509(x, info);
    X509_free(x);
    ERR_pop_to_mark();
    return x ? 0 : -1;
}

/* ---- our own material ---- */

/* Opens path for reading, naming the config key in errors ("tls.ca '/x': cannot open: ..."). */
static BIO *open_file(const char *key, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f) {
        seterr(errstr, errstr_size, "%s '%s': cannot open: %s", key, path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        seterr(errstr, errstr_size, "%s '%s': is a directory, expected a file", key, path);
        fclose(f);
        return NULL;
    }
    BIO *b = BIO_new_fp(f, BIO_CLOSE);
    if (!b) {
        fclose(f);
        seterr(errstr, errstr_size, "%s '%s': out of memory", key, path);
    }
    return b;
}

/* All PEM certificates of a file, in order. */
static int load_certs(const char *key, const char *path, STACK_OF(X509) * *out, char *errstr,
                      size_t errstr_size) {
    int rc = -1;
    X509 *x;
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *b = open_file(key, path, errstr, errstr_size);
    if (!b || !sk) goto out;
    ERR_clear_error();
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            seterr(errstr, errstr_size, "%s '%s': out of memory", key, path);
            goto out;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (sk_X509_num(sk) == 0) {
        seterr(errstr, errstr_size,
               "%s '%s': no PEM certificate (\"-----BEGIN CERTIFICATE-----\") found; a DER file needs "
               "converting: "
               "openssl x509 -inform der -in FILE -out FILE.pem",
               key, path);
        goto out;
    }
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        seterr(errstr, errstr_size, "%s '%s': certificate #%d is malformed: %s", key, path,
               sk_X509_num(sk) + 1, ossl_reason());
        goto out;
    }
    *out = sk;
    sk = NULL;
    rc = 0;
out:
    sk_X509_pop_free(sk, X509_free);
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

/* First line of a passphrase file, newline (and a CR before it) stripped. The caller cleanses buf. */
static int read_passphrase(const char *key, const char *path, char *buf, size_t size, char *errstr,
                           size_t errstr_size) {
    char tmp[PBTLS_PASS_MAX + 2];
    int rc = -1;
    BIO *b = open_file(key, path, errstr, errstr_size);
    if (!b) return -1;
    int n = BIO_read(b, tmp, (int)sizeof tmp - 1);
    BIO_free(b);
    if (n < 0) n = 0;
    tmp[n] = '\0';
    char *nl = memchr(tmp, '\n', (size_t)n);
    if (!nl && (size_t)n == sizeof tmp - 1) {
        seterr(errstr, errstr_size, "%s '%s': first line is longer than %d bytes", key, path,
               PBTLS_PASS_MAX - 1);
        goto out;
    }
    size_t len = nl ? (size_t)(nl - tmp) : (size_t)n;
    if (len > 0 && tmp[len - 1] == '\r') len--;
    if (memchr(tmp, '\0', len)) {
        seterr(errstr, errstr_size, "%s '%s': contains a NUL byte", key, path);
        goto out;
    }
    if (len == 0) {
        seterr(errstr, errstr_size, "%s '%s': is empty (its first line is the passphrase)", key, path);
        goto out;
    }
    if (len >= size) {
        seterr(errstr, errstr_size, "%s '%s': first line is longer than %zu bytes", key, path, size - 1);
        goto out;
    }
    memcpy(buf, tmp, len);
    buf[len] = '\0';
    rc = 0;
out:
    OPENSSL_cleanse(tmp, sizeof tmp);
    return rc;
}

static void warn_mode(const char *key, const char *path, pbtls_warn_fn warn, void *ctx) {
    struct stat st;
    char msg[PATH_MAX * 2 + 200];
    if (!warn || !path || stat(path, &st) != 0 || !(st.st_mode & (S_IRWXG | S_IRWXO))) return;
    snprintf(msg, sizeof msg, "%s '%s' is accessible by group or others (mode %04o): chmod 600 %s", key, path,
             (unsigned)(st.st_mode & 07777), path);
    warn(ctx, msg);
}

typedef struct material {
    const char *cert_key; /* "tls.cert" or "tls.keystore": where the certificate came from */
    const char *cert_path;
    X509 *leaf;
    STACK_OF(X509) * extra; /* intermediates that came with the certificate */
    EVP_PKEY *pkey;
} material_t;

typedef struct pw_ctx {
    const char *pass;
    int asked;
} pw_ctx_t;

/* Given to every key decoder so OpenSSL never falls back to prompting on the terminal. */
static int pw_cb(char *buf, int size, int rwflag, void *u) {
    pw_ctx_t *pw = u;
    (void)rwflag;
    pw->asked = 1;
    if (!pw->pass || size < 0 || strlen(pw->pass) > (size_t)size) return -1;
    size_t n = strlen(pw->pass);
    memcpy(buf, pw->pass, n);
    return (int)n;
}

static int load_pem_material(const pbtls_settings_t *s, material_t *m, char *errstr, size_t errstr_size) {
    int rc = -1;
    char pass[PBTLS_PASS_MAX];
    pw_ctx_t pw = {NULL, 0};
    STACK_OF(X509) *certs = NULL;
    BIO *b = NULL;

    pass[0] = '\0';
    m->cert_key = "tls.cert";
    m->cert_path = s->cert;
    if (load_certs("tls.cert", s->cert, &certs, errstr, errstr_size) != 0) goto out;
    m->leaf = sk_X509_shift(certs);
    m->extra = certs;
    certs = NULL;
    if (s->key_passphrase_file) {
        if (read_passphrase("tls.key_passphrase_file", s->key_passphrase_file, pass, sizeof pass, errstr,
                            errstr_size) != 0)
            goto out;
        pw.pass = pass;
    }
    if (!(b = open_file("tls.key", s->key, errstr, errstr_size))) goto out;
    ERR_clear_error();
    m->pkey = PEM_read_bio_PrivateKey(b, NULL, pw_cb, &pw);
    if (!m->pkey) {
        if (pw.asked && pw.pass)
            seterr(errstr, errstr_size,
                   "tls.key '%s': cannot decrypt it with the passphrase in tls.key_passphrase_file '%s' "
                   "(wrong passphrase?)",
                   s->key, s->key_passphrase_file);
        else if (pw.asked)
            seterr(errstr, errstr_size,
                   "tls.key '%s': is encrypted; set tls.key_passphrase_file to a file holding its passphrase",
                   s->key);
        else
            seterr(errstr, errstr_size,
                   "tls.key '%s': no PEM private key found (expected \"-----BEGIN PRIVATE KEY-----\" or an "
                   "encrypted PKCS#8 key)",
                   s->key);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(pass, sizeof pass);
    sk_X509_pop_free(certs, X509_free);
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

static int load_keystore(const pbtls_settings_t *s, material_t *m, char *errstr, size_t errstr_size) {
    int rc = -1;
    char pass[PBTLS_PASS_MAX];
    const char *p = NULL;
    PKCS12 *p12 = NULL;
    BIO *b = NULL;

    pass[0] = '\0';
    m->cert_key = "tls.keystore";
    m->cert_path = s->keystore;
    if (s->keystore_passphrase_file) {
        if (read_passphrase("tls.keystore_passphrase_file", s->keystore_passphrase_file, pass, sizeof pass,
                            errstr, errstr_size) != 0)
            goto out;
        p = pass;
    }
    if (!(b = open_file("tls.keystore", s->keystore, errstr, errstr_size))) goto out;
    ERR_clear_error();
    if (!(p12 = d2i_PKCS12_bio(b, NULL))) {
        seterr(errstr, errstr_size, "tls.keystore '%s': not a PKCS#12 (.p12) file: %s", s->keystore,
               ossl_reason());
        goto out;
    }
    /* The MAC first: it tells a wrong passphrase apart from a damaged or unsupported file. */
    if (p && PKCS12_mac_present(p12) && !PKCS12_verify_mac(p12, p, -1)) {
        seterr(errstr, errstr_size,
               "tls.keystore '%s': cannot open it with the passphrase in tls.keystore_passphrase_file '%s' "
               "(wrong passphrase?)",
               s->keystore, s->keystore_passphrase_file);
        goto out;
    }
    if (!PKCS12_parse(p12, p, &m->pkey, &m->leaf, &m->extra)) {
        unsigned long e = ERR_peek_last_error();
        if (!p && ERR_GET_REASON(e) == PKCS12_R_MAC_VERIFY_FAILURE)
            seterr(errstr, errstr_size,
                   "tls.keystore '%s': is protected by a passphrase; set tls.keystore_passphrase_file",
                   s->keystore);
        else
            seterr(errstr, errstr_size,
                   "tls.keystore '%s': cannot read its contents: %s (a keystore made with a legacy algorithm "
                   "such as RC2 needs re-exporting with OpenSSL 3's defaults)",
                   s->keystore, ossl_reason());
        goto out;
    }
    if (!m->leaf || !m->pkey) {
        seterr(errstr, errstr_size, "tls.keystore '%s': holds no certificate with its private key",
               s->keystore);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(pass, sizeof pass);
    PKCS12_free(p12);
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

static void eku_list(X509 *x, char *out, size_t size) {
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    out[0] = '\0';
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
        const ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);
        char num[80];
        int nid = OBJ_obj2nid(o);
        if (nid == NID_undef) OBJ_obj2txt(num, sizeof num, o, 1);
        append(out, size, ", ", nid != NID_undef ? OBJ_nid2sn(nid) : num);
    }
    EXTENDED_KEY_USAGE_free(eku);
}

static void validity(X509 *x, char *out, size_t size) {
    char nb[40], na[40];
    pbtls_format_time(asn1_time(X509_get0_notBefore(x)), nb, sizeof nb);
    pbtls_format_time(asn1_time(X509_get0_notAfter(x)), na, sizeof na);
    snprintf(out, size, "valid from %s until %s", nb, na);
}

static int is_trust_error(int err) {
    return err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT || err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || err == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

/* "<reason> (certificate 'S' issued by 'I' at depth N[, valid ...])[hint]" for a failed verification. */
static void verify_error_text(int err, int depth, X509 *cur, const char *trust_hint, char *out, size_t size) {
    char subj[512] = "?", iss[512] = "?", dates[120] = "";
    if (cur) {
        name_str(X509_get_subject_name(cur), subj, sizeof subj);
        name_str(X509_get_issuer_name(cur), iss, sizeof iss);
        if (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID) {
            dates[0] = ',';
            dates[1] = ' ';
            validity(cur, dates + 2, sizeof dates - 2);
        }
    }
    snprintf(out, size, "%s (certificate '%s' issued by '%s' at depth %d%s)%s",
             X509_verify_cert_error_string(err), subj, iss, depth, dates,
             is_trust_error(err) ? trust_hint : "");
}

static void warn_expiry(const char *what, time_t not_after, time_t now, int days, pbtls_warn_fn warn,
                        void *ctx) {
    char when[40], msg[2048];
    if (!warn || days <= 0 || not_after <= now || not_after - now > (time_t)days * PBTLS_DAY) return;
    long long left = (long long)((not_after - now) / PBTLS_DAY);
    pbtls_format_time(not_after, when, sizeof when);
    if (left == 0)
        snprintf(msg, sizeof msg, "%s expires on %s, in less than a day; renew it now", what, when);
    else
        snprintf(msg, sizeof msg, "%s expires on %s, in %lld day%s; renew it before then", what, when, left,
                 left == 1 ? "" : "s");
    warn(ctx, msg);
}

/* Verifies the chain as the broker will (purpose sslclient) at `now`; warns on CA expiry. */
static int verify_chain(const pbtls_settings_t *s, material_t *m, STACK_OF(X509) * cas, time_t now,
                        pbtls_cert_info_t *info, pbtls_warn_fn warn, void *warn_ctx, char *errstr,
                        size_t errstr_size) {
    int rc = -1;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!store || !ctx) {
        seterr(errstr, errstr_size, "tls.ca '%s': out of memory", s->ca);
        goto out;
    }
    for (int i = 0; i < sk_X509_num(cas); i++)
        X509_STORE_add_cert(store, sk_X509_value(cas, i));
    ERR_clear_error();
    if (X509_STORE_CTX_init(ctx, store, m->leaf, m->extra) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        seterr(errstr, errstr_size, "%s '%s': cannot set up verification: %s", m->cert_key, m->cert_path,
               ossl_reason());
        goto out;
    }
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), now);
    if (X509_verify_cert(ctx) != 1) {
        char why[1400];
        verify_error_text(X509_STORE_CTX_get_error(ctx), X509_STORE_CTX_get_error_depth(ctx),
                          X509_STORE_CTX_get_current_cert(ctx),
                          "; tls.ca does not hold the CA that issued it", why, sizeof why);
        seterr(errstr, errstr_size, "%s '%s': does not verify against tls.ca '%s': %s", m->cert_key,
               m->cert_path, s->ca, why);
        goto out;
    }
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    time_t earliest = 0;
    for (int i = 1; i < sk_X509_num(chain); i++) {
        X509 *ca = sk_X509_value(chain, i);
        time_t na = asn1_time(X509_get0_notAfter(ca));
        char subj[512], what[PATH_MAX + 600];
        if (na && (!earliest || na < earliest)) earliest = na;
        name_str(X509_get_subject_name(ca), subj, sizeof subj);
        int from_ca_file = 0;
        for (int k = 0; k < sk_X509_num(cas); k++)
            from_ca_file |= X509_cmp(ca, sk_X509_value(cas, k)) == 0;
        snprintf(what, sizeof what, "%s '%s': CA certificate '%s'", from_ca_file ? "tls.ca" : m->cert_key,
                 from_ca_file ? s->ca : m->cert_path, subj);
        warn_expiry(what, na, now, s->expiry_warn_days, warn, warn_ctx);
    }
    if (info) info->ca_not_after = earliest;
    rc = 0;
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return rc;
}

/* tls.crl is meant for the broker chain; here it is only read, and checked against our own cert
 * in passing, because a revoked client certificate is worth knowing about before the broker says so. */
static int check_crl(const pbtls_settings_t *s, material_t *m, time_t now, pbtls_warn_fn warn, void *warn_ctx,
                     char *errstr, size_t errstr_size) {
    int rc = -1, n = 0;
    X509_CRL *crl;
    BIO *b = open_file("tls.crl", s->crl, errstr, errstr_size);
    if (!b) return -1;
    ERR_clear_error();
    while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
        X509_REVOKED *rev = NULL;
        time_t next = asn1_time(X509_CRL_get0_nextUpdate(crl));
        char when[40], msg[PATH_MAX + 300];
        n++;
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(m->leaf)) == 0 &&
            X509_CRL_get0_by_cert(crl, &rev, m->leaf) == 1) {
            X509_CRL_free(crl);
            seterr(errstr, errstr_size, "%s '%s': certificate is revoked by tls.crl '%s'", m->cert_key,
                   m->cert_path, s->crl);
            goto out;
        }
        if (warn && next && next < now) {
            pbtls_format_time(next, when, sizeof when);
            snprintf(msg, sizeof msg,
                     "tls.crl '%s': CRL #%d was due for renewal on %s; brokers whose CA it covers will fail "
                     "verification (CRL has expired) until it is replaced",
                     s->crl, n, when);
            warn(warn_ctx, msg);
        }
        X509_CRL_free(crl);
    }
    if (n == 0) {
        seterr(errstr, errstr_size, "tls.crl '%s': no PEM CRL (\"-----BEGIN X509 CRL-----\") found", s->crl);
        goto out;
    }
    rc = 0;
out:
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

int pbtls_check_material(const pbtls_settings_t *s, time_t now, pbtls_cert_info_t *info, pbtls_warn_fn warn,
                         void *warn_ctx, char *errstr, size_t errstr_size) {
    int rc = -1;
    STACK_OF(X509) *cas = NULL;
    material_t m = {0};
    char nb[40], na[40], nowtxt[40], ekus[256];

    if (info) memset(info, 0, sizeof *info);
    if (!s) {
        seterr(errstr, errstr_size, "no TLS settings");
        goto out;
    }
    if (!s->ca) {
        seterr(errstr, errstr_size,
               "tls.ca: not set; it names the PEM file of the CA that issued the brokers' "
               "certificates");
        goto out;
    }
    if (s->keystore && (s->cert || s->key)) {
        seterr(errstr, errstr_size,
               "tls.keystore and tls.cert/tls.key are alternatives: set one or the other");
        goto out;
    }
    if (!s->keystore && (!s->cert || !s->key)) {
        seterr(errstr, errstr_size,
               "%s: not set; a client certificate is required (tls.cert and tls.key, or "
               "tls.keystore)",
               !s->cert ? "tls.cert" : "tls.key");
        goto out;
    }
    if (load_certs("tls.ca", s->ca, &cas, errstr, errstr_size) != 0) goto out;
    if (s->keystore) {
        warn_mode("tls.keystore", s->keystore, warn, warn_ctx);
        warn_mode("tls.keystore_passphrase_file", s->keystore_passphrase_file, warn, warn_ctx);
        if (load_keystore(s, &m, errstr, errstr_size) != 0) goto out;
    } else {
        warn_mode("tls.key", s->key, warn, warn_ctx);
        warn_mode("tls.key_passphrase_file", s->key_passphrase_file, warn, warn_ctx);
        if (load_pem_material(s, &m, errstr, errstr_size) != 0) goto out;
    }
    if (info) describe_x509(m.leaf, info);

    if (X509_check_private_key(m.leaf, m.pkey) != 1) {
        if (s->keystore)
            seterr(errstr, errstr_size, "tls.keystore '%s': its private key does not match its certificate",
                   s->keystore);
        else
            seterr(errstr, errstr_size, "tls.key '%s': does not match certificate tls.cert '%s'", s->key,
                   s->cert);
        goto out;
    }
    time_t not_before = asn1_time(X509_get0_notBefore(m.leaf)),
           not_after = asn1_time(X509_get0_notAfter(m.leaf));
    pbtls_format_time(not_before, nb, sizeof nb);
    pbtls_format_time(not_after, na, sizeof na);
    pbtls_format_time(now, nowtxt, sizeof nowtxt);
    if (now < not_before) {
        seterr(errstr, errstr_size,
               "%s '%s': certificate is not valid before %s (valid until %s; now is %s: is the "
               "clock right?)",
               m.cert_key, m.cert_path, nb, na, nowtxt);
        goto out;
    }
    if (now > not_after) {
        seterr(errstr, errstr_size, "%s '%s': certificate expired on %s (valid from %s); renew it",
               m.cert_key, m.cert_path, na, nb);
        goto out;
    }
    if (!client_auth_allowed(m.leaf)) {
        eku_list(m.leaf, ekus, sizeof ekus);
        seterr(errstr, errstr_size,
               "%s '%s': certificate's extended key usage (%s) does not allow TLS client authentication; "
               "reissue it with extendedKeyUsage = clientAuth",
               m.cert_key, m.cert_path, ekus);
        goto out;
    }
    if (verify_chain(s, &m, cas, now, info, warn, warn_ctx, errstr, errstr_size) != 0) goto out;
    if (s->crl && check_crl(s, &m, now, warn, warn_ctx, errstr, errstr_size) != 0) goto out;
    {
        char what[PATH_MAX + 40];
        snprintf(what, sizeof what, "%s '%s': certificate", m.cert_key, m.cert_path);
        warn_expiry(what, not_after, now, s->expiry_warn_days, warn, warn_ctx);
    }
    rc = 0;
out:
    sk_X509_pop_free(cas, X509_free);
    sk_X509_pop_free(m.extra, X509_free);
    X509_free(m.leaf);
    EVP_PKEY_free(m.pkey);
    ERR_clear_error();
    return rc;
}

int pbtls_ssl_ctx_use_material(SSL_CTX *ctx, const pbtls_settings_t *s, char *errstr, size_t errstr_size) {
    int rc = -1;
    material_t m = {0};
    if (!ctx || !s || (!s->keystore && (!s->cert || !s->key))) {
        seterr(errstr, errstr_size,
               "no client certificate configured (tls.cert and tls.key, or tls.keystore)");
        return -1;
    }
    if ((s->keystore ? load_keystore(s, &m, errstr, errstr_size)
                     : load_pem_material(s, &m, errstr, errstr_size)) != 0)
        goto out;
    if (X509_check_private_key(m.leaf, m.pkey) != 1) {
        if (s->keystore)
            seterr(errstr, errstr_size, "tls.keystore '%s': its private key does not match its certificate",
                   s->keystore);
        else
            seterr(errstr, errstr_size, "tls.key '%s': does not match certificate tls.cert '%s'", s->key,
                   s->cert);
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, m.leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, m.pkey) != 1) {
        seterr(errstr, errstr_size, "%s '%s': OpenSSL refused the certificate or key: %s", m.cert_key,
               m.cert_path, ossl_reason());
        goto out;
    }
    for (int i = 0; i < sk_X509_num(m.extra); i++) {
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(m.extra, i)) != 1) {
            seterr(errstr, errstr_size, "%s '%s': cannot add chain certificate #%d: %s", m.cert_key,
                   m.cert_path, i + 2, ossl_reason());
            goto out;
        }
    }
    rc = 0;
out:
    sk_X509_pop_free(m.extra, X509_free);
    X509_free(m.leaf);
    EVP_PKEY_free(m.pkey);
    ERR_clear_error();
    return rc;
}

/* ---- librdkafka ---- */

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, const char *from, int secret,
                    char *errstr, size_t errstr_size) {
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof err) == RD_KAFKA_CONF_OK) return 0;
    if (secret) /* librdkafka may quote the value in its message */
        seterr(errstr, errstr_size, "librdkafka refused %s (from %s; value not shown)", name, from);
    else
        seterr(errstr, errstr_size, "librdkafka refused %s=%s (from %s): %s", name, value, from, err);
    return -1;
}

/* Sets a property from a file's value; `key` and `path` name the setting for messages. */
static int conf_set_file(rd_kafka_conf_t *conf, const char *name, const char *key, const char *path,
                         char *errstr, size_t errstr_size) {
    char from[PATH_MAX + 64];
    snprintf(from, sizeof from, "%s '%s'", key, path);
    return conf_set(conf, name, path, from, 0, errstr, errstr_size);
}

static int conf_set_passphrase(rd_kafka_conf_t *conf, const char *name, const char *key, const char *path,
                               char *errstr, size_t errstr_size) {
    char pass[PBTLS_PASS_MAX], from[PATH_MAX + 64];
    int rc = -1;
    snprintf(from, sizeof from, "%s '%s'", key, path);
    if (read_passphrase(key, path, pass, sizeof pass, errstr, errstr_size) == 0)
        rc = conf_set(conf, name, pass, from, 1, errstr, errstr_size);
    OPENSSL_cleanse(pass, sizeof pass);
    return rc;
}

static void verifier_fail(pbtls_verifier_t *v, const char *msg, char *errstr, size_t errstr_size) {
    atomic_fetch_add(&v->failures, 1);
    pthread_mutex_lock(&v->lock);
    snprintf(v->last_failure, sizeof v->last_failure, "%s", msg);
    pthread_mutex_unlock(&v->lock);
    seterr(errstr, errstr_size, "%s", msg);
}

/* "localhost" from "localhost:9093", "::1" from "[::1]:9093": the name librdkafka verified against. */
static void broker_host(const char *broker, char *out, size_t size) {
    const char *end;
    if (broker[0] == '[' && (end = strchr(broker, ']')) != NULL) {
        copy_clean(out, size, broker + 1, (size_t)(end - broker - 1));
        return;
    }
    end = strrchr(broker, ':');
    copy_clean(out, size, broker, end ? (size_t)(end - broker) : strlen(broker));
}

/*
 * librdkafka calls this from OpenSSL's verify callback for each certificate of the chain (root
 * first, the broker's own at depth 0 last) and again for each error OpenSSL finds (a host-name
 * mismatch is reported at depth 0 before the chain walk). Returning 1 accepts, 0 refuses; returning
 * 1 while *x509_error is set would be taken as approval of that error, so every error is refused
 * here, with a cause that says what to fix.
 */
static int verify_cb(rd_kafka_t *rk, const char *broker_name, int32_t broker_id, int *x509_error, int depth,
                     const char *buf, size_t size, char *errstr, size_t errstr_size, void *opaque) {
    const pbtls_opaque_head_t *head = opaque;
    pbtls_verifier_t *v = head && head->magic == PBTLS_OPAQUE_MAGIC ? head->verifier : NULL;
    char msg[PBTLS_MSG_MAX], name[256];
    int ok = 0;
    X509 *x = NULL;
    (void)rk;
    (void)broker_id;

    copy_clean(name, sizeof name, broker_name ? broker_name : "?", broker_name ? strlen(broker_name) : 1);
    if (!v || v->magic != PBTLS_VERIFIER_MAGIC) {
        seterr(
            errstr, errstr_size,
            "broker %s: refused: predbridge's certificate verifier is not bound to this client (its opaque "
            "must begin with a pbtls_opaque_head_t set by pbtls_opaque_bind)",
            name);
        if (*x509_error == X509_V_OK) *x509_error = X509_V_ERR_APPLICATION_VERIFICATION;
        return 0;
    }
    ERR_set_mark(); /* this runs inside librdkafka's handshake: leave its error queue as found */
    x = x509_from_der((const unsigned char *)buf, size);
    if (*x509_error != X509_V_OK) {
        if (*x509_error == X509_V_ERR_HOSTNAME_MISMATCH || *x509_error == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            char host[256], sans[1024] = "";
            broker_host(name, host, sizeof host);
            if (x) sans_str(x, sans, sizeof sans);
            if (x && !sans[0]) { /* OpenSSL falls back to the CN only when there is no DNS SAN */
                pbtls_cert_info_t info;
                describe_x509(x, &info);
                snprintf(msg, sizeof msg,
                         "broker %s: certificate is for 'CN=%s' (it has no subjectAltName), not '%s'", name,
                         info.common_name, host);
            } else {
                snprintf(msg, sizeof msg, "broker %s: certificate is for '%s', not '%s'", name, sans, host);
            }
        } else {
            char why[1400];
            verify_error_text(*x509_error, depth, x,
                              "; tls.ca does not hold the CA that issued the broker's "
                              "certificate",
                              why, sizeof why);
            snprintf(msg, sizeof msg, "broker %s: %s", name, why);
        }
        verifier_fail(v, msg, errstr, errstr_size);
        goto out;
    }
    if (depth == 0 && v->pin_count > 0) {
        uint8_t pin[PBTLS_PIN_LEN];
        char txt[PBTLS_PIN_TEXT_SIZE];
        int match = 0;
        if (!x || spki_sha256(x, pin) != 0) {
            snprintf(msg, sizeof msg, "broker %s: cannot read the public key of its certificate", name);
            *x509_error = X509_V_ERR_APPLICATION_VERIFICATION;
            verifier_fail(v, msg, errstr, errstr_size);
            goto out;
        }
        for (size_t i = 0; i < v->pin_count; i++)
            match |= CRYPTO_memcmp(pin, v->pins[i], PBTLS_PIN_LEN) == 0;
        if (!match) {
            pbtls_pin_format(pin, txt, sizeof txt);
            snprintf(msg, sizeof msg, "broker %s: public key %s matches none of the %zu configured tls.pins",
                     name, txt, v->pin_count);
            *x509_error = X509_V_ERR_APPLICATION_VERIFICATION;
            verifier_fail(v, msg, errstr, errstr_size);
            goto out;
        }
    }
    ok = 1;
out:
    X509_free(x);
    ERR_pop_to_mark();
    return ok;
}

int pbtls_apply(rd_kafka_conf_t *conf, const pbtls_settings_t *s, pbtls_verifier_t **verifier_out,
                char *errstr, size_t errstr_size) {
    int rc = -1;
    pbtls_verifier_t *v = NULL;

    if (verifier_out) *verifier_out = NULL;
    if (!conf || !s || !verifier_out) {
        seterr(errstr, errstr_size, "pbtls_apply: invalid argument");
        goto out;
    }
    if (pbtls_policy_init(errstr, errstr_size) != 0 || pbtls_policy_verify(errstr, errstr_size) != 0)
        goto out;
    if (!s->ca) {
        seterr(errstr, errstr_size,
               "tls.ca: not set; it names the PEM file of the CA that issued the brokers' "
               "certificates");
        goto out;
    }
    if (s->keystore && (s->cert || s->key)) {
        seterr(errstr, errstr_size,
               "tls.keystore and tls.cert/tls.key are alternatives: set one or the other");
        goto out;
    }
    if (!s->keystore && (!s->cert || !s->key)) {
        seterr(errstr, errstr_size,
               "%s: not set; a client certificate is required (tls.cert and tls.key, or "
               "tls.keystore)",
               !s->cert ? "tls.cert" : "tls.key");
        goto out;
    }
    if (s->pin_count > PBTLS_MAX_PINS) {
        seterr(errstr, errstr_size, "tls.pins: %zu pins, at most %d", s->pin_count, PBTLS_MAX_PINS);
        goto out;
    }
    if (conf_set(conf, "security.protocol", "ssl", "predbridge's TLS policy", 0, errstr, errstr_size) != 0 ||
        conf_set_file(conf, "ssl.ca.location", "tls.ca", s->ca, errstr, errstr_size) != 0)
        goto out;
    if (s->keystore) {
        if (conf_set_file(conf, "ssl.keystore.location", "tls.keystore", s->keystore, errstr, errstr_size) !=
                0 ||
            (s->keystore_passphrase_file &&
             conf_set_passphrase(conf, "ssl.keystore.password", "tls.keystore_passphrase_file",
                                 s->keystore_passphrase_file, errstr, errstr_size) != 0))
            goto out;
    } else {
        if (conf_set_file(conf, "ssl.certificate.location", "tls.cert", s->cert, errstr, errstr_size) != 0 ||
            conf_set_file(conf, "ssl.key.location", "tls.key", s->key, errstr, errstr_size) != 0 ||
            (s->key_passphrase_file &&
             conf_set_passphrase(conf, "ssl.key.password", "tls.key_passphrase_file", s->key_passphrase_file,
                                 errstr, errstr_size) != 0))
            goto out;
    }
    if (s->crl && conf_set_file(conf, "ssl.crl.location", "tls.crl", s->crl, errstr, errstr_size) != 0)
        goto out;
    if (conf_set(conf, "ssl.endpoint.identification.algorithm", "https", "predbridge's TLS policy", 0, errstr,
                 errstr_size) != 0 ||
        conf_set(conf, "enable.ssl.certificate.verification", "true", "predbridge's TLS policy", 0, errstr,
                 errstr_size) != 0)
        goto out;

    if (!(v = calloc(1, sizeof *v)) || pthread_mutex_init(&v->lock, NULL) != 0) {
        free(v);
        v = NULL;
        seterr(errstr, errstr_size, "pbtls_apply: out of memory");
        goto out;
    }
    v->magic = PBTLS_VERIFIER_MAGIC;
    v->pin_count = s->pin_count;
    memcpy(v->pins, s->pins, sizeof v->pins);
    atomic_init(&v->failures, 0);
    if (rd_kafka_conf_set_ssl_cert_verify_cb(conf, verify_cb) != RD_KAFKA_CONF_OK) {
        seterr(errstr, errstr_size, "librdkafka was built without SSL support: cannot verify brokers");
        goto out;
    }
    *verifier_out = v;
    v = NULL;
    rc = 0;
out:
    pbtls_verifier_free(v);
    return rc;
}

void pbtls_opaque_bind(pbtls_opaque_head_t *head, pbtls_verifier_t *v) {
    if (!head) return;
    head->magic = PBTLS_OPAQUE_MAGIC;
    head->verifier = v;
}

void pbtls_verifier_free(pbtls_verifier_t *v) {
    if (!v) return;
    pthread_mutex_destroy(&v->lock);
    v->magic = 0;
    free(v);
}

void pbtls_verifier_last_failure(pbtls_verifier_t *v, char *buf, size_t size) {
    if (!buf || size == 0) return;
    buf[0] = '\0';
    if (!v) return;
    pthread_mutex_lock(&v->lock);
    snprintf(buf, size, "%s", v->last_failure);
    pthread_mutex_unlock(&v->lock);
}

unsigned long pbtls_verifier_failures(pbtls_verifier_t *v) {
    return v ? atomic_load(&v->failures) : 0;
}
