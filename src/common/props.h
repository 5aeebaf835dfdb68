/* props.h: the `key = value` properties syntax shared by predbridged's and libpredbridge's configs. */
#ifndef PB_COMMON_PROPS_H
#define PB_COMMON_PROPS_H

#include <stddef.h>

/*
 * Syntax (documented for users in config/predbridged.conf):
 *   - one `key = value` per line; white space around key and value is trimmed;
 *   - blank lines and lines whose first non-blank character is '#' are ignored
 *     ('#' elsewhere is part of the value);
 *   - keys are [A-Za-z0-9._-]+;
 *   - ${NAME} expands an environment variable, ${NAME:-default} with a default;
 *     an unset variable without default is an error; "$$" is a literal '$';
 *   - a key given twice in one file is an error naming both lines;
 *   - overrides (-o key=value) replace file values.
 * Line endings LF or CRLF. A NUL byte or invalid syntax is an error "file:line: reason".
 *
 * Details of props.c (all errors "file:line: reason"):
 *   - keys are at most 128 characters;
 *   - ${NAME:-default} also takes the default when NAME is set but empty (as sh does); the default is
 *     literal text up to the first '}' and may not contain '$'; NAME is [A-Za-z_][A-Za-z0-9_]*;
 *   - '$' not followed by '{' or '$' is an error (so "$HOME" is never silently literal);
 *   - control characters other than tab (in the file, in an expanded variable or in an override
 *     value) are errors, so a value echoed in a message cannot rewrite a terminal;
 *   - a CR anywhere but before LF (or at the very end) is an error; a leading UTF-8 BOM is skipped;
 *   - parsing a second file into the same props replaces earlier values (a drop-in); only a key
 *     given twice in the same file is an error.
 * Entry pointers from props_at/props_find stay valid until the props is changed or freed.
 */

typedef struct props_entry {
    const char *key;
    const char *value; /* after ${} expansion */
    const char *file;  /* file name, or the origin of an override such as "-o" */
    int line;          /* 1-based; 0 for overrides and programmatic sets */
} props_entry_t;

typedef struct props props_t;

/* Looks up an environment variable for ${NAME}; returns NULL when unset. */
typedef const char *(*props_getenv_fn)(const char *name, void *ctx);

props_t *props_new(void);
void props_free(props_t *p);

/* Parses text of len bytes into p. file names the source in messages. getenv_fn NULL means getenv(3).
 * Returns 0, or -1 with "file:line: reason" in errstr (p may then hold part of the input). */
__attribute__((warn_unused_result)) int props_parse(props_t *p, const char *text, size_t len, const char *file,
                                                    props_getenv_fn getenv_fn, void *ctx, char *errstr,
                                                    size_t errstr_size);

/* Reads and parses a file (at most 1 MiB). Errors name the path ("cannot open '/x': No such file..."). */
__attribute__((warn_unused_result)) int props_load_file(props_t *p, const char *path, char *errstr,
                                                        size_t errstr_size);

/* Applies "key=value" from the command line; origin is used in messages (e.g. "-o"). No ${} expansion. */
__attribute__((warn_unused_result)) int props_set_override(props_t *p, const char *kv, const char *origin,
                                                           char *errstr, size_t errstr_size);

/* Sets key to value (copied), replacing any earlier value. Returns 0 or -1 on allocation failure. */
__attribute__((warn_unused_result)) int props_set(props_t *p, const char *key, const char *value, const char *file,
                                                  int line);

size_t props_count(const props_t *p);
/* The i-th entry in insertion order (a replaced key keeps its first position). */
const props_entry_t *props_at(const props_t *p, size_t i);
const props_entry_t *props_find(const props_t *p, const char *key);

#endif
