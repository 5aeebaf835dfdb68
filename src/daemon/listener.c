/* listener.c: predbridged's UNIX socket file: created owner-only then set to its mode, a stale one
 * replaced, a live one left alone, and removed on exit only if it is still ours. */
#include "listener.h"

#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Binds path, replacing a socket file left by a dead daemon but never one a live daemon answers on. */
int pbd_listener_bind(pbd_listener_t *l, const char *path, unsigned mode, char *errstr, size_t errstr_size) {
    l->fd = -1;
    l->path = path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(errstr, errstr_size, "socket.path '%s' is longer than %zu bytes", path, sizeof sa.sun_path - 1);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(errstr, errstr_size, "socket.path '%s' exists and is not a socket; not removing it", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            snprintf(errstr, errstr_size, "socket: %s", strerror(errno));
            return -1;
        }
        int live = connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0 || errno != ECONNREFUSED;
        int cerr = errno;
        close(probe);
        if (live) {
            snprintf(errstr, errstr_size, "socket.path '%s' is in use by a running process (%s); not disturbing it",
                     path, cerr ? strerror(cerr) : "it accepted a connection");
            return -1;
        }
        if (unlink(path) != 0) {
            snprintf(errstr, errstr_size, "cannot remove stale socket '%s': %s", path, strerror(errno));
            return -1;
        }
        PBLOG_I("socket.stale", "removed stale socket file %s left by a previous run", path);
    }
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        snprintf(errstr, errstr_size, "socket: %s", strerror(errno));
        return -1;
    }
    /* Create it owner-only, then open it up to the configured mode: never wider in between. */
    mode_t old = umask(0177);
    int rc = bind(l->fd, (struct sockaddr *)&sa, sizeof sa);
    int berr = errno;
    umask(old);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "cannot bind socket.path '%s': %s", path, strerror(berr));
        return -1;
    }
    if (chmod(path, mode) != 0 || lstat(path, &st) != 0) {
        snprintf(errstr, errstr_size, "cannot set mode %04o on '%s': %s", mode, path, strerror(errno));
        unlink(path);
        return -1;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    if (listen(l->fd, 1024) != 0) {
        snprintf(errstr, errstr_size, "listen on '%s': %s", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

/* Removes the socket file only if it is still the one we created. */
void pbd_listener_unlink(const pbd_listener_t *l) {
    struct stat st;
    if (l->path && lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino) unlink(l->path);
}
