/* reply.h: the acknowledgement lines predbridged writes to writers that asked for them. */
#ifndef PB_DAEMON_REPLY_H
#define PB_DAEMON_REPLY_H

#include <stddef.h>
#include <stdint.h>

/* Bytes pbd_reply_format may write for a reply whose text is `text` (may be NULL). */
size_t pbd_reply_max_len(const char *text);

/*
 * Writes one reply line, `{"seq":N[,"id":"..."],"status":"..."[,"<text_key>":"<text>"]}\n`, into
 * out (at least pbd_reply_max_len(text) bytes) and returns its length. id and text_key/text may be
 * NULL. text is JSON-escaped; status and id are our own tokens. Pure.
 */
size_t pbd_reply_format(char *out, uint64_t seq, const char *id, const char *status, const char *text_key,
                        const char *text);

#endif
