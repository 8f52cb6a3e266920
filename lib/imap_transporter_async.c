/*
 * The IMAP transporter's asynchronous twins: each call is checked and queued at once (posted to
 * the loop thread, so behind every call made before it, synchronous ones included), its
 * commands join the session's queue there (UID commands pipelined with those of the calls
 * around it), and its outcome goes once to its callback, where the other callbacks run
 * (email__runtime_deliver: email_dispatch() or the loop thread). A message is parsed as its
 * FETCH arrives; get_mails_async is one call per UID, so each message goes to the callback as
 * soon as it is whole, in the order the UIDs were given, and none waits for the others.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imap_transporter_internal.h"

enum async_kind { A_NONE, A_MAIL, A_SELECT, A_LIST, A_SEARCH };

typedef struct async_batch async_batch_t;

typedef struct async_call {
    imap_call_t c;                /* first: the loop thread's finish gets it as an imap_call_t */
    enum async_kind kind;
    email_receive_cb on_message;  /* A_NONE, A_MAIL */
    email_mailbox_cb on_mailbox;  /* A_SELECT, A_LIST, A_SEARCH */
    void *user_data;
    async_batch_t *batch;         /* get_mails_async: the calls this one was made with */
    uint32_t uid;                 /* A_MAIL: the one UID of its FETCH and STORE */
    fetch_slot_t slot;
    email_message_t *message;
    char *arg;                    /* owned: the mailbox name, the criteria, or the STORE item */
    char *text;                   /* owned: the search text, or NULL */
    uint32_t *uids;               /* owned: the UIDs of a STORE */
} async_call_t;

/* get_mails_async's calls, made (and freed) together: freed once the last outcome went. */
struct async_batch {
    size_t count;
    atomic_size_t left;           /* outcomes to go (callbacks may run in several threads) */
    async_call_t calls[];
};

static void async_free(async_call_t *a)
{
    imap_call_t *c = &a->c;
    email__mime_parser_free(a->slot.parser); /* a message cut short */
    email_message_free(a->message);
    free(c->found);
    for (size_t i = 0; i < c->nboxes; i++)
        free(c->boxes[i].name);
    free(c->boxes);
    free(a->arg);
    free(a->text);
    free(a->uids);
    email_status_clear(&c->status);
    if (!a->batch)
        free(a);
    else if (atomic_fetch_sub(&a->batch->left, 1) == 1)
        free(a->batch);
}

/* The call's outcome: the first failing command's status, else success. */
static void settle_status(imap_call_t *c)
{
    c->status.success = c->rc == 0;
    c->status.error = c->rc;
}

/* A_MAIL: the message (the callback's), or NULL: a failure, or EMAIL_ENOTFOUND set. */
static email_message_t *take_message(async_call_t *a)
{
    imap_call_t *c = &a->c;
    email_message_t *m = a->message;
    a->message = NULL;
    if (c->rc) {
        email_message_free(m);
        return NULL;
    }
    if (!m) {
        c->rc = EMAIL_ENOTFOUND;
        email__status_fail(&c->status, EMAIL_ENOTFOUND, "no message of UID %u in the mailbox",
                           a->uid);
    }
    return m;
}

static void report_mailbox(async_call_t *a)
{
    imap_call_t *c = &a->c;
    email_mailbox_result_t r = {0};
    email_imap_box_info_t info = c->info;
    if (!c->rc && a->kind == A_SELECT) {
        info.unseen = (uint32_t)c->nfound;
        r.count = info.messages;
        r.imap_box_info = &info;
    } else if (!c->rc && a->kind == A_LIST) {
        r.count = c->nboxes;
        r.imap_boxes = c->boxes;
    } else if (!c->rc && a->kind == A_SEARCH) {
        r.count = c->nfound;
        r.uids = c->nfound ? c->found : NULL;
    }
    settle_status(c);
    if (a->on_mailbox)
        a->on_mailbox(&r, &c->status, a->user_data);
}

/* Where callbacks run: the outcome to the callback, then the call is gone. */
static void deliver(void *arg)
{
    async_call_t *a = arg;
    if (a->kind == A_MAIL || a->kind == A_NONE) {
        email_message_t *m = a->kind == A_MAIL ? take_message(a) : NULL;
        settle_status(&a->c);
        if (a->on_message)
            a->on_message(m, &a->c.status, a->user_data); /* m is the callback's */
        else
            email_message_free(m);
    } else {
        report_mailbox(a);
    }
    async_free(a);
}

/* Loop thread: every command of the call is done. */
static void finish(imap_call_t *c)
{
    email__runtime_deliver(deliver, (async_call_t *)c);
}

static void call_init(async_call_t *a, email_imap_transporter_t *t, enum async_kind kind)
{
    a->c.t = t;
    a->c.finish = finish;
    email__status_init(&a->c.status);
    a->kind = kind;
}

/* A call for t with its commands to fill in, or NULL (ErrorInfo: no memory). */
static async_call_t *async_new(email_imap_transporter_t *t, enum async_kind kind,
                               const char *what)
{
    async_call_t *a = calloc(1, sizeof *a);
    if (!a) {
        email__error_set(EMAIL_ENOMEM, "%s: out of memory", what);
        return NULL;
    }
    call_init(a, t, kind);
    return a;
}

static void run(void *arg)
{
    email__imap_call_start(&((async_call_t *)arg)->c);
}

/* Posts the call to the loop thread: 0 (ErrorInfo cleared), or the code and the call freed. */
static int queue_call(async_call_t *a, const char *what)
{
    int rc = email__runtime_post(run, a);
    if (rc) {
        async_free(a);
        return email__error_set(rc, "%s: %s", what, email_strerror(rc));
    }
    email__error_clear();
    return 0;
}

static int null_arg(const char *what, const char *name)
{
    return email__error_set(EMAIL_EINVAL, "%s: %s is NULL", what, name);
}

/* One command without data of its own, reported to on_message with no message. */
static int simple_async(email_imap_transporter_t *t, enum imap_kind kind, email_receive_cb done,
                        void *user_data, const char *what)
{
    if (!t)
        return null_arg(what, "the transporter");
    async_call_t *a = async_new(t, A_NONE, what);
    if (!a)
        return EMAIL_ENOMEM;
    a->c.ncmds = 1;
    a->c.cmds[0] = (imap_cmd_t){.kind = kind};
    a->on_message = done;
    a->user_data = user_data;
    return queue_call(a, what);
}

int email_imap_check_connection_async(email_imap_transporter_t *t, email_receive_cb done,
                                      void *user_data)
{
    return simple_async(t, IMAP_NOOP, done, user_data, "email_imap_check_connection_async");
}

int email_imap_expunge_async(email_imap_transporter_t *t, email_receive_cb done,
                             void *user_data)
{
    return simple_async(t, IMAP_EXPUNGE, done, user_data, "email_imap_expunge_async");
}

int email_imap_select_box_async(email_imap_transporter_t *t, const char *name, int mode,
                                email_mailbox_cb done, void *user_data)
{
    const char *what = "email_imap_select_box_async";
    if (!t || !name)
        return null_arg(what, t ? "the mailbox name" : "the transporter");
    if (!*name || email__has_crlf(name))
        return email__error_set(EMAIL_EINVAL, "%s: the mailbox name is empty or holds CR or LF",
                                what);
    if (mode != EMAIL_IMAP_READ_WRITE && mode != EMAIL_IMAP_READ_ONLY)
        return email__error_set(EMAIL_EINVAL, "%s: mode %d is not EMAIL_IMAP_READ_WRITE or "
                                "EMAIL_IMAP_READ_ONLY", what, mode);
    async_call_t *a = async_new(t, A_SELECT, what);
    if (!a)
        return EMAIL_ENOMEM;
    if (!(a->arg = email__strdup(name))) {
        async_free(a);
        return email__error_set(EMAIL_ENOMEM, "%s: out of memory", what);
    }
    a->c.selects = true;
    a->c.ncmds = 2;
    a->c.cmds[0] = (imap_cmd_t){.kind = mode == EMAIL_IMAP_READ_ONLY ? IMAP_EXAMINE : IMAP_SELECT,
                                .mailbox = a->arg};
    a->c.cmds[1] = (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = "UNSEEN"};
    a->on_mailbox = done;
    a->user_data = user_data;
    return queue_call(a, what);
}

int email_imap_get_box_list_async(email_imap_transporter_t *t, email_mailbox_cb done,
                                  void *user_data)
{
    const char *what = "email_imap_get_box_list_async";
    if (!t)
        return null_arg(what, "the transporter");
    async_call_t *a = async_new(t, A_LIST, what);
    if (!a)
        return EMAIL_ENOMEM;
    a->c.ncmds = 1;
    a->c.cmds[0] = (imap_cmd_t){.kind = IMAP_LIST, .mailbox = "*"};
    a->on_mailbox = done;
    a->user_data = user_data;
    return queue_call(a, what);
}

int email_imap_search_async(email_imap_transporter_t *t, const char *criteria, const char *text,
                            email_mailbox_cb done, void *user_data)
{
    const char *what = "email_imap_search_async";
    if (!t || !criteria)
        return null_arg(what, !t ? "the transporter" : "criteria");
    if (!*criteria || email__has_crlf(criteria) || !email__is_ascii(criteria, strlen(criteria)))
        return email__error_set(EMAIL_EINVAL, "%s: the criteria are empty or hold CR, LF or "
                                "non-ASCII bytes", what);
    async_call_t *a = async_new(t, A_SEARCH, what);
    if (!a)
        return EMAIL_ENOMEM;
    if (!(a->arg = email__strdup(criteria)) || (text && !(a->text = email__strdup(text)))) {
        async_free(a);
        return email__error_set(EMAIL_ENOMEM, "%s: out of memory", what);
    }
    a->c.ncmds = 1;
    a->c.cmds[0] = (imap_cmd_t){.kind = IMAP_SEARCH, .criteria = a->arg, .text = a->text};
    a->on_mailbox = done;
    a->user_data = user_data;
    return queue_call(a, what);
}

/* UID STORE of "<sign>FLAGS.SILENT (flags)" on a copy of the UIDs. */
static int store_async(email_imap_transporter_t *t, const uint32_t *uids, size_t count, char sign,
                       const char *flags, email_receive_cb done, void *user_data,
                       const char *what)
{
    if (!t || !uids || !flags)
        return null_arg(what, !t ? "the transporter" : !uids ? "uids" : "flags");
    if (!count)
        return email__error_set(EMAIL_EINVAL, "%s: no UIDs given", what);
    if (!*flags || !email__imap_valid_flags(flags))
        return email__error_set(EMAIL_EINVAL, "%s: flags \"%.100s\" are not flag names "
                                "separated by spaces (such as \"\\\\Seen \\\\Flagged\")", what,
                                flags);
    int rc = email__imap_check_read(uids, count, 0, what);
    async_call_t *a = rc ? NULL : async_new(t, A_NONE, what);
    if (!a)
        return rc ? rc : EMAIL_ENOMEM;
    email_buf_t item;
    email__buf_init(&item);
    a->uids = count <= SIZE_MAX / sizeof *uids ? malloc(count * sizeof *uids) : NULL;
    if (!a->uids || email__buf_printf(&item, "%cFLAGS.SILENT (%s)", sign, flags)) {
        email__buf_free(&item);
        async_free(a);
        return email__error_set(EMAIL_ENOMEM, "%s: out of memory", what);
    }
    memcpy(a->uids, uids, count * sizeof *uids);
    a->arg = item.data; /* the buffer's bytes are the call's now */
    a->c.ncmds = 1;
    a->c.cmds[0] = (imap_cmd_t){.kind = IMAP_STORE, .uids = a->uids, .nuids = count,
                                .store = a->arg};
    a->on_message = done;
    a->user_data = user_data;
    return queue_call(a, what);
}

int email_imap_add_flags_async(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                               const char *flags, email_receive_cb done, void *user_data)
{
    return store_async(t, uids, count, '+', flags, done, user_data,
                       "email_imap_add_flags_async");
}

int email_imap_remove_flags_async(email_imap_transporter_t *t, const uint32_t *uids,
                                  size_t count, const char *flags, email_receive_cb done,
                                  void *user_data)
{
    return store_async(t, uids, count, '-', flags, done, user_data,
                       "email_imap_remove_flags_async");
}

int email_imap_delete_async(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                            email_receive_cb done, void *user_data)
{
    return store_async(t, uids, count, '+', "\\Deleted", done, user_data,
                       "email_imap_delete_async");
}

/* A_MAIL: UID FETCH of one message, then UID STORE +FLAGS.SILENT (\Seen) unless peeking. */
static void mail_init(async_call_t *a, email_imap_transporter_t *t, uint32_t uid, int options,
                      email_receive_cb done, void *user_data)
{
    call_init(a, t, A_MAIL);
    a->uid = uid;
    a->slot = (fetch_slot_t){.uid = uid};
    a->c.slots = &a->slot;
    a->c.nslots = 1;
    a->c.out = &a->message;
    a->c.cmds[a->c.ncmds++] = (imap_cmd_t){
        .kind = IMAP_FETCH, .uids = &a->uid, .nuids = 1,
        .items = IMAP_F_SIZE | (options & EMAIL_READ_HEADERS ? IMAP_F_HEADER : IMAP_F_BODY)};
    if (!(options & (EMAIL_READ_PEEK | EMAIL_READ_HEADERS))) /* reading marks it read */
        a->c.cmds[a->c.ncmds++] = (imap_cmd_t){.kind = IMAP_STORE, .uids = &a->uid, .nuids = 1,
                                               .store = "+FLAGS.SILENT (\\Seen)"};
    a->on_message = done;
    a->user_data = user_data;
}

int email_imap_get_mail_async(email_imap_transporter_t *t, uint32_t uid, int options,
                              email_receive_cb done, void *user_data)
{
    const char *what = "email_imap_get_mail_async";
    if (!t)
        return null_arg(what, "the transporter");
    int rc = email__imap_check_read(&uid, 1, options, what);
    async_call_t *a = rc ? NULL : async_new(t, A_MAIL, what);
    if (!a)
        return rc ? rc : EMAIL_ENOMEM;
    mail_init(a, t, uid, options, done, user_data);
    return queue_call(a, what);
}

/* Loop thread: the batch's calls go in their order. */
static void run_batch(void *arg)
{
    async_batch_t *b = arg;
    size_t n = b->count; /* the last call's outcome may free b as it starts */
    async_call_t *calls = b->calls;
    for (size_t i = 0; i < n; i++)
        email__imap_call_start(&calls[i].c);
}

int email_imap_get_mails_async(email_imap_transporter_t *t, const uint32_t *uids, size_t count,
                               int options, email_receive_cb done, void *user_data)
{
    const char *what = "email_imap_get_mails_async";
    if (!t || (count && !uids))
        return null_arg(what, !t ? "the transporter" : "uids");
    int rc = email__imap_check_read(uids, count, options, what);
    if (rc || !count)
        return rc ? rc : (email__error_clear(), 0);
    async_batch_t *b = NULL;
    if (count < (SIZE_MAX - sizeof *b) / sizeof b->calls[0])
        b = calloc(1, sizeof *b + count * sizeof b->calls[0]);
    if (!b)
        return email__error_set(EMAIL_ENOMEM, "%s: out of memory", what);
    b->count = count;
    atomic_init(&b->left, count);
    for (size_t i = 0; i < count; i++) {
        b->calls[i].batch = b;
        mail_init(&b->calls[i], t, uids[i], options, done, user_data);
    }
    rc = email__runtime_post(run_batch, b);
    if (rc) {
        free(b);
        return email__error_set(rc, "%s: %s", what, email_strerror(rc));
    }
    email__error_clear();
    return 0;
}
