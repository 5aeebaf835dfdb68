/* reply.c: the acknowledgement lines predbridged writes to writers that asked for them. */
#include "reply.h"

#include <stdio.h>
#include <string.h>

size_t pbd_reply_max_len(const char *text) {
    return 160 + (text ? 6 * strlen(text) : 0); /* seq, id (36), status, keys; each text byte at most \u00XX */
}

/* Appends s as JSON string content: quotes, backslashes and control characters escaped. */
static size_t json_escape_into(char *out, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[ch >> 4];
            out[n + 5] = hex[ch & 15];
            n += 6;
        } else {
            out[n++] = (char)ch;
        }
    }
    return n;
}

size_t pbd_reply_format(char *out, uint64_t seq, const char *id, const char *status, const char *text_key,
                        const char *text) {
    size_t n = (size_t)sprintf(out, "{\"seq\":%llu", (unsigned long long)seq);
    if (id) n += (size_t)sprintf(out + n, ",\"id\":\"%.36s\"", id);
    n += (size_t)sprintf(out + n, ",\"status\":\"%.16s\"", status);
    if (text_key && text) {
        n += (size_t)sprintf(out + n, ",\"%.16s\":\"", text_key);
        n += json_escape_into(out + n, text);
        out[n++] = '"';
    }
    out[n++] = '}';
    out[n++] = '\n';
    return n;
}
