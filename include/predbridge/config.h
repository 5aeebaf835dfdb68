/* predbridge/config.h: the consumer's configuration object, filled key by key or from a file. */
#ifndef PREDBRIDGE_CONFIG_H
#define PREDBRIDGE_CONFIG_H

#include <predbridge/error.h>
#include <predbridge/export.h>
#include <predbridge/log.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A configuration for pb_consumer_new. Keys and syntax are predbridged's (`key = value` properties,
 * ${ENV} expansion): bootstrap.servers, tls.ca, tls.cert + tls.key or tls.keystore, tls.pins, tls.crl,
 * tls.*_passphrase_file, tls.watch_debounce_ms, message.max_bytes, message.required_fields, plus the
 * consumer's own tls.watch (default false: see pb_consumer_reload_tls), log.level and log.format (for
 * the log callback, below), group.id (required), topics,
 * auto.offset.reset (earliest|latest), consumer.retry_backoff_ms, consumer.commit_interval_ms,
 * consumer.dedup.window (see pb_consumer_t), and kafka.<property> pass-through to librdkafka.
 * Refused with PB_ERR_INSECURE: anything that would turn TLS or its verification off
 * (kafka.security.protocol, kafka.ssl.*, ...) or break the commit semantics
 * (kafka.enable.auto.commit, kafka.enable.auto.offset.store, ...).
 *
 * Ownership: the caller owns a pb_config_t and destroys it; pb_consumer_new copies what it needs.
 * Threading: a pb_config_t is not thread-safe; use one from one thread at a time. None of these
 * functions blocks except pb_config_load_file, which reads a file.
 */
typedef struct pb_config pb_config_t;

/* A new, empty configuration, or NULL when out of memory. */
PB_API pb_config_t *pb_config_new(void);

/* Sets key to value (copied), replacing an earlier value. The key and the value's type and range
 * are checked now; settings that depend on each other (a required key, tls.cert with tls.key) are
 * checked by pb_consumer_new. Returns PB_OK, or PB_ERR_CONFIG / PB_ERR_INSECURE /
 * PB_ERR_INVALID_ARG with a message naming the key in errstr (may be NULL). */
PB_API pb_err_t pb_config_set(pb_config_t *conf, const char *key, const char *value, char *errstr,
                              size_t errstr_size);

/* Reads a properties file into conf; its values replace earlier ones. Every key is checked as by
 * pb_config_set; errors name the file and line ("c.conf:7: key 'tls.ca': cannot read ..."). On error
 * conf is unchanged. Blocks on file I/O. */
PB_API pb_err_t pb_config_load_file(pb_config_t *conf, const char *path, char *errstr, size_t errstr_size);

/* Sets the function that receives the consumer's diagnostics (see predbridge/log.h), filtered by
 * log.level and formatted by log.format; fn NULL (the default) logs nothing. opaque is passed to it.
 * Returns PB_OK, or PB_ERR_INVALID_ARG for a NULL conf. */
PB_API pb_err_t pb_config_set_log_fn(pb_config_t *conf, pb_log_fn fn, void *opaque);

/* Frees conf. NULL is a no-op. */
PB_API void pb_config_destroy(pb_config_t *conf);

#ifdef __cplusplus
}
#endif
#endif
