/*
 * libFuzzer target: the MIME parser (lib/mime_parse*.c) and the getters over it.
 *
 * Input: the message's bytes, as they would come from a server. Properties:
 *  - no crash, no leak, no undefined behaviour (the sanitizers);
 *  - every string a getter gives is valid UTF-8 (subject, From, recipients, bodies, every header
 *    field asked by name, attachment names, content types, content ids);
 *  - the size is the input's, the decoded attachments are within EMAIL_PARSE_MAX_DECODED;
 *  - fed in pieces (sizes from a generator seeded with the input's hash, one byte at a time
 *    among them) the parser gives exactly what it gives for the whole input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "emailsession.h"
#include "fuzz_common.h"
#include "mime_parse.h"
#include "util.h"

FUZZ_NOCOV static void check_utf8(const char *what, const char *s)
{
    if (s)
        FUZZ_CHECK(email__utf8_valid(s, strlen(s)), "%s is not valid UTF-8", what);
}

FUZZ_NOCOV static bool same(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

FUZZ_NOCOV static void check_message(const email_message_t *m, size_t size)
{
    check_utf8("subject", email_message_get_subject(m));
    check_utf8("from", email_message_get_from(m));
    check_utf8("text", email_message_get_text_body(m));
    check_utf8("html", email_message_get_html_body(m));
    check_utf8("message-id", email_message_get_message_id(m));
    static const char *const names[] = {"Subject", "From", "To", "Cc", "Date", "Content-Type",
                                        "X-Mailer", "Received"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        check_utf8(names[i], email_message_get_header(m, names[i]));
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < email_message_get_recipient_count(m, k); i++)
            check_utf8("recipient", email_message_get_recipient(m, k, i));
    FUZZ_CHECK(email_message_get_size(m) == size);
    uint64_t total = 0;
    for (size_t i = 0; i < email_message_get_attachment_count(m); i++) {
        const char *name, *type, *cid;
        const void *data;
        size_t len;
        int disp;
        FUZZ_CHECK(!email_message_get_attachment(m, i, &name, &type, &data, &len));
        FUZZ_CHECK(!email_message_get_attachment_info(m, i, &cid, &disp));
        check_utf8("attachment name", name);
        check_utf8("content type", type);
        check_utf8("content id", cid);
        FUZZ_CHECK(type && strchr(type, '/'), "no type/subtype");
        FUZZ_CHECK(data || !len);
        total += len;
    }
    FUZZ_CHECK(total <= EMAIL_PARSE_MAX_DECODED);
}

FUZZ_NOCOV static void check_same(const email_message_t *a, const email_message_t *b)
{
    FUZZ_CHECK(same(email_message_get_subject(a), email_message_get_subject(b)));
    FUZZ_CHECK(same(email_message_get_from(a), email_message_get_from(b)));
    FUZZ_CHECK(same(email_message_get_text_body(a), email_message_get_text_body(b)));
    FUZZ_CHECK(same(email_message_get_html_body(a), email_message_get_html_body(b)));
    FUZZ_CHECK(email_message_get_date(a) == email_message_get_date(b));
    FUZZ_CHECK(email_message_get_parse_problems(a) == email_message_get_parse_problems(b));
    for (int k = 0; k < 3; k++) {
        size_t n = email_message_get_recipient_count(a, k);
        FUZZ_CHECK(n == email_message_get_recipient_count(b, k));
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(same(email_message_get_recipient(a, k, i),
                            email_message_get_recipient(b, k, i)));
    }
    size_t n = email_message_get_attachment_count(a);
    FUZZ_CHECK(n == email_message_get_attachment_count(b));
    for (size_t i = 0; i < n; i++) {
        const char *na, *ta, *nb, *tb;
        const void *da, *db;
        size_t la, lb;
        email_message_get_attachment(a, i, &na, &ta, &da, &la);
        email_message_get_attachment(b, i, &nb, &tb, &db, &lb);
        FUZZ_CHECK(same(na, nb) && same(ta, tb) && la == lb && (!la || !memcmp(da, db, la)));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    email_message_t *whole;
    if (email_message_from_mime((const char *)data, size, &whole))
        return 0; /* out of memory only */
    check_message(whole, size);
    uint64_t seed = 1469598103934665603u;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 1099511628211u;
    mime_parser_t *p;
    if (email__mime_parser_new(&p)) {
        email_message_free(whole);
        return 0;
    }
    for (size_t i = 0; i < size;) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        size_t k = (seed >> 33) % 9 == 0 ? 1 : 1 + (seed >> 40) % 600;
        if (k > size - i)
            k = size - i;
        FUZZ_CHECK(!email__mime_parser_feed(p, (const char *)data + i, k));
        i += k;
    }
    email_message_t *pieces;
    FUZZ_CHECK(!email__mime_parser_finish(p, &pieces));
    check_same(whole, pieces);
    email_message_free(pieces);
    email_message_free(whole);
    return 0;
}
