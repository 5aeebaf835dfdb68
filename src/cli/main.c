/* main.c: the predbridge command-line tool. */
#include <predbridge/version.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("predbridge %s\n", pb_version_str());
        return 0;
    }
    fprintf(stderr, "predbridge: not yet usable\n");
    return 2;
}
