/* consumer_internal.h: the pb_consumer_t that consumer.c (dispatch, offsets) and reload.c (TLS reloads,
 * file watch) share; not installed. */
#ifndef PB_LIB_CONSUMER_INTERNAL_H
#define PB_LIB_CONSUMER_INTERNAL_H

#include "lib_internal.h"

#include "common/tls.h"
#include "common/watch.h"
#include "lib/dedup.h"

#include <stdatomic.h>
#include <stdint.h>

/* One librdkafka consumer and the TLS material it was made with. A reload replaces it whole: the old
 * one commits and leaves the group, a new one joins. It is the opaque of librdkafka's callbacks, which
 * reach the consumer through it, and each has its own verifier. */
typedef struct pbc_conn {
    pbtls_opaque_head_t tls; /* first member: the TLS verifier finds itself through the conf opaque */
    pb_consumer_t *c;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer queue (the main queue is forwarded to it) */
} pbc_conn_t;

struct pb_consumer {
    pbc_conn_t *conn; /* the current connection */
    pbd_config_t cfg; /* kept for reloads, which read the same files with the same settings */
    int queue_fd;     /* the current connection's queue writes here when it becomes non-empty */
    int stop_fd;      /* pb_consumer_stop writes here */
    atomic_int stopped;
    int closed;
    int busy; /* inside poll/run/close/reload, where callbacks run: a reload from a callback is refused */
    pb_prediction_fn on_prediction;
    pb_error_fn on_error;
    void *opaque;
    int64_t next_commit_ms;
    struct pbc_retry *retries; /* partitions waiting out a PB_RETRY backoff (consumer.c) */
    size_t n_retries;
    pbdedup_t *dedup;       /* consumer.dedup.window; NULL when 0 */
    pbwatch_t *watch;       /* tls.watch; NULL when off */
    int64_t watch_check_ms; /* when a busy poll looks at the watch next */
    int64_t material_check_ms; /* next periodic check of the TLS files (tls.expiry.check_interval_s) */
    pbtls_cert_info_t in_use;  /* the material conn was made with (the files may hold other material) */
    pbstats_t stats;
    pblib_log_t log;
};

/* A librdkafka consumer for c->cfg with the TLS files as they are now, not yet subscribed and not yet
 * waking queue_fd. Returns NULL with *code (PB_ERR_NOMEM, PB_ERR_CERTIFICATE, PB_ERR_CONFIG) and errstr. */
pbc_conn_t *pbc_conn_new(pb_consumer_t *c, pb_err_t *code, char *errstr, size_t errstr_size);

/* Makes conn the one whose queue wakes queue_fd, and subscribes it to the configured topics. Returns
 * PB_OK, or PB_ERR_NOMEM / PB_ERR_BROKER with errstr. */
__attribute__((warn_unused_result)) pb_err_t pbc_conn_start(pb_consumer_t *c, pbc_conn_t *conn, char *errstr,
                                                            size_t errstr_size);

/* Commits what was processed, synchronously, and leaves the group (callbacks of conn run meanwhile;
 * fetched messages not yet delivered are dropped, not delivered). Returns PB_OK, or the first failure
 * with errstr ("committing offsets failed: ...", "leaving the group failed: ..."). Blocks. */
__attribute__((warn_unused_result)) pb_err_t pbc_conn_leave(pbc_conn_t *conn, char *errstr,
                                                            size_t errstr_size);

/* Destroys conn (NULL: no-op). left: it left the group with pbc_conn_leave, else it goes like a crash
 * (nothing more is committed). Blocks while librdkafka's threads stop. */
void pbc_conn_free(pbc_conn_t *conn, int left);

/* ---- reload.c ---- */

/* pbc_conn_new with the files checked first (pbtls_check_material; warnings are logged) and again
 * after librdkafka read them, so the connection holds the material that was checked; info describes
 * it. Returns NULL with *code and errstr (naming key and file) as pbc_conn_new. */
pbc_conn_t *pbc_conn_checked(pb_consumer_t *c, pbtls_cert_info_t *info, pb_err_t *code, char *errstr,
                             size_t errstr_size);

/* Records info as the material in use: for the periodic check, and the expiry times of
 * pb_consumer_stats. Called when a connection made with it starts (pb_consumer_new, a reload). */
void pbc_material_in_use(pb_consumer_t *c, const pbtls_cert_info_t *info);

/* Starts watching the TLS files (tls.watch). Returns PB_OK, or PB_ERR_IO with errstr. */
__attribute__((warn_unused_result)) pb_err_t pbc_watch_start(pb_consumer_t *c, char *errstr,
                                                             size_t errstr_size);

/* The fd poll waits on for the watch, -1 without one. */
int pbc_watch_fd(const pb_consumer_t *c);

/* Serves the watch when ready (its fd was readable) or, for a consumer too busy to wait on it, every
 * so often; reloads once changed files have been quiet for tls.watch_debounce_ms. */
void pbc_watch_serve(pb_consumer_t *c, int ready);

/* Every tls.expiry.check_interval_s: checks the TLS files again; expiry within tls.expiry.warn_days
 * is logged as a warning, an expired or unusable certificate is logged and reported to on_error as
 * PB_ERR_CERTIFICATE. When the files hold another client certificate than the one in use (a refused
 * reload, or files changed without one), the expiry of the one in use and its CA is watched the
 * same way. */
void pbc_material_periodic(pb_consumer_t *c);

#endif
