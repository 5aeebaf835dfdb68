/* version.c: run-time version of predbridge. */
#include <predbridge/version.h>

int pb_version(void) {
    return PB_VERSION;
}

const char *pb_version_str(void) {
    return PB_VERSION_STRING;
}
