/* test_tls.c: tests of the TLS policy, pins, certificate checks and broker verification (librdkafka
 * against an in-process TLS server on loopback), with a PKI made by scripts/gen-certs.sh. */
#include "common/tls.h"
#include "common/tls_internal.h" /* pbtlsi_copy_clean */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Passphrases of the generated material: neither may ever show up in a message we produce. */
#define SECRET "Tr0ub4dor&3-predbridge-SECRET"
#define WRONG_SECRET "wrong-passphrase-XYZZY-7"

extern char **environ;

/* Directory names are kept well under PATH_MAX so that paths built from them always fit. */
#define DIR_MAX 1024
static char g_dir[DIR_MAX - 16]; /* mkdtemp root */
static char g_pki[DIR_MAX];      /* generated material */
static char g_src[DIR_MAX];      /* repository root */
static char
    g_self[PATH_MAX]; /* this binary, for child modes (not /proc/self/exe: under valgrind that is valgrind) */

/* ---- helpers ---- */

/* Path of a file in the PKI directory; a ring of buffers so several can be live at once. */
static const char *P(const char *name) {
    static char ring[48][PATH_MAX];
    static unsigned next;
    char *b = ring[next++ % 48];
    snprintf(b, PATH_MAX, "%s/%s", g_pki, name);
    return b;
}

static void assert_no_secret(const char *s) {
    assert_non_null(s);
    if (strstr(s, SECRET) || strstr(s, WRONG_SECRET) || strstr(s, "Tr0ub4dor") || strstr(s, "XYZZY")) {
        print_error("secret leaked into: %s\n", s);
        fail();
    }
}

static void assert_contains(const char *hay, const char *needle) {
    if (!hay || !strstr(hay, needle)) {
        print_error("expected \"%s\" in: %s\n", needle, hay ? hay : "(null)");
        fail();
    }
}

/* Runs argv with cwd `dir`, stdout and stderr appended to the generation log; returns exit status. */
static int run(const char *dir, char *const argv[]) {
    char logpath[PATH_MAX];
    snprintf(logpath, sizeof logpath, "%s/gen.log", g_dir);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (dir && chdir(dir) != 0) _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int sh(const char *script) {
    char *argv[] = {"/bin/sh", "-ec", (char *)script, NULL};
    return run(g_pki, argv);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    (void)n;
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *text, mode_t mode) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* DER of the first certificate of a PEM file; caller frees with OPENSSL_free. */
static int der_of(const char *pem, unsigned char **der) {
    FILE *f = fopen(pem, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    *der = NULL;
    int n = i2d_X509(x, der);
    X509_free(x);
    assert_true(n > 0);
    return n;
}

/* Collected warnings of one check. */
typedef struct warns {
    int n;
    char msg[8][2048];
} warns_t;

static void collect_warn(void *ctx, const char *message) {
    warns_t *w = ctx;
    assert_no_secret(message);
    if (w->n < 8) snprintf(w->msg[w->n], sizeof w->msg[0], "%s", message);
    w->n++;
}

static pbtls_settings_t settings(const char *cert, const char *key) {
    pbtls_settings_t s;
    memset(&s, 0, sizeof s);
    s.ca = P("ca.crt");
    s.cert = cert ? P(cert) : NULL;
    s.key = key ? P(key) : NULL;
    s.expiry_warn_days = 30;
    return s;
}

/* Runs pbtls_check_material at `now`, asserting no secret appears anywhere in what it produced. */
static int check(const pbtls_settings_t *s, time_t now, pbtls_cert_info_t *info, warns_t *w, char *err,
                 size_t n) {
    pbtls_cert_info_t local;
    err[0] = '\0';
    memset(w, 0, sizeof *w);
    int rc = pbtls_check_material(s, now, info ? info : &local, collect_warn, w, err, n);
    assert_no_secret(err);
    pbtls_cert_info_t *i = info ? info : &local;
    assert_no_secret(i->subject);
    assert_no_secret(i->sans);
    if (rc != 0) assert_true(err[0] != '\0');
    return rc;
}

/* ---- child process modes (the OpenSSL configuration is process-wide and loads once) ---- */

static int child_main(const char *mode) {
    char err[1024] = "", err2[1024] = "";
    int rc = 0, rc2 = 0;
    if (!strcmp(mode, "control")) {
        rc = OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL) == 1 ? 0 : -1;
    } else if (!strcmp(mode, "policy")) {
        rc = pbtls_policy_init(err, sizeof err);
    } else if (!strcmp(mode, "reload")) {
        /* Someone else in the process reloads a weaker configuration after our policy. */
        rc = pbtls_policy_init(err, sizeof err);
        if (CONF_modules_load_file(getenv("PBTLS_TEST_RELOAD"), NULL, 0) <= 0) rc = -2;
        rc2 = pbtls_policy_verify(err2, sizeof err2);
        pbtls_settings_t s = {0};
        s.ca = "/nonexistent";
        s.cert = "/nonexistent";
        s.key = "/nonexistent";
        pbtls_verifier_t *v = NULL;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (pbtls_apply(conf, &s, &v, err2, sizeof err2) == 0) rc2 = 99; /* must refuse */
        rd_kafka_conf_destroy(conf);
    } else {
        return 2;
    }
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) return 3;
    printf("rc=%d min=0x%lx max=0x%lx level=%d rc2=%d err=%s|err2=%s\n", rc, SSL_CTX_get_min_proto_version(c),
           SSL_CTX_get_max_proto_version(c), SSL_CTX_get_security_level(c), rc2, err, err2);
    SSL_CTX_free(c);
    return 0;
}

/* Re-executes this test binary in `mode` with the given OPENSSL_CONF; returns its stdout line. */
static void run_child(const char *mode, const char *openssl_conf, const char *reload, char *out,
                      size_t size) {
    char *envp[512];
    char e_mode[64], e_conf[PATH_MAX + 16], e_reload[PATH_MAX + 32];
    size_t n = 0;
    snprintf(e_mode, sizeof e_mode, "PBTLS_TEST_CHILD=%s", mode);
    envp[n++] = e_mode;
    if (openssl_conf) {
        snprintf(e_conf, sizeof e_conf, "OPENSSL_CONF=%s", openssl_conf);
        envp[n++] = e_conf;
    }
    if (reload) {
        snprintf(e_reload, sizeof e_reload, "PBTLS_TEST_RELOAD=%s", reload);
        envp[n++] = e_reload;
    }
    for (char **e = environ; *e && n < 510; e++)
        if (strncmp(*e, "OPENSSL_CONF=", 13) && strncmp(*e, "PBTLS_TEST_", 11)) envp[n++] = *e;
    envp[n] = NULL;

    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        char *argv[] = {"test_tls", NULL};
        execve(g_self, argv, envp);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t r;
    while (len + 1 < size && (r = read(p[0], out + len, size - 1 - len)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        len += (size_t)r;
    }
    out[len] = '\0';
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static const char hostile_cnf[] = "openssl_conf = hostile_init\n"
                                  "[hostile_init]\n"
                                  "ssl_conf = hostile_ssl\n"
                                  "[hostile_ssl]\n"
                                  "system_default = hostile_tls\n"
                                  "[hostile_tls]\n"
                                  "MinProtocol = TLSv1\n"
                                  "MaxProtocol = TLSv1.2\n"
                                  "CipherString = DEFAULT:@SECLEVEL=0\n";

/* ---- group setup: the PKI ---- */

/* Shows the generators' output: the directory is removed by the group teardown. */
static void setup_failed(const char *what) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/gen.log", g_dir);
    char *log = slurp(path);
    fprintf(stderr, "%s failed:\n%s\n", what, log ? log : "(no output)");
    free(log);
}

static int group_setup(void **state) {
    (void)state;
    const char *src = getenv("PB_SOURCE_DIR");
#ifdef PB_TEST_DATA_DIR
    if (!src) { /* run by hand: PB_TEST_DATA_DIR is <root>/tests/data */
        snprintf(g_src, sizeof g_src, "%s", PB_TEST_DATA_DIR);
        char *cut = strstr(g_src, "/tests/data");
        if (cut) *cut = '\0';
        src = g_src;
    }
#endif
    if (!src) src = ".";
    if (src != g_src) snprintf(g_src, sizeof g_src, "%s", src);
    const char *tmp = getenv("TMPDIR") && strlen(getenv("TMPDIR")) < 512 ? getenv("TMPDIR") : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/pbtls-test.XXXXXX", tmp);
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_pki, sizeof g_pki, "%s/pki", g_dir);

    char script[PATH_MAX + 32];
    snprintf(script, sizeof script, "%s/scripts/gen-certs.sh", g_src);
    char *gen[] = {"bash", script, g_pki, NULL};
    if (run(NULL, gen) != 0) {
        setup_failed("gen-certs.sh");
        return -1;
    }
    /* Material gen-certs.sh does not make: passphrases, an encrypted key, a PKCS#12 keystore,
     * short-lived certificates and CA (and a leaf that outlives that CA), a server-only certificate, a CRL revoking admin, a CRL of the
     * untrusted CA. */
    static const char extra[] =
        "export PB_SAN=DNS:localhost\n"
        "umask 077\n"
        "printf '%s\\n' '" SECRET "' > pass.txt\n"
        "printf '%s\\n' '" WRONG_SECRET "' > wrongpass.txt\n"
        "openssl pkey -in predbridged.key -aes-256-cbc -passout file:pass.txt -out enc.key\n"
        "openssl pkcs12 -export -inkey predbridged.key -in predbridged.crt -certfile ca.crt "
        "  -passout file:pass.txt -out client.p12\n"
        "printf 'basicConstraints = critical, CA:false\\nkeyUsage = critical, digitalSignature\\n"
        "extendedKeyUsage = clientAuth\\n' > client.ext\n"
        "printf 'basicConstraints = critical, CA:false\\nkeyUsage = critical, digitalSignature\\n"
        "extendedKeyUsage = serverAuth\\n' > server.ext\n"
        "openssl req -new -key predbridged.key -subj '/O=predbridge test/CN=shortlived' -out short.csr\n"
        "openssl x509 -req -in short.csr -CA ca.crt -CAkey ca.key -set_serial 1001 -days 5 "
        "  -extfile client.ext -out short.crt\n"
        "openssl x509 -req -in short.csr -CA ca.crt -CAkey ca.key -set_serial 1002 -days 30 "
        "  -extfile server.ext -out serveronly.crt\n"
        "printf '[req]\\ndistinguished_name = dn\\nprompt = no\\nx509_extensions = v3ca\\n[dn]\\n"
        "CN = short-lived test CA\\n[v3ca]\\nbasicConstraints = critical, CA:true\\n"
        "keyUsage = critical, keyCertSign, cRLSign\\nsubjectKeyIdentifier = hash\\n' > shortca.cnf\n"
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out shortca.key\n"
        "openssl req -x509 -new -config shortca.cnf -key shortca.key -days 3 -out shortca.crt\n"
        "openssl x509 -req -in short.csr -CA shortca.crt -CAkey shortca.key -set_serial 1003 -days 2 "
        "  -extfile client.ext -out shortca-client.crt\n"
        "openssl x509 -req -in short.csr -CA shortca.crt -CAkey shortca.key -set_serial 1004 -days 10 "
        "  -extfile client.ext -out shortca-longleaf.crt\n"
        "openssl ca -batch -config .ca-ca/ca.cnf -revoke admin.crt\n"
        "openssl ca -batch -config .ca-ca/ca.cnf -gencrl -crldays 30 -out ca.crl\n"
        "openssl ca -batch -config .ca-untrusted-ca/ca.cnf -gencrl -crldays 30 -out untrusted-ca.crl\n"
        "openssl x509 -in broker.crt -pubkey -noout | openssl pkey -pubin -outform der "
        "  | openssl dgst -sha256 -binary | base64 > broker.pin\n"
        "openssl x509 -in predbridged.crt -noout -fingerprint -sha256 > predbridged.fp\n"
        "cp predbridged.key readable.key && chmod 0640 readable.key\n"
        "chmod 0644 *.crt\n";
    if (sh(extra) != 0) {
        setup_failed("extra test material");
        return -1;
    }
    char hostile[PATH_MAX];
    snprintf(hostile, sizeof hostile, "%s/hostile.cnf", g_pki);
    FILE *f = fopen(hostile, "w");
    if (!f) return -1;
    fputs(hostile_cnf, f);
    fclose(f);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    if (g_dir[0] && !getenv("PBTLS_TEST_KEEP")) {
        char *rm[] = {"rm", "-rf", "--", g_dir, NULL};
        run(NULL, rm);
    }
    return 0;
}

/* ---- policy ---- */

static void test_tls_policy_init_new_contexts_min_tls13(void **state) {
    (void)state;
    char err[512] = "";
    assert_int_equal(pbtls_policy_init(err, sizeof err), 0);
    assert_int_equal(pbtls_policy_init(err, sizeof err), 0); /* runs once; same answer */
    assert_int_equal(pbtls_policy_verify(err, sizeof err), 0);
    SSL_CTX *c = SSL_CTX_new(TLS_client_method()), *s = SSL_CTX_new(TLS_server_method());
    assert_non_null(c);
    assert_non_null(s);
    assert_int_equal(SSL_CTX_get_min_proto_version(c), TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_get_min_proto_version(s), TLS1_3_VERSION);
    assert_true(SSL_CTX_get_security_level(c) >= 2);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

static void test_tls_policy_hostile_openssl_conf_still_tls13(void **state) {
    (void)state;
    char out[4096];
    /* Control: the hostile file really takes effect without predbridge's policy. */
    run_child("control", P("hostile.cnf"), NULL, out, sizeof out);
    assert_contains(out, "rc=0 min=0x301 max=0x303 level=0");
    /* With it, loaded after OpenSSL's: TLS 1.3 minimum, no 1.2 maximum, level 2. */
    run_child("policy", P("hostile.cnf"), NULL, out, sizeof out);
    assert_contains(out, "rc=0 min=0x304 max=0x0 level=2");
    /* And with no OPENSSL_CONF at all (system openssl.cnf). */
    run_child("policy", NULL, NULL, out, sizeof out);
    assert_contains(out, "rc=0 min=0x304 max=0x0 level=2");
}

static void test_tls_policy_reloaded_weaker_config_verify_fails(void **state) {
    (void)state;
    char out[4096];
    run_child("reload", NULL, P("hostile.cnf"), out, sizeof out);
    assert_contains(out, "rc=0 min=0x301"); /* the reload did weaken the process ... */
    assert_contains(out, "rc2=-1");         /* ... and pbtls_policy_verify noticed */
    assert_contains(out, "TLS policy not in effect: a new OpenSSL client context allows minimum TLSv1");
    assert_contains(out, "err2=TLS policy not in effect"); /* pbtls_apply refused too */
}

/* Lines that are neither blank nor comments, joined by '\n'. */
static void config_lines(const char *text, char *out, size_t size) {
    size_t o = 0;
    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);
        const char *p = text;
        while (p < text + len && (*p == ' ' || *p == '\t'))
            p++;
        if (p < text + len && *p != '#' && o + len + 2 < size) {
            memcpy(out + o, text, len);
            o += len;
            out[o++] = '\n';
        }
        text += len + (nl ? 1 : 0);
    }
    out[o] = '\0';
}

static void test_tls_policy_doc_copy_matches_compiled_text(void **state) {
    (void)state;
    char path[PATH_MAX], a[4096], b[4096], out[4096];
    snprintf(path, sizeof path, "%s/config/openssl-tls13.cnf", g_src);
    char *doc = slurp(path);
    assert_non_null(doc);
    config_lines(doc, a, sizeof a);
    config_lines(pbtls_policy_text(), b, sizeof b);
    assert_string_equal(a, b);
    assert_contains(b, "MinProtocol = TLSv1.3");
    free(doc);
    /* Used as OPENSSL_CONF by a process that never calls pbtls_policy_init, it enforces the same. */
    run_child("control", path, NULL, out, sizeof out);
    assert_contains(out, "rc=0 min=0x304 max=0x0 level=2");
}

/* ---- pins ---- */

static void test_tls_pin_prefixed_and_bare_valid_parse(void **state) {
    (void)state;
    uint8_t pin[PBTLS_PIN_LEN], bare[PBTLS_PIN_LEN], zero[PBTLS_PIN_LEN] = {0};
    char err[256];
    assert_int_equal(
        pbtls_pin_parse("sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", pin, err, sizeof err), 0);
    assert_memory_equal(pin, zero, PBTLS_PIN_LEN);
    const char *b64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; /* SHA-256 of "" */
    char prefixed[80];
    snprintf(prefixed, sizeof prefixed, "sha256//%s", b64);
    assert_int_equal(pbtls_pin_parse(prefixed, pin, err, sizeof err), 0);
    assert_int_equal(pbtls_pin_parse(b64, bare, err, sizeof err), 0);
    assert_memory_equal(pin, bare, PBTLS_PIN_LEN);
    assert_int_equal(pin[0], 0xe3);
    assert_int_equal(pin[31], 0x55);
}

static void test_tls_pin_format_roundtrip_matches(void **state) {
    (void)state;
    uint8_t pin[PBTLS_PIN_LEN], back[PBTLS_PIN_LEN];
    char text[PBTLS_PIN_TEXT_SIZE], err[256], small[20];
    for (int i = 0; i < PBTLS_PIN_LEN; i++)
        pin[i] = (uint8_t)(i * 37 + 11);
    pbtls_pin_format(pin, text, sizeof text);
    assert_int_equal(strlen(text), 52);
    assert_true(!strncmp(text, "sha256//", 8));
    assert_int_equal(pbtls_pin_parse(text, back, err, sizeof err), 0);
    assert_memory_equal(pin, back, PBTLS_PIN_LEN);
    pbtls_pin_format(pin, small, sizeof small); /* truncates, terminated */
    assert_int_equal(strlen(small), sizeof small - 1);
}

static void test_tls_pin_malformed_rejected_with_reason(void **state) {
    (void)state;
    static const struct {
        const char *text, *reason;
    } cases[] = {
        {"", "empty pin"},
        {"sha256//", "empty pin"},
        {"sha1//AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "unsupported hash 'sha1'"},
        {"sha384//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
         "unsupported hash 'sha384'"},
        {"md5//AAAAAAAAAAAAAAAAAAAAAA==", "unsupported hash 'md5'"},
        {"SHA256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "write it as 'sha256//'"},
        {"sha-256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "write it as 'sha256//'"},
        {"sha256//AAAAAAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAAAAAAAAA=", "whitespace at offset 20"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "whitespace at offset 44"},
        {" AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "whitespace at offset 0"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "43 base64 characters"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "decodes to 30 bytes"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "decodes to 33 bytes"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", "decodes to 31 bytes"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "decodes to 35 bytes"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=", "not canonical"},
        {"sha256//AAAAAAAAAAAAAAAAAAAA=AAAAAAAAAAAAAAAAAAAAAA=", "'=' at offset 20"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=A", "'=' at offset 42"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAA-AAAAAAAAAAAAAAAAAA=", "URL-safe base64 character '-'"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAA_AAAAAAAAAAAAAAAAAA=", "URL-safe base64 character '_'"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;sha256//"
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
         "one pin per entry"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*A=", "invalid base64 character '*'"},
        {"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\xc3\xa9=", "invalid byte 0xc3"},
        {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "pin is hex"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t pin[PBTLS_PIN_LEN], before[PBTLS_PIN_LEN];
        char err[512] = "";
        memset(pin, 0xAB, sizeof pin);
        memcpy(before, pin, sizeof pin);
        assert_int_equal(pbtls_pin_parse(cases[i].text, pin, err, sizeof err), -1);
        assert_contains(err, cases[i].reason);
        assert_memory_equal(pin, before, sizeof pin); /* nothing written on failure */
    }
    uint8_t pin[PBTLS_PIN_LEN];
    char tiny[3];
    assert_int_equal(pbtls_pin_parse("nope", pin, tiny, sizeof tiny), -1);
    assert_int_equal(strlen(tiny), 2);
    assert_int_equal(pbtls_pin_parse(NULL, pin, NULL, 0), -1);
}

static void test_tls_spki_pin_equals_openssl_cli_pipeline(void **state) {
    (void)state;
    unsigned char *der;
    uint8_t pin[PBTLS_PIN_LEN], cli[PBTLS_PIN_LEN];
    char text[PBTLS_PIN_TEXT_SIZE], err[256];
    int n = der_of(P("broker.crt"), &der);
    assert_int_equal(pbtls_spki_sha256_der(der, (size_t)n, pin), 0);
    OPENSSL_free(der);
    char *b64 = slurp(P("broker.pin")); /* openssl x509 -pubkey | pkey -outform der | dgst -sha256 | base64 */
    assert_non_null(b64);
    b64[strcspn(b64, "\n")] = '\0';
    assert_int_equal(strlen(b64), 44);
    assert_int_equal(pbtls_pin_parse(b64, cli, err, sizeof err), 0);
    assert_memory_equal(pin, cli, PBTLS_PIN_LEN);
    pbtls_pin_format(pin, text, sizeof text);
    assert_string_equal(text + 8, b64);
    free(b64);
}

static void test_tls_spki_garbage_der_fails(void **state) {
    (void)state;
    uint8_t pin[PBTLS_PIN_LEN];
    unsigned char junk[64];
    unsigned char *der;
    memset(junk, 0x30, sizeof junk);
    assert_int_equal(pbtls_spki_sha256_der(junk, sizeof junk, pin), -1);
    assert_int_equal(pbtls_spki_sha256_der(NULL, 0, pin), -1);
    int n = der_of(P("broker.crt"), &der);
    assert_int_equal(pbtls_spki_sha256_der(der, (size_t)n - 1, pin), -1); /* truncated */
    unsigned char *longer = malloc((size_t)n + 1);
    memcpy(longer, der, (size_t)n);
    longer[n] = 0;
    assert_int_equal(pbtls_spki_sha256_der(longer, (size_t)n + 1, pin), -1); /* trailing byte */
    free(longer);
    OPENSSL_free(der);
    assert_int_equal(ERR_peek_error(), 0); /* the error queue is left as found */
}

static void test_tls_describe_pem_and_der_same_info(void **state) {
    (void)state;
    pbtls_cert_info_t a, b;
    unsigned char *der;
    int n = der_of(P("broker.crt"), &der);
    assert_int_equal(pbtls_describe_der(der, (size_t)n, &a), 0);
    OPENSSL_free(der);
    char *pem = slurp(P("broker.crt"));
    assert_int_equal(pbtls_describe_der((const unsigned char *)pem, strlen(pem), &b), 0);
    free(pem);
    assert_memory_equal(&a, &b, sizeof a);
    assert_string_equal(a.common_name, "kafka-broker");
    /* RFC 2253 lists the RDNs last-first: `openssl ca` put CN first, the CA's req config O last. */
    assert_string_equal(a.subject, "O=predbridge test,CN=kafka-broker");
    assert_string_equal(a.issuer, "O=predbridge test,CN=predbridge test CA");
    assert_string_equal(a.sans, "DNS:localhost, IP:127.0.0.1, DNS:kafka");
    assert_int_equal(a.client_auth_usage, 1);
    assert_true(a.not_after - a.not_before == 825L * 86400);
    unsigned char junk[10] = {0};
    assert_int_equal(pbtls_describe_der(junk, sizeof junk, &a), -1);
}

/* ---- material ---- */

static void test_tls_material_valid_client_passes_with_info(void **state) {
    (void)state;
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    pbtls_cert_info_t info;
    warns_t w;
    char err[1024];
    assert_int_equal(check(&s, time(NULL), &info, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 0);
    assert_string_equal(info.common_name, "predbridged");
    assert_string_equal(info.subject, "O=predbridge test,CN=predbridged");
    assert_string_equal(info.issuer, "O=predbridge test,CN=predbridge test CA");
    assert_string_equal(info.sans, "");
    assert_int_equal(info.client_auth_usage, 1);
    assert_true(strlen(info.serial) >= 2);
    assert_true(info.not_before > 0 && info.not_after > info.not_before);
    assert_true(info.ca_not_after > info.not_after); /* the 10-year CA */
    /* Fingerprint as `openssl x509 -fingerprint -sha256` prints it. */
    char *fp = slurp(P("predbridged.fp"));
    assert_non_null(fp);
    fp[strcspn(fp, "\n")] = '\0';
    assert_string_equal(strchr(fp, '=') + 1, info.sha256_fingerprint);
    free(fp);
    /* The pin in info is that of the certificate's key. */
    unsigned char *der;
    uint8_t pin[PBTLS_PIN_LEN];
    char text[PBTLS_PIN_TEXT_SIZE];
    int n = der_of(P("predbridged.crt"), &der);
    assert_int_equal(pbtls_spki_sha256_der(der, (size_t)n, pin), 0);
    OPENSSL_free(der);
    pbtls_pin_format(pin, text, sizeof text);
    assert_string_equal(info.spki_pin, text);
}

static void test_tls_material_group_readable_key_warns_chmod(void **state) {
    (void)state;
    pbtls_settings_t s = settings("predbridged.crt", "readable.key");
    warns_t w;
    char err[1024], fix[PATH_MAX + 20];
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 1);
    snprintf(fix, sizeof fix, "chmod 600 %s", s.key);
    assert_contains(w.msg[0], fix);
    assert_contains(w.msg[0], "tls.key '");
    assert_contains(w.msg[0], "mode 0640");
}

static void test_tls_material_mismatched_key_names_both_files(void **state) {
    (void)state;
    pbtls_settings_t s = settings("mismatch-client.crt", "mismatch-client.key");
    warns_t w;
    char err[1024], want[3 * PATH_MAX];
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    snprintf(want, sizeof want, "tls.key '%s': does not match certificate tls.cert '%s'", s.key, s.cert);
    assert_string_equal(err, want);
}

static void test_tls_material_untrusted_ca_fails_naming_cert(void **state) {
    (void)state;
    pbtls_settings_t s = settings("untrusted-client.crt", "untrusted-client.key");
    warns_t w;
    pbtls_cert_info_t info;
    char err[2048], want[PATH_MAX * 2 + 64];
    assert_int_equal(check(&s, time(NULL), &info, &w, err, sizeof err), -1);
    snprintf(want, sizeof want, "tls.cert '%s': does not verify against tls.ca '%s': ", s.cert, s.ca);
    assert_contains(err, want);
    assert_contains(err, "unable to get local issuer certificate");
    assert_contains(err, "issued by 'O=predbridge test,CN=untrusted test CA'");
    assert_contains(err, "tls.ca does not hold the CA that issued it");
    assert_string_equal(info.common_name, "predbridged"); /* info filled as far as the check got */
    assert_int_equal(info.ca_not_after, 0);
}

static void test_tls_material_expired_cert_fails_with_dates(void **state) {
    (void)state;
    pbtls_settings_t s = settings("expired-client.crt", "expired-client.key");
    warns_t w;
    char err[1024], want[PATH_MAX + 200];
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    snprintf(
        want, sizeof want,
        "tls.cert '%s': certificate expired on 2020-02-01 00:00:00 UTC (valid from 2020-01-01 00:00:00 UTC)",
        s.cert);
    assert_contains(err, want);
}

static void test_tls_material_notyet_cert_fails_with_dates(void **state) {
    (void)state;
    pbtls_settings_t s = settings("notyet-client.crt", "notyet-client.key");
    warns_t w;
    char err[1024], want[PATH_MAX + 200];
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "tls.cert '%s': certificate is not valid before 2099-01-01 00:00:00 UTC (valid until 2099-02-01 "
             "00:00:00 UTC; now is ",
             s.cert);
    assert_contains(err, want);
    /* Checked at a `now` after its window, the same certificate is expired instead. */
    assert_int_equal(check(&s, (time_t)4076006400 /* 2099-03-01 */, NULL, &w, err, sizeof err), -1);
    assert_contains(err, "certificate expired on 2099-02-01 00:00:00 UTC");
}

static void test_tls_material_no_client_auth_eku_fails(void **state) {
    (void)state;
    pbtls_settings_t s = settings("serveronly.crt", "predbridged.key");
    warns_t w;
    pbtls_cert_info_t info;
    char err[1024];
    assert_int_equal(check(&s, time(NULL), &info, &w, err, sizeof err), -1);
    assert_contains(err,
                    "certificate's extended key usage (serverAuth) does not allow TLS client authentication");
    assert_contains(err, "extendedKeyUsage = clientAuth");
    assert_int_equal(info.client_auth_usage, 0);
}

static void test_tls_material_expiring_soon_warns_with_date(void **state) {
    (void)state;
    pbtls_settings_t s = settings("short.crt", "predbridged.key");
    pbtls_cert_info_t info;
    warns_t w;
    char err[1024], date[40], want[PATH_MAX + 200];
    time_t now = time(NULL);
    assert_int_equal(check(&s, now, &info, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 1);
    pbtls_format_time(info.not_after, date, sizeof date);
    long long left = (long long)((info.not_after - now) / 86400);
    assert_true(left == 4 || left == 5);
    snprintf(want, sizeof want, "tls.cert '%s': certificate expires on %s, in %lld days", s.cert, date, left);
    assert_contains(w.msg[0], want);
    /* Below the threshold: quiet. */
    s.expiry_warn_days = 3;
    assert_int_equal(check(&s, now, NULL, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 0);
    /* The long-lived certificate, checked at a `now` ten days before it ends, warns too. */
    pbtls_settings_t l = settings("predbridged.crt", "predbridged.key");
    assert_int_equal(check(&l, now, &info, &w, err, sizeof err), 0);
    assert_int_equal(check(&l, info.not_after - 10 * 86400, NULL, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 1);
    assert_contains(w.msg[0], "in 10 days");
}

/* A certificate of the short-lived (3-day) CA, which is then the only one in tls.ca. */
static pbtls_settings_t short_ca_settings(const char *cert) {
    pbtls_settings_t s = settings(cert, "predbridged.key");
    s.ca = P("shortca.crt");
    return s;
}

static void test_tls_material_ca_expiring_soon_warns(void **state) {
    (void)state;
    pbtls_settings_t s = short_ca_settings("shortca-client.crt");
    pbtls_cert_info_t info;
    warns_t w;
    char err[1024], want[PATH_MAX + 200];
    assert_int_equal(check(&s, time(NULL), &info, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 2);
    snprintf(want, sizeof want, "tls.ca '%s': CA certificate 'CN=short-lived test CA' expires on ", s.ca);
    assert_contains(w.msg[0], want);
    assert_contains(w.msg[1], "tls.cert '");
    assert_true(info.ca_not_after > info.not_after);
    assert_true(info.ca_not_after - time(NULL) <= 3 * 86400);
}

/* The leaf is valid for 10 days, its CA for 3: five days on, only chain verification can notice. */
static void test_tls_material_expired_ca_valid_leaf_fails_naming_ca(void **state) {
    (void)state;
    pbtls_settings_t s = short_ca_settings("shortca-longleaf.crt");
    time_t later = time(NULL) + 5 * 86400;
    pbtls_cert_info_t info;
    warns_t w;
    char err[2048], want[PATH_MAX + 200];
    assert_int_equal(check(&s, later, &info, &w, err, sizeof err), -1);
    assert_true(info.not_after > later); /* the leaf itself is still valid then */
    snprintf(want, sizeof want, "tls.cert '%s': does not verify against tls.ca '%s': certificate has expired "
             "(certificate 'CN=short-lived test CA' issued by 'CN=short-lived test CA' at depth 1, valid from ",
             s.cert, s.ca);
    assert_contains(err, want);
    /* Today both are valid. */
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), 0);
}

static void test_tls_material_encrypted_key_right_passphrase_passes(void **state) {
    (void)state;
    pbtls_settings_t s = settings("predbridged.crt", "enc.key");
    warns_t w;
    char err[1024];
    s.key_passphrase_file = P("pass.txt");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 0);
}

static void test_tls_material_encrypted_key_wrong_passphrase_fails_without_secret(void **state) {
    (void)state;
    pbtls_settings_t s = settings("predbridged.crt", "enc.key");
    warns_t w;
    char err[1024], want[PATH_MAX * 2 + 100];
    s.key_passphrase_file = P("wrongpass.txt");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "tls.key '%s': cannot decrypt it with the passphrase in tls.key_passphrase_file '%s'", s.key,
             s.key_passphrase_file);
    assert_contains(err, want);
}

static void test_tls_material_encrypted_key_no_passphrase_fails_with_hint(void **state) {
    (void)state;
    pbtls_settings_t s = settings("predbridged.crt", "enc.key");
    warns_t w;
    char err[1024];
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "is encrypted; set tls.key_passphrase_file");
}

static void test_tls_material_keystore_right_passphrase_passes(void **state) {
    (void)state;
    pbtls_settings_t s = settings(NULL, NULL);
    pbtls_cert_info_t info;
    warns_t w;
    char err[1024];
    s.keystore = P("client.p12");
    s.keystore_passphrase_file = P("pass.txt");
    assert_int_equal(check(&s, time(NULL), &info, &w, err, sizeof err), 0);
    assert_string_equal(info.common_name, "predbridged");
    assert_true(info.ca_not_after > 0);
}

static void test_tls_material_keystore_wrong_passphrase_fails_without_secret(void **state) {
    (void)state;
    pbtls_settings_t s = settings(NULL, NULL);
    warns_t w;
    char err[1024];
    s.keystore = P("client.p12");
    s.keystore_passphrase_file = P("wrongpass.txt");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "tls.keystore '");
    assert_contains(err, "wrong passphrase?");
    s.keystore_passphrase_file = NULL;
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "is protected by a passphrase; set tls.keystore_passphrase_file");
}

static void test_tls_material_bad_settings_fail_naming_key(void **state) {
    (void)state;
    warns_t w;
    char err[1024];
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    s.ca = NULL;
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "tls.ca: not set");
    s = settings("predbridged.crt", "predbridged.key");
    s.ca = P("nonexistent.crt");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "tls.ca '");
    assert_contains(err, "cannot open: No such file or directory");
    s = settings("predbridged.key", "predbridged.key"); /* a key where the cert belongs */
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "tls.cert '");
    assert_contains(err, "no PEM certificate");
    s = settings("predbridged.crt", "predbridged.crt"); /* and the other way round */
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "no PEM private key found");
    s = settings("predbridged.crt", NULL);
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "tls.key: not set");
    s = settings("predbridged.crt", "enc.key");
    s.key_passphrase_file = P("missing-pass.txt");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "tls.key_passphrase_file '");
    s = settings("predbridged.crt", "predbridged.key");
    s.keystore = P("client.p12");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "alternatives");
    char empty[PATH_MAX];
    snprintf(empty, sizeof empty, "%s", P("empty-pass.txt"));
    write_file(empty, "\n", 0600);
    s = settings("predbridged.crt", "enc.key");
    s.key_passphrase_file = empty;
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "is empty");
    assert_int_equal(pbtls_check_material(NULL, 0, NULL, NULL, NULL, err, sizeof err), -1);
}

static void test_tls_material_revoked_cert_fails_stale_crl_warns(void **state) {
    (void)state;
    warns_t w;
    char err[1024];
    pbtls_settings_t s = settings("admin.crt", "admin.key");
    s.crl = P("ca.crl");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "certificate is revoked by tls.crl '");
    s = settings("predbridged.crt", "predbridged.key");
    s.crl = P("ca.crl");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), 0);
    assert_int_equal(w.n, 0);
    s.expiry_warn_days = 0;
    assert_int_equal(check(&s, time(NULL) + 60 * 86400, NULL, &w, err, sizeof err), 0); /* CRL: 30 days */
    assert_int_equal(w.n, 1);
    assert_contains(w.msg[0], "was due for renewal on");
    s.crl = P("ca.crt");
    assert_int_equal(check(&s, time(NULL), NULL, &w, err, sizeof err), -1);
    assert_contains(err, "no PEM CRL");
}

/* ---- pbtls_apply ---- */

static void assert_conf(rd_kafka_conf_t *conf, const char *name, const char *want) {
    char val[PATH_MAX + 64];
    size_t n = sizeof val;
    assert_int_equal(rd_kafka_conf_get(conf, name, val, &n), RD_KAFKA_CONF_OK);
    if (strcmp(val, want)) {
        print_error("%s = '%s', expected '%s'\n", name, val, want);
        fail();
    }
}

static void test_tls_apply_sets_librdkafka_security_properties(void **state) {
    (void)state;
    char err[512];
    pbtls_settings_t s = settings("predbridged.crt", "enc.key");
    s.key_passphrase_file = P("pass.txt");
    s.crl = P("ca.crl");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Weak values set earlier (say by a pass-through) are overridden. */
    assert_int_equal(rd_kafka_conf_set(conf, "security.protocol", "plaintext", err, sizeof err),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.ssl.certificate.verification", "false", err, sizeof err),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(
        rd_kafka_conf_set(conf, "ssl.endpoint.identification.algorithm", "none", err, sizeof err),
        RD_KAFKA_CONF_OK);
    pbtls_verifier_t *v = NULL;
    assert_int_equal(pbtls_apply(conf, &s, &v, err, sizeof err), 0);
    assert_non_null(v);
    assert_conf(conf, "security.protocol", "ssl");
    assert_conf(conf, "ssl.ca.location", s.ca);
    assert_conf(conf, "ssl.certificate.location", s.cert);
    assert_conf(conf, "ssl.key.location", s.key);
    assert_conf(conf, "ssl.key.password", SECRET); /* first line, newline stripped */
    assert_conf(conf, "ssl.crl.location", s.crl);
    assert_conf(conf, "ssl.endpoint.identification.algorithm", "https");
    assert_conf(conf, "enable.ssl.certificate.verification", "true");
    assert_int_equal(pbtls_verifier_failures(v), 0);
    char last[64] = "x";
    pbtls_verifier_last_failure(v, last, sizeof last);
    assert_string_equal(last, "");
    rd_kafka_conf_destroy(conf);
    pbtls_verifier_free(v);
    /* NULL-safe accessors. */
    pbtls_verifier_last_failure(NULL, last, sizeof last);
    assert_string_equal(last, "");
    assert_int_equal(pbtls_verifier_failures(NULL), 0);
    pbtls_verifier_free(NULL);
}

static void test_tls_apply_keystore_sets_keystore_properties(void **state) {
    (void)state;
    char err[512];
    pbtls_settings_t s = settings(NULL, NULL);
    s.keystore = P("client.p12");
    s.keystore_passphrase_file = P("pass.txt");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    pbtls_verifier_t *v = NULL;
    assert_int_equal(pbtls_apply(conf, &s, &v, err, sizeof err), 0);
    assert_conf(conf, "ssl.keystore.location", s.keystore);
    assert_conf(conf, "ssl.keystore.password", SECRET);
    assert_conf(conf, "security.protocol", "ssl");
    rd_kafka_conf_destroy(conf);
    pbtls_verifier_free(v);
}

static void test_tls_apply_bad_settings_fail_naming_key(void **state) {
    (void)state;
    char err[512];
    pbtls_verifier_t *v = (pbtls_verifier_t *)&err; /* must be reset to NULL */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    s.ca = NULL;
    assert_int_equal(pbtls_apply(conf, &s, &v, err, sizeof err), -1);
    assert_null(v);
    assert_contains(err, "tls.ca: not set");
    s = settings("predbridged.crt", "enc.key");
    s.key_passphrase_file = P("missing-pass.txt");
    assert_int_equal(pbtls_apply(conf, &s, &v, err, sizeof err), -1);
    assert_contains(err, "tls.key_passphrase_file '");
    assert_contains(err, "cannot open");
    s = settings(NULL, "predbridged.key");
    assert_int_equal(pbtls_apply(conf, &s, &v, err, sizeof err), -1);
    assert_contains(err, "tls.cert: not set");
    s = settings("predbridged.crt", "predbridged.key");
    s.pin_count = PBTLS_MAX_PINS + 1;
    assert_int_equal(pbtls_apply(conf, &s, &v, err, sizeof err), -1);
    assert_contains(err, "tls.pins");
    assert_int_equal(pbtls_apply(NULL, &s, &v, err, sizeof err), -1);
    rd_kafka_conf_destroy(conf);
}

/* ---- librdkafka against a local TLS server ---- */

typedef struct tserver {
    int lfd, port, stop[2];
    SSL_CTX *ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int attempts, ok, hello_seen, n_offered;
    int offered[16];
    char client_subject[512];
    char cipher[64]; /* negotiated in the last successful handshake */
} tserver_t;

static int hello_cb(SSL *ssl, int *al, void *arg) {
    tserver_t *t = arg;
    const unsigned char *ext;
    size_t len;
    (void)al;
    pthread_mutex_lock(&t->mu);
    t->hello_seen = 1;
    t->n_offered = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &ext, &len) && len >= 1 &&
        ext[0] + 1u <= len)
        for (size_t i = 1; i + 1 < (size_t)ext[0] + 1 && t->n_offered < 16; i += 2)
            t->offered[t->n_offered++] = ext[i] << 8 | ext[i + 1];
    else
        t->offered[t->n_offered++] = (int)SSL_client_hello_get0_legacy_version(ssl);
    pthread_mutex_unlock(&t->mu);
    return SSL_CLIENT_HELLO_SUCCESS;
}

static void *tserver_main(void *arg) {
    tserver_t *t = arg;
    for (;;) {
        struct pollfd p[2] = {{t->lfd, POLLIN, 0}, {t->stop[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[1].revents) break;
        int fd = accept4(t->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        struct timeval tv = {5, 0}; /* a stalled client must not hang the test */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        SSL *ssl = SSL_new(t->ctx);
        SSL_set_fd(ssl, fd);
        int r = SSL_accept(ssl);
        pthread_mutex_lock(&t->mu);
        t->attempts++;
        if (r == 1) {
            X509 *peer = SSL_get1_peer_certificate(ssl);
            t->ok++;
            if (peer)
                X509_NAME_oneline(X509_get_subject_name(peer), t->client_subject, sizeof t->client_subject);
            X509_free(peer);
            snprintf(t->cipher, sizeof t->cipher, "%s", SSL_get_cipher_name(ssl));
        }
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        SSL_free(ssl);
        close(fd);
        ERR_clear_error();
    }
    return NULL;
}

static void tserver_start(tserver_t *t, const char *chain, const char *key, int tls12_only) {
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(t->ctx);
    if (tls12_only) { /* explicit settings override the process's system_default */
        assert_int_equal(SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION), 1);
        assert_int_equal(SSL_CTX_set_max_proto_version(t->ctx, TLS1_2_VERSION), 1);
    }
    assert_int_equal(SSL_CTX_use_certificate_chain_file(t->ctx, chain), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(t->ctx, P("ca.crt"), NULL), 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_client_hello_cb(t->ctx, hello_cb, t);
    t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(t->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(t->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(t->lfd, 16), 0);
    assert_int_equal(getsockname(t->lfd, (struct sockaddr *)&sa, &sl), 0);
    t->port = ntohs(sa.sin_port);
    assert_int_equal(pipe2(t->stop, O_CLOEXEC), 0);
    assert_int_equal(pthread_create(&t->thread, NULL, tserver_main, t), 0);
}

static void tserver_stop(tserver_t *t) {
    assert_int_equal(write(t->stop[1], "x", 1), 1);
    pthread_join(t->thread, NULL);
    close(t->stop[0]);
    close(t->stop[1]);
    close(t->lfd);
    SSL_CTX_free(t->ctx);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

/* Waits (condition variable, 30 s deadline) until the server saw `attempts` handshakes, `ok` of
 * them successful. Returns 1 if reached. */
static int tserver_wait(tserver_t *t, int attempts, int ok) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30;
    int reached, rc = 0;
    pthread_mutex_lock(&t->mu);
    while (!(reached = t->attempts >= attempts && t->ok >= ok) && rc == 0)
        rc = pthread_cond_timedwait(&t->cv, &t->mu, &deadline);
    pthread_mutex_unlock(&t->mu);
    return reached;
}

/* librdkafka's log lines; the secret is looked for in every line as it arrives. */
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_log[1 << 16];
static size_t g_log_len;
static int g_log_secret;

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    (void)level;
    pthread_mutex_lock(&g_log_mu);
    if (strstr(buf, "Tr0ub4dor") || strstr(buf, "XYZZY")) g_log_secret = 1;
    int n = snprintf(g_log + g_log_len, sizeof g_log - g_log_len, "%s: %s\n", fac, buf);
    if (n > 0 && g_log_len + (size_t)n < sizeof g_log) g_log_len += (size_t)n;
    if (getenv("PBTLS_TEST_LOG")) fprintf(stderr, "rdkafka %s: %s\n", fac, buf); /* debugging aid */
    pthread_mutex_unlock(&g_log_mu);
}

/* What the verifier's TLS-change callback reported (under g_log_mu; it runs on a broker thread, where
 * cmocka may not fail a test). */
static int g_tls_calls;
static void *g_tls_ctx;
static pbtls_broker_tls_t g_tls_last;

static void tls_change_cb(void *ctx, const pbtls_broker_tls_t *entry) {
    pthread_mutex_lock(&g_log_mu);
    g_tls_calls++;
    g_tls_ctx = ctx;
    g_tls_last = *entry;
    pthread_mutex_unlock(&g_log_mu);
}

static void log_reset(void) {
    pthread_mutex_lock(&g_log_mu);
    g_log_len = 0;
    g_log[0] = '\0';
    g_log_secret = 0;
    g_tls_calls = 0;
    g_tls_ctx = NULL;
    memset(&g_tls_last, 0, sizeof g_tls_last);
    pthread_mutex_unlock(&g_log_mu);
}

/* Fails unless the verifier recorded no negotiated TLS parameters: it never accepted a broker. */
static void assert_no_broker_tls(pbtls_verifier_t *v) {
    pbtls_broker_tls_t b[1];
    assert_int_equal(pbtls_verifier_broker_tls(v, b, 1), 0);
    assert_int_equal(pbtls_verifier_tls_changes(v), 0);
    assert_int_equal(g_tls_calls, 0);
}

static int log_has(const char *needle) {
    pthread_mutex_lock(&g_log_mu);
    int found = strstr(g_log, needle) != NULL;
    pthread_mutex_unlock(&g_log_mu);
    return found;
}

/* How predbridge's callers are meant to hold their opaque (see tls.h). */
typedef struct app {
    pbtls_opaque_head_t tls; /* must be first */
    int other_state;
} app_t;
PBTLS_OPAQUE_HEAD_CHECK(app_t, tls);

/* A producer wired the way predbridge does it; bind=0 leaves the opaque unset. */
static rd_kafka_t *client_new(const pbtls_settings_t *s, app_t *app, int bind, int port, const char *debug,
                              pbtls_verifier_t **v, char *err, size_t errsize) {
    char bs[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(bs, sizeof bs, "localhost:%d", port);
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bs, err, errsize), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "broker.address.family", "v4", err, errsize), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.sparse.connections", "false", err, errsize),
                     RD_KAFKA_CONF_OK);
    if (debug) assert_int_equal(rd_kafka_conf_set(conf, "debug", debug, err, errsize), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    assert_int_equal(pbtls_apply(conf, s, v, err, errsize), 0);
    pbtls_verifier_on_tls_change(*v, tls_change_cb, &g_tls_calls);
    memset(app, 0, sizeof *app);
    if (bind) {
        pbtls_opaque_bind(&app->tls, *v);
        rd_kafka_conf_set_opaque(conf, app);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errsize);
    if (!rk) rd_kafka_conf_destroy(conf);
    return rk;
}

/* Connections of a client made with s (librdkafka debug contexts `debug`, may be NULL) to a server
 * presenting chain/key (tls12_only: a TLS 1.2-only server; suites: its only TLS 1.3 cipher suites, NULL
 * for OpenSSL's default), until the server saw `attempts` handshakes and `ok` successful ones (it
 * closes each connection after its handshake, so librdkafka reconnects); *t keeps what the server saw.
 * Returns the client's verifier (the caller frees it). */
static pbtls_verifier_t *handshakes(const pbtls_settings_t *s, const char *chain, const char *key,
                                    int tls12_only, const char *suites, int attempts, int ok,
                                    const char *debug, tserver_t *t) {
    app_t app;
    pbtls_verifier_t *v = NULL;
    char err[512];
    log_reset();
    tserver_start(t, chain, key, tls12_only);
    if (suites) assert_int_equal(SSL_CTX_set_ciphersuites(t->ctx, suites), 1);
    rd_kafka_t *rk = client_new(s, &app, 1, t->port, debug, &v, err, sizeof err);
    assert_non_null(rk);
    assert_true(tserver_wait(t, attempts, ok));
    rd_kafka_destroy(rk);
    tserver_stop(t);
    return v;
}

/* One connection, as handshakes. */
static pbtls_verifier_t *handshake(const pbtls_settings_t *s, const char *chain, const char *key,
                                   int tls12_only, int ok, const char *debug, tserver_t *t) {
    return handshakes(s, chain, key, tls12_only, NULL, 1, ok, debug, t);
}

static void test_tls_librdkafka_tls12_only_broker_offered_only_tls13(void **state) {
    (void)state;
    tserver_t t;
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    pbtls_verifier_t *v = handshake(&s, P("broker.pem"), P("broker.key"), 1, 0, NULL, &t);
    /* librdkafka's ClientHello offered TLS 1.3 and nothing else, so a 1.2-only server fails it. */
    assert_int_equal(t.hello_seen, 1);
    assert_int_equal(t.n_offered, 1);
    assert_int_equal(t.offered[0], TLS1_3_VERSION);
    assert_int_equal(t.ok, 0);
    assert_int_equal(pbtls_verifier_failures(v), 0); /* never got as far as a certificate */
    assert_no_broker_tls(v);
    pbtls_verifier_free(v);
}

static void test_tls_librdkafka_valid_broker_and_pin_handshake_succeeds(void **state) {
    (void)state;
    tserver_t t;
    char last[512];
    unsigned char *der;
    pbtls_settings_t s = settings("predbridged.crt", "enc.key");
    s.key_passphrase_file = P("pass.txt");
    memset(s.pins[0], 0x11, PBTLS_PIN_LEN); /* a rotated-out key first, then the broker's */
    int n = der_of(P("broker.crt"), &der);
    assert_int_equal(pbtls_spki_sha256_der(der, (size_t)n, s.pins[1]), 0);
    OPENSSL_free(der);
    s.pin_count = 2;
    /* debug=all: not even librdkafka's most verbose logging may show the passphrase. */
    pbtls_verifier_t *v = handshake(&s, P("broker.pem"), P("broker.key"), 0, 1, "all", &t);
    assert_int_equal(t.offered[0], TLS1_3_VERSION);
    assert_string_equal(t.client_subject, "/CN=predbridged/O=predbridge test"); /* our client cert went out */
    assert_int_equal(pbtls_verifier_failures(v), 0);
    pbtls_verifier_last_failure(v, last, sizeof last);
    assert_string_equal(last, "");
    assert_int_equal(g_log_secret, 0);
    /* (In TLS 1.3 the server completes once the client's Finished arrives, which the client sends
     * only after its verify callback accepted; librdkafka's own "verified" log line may come later.) */
    assert_true(log_has("ssl.key.password = [redacted]")); /* debug=all dumps the conf, redacted */
    pbtls_verifier_free(v);
}

/* A match on any pin is enough, wherever it is in the list: first before a backup, or between two. */
static void test_tls_librdkafka_pin_match_first_or_between_backups_accepted(void **state) {
    (void)state;
    unsigned char *der;
    uint8_t broker[PBTLS_PIN_LEN];
    int n = der_of(P("broker.crt"), &der);
    assert_int_equal(pbtls_spki_sha256_der(der, (size_t)n, broker), 0);
    OPENSSL_free(der);
    for (size_t at = 0; at < 2; at++) {
        tserver_t t;
        pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
        s.pin_count = at + 2; /* [broker, backup] then [backup, broker, backup] */
        for (size_t i = 0; i < s.pin_count; i++)
            memset(s.pins[i], 0x30 + (int)i, PBTLS_PIN_LEN);
        memcpy(s.pins[at], broker, PBTLS_PIN_LEN);
        pbtls_verifier_t *v = handshake(&s, P("broker.pem"), P("broker.key"), 0, 1, NULL, &t);
        assert_int_equal(t.ok, 1);
        assert_int_equal(pbtls_verifier_failures(v), 0);
        pbtls_verifier_free(v);
    }
}

/* Connects with s to a server presenting chain/key; returns the verifier's last failure. */
static void expect_refused(const pbtls_settings_t *s, const char *chain, const char *key, char *last,
                           size_t size) {
    tserver_t t;
    pbtls_verifier_t *v = handshake(s, chain, key, 0, 0, NULL, &t);
    assert_int_equal(t.ok, 0);
    assert_true(pbtls_verifier_failures(v) >= 1);
    pbtls_verifier_last_failure(v, last, size);
    assert_true(log_has(last)); /* librdkafka logged our cause as well */
    assert_no_secret(last);
    assert_no_broker_tls(v);
    pbtls_verifier_free(v);
}

static void test_tls_librdkafka_wrong_host_cert_fails_with_sans_cause(void **state) {
    (void)state;
    char last[2048];
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    expect_refused(&s, P("badhost-broker.pem"), P("badhost-broker.key"), last, sizeof last);
    assert_true(strstr(last, "broker localhost:") == last);
    assert_contains(last, ": certificate is for 'DNS:wrong.example.invalid', not 'localhost'");
}

static void test_tls_librdkafka_untrusted_broker_fails_with_cause(void **state) {
    (void)state;
    char last[2048];
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    expect_refused(&s, P("untrusted-broker.pem"), P("untrusted-broker.key"), last, sizeof last);
    assert_contains(last, "self-signed certificate in certificate chain");
    assert_contains(last, "certificate 'O=predbridge test,CN=untrusted test CA'");
    assert_contains(last, "tls.ca does not hold the CA that issued the broker's certificate");
}

static void test_tls_librdkafka_pin_mismatch_fails_with_pin_cause(void **state) {
    (void)state;
    char last[2048], want[200], text[PBTLS_PIN_TEXT_SIZE];
    unsigned char *der;
    uint8_t pin[PBTLS_PIN_LEN];
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    memset(s.pins[0], 0x22, PBTLS_PIN_LEN);
    s.pin_count = 1;
    expect_refused(&s, P("broker.pem"), P("broker.key"), last, sizeof last);
    int n = der_of(P("broker.crt"), &der);
    assert_int_equal(pbtls_spki_sha256_der(der, (size_t)n, pin), 0);
    OPENSSL_free(der);
    pbtls_pin_format(pin, text, sizeof text);
    snprintf(want, sizeof want, ": public key %s matches none of the 1 configured tls.pins", text);
    assert_contains(last, want);
}

/* The server allows only ChaCha20 (not OpenSSL's first choice), so the cipher the verifier reports
 * can only have come from the connection. Two handshakes with the same parameters: reported once. */
static void test_tls_librdkafka_verified_broker_records_negotiated_version_and_cipher_once(void **state) {
    (void)state;
    tserver_t t;
    char name[64];
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    pbtls_verifier_t *v =
        handshakes(&s, P("broker.pem"), P("broker.key"), 0, "TLS_CHACHA20_POLY1305_SHA256", 2, 2, NULL, &t);
    assert_string_equal(t.cipher, "TLS_CHACHA20_POLY1305_SHA256");
    pbtls_broker_tls_t b[4];
    assert_int_equal(pbtls_verifier_broker_tls(v, b, 4), 1);
    snprintf(name, sizeof name, "localhost:%d", t.port);
    assert_string_equal(b[0].broker, name);
    assert_string_equal(b[0].version, "TLSv1.3");
    assert_string_equal(b[0].cipher, "TLS_CHACHA20_POLY1305_SHA256");
    assert_int_equal(pbtls_verifier_broker_tls(v, b, 0), 0);
    assert_int_equal(pbtls_verifier_tls_changes(v), 1);
    assert_int_equal(g_tls_calls, 1);
    assert_ptr_equal(g_tls_ctx, &g_tls_calls);
    assert_memory_equal(&g_tls_last, &b[0], sizeof b[0]);
    assert_int_equal(pbtls_verifier_failures(v), 0);
    pbtls_verifier_free(v);
    /* Without a verifier there is nothing, and setting a callback is a no-op. */
    assert_int_equal(pbtls_verifier_broker_tls(NULL, b, 4), 0);
    assert_int_equal(pbtls_verifier_tls_changes(NULL), 0);
    pbtls_verifier_on_tls_change(NULL, tls_change_cb, NULL);
}

static void test_tls_crl_hint_only_for_crl_errors_names_what_to_fix(void **state) {
    (void)state;
    assert_contains(pbtls_crl_hint(X509_V_ERR_CERT_REVOKED), "tls.crl lists it as revoked");
    assert_contains(pbtls_crl_hint(X509_V_ERR_UNABLE_TO_GET_CRL), "tls.crl holds no CRL from the CA");
    assert_contains(pbtls_crl_hint(X509_V_ERR_CRL_HAS_EXPIRED), "past its next update");
    assert_contains(pbtls_crl_hint(X509_V_ERR_CRL_SIGNATURE_FAILURE), "cannot be used");
    assert_null(pbtls_crl_hint(X509_V_OK));
    assert_null(pbtls_crl_hint(X509_V_ERR_CERT_HAS_EXPIRED));
    assert_null(pbtls_crl_hint(X509_V_ERR_HOSTNAME_MISMATCH));
}

/* librdkafka enables CRL checking for ssl.crl.location, and the verifier turns the result into a cause
 * with both OpenSSL's reason and what to do. broker: "broker" or "revoked-broker" (.pem and .key). */
static void expect_crl_refusal(const char *crl, const char *broker, const char *reason, const char *hint) {
    char last[2048], chain[64], key[64];
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    s.crl = P(crl);
    snprintf(chain, sizeof chain, "%s.pem", broker);
    snprintf(key, sizeof key, "%s.key", broker);
    expect_refused(&s, P(chain), P(key), last, sizeof last);
    assert_contains(last, reason);
    assert_contains(last, hint);
}

static void test_tls_librdkafka_revoked_broker_fails_with_crl_cause(void **state) {
    (void)state;
    expect_crl_refusal("revoked.crl", "revoked-broker",
                       "certificate revoked (certificate 'O=predbridge test,CN=kafka-broker' issued by",
                       "at depth 0); tls.crl lists it as revoked by its CA: the broker needs a new "
                       "certificate");
}

static void test_tls_librdkafka_crl_of_another_ca_fails_naming_missing_crl(void **state) {
    (void)state;
    expect_crl_refusal("untrusted-ca.crl", "broker", "unable to get certificate CRL",
                       "tls.crl holds no CRL from the CA that issued it");
}

static void test_tls_librdkafka_crl_revoking_nothing_accepts_valid_broker(void **state) {
    (void)state;
    tserver_t t;
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    s.crl = P("empty.crl");
    pbtls_verifier_t *v = handshake(&s, P("broker.pem"), P("broker.key"), 0, 1, NULL, &t);
    assert_int_equal(t.ok, 1);
    assert_int_equal(pbtls_verifier_failures(v), 0);
    pbtls_verifier_free(v);
}

static void test_tls_librdkafka_unbound_opaque_fails_closed(void **state) {
    (void)state;
    tserver_t t;
    app_t app;
    pbtls_verifier_t *v = NULL;
    char err[512];
    log_reset();
    tserver_start(&t, P("broker.pem"), P("broker.key"), 0);
    pbtls_settings_t s = settings("predbridged.crt", "predbridged.key");
    rd_kafka_t *rk = client_new(&s, &app, 0, t.port, NULL, &v, err, sizeof err);
    assert_non_null(rk);
    assert_true(tserver_wait(&t, 1, 0));
    rd_kafka_destroy(rk);
    tserver_stop(&t);
    assert_int_equal(t.ok, 0); /* a valid broker, yet refused: no verifier, no trust */
    assert_true(log_has("predbridge's certificate verifier is not bound to this client"));
    pbtls_verifier_free(v);
}

static void test_tls_librdkafka_wrong_passphrase_error_has_no_secret(void **state) {
    (void)state;
    app_t app;
    pbtls_verifier_t *v = NULL;
    char err[512];
    log_reset();
    pbtls_settings_t s = settings("predbridged.crt", "enc.key");
    s.key_passphrase_file = P("wrongpass.txt");
    rd_kafka_t *rk = client_new(&s, &app, 1, 9 /* never contacted */, "security", &v, err, sizeof err);
    assert_null(rk); /* librdkafka loads the key in rd_kafka_new */
    assert_no_secret(err);
    assert_contains(err, "ssl.key.location");
    assert_int_equal(g_log_secret, 0);
    pbtls_verifier_free(v);
}

/* Certificate names reach logs, metrics and JSON: control characters become '?', bytes that are
 * not UTF-8 become U+FFFD, and a cut never splits a character. */
static void test_tls_certificate_names_are_copied_as_valid_utf8(void **state) {
    (void)state;
    char out[64];
    const char name[] = "CN=\xff\x01x\xc3\xa9";
    pbtlsi_copy_clean(out, sizeof out, name, sizeof name - 1);
    assert_string_equal(out, "CN=\xEF\xBF\xBD?x\xc3\xa9");
    pbtlsi_copy_clean(out, 10, name, sizeof name - 1); /* room for "CN=" U+FFFD "?x" and half of the e */
    assert_string_equal(out, "CN=\xEF\xBF\xBD?x");
    pbtlsi_copy_clean(out, sizeof out, "CN=a\0b", 6); /* a NUL ends the name */
    assert_string_equal(out, "CN=a");
}

int main(int argc, char **argv) {
    const char *mode = getenv("PBTLS_TEST_CHILD");
    if (mode) return child_main(mode);
    if (argc < 1 || !realpath(argv[0], g_self)) snprintf(g_self, sizeof g_self, "/proc/self/exe");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_certificate_names_are_copied_as_valid_utf8),
        cmocka_unit_test(test_tls_policy_init_new_contexts_min_tls13),
        cmocka_unit_test(test_tls_policy_hostile_openssl_conf_still_tls13),
        cmocka_unit_test(test_tls_policy_reloaded_weaker_config_verify_fails),
        cmocka_unit_test(test_tls_policy_doc_copy_matches_compiled_text),
        cmocka_unit_test(test_tls_pin_prefixed_and_bare_valid_parse),
        cmocka_unit_test(test_tls_pin_format_roundtrip_matches),
        cmocka_unit_test(test_tls_pin_malformed_rejected_with_reason),
        cmocka_unit_test(test_tls_spki_pin_equals_openssl_cli_pipeline),
        cmocka_unit_test(test_tls_spki_garbage_der_fails),
        cmocka_unit_test(test_tls_describe_pem_and_der_same_info),
        cmocka_unit_test(test_tls_material_valid_client_passes_with_info),
        cmocka_unit_test(test_tls_material_group_readable_key_warns_chmod),
        cmocka_unit_test(test_tls_material_mismatched_key_names_both_files),
        cmocka_unit_test(test_tls_material_untrusted_ca_fails_naming_cert),
        cmocka_unit_test(test_tls_material_expired_cert_fails_with_dates),
        cmocka_unit_test(test_tls_material_notyet_cert_fails_with_dates),
        cmocka_unit_test(test_tls_material_no_client_auth_eku_fails),
        cmocka_unit_test(test_tls_material_expiring_soon_warns_with_date),
        cmocka_unit_test(test_tls_material_ca_expiring_soon_warns),
        cmocka_unit_test(test_tls_material_expired_ca_valid_leaf_fails_naming_ca),
        cmocka_unit_test(test_tls_material_encrypted_key_right_passphrase_passes),
        cmocka_unit_test(test_tls_material_encrypted_key_wrong_passphrase_fails_without_secret),
        cmocka_unit_test(test_tls_material_encrypted_key_no_passphrase_fails_with_hint),
        cmocka_unit_test(test_tls_material_keystore_right_passphrase_passes),
        cmocka_unit_test(test_tls_material_keystore_wrong_passphrase_fails_without_secret),
        cmocka_unit_test(test_tls_material_bad_settings_fail_naming_key),
        cmocka_unit_test(test_tls_material_revoked_cert_fails_stale_crl_warns),
        cmocka_unit_test(test_tls_apply_sets_librdkafka_security_properties),
        cmocka_unit_test(test_tls_apply_keystore_sets_keystore_properties),
        cmocka_unit_test(test_tls_apply_bad_settings_fail_naming_key),
        cmocka_unit_test(test_tls_librdkafka_tls12_only_broker_offered_only_tls13),
        cmocka_unit_test(test_tls_librdkafka_valid_broker_and_pin_handshake_succeeds),
        cmocka_unit_test(test_tls_librdkafka_wrong_host_cert_fails_with_sans_cause),
        cmocka_unit_test(test_tls_librdkafka_untrusted_broker_fails_with_cause),
        cmocka_unit_test(test_tls_librdkafka_pin_mismatch_fails_with_pin_cause),
        cmocka_unit_test(test_tls_librdkafka_pin_match_first_or_between_backups_accepted),
        cmocka_unit_test(test_tls_librdkafka_verified_broker_records_negotiated_version_and_cipher_once),
        cmocka_unit_test(test_tls_crl_hint_only_for_crl_errors_names_what_to_fix),
        cmocka_unit_test(test_tls_librdkafka_revoked_broker_fails_with_crl_cause),
        cmocka_unit_test(test_tls_librdkafka_crl_of_another_ca_fails_naming_missing_crl),
        cmocka_unit_test(test_tls_librdkafka_crl_revoking_nothing_accepts_valid_broker),
        cmocka_unit_test(test_tls_librdkafka_unbound_opaque_fails_closed),
        cmocka_unit_test(test_tls_librdkafka_wrong_passphrase_error_has_no_secret),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
