/* watch.h: notices that files changed (for certificate reloads), whichever way they were replaced,
 * and reports a burst of changes once, after a quiet period. Shared by predbridged and libpredbridge.
 *
 * What counts as a change: the file a path leads to (following symlinks) is another file, or the
 * same file with another size, modification or change time, or it appeared or disappeared. That
 * covers
 *   - atomic replacement by rename(2) over the path (a new inode),
 *   - a rewrite in place (cp, an editor saving in place),
 *   - the Kubernetes secret/configMap volume swap: the path is a symlink "tls.crt -> ..data/tls.crt",
 *     and "..data" (a symlink to a timestamped directory) is replaced atomically by a rename;
 *   - a path that is a symlink into another directory whose target is replaced there,
 *   - a directory on the path that is a symlink, re-pointed ("/etc/tls -> /secrets/v2").
 * Each path's directory is watched with inotify, and so are the directories its symlinks lead
 * through and those holding a symlinked directory of the path (re-resolved after every change),
 * because a rename into a directory, or a symlink re-pointed, raises no event on the file itself. Events for other files in those directories cost
 * a stat of each watched path and are otherwise ignored.
 *
 * Debounce: every change restarts a timer of debounce_ms; only when it runs out is the change
 * reported, so a writer that replaces a certificate and then its key is seen once, with both done.
 *
 * Threading: not thread-safe; use a watch from one thread (predbridged: its event loop). No call
 * blocks. */
#ifndef PB_COMMON_WATCH_H
#define PB_COMMON_WATCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct pbwatch pbwatch_t;

#define PBWATCH_MAX_PATHS 16

/* Watches paths[0..n): NULL entries are skipped (their bit is never set), n <= PBWATCH_MAX_PATHS.
 * Each path's directory must exist; the file itself may be missing for now. debounce_ms >= 0.
 * Returns NULL with the cause in errstr (naming the path). */
pbwatch_t *pbwatch_new(const char *const *paths, size_t n, int debounce_ms, char *errstr, size_t errstr_size);

/* A descriptor that becomes readable when pbwatch_handle has work: poll or epoll it for reading
 * (level-triggered). Owned by the watch. */
int pbwatch_fd(const pbwatch_t *w);

/* Call when pbwatch_fd is readable (calling it at other times is harmless). Returns 1 when files
 * changed and debounce_ms have passed since the last change, with a bit set in *changed (may be
 * NULL) for each index of paths that changed since the previous 1; 0 when there is nothing to
 * report yet; -1 with errstr if the watch itself failed (reading inotify or the timer). */
__attribute__((warn_unused_result)) int pbwatch_handle(pbwatch_t *w, uint32_t *changed, char *errstr,
                                                       size_t errstr_size);

/* "tls.cert, tls.key changed": names[i] for each bit i of changed (n names), into out. */
void pbwatch_describe(uint32_t changed, const char *const *names, size_t n, char *out, size_t size);

void pbwatch_free(pbwatch_t *w);

#endif
