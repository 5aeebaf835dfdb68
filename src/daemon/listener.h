/* listener.h: predbridged's UNIX socket file. */
#ifndef PB_DAEMON_LISTENER_H
#define PB_DAEMON_LISTENER_H

#include <sys/types.h>

typedef struct pbd_listener {
    int fd;           /* listening, non-blocking, close-on-exec */
    const char *path; /* borrowed from the config */
    dev_t dev;        /* identity of the file we created */
    ino_t ino;
} pbd_listener_t;

/* Binds and listens on path with mode, replacing a socket file left by a dead process but never
 * one a live process answers on, nor a file that is not a socket. Returns 0, or -1 with errstr
 * naming the path (l->fd is then -1 or to be closed by the caller). */
__attribute__((warn_unused_result)) int pbd_listener_bind(pbd_listener_t *l, const char *path, unsigned mode,
                                                          char *errstr, size_t errstr_size);

/* Removes the socket file if it is still the one pbd_listener_bind created. */
void pbd_listener_unlink(const pbd_listener_t *l);

#endif
