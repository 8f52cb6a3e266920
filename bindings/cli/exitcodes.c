/*
 * emailsession-send: one table from the library's EMAIL_E... codes to the exit codes of
 * sysexits.h, and one table of what each exit code means (--help, and the man page says the
 * same).
 */
#include <emailsession.h>
#include <stdio.h>
#include <sysexits.h>

#include "exitcodes.h"

static const struct {
    int error;
    int exit_code;
} error_exits[] = {
    {EMAIL_EINVAL, EX_DATAERR},      {EMAIL_ECHARSET, EX_DATAERR},
    {EMAIL_EIO, EX_NOINPUT},         {EMAIL_ENOMEM, EX_OSERR},
    {EMAIL_ERESOLVE, EX_NOHOST},     {EMAIL_ECONNECT, EX_NOHOST},
    {EMAIL_ETIMEDOUT, EX_NOHOST},    {EMAIL_ETLS, EX_PROTOCOL},
    {EMAIL_ETLSREQUIRED, EX_PROTOCOL}, {EMAIL_ECERT, EX_PROTOCOL},
    {EMAIL_ECERTNAME, EX_PROTOCOL},  {EMAIL_ECERTEXPIRED, EX_PROTOCOL},
    {EMAIL_EINSECURE, EX_PROTOCOL},  {EMAIL_EAUTH, EX_NOPERM},
    {EMAIL_EAUTHMECH, EX_NOPERM},    {EMAIL_ESERVER, EX_UNAVAILABLE},
    {EMAIL_ERECIPIENTS, EX_UNAVAILABLE}, {EMAIL_ESIZE, EX_UNAVAILABLE},
    {EMAIL_ECLOSED, EX_TEMPFAIL},    {EMAIL_EPROTO, EX_TEMPFAIL},
    {EMAIL_EUNKNOWN, EX_IOERR},      {EMAIL_ENOTSUP, EX_CONFIG},
};

static const struct {
    int exit_code;
    const char *meaning;
} meanings[] = {
    {EX_OK, "sent: the server accepted the message (or --dry-run printed it)"},
    {EX_USAGE, "usage error: bad options or arguments, no recipient, no sender"},
    {EX_DATAERR, "bad input data: a malformed address, a message that cannot be composed"},
    {EX_NOINPUT, "a file that is missing or cannot be read (attachment, body, message, "
                 "password, configuration), or an outbox that cannot be used"},
    {EX_NOHOST, "server unreachable: name not resolved, connection refused, timed out"},
    {EX_UNAVAILABLE, "refused for good: the server answered 5xx (message, sender or every "
                     "recipient)"},
    {EX_SOFTWARE, "internal error"},
    {EX_OSERR, "system error (out of memory, cannot write the output)"},
    {EX_IOERR, "unknown outcome: the connection was lost after the end of the message; it may "
               "have been delivered (do not resend blindly)"},
    {EX_TEMPFAIL, "temporary failure: the server answered 4xx, or closed the connection, "
                  "before taking the message: try again later"},
    {EX_PROTOCOL, "TLS failure: certificate not trusted, wrong name or expired, handshake "
                  "failed, encryption unavailable"},
    {EX_NOPERM, "authentication failed (e.g. 535), or no usable mechanism"},
    {EX_CONFIG, "configuration error: the account file (named with its line), or a password "
                "in a file others can read"},
};

int cli_exit_code(int error, int reply_code)
{
    int code = EX_SOFTWARE;
    for (size_t i = 0; i < sizeof error_exits / sizeof *error_exits; i++)
        if (error_exits[i].error == error)
            code = error_exits[i].exit_code;
    if (reply_code >= 400 && reply_code < 500 && (code == EX_UNAVAILABLE || code == EX_NOPERM))
        return EX_TEMPFAIL;
    return code;
}

/* --flush's many outcomes in one code: first what needs a person (an outcome unknown, a message
 * refused for good, something to fix), last what the next --flush may mend by itself. */
int cli_exit_worst(int a, int b)
{
    static const int order[] = {EX_IOERR,  EX_UNAVAILABLE, EX_DATAERR, EX_NOPERM,
                                EX_PROTOCOL, EX_CONFIG,    EX_NOINPUT, EX_OSERR,
                                EX_SOFTWARE, EX_NOHOST,    EX_TEMPFAIL};
    if (a == 0 || b == 0)
        return a ? a : b;
    size_t n = sizeof order / sizeof *order, ra = n, rb = n;
    for (size_t i = 0; i < n; i++) {
        if (order[i] == a)
            ra = i;
        if (order[i] == b)
            rb = i;
    }
    return rb < ra ? b : a;
}

void cli_print_exit_codes(FILE *out)
{
    for (size_t i = 0; i < sizeof meanings / sizeof *meanings; i++)
        fprintf(out, "  %3d  %s\n", meanings[i].exit_code, meanings[i].meaning);
}
