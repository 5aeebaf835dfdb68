/* watch.c: file-change watch with debounce for certificate reloads (see watch.h). */
#include "common/watch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define PBWATCH_MAX_HOPS 8 /* symlinks followed per path when choosing directories to watch */
#define PBWATCH_DIR_EVENTS                                                                                    \
    (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB |           \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/* Which file a path leads to now, and its state. */
typedef struct pbwatch_ident {
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim, ctim;
} pbwatch_ident_t;

struct pbwatch {
    int epfd, ifd, tfd;
    int debounce_ms;
    size_t n;
    char *paths[PBWATCH_MAX_PATHS];
    pbwatch_ident_t ident[PBWATCH_MAX_PATHS];
    uint32_t pending; /* paths changed since the last report */
};

static void pbwatch_ident(const char *path, pbwatch_ident_t *id) {
    struct stat st;
    memset(id, 0, sizeof *id);
    if (stat(path, &st) != 0) return;
    id->exists = 1;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtim = st.st_mtim;
    id->ctim = st.st_ctim;
}

static int pbwatch_same(const pbwatch_ident_t *a, const pbwatch_ident_t *b) {
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec &&
           a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}

/* Watches the directory holding file. Returns 0, or -1 with errno set. */
static int pbwatch_add_dir(pbwatch_t *w, const char *file) {
    char dir[PATH_MAX];
    const char *slash = strrchr(file, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else {
        size_t len = slash == file ? 1 : (size_t)(slash - file);
        if (len >= sizeof dir) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, file, len);
        dir[len] = '\0';
    }
    /* Watching a directory twice gives back the same watch: re-adding after a change is cheap. */
    return inotify_add_watch(w->ifd, dir, PBWATCH_DIR_EVENTS) < 0 ? -1 : 0;
}

/* Watches the directories path leads through: the one holding each symlink among its directories
 * ("/etc/tls -> /secrets/v1" re-pointed), each symlink's target directory, and the final one.
 * They may be gone already (a swap in progress): best effort, the next change re-resolves. */
static void pbwatch_follow(pbwatch_t *w, const char *path) {
    char cur[PATH_MAX], target[PATH_MAX], next[PATH_MAX];
    if ((size_t)snprintf(cur, sizeof cur, "%s", path) >= sizeof cur) return;
    for (char *slash = strchr(cur + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        struct stat st;
        *slash = '\0';
        if (lstat(cur, &st) == 0 && S_ISLNK(st.st_mode)) (void)pbwatch_add_dir(w, cur);
        *slash = '/';
    }
    for (int hop = 0; hop < PBWATCH_MAX_HOPS; hop++) {
        ssize_t len = readlink(cur, target, sizeof target - 1);
        if (len < 0) break;
        target[len] = '\0';
        const char *slash = strrchr(cur, '/');
        int dir_len = slash ? (int)(slash - cur) : 1;
        int n = target[0] == '/' ? snprintf(next, sizeof next, "%s", target)
                                 : snprintf(next, sizeof next, "%.*s/%s", dir_len, slash ? cur : ".", target);
        if (n < 0 || (size_t)n >= sizeof next) break;
        (void)pbwatch_add_dir(w, next);
        memcpy(cur, next, (size_t)n + 1);
    }
    if (realpath(path, target)) (void)pbwatch_add_dir(w, target);
}

pbwatch_t *pbwatch_new(const char *const *paths, size_t n, int debounce_ms, char *errstr, size_t errstr_size) {
    pbwatch_t *w = NULL;
    if (n > PBWATCH_MAX_PATHS || debounce_ms < 0) {
        snprintf(errstr, errstr_size, "file watch: %zu paths (at most %d), debounce %d ms", n, PBWATCH_MAX_PATHS,
                 debounce_ms);
        return NULL;
    }
    if (!(w = calloc(1, sizeof *w))) goto nomem;
    w->epfd = w->ifd = w->tfd = -1;
    w->n = n;
    w->debounce_ms = debounce_ms;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    if (w->epfd < 0 || w->ifd < 0 || w->tfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->ifd, &ev) != 0 ||
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &ev) != 0) {
        snprintf(errstr, errstr_size, "file watch: %s", strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (!paths[i]) continue;
        if (!(w->paths[i] = strdup(paths[i]))) goto nomem;
        if (pbwatch_add_dir(w, paths[i]) != 0) {
            snprintf(errstr, errstr_size, "cannot watch the directory of '%s': %s", paths[i], strerror(errno));
            goto fail;
        }
        pbwatch_follow(w, paths[i]);
        pbwatch_ident(paths[i], &w->ident[i]);
    }
    return w;
nomem:
    snprintf(errstr, errstr_size, "file watch: out of memory");
fail:
    pbwatch_free(w);
    return NULL;
}

int pbwatch_fd(const pbwatch_t *w) {
    return w->epfd;
}

/* Reads every queued inotify event. Returns 1 if there was any, 0 if none, -1 on error. */
static int pbwatch_drain(pbwatch_t *w) {
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int any = 0;
    for (;;) {
        ssize_t len = read(w->ifd, buf, sizeof buf);
        if (len > 0) {
            any = 1; /* which file does not matter: every watched path is compared below */
            continue;
        }
        if (len < 0 && errno == EINTR) continue;
        if (len < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return any;
        return -1;
    }
}

int pbwatch_handle(pbwatch_t *w, uint32_t *changed, char *errstr, size_t errstr_size) {
    int any = pbwatch_drain(w);
    if (any < 0) {
        snprintf(errstr, errstr_size, "file watch: reading inotify events: %s", strerror(errno));
        return -1;
    }
    uint32_t now_changed = 0;
    for (size_t i = 0; any && i < w->n; i++) {
        if (!w->paths[i]) continue;
        pbwatch_ident_t id;
        pbwatch_ident(w->paths[i], &id);
        if (pbwatch_same(&id, &w->ident[i])) continue;
        w->ident[i] = id;
        now_changed |= 1u << i;
        /* A swap may have brought new directories into the path (a new timestamped directory). */
        pbwatch_follow(w, w->paths[i]);
    }
    if (now_changed) {
        w->pending |= now_changed;
        /* (Re)starts the quiet period; this also clears any expiry not yet read. */
        struct itimerspec quiet = {.it_value = {w->debounce_ms / 1000, (long)(w->debounce_ms % 1000) * 1000000L}};
        if (w->debounce_ms == 0) quiet.it_value.tv_nsec = 1; /* zero would disarm the timer */
        if (timerfd_settime(w->tfd, 0, &quiet, NULL) != 0) {
            snprintf(errstr, errstr_size, "file watch: timerfd_settime: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    uint64_t expirations;
    ssize_t len = read(w->tfd, &expirations, sizeof expirations);
    if (len < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        snprintf(errstr, errstr_size, "file watch: reading the debounce timer: %s", strerror(errno));
        return -1;
    }
    if (len != (ssize_t)sizeof expirations || !w->pending) return 0;
    if (changed) *changed = w->pending;
    w->pending = 0;
    return 1;
}

void pbwatch_describe(uint32_t changed, const char *const *names, size_t n, char *out, size_t size) {
    size_t used = 0;
    if (size) out[0] = '\0';
    for (size_t i = 0; i < n && i < 32 && used < size; i++)
        if (changed & (1u << i)) used += (size_t)snprintf(out + used, size - used, "%s%s", used ? ", " : "", names[i]);
    if (used < size) snprintf(out + used, size - used, " changed");
}

void pbwatch_free(pbwatch_t *w) {
    if (!w) return;
    if (w->epfd >= 0) close(w->epfd);
    if (w->ifd >= 0) close(w->ifd);
    if (w->tfd >= 0) close(w->tfd);
    for (size_t i = 0; i < PBWATCH_MAX_PATHS; i++) free(w->paths[i]);
    free(w);
}
