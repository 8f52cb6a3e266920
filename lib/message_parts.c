/* email_message_t's attachments and inline parts: their validation and copies of their bytes. */
#include "message_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "spill.h"
#include "util.h"

/* ErrorInfo naming the field, e.g. "Attachment: no data". */
static int fail(int code, const char *fmt, ...) EMAIL_PRINTF(2, 3);
static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    email__error_vset(code, fmt, ap);
    va_end(ap);
    return code;
}

void email__message_part_clear(message_part_t *p)
{
    free(p->path);
    if (p->mapped)
        email__spill_unmap(p->data, p->length);
    else
        free(p->data);
    free(p->name);
    free(p->content_type);
    free(p->content_id);
}

static const char *guess_content_type(const char *name)
{
    static const char *const types[][2] = {
        {"txt", "text/plain"},        {"htm", "text/html"},        {"html", "text/html"},
        {"csv", "text/csv"},          {"ics", "text/calendar"},    {"xml", "application/xml"},
        {"json", "application/json"}, {"pdf", "application/pdf"},  {"zip", "application/zip"},
        {"gz", "application/gzip"},   {"png", "image/png"},        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},       {"gif", "image/gif"},        {"svg", "image/svg+xml"},
        {"webp", "image/webp"},       {"mp3", "audio/mpeg"},       {"wav", "audio/wav"},
        {"mp4", "video/mp4"},         {"doc", "application/msword"},
        {"xls", "application/vnd.ms-excel"},
        {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {"odt", "application/vnd.oasis.opendocument.text"}};
    const char *dot = name ? strrchr(name, '.') : NULL;
    for (size_t i = 0; dot && i < sizeof types / sizeof *types; i++)
        if (!email__strcasecmp(dot + 1, types[i][0]))
            return types[i][1];
    return "application/octet-stream";
}

static bool token_char(char c)
{
    return c > ' ' && c <= '~' && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* type/subtype, then optional "; parameters" in printable ASCII, short enough for a header line
   (folded at its spaces). Multipart types are the library's to build: an attachment is always one
   leaf part. */
static bool content_type_valid(const char *s)
{
    size_t i = 0, slash;
    if (strlen(s) > 900)
        return false;
    while (token_char(s[i]))
        i++;
    if (!i || s[i] != '/' || !email__strncasecmp(s, "multipart/", 10))
        return false;
    slash = ++i;
    while (token_char(s[i]))
        i++;
    if (i == slash)
        return false;
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    if (s[i] && s[i] != ';')
        return false;
    for (; s[i]; i++)
        if ((s[i] < ' ' || s[i] > '~') && s[i] != '\t')
            return false;
    return true;
}

/* Content-ID: what goes between the angle brackets (given with or without them). */
static char *content_id_copy(const char *cid)
{
    size_t n = strlen(cid);
    if (n >= 2 && cid[0] == '<' && cid[n - 1] == '>')
        cid++, n -= 2;
    if (!n || n > 200)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (cid[i] <= ' ' || cid[i] > '~' || strchr("<>\"\\()[],;:", cid[i]))
            return NULL;
    return email__strndup(cid, n);
}

/* Checks that path is a readable regular file; its absolute name goes in *abs. */
static int check_file(const char *field, const char *path, char **abs)
{
    uint64_t size;
    int e = email__file_size(path, &size);
    /* absolute, so that a chdir() before the message goes out does not lose the file */
    if (!e && !(*abs = realpath(path, NULL)))
        e = errno;
    if (e == ENOMEM)
        return fail(EMAIL_ENOMEM, "%s: out of memory", field);
    return e ? fail(EMAIL_EIO, "%s: cannot read \"%.100s\": %s", field, path, strerror(e)) : 0;
}

/* Validates and appends one part; takes nothing from the caller (everything is copied). */
static int add_part(email_message_t *m, const char *field, message_part_kind_t kind,
                    const char *path, const void *data, size_t length, const char *name,
                    const char *content_type, const char *content_id)
{
    int rc = email__message_begin(m, field);
    if (rc)
        return rc;
    if (!path && !data && length)
        return fail(EMAIL_EINVAL, "%s: no data", field);
    if (path && !*path)
        return fail(EMAIL_EINVAL, "%s: empty file name", field);
    if (!name && path) {
        const char *slash = strrchr(path, '/');
        name = slash ? slash + 1 : path;
    }
    if (name && (!*name || email__has_crlf(name) || !email__utf8_valid(name, strlen(name))))
        return fail(EMAIL_EINVAL, "%s: the name must be one line of valid UTF-8", field);
    if (content_type && !content_type_valid(content_type))
        return fail(EMAIL_EINVAL, "%s: \"%.60s\" is not a content type (type/subtype)", field,
                    content_type);
    message_part_t p = {.kind = kind, .length = length};
    if (kind == MESSAGE_INLINE && !(p.content_id = content_id_copy(content_id ? content_id : "")))
        return fail(EMAIL_EINVAL, "%s: \"%.60s\" is not a content id", field,
                    content_id ? content_id : "");
    if (path) {
        if ((rc = check_file(field, path, &p.path))) {
            free(p.content_id);
            return rc;
        }
        p.length = 0;
    } else if ((p.data = malloc(length ? length : 1)) && length) {
        memcpy(p.data, data, length);
    }
    p.name = email__strdup(name);
    p.content_type = email__strdup(content_type ? content_type
                                               : guess_content_type(name ? name : p.content_id));
    message_part_t *v = realloc(m->c.parts, (m->c.nparts + 1) * sizeof *v);
    if (v)
        m->c.parts = v;
    if (!v || (!path && !p.data) || (name && !p.name) || !p.content_type) {
        email__message_part_clear(&p);
        return fail(EMAIL_ENOMEM, "%s: out of memory", field);
    }
    m->c.parts[m->c.nparts++] = p;
    return 0;
}

int email_message_add_attachment_file(email_message_t *m, const char *path, const char *name,
                                      const char *content_type)
{
    if (!path) {
        int rc = email__message_begin(m, "Attachment");
        return rc ? rc : fail(EMAIL_EINVAL, "Attachment: no file given");
    }
    return add_part(m, "Attachment", MESSAGE_ATTACHMENT, path, NULL, 0, name, content_type, NULL);
}

int email_message_add_attachment_data(email_message_t *m, const void *data, size_t length,
                                      const char *name, const char *content_type)
{
    return add_part(m, "Attachment", MESSAGE_ATTACHMENT, NULL, data, length, name, content_type,
                    NULL);
}

int email_message_add_inline(email_message_t *m, const char *path_or_NULL, const void *data,
                             size_t length, const char *content_id, const char *content_type)
{
    return add_part(m, "Inline part", MESSAGE_INLINE, path_or_NULL, data, length, NULL,
                    content_type, content_id);
}
