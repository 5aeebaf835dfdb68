/* example.c: a minimal application of libpredbridge, built against the installed library only. */
#include <predbridge/predbridge.h>

#include <stdio.h>
#include <string.h>

static pb_action_t on_prediction(const pb_message_t *msg, void *opaque) {
    (void)opaque;
    printf("%s\n", pb_message_model_version(msg) ? pb_message_model_version(msg) : "?");
    return PB_COMMIT;
}

int main(void) {
    char err[512];
    pb_config_t *conf = pb_config_new();
    if (!conf) return 1;
    /* A refused setting proves the installed library is the real one, with its policy. */
    pb_err_t rc = pb_config_set(conf, "kafka.security.protocol", "plaintext", err, sizeof err);
    int ok = rc == PB_ERR_INSECURE && strstr(err, "kafka.security.protocol") != NULL;
    /* Incomplete configuration: the consumer is refused without touching the network. */
    pb_consumer_t *c = pb_consumer_new(conf, on_prediction, NULL, NULL, err, sizeof err);
    ok = ok && c == NULL && strstr(err, "bootstrap.servers") != NULL;
    pb_config_destroy(conf);
    printf("libpredbridge %s (header %d.%d.%d): %s\n", pb_version_str(), PB_VERSION_MAJOR, PB_VERSION_MINOR,
           PB_VERSION_PATCH, ok ? "ok" : "FAILED");
    return ok && pb_version() == PB_VERSION ? 0 : 1;
}
