/* http.c: predbridged's loopback HTTP endpoint on libmicrohttpd's internal thread (see http.h). */
#include "http.h"

#include "common/clock.h"
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct pbd_http {
    struct MHD_Daemon *mhd;
    pbm_metrics_t *metrics;
    int port;
};

/* The methods every endpoint serves: the Allow header of a 405 (RFC 9110 15.5.6). */
#define PBD_HTTP_ALLOW "GET, HEAD"

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
                               const char *content_type) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, PBD_HTTP_ALLOW);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned status, const char *text) {
    char *body = NULL;
    if (asprintf(&body, "%s\n", text) < 0) return MHD_NO;
    return respond(conn, status, body, strlen(body), "text/plain; charset=utf-8");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    (void)version;
    (void)upload_data;
    pbd_http_t *h = cls;
    /* The first call for a request only announces its headers; answer on the second. */
    static int announced;
    if (*con_cls != &announced) {
        *con_cls = &announced;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* no endpoint takes a body: drop it */
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only " PBD_HTTP_ALLOW " are served");
    char why[600];
    if (!strcmp(url, "/metrics")) {
        size_t len = 0;
        char *text = pbm_render(h->metrics, &len);
        if (!text) return respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return respond(conn, MHD_HTTP_OK, text, len, "text/plain; version=0.0.4; charset=utf-8");
    }
    if (!strcmp(url, "/healthz")) {
        int ok = pbm_healthy(h->metrics, pbclock_mono_ms(), why, sizeof why);
        return respond_text(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, why);
    }
    if (!strcmp(url, "/readyz")) {
        int ok = pbm_ready(h->metrics, why, sizeof why);
        return respond_text(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, why);
    }
    return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz or /readyz");
}

/* Binds and listens on host:port (loopback, already validated by the config); returns the fd or -1. */
static int listen_on(const char *listen_addr, int *port_out, char *errstr, size_t errstr_size) {
    const char *colon = strrchr(listen_addr, ':');
    char host[64];
    size_t hlen = colon ? (size_t)(colon - listen_addr) : 0;
    if (!colon || hlen == 0 || hlen >= sizeof host) {
        snprintf(errstr, errstr_size, "http.listen '%s': expected host:port", listen_addr);
        return -1;
    }
    memcpy(host, listen_addr, hlen);
    host[hlen] = '\0';
    int port = atoi(colon + 1);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    int family;
    if (!strcmp(host, "[::1]")) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons((uint16_t)port);
        sl = sizeof *a;
        family = AF_INET6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (!strcmp(host, "localhost")) {
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        } else if (inet_pton(AF_INET, host, &a->sin_addr) != 1 || (ntohl(a->sin_addr.s_addr) >> 24) != 127) {
            snprintf(errstr, errstr_size, "http.listen '%s': not a loopback address", listen_addr);
            return -1;
        }
        sl = sizeof *a;
        family = AF_INET;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "http.listen '%s': socket: %s", listen_addr, strerror(errno));
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 64) != 0) {
        snprintf(errstr, errstr_size, "http.listen '%s': cannot listen: %s", listen_addr, strerror(errno));
        close(fd);
        return -1;
    }
    sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port_out = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

pbd_http_t *pbd_http_start(const char *listen_addr, pbm_metrics_t *m, char *errstr, size_t errstr_size) {
    pbd_http_t *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    h->metrics = m;
    int fd = listen_on(listen_addr, &h->port, errstr, errstr_size);
    if (fd < 0) {
        free(h);
        return NULL;
    }
    h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL, handle, h,
                              MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)32, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(errstr, errstr_size, "http.listen '%s': cannot start the HTTP server (libmicrohttpd)",
                 listen_addr);
        close(fd);
        free(h);
        return NULL;
    }
    return h;
}

int pbd_http_port(const pbd_http_t *h) {
    return h->port;
}

void pbd_http_stop(pbd_http_t *h) {
    if (!h) return;
    MHD_stop_daemon(h->mhd); /* closes the listening socket too */
    free(h);
}
