/* http.h: predbridged's loopback HTTP endpoint (libmicrohttpd): /metrics, /healthz, /readyz. */
#ifndef PB_DAEMON_HTTP_H
#define PB_DAEMON_HTTP_H

#include "metrics.h"

#include <stddef.h>

typedef struct pbd_http pbd_http_t;

/*
 * Binds listen ("host:port" as validated by http.listen: 127.0.0.0/8, localhost or [::1]; port 0
 * picks a free one) and serves from libmicrohttpd's own thread, which only reads m (m must outlive
 * the server). Call with the daemon's signals already blocked so the thread inherits the mask.
 *   GET /metrics  200, Prometheus text format 0.0.4
 *   GET /healthz  200 "ok", or 503 with the reason if the event loop stopped ticking
 *   GET /readyz   200 "ok", or 503 with the reason if no broker connection is up
 * Other paths: 404; other methods: 405. Returns NULL with errstr naming http.listen.
 */
pbd_http_t *pbd_http_start(const char *listen, pbm_metrics_t *m, char *errstr, size_t errstr_size);

/* The port actually bound. */
int pbd_http_port(const pbd_http_t *h);

/* Stops the thread and closes the socket; in-progress requests are finished or dropped. NULL is fine. */
void pbd_http_stop(pbd_http_t *h);

#endif
