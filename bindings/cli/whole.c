/*
 * emailsession-send: a whole message from standard input or --message-file, as sendmail takes
 * it: a line with a lone "." ends standard input unless -i; -t takes the recipients from To,
 * Cc and Bcc; Bcc fields are always removed; a From field (with -F's name) and a Date field
 * are added when the message has none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include "addresses.h"
#include "cli.h"
#include "whole.h"

/* Cuts the input at its first line holding a lone "." (sendmail without -i). */
static void cut_at_dot(char *data, size_t *len)
{
    for (size_t at = 0; at < *len;) {
        char *nl = memchr(data + at, '\n', *len - at);
        size_t end = nl ? (size_t)(nl - data) : *len;
        size_t n = end - at;
        if (n && data[end - 1] == '\r')
            n--;
        if (n == 1 && data[at] == '.') {
            *len = at;
            data[at] = '\0';
            return;
        }
        at = end + 1;
    }
}

int cli_whole_read(const cli_options_t *o, cli_whole_t *w)
{
    memset(w, 0, sizeof *w);
    int rc = cli_read_file(o->message_file ? o->message_file : "-", &w->data, &w->len);
    if (rc)
        return rc;
    if (!o->message_file && !o->ignore_dots)
        cut_at_dot(w->data, &w->len);
    if (memchr(w->data, '\0', w->len))
        return cli_fail(EX_DATAERR, "the message holds a NUL byte");
    if (w->len == 0)
        return cli_fail(EX_DATAERR, "the message is empty");
    return 0;
}

/* The end of the header field starting at p (its continuation lines included). */
static const char *field_end(const char *p, const char *end)
{
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return end;
        p = nl + 1;
        if (p == end || (*p != ' ' && *p != '\t'))
            return p;
    }
}

/* The field's value with its line breaks removed (malloc'ed). */
static char *unfold(const char *colon, const char *end)
{
    char *v = malloc((size_t)(end - colon)), *out = v;
    for (const char *p = colon + 1; v && p < end; p++)
        if (*p != '\r' && *p != '\n')
            *out++ = *p;
    if (v)
        *out = '\0';
    return v;
}

static bool is_field(const char *p, const char *colon, const char *name)
{
    size_t n = strlen(name);
    return (size_t)(colon - p) == n && strncasecmp(p, name, n) == 0;
}

/* One header field: noted, its recipients taken (-t), kept in out or dropped (Bcc). */
static int header_field(cli_whole_t *w, const char *p, const char *end, bool read_rcpts,
                        strv_t *rcpts, FILE *out)
{
    const char *colon = memchr(p, ':', (size_t)(end - p));
    bool bcc = colon && is_field(p, colon, "Bcc");
    if (colon && (is_field(p, colon, "From") || is_field(p, colon, "Date") ||
                  (read_rcpts && (bcc || is_field(p, colon, "To") || is_field(p, colon, "Cc"))))) {
        char *value = unfold(colon, end);
        if (!value)
            return cli_fail(EX_OSERR, "out of memory");
        int rc = 0;
        if (is_field(p, colon, "From") && !w->header_from)
            w->header_from = strdup(value);
        else if (is_field(p, colon, "Date"))
            w->has_date = true;
        else
            rc = cli_address_list(value, rcpts);
        free(value);
        if (rc)
            return rc;
    }
    if (!bcc)
        fwrite(p, 1, (size_t)(end - p), out);
    return 0;
}

/* The header fields, the Bcc ones left out, into out; up to the blank line (excluded). */
static int header_fields(cli_whole_t *w, bool read_rcpts, strv_t *rcpts, FILE *out,
                         const char **body)
{
    const char *p = w->data, *end = w->data + w->len;
    while (p < end && *p != '\n' && !(*p == '\r' && p + 1 < end && p[1] == '\n')) {
        const char *f = field_end(p, end);
        int rc = header_field(w, p, f, read_rcpts, rcpts, out);
        if (rc)
            return rc;
        p = f;
    }
    *body = p;
    return 0;
}

/* RFC 5322's date, in English whatever the locale. */
static void write_date(FILE *out, const char *eol)
{
    static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    char zone[8];
    localtime_r(&now, &tm);
    strftime(zone, sizeof zone, "%z", &tm);
    fprintf(out, "Date: %s, %d %s %d %02d:%02d:%02d %s%s", days[tm.tm_wday], tm.tm_mday,
            months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone, eol);
}

int cli_whole_prepare(cli_whole_t *w, bool read_rcpts, const char *from_field, strv_t *rcpts)
{
    const char *nl = strchr(w->data, '\n');
    const char *eol = nl && nl > w->data && nl[-1] == '\r' ? "\r\n" : "\n"; /* as the message's */
    char *fields = NULL, *text = NULL;
    size_t fields_len = 0, text_len = 0;
    FILE *f = open_memstream(&fields, &fields_len);
    if (!f)
        return cli_fail(EX_OSERR, "out of memory");
    const char *body;
    int rc = header_fields(w, read_rcpts, rcpts, f, &body);
    fclose(f);
    if (rc == 0 && !w->header_from && !from_field)
        rc = cli_fail(EX_USAGE, "the message has no From field: give --from, -f or `from` in "
                      "the account file");
    FILE *t = rc ? NULL : open_memstream(&text, &text_len);
    if (t) {
        if (!w->header_from)
            fprintf(t, "From: %s%s", from_field, eol);
        if (!w->has_date)
            write_date(t, eol);
        fwrite(fields, 1, fields_len, t);
        fwrite(body, 1, (size_t)(w->data + w->len - body), t);
        fclose(t);
        free(w->data);
        w->data = text;
        w->len = text_len;
    } else if (rc == 0) {
        rc = cli_fail(EX_OSERR, "out of memory");
    }
    free(fields);
    return rc;
}

void cli_whole_free(cli_whole_t *w)
{
    free(w->data);
    free(w->header_from);
    memset(w, 0, sizeof *w);
}
