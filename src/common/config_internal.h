/* config_internal.h: what config.c and config_check.c share: the value checks of individual keys. */
#ifndef PB_COMMON_CONFIG_INTERNAL_H
#define PB_COMMON_CONFIG_INTERNAL_H

#include "common/config.h"

#include <predbridge/error.h>
#include <stddef.h>

void pbconf_why(char *why, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int pbconf_is_digit(char c);
/* Splits a comma list into trimmed, non-empty items (caller frees with pbconf_free_strings). */
__attribute__((warn_unused_result)) pb_err_t pbconf_split(const char *text, long long max_items, char ***out,
                                                          size_t *n_out, char *why, size_t why_size);
void pbconf_free_strings(char **v, size_t n);

int pbconf_parse_ull(const char *s, size_t n, unsigned long long *out);
pb_err_t pbconf_check_socket_path(const char *text, const pbd_config_t *cfg, char *why,
                                         size_t why_size);
pb_err_t pbconf_check_socket_mode(const char *text, const pbd_config_t *cfg, char *why,
                                         size_t why_size);
pb_err_t pbconf_check_servers(const char *text, const pbd_config_t *cfg, char *why, size_t why_size);
pb_err_t pbconf_check_topic(const char *text, const pbd_config_t *cfg, char *why, size_t why_size);
pb_err_t pbconf_check_http_listen(const char *text, const pbd_config_t *cfg, char *why, size_t why_size);

#endif
