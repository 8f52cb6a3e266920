/*
 * emailsession-send: a message composed from the options (--subject, --body, --attach...), and
 * the From field the tool writes (-F's full name with --from, -f or the account's from).
 */
#include <emailsession.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "compose.h"
#include "exitcodes.h"

/* RFC 2047's "B" encoding of a UTF-8 word, for a name written into a message's text. */
static void write_encoded_word(FILE *f, const char *s)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s);
    fputs("=?UTF-8?B?", f);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        v |= i + 1 < n ? (unsigned)(unsigned char)s[i + 1] << 8 : 0;
        v |= i + 2 < n ? (unsigned char)s[i + 2] : 0;
        fputc(b64[v >> 18 & 63], f);
        fputc(b64[v >> 12 & 63], f);
        fputc(i + 1 < n ? b64[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? b64[v & 63] : '=', f);
    }
    fputs("?=", f);
}

/* "Name" <address>: quoted when ASCII (the library encodes what it writes itself), else
 * encoded when the text goes straight into a message (encode). */
static void write_mailbox(FILE *f, const char *name, const char *address, bool encode)
{
    bool ascii = true;
    for (const char *p = name; *p; p++)
        ascii &= (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
    if (encode && !ascii) {
        write_encoded_word(f, name);
    } else {
        fputc('"', f);
        for (const char *p = name; *p; p++)
            fprintf(f, "%s%c", *p == '"' || *p == '\\' ? "\\" : "", *p);
        fputc('"', f);
    }
    fprintf(f, " <%s>", address);
}

int cli_from_field(const cli_options_t *o, bool encode, char **field)
{
    const char *address = o->set.from ? o->set.from : o->envelope_from;
    *field = NULL;
    if (!address)
        return 0;
    if (strpbrk(address, "\r\n"))
        return cli_fail(EX_DATAERR, "line break in the sender's address");
    if (!o->full_name || strchr(address, '<'))
        return (*field = strdup(address)) ? 0 : cli_fail(EX_OSERR, "out of memory");
    if (strpbrk(o->full_name, "\r\n"))
        return cli_fail(EX_DATAERR, "-F: line break in the name");
    size_t len;
    FILE *f = open_memstream(field, &len);
    if (!f)
        return cli_fail(EX_OSERR, "out of memory");
    write_mailbox(f, o->full_name, address, encode);
    return fclose(f) == 0 ? 0 : cli_fail(EX_OSERR, "out of memory");
}

/* The outcome of a message builder's call: 0, or the exit code with the library's words. */
static int built(int rc, const char *what)
{
    if (rc == 0)
        return 0;
    return cli_fail(cli_exit_code(rc, 0), "%s: %s", what, email_error_info());
}

static int add_list(email_message_t *m, const strv_t *l,
                    int (*add)(email_message_t *, const char *), const char *what)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = built(add(m, l->v[i]), what);
    return rc;
}

/* --body, --body-file, or standard input when it is not a terminal. */
static int set_body(const cli_options_t *o, email_message_t *m)
{
    if (o->body)
        return built(email_message_set_text_body(m, o->body), "--body");
    const char *path = o->body_file ? o->body_file : isatty(0) ? NULL : "-";
    if (!path)
        return 0;
    char *text;
    size_t len;
    int rc = cli_read_file(path, &text, &len);
    if (rc)
        return rc;
    if (memchr(text, '\0', len))
        rc = cli_fail(EX_DATAERR, "the body (%s) holds a NUL byte", path);
    else
        rc = built(email_message_set_text_body(m, text), "the body");
    free(text);
    return rc;
}

static int fill(const cli_options_t *o, const char *from_field, email_message_t *m)
{
    int rc = built(email_message_set_from(m, from_field), "From");
    if (rc == 0)
        rc = add_list(m, &o->to, email_message_add_to, "--to");
    if (rc == 0)
        rc = add_list(m, &o->recipients, email_message_add_to, "recipient");
    if (rc == 0)
        rc = add_list(m, &o->cc, email_message_add_cc, "--cc");
    if (rc == 0)
        rc = add_list(m, &o->bcc, email_message_add_bcc, "--bcc");
    if (rc == 0 && o->subject)
        rc = built(email_message_set_subject(m, o->subject), "--subject");
    if (rc == 0)
        rc = set_body(o, m);
    for (size_t i = 0; rc == 0 && i < o->attach.n; i++)
        rc = built(email_message_add_attachment_file(m, o->attach.v[i], NULL, NULL), "--attach");
    return rc;
}

int cli_compose(const cli_options_t *o, const char *from_field, email_message_t **out)
{
    *out = NULL;
    if (!from_field)
        return cli_fail(EX_USAGE, "no sender: give --from, -f or `from` in the account file");
    email_message_t *m = email_message_new();
    if (!m)
        return cli_fail(EX_OSERR, "out of memory");
    int rc = fill(o, from_field, m);
    if (rc)
        email_message_free(m);
    else
        *out = m;
    return rc;
}
