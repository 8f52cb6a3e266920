/*
 * A program on its own libuv loop: emailsession runs on the caller's loop (email_use_loop), so
 * the callbacks arrive on this thread between the program's own events, with no other thread.
 *   uv-callback HOST PORT FROM TO [COUNT]
 * Sends COUNT messages on one asynchronous session while a timer of the program's own keeps
 * ticking, then closes the session and lets the loop end.
 */
#include <emailsession-uv.h>
#include <emailsession.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static int expected, outcomes, failures, ticks;
static uv_timer_t ticker;

static void on_sent(uint64_t id, const email_status_t *status, void *user_data)
{
    (void)user_data;
    outcomes++;
    if (status->success) {
        printf("message %llu: sent (%d %s)\n", (unsigned long long)id, status->status,
               status->status_text);
    } else {
        failures++;
        printf("message %llu: %s: %s\n", (unsigned long long)id, email_error_name(status->error),
               status->status_text);
    }
    if (outcomes == expected) {
        email_close_session("uv-demo"); /* QUIT goes out; the loop ends once it is done */
        uv_timer_stop(&ticker);
        uv_close((uv_handle_t *)&ticker, NULL);
    }
}

static void on_started(const char *user, const email_status_t *status, void *user_data)
{
    (void)user_data;
    if (status->success)
        printf("session %s: open (%d %s)\n", user, status->status, status->status_text);
    else /* the messages queued meanwhile each fail with this reason */
        printf("session %s: %s: %s\n", user, email_error_name(status->error),
               status->status_text);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    ticks++; /* the program's own work goes on while mail goes out */
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO [COUNT]\n", argv[0]);
        return 2;
    }
    expected = argc > 5 ? atoi(argv[5]) : 3;
    uv_loop_t *loop = uv_default_loop();
    if (email_use_loop(loop) != 0)
        return 1;
    uv_timer_init(loop, &ticker);
    uv_timer_start(&ticker, on_tick, 1, 1);

    /* the loop runs only once uv_run is called: the start must not wait for it */
    if (!email_start_smtp_session_async("uv-demo", NULL, argv[1], atoi(argv[2]),
                                        EMAIL_ASYNCHRONOUS, EMAIL_OPTION_DEFAULT, on_started,
                                        NULL) ||
        email_session_set_callback("uv-demo", on_sent, NULL) != 0) {
        fprintf(stderr, "%s\n", email_error_info());
        return 1;
    }
    for (int i = 0; i < expected; i++) {
        email_message_t *m = email_message_new();
        email_message_set_from(m, argv[3]);
        email_message_add_to(m, argv[4]);
        email_message_set_subject(m, "sent from a libuv program");
        email_message_set_text_body(m, "The loop never blocked.\n");
        if (!email_send_message("uv-demo", m))
            fprintf(stderr, "not queued: %s\n", email_error_info());
        email_message_free(m);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    printf("%d sent, %d failed; the program's timer ticked %d times meanwhile\n",
           outcomes - failures, failures, ticks);
    email_shutdown();
    uv_run(loop, UV_RUN_DEFAULT); /* lets the library's own handles finish closing */
    return uv_loop_close(loop) == 0 && failures == 0 ? 0 : 1;
}
