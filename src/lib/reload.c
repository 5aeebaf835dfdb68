/* reload.c: a consumer's move to new TLS material (pb_consumer_reload_tls, and tls.watch): check the
 * files, commit, leave the group, join again with a new librdkafka consumer. */
#include "consumer_internal.h"
#include "common/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* How often a consumer that never waits (messages keep coming) looks at the watch anyway. */
#define PBC_WATCH_CHECK_MS 250

/* The keys of the TLS files, in the order of pbd_config_t's tls_strings (the watch's bits). */
#define PBC_TLS_FILES (sizeof ((pbd_config_t *)0)->tls_strings / sizeof ((pbd_config_t *)0)->tls_strings[0])
static const char *const pbc_tls_keys[] = {"tls.ca",       "tls.cert",
                                           "tls.key",      "tls.key_passphrase_file",
                                           "tls.keystore", "tls.keystore_passphrase_file",
                                           "tls.crl"};
_Static_assert(sizeof pbc_tls_keys / sizeof pbc_tls_keys[0] == PBC_TLS_FILES, "one key per TLS file");

static void pbc_material_warn(void *ctx, const char *message) {
    pb_consumer_t *c = ctx;
    pblib_log(&c->log, PBLOG_WARN, "tls.material", NULL, 0, "%s", message);
}

struct conn_create {
    pb_consumer_t *c;
    pb_err_t code;
};

static void *conn_create(void *ctx, char *errstr, size_t errstr_size) {
    struct conn_create *cc = ctx;
    return pbc_conn_new(cc->c, &cc->code, errstr, errstr_size);
}

static void conn_destroy(void *ctx, void *conn) {
    (void)ctx;
    pbc_conn_free(conn, 0);
}

/* A connection from the TLS files as they are now, checked before and after librdkafka read them. */
pbc_conn_t *pbc_conn_checked(pb_consumer_t *c, pbtls_cert_info_t *info, pb_err_t *code, char *errstr,
                             size_t errstr_size) {
    struct conn_create cc = {c, PB_OK};
    int material_failed;
    pbc_conn_t *conn = pbtls_create_checked(&c->cfg.tls, info, pbc_material_warn, c, conn_create, conn_destroy, &cc,
                                            &material_failed, errstr, errstr_size);
    *code = material_failed ? PB_ERR_CERTIFICATE : cc.code;
    return conn;
}

/* Replaces c's connection by one made with the files as they are now. On failure nothing changes. */
static pb_err_t pbc_reload(pb_consumer_t *c, const char *trigger, char *errstr, size_t errstr_size) {
    pbtls_cert_info_t info;
    pb_err_t code;
    char why[512], until[32];
    int64_t start = pbclock_mono_ms();
    pbc_conn_t *fresh = pbc_conn_checked(c, &info, &code, errstr, errstr_size);
    if (!fresh) {
        pbstats_add(&c->stats, PB_STAT_TLS_RELOAD_FAILURES);
        pblog_field_t f[] = {{.key = "code", .str = pb_err_name(code)}};
        pblib_log(&c->log, PBLOG_ERROR, "tls.reload", f, 1,
                  "reload of the TLS material (%s) failed; the consumer keeps the previous material: %s",
                  trigger, errstr);
        return code;
    }
    /* The new consumer starts from the committed offsets, so what was processed is committed first.
     * What the old one fetched and did not deliver is dropped with it and fetched again from there. */
    pbc_conn_t *old = c->conn;
    if (pbc_conn_leave(old, why, sizeof why) != PB_OK) {
        /* Often the very reason for the reload (an expired certificate); the dedup window, which
         * stays, drops what comes again if it carries a pb-id. */
        pblib_log(&c->log, PBLOG_WARN, "tls.reload", NULL, 0,
                  "%s; what was processed since the last commit may be delivered again", why);
    }
    pbc_conn_free(old, 1);
    c->conn = fresh;
    pb_err_t rc = pbc_conn_start(c, fresh, errstr, errstr_size);
    if (rc != PB_OK) {
        /* Subscribing the topics that were subscribed a moment ago: only memory can fail it. */
        pbstats_add(&c->stats, PB_STAT_TLS_RELOAD_FAILURES);
        pblib_log(&c->log, PBLOG_ERROR, "tls.reload", NULL, 0, "reload of the TLS material (%s) failed: %s",
                  trigger, errstr);
        return rc;
    }
    pbstats_add(&c->stats, PB_STAT_TLS_RELOADS);
    pbc_material_in_use(c, &info);
    struct tm tm;
    gmtime_r(&info.not_after, &tm);
    strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
    pblog_field_t f[] = {{.key = "ms", .num = pbclock_mono_ms() - start}};
    pblib_log(&c->log, PBLOG_INFO, "tls.reload", f, 1,
              "reloaded the TLS material (%s): client certificate CN=%s serial %s valid until %s; "
              "left group %s with the processed offsets committed, joining it again with the new material",
              trigger, info.common_name, info.serial, until, c->cfg.group_id);
    return PB_OK;
}

pb_err_t pb_consumer_reload_tls(pb_consumer_t *c, char *errstr, size_t errstr_size) {
    char sink[1];
    if (!errstr || errstr_size == 0) errstr = sink, errstr_size = sizeof sink;
    errstr[0] = '\0';
    if (!c) {
        snprintf(errstr, errstr_size, "pb_consumer_reload_tls: no consumer");
        return PB_ERR_INVALID_ARG;
    }
    if (c->closed || c->busy) {
        snprintf(errstr, errstr_size, "pb_consumer_reload_tls: %s",
                 c->closed ? "the consumer is closed" : "not allowed inside a callback");
        return PB_ERR_STATE;
    }
    c->busy++;
    pb_err_t rc = pbc_reload(c, "pb_consumer_reload_tls", errstr, errstr_size);
    c->busy--;
    return rc;
}

pb_err_t pbc_watch_start(pb_consumer_t *c, char *errstr, size_t errstr_size) {
    char err[512];
    c->watch = pbwatch_new((const char *const *)c->cfg.tls_strings, PBC_TLS_FILES,
                           c->cfg.tls_watch_debounce_ms, err, sizeof err);
    if (c->watch) return PB_OK;
    snprintf(errstr, errstr_size, "tls.watch: %s", err);
    return PB_ERR_IO;
}

int pbc_watch_fd(const pb_consumer_t *c) {
    return c->watch ? pbwatch_fd(c->watch) : -1;
}

void pbc_material_in_use(pb_consumer_t *c, const pbtls_cert_info_t *info) {
    c->in_use = *info;
    pbstats_set_not_after(&c->stats, (int64_t)info->not_after, (int64_t)info->ca_not_after);
}

static void pbc_material_failed(pb_consumer_t *c, const char *cause) {
    pblib_log(&c->log, PBLOG_ERROR, "tls.material", NULL, 0, "%s", cause);
    if (c->on_error) c->on_error(PB_ERR_CERTIFICATE, cause, NULL, c->opaque);
}

/* The files are what a reload would load; the connection keeps what it was made with until then, and
 * that may expire first. Checked when the files hold another client certificate, or none that could
 * be read (files_read 0). */
static void pbc_in_use_expiry(pb_consumer_t *c, time_t now, int files_read) {
    const pbtls_cert_info_t *u = &c->in_use;
    const struct {
        const char *name;
        time_t not_after;
    } certs[] = {{"client certificate", u->not_after}, {"CA of the client certificate", u->ca_not_after}};
    for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
        char what[600], when[40], cause[800];
        snprintf(what, sizeof what, "%s in use (CN=%s serial %s; %s)", certs[i].name, u->common_name, u->serial,
                 files_read ? "the TLS files hold another, not loaded" : "the TLS files could not be checked");
        if (!certs[i].not_after || now <= certs[i].not_after) {
            pbtls_warn_expiry(what, certs[i].not_after, now, c->cfg.tls.expiry_warn_days, pbc_material_warn, c);
            continue;
        }
        pbtls_format_time(certs[i].not_after, when, sizeof when);
        snprintf(cause, sizeof cause, "periodic check of the TLS material: the %s expired on %s; reload the TLS "
                 "material", what, when);
        pbc_material_failed(c, cause);
    }
}

void pbc_material_periodic(pb_consumer_t *c) {
    int64_t now = pbclock_mono_ms();
    if (now < c->material_check_ms) return;
    c->material_check_ms = now + (int64_t)c->cfg.tls_check_interval_s * 1000;
    pbtls_cert_info_t info = {0}; /* the fingerprint stays "" if the check stops before the certificate */
    char err[1024], cause[1200];
    time_t wall = time(NULL);
    if (pbtls_check_material(&c->cfg.tls, wall, &info, pbc_material_warn, c, err, sizeof err) != 0) {
        snprintf(cause, sizeof cause, "periodic check of the TLS material failed: %s", err);
        pbc_material_failed(c, cause);
    }
    if (c->in_use.sha256_fingerprint[0] && strcmp(info.sha256_fingerprint, c->in_use.sha256_fingerprint) != 0)
        pbc_in_use_expiry(c, wall, info.sha256_fingerprint[0] != '\0');
}

void pbc_watch_serve(pb_consumer_t *c, int ready) {
    if (!c->watch) return;
    int64_t now = pbclock_mono_ms();
    if (!ready && now < c->watch_check_ms) return;
    c->watch_check_ms = now + PBC_WATCH_CHECK_MS;
    char err[512], trigger[256] = "", cause[1400];
    uint32_t changed = 0;
    int rc = pbwatch_handle(c->watch, &changed, err, sizeof err);
    if (rc < 0) {
        /* Stop, or poll would spin on a ready fd. */
        snprintf(cause, sizeof cause,
                 "%s; watching the TLS files stopped (pb_consumer_reload_tls still reloads)", err);
        pblib_log(&c->log, PBLOG_ERROR, "tls.watch", NULL, 0, "%s", cause);
        pbwatch_free(c->watch);
        c->watch = NULL;
        if (c->on_error) c->on_error(PB_ERR_IO, cause, NULL, c->opaque);
        return;
    }
    if (rc == 0) return;
    pbwatch_describe(changed, pbc_tls_keys, PBC_TLS_FILES, trigger, sizeof trigger);
    pb_err_t code = pbc_reload(c, trigger, err, sizeof err);
    if (code == PB_OK || !c->on_error) return;
    /* Nobody called for this reload: on_error is how the application hears of its failure. */
    snprintf(cause, sizeof cause,
             "reload of the TLS material (%s) failed; the consumer keeps the previous material: %s", trigger,
             err);
    c->on_error(code, cause, NULL, c->opaque);
}
