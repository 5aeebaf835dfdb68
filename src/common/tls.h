/* tls.h: predbridge's TLS policy (TLS 1.3 minimum, verified broker, SPKI pins) and certificate checks,
 * shared by predbridged and libpredbridge so both sides apply identical rules with identical code. */
#ifndef PB_COMMON_TLS_H
#define PB_COMMON_TLS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define PBTLS_PIN_LEN 32 /* SHA-256 */
#define PBTLS_MAX_PINS 16

/* TLS material and broker-identity settings, as read from a config file. Strings are owned by the
 * config that holds this struct; NULL means unset. */
typedef struct pbtls_settings {
    const char *ca;                       /* PEM CA bundle the broker must chain to (required) */
    const char *cert;                     /* PEM client certificate (chain allowed) */
    const char *key;                      /* PEM private key */
    const char *key_passphrase_file;      /* file holding the key's passphrase (first line) */
    const char *keystore;                 /* PKCS#12 keystore, instead of cert + key */
    const char *keystore_passphrase_file; /* file holding the keystore's passphrase */
    const char *crl;                      /* PEM CRL file checked against the broker chain */
    uint8_t pins[PBTLS_MAX_PINS][PBTLS_PIN_LEN];
    size_t pin_count;
    int expiry_warn_days;
} pbtls_settings_t;

/*
 * Loads predbridge's OpenSSL policy into this process: MinProtocol TLSv1.3 for every SSL_CTX
 * created afterwards (OpenSSL's ssl_conf "system_default"), from text compiled into the binary,
 * after OpenSSL's own default configuration so a system or $OPENSSL_CONF file cannot weaken it.
 * Then proves it: a fresh client SSL_CTX must report TLS 1.3 as its minimum.
 * Call once, before any librdkafka client is created. Thread-safe (runs once); returns 0 or -1 with
 * the cause in errstr.
 */
__attribute__((warn_unused_result)) int pbtls_policy_init(char *errstr, size_t errstr_size);

/* Re-proves the policy now: a fresh client SSL_CTX must still have TLS 1.3 as its minimum (no upper
 * limit below it) and security level 2 or more. Catches code in the same process that reloaded
 * OpenSSL's configuration after pbtls_policy_init. pbtls_apply calls it. Returns 0 or -1 with errstr. */
__attribute__((warn_unused_result)) int pbtls_policy_verify(char *errstr, size_t errstr_size);

/* The OpenSSL configuration text compiled into the binary (config/openssl-tls13.cnf is a copy). */
const char *pbtls_policy_text(void);

/* Parses one pin: "sha256//BASE64" or bare BASE64 of a 32-byte SHA-256 of the SubjectPublicKeyInfo.
 * Returns 0 or -1 with the reason. */
__attribute__((warn_unused_result)) int pbtls_pin_parse(const char *text, uint8_t out[PBTLS_PIN_LEN],
                                                        char *errstr, size_t errstr_size);

/* SHA-256 of the DER SubjectPublicKeyInfo of a DER certificate. Returns 0 or -1. */
int pbtls_spki_sha256_der(const unsigned char *der, size_t len, uint8_t out[PBTLS_PIN_LEN]);

/* Formats a pin as "sha256//BASE64" into out: 52 characters plus the NUL, so out needs at least
 * PBTLS_PIN_TEXT_SIZE (53) bytes; a smaller buffer gets a truncated, NUL-terminated text. */
#define PBTLS_PIN_TEXT_SIZE 53
void pbtls_pin_format(const uint8_t pin[PBTLS_PIN_LEN], char *out, size_t out_size);

/* What a certificate check found, for logs, `predbridge check` and metrics. */
typedef struct pbtls_cert_info {
    char subject[512];
    char issuer[512];
    char common_name[256];
    char sans[1024]; /* "DNS:a, IP:1.2.3.4" */
    char serial[128];
    char sha256_fingerprint[100]; /* hex with colons */
    char spki_pin[64];            /* sha256//BASE64 */
    time_t not_before, not_after;
    time_t ca_not_after;   /* expiry of the CA certificate in tls.ca, 0 if unknown */
    int client_auth_usage; /* 1 if EKU absent or contains clientAuth */
} pbtls_cert_info_t;

/*
 * Checks our own client material: files readable, key matches certificate, certificate chains to
 * the configured CA, is within its validity window, may be used for client authentication.
 * Fills info (may be NULL) as far as the check got, so a failed check can still show the
 * certificate; ca_not_after is the earliest expiry among the CA certificates of the verified chain.
 * Warnings (key or passphrase file readable by group/others, certificate or CA expiring within
 * expiry_warn_days, stale CRL) are reported through warn(ctx, message) and do not fail the check.
 * `now` is the time to check at (normally time(NULL)). Never prompts for a passphrase.
 * Returns 0, or -1 with the cause in errstr naming the file ("tls.key '/x': does not match
 * certificate tls.cert '/y'").
 */
typedef void (*pbtls_warn_fn)(void *ctx, const char *message);
__attribute__((warn_unused_result)) int pbtls_check_material(const pbtls_settings_t *s, time_t now,
                                                             pbtls_cert_info_t *info, pbtls_warn_fn warn,
                                                             void *warn_ctx, char *errstr,
                                                             size_t errstr_size);

/* Warns through warn(ctx, "<what> expires on <date>, in N days; renew it before then") when not_after
 * is less than `days` days after now and not past: pbtls_check_material's expiry warning, for material
 * it did not read (a certificate already in use). days <= 0 or a NULL warn: never. */
void pbtls_warn_expiry(const char *what, time_t not_after, time_t now, int days, pbtls_warn_fn warn, void *ctx);

/* Checks s's material, creates with create(ctx) something that reads the same files itself (a
 * librdkafka client: rd_kafka_new loads them), then checks again: if the certificate was replaced in
 * between, that is destroyed with destroy(ctx, obj) and it tries again (3 times). Returns create's
 * result with info filled, or NULL with errstr; *material_failed (may be NULL) is 1 when the files,
 * not create, were at fault. */
typedef void *(*pbtls_create_fn)(void *ctx, char *errstr, size_t errstr_size);
typedef void (*pbtls_destroy_fn)(void *ctx, void *obj);
void *pbtls_create_checked(const pbtls_settings_t *s, pbtls_cert_info_t *info, pbtls_warn_fn warn, void *warn_ctx,
                           pbtls_create_fn create, pbtls_destroy_fn destroy, void *ctx, int *material_failed,
                           char *errstr, size_t errstr_size);

/* Loads the client certificate (with any chain that came with it) and private key of s (tls.cert +
 * tls.key, or tls.keystore; passphrases from their files, never a prompt) into an OpenSSL client
 * context, for code that speaks TLS itself (`predbridge check`). Fails when the key does not match
 * the certificate. Returns 0, or -1 with the cause (which key, which file) in errstr. */
struct ssl_ctx_st;
__attribute__((warn_unused_result)) int pbtls_ssl_ctx_use_material(struct ssl_ctx_st *ctx,
                                                                   const pbtls_settings_t *s, char *errstr,
                                                                   size_t errstr_size);

/* Describes a DER or PEM certificate (no validation). Returns 0 or -1. */
int pbtls_describe_der(const unsigned char *der, size_t len, pbtls_cert_info_t *info);

/* What to do about an OpenSSL verification error that comes from tls.crl (the broker's certificate is
 * revoked, tls.crl has no CRL of its CA, or that CRL is out of date or unusable): a hint beginning with
 * "; ", or NULL for any other error. */
const char *pbtls_crl_hint(int x509_error);

/* Formats t as "2025-01-31 12:00:00 UTC" (the form every message of this module uses). */
void pbtls_format_time(time_t t, char *out, size_t out_size);

/*
 * Applies the security settings to a librdkafka configuration: security.protocol=ssl, CA, client
 * certificate and key (or keystore) with passphrases read from their files, CRL, host-name
 * verification (https), certificate verification on, and the certificate-verify callback that
 * enforces pins and turns verification failures into readable causes. The pins are copied; the
 * verifier returned in *verifier_out must outlive the rd_kafka_t (bind it to the conf's opaque with
 * pbtls_opaque_bind, below) and is freed with pbtls_verifier_free after rd_kafka_destroy.
 * Loads and re-proves the TLS policy first (pbtls_policy_init, pbtls_policy_verify). Call it after
 * any kafka.* pass-through so these values win. Passphrases are read here and handed to librdkafka
 * only (it clears them after rd_kafka_new); they never appear in errstr.
 * Returns 0, or -1 with the cause (which key, which file) in errstr; on failure *verifier_out is
 * NULL and conf may be partly set (destroy it).
 * Callback thread: librdkafka's broker threads; the verifier is thread-safe.
 */
typedef struct pbtls_verifier pbtls_verifier_t;
__attribute__((warn_unused_result)) int pbtls_apply(rd_kafka_conf_t *conf, const pbtls_settings_t *s,
                                                    pbtls_verifier_t **verifier_out, char *errstr,
                                                    size_t errstr_size);
void pbtls_verifier_free(pbtls_verifier_t *v);

/*
 * How librdkafka's certificate-verify callback finds its verifier. librdkafka hands every callback
 * the one opaque set with rd_kafka_conf_set_opaque(), which belongs to the application, and the
 * rd_kafka_t is not known before rd_kafka_new() (while connections may start inside it), so neither
 * a second opaque nor a registry keyed by handle works. Instead, the struct the caller sets as its
 * opaque begins with a pbtls_opaque_head_t (C11 6.7.2.1p15: a pointer to a struct, suitably
 * converted, points to its first member):
 *
 *     struct producer { pbtls_opaque_head_t tls;  // must be the first member
 *                       ... };
 *     PBTLS_OPAQUE_HEAD_CHECK(struct producer, tls);
 *
 *     pbtls_verifier_t *v;
 *     if (pbtls_apply(conf, &cfg->tls, &v, errstr, sizeof errstr) != 0) ...
 *     pbtls_opaque_bind(&p->tls, v);
 *     rd_kafka_conf_set_opaque(conf, p);          // the application's own pointer, as before
 *     rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
 *     ...
 *     rd_kafka_destroy(rk);
 *     pbtls_verifier_free(p->tls.verifier);
 *
 * The callback fails closed: with no opaque, or one whose head was not bound (magic mismatch), every
 * broker certificate is refused with a message saying so.
 */
#define PBTLS_OPAQUE_MAGIC 0x7062746cU /* "pbtl" */
typedef struct pbtls_opaque_head {
    uint32_t magic;             /* PBTLS_OPAQUE_MAGIC once bound */
    pbtls_verifier_t *verifier; /* owned by the caller: pbtls_verifier_free after rd_kafka_destroy */
} pbtls_opaque_head_t;
#define PBTLS_OPAQUE_HEAD_CHECK(type, member)                                                                \
    _Static_assert(offsetof(type, member) == 0, #type ": pbtls_opaque_head_t must be the first member")
void pbtls_opaque_bind(pbtls_opaque_head_t *head, pbtls_verifier_t *v);

/* The cause of the last broker verification failure seen by this verifier ("broker localhost:9093:
 * certificate is for 'wrong.example.invalid', not 'localhost'"), or "" if none. Thread-safe; copies into buf.
 */
void pbtls_verifier_last_failure(pbtls_verifier_t *v, char *buf, size_t size);
/* Number of verification failures seen (for metrics). Thread-safe. */
unsigned long pbtls_verifier_failures(pbtls_verifier_t *v);

/*
 * The TLS version and cipher suite negotiated with each broker, as the verifier saw them. librdkafka
 * does not expose them, and its certificate-verify callback gets no SSL object; the verifier reads
 * them from the OpenSSL connection that is verifying the certificate (TLS 1.3 fixes both in the
 * ServerHello, before the broker's Certificate). An entry is made or updated only when the broker's
 * own certificate (depth 0) passed every check; a handshake can still fail after that (the broker
 * refusing our certificate, say), so this is "last negotiated", not "connected". One entry per broker
 * name, at most PBTLS_MAX_BROKER_TLS brokers; later ones are not recorded.
 */
#define PBTLS_MAX_BROKER_TLS 32
typedef struct pbtls_broker_tls {
    char broker[256]; /* the name librdkafka connects to and verifies: "host:port" */
    char version[16]; /* "TLSv1.3" */
    char cipher[64];  /* "TLS_AES_256_GCM_SHA384" */
} pbtls_broker_tls_t;
/* Copies up to max entries into out, in the order the brokers were first seen; returns how many
 * were copied. Thread-safe. */
size_t pbtls_verifier_broker_tls(pbtls_verifier_t *v, pbtls_broker_tls_t *out, size_t max);
/* How many times an entry was made or changed: copy again only when this differs from the value at
 * the last copy. Thread-safe. */
unsigned long pbtls_verifier_tls_changes(pbtls_verifier_t *v);
/* Calls fn(ctx, entry) each time an entry is made or changed (so once per broker while nothing
 * changes): on a librdkafka broker thread, inside the handshake, without the verifier's lock held;
 * fn must be quick and must not call librdkafka. Set it before rd_kafka_new; v may be NULL (no-op). */
typedef void (*pbtls_tls_change_fn)(void *ctx, const pbtls_broker_tls_t *entry);
void pbtls_verifier_on_tls_change(pbtls_verifier_t *v, pbtls_tls_change_fn fn, void *ctx);

/* Keys a librdkafka pass-through (`kafka.<property>`) may not set, because they would weaken or
 * bypass the TLS policy or delivery guarantees. Returns a reason if `property` is refused, else NULL. */
const char *pbtls_denied_kafka_property(const char *property);

/* Sets what every predbridge Kafka client (predbridged's producer, libpredbridge's consumer) starts
 * from, before the pass-through, which may change it. Returns 0, or -1 with errstr. */
int pbtls_kafka_client_defaults(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);

#endif
