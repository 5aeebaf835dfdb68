/* tls_pin.c: SHA-256 pins of a broker's public key (SPKI), as curl's --pinnedpubkey sha256//. */
#include "common/tls_internal.h"

/* ---- pins ---- */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict base64 of exactly 32 bytes: standard alphabet, canonical, padded, nothing else. A lenient
 * decoder would let two spellings of one pin differ, or accept a pasted line break silently. */
static int pin_decode(const char *s, uint8_t out[PBTLS_PIN_LEN], char *errstr, size_t errstr_size) {
    size_t n = strlen(s), pad = 0;
    if (n == 0) {
        seterr(errstr, errstr_size, "empty pin: expected sha256// followed by 44 base64 characters");
        return -1;
    }
    if (n == 64 && strspn(s, "0123456789abcdefABCDEF") == 64) {
        seterr(errstr, errstr_size,
               "pin is hex; pins are base64 of the 32-byte SHA-256 (openssl x509 -in CERT -pubkey -noout | "
               "openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') {
            continue; /* placement checked below, once the text is known to be base64 at all */
        } else if (isspace(c)) {
            seterr(errstr, errstr_size, "whitespace at offset %zu of the pin: remove spaces and line breaks",
                   i);
            return -1;
        } else if (c == '-' || c == '_') {
            seterr(errstr, errstr_size,
                   "URL-safe base64 character '%c' at offset %zu of the pin: use standard base64 ('+', '/')",
                   c, i);
            return -1;
        } else if (c == ';' || c == ',') {
            seterr(errstr, errstr_size, "'%c' at offset %zu of the pin: give one pin per entry", c, i);
            return -1;
        } else if (b64_value(c) < 0) {
            if (isprint(c))
                seterr(errstr, errstr_size, "invalid base64 character '%c' at offset %zu of the pin", c, i);
            else
                seterr(errstr, errstr_size, "invalid byte 0x%02x at offset %zu of the pin", c, i);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=' && (i + 2 < n || (i + 2 == n && s[n - 1] != '='))) {
            seterr(errstr, errstr_size, "'=' at offset %zu of the pin: base64 padding may only end it", i);
            return -1;
        }
    }
    if (n % 4 != 0) {
        seterr(errstr, errstr_size, "pin has %zu base64 characters; a SHA-256 pin has 44, ending in '='", n);
        return -1;
    }
    pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    if (n / 4 * 3 - pad != PBTLS_PIN_LEN) {
        seterr(errstr, errstr_size, "pin decodes to %zu bytes; a SHA-256 pin has %d (44 base64 characters)",
               n / 4 * 3 - pad, PBTLS_PIN_LEN);
        return -1;
    }
    /* Here n == 44 and pad == 1: 43 data characters carry 258 bits, the last 2 must be zero. */
    if (b64_value((unsigned char)s[n - 2]) & 0x3) {
        seterr(errstr, errstr_size, "pin is not canonical base64: unused bits of its last character are set");
        return -1;
    }
    uint8_t buf[PBTLS_PIN_LEN + 2];
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = s[i + k] == '=' ? 0 : b64_value((unsigned char)s[i + k]);
            v = (v << 6) | (uint32_t)d;
        }
        buf[o++] = (uint8_t)(v >> 16);
        buf[o++] = (uint8_t)(v >> 8);
        buf[o++] = (uint8_t)v;
    }
    memcpy(out, buf, PBTLS_PIN_LEN);
    return 0;
}

/* Hash names people write in pins (curl knows only sha256//). Matched case-insensitively before the
 * first "//"; anything else is read as bare base64, whose alphabet contains '/' too. */
static const char *const pbtls_hash_names[] = {"md5",     "sha1",     "sha-1",    "sha224",   "sha-224",
                                               "sha256",  "sha-256",  "sha384",   "sha-384",  "sha512",
                                               "sha-512", "sha3-256", "sha3-384", "sha3-512", NULL};

int pbtls_pin_parse(const char *text, uint8_t out[PBTLS_PIN_LEN], char *errstr, size_t errstr_size) {
    if (!text || !out) {
        seterr(errstr, errstr_size, "empty pin: expected sha256// followed by 44 base64 characters");
        return -1;
    }
    if (strncmp(text, "sha256//", 8) == 0) return pin_decode(text + 8, out, errstr, errstr_size);
    const char *sep = strstr(text, "//");
    if (sep) {
        size_t len = (size_t)(sep - text);
        for (size_t i = 0; pbtls_hash_names[i]; i++) {
            if (strlen(pbtls_hash_names[i]) != len || strncasecmp(text, pbtls_hash_names[i], len) != 0)
                continue;
            if (!strcasecmp(pbtls_hash_names[i], "sha256") || !strcasecmp(pbtls_hash_names[i], "sha-256"))
                seterr(errstr, errstr_size,
                       "pin prefix '%.*s//': write it as 'sha256//' (lower case, no dash)", (int)len, text);
            else
                seterr(
                    errstr, errstr_size,
                    "unsupported hash '%.*s' in pin: only sha256// (SHA-256 of the public key) is supported",
                    (int)len, text);
            return -1;
        }
    }
    return pin_decode(text, out, errstr, errstr_size);
}

void pbtls_pin_format(const uint8_t pin[PBTLS_PIN_LEN], char *out, size_t out_size) {
    unsigned char b64[4 * ((PBTLS_PIN_LEN + 2) / 3) + 1];
    if (!out || out_size == 0) return;
    EVP_EncodeBlock(b64, pin, PBTLS_PIN_LEN);
    snprintf(out, out_size, "sha256//%s", (const char *)b64);
}

int pbtlsi_spki_sha256(const X509 *x, uint8_t out[PBTLS_PIN_LEN]) {
    unsigned char *der = NULL;
    const X509_PUBKEY *pk = X509_get_X509_PUBKEY(x);
    int n = pk ? i2d_X509_PUBKEY(pk, &der) : -1;
    if (n <= 0) return -1;
    int ok = EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL);
    OPENSSL_free(der);
    return ok == 1 ? 0 : -1;
}

/* Exactly one DER certificate filling [der, der+len). */
X509 *pbtlsi_x509_from_der(const unsigned char *der, size_t len) {
    const unsigned char *p = der;
    if (!der || len == 0 || len > (size_t)LONG_MAX) return NULL;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x && p != der + len) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

int pbtls_spki_sha256_der(const unsigned char *der, size_t len, uint8_t out[PBTLS_PIN_LEN]) {
    ERR_set_mark();
    X509 *x = pbtlsi_x509_from_der(der, len);
    int rc = x ? pbtlsi_spki_sha256(x, out) : -1;
    X509_free(x);
    ERR_pop_to_mark();
    return rc;
}
