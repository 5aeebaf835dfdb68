/* main.c: predbridged's command line and start-up; the only place that decides to exit. */
#include "common/config.h"
#include "common/log.h"
#include "common/props.h"
#include "common/tls.h"
#include "metrics.h"
#include "server.h"

#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: predbridged --config FILE [-o key=value]... [--check-config]\n"
            "\n"
            "Reads predictions (one JSON object per line) from a local UNIX socket and publishes\n"
            "them to Kafka over TLS 1.3 with a client certificate.\n"
            "\n"
            "  -c, --config FILE     configuration file (key = value; see config/predbridged.conf)\n"
            "  -o key=value          override one configuration key (repeatable; never put\n"
            "                        secrets here: passphrases come from files)\n"
            "      --check-config    validate the configuration and the TLS material, then exit\n"
            "      --config-reference  print every configuration key with its default, then exit\n"
            "  -V, --version         print the version\n"
            "  -h, --help            this help\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop accepting, deliver what is queued (producer.flush_timeout_ms;\n"
            "what is left stays in spool.dir for the next start), and exit 0. SIGHUP reloads the TLS\n"
            "files (tls.cert, tls.key, tls.ca, ...) without a restart; so does a change on disk with tls.watch.\n");
}

/* glibc's fast bins off. Every record is a handful of small allocations (the value, librdkafka's
 * message and its four headers) made as lines arrive and freed thousands at a time when delivery
 * reports are served; a large free then consolidates the fast bins, and the next allocations sort
 * them out of the unsorted bin one by one. Without fast bins, predbridged at 300 B used 0.67-1.11
 * instead of 0.99-1.94 CPU-s per 300,000 and reached 285,000-496,000/s (median 349,000) instead of
 * 141,000-353,000/s (median 252,000), peak RSS unchanged (scripts/bench.sh --quick with
 * PB_BENCH_N300=300000, seven runs each, taking turns). */
static void tune_malloc(void) {
    (void)mallopt(M_MXFAST, 0);
}

int main(int argc, char **argv) {
    tune_malloc();
    const char *config_path = NULL;
    int check_only = 0, exit_code = 1;
    char errstr[1024];
    props_t *props = props_new();
    pbd_config_t cfg;
    int have_cfg = 0;
    pbd_server_t *server = NULL;
    if (!props) {
        fprintf(stderr, "predbridged: out of memory\n");
        return 1;
    }
    enum { OPT_CHECK = 256, OPT_REFERENCE };
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, OPT_CHECK},
                                         {"config-reference", no_argument, NULL, OPT_REFERENCE},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    /* Overrides are applied after the file, in order: collect them first. */
    const char **overrides = calloc((size_t)argc, sizeof *overrides);
    size_t n_overrides = 0;
    if (!overrides) goto out;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:o:Vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config_path = optarg; break;
        case 'o': overrides[n_overrides++] = optarg; break;
        case OPT_CHECK: check_only = 1; break;
        case OPT_REFERENCE:
            pbd_config_write_reference(stdout);
            exit_code = 0;
            goto out;
        case 'V':
            printf("predbridged %s\n", PB_VERSION_STRING);
            exit_code = 0;
            goto out;
        case 'h':
            usage(stdout);
            exit_code = 0;
            goto out;
        default: usage(stderr); exit_code = 2; goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "predbridged: unexpected argument '%s' (see --help)\n", argv[optind]);
        exit_code = 2;
        goto out;
    }
    if (!config_path) {
        fprintf(stderr, "predbridged: --config FILE is required (see --help)\n");
        exit_code = 2;
        goto out;
    }
    if (props_load_file(props, config_path, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "predbridged: %s\n", errstr);
        goto out;
    }
    for (size_t i = 0; i < n_overrides; i++) {
        if (props_set_override(props, overrides[i], "-o", errstr, sizeof errstr) != 0) {
            fprintf(stderr, "predbridged: %s\n", errstr);
            goto out;
        }
    }
    if (pbd_config_load(&cfg, props, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "predbridged: %s\n", errstr);
        goto out;
    }
    have_cfg = 1;
    pblog_setup(cfg.log_level, cfg.log_format, "predbridged");

    if (pbtls_policy_init(errstr, sizeof errstr) != 0) {
        PBLOG_E("tls.policy", "refusing to start: %s", errstr);
        goto out;
    }
    pbtls_cert_info_t info;
    /* The file checked: tls.cert, or the keystore that holds the certificate instead. */
    pblog_field_t f[] = {{.key = "file", .str = cfg.tls.cert ? cfg.tls.cert : cfg.tls.keystore ? cfg.tls.keystore : ""},
                         {.key = "result", .str = "refused"}};
    if (pbtls_check_material(&cfg.tls, time(NULL), &info, pblog_warn_to, (void *)"tls.material", errstr, sizeof errstr) != 0) {
        pblog_fields(PBLOG_ERROR, "tls.material", f, 2, "refusing to start: %s", errstr);
        goto out;
    }
    char until[32];
    struct tm tm;
    gmtime_r(&info.not_after, &tm);
    strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (check_only) {
        printf("predbridged: configuration OK: %s; client certificate CN=%s valid until %s; %zu broker pin(s)\n",
               config_path, info.common_name, until, cfg.tls.pin_count);
        exit_code = 0;
        goto out;
    }
    f[1].str = "ok";
    pblog_fields(PBLOG_INFO, "tls.material", f, 2, "client certificate CN=%s (serial %s) valid until %s", info.common_name,
                 info.serial, until);

    /* One descriptor per writer: take the hard limit, and say so if it is below max_connections. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)cfg.max_connections + 64)
        PBLOG_W("socket.limit", "open-file limit %llu is below socket.max_connections (%d) + 64; raise it (ulimit -n)",
                (unsigned long long)rl.rlim_cur, cfg.max_connections);

    server = pbd_server_new(&cfg, info.common_name, errstr, sizeof errstr);
    if (!server) {
        PBLOG_E("start", "refusing to start: %s", errstr);
        goto out;
    }
    pbm_set_cert_expiry(pbd_server_metrics(server), info.not_after, info.ca_not_after);
    exit_code = pbd_server_run(server) == 0 ? 0 : 1;
out:
    pbd_server_free(server);
    if (have_cfg) pbd_config_free(&cfg);
    props_free(props);
    free(overrides);
    return exit_code;
}
