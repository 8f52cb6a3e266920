/*
 * emailsession-send, the built tool run as a user would, against aiosmtpd (tests/servers/
 * smtpd.py) and the scripted server on 127.0.0.1: each exit code with the message printed,
 * sendmail's interface (-t with Bcc, -f, -i, recipients as arguments), attachments, --dry-run,
 * the account file (found through XDG_CONFIG_HOME, refused when others may read its password,
 * passwordeval), the password's sources and its masking in the -v log; the outbox (--queue,
 * --flush, --list, the unknown-outcome flags); through a pseudo-terminal, the password prompt
 * (no echo) and the progress bar.
 *
 * Under make check-valgrind the tool itself runs under valgrind too (its leaks and errors make
 * it exit 99, which no test expects).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>
#include <cmocka.h>

#include "emailsession.h"
#include "harness.h"
#include "harness_email.h"
#include "server_asserts.h"

/* The group's folder: certificates, the fake home, inputs and outputs of each run. */
static char *workdir;

static const char *wpath(const char *name)
{
    static char bufs[8][600];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", workdir, name);
    return b;
}

/* What a run of the tool gave. */
typedef struct run {
    int status; /* its exit status, or 128 + signal */
    char *out, *err;
} run_t;

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

/* The child's last step: the tool with args (under valgrind when we are). */
static void exec_argv(const char *const *args)
{
    const char *build = getenv("EMAIL_TEST_BUILDDIR");
    char tool[1024], libtool[1024];
    snprintf(tool, sizeof tool, "%s/bindings/cli/emailsession-send", build ? build : ".");
    snprintf(libtool, sizeof libtool, "%s/libtool", build ? build : ".");
    const char *argv[64];
    size_t n = 0;
    if (test_under_valgrind()) {
        const char *vg[] = {libtool, "--mode=execute", "valgrind", "--quiet",
                            "--error-exitcode=99", "--leak-check=full",
                            "--errors-for-leak-kinds=definite,indirect"};
        for (size_t i = 0; i < sizeof vg / sizeof *vg; i++)
            argv[n++] = vg[i];
    }
    argv[n++] = tool;
    for (size_t i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    execv(argv[0], (char *const *)argv);
    _exit(121);
}

/* The child's side: environment, descriptors, then the tool. */
static void exec_tool(const char *input, const char *const *env, const char *const *args)
{
    setenv("HOME", wpath("home"), 1);
    setenv("XDG_CONFIG_HOME", wpath("xdg"), 1);
    for (size_t i = 0; env && env[i]; i += 2)
        setenv(env[i], env[i + 1], 1);
    int in = open(input ? wpath("stdin") : "/dev/null", O_RDONLY);
    int out = open(wpath("stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(wpath("stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(120);
    exec_argv(args);
}

/* Runs the tool with args (NULL-terminated), input on its standard input (NULL: /dev/null),
 * and env ("NAME", "VALUE" pairs, NULL-terminated; may be NULL). */
static void run_tool(run_t *r, const char *input, const char *const *env,
                     const char *const *args)
{
    if (input)
        assert_int_equal(test_write_file(wpath("stdin"), input, strlen(input)), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        exec_tool(input, env, args);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r->out = test_read_file(wpath("stdout"), NULL);
    r->err = test_read_file(wpath("stderr"), NULL);
    assert_non_null(r->out);
    assert_non_null(r->err);
}

/* The run ended with want, and its stderr holds each of the NULL-terminated texts. */
static void assert_run(const run_t *r, int want, ...)
{
    if (r->status != want)
        fail_msg("exit status %d, want %d; stderr:\n%s", r->status, want, r->err);
    va_list ap;
    va_start(ap, want);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(r->err, s))
            fail_msg("stderr lacks \"%s\":\n%s", s, r->err);
    va_end(ap);
}

static const char *port_arg(const test_server_t *s)
{
    static char buf[16];
    snprintf(buf, sizeof buf, "%d", s->port);
    return buf;
}

#define PLAIN(s) "--server", "127.0.0.1", "--port", port_arg(s), "--security", "none"

static const char simple_input[] = "From: a@example.org\nTo: b@example.org\nSubject: hi\n\n"
                                   "Hello.\n";

static char *spooled(const test_server_t *s, const char *ext)
{
    assert_int_equal(test_spool_wait(s, 1, 5000), 1);
    char *v = test_spool_read(s, 1, ext, NULL);
    assert_non_null(v);
    return v;
}

/* ---- exit codes ---------------------------------------------------------------------------- */

static void test_usage(void **state)
{
    run_t r;
    const char *bogus[] = {"--no-such-option", NULL};
    run_tool(&r, NULL, NULL, bogus);
    assert_run(&r, EX_USAGE, "--no-such-option", NULL);
    run_free(&r);
    const char *port[] = {"--server", "127.0.0.1", "--port", "99999", "x@example.org", NULL};
    run_tool(&r, simple_input, NULL, port);
    assert_run(&r, EX_USAGE, "--port 99999", NULL);
    run_free(&r);
    const char *norcpt[] = {"--server", "127.0.0.1", NULL};
    run_tool(&r, simple_input, NULL, norcpt);
    assert_run(&r, EX_USAGE, "no recipient", NULL);
    run_free(&r);
    const char *help[] = {"--help", NULL};
    run_tool(&r, NULL, NULL, help);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "  74  unknown outcome"));
    run_free(&r);
}

static void test_unreachable(void **state)
{
    char port[16];
    snprintf(port, sizeof port, "%d", test_dead_port());
    const char *args[] = {"--server", "127.0.0.1", "--port", port, "--security", "none",
                          "b@example.org", NULL};
    run_t r;
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_NOHOST, "could not connect", NULL);
    run_free(&r);
}

static void test_tls_untrusted(void **state)
{
    test_server_t s;
    const char *sargs[] = {"--tls", wpath("good.pem"), wpath("good.key"), NULL};
    start_smtpd(&s, sargs);
    const char *args[] = {"--server", "127.0.0.1", "--port", port_arg(&s), "--security", "tls",
                          "b@example.org", NULL};
    run_t r;
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_PROTOCOL, "not trusted", "cause (tls)", NULL);
    run_free(&r);
    assert_int_equal(test_spool_count(&s), 0);
    /* the same with the test CA trusted: sent */
    const char *trusted[] = {"--server", "127.0.0.1", "--port", port_arg(&s), "--security", "tls",
                             "--ca-file", wpath("ca.pem"), "b@example.org", NULL};
    run_tool(&r, simple_input, NULL, trusted);
    assert_run(&r, 0, NULL);
    run_free(&r);
    char *json = spooled(&s, "json");
    assert_int_equal(test_json_bool(json, "tls"), 1);
    free(json);
    test_server_stop(&s);
}

static void test_auth_failure(void **state)
{
    test_server_t s;
    const char *sargs[] = {"--auth", "u:right", NULL};
    start_smtpd(&s, sargs);
    assert_int_equal(test_write_file(wpath("pw"), "wrong\n", 6), 0);
    const char *args[] = {PLAIN(&s), "--user", "u", "--password-file", wpath("pw"),
                          "b@example.org", NULL};
    run_t r;
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_NOPERM, "535", NULL);
    assert_null(strstr(r.err, "wrong"));
    run_free(&r);
    test_server_stop(&s);
}

/* Every recipient refused (550), and a message refused at its end (554): 5xx, for good. */
static void test_refused(void **state)
{
    test_server_t s;
    const char *sargs[] = {"--reject-rcpt", "nobody", NULL};
    start_smtpd(&s, sargs);
    const char *args[] = {PLAIN(&s), "nobody@example.org", NULL};
    run_t r;
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_UNAVAILABLE, "550", "refused recipient nobody@example.org", NULL);
    run_free(&r);
    test_server_stop(&s);

    const char *dargs[] = {"--data-reply", "554 5.6.0 not this one", NULL};
    start_smtpd(&s, dargs);
    const char *args2[] = {PLAIN(&s), "b@example.org", NULL};
    run_tool(&r, simple_input, NULL, args2);
    assert_run(&r, EX_UNAVAILABLE, "554 5.6.0", "not this one", NULL);
    run_free(&r);
    test_server_stop(&s);
}

static void test_temporary_failure(void **state)
{
    test_server_t s;
    const char *sargs[] = {"--data-reply", "451 4.3.0 try again later", NULL};
    start_smtpd(&s, sargs);
    const char *args[] = {PLAIN(&s), "b@example.org", NULL};
    run_t r;
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_TEMPFAIL, "451 4.3.0", "try again later", NULL);
    run_free(&r);
    test_server_stop(&s);
}

/* The end of data went out and the connection dropped: the outcome is unknown. */
static void test_unknown_outcome(void **state)
{
    test_server_t s;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250 scripted\n"
                         "expect MAIL FROM:<a@example.org>.*\n"
                         "send 250 ok\n"
                         "expect RCPT TO:<b@example.org>\n"
                         "send 250 ok\n"
                         "expect DATA\n"
                         "send 354 go\n"
                         "expect-data\n"
                         "close\n";
    assert_int_equal(test_scripted_start(&s, script, NULL), 0);
    const char *args[] = {PLAIN(&s), "b@example.org", NULL};
    run_t r;
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_IOERR, "may have been delivered", NULL);
    run_free(&r);
    assert_int_equal(test_server_wait(&s, 5000), 0);
    test_server_stop(&s);
}

/* ---- sendmail's interface ------------------------------------------------------------------ */

/* -t: To, Cc and Bcc into the envelope; the Bcc field never reaches the server. */
static void test_t_with_bcc(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    const char *input = "From: Ann <a@example.org>\nTo: \"Doe, B.\" <b@example.org>\n"
                        "Cc: c@example.org\nBcc: Hidden <h@example.org>,\n i@example.org\n"
                        "Subject: -t\n\nBody.\n";
    const char *args[] = {PLAIN(&s), "-t", "-oi", NULL};
    run_t r;
    run_tool(&r, input, NULL, args);
    assert_run(&r, 0, NULL);
    run_free(&r);
    char *json = spooled(&s, "json"), *eml = spooled(&s, "eml");
    assert_json_field(json, "mail_from", "a@example.org");
    assert_int_equal(test_json_array_count(json, "rcpt_tos"), 4);
    assert_json_field(json, "rcpt_tos.0", "b@example.org");
    assert_json_field(json, "rcpt_tos.1", "c@example.org");
    assert_json_field(json, "rcpt_tos.2", "h@example.org");
    assert_json_field(json, "rcpt_tos.3", "i@example.org");
    assert_null(strstr(eml, "Bcc"));
    assert_null(strstr(eml, "h@example.org"));
    assert_null(strstr(eml, "i@example.org"));
    assert_non_null(strstr(eml, "Cc: c@example.org"));
    assert_non_null(strstr(eml, "Date: "));
    free(json);
    free(eml);
    test_server_stop(&s);
}

/* -f sets the envelope sender; -F names the From field added to a message without one; the
 * arguments are the recipients. */
static void test_f_F_and_arguments(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    const char *args[] = {PLAIN(&s), "-f", "bounce@example.org", "-F", "Cron Daemon",
                          "x@example.org", "y@example.org", NULL};
    run_t r;
    run_tool(&r, "Subject: cron\n\nOutput.\n", NULL, args);
    assert_run(&r, 0, NULL);
    run_free(&r);
    char *json = spooled(&s, "json"), *eml = spooled(&s, "eml");
    assert_json_field(json, "mail_from", "bounce@example.org");
    assert_int_equal(test_json_array_count(json, "rcpt_tos"), 2);
    assert_json_field(json, "rcpt_tos.1", "y@example.org");
    assert_non_null(strstr(eml, "From: \"Cron Daemon\" <bounce@example.org>"));
    free(json);
    free(eml);
    test_server_stop(&s);
}

/* A lone "." ends standard input, unless -i. */
static void test_dot_and_i(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    const char *input = "From: a@example.org\nSubject: dots\n\nbefore\n.\nafter\n";
    const char *args[] = {PLAIN(&s), "-i", "b@example.org", NULL};
    run_t r;
    run_tool(&r, input, NULL, args);
    assert_run(&r, 0, NULL);
    run_free(&r);
    char *eml = spooled(&s, "eml");
    assert_non_null(strstr(eml, "before\r\n.\r\nafter"));
    free(eml);
    test_server_stop(&s);

    const char *dry[] = {"--dry-run", "b@example.org", NULL};
    run_tool(&r, input, NULL, dry);
    assert_run(&r, 0, NULL);
    assert_non_null(strstr(r.out, "before\n"));
    assert_null(strstr(r.out, "after"));
    run_free(&r);
}

/* ---- composing ----------------------------------------------------------------------------- */

static void test_attachments(void **state)
{
    test_server_t s;
    start_smtpd(&s, NULL);
    assert_int_equal(test_write_file(wpath("notes.txt"), "attached text\n", 14), 0);
    const char *args[] = {PLAIN(&s), "--from", "Ann <a@example.org>", "--to",
                          "b@example.org, c@example.org", "--bcc", "h@example.org",
                          "--subject", "files", "--body", "See attached.",
                          "--attach", wpath("notes.txt"), NULL};
    run_t r;
    run_tool(&r, NULL, NULL, args);
    assert_run(&r, 0, NULL);
    run_free(&r);
    char *json = spooled(&s, "json"), *eml = spooled(&s, "eml");
    assert_int_equal(test_json_array_count(json, "rcpt_tos"), 3);
    assert_non_null(strstr(eml, "notes.txt"));
    assert_non_null(strstr(eml, "YXR0YWNoZWQgdGV4dAo=")); /* base64 of the file */
    assert_non_null(strstr(eml, "See attached."));
    assert_null(strstr(eml, "h@example.org"));
    free(json);
    free(eml);
    test_server_stop(&s);

    const char *missing[] = {"--from", "a@example.org", "--to", "b@example.org", "--attach",
                             wpath("no-such-file"), "--dry-run", NULL};
    run_tool(&r, NULL, NULL, missing);
    assert_run(&r, EX_NOINPUT, "no-such-file", NULL);
    run_free(&r);
}

static void test_dry_run(void **state)
{
    const char *args[] = {"--dry-run", "--from", "a@example.org", "--to", "b@example.org",
                          "--subject", "Dry", "--body", "Nothing sent.", NULL};
    run_t r;
    run_tool(&r, NULL, NULL, args);
    assert_run(&r, 0, NULL);
    assert_non_null(strstr(r.out, "Subject: Dry\r\n"));
    assert_non_null(strstr(r.out, "MIME-Version: 1.0\r\n"));
    assert_non_null(strstr(r.out, "Nothing sent."));
    run_free(&r);
    const char *bad[] = {"--dry-run", "--from", "not an address", "--to", "b@example.org", NULL};
    run_tool(&r, NULL, NULL, bad);
    assert_run(&r, EX_DATAERR, NULL);
    run_free(&r);
}

/* ---- the account file and the password ----------------------------------------------------- */

static void write_config(const char *text, mode_t mode)
{
    mkdir(wpath("xdg"), 0700);
    mkdir(wpath("xdg/emailsession"), 0700);
    assert_int_equal(test_write_file(wpath("xdg/emailsession/config"), text, strlen(text)), 0);
    assert_int_equal(chmod(wpath("xdg/emailsession/config"), mode), 0);
}

static void remove_config(void)
{
    unlink(wpath("xdg/emailsession/config"));
}

/* sendmail-style: only a recipient on the command line, the rest from the default account. */
static void test_account_file(void **state)
{
    test_server_t s;
    const char *sargs[] = {"--auth", "u:s3cret", "--auth-required", NULL};
    start_smtpd(&s, sargs);
    char config[1024];
    snprintf(config, sizeof config,
             "# test\ndefaults\nsecurity none\n\naccount other\nhost 192.0.2.1\n\n"
             "account work\nhost 127.0.0.1\nport %d\nuser u\npasswordeval \"echo s3cret; "
             "echo second line\"\nfrom Work <w@example.org>\n\naccount default : work\n",
             s.port);
    write_config(config, 0644); /* passwordeval: no password in the file, any mode will do */
    const char *args[] = {"b@example.org", NULL};
    run_t r;
    run_tool(&r, "Subject: account\n\nBody.\n", NULL, args);
    assert_run(&r, 0, NULL);
    run_free(&r);
    char *json = spooled(&s, "json"), *eml = spooled(&s, "eml");
    assert_json_field(json, "auth.login", "u");
    assert_json_field(json, "mail_from", "w@example.org");
    assert_non_null(strstr(eml, "From: Work <w@example.org>"));
    free(json);
    free(eml);
    remove_config();
    test_server_stop(&s);
}

static void test_account_file_refused(void **state)
{
    write_config("account default\nhost 127.0.0.1\nuser u\npassword s3cret\n", 0644);
    const char *args[] = {"b@example.org", NULL};
    run_t r;
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_CONFIG, "emailsession/config:4", "chmod 600", NULL);
    assert_null(strstr(r.err, "s3cret"));
    run_free(&r);

    write_config("account default\nhost 127.0.0.1\nsecurity sometimes\n", 0600);
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_CONFIG, "emailsession/config:3", "sometimes", NULL);
    run_free(&r);

    write_config("account a\nhost 127.0.0.1\n", 0600);
    const char *missing[] = {"--account", "b", "b@example.org", NULL};
    run_tool(&r, simple_input, NULL, missing);
    assert_run(&r, EX_CONFIG, "no account 'b'", NULL);
    run_free(&r);

    write_config("account default\nhost 127.0.0.1\nuser u\npasswordeval exit 3\n", 0600);
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, EX_CONFIG, "emailsession/config:4", "passwordeval failed", NULL);
    run_free(&r);
    remove_config();
}

/* A 0600 file with a password is used; --config names another file. */
static void test_config_option_and_env(void **state)
{
    test_server_t s;
    const char *sargs[] = {"--auth", "u:s3cret", "--auth-required", NULL};
    start_smtpd(&s, sargs);
    char config[512];
    snprintf(config, sizeof config, "account default\nhost 127.0.0.1\nport %d\n"
             "security none\nuser u\npassword s3cret\n", s.port);
    assert_int_equal(test_write_file(wpath("my.conf"), config, strlen(config)), 0);
    assert_int_equal(chmod(wpath("my.conf"), 0600), 0);
    const char *args[] = {"--config", wpath("my.conf"), "b@example.org", NULL};
    run_t r;
    run_tool(&r, simple_input, NULL, args);
    assert_run(&r, 0, NULL);
    run_free(&r);
    assert_int_equal(test_spool_wait(&s, 1, 5000), 1);

    /* the command line wins over the account: --password-env */
    const char *env[] = {"SMTP_PW", "s3cret", NULL};
    const char *args2[] = {PLAIN(&s), "--user", "u", "--password-env", "SMTP_PW",
                           "b@example.org", NULL};
    run_tool(&r, simple_input, env, args2);
    assert_run(&r, 0, NULL);
    run_free(&r);
    assert_int_equal(test_spool_wait(&s, 2, 5000), 2);
    test_server_stop(&s);
}

/* The -v log shows the conversation but neither the password nor its base64 (PLAIN and LOGIN). */
static void test_verbose_masks_password(void **state)
{
    static const char *const mechs[] = {"PLAIN", "LOGIN"};
    /* base64 of "s3cretPW", and of "\0u\0s3cretPW" (PLAIN's payload) */
    static const char *const secrets[] = {"s3cretPW", "czNjcmV0UFc", "AHUAczNjcmV0UFc"};
    for (size_t m = 0; m < 2; m++) {
        test_server_t s;
        const char *sargs[] = {"--auth", "u:s3cretPW", "--auth-mechs", mechs[m], NULL};
        start_smtpd(&s, sargs);
        const char *env[] = {"SMTP_PW", "s3cretPW", NULL};
        const char *args[] = {PLAIN(&s), "-v", "--user", "u", "--password-env", "SMTP_PW",
                              "b@example.org", NULL};
        run_t r;
        run_tool(&r, simple_input, env, args);
        assert_run(&r, 0, "C > \"EHLO ", "Authenticated as 'u'", "C > \"QUIT\"", NULL);
        assert_non_null(strstr(r.err, "****"));
        for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
            if (strstr(r.err, secrets[i]))
                fail_msg("%s: the log shows \"%s\":\n%s", mechs[m], secrets[i], r.err);
        run_free(&r);
        test_server_stop(&s);
    }
}

/* ---- the outbox ---------------------------------------------------------------------------- */

#define AT_PORT(port) "--server", "127.0.0.1", "--port", port, "--security", "none"

/* Runs the tool and checks its exit status and that its stdout holds want (may be NULL). */
static void tool_expect(const char *input, const char *const *args, int status, const char *want)
{
    run_t r;
    run_tool(&r, input, NULL, args);
    assert_run(&r, status, NULL);
    if (want && !strstr(r.out, want))
        fail_msg("stdout lacks \"%s\":\n%s\nstderr:\n%s", want, r.out, r.err);
    run_free(&r);
}

/* How many lines --list prints for outbox (NULL: the default one). */
static int listed(const char *outbox)
{
    const char *args[] = {"--list", outbox ? "--outbox" : NULL, outbox, NULL};
    run_t r;
    run_tool(&r, NULL, NULL, args);
    assert_run(&r, 0, NULL);
    int n = 0;
    for (const char *p = r.out; (p = strchr(p, '\n')); p++)
        n++;
    run_free(&r);
    return n;
}

/* The server is down: --queue puts the message into the default outbox (under HOME) and
 * succeeds; --list shows it; with the server up, --flush delivers it, once. A message queued
 * while the server is up is not sent before the --flush either (msmtpq's meaning). */
static void test_queue_then_flush(void **state)
{
    char port[16];
    snprintf(port, sizeof port, "%d", test_dead_port());
    const char *queue[] = {AT_PORT(port), "--queue", "--from", "a@example.org", "--to",
                           "b@example.org", "--subject", "queued while down", "--body", "x",
                           NULL};
    tool_expect(NULL, queue, 0, NULL);
    assert_true(access(wpath("home/.local/share/emailsession/outbox"), F_OK) == 0);
    const char *list[] = {"--list", NULL};
    tool_expect(NULL, list, 0, "\t127.0.0.1\tqueued while down\n");
    /* XDG_DATA_HOME moves the default outbox: nothing waits in that one */
    const char *env[] = {"XDG_DATA_HOME", wpath("data"), NULL};
    run_t r;
    run_tool(&r, NULL, env, list);
    assert_run(&r, 0, NULL);
    assert_string_equal(r.out, "");
    run_free(&r);
    assert_int_equal(access(wpath("data/emailsession/outbox"), F_OK), 0);

    test_server_t s;
    const char *sargs[] = {"--port", port, NULL};
    start_smtpd(&s, sargs);
    const char *queue2[] = {AT_PORT(port), "--queue", "b@example.org", NULL};
    tool_expect(simple_input, queue2, 0, NULL);
    assert_int_equal(test_spool_count(&s), 0); /* the tool has exited: nothing went out */
    assert_int_equal(listed(NULL), 2);
    const char *flush[] = {AT_PORT(port), "--flush", NULL};
    tool_expect(NULL, flush, 0, ": sent\n");
    assert_int_equal(test_spool_count(&s), 2);
    assert_int_equal(listed(NULL), 0);
    tool_expect(NULL, flush, 0, NULL); /* nothing waits: nothing sent again */
    assert_int_equal(test_spool_count(&s), 2);
    char *eml = test_spool_read(&s, 1, "eml", NULL);
    assert_non_null(eml);
    assert_non_null(strstr(eml, "Subject: queued while down"));
    free(eml);
    test_server_stop(&s);
}

/* At --flush, a 5xx removes the entry (exit code of a refusal for good); a 4xx keeps it. */
static void test_flush_refused(void **state)
{
    char port[16];
    snprintf(port, sizeof port, "%d", test_dead_port());
    char ob[600]; /* wpath's buffers are reused */
    snprintf(ob, sizeof ob, "%s", wpath("outbox-refused"));
    const char *queue[] = {AT_PORT(port), "--outbox", ob, "--queue", "b@example.org", NULL};
    const char *flush[] = {AT_PORT(port), "--outbox", ob, "--flush", NULL};
    tool_expect(simple_input, queue, 0, NULL);

    test_server_t s;
    const char *tempfail[] = {"--port", port, "--data-reply", "451 4.3.0 try again later", NULL};
    start_smtpd(&s, tempfail);
    run_t r;
    run_tool(&r, NULL, NULL, flush);
    assert_run(&r, EX_TEMPFAIL, "1 message still waits", NULL);
    assert_non_null(strstr(r.out, "not sent: the server replied 451 4.3.0: try again later"));
    run_free(&r);
    test_server_stop(&s);
    assert_int_equal(listed(ob), 1);

    const char *refuse[] = {"--port", port, "--data-reply", "554 5.6.0 not this one", NULL};
    start_smtpd(&s, refuse);
    tool_expect(NULL, flush, EX_UNAVAILABLE, "replied 554 5.6.0: not this one\n");
    assert_int_equal(listed(ob), 0);
    tool_expect(NULL, flush, 0, NULL);
    assert_int_equal(test_spool_count(&s), 0);
    test_server_stop(&s);
}

/* The end of data goes out at --flush and the connection drops: unknown outcome, kept. */
static void flush_into_silence(const char *port, const char *ob)
{
    test_server_t s;
    const char *script = "send 220 scripted ESMTP\n"
                         "expect EHLO .*\n"
                         "send 250 scripted\n"
                         "expect MAIL FROM:<a@example.org>.*\n"
                         "send 250 ok\n"
                         "expect RCPT TO:<b@example.org>\n"
                         "send 250 ok\n"
                         "expect DATA\n"
                         "send 354 go\n"
                         "expect-data\n"
                         "close\n";
    const char *sargs[] = {"--port", port, NULL};
    assert_int_equal(test_scripted_start(&s, script, sargs), 0);
    const char *flush[] = {AT_PORT(port), "--outbox", ob, "--flush", NULL};
    run_t r;
    run_tool(&r, NULL, NULL, flush);
    assert_run(&r, EX_IOERR, "may have been delivered", "--resend-unknown", NULL);
    run_free(&r);
    assert_int_equal(test_server_wait(&s, 5000), 0);
    test_server_stop(&s);
    assert_int_equal(listed(ob), 1);
}

/* An unknown outcome is reported again, not resent, by a plain --flush; --drop-unknown forgets
 * it, --resend-unknown sends it. */
static void test_flush_unknown(void **state)
{
    char port[16];
    snprintf(port, sizeof port, "%d", test_dead_port());
    char ob[600]; /* wpath's buffers are reused */
    snprintf(ob, sizeof ob, "%s", wpath("outbox-unknown"));
    const char *queue[] = {AT_PORT(port), "--outbox", ob, "--queue", "b@example.org", NULL};
    tool_expect(simple_input, queue, 0, NULL);
    flush_into_silence(port, ob);

    test_server_t s;
    const char *sargs[] = {"--port", port, NULL};
    start_smtpd(&s, sargs);
    const char *flush[] = {AT_PORT(port), "--outbox", ob, "--flush", NULL};
    tool_expect(NULL, flush, EX_IOERR, "went out in an earlier run");
    assert_int_equal(listed(ob), 1);
    const char *drop[] = {AT_PORT(port), "--outbox", ob, "--flush", "--drop-unknown", NULL};
    tool_expect(NULL, drop, EX_IOERR, NULL);
    assert_int_equal(listed(ob), 0);
    assert_int_equal(test_spool_count(&s), 0);
    test_server_stop(&s);

    tool_expect(simple_input, queue, 0, NULL);
    flush_into_silence(port, ob);
    start_smtpd(&s, sargs);
    const char *resend[] = {AT_PORT(port), "--outbox", ob, "--flush", "--resend-unknown", NULL};
    tool_expect(NULL, resend, 0, ": sent\n");
    assert_int_equal(test_spool_count(&s), 1);
    assert_int_equal(listed(ob), 0);
    test_server_stop(&s);

    const char *both[] = {"--flush", "--resend-unknown", "--drop-unknown", NULL};
    tool_expect(NULL, both, EX_USAGE, NULL);
    const char *alone[] = {"--resend-unknown", "b@example.org", NULL};
    tool_expect(simple_input, alone, EX_USAGE, NULL);
}

/* ---- on a terminal ------------------------------------------------------------------------- */

/* Reads what is ready on fd into *buf (grown); false at its end. */
static bool read_more(int fd, char **buf, size_t *len)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0) /* EIO: the terminal's last user closed it */
        return false;
    *buf = realloc(*buf, *len + (size_t)n + 1);
    assert_non_null(*buf);
    memcpy(*buf + *len, chunk, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return true;
}

/*
 * Runs the tool on a new pseudo-terminal (its standard input, output and error; with
 * stderr_pipe, its stderr goes to a pipe instead), writes answer once the terminal shows
 * prompt (both may be NULL). r->out is what the terminal showed, r->err what the pipe got.
 */
static void run_tool_pty(run_t *r, const char *const *args, const char *prompt,
                         const char *answer, bool stderr_pipe)
{
    int errpipe[2] = {-1, -1};
    if (stderr_pipe)
        assert_int_equal(pipe(errpipe), 0);
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        if (stderr_pipe && dup2(errpipe[1], 2) < 0)
            _exit(120);
        setenv("HOME", wpath("home"), 1);
        setenv("XDG_CONFIG_HOME", wpath("xdg"), 1);
        exec_argv(args);
    }
    if (stderr_pipe)
        close(errpipe[1]);
    memset(r, 0, sizeof *r);
    size_t out_len = 0, err_len = 0;
    bool answered = !answer, pty_open = true, pipe_open = stderr_pipe;
    while (pty_open || pipe_open) {
        struct pollfd p[2] = {{.fd = pty_open ? master : -1, .events = POLLIN},
                              {.fd = pipe_open ? errpipe[0] : -1, .events = POLLIN}};
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[0].revents)
            pty_open = read_more(master, &r->out, &out_len);
        if (p[1].revents)
            pipe_open = read_more(errpipe[0], &r->err, &err_len);
        if (!answered && r->out && strstr(r->out, prompt)) {
            assert_int_equal(write(master, answer, strlen(answer)), (ssize_t)strlen(answer));
            answered = true;
        }
    }
    close(master);
    if (stderr_pipe)
        close(errpipe[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (!r->out)
        r->out = strdup("");
    if (!r->err)
        r->err = strdup("");
}

/* Without any other source, the password is asked on the terminal, with echo off: the typed
 * password never shows, and it is the one AUTH uses. */
static void test_password_prompt(void **state)
{
    test_server_t s;
    const char *sargs[] = {"--auth", "u:s3cretPW", "--auth-required", NULL};
    start_smtpd(&s, sargs);
    const char *args[] = {PLAIN(&s), "--user", "u", "--from", "a@example.org", "--to",
                          "b@example.org", "--subject", "prompted", "--body", "x", NULL};
    run_t r;
    run_tool_pty(&r, args, "Password for u at 127.0.0.1: ", "s3cretPW\n", false);
    if (r.status != 0)
        fail_msg("exit status %d; terminal:\n%s", r.status, r.out);
    if (strstr(r.out, "s3cretPW"))
        fail_msg("the terminal shows the password:\n%s", r.out);
    run_free(&r);
    char *json = spooled(&s, "json");
    assert_json_field(json, "auth.login", "u");
    free(json);
    test_server_stop(&s);
}

/* A large message draws a progress bar on a terminal, none when stderr is a pipe. */
static void test_progress_bar(void **state)
{
    size_t size = 1536 * 1024;
    char *body = malloc(size);
    assert_non_null(body);
    for (size_t i = 0; i < size; i++)
        body[i] = i % 64 == 63 ? '\n' : 'a' + (char)(i % 26);
    assert_int_equal(test_write_file(wpath("large.txt"), body, size), 0);
    free(body);
    test_server_t s;
    start_smtpd(&s, NULL);
    const char *args[] = {PLAIN(&s), "--from", "a@example.org", "--to", "b@example.org",
                          "--subject", "large", "--body-file", wpath("large.txt"), NULL};
    run_t r;
    run_tool_pty(&r, args, NULL, NULL, false);
    if (r.status != 0 || !strstr(r.out, "] 100% ") || !strstr(r.out, "MiB\r\n"))
        fail_msg("exit status %d; no progress bar on the terminal:\n%s", r.status, r.out);
    run_free(&r);
    run_tool_pty(&r, args, NULL, NULL, true);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, "");
    run_free(&r);
    assert_int_equal(test_spool_wait(&s, 2, 5000), 2);
    test_server_stop(&s);
}

static int group_setup(void **state)
{
    (void)state;
    if (!(workdir = test_tmpdir()))
        return -1;
    mkdir(wpath("home"), 0700);
    return test_make_certs(workdir, "test_cli");
}

static int group_teardown(void **state)
{
    (void)state;
    if (getenv("EMAIL_TEST_KEEP"))
        fprintf(stderr, "test_cli: files kept in %s\n", workdir);
    else
        test_rmtree(workdir);
    free(workdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_tls_untrusted),
        cmocka_unit_test(test_auth_failure),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_temporary_failure),
        cmocka_unit_test(test_unknown_outcome),
        cmocka_unit_test(test_t_with_bcc),
        cmocka_unit_test(test_f_F_and_arguments),
        cmocka_unit_test(test_dot_and_i),
        cmocka_unit_test(test_attachments),
        cmocka_unit_test(test_dry_run),
        cmocka_unit_test(test_account_file),
        cmocka_unit_test(test_account_file_refused),
        cmocka_unit_test(test_config_option_and_env),
        cmocka_unit_test(test_verbose_masks_password),
        cmocka_unit_test(test_queue_then_flush),
        cmocka_unit_test(test_flush_refused),
        cmocka_unit_test(test_flush_unknown),
        cmocka_unit_test(test_password_prompt),
        cmocka_unit_test(test_progress_bar),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
