/*
 * emailsession-send: what the tool's parts share. Every string in these structures is malloc'ed
 * and owned by the structure; the functions that fail print why on stderr themselves and return
 * the process's exit code (sysexits.h), so that main only passes it on.
 */
#ifndef CLI_H
#define CLI_H

#include <stdbool.h>
#include <stddef.h>

#define CLI_NAME "emailsession-send"

/* A growable list of strings. */
typedef struct strv {
    char **v;
    size_t n, cap;
} strv_t;

/* Appends a copy of s (0, or -1 when out of memory). */
int strv_push(strv_t *l, const char *s);
/* Appends a copy of the n bytes at s. */
int strv_pushn(strv_t *l, const char *s, size_t n);
bool strv_contains(const strv_t *l, const char *s);
void strv_free(strv_t *l);

/* Security values of --security and of the account file: EMAIL_SECURITY_..., -1 when unset. */
int cli_parse_security(const char *word);

/* What an account (or the command line, which wins) says about the server and the sender. */
typedef struct cli_settings {
    char *host, *user, *password, *passwordeval, *from, *ca_file, *helo;
    char *outbox;       /* the outbox's folder (--queue, --flush, --list) */
    int port;           /* -1: unset */
    int security;       /* -1: unset */
    char *password_at;  /* "file:line" of password or passwordeval, for messages */
} cli_settings_t;

void cli_settings_init(cli_settings_t *s);
void cli_settings_free(cli_settings_t *s);
/* Fills what dst leaves unset from src (copies). 0, or EX_OSERR. */
int cli_settings_merge(cli_settings_t *dst, const cli_settings_t *src);

enum { CLI_SEND = 0, CLI_HELP, CLI_VERSION, CLI_FLUSH, CLI_LIST };

typedef struct cli_options {
    int action;                    /* CLI_SEND, CLI_HELP, CLI_VERSION, CLI_FLUSH, CLI_LIST */
    cli_settings_t set;            /* --server ... --password as given on the command line */
    char *password_file, *password_env;
    int password_options;          /* how many of --password, --password-file, --password-env */
    char *account, *config;
    strv_t to, cc, bcc, attach;    /* as given (comma lists kept whole) */
    strv_t recipients;             /* the arguments: envelope recipients */
    char *subject, *body, *body_file, *message_file;
    char *envelope_from;           /* -f */
    char *full_name;               /* -F */
    bool read_headers;             /* -t */
    bool ignore_dots;              /* -i, -oi */
    bool verbose, dry_run;
    bool queue;                    /* --queue: into the outbox, sent by a later --flush */
    int unknown_flags;             /* --resend-unknown, --drop-unknown: EMAIL_OUTBOX_... */
    bool compose;                  /* --subject, --body, --body-file or --attach given */
} cli_options_t;

/* Prints "emailsession-send: " and the formatted text on stderr, then returns code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads a whole file ("-" is stdin) into a NUL-terminated buffer; EX_NOINPUT naming it. */
int cli_read_file(const char *path, char **data, size_t *len);

#endif
