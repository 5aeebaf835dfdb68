/* config.c: pbd_config_t from props, through one table of keys that parses, defaults and documents them. */
#include "common/config.h"
#include "common/config_internal.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

typedef enum {
    PBCONF_STRING,
    PBCONF_FILE, /* a path that must exist and be readable now */
    PBCONF_MODE, /* octal permission bits */
    PBCONF_INT,
    PBCONF_SIZE, /* bytes, optional k/m suffix */
    PBCONF_ENUM,
    PBCONF_LIST, /* comma-separated strings */
    PBCONF_UIDS,
    PBCONF_GIDS,
    PBCONF_PINS,
} pbconf_type_t;

#define PBCONF_REQUIRED 0x1u
#define PBCONF_EUID_DEFAULT 0x2u /* default computed at load time: the process's euid */
/* Scope: a key without these is predbridged's only; SHARED keys mean the same to libpredbridge's
 * consumer config, CONSUMER keys are the consumer's only. One table, so both parse alike. */
#define PBCONF_SHARED 0x4u
#define PBCONF_CONSUMER 0x8u

/* Extra validation after the typed value is stored; returns PB_OK or a code with the reason in why. */
typedef pb_err_t (*pbconf_check_fn)(const char *text, const pbd_config_t *cfg, char *why, size_t why_size);

typedef struct pbconf_key {
    const char *name;
    pbconf_type_t type;
    unsigned flags;
    const char *def;            /* default, in config syntax; NULL: unset */
    const char *def_doc;        /* default as shown in the reference when def cannot say it */
    long long min, max;         /* INT/SIZE/MODE range; LIST/UIDS/GIDS/PINS: max items */
    size_t off, count_off;      /* where the value (and a list's length) go in pbd_config_t */
    const char *const *choices; /* ENUM values, NULL-terminated */
    void (*store_choice)(pbd_config_t *cfg, size_t i); /* ENUM not stored as a string */
    pbconf_check_fn check;
    const char *doc;
} pbconf_key_t;

_Static_assert(PBLOG_ERROR == 0 && PBLOG_WARN == 1 && PBLOG_INFO == 2 && PBLOG_DEBUG == 3,
               "log.level choices are listed in pblog_level_t order");
_Static_assert(PBLOG_TEXT == 0 && PBLOG_JSON == 1, "log.format choices are listed in pblog_format_t order");

static const char *const pbconf_fsyncs[] = {"always", "interval", "never", NULL};
static const char *const pbconf_compressions[] = {"none", "gzip", "snappy", "lz4", "zstd", NULL};
static const char *const pbconf_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const pbconf_formats[] = {"text", "json", NULL};
static const char *const pbconf_offset_resets[] = {"earliest", "latest", NULL};
static const char *const pbconf_booleans[] = {"true", "false", NULL};

static void pbconf_store_level(pbd_config_t *cfg, size_t i) {
    cfg->log_level = (pblog_level_t)i;
}

static void pbconf_store_format(pbd_config_t *cfg, size_t i) {
    cfg->log_format = (pblog_format_t)i;
}

static void pbconf_store_tls_watch(pbd_config_t *cfg, size_t i) {
    cfg->tls_watch = i == 0;
}

void pbconf_why(char *why, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
}

int pbconf_is_digit(char c) {
    return c >= '0' && c <= '9';
}

void pbconf_free_strings(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Splits a comma list into trimmed, non-empty items; all-blank text is the empty list. */
pb_err_t pbconf_split(const char *text, long long max_items, char ***out, size_t *n_out, char *why, size_t why_size) {
    *out = NULL;
    *n_out = 0;
    const char *t = text;
    while (*t == ' ' || *t == '\t')
        t++;
    if (!*t) return PB_OK;
    size_t count = 1;
    for (const char *c = text; *c; c++)
        count += *c == ',';
    if (max_items > 0 && count > (size_t)max_items) {
        pbconf_why(why, why_size, "%zu items, at most %lld allowed", count, max_items);
        return PB_ERR_CONFIG;
    }
    char **items = calloc(count, sizeof *items);
    if (!items) return PB_ERR_NOMEM;
    const char *s = text;
    for (size_t i = 0; i < count; i++) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        while (n > 0 && (*s == ' ' || *s == '\t'))
            s++, n--;
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n == 0) {
            pbconf_why(why, why_size, "item %zu of the list is empty", i + 1);
            pbconf_free_strings(items, count);
            return PB_ERR_CONFIG;
        }
        items[i] = strndup(s, n);
        if (!items[i]) {
            pbconf_free_strings(items, count);
            return PB_ERR_NOMEM;
        }
        s = comma ? comma + 1 : s + n;
    }
    *out = items;
    *n_out = count;
    return PB_OK;
}

#define PBCONF_OFF(field) offsetof(pbd_config_t, field)
#define PBCONF_LIST_AT(field) .off = PBCONF_OFF(field), .count_off = PBCONF_OFF(n_##field)
#define PBCONF_TLS_FILE(i) .type = PBCONF_FILE, .off = PBCONF_OFF(tls_strings[i])

/* The keys: the only place that names them, gives their defaults and says what they mean.
 * (Kept out of clang-format: a table reads best a few lines per key.) */
/* clang-format off */
static const pbconf_key_t pbconf_keys[] = {
    {.name = "socket.path", .type = PBCONF_STRING, .def = "/run/predbridge/predbridged.sock",
     .off = PBCONF_OFF(socket_path), .check = pbconf_check_socket_path,
     .doc = "UNIX socket on which the model service writes NDJSON predictions; its directory must exist."},
    {.name = "socket.mode", .type = PBCONF_MODE, .def = "0660", .min = 0, .max = 0777,
     .off = PBCONF_OFF(socket_mode), .check = pbconf_check_socket_mode,
     .doc = "Permission bits of the socket. Connecting needs write permission, so o+w is refused."},
    {.name = "socket.allowed_uids", .type = PBCONF_UIDS, .flags = PBCONF_EUID_DEFAULT,
     .def_doc = "predbridged's effective uid", .max = 64, PBCONF_LIST_AT(allowed_uids),
     .doc = "Users whose connections are accepted (peer credentials, SO_PEERCRED); empty: none by uid."},
    {.name = "socket.allowed_gids", .type = PBCONF_GIDS, .def = "", .def_doc = "(none)", .max = 64,
     PBCONF_LIST_AT(allowed_gids),
     .doc = "Groups whose members' connections are accepted (the peer's primary gid)."},
    {.name = "socket.max_connections", .type = PBCONF_INT, .def = "4096", .min = 1, .max = 65536,
     .off = PBCONF_OFF(max_connections), .doc = "Connections served at once; further ones are refused."},
    {.name = "bootstrap.servers", .type = PBCONF_STRING, .flags = PBCONF_REQUIRED | PBCONF_SHARED,
     .off = PBCONF_OFF(bootstrap_servers), .check = pbconf_check_servers,
     .doc = "Kafka brokers to start from, host:port[,host:port...], no scheme: always TLS."},
    {.name = "topic", .type = PBCONF_STRING, .def = "predictions", .off = PBCONF_OFF(topic),
     .check = pbconf_check_topic, .doc = "Kafka topic the predictions are published to."},
    {.name = "tls.ca", PBCONF_TLS_FILE(0), .flags = PBCONF_REQUIRED | PBCONF_SHARED,
     .doc = "PEM CA bundle the broker's certificate must chain to."},
    {.name = "tls.cert", PBCONF_TLS_FILE(1), .flags = PBCONF_SHARED,
     .doc = "PEM client certificate (chain allowed) presented to the broker; needs tls.key. "
            "Either tls.cert + tls.key or tls.keystore is required."},
    {.name = "tls.key", PBCONF_TLS_FILE(2), .flags = PBCONF_SHARED,
     .doc = "PEM private key of tls.cert; should be readable by predbridged only."},
    {.name = "tls.key_passphrase_file", PBCONF_TLS_FILE(3), .flags = PBCONF_SHARED,
     .doc = "File whose first line is the passphrase of an encrypted tls.key."},
    {.name = "tls.keystore", PBCONF_TLS_FILE(4), .flags = PBCONF_SHARED,
     .doc = "PKCS#12 keystore with client certificate and key, instead of tls.cert + tls.key."},
    {.name = "tls.keystore_passphrase_file", PBCONF_TLS_FILE(5), .flags = PBCONF_SHARED,
     .doc = "File whose first line is the passphrase of tls.keystore."},
    {.name = "tls.crl", PBCONF_TLS_FILE(6), .flags = PBCONF_SHARED,
     .doc = "PEM CRL file: the broker's certificate must not be listed in it. It must hold a current CRL from the "
            "CA that issued the broker's certificate, or every broker is refused."},
    {.name = "tls.pins", .type = PBCONF_PINS, .flags = PBCONF_SHARED, .def = "", .def_doc = "(none)", .max = PBTLS_MAX_PINS,
     .doc = "SHA-256 pins of the broker's public key (sha256//BASE64 of the SPKI); when set, the broker "
            "must match one of them in addition to CA and host-name verification."},
    {.name = "tls.expiry.warn_days", .type = PBCONF_INT, .flags = PBCONF_SHARED, .def = "30", .min = 0, .max = 3650,
     .off = PBCONF_OFF(tls.expiry_warn_days),
     .doc = "Warn when the client certificate or CA expires within this many days."},
    {.name = "tls.expiry.check_interval_s", .type = PBCONF_INT, .flags = PBCONF_SHARED, .def = "3600", .min = 1,
     .max = 86400, .off = PBCONF_OFF(tls_check_interval_s),
     .doc = "How often, in seconds, the client certificate, key and CA are checked again while running "
            "(expiry warnings, an error once expired or unusable)."},
    {.name = "tls.watch", .type = PBCONF_ENUM, .def = "true", .choices = pbconf_booleans,
     .store_choice = pbconf_store_tls_watch,
     .doc = "Reload the TLS files (tls.ca, tls.cert, tls.key, tls.keystore, tls.crl and passphrase files) "
            "when they change: replaced by rename, rewritten, or swapped by a Kubernetes secret volume. "
            "SIGHUP reloads them either way."},
    /* The consumer's own tls.watch: off unless asked for, since a reload makes the consumer leave and
     * rejoin its group (a rebalance) and runs inside pb_consumer_poll. */
    {.name = "tls.watch", .type = PBCONF_ENUM, .flags = PBCONF_CONSUMER, .def = "false", .choices = pbconf_booleans,
     .store_choice = pbconf_store_tls_watch,
     .doc = "Reload the TLS files (as pb_consumer_reload_tls does) from within pb_consumer_poll/run when they "
            "change: replaced by rename, rewritten, or swapped by a Kubernetes secret volume."},
    {.name = "tls.watch_debounce_ms", .type = PBCONF_INT, .flags = PBCONF_SHARED, .def = "500", .min = 0, .max = 60000,
     .off = PBCONF_OFF(tls_watch_debounce_ms),
     .doc = "How long the TLS files must stay unchanged before a reload, in milliseconds, so a "
            "certificate and its key replaced one after the other are loaded together."},
    {.name = "message.max_bytes", .type = PBCONF_SIZE, .flags = PBCONF_SHARED, .def = "1048576", .min = 64, .max = 16777216,
     .off = PBCONF_OFF(max_message_bytes),
     .doc = "Longest accepted prediction line; longer ones are rejected."},
    {.name = "message.required_fields", .type = PBCONF_LIST, .flags = PBCONF_SHARED, .def = "model_version,prediction", .max = 64,
     PBCONF_LIST_AT(required_fields), .doc = "Top-level JSON fields every prediction must have."},
    {.name = "message.key_field", .type = PBCONF_STRING, .off = PBCONF_OFF(key_field),
     .doc = "Top-level JSON field whose value becomes the Kafka message key; unset: no key."},
    {.name = "producer.compression", .type = PBCONF_ENUM, .def = "lz4", .choices = pbconf_compressions,
     .off = PBCONF_OFF(compression), .doc = "Compression of message batches."},
    {.name = "producer.linger_ms", .type = PBCONF_INT, .def = "5", .min = 0, .max = 10000,
     .off = PBCONF_OFF(linger_ms), .doc = "How long the producer waits to fill a batch, in milliseconds."},
    {.name = "producer.flush_timeout_ms", .type = PBCONF_INT, .def = "30000", .min = 0, .max = 600000,
     .off = PBCONF_OFF(flush_timeout_ms),
     .doc = "On shutdown, how long to wait for the broker to acknowledge what is in flight; "
            "what is left is logged as undelivered."},
    {.name = "spool.dir", .type = PBCONF_STRING, .def = "/var/lib/predbridge/spool", .off = PBCONF_OFF(spool_dir),
     .doc = "Directory of the on-disk spool: every accepted prediction is written here before it is "
            "acknowledged, and kept until the broker has it. Created (mode 0700) if missing; one daemon per directory."},
    {.name = "spool.fsync", .type = PBCONF_ENUM, .def = "interval", .choices = pbconf_fsyncs, .off = PBCONF_OFF(spool_fsync),
     .doc = "When spooled records reach the disk: always (fdatasync before each batch is acknowledged), "
            "interval (fdatasync every spool.fsync_interval_ms on a background thread; accepted acknowledgements "
            "wait for it) or never (the page cache: survives a crash of the daemon, not of the machine)."},
    {.name = "spool.fsync_interval_ms", .type = PBCONF_INT, .def = "20", .min = 1, .max = 10000,
     .off = PBCONF_OFF(spool_fsync_interval_ms), .doc = "Group-commit interval of spool.fsync = interval, in milliseconds."},
    {.name = "spool.max_bytes", .type = PBCONF_SIZE, .def = "1024m", .min = 65536, .max = (long long)1 << 40,
     .off = PBCONF_OFF(spool_max_bytes),
     .doc = "Bound on the spool's size; when it is reached, writers are held back (reading pauses) until the "
            "broker takes records. Nothing is dropped."},
    {.name = "spool.segment_bytes", .type = PBCONF_SIZE, .def = "16m", .min = 4096, .max = (long long)1 << 32,
     .off = PBCONF_OFF(spool_segment_bytes),
     .doc = "Size of one spool file; a file is deleted once all its records are delivered, except one "
            "kept as spool.dir/spare.pbs to be written over as the next file (at most a quarter of "
            "spool.max_bytes is used). A new file's space is reserved on the disk when it is created, so "
            "appending to it is cheaper."},
    {.name = "log.level", .type = PBCONF_ENUM, .flags = PBCONF_SHARED, .def = "info", .choices = pbconf_levels,
     .store_choice = pbconf_store_level, .doc = "Least severe level that is logged."},
    {.name = "log.format", .type = PBCONF_ENUM, .flags = PBCONF_SHARED, .def = "text", .choices = pbconf_formats,
     .store_choice = pbconf_store_format,
     .doc = "Log lines as text or as JSON objects: predbridged's on stderr, libpredbridge's to the "
            "application's log callback (pb_config_set_log_fn)."},
    {.name = "http.listen", .type = PBCONF_STRING, .off = PBCONF_OFF(http_listen), .check = pbconf_check_http_listen,
     .doc = "Address of the HTTP endpoint for /metrics (Prometheus), /healthz and /readyz; unset: off. "
            "host:port on loopback only (127.0.0.0/8, localhost or [::1]), since it has no authentication; "
            "port 0 picks a free port (logged)."},
    {.name = "group.id", .type = PBCONF_STRING, .flags = PBCONF_REQUIRED | PBCONF_CONSUMER,
     .off = PBCONF_OFF(group_id), .doc = "Consumer group: members share the partitions and the committed offsets."},
    {.name = "topics", .type = PBCONF_LIST, .flags = PBCONF_CONSUMER, .def = "predictions", .max = 64,
     PBCONF_LIST_AT(topics), .doc = "Topics the consumer subscribes to, comma-separated."},
    {.name = "auto.offset.reset", .type = PBCONF_ENUM, .flags = PBCONF_CONSUMER, .def = "earliest",
     .choices = pbconf_offset_resets, .off = PBCONF_OFF(auto_offset_reset),
     .doc = "Where a group without a committed offset starts: the oldest record or only new ones."},
    {.name = "consumer.retry_backoff_ms", .type = PBCONF_INT, .flags = PBCONF_CONSUMER, .def = "1000", .min = 0,
     .max = 600000, .off = PBCONF_OFF(retry_backoff_ms),
     .doc = "After a handler asked for a retry, how long that partition waits before redelivery."},
    {.name = "consumer.commit_interval_ms", .type = PBCONF_INT, .flags = PBCONF_CONSUMER, .def = "1000",
     .min = 10, .max = 60000, .off = PBCONF_OFF(commit_interval_ms),
     .doc = "How often processed offsets are committed (batched); close commits the rest synchronously."},
    {.name = "consumer.dedup.window", .type = PBCONF_INT, .flags = PBCONF_CONSUMER, .def = "100000", .min = 0,
     .max = 10000000, .off = PBCONF_OFF(dedup_window),
     .doc = "How many of the most recent pb-ids (over all partitions of this consumer) are remembered to drop "
            "a record published twice; 64-96 bytes each; 0: no duplicate suppression."},
};
/* clang-format on */

#define PBCONF_N_KEYS (sizeof pbconf_keys / sizeof pbconf_keys[0])

/* Librdkafka properties that have a first-class key: setting both would leave the winner unclear. */
static const struct {
    const char *property, *key;
} pbconf_kafka_owned[] = {
    {"linger.ms", "producer.linger_ms"},
    {"queue.buffering.max.ms", "producer.linger_ms"},
    {"compression.codec", "producer.compression"},
    {"compression.type", "producer.compression"},
};

/* Consumer properties the library owns: they carry its at-least-once promise (an offset is stored
 * and committed only after the handler said so) or have a key of their own. */
static const struct {
    const char *property, *reason;
} pbconf_consumer_owned[] = {
    {"enable.auto.commit", "offsets are committed only after on_prediction returned commit"},
    {"enable.auto.offset.store", "offsets are stored only after on_prediction returned commit"},
    {"auto.commit.enable", "offsets are committed only after on_prediction returned commit"},
    {"group.id", "use the group.id key"},
    {"auto.offset.reset", "use the auto.offset.reset key"},
    {"topic.auto.offset.reset", "use the auto.offset.reset key"},
    {"enable.partition.eof", "the library drives the consumer loop"},
    {"consume.callback.max.messages", "the library drives the consumer loop"},
    {"auto.commit.interval.ms", "use the consumer.commit_interval_ms key"},
};

static int pbconf_in_scope(const pbconf_key_t *k, pbconf_scope_t scope) {
    if (scope == PBCONF_SCOPE_CONSUMER) return (k->flags & (PBCONF_SHARED | PBCONF_CONSUMER)) != 0;
    return (k->flags & PBCONF_CONSUMER) == 0;
}

static const pbconf_key_t *pbconf_find_key(const char *name, pbconf_scope_t scope) {
    for (size_t i = 0; i < PBCONF_N_KEYS; i++)
        if (strcmp(pbconf_keys[i].name, name) == 0 && pbconf_in_scope(&pbconf_keys[i], scope))
            return &pbconf_keys[i];
    return NULL;
}

static void *pbconf_field(pbd_config_t *cfg, size_t off) {
    return (char *)cfg + off;
}

/* Optimal string alignment distance (edits and adjacent swaps), for "did you mean". */
static size_t pbconf_distance(const char *a, const char *b) {
    enum { MAXLEN = 64 };
    size_t la = strlen(a), lb = strlen(b);
    if (la > MAXLEN || lb > MAXLEN) return (size_t)-1;
    size_t d[MAXLEN + 1][MAXLEN + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* "file:line" of an entry, "-o" for an override, or the built-in default. */
static void pbconf_where(const props_entry_t *e, char *buf, size_t size) {
    if (!e)
        snprintf(buf, size, "built-in default");
    else if (e->line > 0)
        snprintf(buf, size, "%s:%d", e->file, e->line);
    else
        snprintf(buf, size, "%s", e->file);
}

static void pbconf_fail(char *errstr, size_t size, const props_entry_t *e, const char *key, const char *why) {
    char where[512];
    pbconf_where(e, where, sizeof where);
    snprintf(errstr, size, "%s: key '%s': %s", where, key, why);
}

/* Looks up a user or group name with the reentrant NSS calls, growing the buffer on ERANGE. */
__attribute__((warn_unused_result)) static pb_err_t
pbconf_lookup_id(const char *name, int group, unsigned *id, char *why, size_t why_size) {
    long hint = sysconf(group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
    size_t size = hint > 0 ? (size_t)hint : 1024;
    char *buf = NULL;
    pb_err_t rc = PB_ERR_CONFIG;
    for (;;) {
        char *nb = realloc(buf, size);
        if (!nb) {
            rc = PB_ERR_NOMEM;
            goto out;
        }
        buf = nb;
        int found, err;
        if (group) {
            struct group gr, *res = NULL;
            err = getgrnam_r(name, &gr, buf, size, &res);
            found = res != NULL;
            if (found) *id = (unsigned)gr.gr_gid;
        } else {
            struct passwd pw, *res = NULL;
            err = getpwnam_r(name, &pw, buf, size, &res);
            found = res != NULL;
            if (found) *id = (unsigned)pw.pw_uid;
        }
        if (err == ERANGE && size < (1u << 20)) {
            size *= 2;
            continue;
        }
        if (found) {
            rc = PB_OK;
        } else if (err == 0 || err == ENOENT || err == ESRCH || err == EBADF || err == EPERM) {
            pbconf_why(why, why_size, "no %s '%s'", group ? "group" : "user", name);
        } else {
            pbconf_why(why, why_size, "cannot look up %s '%s': %s", group ? "group" : "user", name,
                       strerror(err));
        }
        goto out;
    }
out:
    free(buf);
    return rc;
}

/* Numbers or names; uid_t and gid_t are both 32-bit unsigned on Linux, and -1 means "no id". */
__attribute__((warn_unused_result)) static pb_err_t
pbconf_parse_ids(pbd_config_t *cfg, const pbconf_key_t *k, const char *text, char *why, size_t why_size) {
    int group = k->type == PBCONF_GIDS;
    char **items = NULL;
    size_t n = 0;
    unsigned *ids = NULL;
    pb_err_t rc = pbconf_split(text, k->max, &items, &n, why, why_size);
    if (rc != PB_OK) return rc;
    if (n > 0 && !(ids = calloc(n, sizeof *ids))) {
        rc = PB_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned long long v;
        if (pbconf_parse_ull(items[i], strlen(items[i]), &v) == 0) {
            if (v >= UINT32_MAX) {
                pbconf_why(why, why_size, "%s id %s is out of range", group ? "group" : "user", items[i]);
                rc = PB_ERR_CONFIG;
                goto out;
            }
            ids[i] = (unsigned)v;
        } else if ((rc = pbconf_lookup_id(items[i], group, &ids[i], why, why_size)) != PB_OK) {
            goto out;
        }
    }
    _Static_assert(sizeof(uid_t) == sizeof(unsigned) && sizeof(gid_t) == sizeof(unsigned), "32-bit ids");
    if (group) {
        free(cfg->allowed_gids);
        cfg->allowed_gids = (gid_t *)ids;
        cfg->n_allowed_gids = n;
    } else {
        free(cfg->allowed_uids);
        cfg->allowed_uids = (uid_t *)ids;
        cfg->n_allowed_uids = n;
    }
    ids = NULL;
out:
    free(ids);
    pbconf_free_strings(items, n);
    return rc;
}

__attribute__((warn_unused_result)) static pb_err_t
pbconf_parse_pins(pbd_config_t *cfg, const pbconf_key_t *k, const char *text, char *why, size_t why_size) {
    char **items = NULL;
    size_t n = 0;
    pb_err_t rc = pbconf_split(text, k->max, &items, &n, why, why_size);
    if (rc != PB_OK) return rc;
    for (size_t i = 0; i < n; i++) {
        char perr[256] = "";
        if (pbtls_pin_parse(items[i], cfg->tls.pins[i], perr, sizeof perr) != 0) {
            pbconf_why(why, why_size, "pin %zu: %s", i + 1, perr);
            rc = PB_ERR_CONFIG;
            goto out;
        }
    }
    cfg->tls.pin_count = n;
out:
    pbconf_free_strings(items, n);
    return rc;
}

/* Paths are checked at load time so a typo fails at startup, not at the first reconnect. */
static pb_err_t pbconf_check_file(const char *path, char *why, size_t why_size) {
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        pbconf_why(why, why_size, "cannot read '%s': %s", path, strerror(errno));
        return PB_ERR_CONFIG;
    }
    if (S_ISDIR(st.st_mode)) {
        pbconf_why(why, why_size, "'%s' is a directory, not a file", path);
        return PB_ERR_CONFIG;
    }
    return PB_OK;
}

/* Parses text as k's type into cfg. Returns PB_OK or a code with the reason (no location) in why. */
__attribute__((warn_unused_result)) static pb_err_t
pbconf_apply(pbd_config_t *cfg, const pbconf_key_t *k, const char *text, char *why, size_t why_size) {
    pb_err_t rc = PB_OK;
    size_t len = strlen(text);
    switch (k->type) {
    case PBCONF_STRING:
    case PBCONF_FILE: {
        char **dst = pbconf_field(cfg, k->off);
        free(*dst);
        *dst = NULL;
        if (len == 0) {
            /* `key =` (or an empty ${VAR:-}) leaves an optional key unset. */
            if ((k->flags & PBCONF_REQUIRED) || k->def) {
                pbconf_why(why, why_size, "must not be empty");
                return PB_ERR_CONFIG;
            }
            return PB_OK;
        }
        if (k->type == PBCONF_FILE && (rc = pbconf_check_file(text, why, why_size)) != PB_OK) return rc;
        if (!(*dst = strdup(text))) return PB_ERR_NOMEM;
        break;
    }
    case PBCONF_MODE: {
        unsigned long long v = 0;
        int ok = len >= 1 && len <= 4;
        for (size_t i = 0; ok && i < len; i++) {
            ok = text[i] >= '0' && text[i] <= '7';
            v = v * 8 + (unsigned)(text[i] - '0');
        }
        if (!ok) {
            pbconf_why(why, why_size, "'%s' is not an octal mode (like 0660)", text);
            return PB_ERR_CONFIG;
        }
        if ((long long)v < k->min || (long long)v > k->max) {
            pbconf_why(why, why_size, "mode %04llo is out of range %04llo..%04llo", v,
                       (unsigned long long)k->min, (unsigned long long)k->max);
            return PB_ERR_CONFIG;
        }
        *(unsigned *)pbconf_field(cfg, k->off) = (unsigned)v;
        break;
    }
    case PBCONF_INT: {
        unsigned long long mag;
        int neg = text[0] == '-';
        if (pbconf_parse_ull(text + neg, len - (size_t)neg, &mag) != 0) {
            pbconf_why(why, why_size, "'%s' is not an integer", text);
            return PB_ERR_CONFIG;
        }
        if (mag > (unsigned long long)LLONG_MAX || (long long)mag * (neg ? -1 : 1) < k->min ||
            (long long)mag * (neg ? -1 : 1) > k->max) {
            pbconf_why(why, why_size, "%s is out of range %lld..%lld", text, k->min, k->max);
            return PB_ERR_CONFIG;
        }
        *(int *)pbconf_field(cfg, k->off) = (int)((long long)mag * (neg ? -1 : 1));
        break;
    }
    case PBCONF_SIZE: {
        unsigned long long v, mult = 1;
        size_t digits = len;
        if (len > 0 && strchr("kK", text[len - 1]))
            mult = 1024, digits--;
        else if (len > 0 && strchr("mM", text[len - 1]))
            mult = 1024 * 1024, digits--;
        if (pbconf_parse_ull(text, digits, &v) != 0) {
            pbconf_why(why, why_size, "'%s' is not a size (bytes, with an optional k or m suffix)", text);
            return PB_ERR_CONFIG;
        }
        if (v > ULLONG_MAX / mult || v * mult < (unsigned long long)k->min ||
            v * mult > (unsigned long long)k->max) {
            pbconf_why(why, why_size, "%s is out of range %lld..%lld bytes", text, k->min, k->max);
            return PB_ERR_CONFIG;
        }
        *(size_t *)pbconf_field(cfg, k->off) = (size_t)(v * mult);
        break;
    }
    case PBCONF_ENUM: {
        size_t i = 0;
        while (k->choices[i] && strcasecmp(k->choices[i], text) != 0)
            i++;
        if (!k->choices[i]) {
            char list[256] = "";
            size_t used = 0;
            for (size_t j = 0; k->choices[j] && used < sizeof list; j++)
                used +=
                    (size_t)snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", k->choices[j]);
            pbconf_why(why, why_size, "'%s' is not one of: %s", text, list);
            return PB_ERR_CONFIG;
        }
        if (k->store_choice) {
            k->store_choice(cfg, i);
        } else {
            char **dst = pbconf_field(cfg, k->off);
            free(*dst);
            if (!(*dst = strdup(k->choices[i]))) return PB_ERR_NOMEM;
        }
        break;
    }
    case PBCONF_LIST: {
        char **items;
        size_t n;
        if ((rc = pbconf_split(text, k->max, &items, &n, why, why_size)) != PB_OK) return rc;
        char ***dst = pbconf_field(cfg, k->off);
        size_t *count = pbconf_field(cfg, k->count_off);
        pbconf_free_strings(*dst, *count);
        *dst = items;
        *count = n;
        break;
    }
    case PBCONF_UIDS:
    case PBCONF_GIDS:
        if ((rc = pbconf_parse_ids(cfg, k, text, why, why_size)) != PB_OK) return rc;
        break;
    case PBCONF_PINS:
        if ((rc = pbconf_parse_pins(cfg, k, text, why, why_size)) != PB_OK) return rc;
        break;
    }
    return k->check ? k->check(text, cfg, why, why_size) : PB_OK;
}

/* Checks a kafka.<property> entry and appends it to cfg->kafka. */
__attribute__((warn_unused_result)) static pb_err_t pbconf_add_kafka(pbd_config_t *cfg,
                                                                     const props_entry_t *e,
                                                                     pbconf_scope_t scope, rd_kafka_conf_t **scratch,
                                                                     char *errstr, size_t errstr_size) {
    const char *prop = e->key + strlen("kafka.");
    char why[600];
    if (!*prop) {
        pbconf_fail(errstr, errstr_size, e, e->key, "no librdkafka property after 'kafka.'");
        return PB_ERR_CONFIG;
    }
    const char *reason = pbtls_denied_kafka_property(prop);
    if (reason) {
        snprintf(why, sizeof why, "refused (%s): %s", pb_err_name(PB_ERR_INSECURE), reason);
        pbconf_fail(errstr, errstr_size, e, e->key, why);
        return PB_ERR_INSECURE;
    }
    for (size_t i = 0; scope == PBCONF_SCOPE_CONSUMER && i < sizeof pbconf_consumer_owned / sizeof pbconf_consumer_owned[0];
         i++) {
        if (strcasecmp(prop, pbconf_consumer_owned[i].property) == 0) {
            snprintf(why, sizeof why, "refused: %s", pbconf_consumer_owned[i].reason);
            pbconf_fail(errstr, errstr_size, e, e->key, why);
            return PB_ERR_INSECURE;
        }
    }
    for (size_t i = 0; scope == PBCONF_SCOPE_DAEMON && i < sizeof pbconf_kafka_owned / sizeof pbconf_kafka_owned[0];
         i++) {
        if (strcasecmp(prop, pbconf_kafka_owned[i].property) == 0) {
            snprintf(why, sizeof why, "use the %s key", pbconf_kafka_owned[i].key);
            pbconf_fail(errstr, errstr_size, e, e->key, why);
            return PB_ERR_CONFIG;
        }
    }
    /* librdkafka is the authority on its own properties and values: ask it on a throwaway conf. */
    if (!*scratch && !(*scratch = rd_kafka_conf_new())) return PB_ERR_NOMEM;
    char rderr[512] = "";
    if (rd_kafka_conf_set(*scratch, prop, e->value, rderr, sizeof rderr) != RD_KAFKA_CONF_OK) {
        snprintf(why, sizeof why, "librdkafka: %s", rderr);
        pbconf_fail(errstr, errstr_size, e, e->key, why);
        return PB_ERR_CONFIG;
    }
    pbconf_kafka_prop_t *kp = realloc(cfg->kafka, (cfg->n_kafka + 1) * sizeof *kp);
    if (!kp) return PB_ERR_NOMEM;
    cfg->kafka = kp;
    kp = &cfg->kafka[cfg->n_kafka];
    kp->property = strdup(prop);
    kp->value = strdup(e->value);
    kp->file = strdup(e->file);
    kp->line = e->line;
    cfg->n_kafka++; /* counted even if a strdup failed, so pbd_config_free releases the rest */
    if (!kp->property || !kp->value || !kp->file) return PB_ERR_NOMEM;
    return PB_OK;
}

static void pbconf_unknown(const props_entry_t *e, pbconf_scope_t scope, char *errstr, size_t errstr_size) {
    char where[512];
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < PBCONF_N_KEYS; i++) {
        if (!pbconf_in_scope(&pbconf_keys[i], scope)) continue;
        size_t d = pbconf_distance(e->key, pbconf_keys[i].name);
        if (d < best_d) best_d = d, best = pbconf_keys[i].name;
    }
    pbconf_where(e, where, sizeof where);
    if (best)
        snprintf(errstr, errstr_size, "%s: unknown key '%s' (did you mean '%s'?)", where, e->key, best);
    else
        snprintf(errstr, errstr_size, "%s: unknown key '%s'", where, e->key);
}

static size_t pbconf_index(const char *name) {
    for (size_t i = 0; i < PBCONF_N_KEYS; i++)
        if (strcmp(pbconf_keys[i].name, name) == 0) return i;
    return 0;
}

/* Keys that make no sense without another (indexes into tls_strings). */
static const struct {
    int given, needs;
    const char *key, *why;
} pbconf_tls_needs[] = {
    {1, 2, "tls.cert", "needs tls.key"},
    {2, 1, "tls.key", "needs tls.cert"},
    {3, 2, "tls.key_passphrase_file", "is only used with tls.key"},
    {5, 4, "tls.keystore_passphrase_file", "is only used with tls.keystore"},
};

/* Rules that span keys, checked once every key has its value. */
__attribute__((warn_unused_result)) static pb_err_t pbconf_cross_check(const pbd_config_t *cfg,
                                                                       pbconf_scope_t scope,
                                                                       const props_entry_t *const *seen,
                                                                       char *errstr, size_t errstr_size) {
    /* ca, cert, key, key_passphrase_file, keystore, keystore_passphrase_file, crl */
    char *const *t = cfg->tls_strings;
    if (t[4] && (t[1] || t[2])) {
        pbconf_fail(errstr, errstr_size, seen[pbconf_index("tls.keystore")], "tls.keystore",
                    "cannot be combined with tls.cert/tls.key: give a keystore or a PEM pair, not both");
        return PB_ERR_CONFIG;
    }
    if (!t[4] && !t[1] && !t[2]) {
        snprintf(errstr, errstr_size,
                 "missing required key 'tls.cert' and 'tls.key' (or 'tls.keystore'): "
                 "predbridge always presents a client certificate");
        return PB_ERR_CONFIG;
    }
    for (size_t i = 0; i < sizeof pbconf_tls_needs / sizeof pbconf_tls_needs[0]; i++) {
        if (t[pbconf_tls_needs[i].given] && !t[pbconf_tls_needs[i].needs]) {
            const char *key = pbconf_tls_needs[i].key;
            pbconf_fail(errstr, errstr_size, seen[pbconf_index(key)], key, pbconf_tls_needs[i].why);
            return PB_ERR_CONFIG;
        }
    }
    if (scope == PBCONF_SCOPE_DAEMON && cfg->n_allowed_uids == 0 && cfg->n_allowed_gids == 0) {
        pbconf_fail(errstr, errstr_size, seen[pbconf_index("socket.allowed_uids")], "socket.allowed_uids",
                    "socket.allowed_uids and socket.allowed_gids are both empty: no client could connect");
        return PB_ERR_CONFIG;
    }
    return PB_OK;
}

pb_err_t pbconf_load_scoped(pbd_config_t *cfg, const props_t *props, pbconf_scope_t scope, char *errstr,
                            size_t errstr_size) {
    const props_entry_t *seen[PBCONF_N_KEYS] = {0};
    rd_kafka_conf_t *scratch = NULL;
    char why[600], sink[1] = "";
    pb_err_t rc = PB_OK;
    if (!errstr || errstr_size == 0) errstr = sink, errstr_size = sizeof sink;
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < props_count(props); i++) {
        const props_entry_t *e = props_at(props, i);
        if (strncmp(e->key, "kafka.", 6) == 0) {
            if ((rc = pbconf_add_kafka(cfg, e, scope, &scratch, errstr, errstr_size)) != PB_OK) goto out;
            continue;
        }
        const pbconf_key_t *k = pbconf_find_key(e->key, scope);
        if (!k) {
            pbconf_unknown(e, scope, errstr, errstr_size);
            rc = PB_ERR_CONFIG;
            goto out;
        }
        seen[k - pbconf_keys] = e;
        if ((rc = pbconf_apply(cfg, k, e->value, why, sizeof why)) != PB_OK) {
            pbconf_fail(errstr, errstr_size, e, k->name, why);
            goto out;
        }
    }
    for (size_t i = 0; i < PBCONF_N_KEYS; i++) {
        const pbconf_key_t *k = &pbconf_keys[i];
        if (seen[i] || !pbconf_in_scope(k, scope)) continue;
        if (k->flags & PBCONF_REQUIRED) {
            snprintf(errstr, errstr_size, "missing required key '%s'", k->name);
            rc = PB_ERR_CONFIG;
            goto out;
        }
        if (k->flags & PBCONF_EUID_DEFAULT) {
            if (!(cfg->allowed_uids = malloc(sizeof *cfg->allowed_uids))) {
                rc = PB_ERR_NOMEM;
                goto out;
            }
            cfg->allowed_uids[0] = geteuid();
            cfg->n_allowed_uids = 1;
        } else if (k->def && (rc = pbconf_apply(cfg, k, k->def, why, sizeof why)) != PB_OK) {
            pbconf_fail(errstr, errstr_size, NULL, k->name, why);
            goto out;
        }
    }
    if ((rc = pbconf_cross_check(cfg, scope, seen, errstr, errstr_size)) != PB_OK) goto out;
    cfg->tls.ca = cfg->tls_strings[0];
    cfg->tls.cert = cfg->tls_strings[1];
    cfg->tls.key = cfg->tls_strings[2];
    cfg->tls.key_passphrase_file = cfg->tls_strings[3];
    cfg->tls.keystore = cfg->tls_strings[4];
    cfg->tls.keystore_passphrase_file = cfg->tls_strings[5];
    cfg->tls.crl = cfg->tls_strings[6];
out:
    if (rc == PB_ERR_NOMEM) snprintf(errstr, errstr_size, "out of memory while loading the configuration");
    if (scratch) rd_kafka_conf_destroy(scratch);
    if (rc != PB_OK) pbd_config_free(cfg);
    return rc;
}

pb_err_t pbconf_check_entry(const props_entry_t *e, pbconf_scope_t scope, char *errstr, size_t errstr_size) {
    pbd_config_t cfg;
    rd_kafka_conf_t *scratch = NULL;
    char why[600];
    pb_err_t rc;
    memset(&cfg, 0, sizeof cfg);
    if (strncmp(e->key, "kafka.", 6) == 0) {
        rc = pbconf_add_kafka(&cfg, e, scope, &scratch, errstr, errstr_size);
    } else {
        const pbconf_key_t *k = pbconf_find_key(e->key, scope);
        if (!k) {
            pbconf_unknown(e, scope, errstr, errstr_size);
            rc = PB_ERR_CONFIG;
        } else if ((rc = pbconf_apply(&cfg, k, e->value, why, sizeof why)) != PB_OK) {
            pbconf_fail(errstr, errstr_size, e, k->name, why);
        }
    }
    if (rc == PB_ERR_NOMEM) snprintf(errstr, errstr_size, "out of memory while checking key '%s'", e->key);
    if (scratch) rd_kafka_conf_destroy(scratch);
    pbd_config_free(&cfg);
    return rc;
}

pb_err_t pbd_config_load_ex(pbd_config_t *cfg, const props_t *props, char *errstr, size_t errstr_size) {
    return pbconf_load_scoped(cfg, props, PBCONF_SCOPE_DAEMON, errstr, errstr_size);
}

int pbd_config_load(pbd_config_t *cfg, const props_t *props, char *errstr, size_t errstr_size) {
    return pbd_config_load_ex(cfg, props, errstr, errstr_size) == PB_OK ? 0 : -1;
}

void pbd_config_free(pbd_config_t *cfg) {
    if (!cfg) return;
    free(cfg->socket_path);
    free(cfg->allowed_uids);
    free(cfg->allowed_gids);
    free(cfg->bootstrap_servers);
    free(cfg->topic);
    for (size_t i = 0; i < sizeof cfg->tls_strings / sizeof cfg->tls_strings[0]; i++)
        free(cfg->tls_strings[i]);
    pbconf_free_strings(cfg->required_fields, cfg->n_required_fields);
    free(cfg->key_field);
    free(cfg->compression);
    free(cfg->spool_dir);
    free(cfg->spool_fsync);
    free(cfg->http_listen);
    free(cfg->group_id);
    pbconf_free_strings(cfg->topics, cfg->n_topics);
    free(cfg->auto_offset_reset);
    for (size_t i = 0; i < cfg->n_kafka; i++) {
        free(cfg->kafka[i].property);
        free(cfg->kafka[i].value);
        free(cfg->kafka[i].file);
    }
    free(cfg->kafka);
    memset(cfg, 0, sizeof *cfg);
}

/* Writes s with '|' escaped so it stays inside one Markdown table cell. */
static void pbconf_md(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

void pbd_config_write_reference(FILE *f) {
    fputs("| key | default | meaning |\n|---|---|---|\n", f);
    for (size_t i = 0; i < PBCONF_N_KEYS; i++) {
        const pbconf_key_t *k = &pbconf_keys[i];
        if (!pbconf_in_scope(k, PBCONF_SCOPE_DAEMON)) continue;
        fprintf(f, "| `%s` | ", k->name);
        if (k->flags & PBCONF_REQUIRED)
            fputs("(required)", f);
        else if (k->def_doc)
            pbconf_md(f, k->def_doc);
        else if (!k->def)
            fputs("(unset)", f);
        else if (!*k->def)
            fputs("(empty)", f);
        else
            fprintf(f, "`%s`", k->def);
        fputs(" | ", f);
        pbconf_md(f, k->doc);
        if (k->type == PBCONF_FILE) fputs(" A path; must exist and be readable at startup.", f);
        if (k->type == PBCONF_MODE)
            fprintf(f, " Octal, %04llo..%04llo.", (unsigned long long)k->min, (unsigned long long)k->max);
        if (k->type == PBCONF_INT) fprintf(f, " Integer, %lld..%lld.", k->min, k->max);
        if (k->type == PBCONF_SIZE)
            fprintf(f, " Bytes, %lld..%lld; suffix k or m for KiB or MiB.", k->min, k->max);
        if (k->type == PBCONF_UIDS || k->type == PBCONF_GIDS)
            fprintf(f, " Comma-separated %s, at most %lld.",
                    k->type == PBCONF_UIDS ? "user names or uids" : "group names or gids", k->max);
        if (k->type == PBCONF_LIST || k->type == PBCONF_PINS)
            fprintf(f, " Comma-separated, at most %lld.", k->max);
        for (size_t j = 0; k->type == PBCONF_ENUM && k->choices[j]; j++)
            fprintf(f, "%s `%s`%s", j ? "," : " One of:", k->choices[j], k->choices[j + 1] ? "" : ".");
        fputs(" |\n", f);
    }
    fputs("| `kafka.<property>` | (unset) | Any other librdkafka property, checked by librdkafka at startup. "
          "Refused: security.protocol, ssl.\\*, sasl.\\*, certificate and host-name verification, "
          "bootstrap.servers, acks and idempotence, plugins, test.\\* (mock brokers), and properties with a key of their own "
          "(linger.ms, compression.codec). Defaults it may change: predbridged bounds librdkafka's queue "
          "(`queue.buffering.max.messages=10000`, `queue.buffering.max.kbytes=4096`); both predbridged and "
          "libpredbridge set `socket.nagle.disable=true` (TCP_NODELAY, as Kafka's own clients do: with Nagle's "
          "algorithm small requests wait for the broker's delayed ACK, which at 10,000 predictions/s was most of "
          "the latency); libpredbridge sets `queued.min.messages=10000000`, leaving the pre-fetch bounded by "
          "`queued.max.messages.kbytes` (librdkafka 2.0 stops fetching for up to a second once its whole queue holds "
          "100,000 messages, which halved the throughput of an application a little slower than the network). |\n",
          f);
}
