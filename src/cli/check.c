/* check.c: `predbridge check`: diagnoses a predbridged or consumer config: certificates, key, chain, pins,
 * then a live mTLS handshake and Kafka authorization probes against each bootstrap broker. */
#include "cli.h"

#include "common/config.h"
#include "common/log.h"
#include "common/props.h"
#include "common/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#define CONNECT_TIMEOUT_MS 5000
#define IO_TIMEOUT_S 10
#define MAX_RESPONSE (1 << 20)
#define CLIENT_ID "predbridge-check"
#define KAFKA_PRODUCE 0
#define KAFKA_FETCH 1
#define KAFKA_FIND_COORDINATOR 10
#define KAFKA_API_VERSIONS 18

static void usage(FILE *f) {
    fprintf(f,
            "usage: predbridge check --config FILE [--json]\n"
            "\n"
            "Diagnoses a predbridged (producer) or libpredbridge (consumer: has group.id or topics) config:\n"
            "each certificate (subject, issuer, SANs, validity, fingerprints), key match, chain to tls.ca,\n"
            "pins; then, for each bootstrap broker, a TLS 1.3 handshake with the same policy (negotiated\n"
            "version and cipher, broker chain, host name, pins), whether the broker accepts the client\n"
            "certificate, and whether the principal may write (producer) or read (consumer) its topics.\n"
            "Nothing is ever written to Kafka: write permission is probed with an empty Produce request,\n"
            "which the broker refuses as invalid after authorizing it.\n"
            "\n"
            "  -c, --config FILE  the config to check\n"
            "  -j, --json         one JSON object on standard output instead of the human report\n"
            "  -h, --help         this text\n"
            "\n"
            "Exit codes: 0 everything is right (warnings allowed), 1 something is wrong, 2 usage.\n");
}

/* ---- the report: human lines as we go, or one JSON document at the end ---- */

typedef struct report {
    int json;
    json_t *root, *checks, *problems, *warnings;
    size_t n_problems, n_warnings; /* counted apart from the arrays: the verdict never depends on jansson */
    const char *where;             /* "" or "broker host:port: ", prefixed to problems */
} report_t;

/* A JSON string of any text: paths and certificate names may hold bytes that are not UTF-8, for which
 * json_string() returns NULL and the problem or certificate would silently drop out of the report. */
static json_t *jtext(const char *text) {
    size_t size = 3 * strlen(text) + 1; /* each bad byte becomes a 3-byte U+FFFD */
    char *clean = malloc(size);
    json_t *j = clean ? json_string(pblog_utf8_clean(clean, size, text)) : NULL;
    free(clean);
    return j;
}

__attribute__((format(printf, 4, 5))) static void item(report_t *r, const char *status, const char *name,
                                                       const char *fmt, ...) {
    char msg[4096], full[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(r->checks,
                          json_pack("{s:s,s:s,s:o}", "check", name, "status", status, "detail", jtext(msg)));
    snprintf(full, sizeof full, "%s%s", r->where, msg);
    if (!strcmp(status, "fail")) {
        r->n_problems++;
        json_array_append_new(r->problems, jtext(full));
    }
    if (!strcmp(status, "warn")) {
        r->n_warnings++;
        json_array_append_new(r->warnings, jtext(full));
    }
    const char *shown = !strcmp(status, "fail") ? "FAIL" : !strcmp(status, "warn") ? "WARN" : status;
    if (!r->json) printf("  %-5s %s\n", shown, msg);
}

static void warn_cb(void *ctx, const char *message) {
    item(ctx, "warn", "material.warning", "%s", message);
}

/* Prints and returns a JSON description of one certificate. */
static json_t *cert_json(report_t *r, const char *label, const pbtls_cert_info_t *in, time_t now) {
    char nb[40], na[40], left[64];
    pbtls_format_time(in->not_before, nb, sizeof nb);
    pbtls_format_time(in->not_after, na, sizeof na);
    if (now > in->not_after)
        snprintf(left, sizeof left, "EXPIRED");
    else if (now < in->not_before)
        snprintf(left, sizeof left, "NOT YET VALID");
    else
        snprintf(left, sizeof left, "%lld days left", (long long)((in->not_after - now) / 86400));
    if (!r->json)
        printf("%s\n    subject   %s\n    issuer    %s\n    SANs      %s\n    valid     %s .. %s (%s)\n"
               "    serial    %s\n    sha256    %s\n    spki pin  %s\n",
               label, in->subject, in->issuer, in->sans[0] ? in->sans : "(none)", nb, na, left, in->serial,
               in->sha256_fingerprint, in->spki_pin);
    return json_pack("{s:o,s:o,s:o,s:o,s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "label", jtext(label), "subject",
                     jtext(in->subject), "issuer", jtext(in->issuer), "sans", jtext(in->sans), "serial",
                     in->serial, "not_before", nb, "not_after", na, "not_after_unix", (json_int_t)in->not_after,
                     "status", left, "sha256_fingerprint", in->sha256_fingerprint, "spki_pin", in->spki_pin);
}

static int describe_x509(X509 *x, pbtls_cert_info_t *info) {
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der), rc = -1;
    if (n > 0) rc = pbtls_describe_der(der, (size_t)n, info);
    OPENSSL_free(der);
    return rc;
}

/* ---- our own material ---- */

static void check_material(report_t *r, const pbd_config_t *cfg, time_t now, json_t *certs) {
    pbtls_cert_info_t info;
    char err[2048];
    int rc = pbtls_check_material(&cfg->tls, now, &info, warn_cb, r, err, sizeof err);
    const char *from = cfg->tls.keystore ? cfg->tls.keystore : cfg->tls.cert;
    if (info.subject[0]) {
        char label[1200];
        snprintf(label, sizeof label, "client certificate (%s '%s')",
                 cfg->tls.keystore ? "tls.keystore" : "tls.cert", from ? from : "?");
        json_object_set_new(certs, "client", cert_json(r, label, &info, now));
    }
    /* Every CA of tls.ca, even when the check failed before reading it. */
    json_t *cas = json_array();
    BIO *b = cfg->tls.ca ? BIO_new_file(cfg->tls.ca, "r") : NULL;
    X509 *x;
    int n = 0;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        pbtls_cert_info_t ca;
        char label[1200];
        snprintf(label, sizeof label, "CA certificate #%d (tls.ca '%s')", ++n, cfg->tls.ca);
        if (describe_x509(x, &ca) == 0) json_array_append_new(cas, cert_json(r, label, &ca, now));
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    json_object_set_new(certs, "ca", cas);
    if (!r->json) printf("\nlocal material\n");
    if (rc == 0) {
        item(r, "ok", "material",
             "client certificate: key matches, chains to tls.ca, valid now, allows client authentication%s",
             cfg->tls.crl ? ", not revoked by tls.crl" : "");
    } else {
        item(r, "fail", "material", "%s", err);
    }
    if (cfg->tls.pin_count == 0) {
        item(r, "info", "pins",
             "no tls.pins configured (optional): the broker is trusted by CA and host name");
    } else {
        char txt[PBTLS_MAX_PINS * (PBTLS_PIN_TEXT_SIZE + 2)] = "";
        for (size_t k = 0; k < cfg->tls.pin_count; k++) {
            char one[PBTLS_PIN_TEXT_SIZE];
            pbtls_pin_format(cfg->tls.pins[k], one, sizeof one);
            snprintf(txt + strlen(txt), sizeof txt - strlen(txt), "%s%s", k ? ", " : "", one);
        }
        item(r, "info", "pins", "%zu pin(s) configured: %s", cfg->tls.pin_count, txt);
    }
}

/* ---- one broker: TCP, TLS, Kafka ---- */

typedef struct probe {
    const pbd_config_t *cfg;
    STACK_OF(X509) * chain; /* what the broker presented / what verification built */
    int verify_err, verify_depth;
    char verify_cert[512];
    int host_mismatch, chain_ok_seen, pin_checked, pin_match;
    char pin_seen[PBTLS_PIN_TEXT_SIZE];
} probe_t;

static void keep_chain(probe_t *p, STACK_OF(X509) * sk) {
    if (!sk || sk_X509_num(sk) <= (p->chain ? sk_X509_num(p->chain) : 0)) return;
    sk_X509_pop_free(p->chain, X509_free);
    p->chain = X509_chain_up_ref(sk);
}

/* Records what OpenSSL found, and refuses exactly what predbridge's own verifier refuses. A host-name
 * mismatch is remembered and refused at the end, so the report can still say whether the chain is good. */
static int verify_cb(int ok, X509_STORE_CTX *xs) {
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    probe_t *p = ssl ? SSL_get_app_data(ssl) : NULL;
    int depth = X509_STORE_CTX_get_error_depth(xs), err = X509_STORE_CTX_get_error(xs);
    if (!p) return 0;
    keep_chain(p, X509_STORE_CTX_get0_chain(xs));
    keep_chain(p, X509_STORE_CTX_get0_untrusted(xs));
    if (!ok && (err == X509_V_ERR_HOSTNAME_MISMATCH || err == X509_V_ERR_IP_ADDRESS_MISMATCH)) {
        p->host_mismatch = 1;
        return 1;
    }
    if (!ok) {
        if (!p->verify_err) {
            X509 *cur = X509_STORE_CTX_get_current_cert(xs);
            p->verify_err = err;
            p->verify_depth = depth;
            pbtls_cert_info_t ci; /* its subject in RFC 2253 form, as everywhere else in the report */
            if (cur && describe_x509(cur, &ci) == 0) snprintf(p->verify_cert, sizeof p->verify_cert, "%s", ci.subject);
        }
        return 0;
    }
    if (depth != 0) return 1;
    p->chain_ok_seen = 1;
    X509 *leaf = X509_STORE_CTX_get_current_cert(xs);
    if (leaf) {
        uint8_t pin[PBTLS_PIN_LEN];
        unsigned char *der = NULL;
        int n = i2d_X509(leaf, &der);
        p->pin_checked = p->cfg->tls.pin_count > 0;
        if (n > 0 && pbtls_spki_sha256_der(der, (size_t)n, pin) == 0) {
            pbtls_pin_format(pin, p->pin_seen, sizeof p->pin_seen);
            for (size_t i = 0; i < p->cfg->tls.pin_count; i++)
                if (!memcmp(pin, p->cfg->tls.pins[i], PBTLS_PIN_LEN)) p->pin_match = (int)i + 1;
        }
        OPENSSL_free(der);
        if (p->pin_checked && !p->pin_match) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
            return 0;
        }
    }
    if (p->host_mismatch) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

/* Connects with a time-out; the socket is then blocking with send/receive time-outs. */
static int tcp_connect(const char *host, const char *port, char *addr_txt, size_t addr_size, char *err,
                       size_t err_size) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res), fd = -1;
    if (rc != 0) {
        snprintf(err, err_size, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    snprintf(err, err_size, "no address for '%s'", host);
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        char h[NI_MAXHOST] = "?";
        getnameinfo(a->ai_addr, a->ai_addrlen, h, sizeof h, NULL, 0, NI_NUMERICHOST);
        snprintf(addr_txt, addr_size, "%s port %s", h, port);
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        int e = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
        if (e == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof e;
            int pr = poll(&pfd, 1, CONNECT_TIMEOUT_MS);
            if (pr == 0)
                e = ETIMEDOUT;
            else if (pr < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
                e = errno;
        }
        if (e != 0) {
            snprintf(err, err_size, "cannot connect to %s: %s", addr_txt, strerror(e));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    return fd;
}

/* Why an SSL call failed, in words: the TLS alert the broker sent, a close, or a time-out. */
static void ssl_failure(SSL *ssl, int ret, char *out, size_t size) {
    int e = SSL_get_error(ssl, ret), sys = errno;
    unsigned long oe = ERR_peek_last_error();
    if (oe) {
        const char *reason = ERR_reason_error_string(oe);
        snprintf(out, size, "%s", reason ? reason : "unknown TLS error");
    } else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && sys == 0)) {
        snprintf(out, size, "the broker closed the connection");
    } else if (e == SSL_ERROR_SYSCALL && (sys == EAGAIN || sys == EWOULDBLOCK)) {
        snprintf(out, size, "no answer within %d s", IO_TIMEOUT_S);
    } else {
        snprintf(out, size, "%s", e == SSL_ERROR_SYSCALL ? strerror(sys) : "TLS error");
    }
    ERR_clear_error();
}

/* Writes (write != 0) or reads exactly len bytes. */
static int ssl_io_all(SSL *ssl, int write, unsigned char *buf, size_t len, char *err, size_t err_size) {
    for (size_t done = 0; done < len;) {
        int n = write ? SSL_write(ssl, buf + done, (int)(len - done))
                      : SSL_read(ssl, buf + done, (int)(len - done));
        if (n <= 0) {
            ssl_failure(ssl, n, err, err_size);
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* A Kafka request under construction (big-endian, size prefix filled in by kreq_send). */
typedef struct kbuf {
    unsigned char b[1024];
    size_t len;
} kbuf_t;

static void put(kbuf_t *k, uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0 && k->len < sizeof k->b; i--)
        k->b[k->len++] = (unsigned char)(v >> (8 * i));
}

static void put_str(kbuf_t *k, const char *s) {
    size_t n = strlen(s);
    put(k, n, 2);
    for (size_t i = 0; i < n && k->len < sizeof k->b; i++)
        k->b[k->len++] = (unsigned char)s[i];
}

static void kreq_begin(kbuf_t *k, int api, int version, int32_t correlation) {
    k->len = 4;
    put(k, (uint64_t)api, 2);
    put(k, (uint64_t)version, 2);
    put(k, (uint32_t)correlation, 4);
    put_str(k, CLIENT_ID);
}

static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int16_t get16(const unsigned char *p) {
    return (int16_t)((uint16_t)p[0] << 8 | p[1]);
}

/* Sends k, reads the response (correlation id checked); *resp is malloc'ed. */
static int kreq_call(SSL *ssl, kbuf_t *k, int32_t correlation, unsigned char **resp, size_t *resp_len,
                     char *err, size_t err_size) {
    unsigned char hdr[4];
    size_t body = k->len - 4;
    k->b[0] = (unsigned char)(body >> 24);
    k->b[1] = (unsigned char)(body >> 16);
    k->b[2] = (unsigned char)(body >> 8);
    k->b[3] = (unsigned char)body;
    *resp = NULL;
    if (k->len >= sizeof k->b) { /* put() stopped at the end: a name too long for this probe */
        snprintf(err, err_size, "request too large to send (topic or group name of %zu+ bytes)", k->len);
        return -1;
    }
    if (ssl_io_all(ssl, 1, k->b, k->len, err, err_size) != 0 ||
        ssl_io_all(ssl, 0, hdr, 4, err, err_size) != 0)
        return -1;
    uint32_t n = get32(hdr);
    if (n < 4 || n > MAX_RESPONSE || !(*resp = malloc(n))) {
        snprintf(err, err_size, "malformed Kafka response (size %u)", n);
        return -1;
    }
    if (ssl_io_all(ssl, 0, *resp, n, err, err_size) != 0) goto fail;
    if ((int32_t)get32(*resp) != correlation) {
        snprintf(err, err_size, "Kafka response to another request (correlation id %u)", get32(*resp));
        goto fail;
    }
    *resp_len = n;
    return 0;
fail:
    free(*resp);
    *resp = NULL;
    return -1;
}

/* Skips a Kafka STRING at *off; 0 or -1 if it runs past len. */
static int skip_str(const unsigned char *p, size_t len, size_t *off) {
    if (*off + 2 > len) return -1;
    int16_t n = get16(p + *off);
    *off += 2 + (n > 0 ? (size_t)n : 0);
    return *off <= len ? 0 : -1;
}

/* The error code of the first partition of a Produce (v3..v8) or Fetch (v4..v6) response. */
static int first_partition_error(const unsigned char *p, size_t len, int fetch) {
    size_t off = 4 + (fetch ? 4 : 0); /* correlation id, Fetch's throttle time */
    if (off + 4 > len || get32(p + off) < 1) return -1;
    off += 4;
    if (skip_str(p, len, &off) != 0 || off + 10 > len || get32(p + off) < 1) return -1;
    return get16(p + off + 8);
}

/* Which version of an API to use: the lowest the broker accepts within [lo, hi], or -1. */
static int pick_version(const unsigned char *resp, size_t len, int api, int lo, int hi) {
    if (len < 10) return -1;
    uint32_t n = get32(resp + 6);
    for (uint32_t i = 0; i < n && 10 + 6 * (size_t)(i + 1) <= len; i++) {
        const unsigned char *e = resp + 10 + 6 * (size_t)i;
        if (get16(e) != api) continue;
        int min = get16(e + 2), max = get16(e + 4), v = min > lo ? min : lo;
        return v <= hi && v <= max ? v : -1;
    }
    return -1;
}

/* Producer: an empty Produce request is authorized per topic first (TOPIC_AUTHORIZATION_FAILED), then
 * refused as INVALID_RECORD ("at least one record batch"), so it tells WRITE without writing anything.
 * Consumer: a Fetch at offset INT64_MAX is authorized (READ) first, then OFFSET_OUT_OF_RANGE. */
static void probe_topic(report_t *r, SSL *ssl, const unsigned char *versions, size_t vlen, const char *topic,
                        int consumer, int32_t *correlation) {
    const char *what = consumer ? "read" : "write";
    int api = consumer ? KAFKA_FETCH : KAFKA_PRODUCE;
    int v = consumer ? pick_version(versions, vlen, api, 4, 6) : pick_version(versions, vlen, api, 3, 8);
    kbuf_t k;
    unsigned char *resp = NULL;
    size_t len = 0;
    char err[512];
    if (v < 0) {
        item(r, "warn", consumer ? "authz.read" : "authz.write",
             "cannot tell whether the principal may %s topic '%s': the broker offers no %s version this "
             "check speaks",
             what, topic, consumer ? "Fetch v4-v6" : "Produce v3-v8");
        return;
    }
    kreq_begin(&k, api, v, ++*correlation);
    if (consumer) {
        put(&k, (uint32_t)-1, 4); /* replica id: a consumer */
        put(&k, 0, 4);            /* max wait */
        put(&k, 0, 4);            /* min bytes */
        put(&k, 1, 4);            /* max bytes */
        put(&k, 0, 1);            /* isolation level */
        put(&k, 1, 4);
        put_str(&k, topic);
        put(&k, 1, 4);
        put(&k, 0, 4);                   /* partition 0 */
        put(&k, (uint64_t)INT64_MAX, 8); /* fetch offset: past any record */
        if (v >= 5) put(&k, (uint64_t)-1, 8);
        put(&k, 1, 4); /* partition max bytes */
    } else {
        put(&k, (uint16_t)-1, 2); /* transactional id: null */
        put(&k, (uint16_t)-1, 2); /* acks = all */
        put(&k, 5000, 4);
        put(&k, 1, 4);
        put_str(&k, topic);
        put(&k, 1, 4);
        put(&k, 0, 4); /* partition 0 */
        put(&k, 0, 4); /* records: zero bytes, no batch */
    }
    if (kreq_call(ssl, &k, *correlation, &resp, &len, err, sizeof err) != 0) {
        item(r, "fail", consumer ? "authz.read" : "authz.write", "%s probe of topic '%s' got no answer: %s",
             consumer ? "Fetch" : "Produce", topic, err);
        return;
    }
    int code = first_partition_error(resp, len, consumer);
    free(resp);
    const char *name = code >= 0 ? rd_kafka_err2name((rd_kafka_resp_err_t)code) : "malformed response";
    if (code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        item(r, "fail", consumer ? "authz.read" : "authz.write",
             "principal may NOT %s topic '%s' (broker: %s): add an ACL for this certificate's principal",
             what, topic, name);
    else if (code == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        item(r, "fail", consumer ? "authz.read" : "authz.write", "topic '%s' does not exist (broker: %s)",
             topic, name);
    else if ((!consumer && code == RD_KAFKA_RESP_ERR_INVALID_RECORD) ||
             (consumer &&
              (code == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE || code == 0 ||
               code == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION))) /* authorized before the read */
        item(r, "ok", consumer ? "authz.read" : "authz.write",
             "principal may %s topic '%s' (%s v%d probe authorized, answered %s; nothing %s)", what, topic,
             consumer ? "Fetch" : "empty Produce", v, name, consumer ? "read" : "written");
    else
        item(r, "warn", consumer ? "authz.read" : "authz.write",
             "cannot tell whether the principal may %s topic '%s': the probe got %s (%d)", what, topic, name,
             code);
}

/* FindCoordinator for the group is authorized with DESCRIBE on it (which READ implies): it shows whether
 * the group is out of reach; READ itself is only known at the first join. */
static void probe_group(report_t *r, SSL *ssl, const unsigned char *versions, size_t vlen, const char *group,
                        int32_t *correlation) {
    int v = pick_version(versions, vlen, KAFKA_FIND_COORDINATOR, 1, 2);
    kbuf_t k;
    unsigned char *resp = NULL;
    size_t len = 0;
    char err[512];
    if (v < 0) {
        item(r, "warn", "authz.group", "cannot probe group '%s': no FindCoordinator v1-v2 on this broker",
             group);
        return;
    }
    kreq_begin(&k, KAFKA_FIND_COORDINATOR, v, ++*correlation);
    put_str(&k, group);
    put(&k, 0, 1); /* key type: group */
    if (kreq_call(ssl, &k, *correlation, &resp, &len, err, sizeof err) != 0) {
        item(r, "fail", "authz.group", "FindCoordinator probe of group '%s' got no answer: %s", group, err);
        return;
    }
    int code = len >= 10 ? get16(resp + 8) : -1;
    free(resp);
    const char *name = code >= 0 ? rd_kafka_err2name((rd_kafka_resp_err_t)code) : "malformed response";
    if (code == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)
        item(r, "fail", "authz.group",
             "principal may NOT use consumer group '%s' (broker: %s): add a group ACL for this principal",
             group, name);
    else if (code == 0 || code == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
             code == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE) /* authorized before the lookup */
        item(
            r, "ok", "authz.group",
            "principal may describe consumer group '%s' (FindCoordinator v%d answered %s; READ is checked at "
            "join)",
            group, v, name);
    else
        item(r, "warn", "authz.group", "cannot tell whether the principal may use group '%s': %s (%d)", group,
             name, code);
}

/* The Kafka part once TLS is up: ApiVersions (proves the client certificate was accepted), then probes. */
static void kafka_checks(report_t *r, SSL *ssl, const pbd_config_t *cfg, int consumer) {
    kbuf_t k;
    unsigned char *resp = NULL;
    size_t len = 0;
    char err[512];
    int32_t corr = 1;
    kreq_begin(&k, KAFKA_API_VERSIONS, 0, corr);
    if (kreq_call(ssl, &k, corr, &resp, &len, err, sizeof err) != 0) {
        item(r, "fail", "client_cert",
             "client certificate REFUSED by the broker: %s (the broker's auth log says why; check that the "
             "certificate is issued by a CA the broker trusts, is valid and allows client authentication)",
             err);
        return;
    }
    item(r, "ok", "client_cert", "client certificate accepted: the broker answered ApiVersions (%u APIs)",
         len >= 10 ? get32(resp + 6) : 0);
    if (consumer) {
        for (size_t i = 0; i < cfg->n_topics; i++)
            probe_topic(r, ssl, resp, len, cfg->topics[i], 1, &corr);
        if (consumer > 1 && cfg->group_id)
            probe_group(r, ssl, resp, len, cfg->group_id, &corr);
        else
            item(r, "info", "authz.group", "no group.id in the config: group access is not probed");
    } else {
        probe_topic(r, ssl, resp, len, cfg->topic, 0, &corr);
    }
    free(resp);
}

static void split_hostport(const char *hp, char *host, size_t hsize, char *port, size_t psize) {
    const char *colon;
    if (hp[0] == '[' && (colon = strchr(hp, ']')) != NULL) {
        snprintf(host, hsize, "%.*s", (int)(colon - hp - 1), hp + 1);
        snprintf(port, psize, "%s", colon[1] == ':' ? colon + 2 : "9092");
        return;
    }
    colon = strrchr(hp, ':');
    snprintf(host, hsize, "%.*s", colon ? (int)(colon - hp) : (int)strlen(hp), hp);
    snprintf(port, psize, "%s", colon ? colon + 1 : "9092");
}

static void check_broker(report_t *r, SSL_CTX *ctx, const pbd_config_t *cfg, const char *hostport,
                         int consumer, json_t *bj) {
    char host[256], port[32], addr[300] = "", err[1024];
    probe_t p = {.cfg = cfg};
    SSL *ssl = NULL;
    int fd;
    split_hostport(hostport, host, sizeof host, port, sizeof port);
    if (!r->json) printf("\nbroker %s\n", hostport);
    if ((fd = tcp_connect(host, port, addr, sizeof addr, err, sizeof err)) < 0) {
        item(r, "fail", "tcp", "%s", err);
        return;
    }
    item(r, "ok", "tcp", "connected to %s", addr);
    if (!(ssl = SSL_new(ctx)) || SSL_set_fd(ssl, fd) != 1 || SSL_set_app_data(ssl, &p) != 1 ||
        SSL_set1_host(ssl, host) != 1) {
        item(r, "fail", "tls", "cannot set up TLS for host '%s'", host);
        goto out;
    }
    unsigned char ip[16];
    if (inet_pton(AF_INET, host, ip) != 1 && inet_pton(AF_INET6, host, ip) != 1) /* no SNI for an address */
        SSL_set_tlsext_host_name(ssl, host);
    ERR_clear_error();
    int ret = SSL_connect(ssl);
    if (ret != 1) ssl_failure(ssl, ret, err, sizeof err);
    /* The broker's chain, as far as it got. */
    json_t *chain = json_array();
    if (!r->json && p.chain) printf("  broker certificate chain:\n");
    for (int i = 0; p.chain && i < sk_X509_num(p.chain); i++) {
        pbtls_cert_info_t ci;
        char na[40];
        if (describe_x509(sk_X509_value(p.chain, i), &ci) != 0) continue;
        pbtls_format_time(ci.not_after, na, sizeof na);
        if (!r->json)
            printf("    #%d %s (issuer %s; SANs %s; until %s)\n", i, ci.subject, ci.issuer,
                   ci.sans[0] ? ci.sans : "none", na);
        json_array_append_new(chain,
                              json_pack("{s:o,s:o,s:o,s:s,s:s,s:s}", "subject", jtext(ci.subject), "issuer",
                                        jtext(ci.issuer), "sans", jtext(ci.sans), "not_after", na,
                                        "sha256_fingerprint", ci.sha256_fingerprint, "spki_pin", ci.spki_pin));
    }
    json_object_set_new(bj, "chain", chain);
    if (ret != 1 && !p.chain) {
        if (strstr(err, "protocol version") || strstr(err, "unsupported protocol"))
            item(r, "fail", "tls.version",
                 "TLS handshake refused: the broker does not speak TLS 1.3 (%s); predbridge requires TLS 1.3",
                 err);
        else
            item(r, "fail", "tls", "TLS handshake failed before the broker showed a certificate: %s", err);
        goto out;
    }
    const char *crl_hint = p.verify_err ? pbtls_crl_hint(p.verify_err) : NULL;
    if (crl_hint)
        item(r, "fail", "tls.crl",
             "broker certificate refused by tls.crl '%s': %s (certificate '%s' at depth %d)%s", cfg->tls.crl,
             X509_verify_cert_error_string(p.verify_err), p.verify_cert, p.verify_depth, crl_hint);
    else if (p.verify_err)
        item(r, "fail", "tls.chain",
             "broker certificate does not verify against tls.ca '%s': %s (certificate '%s' at depth %d)",
             cfg->tls.ca, X509_verify_cert_error_string(p.verify_err), p.verify_cert, p.verify_depth);
    else if (p.chain_ok_seen)
        item(r, "ok", "tls.chain", "broker certificate chain verifies against tls.ca%s",
             cfg->tls.crl ? "; tls.crl does not revoke it" : "");
    if (p.host_mismatch) {
        pbtls_cert_info_t leaf = {0};
        if (p.chain && sk_X509_num(p.chain) > 0) describe_x509(sk_X509_value(p.chain, 0), &leaf);
        item(r, "fail", "tls.hostname", "host name MISMATCH: the broker's certificate is for '%s', not '%s'",
             leaf.sans[0] ? leaf.sans : leaf.subject, host);
    } else if (p.chain_ok_seen) {
        item(r, "ok", "tls.hostname", "host name '%s' matches the broker's certificate", host);
    }
    if (p.pin_checked && p.pin_match)
        item(r, "ok", "tls.pins", "broker public key %s matches tls.pins #%d", p.pin_seen, p.pin_match);
    else if (p.pin_checked)
        item(r, "fail", "tls.pins", "broker public key %s matches none of the %zu configured tls.pins",
             p.pin_seen, cfg->tls.pin_count);
    else if (p.pin_seen[0] && !p.host_mismatch && !p.verify_err) /* never suggest pinning a bad broker */
        item(r, "info", "tls.pins", "broker public key %s (no tls.pins configured; this is the pin to add)",
             p.pin_seen);
    if (ret != 1) {
        if (!p.verify_err && !p.host_mismatch && !(p.pin_checked && !p.pin_match))
            item(r, "fail", "tls", "TLS handshake failed: %s", err);
        goto out;
    }
    json_object_set_new(bj, "tls_version", json_string(SSL_get_version(ssl)));
    json_object_set_new(bj, "cipher", json_string(SSL_get_cipher_name(ssl)));
    item(r, SSL_version(ssl) >= TLS1_3_VERSION ? "ok" : "fail", "tls.version", "negotiated %s, cipher %s",
         SSL_get_version(ssl), SSL_get_cipher_name(ssl));
    kafka_checks(r, ssl, cfg, consumer);
out:
    sk_X509_pop_free(p.chain, X509_free);
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
}

/* An SSL_CTX under predbridge's policy with the config's CA, CRL and client material. */
static SSL_CTX *make_ctx(report_t *r, const pbd_config_t *cfg) {
    char err[2048] = "cannot create a TLS context";
    SSL_CTX *ctx = NULL;
    if (pbtls_policy_init(err, sizeof err) != 0 || pbtls_policy_verify(err, sizeof err) != 0 ||
        !(ctx = SSL_CTX_new(TLS_client_method())) ||
        SSL_CTX_load_verify_locations(ctx, cfg->tls.ca, NULL) != 1) {
        if (ctx) snprintf(err, sizeof err, "tls.ca '%s': OpenSSL cannot load it", cfg->tls.ca);
        item(r, "fail", "tls.setup", "%s", err);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* As librdkafka does with ssl.crl.location: the file joins the store, and the broker's own
     * certificate (not the rest of its chain) must be covered by a CRL and not be revoked. */
    if (cfg->tls.crl) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        if (X509_STORE_load_file(st, cfg->tls.crl) != 1 ||
            X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK) != 1) {
            item(r, "fail", "tls.setup", "tls.crl '%s': OpenSSL cannot load it", cfg->tls.crl);
            SSL_CTX_free(ctx);
            ERR_clear_error();
            return NULL;
        }
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    if (pbtls_ssl_ctx_use_material(ctx, &cfg->tls, err, sizeof err) != 0)
        item(r, "warn", "key_match",
             "connecting without a client certificate (the broker will refuse it): %s", err);
    else
        item(r, "ok", "key_match", "private key matches the client certificate");
    ERR_clear_error();
    return ctx;
}

/* Consumer configs are told apart by their own keys. */
static int is_consumer(const props_t *props) {
    for (size_t i = 0; i < props_count(props); i++) {
        const char *k = props_at(props, i)->key;
        if (!strcmp(k, "group.id") || !strcmp(k, "topics") || !strcmp(k, "auto.offset.reset") ||
            !strncmp(k, "consumer.", 9))
            return 1;
    }
    return 0;
}

static int run(report_t *r, const char *path) {
    char err[2048];
    props_t *props = props_new();
    pbd_config_t cfg = {0};
    int loaded = 0, consumer = 0;
    time_t now = time(NULL);
    json_t *certs = json_object(), *brokers = json_array();
    json_object_set_new(r->root, "config", jtext(path));
    json_object_set_new(r->root, "certificates", certs);
    json_object_set_new(r->root, "brokers", brokers);
    r->checks = json_array();
    json_object_set_new(r->root, "checks", r->checks);
    if (!r->json) printf("predbridge check: %s\n", path);
    if (!props || props_load_file(props, path, err, sizeof err) != 0) {
        item(r, "fail", "config", "%s", props ? err : "out of memory");
        goto out;
    }
    consumer = is_consumer(props);
    if (consumer && props_find(props, "group.id")) consumer = 2; /* a group of its own to probe */
    /* tail may be given its group on the command line; check probes no group, so any name will do. */
    if (consumer && !props_find(props, "group.id") &&
        props_set(props, "group.id", CLIENT_ID, "check", 0) != 0) {
        item(r, "fail", "config", "out of memory");
        goto out;
    }
    json_object_set_new(r->root, "scope", json_string(consumer ? "consumer" : "producer"));
    if (pbconf_load_scoped(&cfg, props, consumer ? PBCONF_SCOPE_CONSUMER : PBCONF_SCOPE_DAEMON, err,
                           sizeof err) != PB_OK) {
        item(r, "fail", "config", "%s", err);
        goto out;
    }
    loaded = 1;
    item(r, "ok", "config", "%s config loaded (bootstrap.servers %s; %s %s)",
         consumer ? "consumer (libpredbridge)" : "producer (predbridged)", cfg.bootstrap_servers,
         consumer ? "topics" : "topic", consumer ? (cfg.n_topics ? cfg.topics[0] : "") : cfg.topic);
    if (!r->json) printf("\n");
    check_material(r, &cfg, now, certs);
    SSL_CTX *ctx = make_ctx(r, &cfg);
    if (!ctx) goto out;
    json_t *saved = r->checks;
    char *list = strdup(cfg.bootstrap_servers), *save = NULL;
    for (char *hp = list ? strtok_r(list, ",", &save) : NULL; hp; hp = strtok_r(NULL, ",", &save)) {
        char where[300];
        while (*hp == ' ')
            hp++;
        json_t *bj = json_pack("{s:o}", "broker", jtext(hp));
        r->checks = json_array();
        json_object_set_new(bj, "checks", r->checks);
        json_array_append_new(brokers, bj);
        snprintf(where, sizeof where, "broker %s: ", hp);
        r->where = where;
        check_broker(r, ctx, &cfg, hp, consumer, bj);
        r->where = "";
    }
    r->checks = saved;
    free(list);
    SSL_CTX_free(ctx);
out:
    if (loaded) pbd_config_free(&cfg);
    props_free(props);
    return r->n_problems ? 1 : 0;
}

int pbcli_check(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    report_t r = {.where = ""};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            r.json = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config || optind < argc) {
        fprintf(stderr, "predbridge check: %s\n",
                !config ? "--config FILE is required" : "unexpected argument");
        usage(stderr);
        return 2;
    }
    r.root = json_object();
    r.problems = json_array();
    r.warnings = json_array();
    int rc = run(&r, config);
    size_t nprob = r.n_problems, nwarn = r.n_warnings;
    json_object_set_new(r.root, "verdict", json_string(rc == 0 ? "ok" : "problems"));
    json_object_set_new(r.root, "exit_code", json_integer(rc));
    json_object_set_new(r.root, "problems", r.problems);
    json_object_set_new(r.root, "warnings", r.warnings);
    if (r.json) {
        json_dumpf(r.root, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        printf("\nverdict: %s",
               rc == 0 ? "OK: the config works" : "PROBLEMS: the config does not work as it is");
        printf(" (%zu problem%s, %zu warning%s)\n", nprob, nprob == 1 ? "" : "s", nwarn,
               nwarn == 1 ? "" : "s");
        size_t i;
        json_t *v;
        json_array_foreach(r.problems, i, v) printf("  - %s\n", json_string_value(v));
    }
    json_decref(r.root);
    return rc;
}
