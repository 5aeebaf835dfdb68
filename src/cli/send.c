/* send.c: `predbridge send`: writes NDJSON predictions into predbridged's socket and, with --ack,
 * reports what became of each line. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/predbridge/predbridged.sock"

static void usage(FILE *f) {
    fprintf(f,
            "usage: predbridge send [--socket PATH] [--ack accepted|delivered] [--quiet] [FILE...]\n"
            "\n"
            "Writes predictions, one JSON object per line, from the FILEs (or standard input) into\n"
            "predbridged's socket.\n"
            "\n"
            "  -s, --socket PATH   the daemon's socket (default $PREDBRIDGE_SOCKET or " DEFAULT_SOCKET ")\n"
            "  -a, --ack MODE      ask for one reply per line and print it as a JSON line:\n"
            "                        accepted   the daemon took the line (validated, queued)\n"
            "                        delivered  Kafka acknowledged it (acks=all)\n"
            "                      exits 1 if any line was rejected or failed\n"
            "  -q, --quiet         with --ack: print only rejected and failed lines\n"
            "\n"
            "Without --ack nothing is reported back (fire-and-forget): exit 0 means every byte\n"
            "reached the socket, not that every line was valid.\n"
            "Exit codes: 0 success, 1 a line was rejected or failed or the daemon went away, 2 usage.\n");
}

typedef struct sender {
    int fd;
    int ack;
    int quiet;
    /* input */
    FILE **inputs;
    const char **names;
    int n_inputs, cur;
    char buf[65536];
    size_t buf_len, buf_off;
    int last_was_newline;
    int input_done;
    /* replies */
    char rbuf[65536];
    size_t rlen;
    unsigned long lines_sent;
    unsigned long ok, rejected, failed, replies;
    int ready;
} sender_t;

/* Counts lines the daemon will answer: non-empty ones (a CR alone counts as empty). */
static void count_lines(sender_t *s, const char *p, size_t n) {
    static int in_line;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            in_line = 0;
        } else if (p[i] != '\r' && !in_line) {
            in_line = 1;
            s->lines_sent++;
        }
    }
}

/* Refills buf from the inputs; inserts a newline between files that lack a final one. */
static int fill(sender_t *s) {
    while (s->buf_off == s->buf_len && !s->input_done) {
        if (s->cur >= s->n_inputs) {
            s->input_done = 1;
            return 0;
        }
        size_t n = fread(s->buf, 1, sizeof s->buf, s->inputs[s->cur]);
        if (n > 0) {
            s->buf_len = n;
            s->buf_off = 0;
            s->last_was_newline = s->buf[n - 1] == '\n';
            count_lines(s, s->buf, n);
            return 0;
        }
        if (ferror(s->inputs[s->cur])) {
            fprintf(stderr, "predbridge send: reading %s: %s\n", s->names[s->cur], strerror(errno));
            return -1;
        }
        s->cur++;
        if (!s->last_was_newline && s->cur < s->n_inputs) {
            s->buf[0] = '\n';
            s->buf_len = 1;
            s->buf_off = 0;
            s->last_was_newline = 1;
            count_lines(s, s->buf, 1);
        }
    }
    return 0;
}

static void handle_reply(sender_t *s, const char *line, size_t len) {
    json_error_t jerr;
    json_t *o = json_loadb(line, len, 0, &jerr);
    const char *status = o ? json_string_value(json_object_get(o, "status")) : NULL;
    if (!status) {
        fprintf(stderr, "predbridge send: unexpected reply from the daemon: %.*s\n", (int)len, line);
        s->failed++;
        json_decref(o);
        return;
    }
    if (!strcmp(status, "ready")) {
        s->ready = 1;
    } else {
        s->replies++;
        int bad = !strcmp(status, "rejected") || !strcmp(status, "failed");
        if (!strcmp(status, "rejected")) s->rejected++;
        else if (!strcmp(status, "failed")) s->failed++;
        else s->ok++;
        if (!s->quiet || bad) {
            fwrite(line, 1, len, stdout);
            fputc('\n', stdout);
        }
    }
    json_decref(o);
}

static int read_replies(sender_t *s) {
    for (;;) {
        ssize_t n = recv(s->fd, s->rbuf + s->rlen, sizeof s->rbuf - s->rlen, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n < 0) return -1;
        if (n == 0) return 1; /* the daemon closed: all replies are in */
        s->rlen += (size_t)n;
        char *start = s->rbuf, *nl;
        while ((nl = memchr(start, '\n', s->rlen - (size_t)(start - s->rbuf)))) {
            handle_reply(s, start, (size_t)(nl - start));
            start = nl + 1;
        }
        s->rlen -= (size_t)(start - s->rbuf);
        memmove(s->rbuf, start, s->rlen);
        if (s->rlen == sizeof s->rbuf) {
            fprintf(stderr, "predbridge send: a reply longer than %zu bytes\n", sizeof s->rbuf);
            return -1;
        }
    }
}

static int connect_socket(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "predbridge send: socket path too long: %s\n", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "predbridge send: cannot connect to %s: %s (is predbridged running, and may you write to it?)\n",
                path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int write_all_blocking(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int pbcli_send(int argc, char **argv) {
    const char *socket_path = getenv("PREDBRIDGE_SOCKET");
    if (!socket_path || !*socket_path) socket_path = DEFAULT_SOCKET;
    sender_t *s = calloc(1, sizeof *s);
    int rc = 1;
    if (!s) return 1;
    s->fd = -1;
    s->last_was_newline = 1;
    static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"ack", required_argument, NULL, 'a'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "s:a:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 's': socket_path = optarg; break;
        case 'a':
            if (!strcmp(optarg, "accepted")) s->ack = 1;
            else if (!strcmp(optarg, "delivered")) s->ack = 2;
            else {
                fprintf(stderr, "predbridge send: --ack takes 'accepted' or 'delivered', not '%s'\n", optarg);
                rc = 2;
                goto out;
            }
            break;
        case 'q': s->quiet = 1; break;
        case 'h': usage(stdout); rc = 0; goto out;
        default: usage(stderr); rc = 2; goto out;
        }
    }
    int n_files = argc - optind;
    s->inputs = calloc((size_t)(n_files ? n_files : 1), sizeof *s->inputs);
    s->names = calloc((size_t)(n_files ? n_files : 1), sizeof *s->names);
    if (!s->inputs || !s->names) goto out;
    if (n_files == 0) {
        s->inputs[0] = stdin;
        s->names[0] = "standard input";
        s->n_inputs = 1;
    }
    for (int i = 0; i < n_files; i++) {
        const char *name = argv[optind + i];
        FILE *f = !strcmp(name, "-") ? stdin : fopen(name, "rb");
        if (!f) {
            fprintf(stderr, "predbridge send: cannot open %s: %s\n", name, strerror(errno));
            goto out;
        }
        s->inputs[s->n_inputs] = f;
        s->names[s->n_inputs++] = name;
    }
    s->fd = connect_socket(socket_path);
    if (s->fd < 0) goto out;

    if (!s->ack) {
        /* Fire-and-forget: stream the bytes. */
        for (;;) {
            if (fill(s) != 0) goto out;
            if (s->input_done) break;
            if (write_all_blocking(s->fd, s->buf + s->buf_off, s->buf_len - s->buf_off) != 0) {
                fprintf(stderr, "predbridge send: writing to %s: %s\n", socket_path, strerror(errno));
                goto out;
            }
            s->buf_off = s->buf_len;
        }
        if (!s->last_was_newline) (void)write_all_blocking(s->fd, "\n", 1);
        rc = 0;
        goto out;
    }

    const char *hello = s->ack == 1 ? "{\"ack\":\"accepted\"}\n" : "{\"ack\":\"delivered\"}\n";
    if (write_all_blocking(s->fd, hello, strlen(hello)) != 0) {
        fprintf(stderr, "predbridge send: writing to %s: %s\n", socket_path, strerror(errno));
        goto out;
    }
    fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
    int shut = 0, closed = 0;
    while (!closed) {
        if (!shut) {
            if (fill(s) != 0) goto out;
            if (s->input_done && s->buf_off == s->buf_len) {
                if (!s->last_was_newline) {
                    s->buf[0] = '\n';
                    s->buf_len = 1;
                    s->buf_off = 0;
                    s->last_was_newline = 1;
                } else {
                    shutdown(s->fd, SHUT_WR);
                    shut = 1;
                }
            }
        }
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN | (shut ? 0 : POLLOUT)};
        if (poll(&pfd, 1, -1) < 0) {
            if (errno == EINTR) continue;
            goto out;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = read_replies(s);
            if (r < 0) {
                fprintf(stderr, "predbridge send: reading replies: %s\n", strerror(errno));
                goto out;
            }
            closed = r == 1;
        }
        if (!shut && (pfd.revents & POLLOUT) && s->buf_off < s->buf_len) {
            ssize_t w = send(s->fd, s->buf + s->buf_off, s->buf_len - s->buf_off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) s->buf_off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                fprintf(stderr, "predbridge send: writing to %s: %s\n", socket_path, strerror(errno));
                goto out;
            }
        }
    }
    fflush(stdout);
    unsigned long missing = s->lines_sent > s->replies ? s->lines_sent - s->replies : 0;
    fprintf(stderr, "predbridge send: %lu lines: %lu %s, %lu rejected, %lu failed%s", s->lines_sent, s->ok,
            s->ack == 1 ? "accepted" : "delivered", s->rejected, s->failed, missing ? "" : "\n");
    if (missing) fprintf(stderr, ", %lu without a reply (the daemon stopped?)\n", missing);
    if (!s->ready) fprintf(stderr, "predbridge send: the daemon did not confirm acknowledgement mode\n");
    rc = (s->rejected || s->failed || missing || !s->ready) ? 1 : 0;
out:
    if (s->fd >= 0) close(s->fd);
    for (int i = 0; i < s->n_inputs; i++)
        if (s->inputs[i] && s->inputs[i] != stdin) fclose(s->inputs[i]);
    free(s->inputs);
    free(s->names);
    free(s);
    return rc;
}
