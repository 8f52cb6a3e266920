/*
 * The POP3 transporter's asynchronous twins: each call is checked and queued at once (posted to
 * the loop thread, so behind every call made before it, synchronous ones included), its
 * commands join the session's queue there (pipelined with those of the calls around it when
 * the server offers PIPELINING), and its outcome goes once to its callback, where the other
 * callbacks run (email__runtime_deliver: email_dispatch() or the loop thread). A message is
 * parsed as its RETR arrives; the callback gets it whole.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pop3_transporter_internal.h"

enum async_kind { A_NONE, A_MAIL, A_BOX, A_LIST, A_RAW };

typedef struct async_call {
    pop3_call_t c;                /* first: the loop thread's finish gets it as a pop3_call_t */
    enum async_kind kind;
    email_receive_cb on_message;  /* A_NONE, A_MAIL */
    email_mailbox_cb on_mailbox;  /* A_BOX, A_LIST, A_RAW */
    void *user_data;
} async_call_t;

static void async_free(async_call_t *a)
{
    email__mime_parser_free(a->c.parser);
    email__buf_free(&a->c.body);
    free(a->c.infos);
    email_status_clear(&a->c.status);
    free(a);
}

/* The call's outcome: the first failing command's status, else success. */
static void settle_status(pop3_call_t *c)
{
    c->status.success = c->rc == 0;
    c->status.error = c->rc;
}

/* A_MAIL: the parsed message, with its uid and size (NULL after a failure). */
static email_message_t *take_message(async_call_t *a)
{
    pop3_call_t *c = &a->c;
    email_message_t *m = NULL;
    if (c->rc)
        return NULL;
    mime_parser_t *p = c->parser;
    c->parser = NULL;
    if (email__mime_parser_finish(p, &m) ||
        email__message_set_received(m, c->ninfos ? c->infos[0].uid : NULL,
                                    c->ninfos ? c->infos[0].size : 0)) {
        email_message_free(m);
        c->rc = EMAIL_ENOMEM;
        email__status_fail(&c->status, EMAIL_ENOMEM, "out of memory");
        return NULL;
    }
    return m;
}

static void report_mailbox(async_call_t *a)
{
    pop3_call_t *c = &a->c;
    email_mailbox_result_t r = {0};
    if (!c->rc && a->kind == A_BOX) {
        r.count = c->count;
        r.size = c->size;
    } else if (!c->rc && a->kind == A_LIST) {
        r.count = c->ninfos;
        r.pop3_list = c->infos;
    } else if (!c->rc && a->kind == A_RAW) {
        if (email__buf_putc(&c->body, '\0')) {
            c->rc = EMAIL_ENOMEM;
            email__status_fail(&c->status, EMAIL_ENOMEM, "out of memory");
        } else {
            r.data = c->body.data;
            r.length = c->body.len - 1;
        }
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
static void finish(pop3_call_t *c)
{
    email__runtime_deliver(deliver, (async_call_t *)c);
}

static void run(void *arg)
{
    email__pop3_call_submit(&((async_call_t *)arg)->c);
}

/* A call for t with its commands to fill in, or NULL (ErrorInfo: no memory). */
static async_call_t *async_new(email_pop3_transporter_t *t, enum async_kind kind, size_t ncmds)
{
    async_call_t *a = calloc(1, sizeof *a);
    if (!a) {
        email__error_set(EMAIL_ENOMEM, "out of memory");
        return NULL;
    }
    email__pop3_call_init(&a->c, t);
    a->c.finish = finish;
    a->c.ncmds = ncmds;
    a->kind = kind;
    return a;
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

static int bad_args(email_pop3_transporter_t *t, bool number_needed, unsigned number,
                    const char *what)
{
    if (!t)
        return email__error_set(EMAIL_EINVAL, "%s: the transporter is NULL", what);
    if (number_needed && !number)
        return email__error_set(EMAIL_EINVAL, "%s: messages count from 1", what);
    return 0;
}

/* One command without data of its own, reported to on_message with no message. */
static int simple_async(email_pop3_transporter_t *t, enum pop3_kind kind, unsigned number,
                        email_receive_cb done, void *user_data, const char *what)
{
    int rc = bad_args(t, kind == POP3_DELE, number, what);
    async_call_t *a = rc ? NULL : async_new(t, A_NONE, 1);
    if (!a)
        return rc ? rc : EMAIL_ENOMEM;
    a->c.cmds[0] = (pop3_cmd_t){.kind = kind, .number = number};
    a->on_message = done;
    a->user_data = user_data;
    return queue_call(a, what);
}

int email_pop3_check_connection_async(email_pop3_transporter_t *t, email_receive_cb done,
                                      void *user_data)
{
    return simple_async(t, POP3_NOOP, 0, done, user_data, "email_pop3_check_connection_async");
}

int email_pop3_delete_async(email_pop3_transporter_t *t, unsigned number, email_receive_cb done,
                            void *user_data)
{
    return simple_async(t, POP3_DELE, number, done, user_data, "email_pop3_delete_async");
}

int email_pop3_undelete_all_async(email_pop3_transporter_t *t, email_receive_cb done,
                                  void *user_data)
{
    return simple_async(t, POP3_RSET, 0, done, user_data, "email_pop3_undelete_all_async");
}

int email_pop3_get_mail_async(email_pop3_transporter_t *t, unsigned number,
                              email_receive_cb done, void *user_data)
{
    const char *what = "email_pop3_get_mail_async";
    int rc = bad_args(t, true, number, what);
    async_call_t *a = rc ? NULL : async_new(t, A_MAIL, 3);
    if (!a)
        return rc ? rc : EMAIL_ENOMEM;
    if (email__mime_parser_new(&a->c.parser)) {
        async_free(a);
        return email__error_set(EMAIL_ENOMEM, "%s: out of memory", what);
    }
    /* LIST and UIDL give its size and uid, pipelined with its RETR */
    a->c.uidl_optional = true;
    a->c.cmds[0] = (pop3_cmd_t){.kind = POP3_LIST, .number = number};
    a->c.cmds[1] = (pop3_cmd_t){.kind = POP3_UIDL, .number = number};
    a->c.cmds[2] = (pop3_cmd_t){.kind = POP3_RETR, .number = number};
    a->on_message = done;
    a->user_data = user_data;
    return queue_call(a, what);
}

/* STAT, LIST + UIDL, or RETR kept as bytes: reported to on_mailbox. */
static int mailbox_async(email_pop3_transporter_t *t, enum async_kind kind, unsigned number,
                         email_mailbox_cb done, void *user_data, const char *what)
{
    int rc = bad_args(t, kind == A_RAW, number, what);
    async_call_t *a = rc ? NULL : async_new(t, kind, kind == A_LIST ? 2 : 1);
    if (!a)
        return rc ? rc : EMAIL_ENOMEM;
    if (kind == A_BOX) {
        a->c.cmds[0] = (pop3_cmd_t){.kind = POP3_STAT};
    } else if (kind == A_LIST) {
        a->c.uidl_optional = true; /* uids "" from a server without UIDL */
        a->c.cmds[0] = (pop3_cmd_t){.kind = POP3_LIST};
        a->c.cmds[1] = (pop3_cmd_t){.kind = POP3_UIDL};
    } else {
        a->c.cmds[0] = (pop3_cmd_t){.kind = POP3_RETR, .number = number};
    }
    a->on_mailbox = done;
    a->user_data = user_data;
    return queue_call(a, what);
}

int email_pop3_get_box_info_async(email_pop3_transporter_t *t, email_mailbox_cb done,
                                  void *user_data)
{
    return mailbox_async(t, A_BOX, 0, done, user_data, "email_pop3_get_box_info_async");
}

int email_pop3_get_mail_info_list_async(email_pop3_transporter_t *t, email_mailbox_cb done,
                                        void *user_data)
{
    return mailbox_async(t, A_LIST, 0, done, user_data, "email_pop3_get_mail_info_list_async");
}

int email_pop3_get_mail_raw_async(email_pop3_transporter_t *t, unsigned number,
                                  email_mailbox_cb done, void *user_data)
{
    return mailbox_async(t, A_RAW, number, done, user_data, "email_pop3_get_mail_raw_async");
}
