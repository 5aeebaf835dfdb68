/* fuzz_props.c: libFuzzer target for config files: props_parse, then pbd_config_load, with their invariants.
 * (Valid keys, no control bytes in values, a zeroed config and a message on every error.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/props.h"

#define FUZZ_CHECK(cond)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) abort();                                                                                \
    } while (0)

/* A fixed environment: F names a readable file and D a directory, so inputs reach the file checks
 * and everything after them; E is empty, to exercise ${E:-default}. */
static const char *fuzz_getenv(const char *name, void *ctx) {
    (void)ctx;
    if (strcmp(name, "F") == 0) return "/dev/null";
    if (strcmp(name, "D") == 0) return "/tmp";
    if (strcmp(name, "E") == 0) return "";
    if (strcmp(name, "PB_CERT_DIR") == 0) return "/nonexistent";
    return NULL;
}

static void fuzz_check_entry(const props_t *p, const props_entry_t *e) {
    size_t klen = strlen(e->key);
    FUZZ_CHECK(klen >= 1 && klen <= 128);
    for (size_t i = 0; i < klen; i++)
        FUZZ_CHECK(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", e->key[i]));
    for (const char *v = e->value; *v; v++) {
        unsigned char c = (unsigned char)*v;
        FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    FUZZ_CHECK(e->line >= 1);
    FUZZ_CHECK(props_find(p, e->key) == e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024];
    props_t *p = props_new();
    if (!p) return 0;
    err[0] = '\0';
    if (props_parse(p, (const char *)data, size, "fuzz.conf", fuzz_getenv, NULL, err, sizeof err) != 0) {
        FUZZ_CHECK(strncmp(err, "fuzz.conf", 9) == 0);
        props_free(p);
        return 0;
    }
    for (size_t i = 0; i < props_count(p); i++)
        fuzz_check_entry(p, props_at(p, i));
    FUZZ_CHECK(props_at(p, props_count(p)) == NULL);

    pbd_config_t cfg;
    err[0] = '\0';
    pb_err_t rc = pbd_config_load_ex(&cfg, p, err, sizeof err);
    if (rc != PB_OK) {
        static const pbd_config_t zero;
        FUZZ_CHECK(memcmp(&cfg, &zero, sizeof zero) == 0);
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(rc == PB_ERR_CONFIG || rc == PB_ERR_INSECURE || rc == PB_ERR_NOMEM);
    } else {
        FUZZ_CHECK(cfg.bootstrap_servers && cfg.tls.ca && cfg.socket_path && cfg.topic);
        FUZZ_CHECK((cfg.socket_mode & 0002) == 0);
        FUZZ_CHECK(cfg.tls.keystore ? !cfg.tls.cert && !cfg.tls.key : cfg.tls.cert && cfg.tls.key);
        FUZZ_CHECK(cfg.tls.pin_count <= PBTLS_MAX_PINS);
        FUZZ_CHECK(cfg.n_allowed_uids + cfg.n_allowed_gids > 0);
        for (size_t i = 0; i < cfg.n_kafka; i++)
            FUZZ_CHECK(pbtls_denied_kafka_property(cfg.kafka[i].property) == NULL);
        pbd_config_free(&cfg);
    }
    props_free(p);
    return 0;
}
