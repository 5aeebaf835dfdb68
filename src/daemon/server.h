/* server.h: predbridged's event loop: the UNIX socket, its connections, and the producer. */
#ifndef PB_DAEMON_SERVER_H
#define PB_DAEMON_SERVER_H

#include "common/config.h"

#include <stdint.h>

typedef struct pbd_server pbd_server_t;

/* Counters since start (single-threaded: read on the loop thread). */
typedef struct pbd_stats {
    uint64_t connections, refused_peers;
    uint64_t received, rejected, accepted, delivered, failed;
    uint64_t pauses; /* times reading stopped because librdkafka's queue was full */
} pbd_stats_t;

/* Creates the producer and binds the socket (replacing a stale socket file, refusing to disturb a
 * live daemon). identity is our certificate's CN. Returns NULL with errstr. */
pbd_server_t *pbd_server_new(const pbd_config_t *cfg, const char *identity, char *errstr, size_t errstr_size);

/* Runs until SIGTERM or SIGINT, then stops accepting, delivers what it can within
 * producer.flush_timeout_ms, logs what remains, and removes the socket. Returns 0 on a clean stop. */
int pbd_server_run(pbd_server_t *s);

const pbd_stats_t *pbd_server_stats(const pbd_server_t *s);
/* The thread-safe counters behind /metrics (owned by the server). */
struct pbm_metrics;
struct pbm_metrics *pbd_server_metrics(pbd_server_t *s);
void pbd_server_free(pbd_server_t *s);

#endif
