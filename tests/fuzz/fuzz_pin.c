/* fuzz_pin.c: libFuzzer target for pbtls_pin_parse (tls.pins entries come from config files): it must
 * never crash, always explain a refusal, leave errstr terminated, and round-trip what it accepts. */
#include "common/tls.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* the parser takes C strings: an embedded NUL just ends the text early */

    uint8_t pin[PBTLS_PIN_LEN], again[PBTLS_PIN_LEN];
    char err[512], tiny[2], formatted[PBTLS_PIN_TEXT_SIZE];
    memset(err, 'x', sizeof err);
    int rc = pbtls_pin_parse(text, pin, err, sizeof err);
    if (rc == 0) {
        pbtls_pin_format(pin, formatted, sizeof formatted);
        if (strlen(formatted) != 52 || pbtls_pin_parse(formatted, again, err, sizeof err) != 0 ||
            memcmp(pin, again, PBTLS_PIN_LEN) != 0)
            abort();
        /* Accepted text is canonical: it is the formatted pin, with or without its prefix. */
        if (strcmp(text, formatted) != 0 && strcmp(text, formatted + 8) != 0) abort();
    } else if (rc != -1 || !memchr(err, '\0', sizeof err) || err[0] == '\0') {
        abort();
    }
    /* Tiny and absent error buffers must be safe too, and give the same verdict. */
    if (pbtls_pin_parse(text, again, tiny, sizeof tiny) != rc || pbtls_pin_parse(text, again, NULL, 0) != rc)
        abort();
    free(text);
    return 0;
}
