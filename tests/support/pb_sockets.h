/* pb_sockets.h: what the tests need to know about this process's own TCP connections. Header-only
 * (static inline): unit and integration tests are executables of their own. */
#ifndef PB_TEST_SOCKETS_H
#define PB_TEST_SOCKETS_H

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Whether the comma-separated host:port list names port. */
static inline int pbt_port_listed(const char *hostports, int port) {
    for (const char *p = hostports; p && *p;) {
        const char *colon = strchr(p, ':'), *comma = strchr(p, ',');
        if (!colon) break;
        if ((!comma || colon < comma) && atoi(colon + 1) == port) return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

/* Counts this process's TCP connections to a port of `hostports` (as a client: the peer's port),
 * with TCP_NODELAY set in *on and without it in *off. */
static inline void pbt_tcp_nodelay_count(const char *hostports, int *on, int *off) {
    *on = *off = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d)) continue;
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0) continue;
        int port;
        if (peer.ss_family == AF_INET) port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
        else if (peer.ss_family == AF_INET6) port = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
        else continue;
        if (!pbt_port_listed(hostports, port)) continue;
        int v = 0;
        socklen_t vlen = sizeof v;
        if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vlen) != 0) continue;
        if (v) (*on)++;
        else (*off)++;
    }
    closedir(d);
}

/* NULL if this process has connections to `hostports` and all of them have TCP_NODELAY (want_on) or
 * none has (!want_on); otherwise what was found instead (a static buffer). */
static inline const char *pbt_tcp_nodelay_mismatch(const char *hostports, int want_on) {
    static char why[512];
    int on, off;
    pbt_tcp_nodelay_count(hostports, &on, &off);
    if (want_on ? (on > 0 && off == 0) : (off > 0 && on == 0)) return NULL;
    snprintf(why, sizeof why, "connections to %s: %d with TCP_NODELAY, %d without (wanted %s)", hostports, on, off,
             want_on ? "all with" : "all without");
    return why;
}

#endif
