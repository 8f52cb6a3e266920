/*
 * emailsession-send: the addresses of an RFC 5322 address list, for -t and for envelopes the
 * tool writes itself: display names, quoted strings, comments and groups are read past.
 */
#include <stdbool.h>
#include <string.h>
#include <sysexits.h>

#include "addresses.h"
#include "cli.h"

/* One address of the list as it is read: the text outside <>, and the text inside. */
typedef struct item {
    char plain[1024], angle[1024];
    size_t np, na;
    bool has_angle;
} item_t;

static int add_char(item_t *it, bool in_angle, char c)
{
    char *buf = in_angle ? it->angle : it->plain;
    size_t *n = in_angle ? &it->na : &it->np;
    if (*n + 1 >= sizeof it->plain)
        return -1;
    buf[(*n)++] = c;
    buf[*n] = '\0';
    return 0;
}

/* Trims blanks around s in place. */
static char *trim(char *s)
{
    s += strspn(s, " \t\r\n");
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Ends an item: its address into out (none for an empty item, as in "undisclosed:;"). */
static int finish(item_t *it, strv_t *out, const char *list)
{
    char *addr = trim(it->has_angle ? it->angle : it->plain);
    int rc = 0;
    if (*addr && strpbrk(addr, " \t"))
        rc = cli_fail(EX_DATAERR, "no address in \"%s\" (in \"%s\")", addr, list);
    else if (*addr && strv_push(out, addr))
        rc = cli_fail(EX_OSERR, "out of memory");
    memset(it, 0, sizeof *it);
    return rc;
}

/* A character outside quotes and comments: structure, or part of the current address. */
static int structure(item_t *it, char c, bool *in_angle, strv_t *out, const char *list)
{
    switch (c) {
    case '<':
        *in_angle = it->has_angle = true;
        it->na = 0;
        it->angle[0] = '\0';
        return 0;
    case '>':
        *in_angle = false;
        return 0;
    case ':':
        if (*in_angle) /* an obsolete route, <@a,@b:x@y>: only the address counts */
            return (it->na = 0, it->angle[0] = '\0', 0);
        memset(it, 0, sizeof *it); /* a group's name */
        return 0;
    case ',':
    case ';':
        return *in_angle ? 0 : finish(it, out, list);
    default:
        return add_char(it, *in_angle, c) ? cli_fail(EX_DATAERR, "address too long in \"%s\"",
                                                     list) : 0;
    }
}

int cli_address_list(const char *list, strv_t *out)
{
    item_t it;
    memset(&it, 0, sizeof it);
    bool in_quote = false, in_angle = false;
    int depth = 0, rc = 0;
    for (const char *p = list; rc == 0 && *p; p++) {
        if (depth) { /* a comment: skipped, nested ones too */
            if (*p == '\\' && p[1])
                p++;
            else
                depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
        } else if (in_quote) { /* kept as written: "a b"@example.org is an address */
            if (*p == '\\' && p[1])
                rc = add_char(&it, in_angle, *p++);
            else if (*p == '"')
                in_quote = false;
            if (rc == 0)
                rc = add_char(&it, in_angle, *p);
        } else if (*p == '(') {
            depth = 1;
        } else if (*p == '"') {
            in_quote = true;
            rc = add_char(&it, in_angle, *p);
        } else {
            rc = structure(&it, *p, &in_angle, out, list);
        }
    }
    if (rc)
        return rc < 0 ? cli_fail(EX_DATAERR, "address too long in \"%s\"", list) : rc;
    if (in_quote || depth || in_angle)
        return cli_fail(EX_DATAERR, "unterminated quote, comment or <> in \"%s\"", list);
    return finish(&it, out, list);
}
