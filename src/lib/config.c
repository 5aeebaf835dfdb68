/* config.c: pb_config_t, the public face of the shared key table (src/common/config.c) in consumer scope. */
#include "lib_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pb_config_t *pb_config_new(void) {
    pb_config_t *conf = calloc(1, sizeof *conf);
    if (!conf) return NULL;
    if (!(conf->props = props_new())) {
        free(conf);
        return NULL;
    }
    return conf;
}

void pb_config_destroy(pb_config_t *conf) {
    if (!conf) return;
    props_free(conf->props);
    free(conf);
}

pb_err_t pb_config_set(pb_config_t *conf, const char *key, const char *value, char *errstr, size_t errstr_size) {
    char sink[1];
    if (!errstr || errstr_size == 0) errstr = sink, errstr_size = sizeof sink;
    errstr[0] = '\0';
    if (!conf || !key || !value) {
        snprintf(errstr, errstr_size, "pb_config_set: conf, key and value must not be NULL");
        return PB_ERR_INVALID_ARG;
    }
    props_entry_t e = {.key = key, .value = value, .file = "pb_config_set", .line = 0};
    pb_err_t rc = pbconf_check_entry(&e, PBCONF_SCOPE_CONSUMER, errstr, errstr_size);
    if (rc != PB_OK) return rc;
    if (props_set(conf->props, key, value, "pb_config_set", 0) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return PB_ERR_NOMEM;
    }
    return PB_OK;
}

pb_err_t pb_config_load_file(pb_config_t *conf, const char *path, char *errstr, size_t errstr_size) {
    char sink[1];
    pb_err_t rc = PB_OK;
    props_t *tmp = NULL;
    if (!errstr || errstr_size == 0) errstr = sink, errstr_size = sizeof sink;
    errstr[0] = '\0';
    if (!conf || !path) {
        snprintf(errstr, errstr_size, "pb_config_load_file: conf and path must not be NULL");
        return PB_ERR_INVALID_ARG;
    }
    /* Parsed and checked on the side, so a bad file leaves conf as it was. */
    if (!(tmp = props_new())) {
        rc = PB_ERR_NOMEM;
        goto out;
    }
    if (props_load_file(tmp, path, errstr, errstr_size) != 0) {
        rc = PB_ERR_CONFIG;
        goto out;
    }
    for (size_t i = 0; i < props_count(tmp); i++)
        if ((rc = pbconf_check_entry(props_at(tmp, i), PBCONF_SCOPE_CONSUMER, errstr, errstr_size)) != PB_OK)
            goto out;
    for (size_t i = 0; i < props_count(tmp); i++) {
        const props_entry_t *e = props_at(tmp, i);
        if (props_set(conf->props, e->key, e->value, e->file, e->line) != 0) {
            rc = PB_ERR_NOMEM;
            goto out;
        }
    }
out:
    if (rc == PB_ERR_NOMEM) snprintf(errstr, errstr_size, "out of memory");
    props_free(tmp);
    return rc;
}

pb_err_t pb_config_set_log_fn(pb_config_t *conf, pb_log_fn fn, void *opaque) {
    if (!conf) return PB_ERR_INVALID_ARG;
    conf->log_fn = fn;
    conf->log_opaque = fn ? opaque : NULL;
    return PB_OK;
}
