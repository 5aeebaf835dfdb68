/* config.h: typed, validated settings of predbridged (and the keys libpredbridge shares with it),
 * built from a props_t by one table of keys that also documents them. */
#ifndef PB_COMMON_CONFIG_H
#define PB_COMMON_CONFIG_H

#include "common/log.h"
#include "common/props.h"
#include "common/tls.h"

#include <predbridge/error.h>

#include <stddef.h>
#include <sys/types.h>

/* A `kafka.<property> = value` pass-through, checked against pbtls_denied_kafka_property and
 * against librdkafka itself (an unknown property is an error naming file and line). */
typedef struct pbconf_kafka_prop {
    char *property; /* without the "kafka." prefix */
    char *value;
    char *file;
    int line;
} pbconf_kafka_prop_t;

typedef struct pbd_config {
    /* socket.* */
    char *socket_path;          /* socket.path, default /run/predbridge/predbridged.sock */
    unsigned socket_mode;       /* socket.mode, octal, default 0660; o+w is refused as insecure */
    uid_t *allowed_uids;        /* socket.allowed_uids: numbers or user names; default: own euid */
    size_t n_allowed_uids;
    gid_t *allowed_gids;        /* socket.allowed_gids: numbers or group names; default: none */
    size_t n_allowed_gids;
    int max_connections;        /* socket.max_connections, default 4096, 1..65536 */

    /* broker */
    char *bootstrap_servers;    /* bootstrap.servers, required, host:port[,host:port...] */
    char *topic;                /* topic, default "predictions" */

    /* tls.* : the string fields of tls point into storage owned by this struct */
    pbtls_settings_t tls;
    char *tls_strings[7];       /* owned storage behind tls.ca ... tls.crl */
    int tls_watch;              /* tls.watch: reload when the TLS files change, default true in predbridged, false in libpredbridge */
    int tls_watch_debounce_ms;  /* tls.watch_debounce_ms: quiet time before reloading, default 500 */
    int tls_check_interval_s;   /* tls.expiry.check_interval_s: periodic material check, default 3600 */

    /* message.* */
    size_t max_message_bytes;   /* message.max_bytes, default 1048576, 64..16777216 */
    char **required_fields;     /* message.required_fields, default "model_version,prediction" */
    size_t n_required_fields;
    char *key_field;            /* message.key_field, default unset (no key) */

    /* producer.* */
    char *compression;          /* producer.compression: none|gzip|snappy|lz4|zstd, default lz4 */
    int linger_ms;              /* producer.linger_ms, default 5, 0..10000 */
    int flush_timeout_ms;       /* producer.flush_timeout_ms (on shutdown), default 30000 */

    /* spool.* */
    char *spool_dir;            /* spool.dir, default /var/lib/predbridge/spool */
    char *spool_fsync;          /* spool.fsync: always|interval|never, default interval */
    int spool_fsync_interval_ms; /* spool.fsync_interval_ms, default 20 */
    size_t spool_max_bytes;     /* spool.max_bytes, default 1 GiB */
    size_t spool_segment_bytes; /* spool.segment_bytes, default 64 MiB */

    /* log.* */
    pblog_level_t log_level;    /* log.level: error|warn|info|debug, default info */
    pblog_format_t log_format;  /* log.format: text|json, default text */

    /* http.* */
    char *http_listen;          /* http.listen: loopback host:port for /metrics, /healthz, /readyz; NULL: off */

    pbconf_kafka_prop_t *kafka; /* kafka.* pass-through, in file order */
    size_t n_kafka;

    /* consumer scope only (libpredbridge); unset in the daemon's config */
    char *group_id;             /* group.id, required */
    char **topics;              /* topics, default "predictions" */
    size_t n_topics;
    char *auto_offset_reset;    /* auto.offset.reset: earliest|latest, default earliest */
    int retry_backoff_ms;       /* consumer.retry_backoff_ms, default 1000 */
    int commit_interval_ms;     /* consumer.commit_interval_ms, default 1000 */
    int dedup_window;           /* consumer.dedup.window: recent pb-ids remembered, default 100000; 0: off */
} pbd_config_t;

/* Which program a config is for: the shared keys (bootstrap.servers, tls.*, message.max_bytes,
 * message.required_fields, kafka.*) mean the same in both. */
typedef enum { PBCONF_SCOPE_DAEMON = 0, PBCONF_SCOPE_CONSUMER = 1 } pbconf_scope_t;

/*
 * Builds cfg from props: every key known and of the right type and range, required keys present,
 * referenced files existing and readable, kafka.* pass-through allowed. Errors name the source
 * "file:line: key 'x': reason" (or "-o: key 'x': ..." for overrides, "missing required key 'x'").
 * Returns 0, or -1 with errstr; cfg is then freed already. Does not check certificate contents
 * (see pbtls_check_material).
 */
__attribute__((warn_unused_result)) int pbd_config_load(pbd_config_t *cfg, const props_t *props, char *errstr,
                                                        size_t errstr_size);
/* Like pbd_config_load, and says what kind of failure it was: PB_ERR_INSECURE for a setting refused
 * because it would weaken security (a denied kafka.* property, socket.mode with o+w, a scheme such as
 * plaintext:// in bootstrap.servers), PB_ERR_NOMEM, or PB_ERR_CONFIG for everything else; PB_OK on
 * success. Callers that report errors by code (predbridge check, libpredbridge) use this one. */
__attribute__((warn_unused_result)) pb_err_t pbd_config_load_ex(pbd_config_t *cfg, const props_t *props,
                                                                char *errstr, size_t errstr_size);

/* As pbd_config_load_ex for either scope. The consumer scope knows group.id, topics,
 * auto.offset.reset, consumer.* and log.*, not socket.*, topic or producer.*, and also refuses
 * kafka.* properties that would break the consumer's commit semantics (enable.auto.commit,
 * enable.auto.offset.store, ...) with PB_ERR_INSECURE. */
__attribute__((warn_unused_result)) pb_err_t pbconf_load_scoped(pbd_config_t *cfg, const props_t *props,
                                                                pbconf_scope_t scope, char *errstr,
                                                                size_t errstr_size);

/* Checks one entry alone (known key in scope, value of the right type and range, kafka.* allowed),
 * for setters that report errors key by key. Errors as pbconf_load_scoped. */
__attribute__((warn_unused_result)) pb_err_t pbconf_check_entry(const props_entry_t *e, pbconf_scope_t scope,
                                                                char *errstr, size_t errstr_size);

/* Frees what cfg owns and zeroes it. Safe on a zeroed or already freed cfg. */
void pbd_config_free(pbd_config_t *cfg);

/* Writes the configuration reference (every key, default and meaning) as a Markdown table to f. */
#include <stdio.h>
void pbd_config_write_reference(FILE *f);

#endif
