/* peer.c: who may write into predbridged's socket (SO_PEERCRED policy). */
#include "peer.h"

int pbd_peer_allowed(uid_t uid, gid_t gid, const uid_t *uids, size_t n_uids, const gid_t *gids, size_t n_gids) {
    for (size_t i = 0; i < n_uids; i++)
        if (uids[i] == uid) return 1;
    for (size_t i = 0; i < n_gids; i++)
        if (gids[i] == gid) return 1;
    return 0;
}
