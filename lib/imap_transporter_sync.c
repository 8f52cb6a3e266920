/*
 * The IMAP transporter's synchronous calls (4D's IMAP transporter functions): each checks its
 * arguments, then crosses to the loop thread and waits for its commands' answers
 * (email__imap_do_call); calls on one transporter take turns.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imap_transporter_internal.h"

static int null_arg(const char *what, const char *name)
{
    return email__error_set(EMAIL_EINVAL, "%s: %s is NULL", what, name);
}

/* A call refused before anything went: the caller's status says so too, as on any failure. */
static int refused(email_status_t *status, int rc)
{
    if (status) {
        email__status_init(status);
        email__status_fail(status, rc, "%s", email__error_text());
    }
    return rc;
}

int email_imap_check_connection(email_imap_transporter_t *t, email_status_t *status)
{
    if (!t)
        return refused(status, null_arg("email_imap_check_connection", "the transporter"));
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_NOOP};
    return email__imap_do_call(t, &c, "email_imap_check_connection", status);
}

int email_imap_select_box(email_imap_transporter_t *t, const char *name, int mode,
                          email_imap_box_info_t *info, email_status_t *status)
{
    const char *what = "email_imap_select_box";
    if (info)
        memset(info, 0, sizeof *info);
    if (!t || !name)
        return refused(status, null_arg(what, t ? "the mailbox name" : "the transporter"));
    if (!*name || email__has_crlf(name))
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: the mailbox name is empty "
                                                "or holds CR or LF", what));
    if (mode != EMAIL_IMAP_READ_WRITE && mode != EMAIL_IMAP_READ_ONLY)
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: mode %d is not "
                                                "EMAIL_IMAP_READ_WRITE or EMAIL_IMAP_READ_ONLY",
                                                what, mode));
    imap_call_t c = {.ncmds = 2, .selects = true};
    c.cmds[0] = (imap_cmd_t){.kind = mode == EMAIL_IMAP_READ_ONLY ? IMAP_EXAMINE : IMAP_SELECT,
                             .mailbox = name};
    c.cmds[1] = (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = "UNSEEN"};
    int rc = email__imap_do_call(t, &c, what, status);
    free(c.found);
    if (!rc && info) {
        *info = c.info;
        info->unseen = (uint32_t)c.nfound;
    }
    return rc;
}

void email_imap_box_list_free(email_imap_box_t *list, size_t count)
{
    for (size_t i = 0; list && i < count; i++)
        free(list[i].name);
    free(list);
    email__error_clear();
}

int email_imap_get_box_list(email_imap_transporter_t *t, email_imap_box_t **list, size_t *count,
                            email_status_t *status)
{
    const char *what = "email_imap_get_box_list";
    if (!t || !list || !count)
        return refused(status, null_arg(what, !t ? "the transporter" : !list ? "list" : "count"));
    *list = NULL;
    *count = 0;
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_LIST, .mailbox = "*"};
    int rc = email__imap_do_call(t, &c, what, status);
    if (rc) {
        for (size_t i = 0; i < c.nboxes; i++)
            free(c.boxes[i].name);
        free(c.boxes);
        return rc;
    }
    *list = c.boxes;
    *count = c.nboxes;
    return 0;
}

static int by_uid(const void *a, const void *b)
{
    const fetch_slot_t *x = a, *y = b;
    return x->uid != y->uid ? (x->uid < y->uid ? -1 : 1) : (x->index > y->index) - (x->index < y->index);
}

int email__imap_make_slots(imap_call_t *c, const uint32_t *uids, size_t count, uint32_t **list)
{
    c->slots = calloc(count, sizeof *c->slots);
    *list = calloc(count, sizeof **list);
    if (!c->slots || !*list)
        return EMAIL_ENOMEM;
    for (size_t i = 0; i < count; i++)
        c->slots[i] = (fetch_slot_t){.uid = uids[i], .index = i};
    qsort(c->slots, count, sizeof *c->slots, by_uid);
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (!n || c->slots[i].uid != c->slots[n - 1].uid)
            c->slots[n++] = c->slots[i];
    c->nslots = n;
    for (size_t i = 0; i < n; i++)
        (*list)[i] = c->slots[i].uid;
    return 0;
}

static int fetch_messages(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                          int options, email_message_t **out, email_status_t *status,
                          const char *what)
{
    imap_call_t c = {.out = out};
    uint32_t *list = NULL;
    if (email__imap_make_slots(&c, uids, count, &list)) {
        free(c.slots);
        free(list);
        return refused(status, email__error_set(EMAIL_ENOMEM, "%s: out of memory", what));
    }
    c.cmds[c.ncmds++] = (imap_cmd_t){
        .kind = IMAP_FETCH, .uids = list, .nuids = c.nslots,
        .items = IMAP_F_SIZE | (options & EMAIL_READ_HEADERS ? IMAP_F_HEADER : IMAP_F_BODY)};
    if (!(options & (EMAIL_READ_PEEK | EMAIL_READ_HEADERS))) /* reading marks it read */
        c.cmds[c.ncmds++] = (imap_cmd_t){.kind = IMAP_STORE, .uids = list, .nuids = c.nslots,
                                         .store = "+FLAGS.SILENT (\\Seen)"};
    int rc = email__imap_do_call(t, &c, what, status);
    for (size_t i = 0; i < c.nslots; i++)
        email__mime_parser_free(c.slots[i].parser); /* a message cut short */
    for (size_t i = 0; rc && i < count; i++) {
        email_message_free(out[i]);
        out[i] = NULL;
    }
    free(c.slots);
    free(list);
    return rc;
}

int email__imap_check_read(const uint32_t *uids, size_t count, int options, const char *what)
{
    if (options & ~(EMAIL_READ_HEADERS | EMAIL_READ_PEEK))
        return email__error_set(EMAIL_EINVAL, "%s: options 0x%x are not EMAIL_READ_HEADERS or "
                                "EMAIL_READ_PEEK", what, (unsigned)options);
    for (size_t i = 0; i < count; i++)
        if (!uids[i])
            return email__error_set(EMAIL_EINVAL, "%s: UID 0 (UIDs count from 1)", what);
    return 0;
}

int email_imap_get_mail(email_imap_transporter_t *t, uint32_t uid, int options,
                        email_message_t **out, email_status_t *status)
{
    const char *what = "email_imap_get_mail";
    if (out)
        *out = NULL;
    if (!t || !out)
        return refused(status, null_arg(what, t ? "out" : "the transporter"));
    int rc = email__imap_check_read(&uid, 1, options, what);
    if (rc)
        return refused(status, rc);
    rc = fetch_messages(t, &uid, 1, options, out, status, what);
    if (!rc && !*out) {
        rc = email__error_set(EMAIL_ENOTFOUND, "%s: no message of UID %u in the mailbox", what,
                              uid);
        if (status)
            email__status_fail(status, rc, "no message of UID %u in the mailbox", uid);
    }
    return rc;
}

int email_imap_get_mails(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                         int options, email_message_t **out, email_status_t *status)
{
    const char *what = "email_imap_get_mails";
    if (!t || (count && (!uids || !out)))
        return refused(status, null_arg(what, !t ? "the transporter" : !uids ? "uids" : "out"));
    for (size_t i = 0; i < count; i++)
        out[i] = NULL;
    int rc = email__imap_check_read(uids, count, options, what);
    if (rc || !count) {
        if (!rc && status) /* nothing to read: an OK of our own */
            *status = (email_status_t){.success = true, .status = 1};
        return rc ? refused(status, rc) : (email__error_clear(), 0);
    }
    return fetch_messages(t, uids, count, options, out, status, what);
}

int email_imap_search(email_imap_transporter_t *t, const char *criteria, const char *text,
                      uint32_t **uids, size_t *count, email_status_t *status)
{
    const char *what = "email_imap_search";
    if (!t || !criteria || !uids || !count)
        return refused(status, null_arg(what, !t ? "the transporter" : !criteria ? "criteria"
                                                    : !uids ? "uids" : "count"));
    *uids = NULL;
    *count = 0;
    if (!*criteria || email__has_crlf(criteria) || !email__is_ascii(criteria, strlen(criteria)))
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: the criteria are empty or "
                                                "hold CR, LF or non-ASCII bytes", what));
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = criteria, .text = text};
    int rc = email__imap_do_call(t, &c, what, status);
    if (rc || !c.nfound) {
        free(c.found);
        return rc;
    }
    *uids = c.found;
    *count = c.nfound;
    return 0;
}

bool email__imap_valid_flags(const char *flags)
{
    const char *p = flags;
    do {
        p += *p == '\\';
        size_t n = 0;
        for (; p[n] && p[n] != ' '; n++) {
            unsigned char ch = (unsigned char)p[n];
            if (ch <= 0x20 || ch >= 0x7f || strchr("(){\"\\]%*", ch))
                return false;
        }
        if (!n)
            return false;
        p += n;
    } while (*p == ' ' && *++p);
    return *p == '\0' && p[-1] != ' ';
}

static int store(email_imap_transporter_t *t, const uint32_t *uids, size_t count, char sign,
                 const char *flags, email_status_t *status, const char *what)
{
    if (!t || !uids || !flags)
        return refused(status, null_arg(what, !t ? "the transporter" : !uids ? "uids" : "flags"));
    if (!count)
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: no UIDs given", what));
    if (!*flags || !email__imap_valid_flags(flags))
        return refused(status, email__error_set(EMAIL_EINVAL, "%s: flags \"%.100s\" are not "
                                                "flag names separated by spaces (such as "
                                                "\"\\\\Seen \\\\Flagged\")", what, flags));
    int rc = email__imap_check_read(uids, count, 0, what);
    if (rc)
        return refused(status, rc);
    email_buf_t item;
    email__buf_init(&item);
    if (email__buf_printf(&item, "%cFLAGS.SILENT (%s)", sign, flags)) {
        email__buf_free(&item);
        return refused(status, email__error_set(EMAIL_ENOMEM, "%s: out of memory", what));
    }
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_STORE, .uids = uids, .nuids = count, .store = item.data};
    rc = email__imap_do_call(t, &c, what, status);
    email__buf_free(&item);
    return rc;
}

int email_imap_add_flags(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                         const char *flags, email_status_t *status)
{
    return store(t, uids, count, '+', flags, status, "email_imap_add_flags");
}

int email_imap_remove_flags(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                            const char *flags, email_status_t *status)
{
    return store(t, uids, count, '-', flags, status, "email_imap_remove_flags");
}

int email_imap_delete(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                      email_status_t *status)
{
    return store(t, uids, count, '+', "\\Deleted", status, "email_imap_delete");
}

int email_imap_expunge(email_imap_transporter_t *t, email_status_t *status)
{
    if (!t)
        return refused(status, null_arg("email_imap_expunge", "the transporter"));
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_EXPUNGE};
    return email__imap_do_call(t, &c, "email_imap_expunge", status);
}

int email__imap_uid_expunge(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                            email_status_t *status, const char *what)
{
    imap_call_t c = {.ncmds = 1};
    c.cmds[0] = (imap_cmd_t){.kind = IMAP_UID_EXPUNGE, .uids = uids, .nuids = count};
    return email__imap_do_call(t, &c, what, status);
}
