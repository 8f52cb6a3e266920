/* Reading messages: email_message_from_mime over the MIME parser, and the email_message_get_*
   getters, which read any message (parsed, or built with the email_message_* setters). */
#include "message_internal.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "mime_parse.h"
#include "util.h"

/* ---- The address lists as the getters give them ---- */

static void shown_clear(message_shown_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    free(s->joined);
    memset(s, 0, sizeof *s);
}

/* "Name <addr>", the name quoted when it holds what would end it early. */
static char *show_address(const address_t *a)
{
    if (!a->name)
        return email__strdup(a->addr);
    email_buf_t b;
    email__buf_init(&b);
    bool quote = strpbrk(a->name, ",;:<>@()[]\"\\") != NULL;
    int rc = quote ? email__buf_putc(&b, '"') : 0;
    for (const char *p = a->name; !rc && quote && *p; p++)
        rc = (*p == '"' || *p == '\\') ? email__buf_printf(&b, "\\%c", *p)
                                       : email__buf_putc(&b, *p);
    if (!rc && !quote)
        rc = email__buf_puts(&b, a->name);
    rc = rc ? rc : email__buf_printf(&b, "%s <%s>", quote ? "\"" : "", a->addr);
    if (rc) {
        email__buf_free(&b);
        return NULL;
    }
    return email__buf_steal(&b, NULL);
}

static int show_list(message_shown_t *s, const address_list_t *l)
{
    if (!l->n)
        return 0;
    email_buf_t joined;
    email__buf_init(&joined);
    int rc = (s->v = calloc(l->n, sizeof *s->v)) ? 0 : EMAIL_ENOMEM;
    for (size_t i = 0; !rc && i < l->n; i++) {
        if (!(s->v[i] = show_address(&l->v[i])))
            rc = EMAIL_ENOMEM;
        s->n = i + 1;
        rc = rc ? rc : email__buf_printf(&joined, "%s%s", i ? ", " : "", s->v[i]);
    }
    s->joined = rc ? NULL : email__buf_steal(&joined, NULL);
    email__buf_free(&joined);
    return rc;
}

int email__message_show(email_message_t *m)
{
    const message_content_t *c = &m->c;
    const address_list_t *lists[SHOWN_LISTS] = {&c->from, &c->sender, &c->reply_to,
                                                &c->to,   &c->cc,     &c->bcc};
    int rc = 0;
    for (size_t i = 0; i < SHOWN_LISTS; i++) {
        shown_clear(&m->shown[i]);
        rc = rc ? rc : show_list(&m->shown[i], lists[i]);
    }
    if (rc)
        for (size_t i = 0; i < SHOWN_LISTS; i++)
            shown_clear(&m->shown[i]);
    return rc;
}

void email__message_read_free(email_message_t *m)
{
    for (size_t i = 0; i < SHOWN_LISTS; i++)
        shown_clear(&m->shown[i]);
    message_parsed_t *p = m->parsed;
    if (!p)
        return;
    for (size_t i = 0; i < p->nall; i++) {
        free(p->all[i].name);
        free(p->all[i].value);
    }
    free(p->all);
    free(p->uid);
    free(p);
    m->parsed = NULL;
}

/* ---- Parsing ---- */

int email__message_parse_error(int rc, const char *what)
{
    if (rc == EMAIL_EIO)
        return email__error_set(rc, "%s: a large part could not be written to a temporary file "
                                    "in $TMPDIR or /tmp", what);
    return email__error_set(EMAIL_ENOMEM, "%s: out of memory", what);
}

int email_message_from_mime(const char *mime, size_t length, email_message_t **out)
{
    email__error_clear();
    if (!out)
        return email__error_set(EMAIL_EINVAL, "Message: no place for the result");
    *out = NULL;
    if (!mime)
        return email__error_set(EMAIL_EINVAL, "Message: no MIME text given");
    mime_parser_t *p = NULL;
    int rc = email__mime_parser_new(&p);
    rc = rc ? rc : email__mime_parser_feed(p, mime, length);
    if (rc) {
        email__mime_parser_free(p);
        return email__message_parse_error(rc, "Message");
    }
    rc = email__mime_parser_finish(p, out);
    return rc ? email__message_parse_error(rc, "Message") : 0;
}

int email__message_set_received(email_message_t *m, const char *uid, uint64_t size)
{
    if (!m || !m->parsed)
        return EMAIL_EINVAL;
    char *copy = NULL;
    if (uid && *uid && !(copy = email__strdup(uid)))
        return EMAIL_ENOMEM;
    free(m->parsed->uid);
    m->parsed->uid = copy;
    m->parsed->size = size;
    return 0;
}

/* ---- Getters ---- */

const char *email_message_get_subject(const email_message_t *m)
{
    return m ? m->c.subject : NULL;
}

const char *email_message_get_from(const email_message_t *m)
{
    return m && m->shown[SHOWN_FROM].n ? m->shown[SHOWN_FROM].v[0] : NULL;
}

static const message_shown_t *recipients(const email_message_t *m, int kind)
{
    static const int lists[] = {SHOWN_TO, SHOWN_CC, SHOWN_BCC};
    return m && kind >= 0 && kind < 3 ? &m->shown[lists[kind]] : NULL;
}

size_t email_message_get_recipient_count(const email_message_t *m, int kind)
{
    const message_shown_t *s = recipients(m, kind);
    return s ? s->n : 0;
}

const char *email_message_get_recipient(const email_message_t *m, int kind, size_t i)
{
    const message_shown_t *s = recipients(m, kind);
    return s && i < s->n ? s->v[i] : NULL;
}

const char *email_message_get_text_body(const email_message_t *m)
{
    return m ? m->c.text : NULL;
}

const char *email_message_get_html_body(const email_message_t *m)
{
    return m ? m->c.html : NULL;
}

const char *email_message_get_message_id(const email_message_t *m)
{
    return m ? m->c.message_id : NULL;
}

/* A built message's own fields, by name. */
static const char *built_field(const email_message_t *m, const char *name)
{
    static const char *const lists[SHOWN_LISTS] = {"From", "Sender", "Reply-To",
                                                   "To",   "Cc",     "Bcc"};
    for (size_t i = 0; i < SHOWN_LISTS; i++)
        if (!email__strcasecmp(name, lists[i]))
            return m->shown[i].joined;
    if (!email__strcasecmp(name, "Subject"))
        return m->c.subject;
    if (!email__strcasecmp(name, "Date"))
        return m->c.date;
    if (!email__strcasecmp(name, "Message-ID"))
        return m->c.message_id;
    for (size_t i = 0; i < m->c.nheaders; i++)
        if (!email__strcasecmp(name, m->c.headers[i].name))
            return m->c.headers[i].value;
    return NULL;
}

const char *email_message_get_header(const email_message_t *m, const char *name)
{
    if (!m || !name)
        return NULL;
    if (!m->parsed)
        return built_field(m, name);
    for (size_t i = 0; i < m->parsed->nall; i++)
        if (!email__strcasecmp(name, m->parsed->all[i].name))
            return m->parsed->all[i].value;
    return NULL;
}

int64_t email_message_get_date(const email_message_t *m)
{
    return m && m->parsed ? m->parsed->date : 0;
}

const char *email_message_get_uid(const email_message_t *m)
{
    return m && m->parsed ? m->parsed->uid : NULL;
}

uint64_t email_message_get_size(const email_message_t *m)
{
    return m && m->parsed ? m->parsed->size : 0;
}

size_t email_message_get_attachment_count(const email_message_t *m)
{
    return m ? m->c.nparts : 0;
}

/* The i-th part, or NULL with ErrorInfo set; ErrorInfo cleared otherwise. */
static const message_part_t *part_at(const email_message_t *m, size_t i)
{
    if (email__message_begin(m, "Attachment"))
        return NULL;
    if (i >= m->c.nparts) {
        email__error_set(EMAIL_EINVAL, "Attachment: %zu is past the last one (%zu in all)", i,
                         m->c.nparts);
        return NULL;
    }
    return &m->c.parts[i];
}

int email_message_get_attachment(const email_message_t *m, size_t i, const char **name,
                                 const char **content_type, const void **data, size_t *length)
{
    const message_part_t *p = part_at(m, i);
    if (!p)
        return EMAIL_EINVAL;
    if (name)
        *name = p->name;
    if (content_type)
        *content_type = p->content_type;
    if (data)
        *data = p->data;
    if (length)
        *length = p->length;
    return 0;
}

int email_message_get_attachment_info(const email_message_t *m, size_t i,
                                      const char **content_id, int *disposition)
{
    const message_part_t *p = part_at(m, i);
    if (!p)
        return EMAIL_EINVAL;
    if (content_id)
        *content_id = p->content_id;
    if (disposition)
        *disposition = p->kind == MESSAGE_INLINE ? EMAIL_DISPOSITION_INLINE
                                                 : EMAIL_DISPOSITION_ATTACHMENT;
    return 0;
}

unsigned email_message_get_parse_problems(const email_message_t *m)
{
    return m && m->parsed ? m->parsed->problems : 0;
}
