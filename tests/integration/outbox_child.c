/*
 * The program test_outbox kills: an asynchronous session "kill" on 127.0.0.1:PORT with the
 * outbox DIR.
 *   outbox_child queue DIR PORT N   queues "msg 1" ... "msg N", writing "<n>\n" to stdout as
 *                                   soon as each send returned true (the test kills it at any
 *                                   point), then waits for every outcome and closes;
 *   outbox_child resume DIR PORT    resumes until the outbox is empty: first without resending
 *                                   what is marked (each reported EMAIL_EUNKNOWN is printed
 *                                   "unknown <n>"), then with EMAIL_OUTBOX_RESEND_UNKNOWN;
 *                                   prints "corrupt <count>" and exits 0, or 1 on an error.
 * Outcomes (on the loop thread) are counted; an EMAIL_EUNKNOWN one prints "unknown <n>".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emailsession.h"

#define USER "kill"
#define MAX_MSGS 100000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int outcomes;
static uint64_t ids[MAX_MSGS + 1]; /* queue: the id of "msg n"; resume: filled by the list */
static uint64_t seen_ids[MAX_MSGS + 1];
static int nseen;

/* "<word> <n>\n" (word NULL: "<n>\n") in one write, so that a kill never cuts a line. */
static void say(const char *word, int n)
{
    char line[64];
    int len = word ? snprintf(line, sizeof line, "%s %d\n", word, n)
                   : snprintf(line, sizeof line, "%d\n", n);
    if (write(1, line, (size_t)len) != len)
        exit(3);
}

/* "msg n" of the id (from the queue's ids or the resume's list), or 0. */
static int seq_of(uint64_t id)
{
    for (int i = 0; i < nseen; i++)
        if (seen_ids[i] == id)
            return (int)ids[i];
    return 0;
}

static void on_done(uint64_t id, const email_status_t *st, void *data)
{
    (void)data;
    pthread_mutex_lock(&lock);
    if (st->error == EMAIL_EUNKNOWN)
        say("unknown", seq_of(id));
    outcomes++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void wait_outcomes(int n)
{
    pthread_mutex_lock(&lock);
    while (outcomes < n)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static int start(const char *dir, int port)
{
    if (email_set_outbox(dir) != 0 || email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD) != 0 ||
        !email_start_smtp_session(USER, NULL, "127.0.0.1", port, EMAIL_ASYNCHRONOUS, 0) ||
        email_session_set_callback(USER, on_done, NULL) != 0) {
        fprintf(stderr, "outbox_child: %s\n", email_error_info());
        return 1;
    }
    return 0;
}

static int queue(int n)
{
    for (int i = 1; i <= n && i <= MAX_MSGS; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "msg %d", i);
        email_message_t *m = email_message_new();
        email_message_set_from(m, "a@example.org");
        email_message_add_to(m, "b@example.org");
        email_message_set_subject(m, subject);
        email_message_set_text_body(m, "A message that must arrive exactly once.\n");
        pthread_mutex_lock(&lock);
        seen_ids[nseen] = email_message_id(m);
        ids[nseen++] = (uint64_t)i;
        pthread_mutex_unlock(&lock);
        bool ok = email_send_message(USER, m);
        email_message_free(m);
        if (!ok) {
            fprintf(stderr, "outbox_child: msg %d: %s\n", i, email_error_info());
            return 1;
        }
        say(NULL, i);
    }
    wait_outcomes(n);
    return 0;
}

static void on_entry(uint64_t id, const char *user, const char *subject, int64_t when, void *d)
{
    (void)user, (void)when, (void)d;
    if (nseen < MAX_MSGS && subject && !strncmp(subject, "msg ", 4)) {
        seen_ids[nseen] = id;
        ids[nseen++] = (uint64_t)atoi(subject + 4);
    }
}

static int resume(void)
{
    /* entries another process holds are listed but not taken: wait for them to go (30 s) */
    for (int round = 0; round < 600; round++) {
        pthread_mutex_lock(&lock);
        nseen = 0;
        int left = email_outbox_list(USER, on_entry, NULL);
        pthread_mutex_unlock(&lock);
        if (left < 0) {
            fprintf(stderr, "outbox_child: list: %s\n", email_error_info());
            return 1;
        }
        if (left == 0)
            return 0;
        pthread_mutex_lock(&lock);
        outcomes = 0;
        pthread_mutex_unlock(&lock);
        int n = email_outbox_resume_ex(USER, round ? EMAIL_OUTBOX_RESEND_UNKNOWN : 0);
        if (n < 0) {
            fprintf(stderr, "outbox_child: resume: %s\n", email_error_info());
            return 1;
        }
        wait_outcomes(n);
        if (n == 0)
            usleep(50 * 1000);
    }
    fprintf(stderr, "outbox_child: the outbox is still not empty\n");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "queue") != 0 && strcmp(argv[1], "resume") != 0)) {
        fprintf(stderr, "usage: outbox_child queue DIR PORT N | resume DIR PORT\n");
        return 2;
    }
    if (start(argv[2], atoi(argv[3])) != 0)
        return 1;
    int rc = strcmp(argv[1], "queue") == 0 ? queue(argc > 4 ? atoi(argv[4]) : 500) : resume();
    if (rc == 0)
        say("corrupt", email_outbox_corrupt_count());
    email_close_session(USER);
    email_shutdown();
    email_set_outbox(NULL);
    return rc;
}
