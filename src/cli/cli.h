/* cli.h: subcommands of the predbridge command-line tool. */
#ifndef PB_CLI_H
#define PB_CLI_H

/* Each returns the process exit code: 0 success, 1 failure of the job, 2 usage error. */
int pbcli_send(int argc, char **argv);
int pbcli_check(int argc, char **argv);
int pbcli_tail(int argc, char **argv);

#endif
