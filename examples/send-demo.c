/*
 * The demo: opens a named session (WLanguage style), sends one message, shows the conversation
 * log as it happens and the outcome.
 *   send-demo HOST PORT USER PASSWORD FROM TO
 */
#include <emailsession.h>
#include <stdio.h>
#include <stdlib.h>

static void show_log(const char *line, void *user_data)
{
    (void)user_data;
    printf("  %s\n", line);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT USER PASSWORD FROM TO\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *user = argv[3], *password = argv[4];
    int port = atoi(argv[2]);

    /* the log as it happens, from the library's thread (this program runs no dispatch loop) */
    email_set_callback_thread(EMAIL_CALLBACK_LOOP_THREAD);
    email_set_log_callback(show_log, NULL);
    email_set_timeout(10);
    printf("Conversation log (4D format):\n");
    if (!email_start_smtp_session(user, password, host, port, EMAIL_SYNCHRONOUS,
                                  EMAIL_OPTION_DEFAULT)) {
        printf("\nstart failed: %s (%s)\n", email_error_info(),
               email_error_name(email_last_error()));
        return 1;
    }

    email_message_t *m = email_message_new();
    email_message_set_from(m, argv[5]);
    email_message_add_to(m, argv[6]);
    email_message_set_subject(m, "Hello from emailsession — déjà vu");
    email_message_set_text_body(m, "This message was sent without blocking anybody.\n"
                                   ".A line starting with a dot arrives intact.\n"
                                   "Accents: é à ü, and an emoji: \xF0\x9F\x93\xA7\n");
    bool ok = email_send_message(user, m);
    email_message_free(m);
    if (ok)
        printf("\nsent: the server accepted the message\n");
    else
        printf("\nsend failed: %s (%s)\n", email_error_info(),
               email_error_name(email_last_error()));
    email_close_session(user);
    email_shutdown();
    return ok ? 0 : 1;
}
