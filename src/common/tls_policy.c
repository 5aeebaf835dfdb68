/* tls_policy.c: predbridge's TLS policy: a TLS 1.3 floor compiled in, loaded into OpenSSL last and proven. */
#include "common/tls_internal.h"

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
