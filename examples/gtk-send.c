/*
 * A GTK 4 window that sends mail without freezing: a Send button, a progress bar and a status
 * label. The library runs on its own thread; its outcomes and progress reach the GTK main loop
 * through email_dispatch_fd(), watched with g_unix_fd_add, so every callback runs on the GUI
 * thread and may touch widgets. The session starts without waiting
 * (email_start_smtp_session_async): the label says "Connecting...", then "Connected" or the
 * server's refusal; the message sent meanwhile waits for the session.
 *
 *   gtk-send HOST PORT FROM TO ATTACHMENT [--auto]
 *
 * --auto clicks Send by itself, prints each state of the label, quits when the message has its
 * outcome, and prints how many frames the window painted while the message was going out (the
 * proof that it never froze).
 */
#include <emailsession.h>
#include <glib-unix.h>
#include <gtk/gtk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct app {
    GtkApplication *gtk;
    GtkWidget *button, *progress, *label;
    const char *host, *from, *to, *attachment;
    int port;
    bool automatic, sending, session_open; /* session_open: started or starting */
    gint64 started;
    guint frames;          /* frames painted while sending */
    int exit_code;
} app_t;

static app_t app;

static gboolean on_dispatch(gint fd, GIOCondition condition, gpointer data)
{
    email_dispatch(); /* runs the library's callbacks here, on the GUI thread */
    return G_SOURCE_CONTINUE;
}

static gboolean on_tick(GtkWidget *widget, GdkFrameClock *clock, gpointer data)
{
    if (app.sending)
        app.frames++;
    /* something visible changes every frame, so the window really repaints */
    if (app.sending)
        gtk_widget_queue_draw(app.progress);
    return G_SOURCE_CONTINUE;
}

static void on_progress(uint64_t id, uint64_t sent, uint64_t total, void *data)
{
    double f = total ? (double)sent / (double)total : 0;
    char text[64];
    snprintf(text, sizeof text, "%.1f of %.1f MB", sent / 1e6, total / 1e6);
    gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(app.progress), f);
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app.progress), text);
}

static void show(const char *text)
{
    gtk_label_set_text(GTK_LABEL(app.label), text);
    if (app.automatic)
        printf("%s\n", text);
}

static void on_started(const char *user, const email_status_t *status, void *data)
{
    char text[700];
    if (status->success) {
        /* the first line of the server's last reply (EHLO's lists the extensions) */
        snprintf(text, sizeof text, "Connected: %d %.*s", status->status,
                 (int)strcspn(status->status_text, "\r\n"), status->status_text);
    } else {
        /* the name is free again: the next click starts afresh; the message fails too */
        app.session_open = false;
        snprintf(text, sizeof text, "Not connected (%s): %s", email_error_name(status->error),
                 status->status_text);
    }
    show(text);
}

static void on_sent(uint64_t id, const email_status_t *status, void *data)
{
    char text[700];
    double secs = (double)(g_get_monotonic_time() - app.started) / 1e6;
    app.sending = false;
    if (status->success)
        snprintf(text, sizeof text, "Sent in %.1f s: %d %s", secs, status->status,
                 status->status_text);
    else
        snprintf(text, sizeof text, "Not sent (%s): %s", email_error_name(status->error),
                 status->status_text);
    gtk_label_set_text(GTK_LABEL(app.label), text);
    gtk_widget_set_sensitive(app.button, TRUE);
    if (app.automatic) {
        printf("%s\nframes painted while sending: %u (%.0f per second)\n", text, app.frames,
               secs > 0 ? app.frames / secs : 0);
        app.exit_code = status->success ? 0 : 1;
        g_application_quit(G_APPLICATION(app.gtk));
    }
}

static void on_send(GtkButton *button, gpointer data)
{
    bool starting = !app.session_open;
    if (starting) {
        /* returns at once: the window goes on painting while the session connects */
        if (!email_start_smtp_session_async("gtk", NULL, app.host, app.port, EMAIL_ASYNCHRONOUS,
                                            EMAIL_OPTION_DEFAULT, on_started, NULL)) {
            show(email_error_info());
            return;
        }
        email_session_set_callback("gtk", on_sent, NULL);
        email_session_set_progress("gtk", on_progress, NULL);
        app.session_open = true;
        show("Connecting...");
    }
    email_message_t *m = email_message_new();
    email_message_set_from(m, app.from);
    email_message_add_to(m, app.to);
    email_message_set_subject(m, "A large attachment, sent from a window that stays alive");
    email_message_set_text_body(m, "See the attachment.\n");
    int rc = email_message_add_attachment_file(m, app.attachment, NULL, NULL);
    if (rc == 0 && email_send_message("gtk", m)) {
        app.sending = true;
        app.frames = 0;
        app.started = g_get_monotonic_time();
        gtk_widget_set_sensitive(app.button, FALSE);
        if (!starting)
            show("Sending...");
    } else {
        gtk_label_set_text(GTK_LABEL(app.label), rc ? email_strerror(rc) : email_error_info());
    }
    email_message_free(m);
}

static gboolean click_later(gpointer data)
{
    on_send(GTK_BUTTON(app.button), NULL);
    return G_SOURCE_REMOVE;
}

static void on_activate(GtkApplication *gtk, gpointer data)
{
    GtkWidget *window = gtk_application_window_new(gtk);
    gtk_window_set_title(GTK_WINDOW(window), "emailsession");
    gtk_window_set_default_size(GTK_WINDOW(window), 420, 140);
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 8);
    gtk_widget_set_margin_start(box, 12);
    gtk_widget_set_margin_end(box, 12);
    gtk_widget_set_margin_top(box, 12);
    gtk_widget_set_margin_bottom(box, 12);
    app.button = gtk_button_new_with_label("Send");
    app.progress = gtk_progress_bar_new();
    gtk_progress_bar_set_show_text(GTK_PROGRESS_BAR(app.progress), TRUE);
    app.label = gtk_label_new("Ready");
    gtk_label_set_wrap(GTK_LABEL(app.label), TRUE);
    gtk_box_append(GTK_BOX(box), app.button);
    gtk_box_append(GTK_BOX(box), app.progress);
    gtk_box_append(GTK_BOX(box), app.label);
    gtk_window_set_child(GTK_WINDOW(window), box);
    g_signal_connect(app.button, "clicked", G_CALLBACK(on_send), NULL);
    gtk_widget_add_tick_callback(app.progress, on_tick, NULL, NULL);
    g_unix_fd_add(email_dispatch_fd(), G_IO_IN, on_dispatch, NULL);
    gtk_window_present(GTK_WINDOW(window));
    if (app.automatic)
        g_timeout_add(300, click_later, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST PORT FROM TO ATTACHMENT [--auto]\n", argv[0]);
        return 2;
    }
    app.host = argv[1];
    app.port = atoi(argv[2]);
    app.from = argv[3];
    app.to = argv[4];
    app.attachment = argv[5];
    app.automatic = argc > 6 && !strcmp(argv[6], "--auto");
    app.gtk = gtk_application_new(NULL, G_APPLICATION_NON_UNIQUE);
    g_signal_connect(app.gtk, "activate", G_CALLBACK(on_activate), NULL);
    char *gtk_argv[] = {argv[0], NULL};
    int rc = g_application_run(G_APPLICATION(app.gtk), 1, gtk_argv);
    g_object_unref(app.gtk);
    if (app.session_open)
        email_close_session("gtk");
    email_shutdown();
    return rc ? rc : app.exit_code;
}
