/* props.c: parser and store of the `key = value` properties syntax (see props.h for the rules). */
#include "common/props.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A config is a few dozen lines; the limit keeps a wrong path (a log, a device) from eating memory. */
#define PROPS_MAX_BYTES ((size_t)1 << 20)
/* Real keys are short; a bound keeps error messages and suggestions cheap. */
#define PROPS_MAX_KEY 128
#define PROPS_MAX_VARNAME 128

typedef struct props_item {
    props_entry_t e; /* what callers see; its strings are the owned ones below */
    char *key;
    char *value;
    char *file;
} props_item_t;

struct props {
    props_item_t *items; /* insertion order */
    size_t n, cap;
    size_t *slots;  /* open-addressing index: item index + 1, 0 = empty; a 1 MiB file may hold ~100k keys */
    size_t n_slots; /* power of two, or 0 */
};

/* Growing output buffer for ${} expansion. */
typedef struct props_buf {
    char *data;
    size_t len, cap;
} props_buf_t;

static void props_seterr(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void props_seterr(char *errstr, size_t size, const char *fmt, ...) {
    if (!errstr || size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

static size_t props_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

static props_item_t *props_lookup(const props_t *p, const char *key) {
    if (p->n_slots == 0) return NULL;
    size_t mask = p->n_slots - 1;
    for (size_t i = props_hash(key) & mask;; i = (i + 1) & mask) {
        size_t s = p->slots[i];
        if (s == 0) return NULL;
        if (strcmp(p->items[s - 1].key, key) == 0) return &p->items[s - 1];
    }
}

/* Keeps the index at most half full so probes stay short. */
__attribute__((warn_unused_result)) static int props_index_grow(props_t *p) {
    if (p->n_slots != 0 && (p->n + 1) * 2 <= p->n_slots) return 0;
    size_t n_slots = p->n_slots ? p->n_slots * 2 : 64;
    size_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < p->n; i++) {
        size_t j = props_hash(p->items[i].key) & (n_slots - 1);
        while (slots[j] != 0)
            j = (j + 1) & (n_slots - 1);
        slots[j] = i + 1;
    }
    free(p->slots);
    p->slots = slots;
    p->n_slots = n_slots;
    return 0;
}

props_t *props_new(void) {
    return calloc(1, sizeof(props_t));
}

void props_free(props_t *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].key);
        free(p->items[i].value);
        free(p->items[i].file);
    }
    free(p->items);
    free(p->slots);
    free(p);
}

int props_set(props_t *p, const char *key, const char *value, const char *file, int line) {
    char *v = strdup(value ? value : "");
    char *f = strdup(file ? file : "");
    if (!v || !f) goto fail;
    props_item_t *it = props_lookup(p, key);
    if (it) {
        free(it->value);
        free(it->file);
    } else {
        if (props_index_grow(p) != 0) goto fail;
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 16;
            props_item_t *items = realloc(p->items, cap * sizeof *items);
            if (!items) goto fail;
            p->items = items;
            p->cap = cap;
        }
        char *k = strdup(key);
        if (!k) goto fail;
        it = &p->items[p->n];
        memset(it, 0, sizeof *it);
        it->key = k;
        size_t mask = p->n_slots - 1;
        size_t j = props_hash(k) & mask;
        while (p->slots[j] != 0)
            j = (j + 1) & mask;
        p->slots[j] = ++p->n;
    }
    it->value = v;
    it->file = f;
    it->e.key = it->key;
    it->e.value = it->value;
    it->e.file = it->file;
    it->e.line = line;
    return 0;
fail:
    free(v);
    free(f);
    return -1;
}

size_t props_count(const props_t *p) {
    return p ? p->n : 0;
}

const props_entry_t *props_at(const props_t *p, size_t i) {
    if (!p || i >= p->n) return NULL;
    return &p->items[i].e;
}

const props_entry_t *props_find(const props_t *p, const char *key) {
    if (!p || !key) return NULL;
    props_item_t *it = props_lookup(p, key);
    return it ? &it->e : NULL;
}

static int props_is_blank(char c) {
    return c == ' ' || c == '\t';
}

static int props_is_key_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* Control characters other than tab would be invisible in a file and could rewrite a terminal
 * when a value is echoed in an error message. Returns the offending byte's index or -1. */
static long props_find_control(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return (long)i;
    }
    return -1;
}

/* Checks a key; on error writes the reason (without location) into why. */
__attribute__((warn_unused_result)) static int props_check_key(const char *key, size_t n, char *why,
                                                               size_t why_size) {
    if (n == 0) {
        props_seterr(why, why_size, "missing key before '='");
        return -1;
    }
    if (n > PROPS_MAX_KEY) {
        props_seterr(why, why_size, "key longer than %d characters", PROPS_MAX_KEY);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (props_is_key_char(c)) continue;
        if (c >= 0x20 && c < 0x7f)
            props_seterr(why, why_size, "invalid character '%c' in key (keys use A-Z a-z 0-9 . _ -)", c);
        else
            props_seterr(why, why_size, "invalid byte 0x%02x in key (keys use A-Z a-z 0-9 . _ -)", c);
        return -1;
    }
    return 0;
}

__attribute__((warn_unused_result)) static int props_buf_add(props_buf_t *b, const char *s, size_t n) {
    if (n > PROPS_MAX_BYTES || b->len + n > PROPS_MAX_BYTES) return -1; /* runaway expansion */
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int props_is_var_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* Expands ${NAME}, ${NAME:-default} and $$ in s[0..n) into out. On error writes the reason into why. */
__attribute__((warn_unused_result)) static int props_expand(const char *s, size_t n,
                                                            props_getenv_fn getenv_fn, void *ctx,
                                                            props_buf_t *out, char *why, size_t why_size) {
    size_t i = 0;
    if (props_buf_add(out, "", 0) != 0) goto nomem;
    while (i < n) {
        const char *dollar = memchr(s + i, '$', n - i);
        size_t lit = dollar ? (size_t)(dollar - (s + i)) : n - i;
        if (props_buf_add(out, s + i, lit) != 0) goto nomem;
        i += lit;
        if (i >= n) break;
        /* s[i] == '$' */
        if (i + 1 < n && s[i + 1] == '$') {
            if (props_buf_add(out, "$", 1) != 0) goto nomem;
            i += 2;
            continue;
        }
        if (i + 1 >= n || s[i + 1] != '{') {
            props_seterr(why, why_size, "'$' must start ${NAME} or be written '$$'");
            return -1;
        }
        const char *inner = s + i + 2;
        const char *close = memchr(inner, '}', n - (i + 2));
        if (!close) {
            props_seterr(why, why_size, "unterminated '${'");
            return -1;
        }
        size_t inner_len = (size_t)(close - inner);
        size_t name_len = 0;
        while (name_len < inner_len && inner[name_len] != ':')
            name_len++;
        const char *def = NULL;
        size_t def_len = 0;
        if (name_len < inner_len) {
            if (name_len + 1 >= inner_len || inner[name_len + 1] != '-') {
                props_seterr(why, why_size, "expected ${NAME} or ${NAME:-default}");
                return -1;
            }
            def = inner + name_len + 2;
            def_len = inner_len - name_len - 2;
            if (memchr(def, '$', def_len)) {
                /* A default is literal text; '$' in it would be ambiguous ($$? nested ${}?). */
                props_seterr(why, why_size, "'$' is not allowed in the default of ${NAME:-default}");
                return -1;
            }
        }
        int name_ok = name_len > 0 && name_len <= PROPS_MAX_VARNAME && props_is_var_start(inner[0]);
        for (size_t k = 1; name_ok && k < name_len; k++)
            name_ok = props_is_var_start(inner[k]) || (inner[k] >= '0' && inner[k] <= '9');
        if (!name_ok) {
            props_seterr(why, why_size, "invalid variable name '%.*s' (use [A-Za-z_][A-Za-z0-9_]*)",
                         (int)(name_len > 40 ? 40 : name_len), inner);
            return -1;
        }
        char name[PROPS_MAX_VARNAME + 1];
        memcpy(name, inner, name_len);
        name[name_len] = '\0';
        const char *v = getenv_fn(name, ctx);
        if (def && (!v || !*v)) {
            if (props_buf_add(out, def, def_len) != 0) goto nomem;
        } else if (!v) {
            props_seterr(why, why_size,
                         "environment variable '%s' is not set (write ${%s:-default} to give a default)",
                         name, name);
            return -1;
        } else {
            size_t vlen = strlen(v);
            if (props_find_control(v, vlen) >= 0) {
                props_seterr(why, why_size, "environment variable '%s' contains a control character", name);
                return -1;
            }
            if (props_buf_add(out, v, vlen) != 0) goto nomem;
        }
        i = (size_t)(close - s) + 1;
    }
    return 0;
nomem:
    props_seterr(why, why_size, "value too large after expansion or out of memory");
    return -1;
}

static const char *props_default_getenv(const char *name, void *ctx) {
    (void)ctx;
    return getenv(name);
}

int props_parse(props_t *p, const char *text, size_t len, const char *file, props_getenv_fn getenv_fn,
                void *ctx, char *errstr, size_t errstr_size) {
    char why[512];
    props_buf_t val = {0};
    int line = 0, rc = -1;
    if (!file) file = "(config)";
    if (!getenv_fn) getenv_fn = props_default_getenv;
    if (len > PROPS_MAX_BYTES) {
        props_seterr(errstr, errstr_size, "%s: larger than the 1 MiB limit (%zu bytes)", file, len);
        return -1;
    }
    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) pos = 3; /* UTF-8 BOM from some editors */
    while (pos < len) {
        line++;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n > 0 && s[n - 1] == '\r') n--;
        if (memchr(s, '\0', n)) {
            props_seterr(why, sizeof why, "NUL byte");
            goto fail;
        }
        long bad = props_find_control(s, n);
        if (bad >= 0) {
            if (s[bad] == '\r')
                props_seterr(why, sizeof why, "carriage return inside a line (line endings are LF or CRLF)");
            else
                props_seterr(why, sizeof why, "control character 0x%02x", (unsigned char)s[bad]);
            goto fail;
        }
        while (n > 0 && props_is_blank(*s))
            s++, n--;
        while (n > 0 && props_is_blank(s[n - 1]))
            n--;
        if (n == 0 || s[0] == '#') continue;
        const char *eq = memchr(s, '=', n);
        if (!eq) {
            props_seterr(why, sizeof why, "expected 'key = value'");
            goto fail;
        }
        size_t klen = (size_t)(eq - s);
        while (klen > 0 && props_is_blank(s[klen - 1]))
            klen--;
        if (props_check_key(s, klen, why, sizeof why) != 0) goto fail;
        char key[PROPS_MAX_KEY + 1];
        memcpy(key, s, klen);
        key[klen] = '\0';
        const char *v = eq + 1;
        size_t vlen = n - (size_t)(v - s);
        while (vlen > 0 && props_is_blank(*v))
            v++, vlen--;
        val.len = 0;
        if (props_expand(v, vlen, getenv_fn, ctx, &val, why, sizeof why) != 0) goto fail;
        const props_entry_t *prev = props_find(p, key);
        if (prev && prev->line > 0 && strcmp(prev->file, file) == 0) {
            props_seterr(why, sizeof why, "key '%s' given twice (first on line %d)", key, prev->line);
            goto fail;
        }
        if (props_set(p, key, val.data, file, line) != 0) {
            props_seterr(why, sizeof why, "out of memory");
            goto fail;
        }
    }
    rc = 0;
    goto out;
fail:
    props_seterr(errstr, errstr_size, "%s:%d: %s", file, line, why);
out:
    free(val.data);
    return rc;
}

int props_load_file(props_t *p, const char *path, char *errstr, size_t errstr_size) {
    int rc = -1;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        props_seterr(errstr, errstr_size, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    /* One byte beyond the limit tells "exactly 1 MiB" from "larger". */
    buf = malloc(PROPS_MAX_BYTES + 1);
    if (!buf) {
        props_seterr(errstr, errstr_size, "cannot read '%s': out of memory", path);
        goto out;
    }
    size_t len = 0;
    while (len < PROPS_MAX_BYTES + 1) {
        ssize_t r = read(fd, buf + len, PROPS_MAX_BYTES + 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            props_seterr(errstr, errstr_size, "cannot read '%s': %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    if (len > PROPS_MAX_BYTES) {
        props_seterr(errstr, errstr_size, "%s: larger than the 1 MiB limit", path);
        goto out;
    }
    rc = props_parse(p, buf, len, path, NULL, NULL, errstr, errstr_size);
out:
    free(buf);
    close(fd);
    return rc;
}

int props_set_override(props_t *p, const char *kv, const char *origin, char *errstr, size_t errstr_size) {
    char why[256];
    if (!origin) origin = "-o";
    size_t n = strlen(kv);
    const char *eq = memchr(kv, '=', n);
    if (!eq) {
        props_seterr(errstr, errstr_size, "%s: expected key=value, got '%.60s'", origin, kv);
        return -1;
    }
    const char *k = kv;
    size_t klen = (size_t)(eq - kv);
    while (klen > 0 && props_is_blank(*k))
        k++, klen--;
    while (klen > 0 && props_is_blank(k[klen - 1]))
        klen--;
    if (props_check_key(k, klen, why, sizeof why) != 0) {
        props_seterr(errstr, errstr_size, "%s: %s", origin, why);
        return -1;
    }
    const char *v = eq + 1;
    size_t vlen = n - (size_t)(v - kv);
    while (vlen > 0 && props_is_blank(*v))
        v++, vlen--;
    while (vlen > 0 && props_is_blank(v[vlen - 1]))
        vlen--;
    long bad = props_find_control(v, vlen);
    if (bad >= 0) {
        props_seterr(errstr, errstr_size, "%s: key '%.*s': control character 0x%02x in value", origin,
                     (int)klen, k, (unsigned char)v[bad]);
        return -1;
    }
    char key[PROPS_MAX_KEY + 1];
    memcpy(key, k, klen);
    key[klen] = '\0';
    char *value = strndup(v, vlen);
    if (!value || props_set(p, key, value, origin, 0) != 0) {
        free(value);
        props_seterr(errstr, errstr_size, "%s: out of memory", origin);
        return -1;
    }
    free(value);
    return 0;
}
