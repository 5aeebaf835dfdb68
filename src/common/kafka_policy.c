/* kafka_policy.c: which librdkafka properties a `kafka.<property>` pass-through may never set, and why. */
#include "common/tls.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct pbtls_denied {
    const char *name; /* exact property name, or a prefix when prefix is set */
    int prefix;
    const char *reason;
} pbtls_denied_t;

#define PBTLS_TLS_KEYS "TLS is always on and verified; set TLS material with the tls.* keys"

/* One table: security.protocol and every ssl/sasl knob would let a config turn TLS, certificate or
 * host-name verification off, or swap our material; the delivery keys would break the spool's
 * "removed only once the broker has it" promise. Matched case-insensitively, exact names before the prefixes
 * that cover them. */
static const pbtls_denied_t pbtls_denied[] = {
    {"security.protocol", 0, "TLS is always on: security.protocol is always ssl"},
    {"ssl.endpoint.identification.algorithm", 0, "broker host-name verification cannot be turned off"},
    {"ssl.", 1, PBTLS_TLS_KEYS},
    {"ssl_", 1, PBTLS_TLS_KEYS},
    {"enable.ssl.certificate.verification", 0, "broker certificate verification cannot be turned off"},
    {"sasl.", 1, "predbridge authenticates with the TLS client certificate, not SASL"},
    {"sasl_", 1, "predbridge authenticates with the TLS client certificate, not SASL"},
    {"enable.sasl.oauthbearer.unsecure.jwt", 0, "unsigned tokens are never accepted"},
    {"https.", 1, PBTLS_TLS_KEYS},
    {"bootstrap.servers", 0, "use the bootstrap.servers key"},
    {"metadata.broker.list", 0, "use the bootstrap.servers key"},
    {"enable.idempotence", 0, "predbridged always uses acks=all with idempotence"},
    {"acks", 0, "predbridged always uses acks=all with idempotence"},
    {"request.required.acks", 0, "predbridged always uses acks=all with idempotence"},
    {"delivery.report.only.error", 0, "the spool needs a delivery report for every message"},
    {"transactional.id", 0, "predbridged's producer is idempotent, not transactional"},
    {"plugin.library.paths", 0, "loads code into the process"},
    {"internal.termination.signal", 0, "predbridged owns its signal handling"},
    /* test.mock.num.brokers replaces bootstrap.servers and TLS with an in-process plaintext mock
     * cluster whose "deliveries" would retire spooled records no broker has. */
    {"test.", 1, "test.* properties replace the real brokers with librdkafka's mock cluster"},
};

const char *pbtls_denied_kafka_property(const char *property) {
    if (!property) return NULL;
    for (size_t i = 0; i < sizeof pbtls_denied / sizeof pbtls_denied[0]; i++) {
        const pbtls_denied_t *d = &pbtls_denied[i];
        int hit = d->prefix ? strncasecmp(property, d->name, strlen(d->name)) == 0
                            : strcasecmp(property, d->name) == 0;
        if (hit) return d->reason;
    }
    return NULL;
}

int pbtls_kafka_client_defaults(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size) {
    /* TCP_NODELAY, as Kafka's own clients and brokers use: with Nagle's algorithm (librdkafka 2.0
     * leaves it on) a small request waits for the ACK of the previous one, which the peer delays
     * (tens of ms on Linux); at 10,000 predictions/s that was most of the latency, and the
     * producer's CPU time tripled. */
    char e[512];
    if (rd_kafka_conf_set(conf, "socket.nagle.disable", "true", e, sizeof e) == RD_KAFKA_CONF_OK) return 0;
    snprintf(errstr, errstr_size, "default 'socket.nagle.disable': %s", e);
    return -1;
}
