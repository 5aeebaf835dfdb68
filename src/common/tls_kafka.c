/* tls_kafka.c: the TLS settings and broker-certificate verify callback handed to librdkafka. */
#include "common/tls_internal.h"

struct pbtls_verifier {
    uint32_t magic;
    size_t pin_count;
    uint8_t pins[PBTLS_MAX_PINS][PBTLS_PIN_LEN];
    atomic_ulong failures;
    pthread_mutex_t lock; /* guards last_failure, tls, n_tls */
    char last_failure[PBTLS_MSG_MAX];
    pbtls_broker_tls_t tls[PBTLS_MAX_BROKER_TLS];
    size_t n_tls;
    atomic_ulong tls_changes;
    pbtls_tls_change_fn on_tls_change; /* set before librdkafka's threads start, then only read */
    void *on_tls_change_ctx;
};

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
    if (pbtlsi_read_passphrase(key, path, pass, sizeof pass, errstr, errstr_size) == 0)
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
        pbtlsi_copy_clean(out, size, broker + 1, (size_t)(end - broker - 1));
        return;
    }
    end = strrchr(broker, ':');
    pbtlsi_copy_clean(out, size, broker, end ? (size_t)(end - broker) : strlen(broker));
}

/* ---- the connection being verified ----
 *
 * librdkafka hands its certificate-verify callback the certificate, not the SSL connection, and has
 * no hook on its SSL_CTX or SSL objects. OpenSSL calls an ex_data index's new_func from SSL_new with
 * the new object, on the calling thread. librdkafka makes a broker connection's SSL object and runs
 * its whole handshake, verify callback included, on that broker's thread, so the SSL object made
 * last on the verifying thread is the one being verified; record_tls still checks that its peer
 * chain begins with the certificate being verified before it reads anything. Process-wide because
 * OpenSSL's ex_data indices are; set up once by pbtls_apply.
 */
static pthread_once_t g_ssl_hook_once = PTHREAD_ONCE_INIT;
static _Thread_local SSL *g_thread_ssl; /* made last on this thread; NULL once freed here */

static void ssl_made(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)ptr, (void)ad, (void)idx, (void)argl, (void)argp;
    g_thread_ssl = parent;
}

static void ssl_freed(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)ptr, (void)ad, (void)idx, (void)argl, (void)argp;
    if (g_thread_ssl == parent) g_thread_ssl = NULL;
}

static void ssl_hook_once(void) {
    /* On failure (out of memory) nothing is recorded: the negotiated version and cipher stay unknown. */
    (void)SSL_get_ex_new_index(0, NULL, ssl_made, NULL, ssl_freed);
}

/* Records the version and cipher of the connection verifying x, the broker's own certificate, which
 * passed every check. Anything unexpected records nothing: this feeds metrics and logs, never the
 * verification's outcome. name is already clean (no control characters). */
static void record_tls(pbtls_verifier_t *v, const char *name, X509 *x) {
    SSL *ssl = g_thread_ssl;
    STACK_OF(X509) *chain = ssl && !SSL_is_server(ssl) ? SSL_get_peer_cert_chain(ssl) : NULL;
    const SSL_CIPHER *cipher = chain ? SSL_get_current_cipher(ssl) : NULL;
    if (!x || !cipher || sk_X509_num(chain) < 1 || X509_cmp(sk_X509_value(chain, 0), x) != 0) return;
    pbtls_broker_tls_t now;
    snprintf(now.broker, sizeof now.broker, "%s", name);
    snprintf(now.version, sizeof now.version, "%s", SSL_get_version(ssl));
    snprintf(now.cipher, sizeof now.cipher, "%s", SSL_CIPHER_get_name(cipher));
    int changed = 0;
    pthread_mutex_lock(&v->lock);
    size_t i = 0;
    while (i < v->n_tls && strcmp(v->tls[i].broker, now.broker) != 0) i++;
    if (i < PBTLS_MAX_BROKER_TLS &&
        (i == v->n_tls || strcmp(v->tls[i].version, now.version) || strcmp(v->tls[i].cipher, now.cipher))) {
        v->tls[i] = now;
        v->n_tls += i == v->n_tls;
        atomic_fetch_add(&v->tls_changes, 1);
        changed = 1;
    }
    pthread_mutex_unlock(&v->lock);
    if (changed && v->on_tls_change) v->on_tls_change(v->on_tls_change_ctx, &now);
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

    pbtlsi_copy_clean(name, sizeof name, broker_name ? broker_name : "?", broker_name ? strlen(broker_name) : 1);
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
    x = pbtlsi_x509_from_der((const unsigned char *)buf, size);
    if (*x509_error != X509_V_OK) {
        if (*x509_error == X509_V_ERR_HOSTNAME_MISMATCH || *x509_error == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            char host[256], sans[1024] = "";
            broker_host(name, host, sizeof host);
            if (x) pbtlsi_sans_str(x, sans, sizeof sans);
            if (x && !sans[0]) { /* OpenSSL falls back to the CN only when there is no DNS SAN */
                pbtls_cert_info_t info;
                pbtlsi_describe_x509(x, &info);
                snprintf(msg, sizeof msg,
                         "broker %s: certificate is for 'CN=%s' (it has no subjectAltName), not '%s'", name,
                         info.common_name, host);
            } else {
                snprintf(msg, sizeof msg, "broker %s: certificate is for '%s', not '%s'", name, sans, host);
            }
        } else {
            char why[1400];
            pbtlsi_verify_error_text(*x509_error, depth, x,
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
        if (!x || pbtlsi_spki_sha256(x, pin) != 0) {
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
    if (depth == 0) record_tls(v, name, x);
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
    if (pbtlsi_settings_complete(s, errstr, errstr_size) != 0) goto out;
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
    atomic_init(&v->tls_changes, 0);
    (void)pthread_once(&g_ssl_hook_once, ssl_hook_once); /* before rd_kafka_new makes SSL objects */
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

size_t pbtls_verifier_broker_tls(pbtls_verifier_t *v, pbtls_broker_tls_t *out, size_t max) {
    if (!v || !out) return 0;
    pthread_mutex_lock(&v->lock);
    size_t n = v->n_tls < max ? v->n_tls : max;
    memcpy(out, v->tls, n * sizeof *out);
    pthread_mutex_unlock(&v->lock);
    return n;
}

unsigned long pbtls_verifier_tls_changes(pbtls_verifier_t *v) {
    return v ? atomic_load(&v->tls_changes) : 0;
}

void pbtls_verifier_on_tls_change(pbtls_verifier_t *v, pbtls_tls_change_fn fn, void *ctx) {
    if (!v) return;
    v->on_tls_change = fn;
    v->on_tls_change_ctx = ctx;
}
