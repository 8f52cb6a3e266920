/* email_message_t: the builder behind the public email_message_* calls, and its validation. */
#include "message_internal.h"

#include <gnutls/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "address.h"
#include "registry.h"
#include "error.h"
#include "idn.h"
#include "util.h"

/* ErrorInfo naming the field, e.g. "To: \"foo\" is not a valid address". */
static int fail(int code, const char *fmt, ...) EMAIL_PRINTF(2, 3);
static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    email__error_vset(code, fmt, ap);
    va_end(ap);
    return code;
}

/* Every public call starts here: ErrorInfo describes the latest call only. */
int email__message_begin(const email_message_t *m, const char *field)
{
    email__error_clear();
    return m ? 0 : fail(EMAIL_EINVAL, "%s: no message", field);
}

const message_content_t *email__message_content(const email_message_t *message)
{
    return &message->c;
}

email_message_t *email_message_new(void)
{
    email_message_t *m = calloc(1, sizeof *m);
    if (!m) {
        fail(EMAIL_ENOMEM, "Message: out of memory");
        return NULL;
    }
    m->id = email__registry_new_id();
    email__error_clear();
    return m;
}

static void parts_free(message_part_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        email__message_part_clear(&parts[i]);
    free(parts);
}

void email_message_free(email_message_t *m)
{
    if (!m)
        return;
    message_content_t *c = &m->c;
    address_list_t *lists[] = {&c->from, &c->sender, &c->reply_to, &c->to, &c->cc, &c->bcc};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
        email__address_list_free(lists[i]);
    free(c->subject);
    free(c->text);
    free(c->html);
    for (size_t i = 0; i < c->nheaders; i++) {
        free(c->headers[i].name);
        free(c->headers[i].value);
    }
    free(c->headers);
    parts_free(c->parts, c->nparts);
    free(c->date);
    free(c->message_id);
    free(m->dsn.envid);
    free(m->rcpt);
    email__message_read_free(m);
    free(m);
}

uint64_t email_message_id(const email_message_t *message)
{
    return message ? message->id : 0;
}

/* ---- Addresses ---- */

/* FNV-1a of the address with ASCII letters folded, for the case-insensitive dedupe. */
static size_t addr_hash(const char *s)
{
    uint64_t h = 14695981039346656037u;
    for (; *s; s++)
        h = (h ^ (unsigned char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s)) * 1099511628211u;
    return (size_t)h;
}

/* Every add rebuilds the list: a hash set keeps that linear even with thousands of recipients. */
static int rebuild_recipients(email_message_t *m)
{
    const address_list_t *lists[] = {&m->c.to, &m->c.cc, &m->c.bcc};
    size_t total = m->c.to.n + m->c.cc.n + m->c.bcc.n, cap = 8;
    while (cap < 2 * total)
        cap *= 2;
    const char **v = malloc((total ? total : 1) * sizeof *v);
    size_t *slots = calloc(cap, sizeof *slots); /* index + 1 in v, 0 when free */
    if (!v || !slots) {
        free(v);
        free(slots);
        return EMAIL_ENOMEM;
    }
    size_t n = 0;
    for (size_t l = 0; l < 3; l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            const char *a = lists[l]->v[i].addr;
            size_t h = addr_hash(a) & (cap - 1);
            while (slots[h] && email__strcasecmp(v[slots[h] - 1], a))
                h = (h + 1) & (cap - 1);
            if (!slots[h]) {
                v[n++] = a;
                slots[h] = n;
            }
        }
    }
    free(slots);
    free(m->rcpt);
    m->rcpt = v;
    m->nrcpt = n;
    return 0;
}

int email__message_lists_changed(email_message_t *m)
{
    int rc = rebuild_recipients(m);
    return rc ? rc : email__message_show(m);
}

/* Parses text for field (NULL or "" refused). */
static int parse_field(const char *field, const char *text, bool list, address_list_t *out)
{
    if (!text || !*text)
        return fail(EMAIL_EINVAL, "%s: no address given", field);
    if (email__has_crlf(text))
        return fail(EMAIL_EINVAL, "%s: line breaks are not allowed in an address", field);
    if (!email__utf8_valid(text, strlen(text)))
        return fail(EMAIL_EINVAL, "%s: the address is not valid UTF-8", field);
    char why[200];
    int rc = email__address_parse(text, list, out, why, sizeof why);
    if (rc == EMAIL_EINVAL)
        return fail(rc, "%s: %s", field, why);
    return rc ? fail(rc, "%s: out of memory", field) : 0;
}

/* set_from / set_sender / set_reply_to: replace the field; NULL or "" removes it. */
static int set_addresses(email_message_t *m, const char *field, address_list_t *dst,
                         const char *text, bool list)
{
    int rc = email__message_begin(m, field);
    if (rc)
        return rc;
    address_list_t parsed = {NULL, 0};
    if (text && *text && (rc = parse_field(field, text, list, &parsed)))
        return rc;
    email__address_list_free(dst);
    *dst = parsed;
    return email__message_show(m) ? fail(EMAIL_ENOMEM, "%s: out of memory", field) : 0;
}

/* add_to / add_cc / add_bcc: append, and keep the envelope recipients in step. */
static int add_addresses(email_message_t *m, const char *field, address_list_t *dst,
                         const char *text)
{
    int rc = email__message_begin(m, field);
    if (rc)
        return rc;
    address_list_t parsed;
    if ((rc = parse_field(field, text, true, &parsed)))
        return rc;
    size_t before = dst->n;
    rc = email__address_list_append(dst, &parsed);
    email__address_list_free(&parsed);
    if (!rc && (rc = rebuild_recipients(m)))
        email__address_list_truncate(dst, before); /* the message stays as it was */
    /* out of memory here leaves the addresses added, the getters' lists empty */
    if (!rc)
        rc = email__message_show(m);
    return rc ? fail(rc, "%s: out of memory", field) : 0;
}

int email_message_set_from(email_message_t *m, const char *address)
{
    return set_addresses(m, "From", m ? &m->c.from : NULL, address, false);
}

int email_message_set_sender(email_message_t *m, const char *address)
{
    return set_addresses(m, "Sender", m ? &m->c.sender : NULL, address, false);
}

int email_message_set_reply_to(email_message_t *m, const char *address)
{
    return set_addresses(m, "Reply-To", m ? &m->c.reply_to : NULL, address, true);
}

int email_message_add_to(email_message_t *m, const char *address)
{
    return add_addresses(m, "To", m ? &m->c.to : NULL, address);
}

int email_message_add_cc(email_message_t *m, const char *address)
{
    return add_addresses(m, "Cc", m ? &m->c.cc : NULL, address);
}

int email_message_add_bcc(email_message_t *m, const char *address)
{
    return add_addresses(m, "Bcc", m ? &m->c.bcc : NULL, address);
}

/* ---- Text ---- */

/* Replaces *dst with a copy of utf8 (NULL clears it). */
static int set_text(email_message_t *m, const char *field, char **dst, const char *utf8,
                    bool one_line)
{
    int rc = email__message_begin(m, field);
    if (rc)
        return rc;
    if (utf8 && one_line && email__has_crlf(utf8))
        return fail(EMAIL_EINVAL, "%s: line breaks are not allowed", field);
    if (utf8 && !email__utf8_valid(utf8, strlen(utf8)))
        return fail(EMAIL_EINVAL, "%s: not valid UTF-8", field);
    char *copy = email__strdup(utf8);
    if (utf8 && !copy)
        return fail(EMAIL_ENOMEM, "%s: out of memory", field);
    free(*dst);
    *dst = copy;
    return 0;
}

int email_message_set_subject(email_message_t *m, const char *utf8)
{
    return set_text(m, "Subject", m ? &m->c.subject : NULL, utf8, true);
}

int email_message_set_text_body(email_message_t *m, const char *utf8)
{
    return set_text(m, "Text body", m ? &m->c.text : NULL, utf8, false);
}

int email_message_set_html_body(email_message_t *m, const char *utf8)
{
    return set_text(m, "HTML body", m ? &m->c.html : NULL, utf8, false);
}

/* ---- Headers, priority, notification, charsets ---- */

/* Headers the library writes itself: a second copy from the caller would contradict it. */
static bool header_reserved(const char *name)
{
    static const char *const reserved[] = {
        "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID",
        "MIME-Version", "X-Priority", "Importance", "Disposition-Notification-To",
        "In-Reply-To", "References"};
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (!email__strcasecmp(name, reserved[i]))
            return true;
    return !email__strncasecmp(name, "Content-", 8);
}

int email_message_add_header(email_message_t *m, const char *name, const char *value)
{
    int rc = email__message_begin(m, "Header");
    if (rc)
        return rc;
    size_t n = name ? strlen(name) : 0;
    if (!n || n > 76)
        return fail(EMAIL_EINVAL, "Header: a name of 1 to 76 characters is needed");
    for (size_t i = 0; i < n; i++)
        if (name[i] <= ' ' || name[i] > '~' || name[i] == ':')
            return fail(EMAIL_EINVAL, "Header: the name must be printable ASCII without ':'");
    if (header_reserved(name))
        return fail(EMAIL_EINVAL, "Header \"%s\": written by the library itself", name);
    if (!value)
        value = "";
    if (email__has_crlf(value))
        return fail(EMAIL_EINVAL, "Header \"%s\": line breaks are not allowed", name);
    if (!email__utf8_valid(value, strlen(value)))
        return fail(EMAIL_EINVAL, "Header \"%s\": the value is not valid UTF-8", name);
    message_content_t *c = &m->c;
    message_header_t *v = realloc(c->headers, (c->nheaders + 1) * sizeof *v);
    if (!v)
        return fail(EMAIL_ENOMEM, "Header \"%s\": out of memory", name);
    c->headers = v;
    message_header_t h = {email__strdup(name), email__strdup(value)};
    if (!h.name || !h.value) {
        free(h.name);
        free(h.value);
        return fail(EMAIL_ENOMEM, "Header \"%s\": out of memory", name);
    }
    c->headers[c->nheaders++] = h;
    return 0;
}

/* A msg-id as RFC 5322 3.6.4 writes it: "<left@right>", printable ASCII, no space. */
static bool msg_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 5 || n > 250 || id[0] != '<' || id[n - 1] != '>')
        return false;
    const char *at = memchr(id, '@', n);
    if (!at || at == id + 1 || at == id + n - 2)
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (id[i] <= ' ' || id[i] > '~' || id[i] == '<' || id[i] == '>')
            return false;
    return true;
}

/* Sets (replace) or extends (append, space-separated) one of the library's own header fields. */
static int own_header(email_message_t *m, const char *name, const char *value, bool append)
{
    message_content_t *c = &m->c;
    for (size_t i = 0; i < c->nheaders; i++) {
        if (email__strcasecmp(c->headers[i].name, name) != 0)
            continue;
        size_t old = append ? strlen(c->headers[i].value) : 0;
        char *v = malloc(old + 1 + strlen(value) + 1);
        if (!v)
            return fail(EMAIL_ENOMEM, "%s: out of memory", name);
        if (append)
            sprintf(v, "%s %s", c->headers[i].value, value);
        else
            strcpy(v, value);
        free(c->headers[i].value);
        c->headers[i].value = v;
        return 0;
    }
    message_header_t *v = realloc(c->headers, (c->nheaders + 1) * sizeof *v);
    if (!v)
        return fail(EMAIL_ENOMEM, "%s: out of memory", name);
    c->headers = v;
    message_header_t h = {email__strdup(name), email__strdup(value)};
    if (!h.name || !h.value) {
        free(h.name);
        free(h.value);
        return fail(EMAIL_ENOMEM, "%s: out of memory", name);
    }
    c->headers[c->nheaders++] = h;
    return 0;
}

int email_message_set_in_reply_to(email_message_t *m, const char *message_id)
{
    int rc = email__message_begin(m, "In-Reply-To");
    if (rc)
        return rc;
    if (!msg_id_valid(message_id))
        return fail(EMAIL_EINVAL, "In-Reply-To: \"%s\" is not a message id such as <id@host>",
                    message_id ? message_id : "(null)");
    return own_header(m, "In-Reply-To", message_id, false);
}

int email_message_add_reference(email_message_t *m, const char *message_id)
{
    int rc = email__message_begin(m, "References");
    if (rc)
        return rc;
    if (!msg_id_valid(message_id))
        return fail(EMAIL_EINVAL, "References: \"%s\" is not a message id such as <id@host>",
                    message_id ? message_id : "(null)");
    return own_header(m, "References", message_id, true);
}

int email_message_set_priority(email_message_t *m, int priority)
{
    int rc = email__message_begin(m, "Priority");
    if (rc)
        return rc;
    /* 3 is "normal" on the X-Priority scale the other values come from */
    if (priority == 3)
        priority = EMAIL_PRIORITY_NORMAL;
    if (priority < EMAIL_PRIORITY_NORMAL || priority > EMAIL_PRIORITY_LOWEST)
        return fail(EMAIL_EINVAL, "Priority: %d is not an EMAIL_PRIORITY_... value", priority);
    m->c.priority = priority;
    return 0;
}

int email_message_set_disposition_notification(email_message_t *m, bool on)
{
    int rc = email__message_begin(m, "Disposition-Notification-To");
    if (!rc)
        m->c.notification = on;
    return rc;
}

/* RFC 3461: NEVER alone, or conditions among SUCCESS, FAILURE and DELAY. */
static int dsn_check(int notify, const char *ret, const char *envid, const char **ret_out)
{
    int conditions = EMAIL_NOTIFY_SUCCESS | EMAIL_NOTIFY_FAILURE | EMAIL_NOTIFY_DELAY;
    if (notify & ~(conditions | EMAIL_NOTIFY_NEVER))
        return fail(EMAIL_EINVAL, "DSN: notify %#x is not made of EMAIL_NOTIFY_... flags",
                    (unsigned)notify);
    if ((notify & EMAIL_NOTIFY_NEVER) && (notify & conditions))
        return fail(EMAIL_EINVAL, "DSN: notify EMAIL_NOTIFY_NEVER cannot be combined with "
                                  "SUCCESS, FAILURE or DELAY");
    *ret_out = !ret                              ? NULL
               : !email__strcasecmp(ret, "FULL") ? "FULL"
               : !email__strcasecmp(ret, "HDRS") ? "HDRS"
                                                 : "";
    if (*ret_out && !**ret_out)
        return fail(EMAIL_EINVAL, "DSN: ret \"%.40s\" is not \"FULL\" or \"HDRS\"", ret);
    size_t n = envid ? strlen(envid) : 0;
    if (n > 100)
        return fail(EMAIL_EINVAL, "DSN: envid is %zu characters long, 100 at most", n);
    for (size_t i = 0; i < n; i++)
        if (envid[i] < ' ' || envid[i] > '~')
            return fail(EMAIL_EINVAL, "DSN: envid must be printable ASCII (character %zu is "
                                      "not)", i + 1);
    return 0;
}

int email_message_set_dsn(email_message_t *m, int notify, const char *ret, const char *envid)
{
    int rc = email__message_begin(m, "DSN");
    const char *r;
    if (rc || (rc = dsn_check(notify, ret, envid, &r)))
        return rc;
    char *id = envid && *envid ? email__strdup(envid) : NULL;
    if (envid && *envid && !id)
        return fail(EMAIL_ENOMEM, "DSN: out of memory");
    free(m->dsn.envid);
    m->dsn = (message_dsn_t){notify, r, id};
    return 0;
}

static mail_mode_t mail_mode_parse(const char *name)
{
    static const char *const names[] = {EMAIL_MAIL_MODE_UTF8, EMAIL_MAIL_MODE_UTF8_IN_BASE64,
                                        EMAIL_MAIL_MODE_ISO88591, EMAIL_MAIL_MODE_ISO2022JP};
    static const mail_mode_t modes[] = {MAIL_MODE_UTF8_QP, MAIL_MODE_UTF8_B64,
                                        MAIL_MODE_ISO88591, MAIL_MODE_ISO2022JP};
    for (size_t i = 0; name && i < 4; i++)
        if (!email__strcasecmp(name, names[i]))
            return modes[i];
    return MAIL_MODE_UNSET;
}

/* Both modes checked before either is stored, so a refusal changes nothing. */
static int parse_modes(const char *header_mode, const char *body_mode, mail_mode_t *h,
                       mail_mode_t *b)
{
    const char *names[] = {header_mode, body_mode};
    mail_mode_t *modes[] = {h, b};
    for (size_t i = 0; i < 2; i++) {
        if (!names[i])
            continue;
        *modes[i] = mail_mode_parse(names[i]);
        if (*modes[i] == MAIL_MODE_UNSET)
            return fail(EMAIL_EINVAL, "Charsets: \"%.60s\" is not an EMAIL_MAIL_MODE_... value",
                        names[i]);
    }
    return 0;
}

int email_message_set_charsets(email_message_t *m, const char *header_mode,
                               const char *body_mode)
{
    int rc = email__message_begin(m, "Charsets");
    if (rc)
        return rc;
    mail_mode_t h = m->c.header_mode, b = m->c.body_mode;
    if ((rc = parse_modes(header_mode, body_mode, &h, &b)))
        return rc;
    m->c.header_mode = h;
    m->c.body_mode = b;
    return 0;
}

/* ---- Freezing, envelope ---- */

static bool dup_str(char **dst, const char *src)
{
    *dst = email__strdup(src);
    return !src || *dst;
}

static bool copy_parts(message_content_t *c, const message_content_t *s)
{
    if (!s->nparts)
        return true;
    if (!(c->parts = calloc(s->nparts, sizeof *c->parts)))
        return false;
    c->nparts = s->nparts;
    for (size_t i = 0; i < s->nparts; i++) {
        const message_part_t *from = &s->parts[i];
        message_part_t *to = &c->parts[i];
        to->kind = from->kind;
        to->length = from->length;
        if (!dup_str(&to->path, from->path) || !dup_str(&to->name, from->name) ||
            !dup_str(&to->content_type, from->content_type) ||
            !dup_str(&to->content_id, from->content_id))
            return false;
        if (from->data) {
            if (!(to->data = malloc(from->length ? from->length : 1)))
                return false;
            if (from->length)
                memcpy(to->data, from->data, from->length);
        }
    }
    return true;
}

/* A deep copy with the same id (file parts keep their path). */
static int copy_message(const email_message_t *m, email_message_t **out)
{
    email_message_t *d = calloc(1, sizeof *d);
    if (!d)
        return EMAIL_ENOMEM;
    const message_content_t *s = &m->c;
    message_content_t *c = &d->c;
    d->id = m->id;
    d->dsn = m->dsn;
    d->dsn.envid = NULL;
    c->priority = s->priority;
    c->notification = s->notification;
    c->header_mode = s->header_mode;
    c->body_mode = s->body_mode;
    const address_list_t *src[] = {&s->from, &s->sender, &s->reply_to, &s->to, &s->cc, &s->bcc};
    address_list_t *dst[] = {&c->from, &c->sender, &c->reply_to, &c->to, &c->cc, &c->bcc};
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof src / sizeof *src; i++)
        ok = !email__address_list_append(dst[i], src[i]);
    ok = ok && dup_str(&c->subject, s->subject) && dup_str(&c->text, s->text) &&
         dup_str(&c->html, s->html) && dup_str(&c->date, s->date) &&
         dup_str(&c->message_id, s->message_id) && dup_str(&d->dsn.envid, m->dsn.envid);
    if (ok && s->nheaders) {
        ok = (c->headers = calloc(s->nheaders, sizeof *c->headers)) != NULL;
        c->nheaders = ok ? s->nheaders : 0;
        for (size_t i = 0; ok && i < s->nheaders; i++)
            ok = dup_str(&c->headers[i].name, s->headers[i].name) &&
                 dup_str(&c->headers[i].value, s->headers[i].value);
    }
    ok = ok && copy_parts(c, s) && !rebuild_recipients(d) && !email__message_show(d);
    if (!ok) {
        email_message_free(d);
        return EMAIL_ENOMEM;
    }
    *out = d;
    return 0;
}

/* RFC 5322 date-time in local time with its numeric zone, e.g. "Tue, 04 Mar 2025 14:03:02 +0100";
   the names are written here because strftime's depend on the locale. */
static char *make_date(void)
{
    static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm))
        return NULL;
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    off = off < 0 ? -off : off;
    char buf[128];
    snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec, sign, off / 60, off % 60);
    return email__strdup(buf);
}

/* <128 random bits in hex @ the From domain>: a domain that is not ASCII cannot go in a
   Message-ID read by every client, so its A-label does (the address was checked when set). */
static int make_message_id(const message_content_t *c, char **out)
{
    unsigned char rnd[16];
    if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd) < 0)
        return fail(EMAIL_EIO, "Message-ID: no random numbers available");
    char *from;
    if (email__idn_addr_ascii(c->from.v[0].addr, &from, NULL, 0))
        return fail(EMAIL_ENOMEM, "Message-ID: out of memory");
    email_buf_t b;
    email__buf_init(&b);
    int rc = email__buf_putc(&b, '<');
    for (size_t i = 0; !rc && i < sizeof rnd; i++)
        rc = email__buf_printf(&b, "%02x", rnd[i]);
    rc = rc ? rc : email__buf_printf(&b, "@%s>", strrchr(from, '@') + 1);
    free(from);
    if (rc) {
        email__buf_free(&b);
        return fail(EMAIL_ENOMEM, "Message-ID: out of memory");
    }
    *out = email__buf_steal(&b, NULL);
    return 0;
}

static mail_mode_t pick_mode(mail_mode_t own, mail_mode_t fallback)
{
    return own != MAIL_MODE_UNSET ? own : fallback != MAIL_MODE_UNSET ? fallback
                                                                       : MAIL_MODE_UTF8_QP;
}

/* email__message_freeze, and email__message_freeze_draft without the recipient check. */
static int freeze(const email_message_t *m, const char *header_mode, const char *body_mode,
                  bool need_recipient, email_message_t **copy)
{
    int rc = email__message_begin(m, "Message");
    if (rc)
        return rc;
    if (!m->c.from.n)
        return fail(EMAIL_EINVAL, "From: the message has no sender");
    if (m->parsed && m->parsed->bad_addresses)
        return fail(EMAIL_EINVAL, "Message: %zu of its addresses could not be read as addresses "
                                  "when it was parsed", m->parsed->bad_addresses);
    if (need_recipient && !m->nrcpt)
        return fail(EMAIL_EINVAL, "To: the message has no recipient (To, Cc or Bcc)");
    mail_mode_t h = MAIL_MODE_UNSET, b = MAIL_MODE_UNSET;
    if ((rc = parse_modes(header_mode, body_mode, &h, &b)))
        return rc;
    email_message_t *d;
    if (copy_message(m, &d))
        return fail(EMAIL_ENOMEM, "Message: out of memory");
    d->c.header_mode = pick_mode(d->c.header_mode, h);
    d->c.body_mode = pick_mode(d->c.body_mode, b);
    if (!d->c.date && !(d->c.date = make_date()))
        rc = fail(EMAIL_ENOMEM, "Date: out of memory");
    if (!rc && !d->c.message_id)
        rc = make_message_id(&d->c, &d->c.message_id);
    if (rc) {
        email_message_free(d);
        return rc;
    }
    *copy = d;
    return 0;
}

int email__message_freeze(const email_message_t *message, const char *header_mode,
                   const char *body_mode, email_message_t **copy, char *err, size_t errlen)
{
    int rc = freeze(message, header_mode, body_mode, true, copy);
    if (rc && err && errlen)
        email__strlcpy(err, email__error_text(), errlen);
    return rc;
}

int email__message_freeze_draft(const email_message_t *message, email_message_t **copy)
{
    return freeze(message, NULL, NULL, false, copy);
}

const char *email__message_envelope_from(const email_message_t *message)
{
    const address_list_t *l = message->c.sender.n ? &message->c.sender : &message->c.from;
    return l->n ? l->v[0].addr : "";
}

size_t email__message_recipients(const email_message_t *message, const char *const **list)
{
    *list = message->rcpt;
    return message->nrcpt;
}

const char *email__message_utf8_address(const message_content_t *c)
{
    const address_list_t *lists[] = {&c->from, &c->sender, &c->reply_to, &c->to, &c->cc, &c->bcc};
    for (size_t l = 0; l < sizeof lists / sizeof *lists; l++)
        for (size_t i = 0; i < lists[l]->n; i++)
            if (email__idn_local_utf8(lists[l]->v[i].addr))
                return lists[l]->v[i].addr;
    return NULL;
}

const message_dsn_t *email__message_dsn(const email_message_t *message)
{
    return &message->dsn;
}
