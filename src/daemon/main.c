/* main.c: predbridged's command line; the only place that decides to exit. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("predbridged %s\n", PB_VERSION_STRING);
        return 0;
    }
    fprintf(stderr, "predbridged: not yet usable\n");
    return 2;
}
