/*
 * SMTP reply parser. Lines are found with memchr; a line that arrives whole in one call is used in
 * place, only a line split across calls is gathered in p->line. A reply is complete at its last
 * line ("NNN text" or "NNN"), when its text is joined in one allocation.
 */
#include "reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "util.h"

static const char ERR_CODE[] = "reply line without a valid 3-digit code";
static const char ERR_NUL[] = "reply line holds a NUL byte";
static const char ERR_LONG[] = "reply line too long";
static const char ERR_LINES[] = "too many lines in one reply";
static const char ERR_MISMATCH[] = "continuation line with a different reply code";
static const char ERR_NOMEM[] = "out of memory";

void email__smtp_reply_parser_init(smtp_reply_parser_t *p)
{
    memset(p, 0, sizeof *p);
}

void email__smtp_reply_free(smtp_reply_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nlines; i++)
        free(r->lines[i]);
    free(r->lines);
    free(r->text);
    memset(r, 0, sizeof *r);
}

void email__smtp_reply_parser_free(smtp_reply_parser_t *p)
{
    free(p->line);
    email__smtp_reply_free(&p->cur);
    email__smtp_reply_parser_init(p);
}

bool email__smtp_reply_parser_busy(const smtp_reply_parser_t *p)
{
    return p->len > 0 || p->cr || p->cur.nlines > 0;
}

/* Not isdigit(): the locale must not change what a server's reply means. */
static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The code of a line: [2-5][0-9][0-9] followed by ' ', '-' or the end of the line; else -1. */
static int line_code(const char *s, size_t n)
{
    if (n < 3 || s[0] < '2' || s[0] > '5' || !is_digit(s[1]) || !is_digit(s[2]))
        return -1;
    if (n > 3 && s[3] != ' ' && s[3] != '-')
        return -1;
    return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

static size_t count_digits(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/*
 * Length of the RFC 3463 code "class.subject.detail" at the start of s[0..n), when there is one
 * whose class is cls (the reply's first digit; 2, 4 or 5) and it ends at a space or at the end of
 * the line; else 0. A code of another class is text, not a status.
 */
static size_t enhanced_len(const char *s, size_t n, char cls)
{
    if ((cls != '2' && cls != '4' && cls != '5') || n < 5 || s[0] != cls || s[1] != '.')
        return 0;
    size_t subject = count_digits(s + 2, n - 2);
    size_t i = 2 + subject;
    if (subject < 1 || subject > 3 || i >= n || s[i] != '.')
        return 0;
    i++;
    size_t detail = count_digits(s + i, n - i);
    i += detail;
    if (detail < 1 || detail > 3 || (i < n && s[i] != ' '))
        return 0;
    return i;
}

/* The text part of a whole line: after "NNN-"/"NNN " and, when strip, its enhanced code + space. */
static const char *line_text(const char *line, size_t n, bool strip, size_t *len)
{
    size_t off = n > 3 ? 4 : 3;
    size_t e = strip ? enhanced_len(line + off, n - off, line[0]) : 0;
    if (e > 0)
        off += e < n - off ? e + 1 : e; /* the space after the code, unless at the end */
    *len = n - off;
    return line + off;
}

/* The reply is complete: join its text and hand it over; the parser starts a new one. */
static int finish_reply(smtp_reply_parser_t *p, smtp_reply_t *out, const char **errmsg)
{
    smtp_reply_t *r = &p->cur;
    bool strip = r->enhanced[0] != '\0';
    size_t total = r->nlines; /* the '\n' between lines and the final NUL */
    size_t len;
    for (size_t i = 0; i < r->nlines; i++) {
        line_text(r->lines[i], strlen(r->lines[i]), strip, &len);
        total += len;
    }
    char *text = malloc(total);
    if (!text) {
        *errmsg = ERR_NOMEM;
        return EMAIL_ENOMEM;
    }
    char *t = text;
    for (size_t i = 0; i < r->nlines; i++) {
        const char *s = line_text(r->lines[i], strlen(r->lines[i]), strip, &len);
        if (i > 0)
            *t++ = '\n';
        memcpy(t, s, len);
        t += len;
    }
    *t = '\0';
    r->text = text;
    *out = *r;
    memset(r, 0, sizeof *r);
    p->cur_cap = 0;
    return 1;
}

/* One whole line (line ending removed): 1 when it ends the reply, 0 when more lines follow. */
static int take_line(smtp_reply_parser_t *p, const char *line, size_t len, smtp_reply_t *out,
                     const char **errmsg)
{
    smtp_reply_t *r = &p->cur;
    int code = line_code(line, len);
    const char *err = NULL;
    if (len > SMTP_REPLY_MAX_LINE)
        err = ERR_LONG;
    else if (code < 0) /* before memchr: an empty gathered line may have no buffer yet */
        err = ERR_CODE;
    else if (memchr(line, '\0', len))
        err = ERR_NUL;
    else if (r->nlines > 0 && code != r->code)
        err = ERR_MISMATCH;
    else if (r->nlines == SMTP_REPLY_MAX_LINES)
        err = ERR_LINES;
    if (err) {
        *errmsg = err;
        return EMAIL_EPROTO;
    }

    if (r->nlines == p->cur_cap) {
        size_t cap = p->cur_cap ? p->cur_cap * 2 : 8;
        char **lines = realloc(r->lines, cap * sizeof *lines);
        if (!lines) {
            *errmsg = ERR_NOMEM;
            return EMAIL_ENOMEM;
        }
        r->lines = lines;
        p->cur_cap = cap;
    }
    char *copy = email__strndup(line, len);
    if (!copy) {
        *errmsg = ERR_NOMEM;
        return EMAIL_ENOMEM;
    }
    r->lines[r->nlines++] = copy;

    if (r->nlines == 1) {
        r->code = code;
        size_t off = len > 3 ? 4 : 3;
        size_t e = enhanced_len(line + off, len - off, line[0]);
        memcpy(r->enhanced, line + off, e);
        r->enhanced[e] = '\0';
    }
    if (len > 3 && line[3] == '-')
        return 0;
    return finish_reply(p, out, errmsg);
}

/* Appends to the partial line, refusing to hold more than a line may be long. */
static int gather(smtp_reply_parser_t *p, const char *s, size_t n, const char **errmsg)
{
    if (n == 0)
        return 0;
    if (n > SMTP_REPLY_MAX_LINE - p->len) {
        *errmsg = ERR_LONG;
        return EMAIL_EPROTO;
    }
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 128;
        while (cap < p->len + n)
            cap *= 2;
        char *line = realloc(p->line, cap);
        if (!line) {
            *errmsg = ERR_NOMEM;
            return EMAIL_ENOMEM;
        }
        p->line = line;
        p->cap = cap;
    }
    memcpy(p->line + p->len, s, n);
    p->len += n;
    return 0;
}

int email__smtp_reply_parse(smtp_reply_parser_t *p, const char *data, size_t n, size_t *consumed,
                     smtp_reply_t *out, const char **errmsg)
{
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        const char *lf = memchr(data + i, '\n', n - i);
        size_t end = lf ? (size_t)(lf - data) : n;
        size_t len = end - i;
        /* A CR just before the LF belongs to the line ending. Without an LF yet, a final CR is
         * held back in p->cr: the next byte decides whether it ends the line or is text. */
        bool last_cr = len > 0 && data[end - 1] == '\r';
        if (last_cr)
            len--;
        if (!lf || p->len > 0 || p->cr) {
            if (p->cr && end > i)
                rc = gather(p, "\r", 1, errmsg);
            if (rc == 0)
                rc = gather(p, data + i, len, errmsg);
            p->cr = !lf && last_cr;
            i = end + (lf != NULL);
            if (rc == 0 && lf) {
                rc = take_line(p, p->line, p->len, out, errmsg);
                p->len = 0;
            }
        } else {
            rc = take_line(p, data + i, len, out, errmsg);
            i = end + 1;
        }
    }
    *consumed = i;
    return rc;
}

smtp_codes_t email__smtp_codes(int code, const char *enhanced)
{
    smtp_codes_t c;
    if (enhanced && enhanced[0])
        snprintf(c.s, sizeof c.s, "%d %.15s", code, enhanced);
    else
        snprintf(c.s, sizeof c.s, "%d", code);
    return c;
}

smtp_codes_t email__smtp_reply_codes(const smtp_reply_t *r)
{
    return email__smtp_codes(r->code, r->enhanced);
}
