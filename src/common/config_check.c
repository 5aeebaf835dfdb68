/* config_check.c: checks of individual configuration values (socket path and mode, brokers, topic,
 * HTTP listener), used by the key table in config.c. */
#include "common/config_internal.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* Decimal digits only (no sign, no blanks); 0 on success. */
int pbconf_parse_ull(const char *s, size_t n, unsigned long long *out) {
    unsigned long long v = 0;
    if (n == 0) return -1;
    for (size_t i = 0; i < n; i++) {
        if (!pbconf_is_digit(s[i])) return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

pb_err_t pbconf_check_socket_path(const char *text, const pbd_config_t *cfg, char *why,
                                         size_t why_size) {
    (void)cfg;
    size_t cap = sizeof(((struct sockaddr_un *)0)->sun_path);
    if (strlen(text) >= cap) {
        pbconf_why(why, why_size, "a UNIX socket path holds at most %zu bytes, this one has %zu", cap - 1,
                   strlen(text));
        return PB_ERR_CONFIG;
    }
    return PB_OK;
}

pb_err_t pbconf_check_socket_mode(const char *text, const pbd_config_t *cfg, char *why,
                                         size_t why_size) {
    (void)text;
    /* Connecting to a UNIX socket needs write permission on it: o+w opens the socket to everyone. */
    if (cfg->socket_mode & 0002) {
        pbconf_why(why, why_size,
                   "socket.mode %04o lets every local user write predictions "
                   "(o+w is refused; admit clients with socket.allowed_uids/socket.allowed_gids)",
                   cfg->socket_mode);
        return PB_ERR_INSECURE;
    }
    return PB_OK;
}

/* Characters of host names and Kafka topic names. */
static int pbconf_is_name_char(char c) {
    return pbconf_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' ||
           c == '_';
}

/* One host:port of bootstrap.servers; [v6]:port for IPv6. */
static pb_err_t pbconf_check_server(const char *s, char *why, size_t why_size) {
    const char *colon = strrchr(s, ':');
    if (strstr(s, "://")) {
        /* librdkafka honours a "plaintext://" prefix, which would bypass security.protocol=ssl. */
        pbconf_why(why, why_size, "'%s': give host:port without a scheme; the connection is always TLS", s);
        return PB_ERR_INSECURE;
    }
    if (!colon || !colon[1]) {
        pbconf_why(why, why_size, "'%s' has no port (expected host:port)", s);
        return PB_ERR_CONFIG;
    }
    unsigned long long port = 0;
    if (pbconf_parse_ull(colon + 1, strlen(colon + 1), &port) != 0 || port == 0 || port > 65535) {
        pbconf_why(why, why_size, "'%s': port must be 1..65535", s);
        return PB_ERR_CONFIG;
    }
    size_t hlen = (size_t)(colon - s);
    int ok = hlen > 0, v6 = s[0] == '[';
    if (v6) ok = hlen > 2 && s[hlen - 1] == ']';
    for (size_t i = v6; ok && i < hlen - v6; i++)
        ok = v6 ? pbconf_is_digit(s[i]) || strchr("abcdefABCDEF:.", s[i]) != NULL : pbconf_is_name_char(s[i]);
    if (!ok) {
        pbconf_why(why, why_size, "'%s': invalid host (a name, an IPv4 address or [IPv6]:port)", s);
        return PB_ERR_CONFIG;
    }
    return PB_OK;
}

pb_err_t pbconf_check_servers(const char *text, const pbd_config_t *cfg, char *why, size_t why_size) {
    (void)cfg;
    char **items = NULL;
    size_t n = 0;
    pb_err_t rc = pbconf_split(text, 1000, &items, &n, why, why_size);
    for (size_t i = 0; rc == PB_OK && i < n; i++)
        rc = pbconf_check_server(items[i], why, why_size);
    pbconf_free_strings(items, n);
    return rc;
}

pb_err_t pbconf_check_topic(const char *text, const pbd_config_t *cfg, char *why, size_t why_size) {
    (void)cfg;
    size_t n = strlen(text);
    int ok = n >= 1 && n <= 249 && strcmp(text, ".") != 0 && strcmp(text, "..") != 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok = pbconf_is_name_char(text[i]);
    }
    if (!ok) {
        pbconf_why(why, why_size, "'%s' is not a Kafka topic name (1..249 of A-Z a-z 0-9 . _ -)", text);
        return PB_ERR_CONFIG;
    }
    return PB_OK;
}

/* http.listen serves unauthenticated metrics: loopback only. */
pb_err_t pbconf_check_http_listen(const char *text, const pbd_config_t *cfg, char *why, size_t why_size) {
    (void)cfg;
    const char *colon = strrchr(text, ':');
    unsigned long long port = 0;
    if (!colon || pbconf_parse_ull(colon + 1, strlen(colon + 1), &port) != 0 || port > 65535) {
        pbconf_why(why, why_size, "'%s': expected host:port with a port 0..65535 (e.g. 127.0.0.1:9464)", text);
        return PB_ERR_CONFIG;
    }
    size_t hlen = (size_t)(colon - text);
    char host[64];
    if (hlen == 0 || hlen >= sizeof host) {
        pbconf_why(why, why_size, "'%s': expected host:port (e.g. 127.0.0.1:9464)", text);
        return PB_ERR_CONFIG;
    }
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    struct in_addr a4;
    int loopback = strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
                   (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127);
    if (!loopback) {
        pbconf_why(why, why_size,
                   "'%s' is not a loopback address: the metrics and health endpoint has no authentication, "
                   "so it listens on 127.0.0.0/8, localhost or [::1] only",
                   text);
        return PB_ERR_INSECURE;
    }
    return PB_OK;
}
