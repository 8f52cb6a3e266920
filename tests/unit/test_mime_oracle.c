/*
 * GMime (libgmime-3.0, tests only; tools/setup.sh installs it) as an oracle for the MIME parser:
 * every fixture of tests/fixtures/mime is read by both, and the subject, the From mailbox and the
 * attachment file names must agree. Where GMime reads a fixture worse than the library on
 * purpose (a charset extension its iconv lacks), the row in `differ` says so and the test then
 * requires that they do differ, so that the list stays true. Without GMime this test fails: it is
 * not optional.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"

#ifdef HAVE_GMIME
#include <gmime/gmime.h>

/* Fields GMime is known to read differently, and why. */
static const struct {
    const char *file, *field, *why;
} differ[] = {
    /* RFC 2047 wants every encoded word whole; these cut a character between two words, which
     * GMime decodes one by one, the library as one text (adjacent words of one charset) */
    {"gb2312-split.eml", "subject", "a GB2312 character cut between two encoded words"},
    {"gb18030-as-gb2312.eml", "subject", "a GBK character cut between two encoded words"},
    {"utf8-split.eml", "subject", "a UTF-8 character cut between a Q and a B word"},
    {"iso2022jp-ext.eml", "subject", "glibc's ISO-2022-JP has no NEC special characters"},
    {"iso2022jp-ext.eml", "from", "glibc's ISO-2022-JP has no NEC-selected IBM extensions"},
};

typedef struct side {
    char *subject, *from;
    char names[1024]; /* the attachment file names, '|' after each */
} side_t;

static char *slurp(const char *dir, const char *name, size_t *n)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void add_name(side_t *s, const char *name)
{
    if (!name)
        return;
    size_t len = strlen(s->names);
    snprintf(s->names + len, sizeof s->names - len, "%s|", name);
}

static void ours(side_t *s, const char *buf, size_t n)
{
    email_message_t *m = NULL;
    assert_int_equal(email_message_from_mime(buf, n, &m), 0);
    const char *subject = email_message_get_subject(m), *from = email_message_get_from(m);
    s->subject = strdup(subject ? subject : "");
    s->from = strdup(from ? from : "");
    for (size_t i = 0; i < email_message_get_attachment_count(m); i++) {
        const char *name = NULL;
        assert_int_equal(email_message_get_attachment(m, i, &name, NULL, NULL, NULL), 0);
        add_name(s, name);
    }
    email_message_free(m);
}

static void gmime_part(GMimeObject *parent, GMimeObject *part, gpointer data)
{
    (void)parent;
    side_t *s = data;
    if (GMIME_IS_PART(part)) {
        add_name(s, g_mime_part_get_filename(GMIME_PART(part)));
    } else if (GMIME_IS_MESSAGE_PART(part)) {
        const char *name = g_mime_object_get_content_disposition_parameter(part, "filename");
        add_name(s, name ? name : g_mime_object_get_content_type_parameter(part, "name"));
    }
}

/* From as the library writes it: "Name <addr>" (the name quoted when it holds specials). */
static char *gmime_from(GMimeMessage *msg)
{
    InternetAddressList *list = g_mime_message_get_from(msg);
    if (!list || internet_address_list_length(list) == 0)
        return strdup("");
    InternetAddress *ia = internet_address_list_get_address(list, 0);
    const char *name = internet_address_get_name(ia);
    const char *addr = INTERNET_ADDRESS_IS_MAILBOX(ia)
                           ? internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)) : "";
    char out[1024];
    if (!name || !*name)
        snprintf(out, sizeof out, "%s", addr);
    else if (strpbrk(name, "()<>[]:;@\\,.\""))
        snprintf(out, sizeof out, "\"%s\" <%s>", name, addr);
    else
        snprintf(out, sizeof out, "%s <%s>", name, addr);
    return strdup(out);
}

static void theirs(side_t *s, const char *buf, size_t n)
{
    static const char *fallback[] = {"UTF-8", "windows-1252", NULL};
    GMimeParserOptions *opts = g_mime_parser_options_new();
    g_mime_parser_options_set_fallback_charsets(opts, fallback);
    GMimeStream *stream = g_mime_stream_mem_new_with_buffer(buf, n);
    GMimeParser *parser = g_mime_parser_new_with_stream(stream);
    GMimeMessage *msg = g_mime_parser_construct_message(parser, opts);
    assert_non_null(msg);
    const char *subject = g_mime_message_get_subject(msg);
    s->subject = strdup(subject ? subject : "");
    s->from = gmime_from(msg);
    g_mime_message_foreach(msg, gmime_part, s);
    g_object_unref(msg);
    g_object_unref(parser);
    g_object_unref(stream);
    g_mime_parser_options_free(opts);
}

static const char *known_difference(const char *file, const char *field)
{
    for (size_t i = 0; i < sizeof differ / sizeof *differ; i++)
        if (!strcmp(differ[i].file, file) && !strcmp(differ[i].field, field))
            return differ[i].why;
    return NULL;
}

static int compare(const char *file, const char *field, const char *a, const char *b)
{
    const char *why = known_difference(file, field);
    bool same = strcmp(a, b) == 0;
    if (same && !why)
        return 0;
    if (!same && why) {
        print_message("%s %s: GMime reads \"%s\" (we \"%s\"): %s\n", file, field, b, a, why);
        return 0;
    }
    print_error("%s %s: we read \"%s\", GMime \"%s\"%s\n", file, field, a, b,
                why ? " (listed as differing: drop the row)" : "");
    return 1;
}

static void test_gmime_agrees(void **state)
{
    (void)state;
    const char *src = getenv("EMAIL_TEST_SRCDIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/mime", src ? src : ".");
    g_mime_init();
    DIR *d = opendir(dir);
    assert_non_null(d);
    int failures = 0, files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".eml"))
            continue;
        size_t n;
        char *buf = slurp(dir, e->d_name, &n);
        side_t a = {0}, b = {0};
        ours(&a, buf, n);
        theirs(&b, buf, n);
        failures += compare(e->d_name, "subject", a.subject, b.subject);
        failures += compare(e->d_name, "from", a.from, b.from);
        failures += compare(e->d_name, "attachment names", a.names, b.names);
        free(a.subject), free(a.from), free(b.subject), free(b.from);
        free(buf);
        files++;
    }
    closedir(d);
    g_mime_shutdown();
    assert_true(files >= 12);
    assert_int_equal(failures, 0);
}
#else
static void test_gmime_agrees(void **state)
{
    (void)state;
    fail_msg("GMime (libgmime-3.0-dev) is missing: run tools/setup.sh, then configure again");
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gmime_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
