/* peer.h: who may write into predbridged's socket (SO_PEERCRED policy). */
#ifndef PB_DAEMON_PEER_H
#define PB_DAEMON_PEER_H

#include <stddef.h>
#include <sys/types.h>

/* A peer is allowed if its uid is in uids or its gid is in gids. Pure. */
int pbd_peer_allowed(uid_t uid, gid_t gid, const uid_t *uids, size_t n_uids, const gid_t *gids, size_t n_gids);

#endif
