/* Header field text for the MIME parser: RFC 2047 encoded words read loosely, RFC 2231
   parameters, leading tokens and RFC 5322 dates (obsolete forms too). */
#include "mime_parse_internal.h"

#include <stdlib.h>
#include <string.h>

#include "charset.h"
#include "emailsession.h"

/* ---- Encoded words ---- */

typedef struct word {
    char charset[64];
    char encoding;        /* 'B' or 'Q' */
    const char *text;
    size_t textlen, len;  /* the payload's length; the whole word's */
} word_t;

/* "=?" charset ["*" lang] "?" B|Q "?" text "?=" at s; false when s holds no such word. */
static bool parse_word(const char *s, size_t n, word_t *w)
{
    size_t i = 2, cs = 0;
    while (i < n && s[i] != '?' && s[i] > ' ' && s[i] < 127 && cs < sizeof w->charset - 1)
        w->charset[cs++] = s[i++];
    w->charset[cs] = '\0';
    char *star = strchr(w->charset, '*'); /* RFC 2231 section 5: a language after the charset */
    if (star)
        *star = '\0';
    if (!w->charset[0] || i + 3 >= n || s[i] != '?' || s[i + 2] != '?')
        return false;
    w->encoding = s[i + 1] == 'b' || s[i + 1] == 'B' ? 'B' : s[i + 1] == 'q' || s[i + 1] == 'Q' ? 'Q'
                                                                                                : 0;
    w->text = s + i + 3;
    for (size_t j = i + 3; w->encoding && j + 1 < n; j++) {
        if (s[j] == '?' && s[j + 1] == '=') {
            w->textlen = j - (i + 3);
            w->len = j + 2;
            return true;
        }
        if ((unsigned char)s[j] <= ' ' || s[j] == '?')
            return false;
    }
    return false;
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                               : -1;
}

/* The word's octets appended to run; a broken encoding flags the text. */
static int word_octets(const word_t *w, email_buf_t *run, unsigned *problems)
{
    if (w->encoding == 'B') {
        mp_decoder_t d;
        email__mp_decoder_init(&d, CTE_BASE64);
        if (email__mp_decode(&d, run, w->text, w->textlen) || email__mp_decode_end(&d, run))
            return EMAIL_ENOMEM;
        *problems |= d.bad ? EMAIL_PARSE_ENCODING : 0;
        return 0;
    }
    for (size_t i = 0; i < w->textlen; i++) {
        char c = w->text[i];
        if (c == '_') {
            c = ' ';
        } else if (c == '=' && i + 2 < w->textlen && hexv(w->text[i + 1]) >= 0 &&
                   hexv(w->text[i + 2]) >= 0) {
            c = (char)(hexv(w->text[i + 1]) << 4 | hexv(w->text[i + 2]));
            i += 2;
        } else if (c == '=') {
            *problems |= EMAIL_PARSE_ENCODING;
        }
        if (email__buf_putc(run, c))
            return EMAIL_ENOMEM;
    }
    return 0;
}

/* Octets in a charset → UTF-8 appended to out, flagging what could not be read. */
static int put_converted(email_buf_t *out, const char *charset, const char *s, size_t n,
                         unsigned *problems)
{
    int rc = email__charset_to_utf8(charset, out, s, n);
    if (rc < 0)
        return rc;
    *problems |= rc ? EMAIL_PARSE_CHARSET : 0;
    return 0;
}

/* Text outside encoded words: UTF-8, or 8-bit octets read in the fallback charset. */
static int put_raw(email_buf_t *out, const char *s, size_t n, const char *fallback,
                   unsigned *problems)
{
    if (!email__utf8_valid(s, n)) {
        *problems |= EMAIL_PARSE_8BIT_HEADER;
        return put_converted(out, fallback, s, n, problems);
    }
    return put_converted(out, "UTF-8", s, n, problems);
}

static bool all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

int email__mp_decode_text(email_buf_t *out, const char *s, size_t n, const char *fallback,
                          unsigned *problems)
{
    email_buf_t run; /* octets of adjacent words in one charset, converted together */
    email__buf_init(&run);
    char run_cs[64] = "";
    size_t i = 0, k = 0;
    int rc = email__buf_reserve(out, 0);
    while (!rc && k + 1 < n) {
        const char *q = NULL;
        for (size_t j = k; !q && j + 1 < n; j++)
            q = s[j] == '=' && s[j + 1] == '?' ? s + j : NULL;
        word_t w;
        if (!q)
            break;
        size_t j = (size_t)(q - s);
        if (!parse_word(q, n - j, &w)) {
            k = j + 1;
            continue;
        }
        bool joined = run_cs[0] && all_space(s + i, j - i);
        if (run_cs[0] && (!joined || email__strcasecmp(run_cs, w.charset))) {
            rc = put_converted(out, run_cs, run.data ? run.data : "", run.len, problems);
            email__buf_reset(&run);
            run_cs[0] = '\0';
        }
        if (!rc && !joined)
            rc = put_raw(out, s + i, j - i, fallback, problems);
        strcpy(run_cs, w.charset);
        rc = rc ? rc : word_octets(&w, &run, problems);
        i = k = j + w.len;
    }
    if (!rc && run_cs[0])
        rc = put_converted(out, run_cs, run.data ? run.data : "", run.len, problems);
    rc = rc ? rc : put_raw(out, s + i, n - i, fallback, problems);
    email__buf_free(&run);
    return rc;
}

/* ---- Parameters (RFC 2045 5.1, RFC 2231) ---- */

#define MAX_SECTIONS 64

typedef struct param_sections {
    char *v[MAX_SECTIONS];  /* each section's value as written (quotes removed) */
    bool extended[MAX_SECTIONS];
    char *plain;            /* attr=value, when given that way */
} param_sections_t;

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* A value at *s: a quoted string (unescaped; an unclosed one runs to the end) or the text up to
   ';' trimmed. A malloc'ed copy, NULL when out of memory. */
static char *read_value(const char **s)
{
    const char *p = *s;
    email_buf_t b;
    email__buf_init(&b);
    int rc = email__buf_reserve(&b, 0);
    if (*p == '"') {
        for (p++; !rc && *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            rc = email__buf_putc(&b, *p);
        }
        p += *p == '"';
    } else {
        const char *end = p;
        while (*end && *end != ';')
            end++;
        size_t n = (size_t)(end - p);
        while (n && is_space(p[n - 1]))
            n--;
        rc = email__buf_append(&b, p, n);
        p = end;
    }
    *s = p;
    if (rc) {
        email__buf_free(&b);
        return NULL;
    }
    return email__buf_steal(&b, NULL);
}

/* Where attr's value goes, from the name as written: attr, attr*, attr*N, attr*N*. */
static char **param_slot(param_sections_t *ps, const char *name, size_t len, const char *attr)
{
    size_t alen = strlen(attr);
    if (len < alen || email__strncasecmp(name, attr, alen))
        return NULL;
    if (len == alen)
        return ps->plain ? NULL : &ps->plain; /* the first one counts */
    if (name[alen] != '*')
        return NULL;
    const char *p = name + alen + 1, *end = name + len;
    size_t index = 0;
    bool digits = false;
    while (p < end && *p >= '0' && *p <= '9' && index < MAX_SECTIONS) {
        index = index * 10 + (size_t)(*p++ - '0');
        digits = true;
    }
    bool ext = !digits || (p < end && *p == '*');
    p += digits && ext;
    if (p != end || index >= MAX_SECTIONS || ps->v[index])
        return NULL;
    ps->extended[index] = ext;
    return &ps->v[index];
}

/* Collects attr's sections from a field value; false when out of memory. */
static bool collect_sections(const char *value, const char *attr, param_sections_t *ps)
{
    const char *p = strchr(value, ';');
    while (p && *p) {
        while (*p == ';' || is_space(*p))
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ';' && !is_space(*p))
            p++;
        size_t len = (size_t)(p - name);
        while (is_space(*p))
            p++;
        if (*p != '=')
            continue;
        p++;
        while (is_space(*p))
            p++;
        char *v = read_value(&p);
        if (!v)
            return false;
        char **slot = param_slot(ps, name, len, attr);
        if (slot)
            *slot = v;
        else
            free(v);
        p = strchr(p, ';');
    }
    return true;
}

/* %XX decoded into out (a '%' without two hex digits stays as it is). */
static int put_pct(email_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '%' && hexv(s[1]) >= 0 && hexv(s[2]) >= 0) {
            if (email__buf_putc(out, (char)(hexv(s[1]) << 4 | hexv(s[2]))))
                return EMAIL_ENOMEM;
            s += 2;
        } else if (email__buf_putc(out, *s)) {
            return EMAIL_ENOMEM;
        }
    }
    return 0;
}

/* RFC 2231 sections 0, 1, ... (up to the first missing one) joined and decoded. */
static int join_sections(param_sections_t *ps, email_buf_t *out, const char *fallback,
                         unsigned *problems)
{
    email_buf_t raw;
    email__buf_init(&raw);
    char charset[64] = "";
    int rc = email__buf_reserve(&raw, 0);
    for (size_t i = 0; !rc && i < MAX_SECTIONS && ps->v[i]; i++) {
        const char *v = ps->v[i];
        if (i == 0 && ps->extended[0]) {
            const char *q1 = strchr(v, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
            if (q2) {
                size_t n = (size_t)(q1 - v);
                email__strlcpy(charset, v, n < sizeof charset ? n + 1 : sizeof charset);
                v = q2 + 1;
            }
        }
        rc = ps->extended[i] ? put_pct(&raw, v) : email__buf_append(&raw, v, strlen(v));
    }
    if (!rc && charset[0])
        rc = put_converted(out, charset, raw.data, raw.len, problems);
    else if (!rc)
        rc = email__mp_decode_text(out, raw.data, raw.len, fallback, problems);
    email__buf_free(&raw);
    return rc;
}

int email__mp_param(const char *value, const char *attr, const char *fallback, char **out,
                    unsigned *problems)
{
    param_sections_t ps;
    memset(&ps, 0, sizeof ps);
    *out = NULL;
    email_buf_t b;
    email__buf_init(&b);
    int rc = collect_sections(value, attr, &ps) ? 0 : EMAIL_ENOMEM;
    bool found = ps.v[0] || ps.plain;
    if (!rc && ps.v[0])
        rc = join_sections(&ps, &b, fallback, problems);
    else if (!rc && ps.plain)
        rc = email__mp_decode_text(&b, ps.plain, strlen(ps.plain), fallback, problems);
    for (size_t i = 0; i < MAX_SECTIONS; i++)
        free(ps.v[i]);
    free(ps.plain);
    if (rc || !found) {
        email__buf_free(&b);
        return rc;
    }
    *out = email__buf_steal(&b, NULL);
    return 1;
}

void email__mp_token(const char *value, char *dst, size_t size)
{
    size_t n = 0;
    while (is_space(*value))
        value++;
    for (; *value && !strchr(";(\n", *value) && !is_space(*value) && n + 1 < size; value++)
        dst[n++] = *value >= 'A' && *value <= 'Z' ? (char)(*value + 32) : *value;
    dst[n] = '\0';
}

/* ---- Dates (RFC 5322 3.3 and 4.3) ---- */

typedef struct date_parts {
    int year, month, day, hour, min, sec, zone; /* zone in minutes east of UTC */
} date_parts_t;

static int month_index(const char *t)
{
    static const char names[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    if (strlen(t) < 3)
        return -1;
    for (int i = 0; i < 12; i++)
        if (!email__strncasecmp(t, names + 3 * i, 3))
            return i + 1;
    return -1;
}

static bool all_digits(const char *t, size_t min, size_t max)
{
    size_t n = strlen(t);
    for (size_t i = 0; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return false;
    return n >= min && n <= max;
}

/* "+hhmm", "-hhmm", or the names RFC 5322 4.3 keeps; anything else is UTC (it says -0000). */
static int zone_minutes(const char *t)
{
    static const struct {
        const char *name;
        int hours;
    } names[] = {{"EST", -5}, {"EDT", -4}, {"CST", -6}, {"CDT", -5},
                 {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7}};
    if ((t[0] == '+' || t[0] == '-') && all_digits(t + 1, 4, 4)) {
        int v = ((t[1] - '0') * 10 + (t[2] - '0')) * 60 + (t[3] - '0') * 10 + (t[4] - '0');
        return t[0] == '-' ? -v : v;
    }
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!email__strcasecmp(t, names[i].name))
            return names[i].hours * 60;
    return 0;
}

/* "hh:mm" or "hh:mm:ss" (a fraction after the seconds is ignored). */
static bool read_time(const char *t, date_parts_t *d)
{
    char *end;
    long v[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (*t < '0' || *t > '9')
            return false;
        v[i] = strtol(t, &end, 10);
        if (end - t > 2 || (*end != ':' && i < 1))
            return false;
        t = end + (*end == ':');
        if (*end != ':')
            break;
    }
    d->hour = (int)v[0], d->min = (int)v[1], d->sec = (int)v[2];
    return v[0] < 24 && v[1] < 60 && v[2] <= 60;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The tokens of a date, its comments and commas taken out. */
static size_t date_tokens(const char *value, char buf[160], char *tok[8])
{
    size_t n = 0, depth = 0, ntok = 0;
    for (const char *p = value; *p && n < 159; p++) {
        depth += *p == '(';
        bool skip = depth > 0 || *p == ',';
        depth -= *p == ')' && depth;
        buf[n++] = skip ? ' ' : *p;
    }
    buf[n] = '\0';
    char *save;
    for (char *t = strtok_r(buf, " \t\r", &save); t && ntok < 8;
         t = strtok_r(NULL, " \t\r", &save))
        tok[ntok++] = t;
    return ntok;
}

int64_t email__mp_date(const char *value)
{
    char buf[160], *tok[8];
    size_t n = date_tokens(value, buf, tok), i = 0;
    date_parts_t d = {0, 0, 0, 0, 0, 0, 0};
    if (n && month_index(tok[0]) < 0 && !all_digits(tok[0], 1, 2))
        i++; /* the day of the week */
    bool asctime = i < n && month_index(tok[i]) > 0; /* "Jan 2 15:04:05 2006" */
    if (n < i + 4 || !all_digits(tok[i + asctime], 1, 2))
        return 0;
    d.month = month_index(tok[i + !asctime]);
    d.day = atoi(tok[i + asctime]);
    const char *year = tok[i + (asctime ? 3 : 2)], *time = tok[i + (asctime ? 2 : 3)];
    if (!all_digits(year, 2, 4) || !read_time(time, &d) || d.month < 1 || d.day < 1 ||
        d.day > 31)
        return 0;
    d.year = atoi(year);
    d.year += strlen(year) == 2 ? (d.year < 50 ? 2000 : 1900) : strlen(year) == 3 ? 1900 : 0;
    d.zone = n > i + 4 ? zone_minutes(tok[i + 4]) : 0;
    int64_t t = days_from_civil(d.year, d.month, d.day) * 86400 + d.hour * 3600 + d.min * 60 +
                d.sec;
    return t - (int64_t)d.zone * 60;
}
