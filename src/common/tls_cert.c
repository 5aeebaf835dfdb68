/* tls_cert.c: describing certificates and checking our own material (key, chain, validity, usage, CRL). */
#include "common/tls_internal.h"

#include "common/log.h"

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

/* Copies len bytes, replacing control characters, and bytes that are not UTF-8 with U+FFFD, cut at
 * a whole character: names come from certificates, i.e. from whoever made them, and end up in logs,
 * metrics and JSON, which need valid UTF-8. */
void pbtlsi_copy_clean(char *dst, size_t size, const char *src, size_t len) {
    if (size == 0) return;
    char *tmp = malloc(len + 1);
    size_t j = 0;
    if (!tmp) {
        dst[0] = '\0';
        return;
    }
    for (size_t i = 0; i < len && src[i]; i++) {
        unsigned char c = (unsigned char)src[i];
        tmp[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    tmp[j] = '\0';
    pblog_utf8_clean(dst, size, tmp);
    free(tmp);
}

static void name_str(const X509_NAME *name, char *out, size_t size) {
    BIO *b = BIO_new(BIO_s_mem());
    out[0] = '\0';
    /* RFC 2253 order and escaping: the form Kafka's SSL principals (and so its ACLs) use. */
    if (b && name && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0) pbtlsi_copy_clean(out, size, p, (size_t)n);
    }
    BIO_free(b);
}

static void append(char *buf, size_t size, const char *sep, const char *item) {
    size_t len = strlen(buf);
    if (len + 1 >= size) return;
    snprintf(buf + len, size - len, "%s%s", len ? sep : "", item);
}

void pbtlsi_sans_str(const X509 *x, char *out, size_t size) {
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    out[0] = '\0';
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char item[300], clean[256];
        const char *prefix = g->type == GEN_DNS ? "DNS" : g->type == GEN_URI ? "URI" : "email";
        if (g->type == GEN_DNS || g->type == GEN_URI || g->type == GEN_EMAIL) {
            pbtlsi_copy_clean(clean, sizeof clean, (const char *)ASN1_STRING_get0_data(g->d.ia5),
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

void pbtlsi_describe_x509(X509 *x, pbtls_cert_info_t *info) {
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
        if (n > 0) pbtlsi_copy_clean(info->common_name, sizeof info->common_name, (const char *)utf8, (size_t)n);
        OPENSSL_free(utf8);
    }
    pbtlsi_sans_str(x, info->sans, sizeof info->sans);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex) pbtlsi_copy_clean(info->serial, sizeof info->serial, hex, strlen(hex));
    OPENSSL_free(hex);
    BN_free(bn);
    if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1) {
        for (unsigned int i = 0; i < mdlen && 3 * i + 3 <= sizeof info->sha256_fingerprint; i++)
            snprintf(info->sha256_fingerprint + 3 * i, 4, i + 1 < mdlen ? "%02X:" : "%02X", md[i]);
    }
    if (pbtlsi_spki_sha256(x, pin) == 0) pbtls_pin_format(pin, info->spki_pin, sizeof info->spki_pin);
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
        x = pbtlsi_x509_from_der(der, len);
    }
    if (x) pbtlsi_describe_x509(x, info);
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
int pbtlsi_read_passphrase(const char *key, const char *path, char *buf, size_t size, char *errstr,
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
        if (pbtlsi_read_passphrase("tls.key_passphrase_file", s->key_passphrase_file, pass, sizeof pass, errstr,
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
        if (pbtlsi_read_passphrase("tls.keystore_passphrase_file", s->keystore_passphrase_file, pass, sizeof pass,
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

/* librdkafka sets X509_V_FLAG_CRL_CHECK (not _ALL) for ssl.crl.location: only the broker's own
 * certificate is looked up, and it needs a CRL from its issuer. */
const char *pbtls_crl_hint(int x509_error) {
    switch (x509_error) {
    case X509_V_ERR_CERT_REVOKED:
        return "; tls.crl lists it as revoked by its CA: the broker needs a new certificate";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        return "; tls.crl holds no CRL from the CA that issued it, and with tls.crl set the broker's "
               "certificate must be covered: add that CA's CRL";
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return "; the CRL in tls.crl is past its next update: replace it with the CA's current CRL";
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return "; the CRL in tls.crl is not valid yet: check this machine's clock";
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
        return "; the CRL in tls.crl cannot be used (not signed by the CA it names, or malformed): "
               "replace it with the CA's current CRL";
    default:
        return NULL;
    }
}

/* "<reason> (certificate 'S' issued by 'I' at depth N[, valid ...])[hint]" for a failed verification. */
void pbtlsi_verify_error_text(int err, int depth, X509 *cur, const char *trust_hint, char *out, size_t size) {
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
    const char *hint = is_trust_error(err) ? trust_hint : pbtls_crl_hint(err);
    snprintf(out, size, "%s (certificate '%s' issued by '%s' at depth %d%s)%s",
             X509_verify_cert_error_string(err), subj, iss, depth, dates, hint ? hint : "");
}

void pbtls_warn_expiry(const char *what, time_t not_after, time_t now, int days, pbtls_warn_fn warn,
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
        pbtlsi_verify_error_text(X509_STORE_CTX_get_error(ctx), X509_STORE_CTX_get_error_depth(ctx),
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
        pbtls_warn_expiry(what, na, now, s->expiry_warn_days, warn, warn_ctx);
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

/* The loaded key belongs to the loaded certificate; errstr names the files (or keystore) if not. */
static int key_matches(const pbtls_settings_t *s, const material_t *m, char *errstr, size_t errstr_size) {
    if (X509_check_private_key(m->leaf, m->pkey) == 1) return 0;
    if (s->keystore)
        seterr(errstr, errstr_size, "tls.keystore '%s': its private key does not match its certificate",
               s->keystore);
    else
        seterr(errstr, errstr_size, "tls.key '%s': does not match certificate tls.cert '%s'", s->key, s->cert);
    return -1;
}

int pbtlsi_settings_complete(const pbtls_settings_t *s, char *errstr, size_t errstr_size) {
    if (!s->ca) {
        seterr(errstr, errstr_size,
               "tls.ca: not set; it names the PEM file of the CA that issued the brokers' certificates");
        return -1;
    }
    if (s->keystore && (s->cert || s->key)) {
        seterr(errstr, errstr_size, "tls.keystore and tls.cert/tls.key are alternatives: set one or the other");
        return -1;
    }
    if (!s->keystore && (!s->cert || !s->key)) {
        seterr(errstr, errstr_size,
               "%s: not set; a client certificate is required (tls.cert and tls.key, or tls.keystore)",
               !s->cert ? "tls.cert" : "tls.key");
        return -1;
    }
    return 0;
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
    if (pbtlsi_settings_complete(s, errstr, errstr_size) != 0) goto out;
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
    if (info) pbtlsi_describe_x509(m.leaf, info);

    if (key_matches(s, &m, errstr, errstr_size) != 0) goto out;
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
        pbtls_warn_expiry(what, not_after, now, s->expiry_warn_days, warn, warn_ctx);
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
    if (key_matches(s, &m, errstr, errstr_size) != 0) goto out;
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

void *pbtls_create_checked(const pbtls_settings_t *s, pbtls_cert_info_t *info, pbtls_warn_fn warn, void *warn_ctx,
                           pbtls_create_fn create, pbtls_destroy_fn destroy, void *ctx, int *material_failed,
                           char *errstr, size_t errstr_size) {
    int dummy;
    if (!material_failed) material_failed = &dummy;
    *material_failed = 1;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (pbtls_check_material(s, time(NULL), info, warn, warn_ctx, errstr, errstr_size) != 0) return NULL;
        *material_failed = 0;
        void *obj = create(ctx, errstr, errstr_size);
        if (!obj) return NULL;
        pbtls_cert_info_t after;
        if (pbtls_check_material(s, time(NULL), &after, NULL, NULL, errstr, errstr_size) == 0 &&
            !strcmp(after.sha256_fingerprint, info->sha256_fingerprint))
            return obj;
        destroy(ctx, obj);
        *material_failed = 1;
    }
    snprintf(errstr, errstr_size, "the TLS files kept changing while they were loaded");
    return NULL;
}
