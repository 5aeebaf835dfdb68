/* main.c: the predbridge command-line tool: dispatches to its subcommands. */
#include "cli.h"

#include <predbridge/version.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: predbridge <command> [options]\n"
            "\n"
            "commands:\n"
            "  send      write predictions (NDJSON) into predbridged's socket, optionally with acknowledgements\n"
            "  check     diagnose a config: certificates, key, chain, pins, live TLS handshake, ACLs\n"
            "  tail      consume verified predictions from Kafka and print them as JSON lines\n"
            "\n"
            "Run 'predbridge <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "send")) return pbcli_send(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return pbcli_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "tail")) return pbcli_tail(argc - 1, argv + 1);
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("predbridge %s\n", pb_version_str());
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "predbridge: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
