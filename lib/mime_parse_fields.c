/* The message's own header fields for the MIME parser: every field decoded for the getters,
   the address lists read loosely, Subject, Date, Message-ID, and the fields kept for sending
   the message again. */
#include "mime_parse_internal.h"

#include <stdlib.h>
#include <string.h>

#include "emailsession.h"

const char *email__mp_field(const char *head, const char *name, size_t *n)
{
    size_t len = strlen(name);
    for (const char *line = head; line && *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        const char *p = line + len;
        if (p <= end && !email__strncasecmp(line, name, len)) {
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            if (p < end && *p == ':') {
                for (p++; p < end && (*p == ' ' || *p == '\t'); p++)
                    ;
                *n = (size_t)(end - p);
                return p;
            }
        }
        line = *end ? end + 1 : NULL;
    }
    return NULL;
}

/* ---- Addresses ---- */

/* Where the next ',' (or ';' when stop_semicolon) outside quotes, comments and angle brackets
   is, or the end. */
static size_t element_end(const char *s, size_t n, char stop)
{
    int depth = 0;
    bool quoted = false, angle = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (quoted) {
            i += c == '\\';
            quoted = c != '"';
        } else if (c == '"') {
            quoted = true;
        } else if (c == '(') {
            depth++;
        } else if (c == ')' && depth) {
            depth--;
        } else if (!depth && c == stop && (!angle || stop == '>')) {
            return i;
        } else if (!depth && c == '<') {
            angle = true;
        } else if (!depth && c == '>') {
            angle = false;
        }
    }
    return n;
}

/* s[0..n) with quotes, backslashes and (when drop_comments) comments taken out; the first
   comment's text goes to comment (when not NULL and empty). */
static int strip(email_buf_t *out, const char *s, size_t n, bool drop_comments,
                 email_buf_t *comment)
{
    int depth = 0, rc = email__buf_reserve(out, 0);
    bool quoted = false;
    for (size_t i = 0; !rc && i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n && (quoted || depth)) {
            c = s[++i];
        } else if (!depth && c == '"') {
            quoted = !quoted;
            continue;
        } else if (!quoted && drop_comments && (c == '(' || (c == ')' && depth))) {
            depth += c == '(' ? 1 : -1;
            continue;
        }
        rc = depth ? (comment ? email__buf_putc(comment, c) : 0) : email__buf_putc(out, c);
    }
    return rc;
}

static void trim(email_buf_t *b)
{
    size_t start = 0;
    while (start < b->len && (b->data[start] == ' ' || b->data[start] == '\t'))
        start++;
    email__buf_consume(b, start);
    while (b->len && (b->data[b->len - 1] == ' ' || b->data[b->len - 1] == '\t'))
        b->data[--b->len] = '\0';
}

/* One mailbox: "Name <addr>", "addr (Name)" or "addr"; an obsolete route is dropped. */
static int read_mailbox(const char *s, size_t n, email_buf_t *name, email_buf_t *addr)
{
    email_buf_t comment;
    email__buf_init(&comment);
    size_t lt = element_end(s, n, '<');
    int rc;
    if (lt < n) {
        const char *a = s + lt + 1;
        size_t alen = element_end(a, n - lt - 1, '>');
        const char *colon = memchr(a, ':', alen); /* <@route,@route:addr> */
        if (colon) {
            alen -= (size_t)(colon + 1 - a);
            a = colon + 1;
        }
        rc = strip(name, s, lt, true, NULL);
        rc = rc ? rc : strip(addr, a, alen, true, NULL);
    } else {
        rc = strip(addr, s, n, true, &comment);
        rc = rc ? rc : email__buf_append(name, comment.data, comment.len);
    }
    email__buf_free(&comment);
    return rc;
}

static int add_address(address_list_t *l, email_buf_t *name, email_buf_t *addr)
{
    address_t *v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v)
        return EMAIL_ENOMEM;
    l->v = v;
    v[l->n].name = name->len ? email__buf_steal(name, NULL) : NULL;
    v[l->n].addr = email__buf_steal(addr, NULL);
    if (!v[l->n].addr) {
        free(v[l->n].name);
        return EMAIL_ENOMEM;
    }
    l->n++;
    return 0;
}

/* Decoded display name and addr-spec of one list element appended to l (nothing when it holds
   no address, as "undisclosed-recipients:;"). */
static int read_element(email_message_t *m, address_list_t *l, const char *s, size_t n,
                        const char *fallback)
{
    size_t colon = element_end(s, n, ':');
    if (colon < n && colon < element_end(s, n, '<')) { /* a group's name */
        s += colon + 1;
        n -= colon + 1;
    }
    n = element_end(s, n, ';');
    email_buf_t rawname, rawaddr, name, addr;
    email__buf_init(&rawname), email__buf_init(&rawaddr);
    email__buf_init(&name), email__buf_init(&addr);
    int rc = read_mailbox(s, n, &rawname, &rawaddr);
    unsigned *problems = &m->parsed->problems;
    rc = rc ? rc : email__mp_decode_text(&name, rawname.data, rawname.len, fallback, problems);
    for (size_t i = 0; !rc && i < rawaddr.len; i++)
        if (rawaddr.data[i] != ' ' && rawaddr.data[i] != '\t')
            rc = email__buf_putc(&addr, rawaddr.data[i]);
    trim(&name);
    if (!rc && addr.len) {
        email_buf_t valid; /* valid UTF-8, as every string the getters give */
        email__buf_init(&valid);
        rc = email__mp_decode_text(&valid, addr.data, addr.len, fallback, problems);
        if (!rc && !email__address_spec_valid(valid.data, valid.len)) {
            *problems |= EMAIL_PARSE_ADDRESS;
            m->parsed->bad_addresses++;
        }
        rc = rc ? rc : add_address(l, &name, &valid);
        email__buf_free(&valid);
    }
    email__buf_free(&rawname), email__buf_free(&rawaddr);
    email__buf_free(&name), email__buf_free(&addr);
    return rc;
}

static int read_addresses(email_message_t *m, address_list_t *l, const char *s, size_t n,
                          const char *fallback)
{
    int rc = 0;
    while (!rc && n) {
        size_t end = element_end(s, n, ',');
        rc = read_element(m, l, s, end, fallback);
        end += end < n;
        s += end;
        n -= end;
    }
    return rc;
}

/* ---- The fields ---- */

/* Fields not kept when the message is sent again: transport traces, signatures over the old
   bytes, the MIME structure (composed anew), and what the composer writes itself. */
static bool transport_field(const char *name)
{
    static const char *const names[] = {
        "Received", "Return-Path", "DKIM-Signature", "Authentication-Results", "Received-SPF",
        "Delivered-To", "X-Original-To", "MIME-Version", "Status", "X-Status", "X-UID",
        "X-Keywords", "Lines", "Content-Length", "Bcc", "X-Priority", "Importance",
        "Disposition-Notification-To", "Domainkey-Signature", "X-Google-DKIM-Signature"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!email__strcasecmp(name, names[i]))
            return true;
    return !email__strncasecmp(name, "Content-", 8) || !email__strncasecmp(name, "ARC-", 4);
}

/* A name the composer can write again: printable ASCII without ':', 1 to 76 characters. */
static bool name_writable(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (name[i] <= ' ' || name[i] > '~' || name[i] == ':')
            return false;
    return n && n <= 76;
}

static int push_header(message_header_t **v, size_t *n, const char *name, size_t namelen,
                       const char *value)
{
    message_header_t *grown = realloc(*v, (*n + 1) * sizeof *grown);
    if (!grown)
        return EMAIL_ENOMEM;
    *v = grown;
    message_header_t h = {email__strndup(name, namelen), email__strdup(value)};
    if (!h.name || !h.value) {
        free(h.name);
        free(h.value);
        return EMAIL_ENOMEM;
    }
    grown[(*n)++] = h;
    return 0;
}

/* The first "<...>" of a Message-ID field, when it is one the composer can write again. */
static char *message_id(const char *v, size_t n)
{
    const char *lt = memchr(v, '<', n), *gt = lt ? memchr(lt, '>', n - (size_t)(lt - v)) : NULL;
    if (!gt || !memchr(lt, '@', (size_t)(gt - lt)) || gt - lt > 250)
        return NULL;
    for (const char *p = lt + 1; p < gt; p++)
        if (*p <= ' ' || *p > '~' || *p == '<')
            return NULL;
    return email__strndup(lt, (size_t)(gt - lt) + 1);
}

/* What the field name means for the message's own fields; the raw value is v[0..n). */
static int known_field(email_message_t *m, const char *name, const char *v, size_t n,
                       const char *decoded, const char *fallback, bool *keep)
{
    message_content_t *c = &m->c;
    static const char *const lists[] = {"From", "Sender", "Reply-To", "To", "Cc", "Bcc"};
    address_list_t *dst[] = {&c->from, &c->sender, &c->reply_to, &c->to, &c->cc, &c->bcc};
    *keep = false;
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
        if (!email__strcasecmp(name, lists[i]))
            /* one From and one Sender: a second one adds nothing */
            return i < 2 && dst[i]->n ? 0 : read_addresses(m, dst[i], v, n, fallback);
    if (!email__strcasecmp(name, "Subject") && !c->subject)
        return (c->subject = email__strdup(decoded)) ? 0 : EMAIL_ENOMEM;
    if (!email__strcasecmp(name, "Date") && !c->date) {
        m->parsed->date = email__mp_date(decoded);
        /* written again as it was when it is a date at all */
        if (m->parsed->date && email__is_ascii(v, n) && n < 100)
            return (c->date = email__strndup(v, n)) ? 0 : EMAIL_ENOMEM;
        return 0;
    }
    if (!email__strcasecmp(name, "Message-ID") && !c->message_id) {
        c->message_id = message_id(v, n);
        return 0;
    }
    if (!email__strcasecmp(name, "X-Priority") && n && v[0] >= '1' && v[0] <= '5')
        c->priority = v[0] == '3' ? EMAIL_PRIORITY_NORMAL : v[0] - '0';
    if (!email__strcasecmp(name, "Disposition-Notification-To"))
        c->notification = true;
    *keep = !transport_field(name) && name_writable(name) &&
            email__strcasecmp(name, "Subject") && email__strcasecmp(name, "Date") &&
            email__strcasecmp(name, "Message-ID");
    return 0;
}

/* One "Name: value" line of the block. */
static int one_field(email_message_t *m, const char *line, size_t len, const char *fallback)
{
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return 0;
    size_t namelen = (size_t)(colon - line);
    while (namelen && (line[namelen - 1] == ' ' || line[namelen - 1] == '\t'))
        namelen--;
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    size_t n = (size_t)(end - v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    email_buf_t decoded, name;
    email__buf_init(&decoded);
    email__buf_init(&name);
    message_parsed_t *p = m->parsed;
    int rc = email__mp_decode_text(&name, line, namelen, NULL, &p->problems);
    rc = rc ? rc : email__mp_decode_text(&decoded, v, n, fallback, &p->problems);
    rc = rc ? rc : push_header(&p->all, &p->nall, name.data, name.len, decoded.data);
    bool keep = false;
    rc = rc ? rc : known_field(m, name.data, v, n, decoded.data, fallback, &keep);
    if (!rc && keep)
        rc = push_header(&m->c.headers, &m->c.nheaders, name.data, name.len, decoded.data);
    email__buf_free(&decoded);
    email__buf_free(&name);
    return rc;
}

int email__mp_message_fields(email_message_t *m, const char *head, const char *fallback)
{
    int rc = 0;
    for (const char *line = head; !rc && line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        rc = one_field(m, line, len, fallback);
        line = end ? end + 1 : NULL;
    }
    return rc ? rc : email__message_lists_changed(m);
}
