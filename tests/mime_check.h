/*
 * Checks MIME text with Python's email package (/usr/bin/python3 only, BytesParser with
 * policy.default), for tests/unit/test_message.c and tests/integration/test_mime.c. Include it
 * after <cmocka.h>.
 *
 * Expectations are "key=value" strings; a key may repeat (its values in order):
 *   subject, from, to, cc   the subject and the mailboxes ("display name|addr-spec" each)
 *   sender, reply-to        the same for these two (checked only when given)
 *   header                  another header field as Python decodes it: "X-Note|its value"
 *   plain_body, html_body   the bodies as Python decodes them (line breaks as "\n")
 *   plain_cs, html_cs       their charset parameter; plain_cte, html_cte their encoding
 *   shape                   the structure: "multipart/mixed[text/plain,application/pdf]"
 *   att, att_path           attachments: file name, and a file holding the expected bytes
 *   att_cs                  the RFC 2231 charset of each attachment's filename and name
 *                           parameters ("utf-8", "iso-2022-jp"; "" when not RFC 2231 encoded)
 *   inline, inline_path     inline parts: "<content-id>", and the expected bytes
 *   words                   the charsets of the encoded words: "ISO-2022-JP?B,UTF-8?Q"
 *   same_as                 another MIME file that must hold the same message (the fields not
 *                           given are then compared with it instead of being required absent)
 * Always checked: no Bcc, Date, Message-ID and MIME-Version present, no defect anywhere, every
 * encoded word decodes on its own and ends in ASCII (ISO-2022-JP).
 */
#ifndef EMAIL_TEST_MIME_CHECK_H
#define EMAIL_TEST_MIME_CHECK_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIME_CHECK_PYTHON "/usr/bin/python3"

static const char mime_check_script[] =
    "import base64, email.policy, quopri, re, sys\n"
    "from email.message import Message\n"
    "from email.parser import BytesParser\n"
    "\n"
    "def parse(path):\n"
    "    with open(path, 'rb') as f:\n"
    "        return BytesParser(policy=email.policy.default).parse(f)\n"
    "\n"
    "m = parse(sys.argv[1])\n"
    "exp = {}\n"
    "for arg in sys.argv[2:]:\n"
    "    k, _, v = arg.partition('=')\n"
    "    exp.setdefault(k, []).append(v)\n"
    "one = lambda k: exp[k][0] if k in exp else None\n"
    "errs = []\n"
    "\n"
    "def check(what, got, want):\n"
    "    if got != want:\n"
    "        errs.append('%s: got %r, want %r' % (what, got, want))\n"
    "\n"
    "def addrs(msg, h):\n"
    "    if not msg[h]:\n"
    "        return []\n"
    "    return ['%s|%s' % (a.display_name, a.addr_spec) for a in msg[h].addresses]\n"
    "\n"
    "def shape(p):\n"
    "    if p.is_multipart():\n"
    "        return p.get_content_type() + '[' + ','.join(shape(s) for s in p.iter_parts()) + ']'\n"
    "    return p.get_content_type()\n"
    "\n"
    "def bodies(msg):\n"
    "    return {k: msg.get_body((k,)) for k in ('plain', 'html')}\n"
    "\n"
    "def leaves(msg):\n"
    "    b = [p for p in bodies(msg).values() if p is not None]\n"
    "    return [p for p in msg.walk() if not p.is_multipart() and not any(p is x for x in b)]\n"
    "\n"
    "def describe(p):\n"
    "    return (p.get_content_type(), p.get_content_disposition(), p.get_filename(),\n"
    "            p['content-id'], p.get_param('charset'), p.get_payload(decode=True))\n"
    "\n"
    "for h in ('date', 'message-id', 'mime-version'):\n"
    "    if m[h] is None:\n"
    "        errs.append('no ' + h)\n"
    "check('bcc', m['bcc'], None)\n"
    "if 'same_as' in exp:\n"
    "    # the same message as composed: every field and every part, whatever the bytes\n"
    "    o = parse(one('same_as'))\n"
    "    check('subject', m['subject'], o['subject'])\n"
    "    for h in ('from', 'sender', 'reply-to', 'to', 'cc'):\n"
    "        check(h, addrs(m, h), addrs(o, h))\n"
    "    check('shape', shape(m), shape(o))\n"
    "    for k in ('plain', 'html'):\n"
    "        a, b = bodies(m)[k], bodies(o)[k]\n"
    "        check(k, a and (a.get_content(), a.get_param('charset')),\n"
    "              b and (b.get_content(), b.get_param('charset')))\n"
    "    check('parts', [describe(p) for p in leaves(m)], [describe(p) for p in leaves(o)])\n"
    "strict = 'same_as' not in exp  # then what is not given must be absent\n"
    "if strict or 'subject' in exp:\n"
    "    check('subject', m['subject'], one('subject'))\n"
    "for h in ('from', 'sender', 'reply-to', 'to', 'cc'):\n"
    "    if (strict and h in ('from', 'to', 'cc')) or h in exp:\n"
    "        check(h, addrs(m, h), exp.get(h, []))\n"
    "for hv in exp.get('header', []):\n"
    "    name, _, value = hv.partition('|')\n"
    "    check(name, m[name], value)\n"
    "if 'shape' in exp:\n"
    "    check('shape', shape(m), one('shape'))\n"
    "for k, b in bodies(m).items():\n"
    "    if strict or k + '_body' in exp:\n"
    "        got = b.get_content().replace('\\r\\n', '\\n') if b is not None else None\n"
    "        check(k, got, one(k + '_body'))\n"
    "    if b is not None and k + '_cs' in exp:\n"
    "        check(k + ' charset', b.get_param('charset'), one(k + '_cs'))\n"
    "    if b is not None and k + '_cte' in exp:\n"
    "        check(k + ' encoding', b['content-transfer-encoding'], one(k + '_cte'))\n"
    "rest = leaves(m)\n"
    "atts = [p for p in rest if p.get_content_disposition() == 'attachment']\n"
    "inl = [p for p in rest if p.get_content_disposition() == 'inline']\n"
    "if strict or 'att' in exp:\n"
    "    check('attachments', [p.get_filename() for p in atts], exp.get('att', []))\n"
    "    for p, path in zip(atts, exp.get('att_path', [])):\n"
    "        with open(path, 'rb') as f:\n"
    "            check('bytes of ' + str(p.get_filename()), p.get_payload(decode=True), f.read())\n"
    "def rfc2231_cs(p, param, header):\n"
    "    # the policy decodes parameters: the charset is read from the raw field, as compat32 does\n"
    "    raw = [v for k, v in p.raw_items() if k.lower() == header]\n"
    "    q = Message()\n"
    "    q[header] = re.sub(r'\\r?\\n[ \\t]', ' ', raw[0]) if raw else ''\n"
    "    v = q.get_param(param, header=header)\n"
    "    return (v[0] or '').lower() if isinstance(v, tuple) else ''\n"
    "if 'att_cs' in exp:\n"
    "    for p, cs in zip(atts, exp['att_cs']):\n"
    "        check('charset of the filename of ' + str(p.get_filename()),\n"
    "              rfc2231_cs(p, 'filename', 'content-disposition'), cs)\n"
    "        check('charset of the name of ' + str(p.get_filename()),\n"
    "              rfc2231_cs(p, 'name', 'content-type'), cs)\n"
    "    check('attachments with a charset', len(atts), len(exp['att_cs']))\n"
    "if strict or 'inline' in exp:\n"
    "    check('inline parts', [p['content-id'] for p in inl], exp.get('inline', []))\n"
    "    for p, path in zip(inl, exp.get('inline_path', [])):\n"
    "        with open(path, 'rb') as f:\n"
    "            check('bytes of ' + str(p['content-id']), p.get_payload(decode=True), f.read())\n"
    "words = []\n"
    "for p in m.walk():\n"
    "    check('defects', list(p.defects), [])\n"
    "    for k, v in p.items():\n"
    "        check('defects of ' + k, list(getattr(v, 'defects', [])), [])\n"
    "    for k, v in p.raw_items():\n"
    "        for cs, enc, text in re.findall(r'=\\?([^?]+)\\?([BbQq])\\?([^?]*)\\?=', v):\n"
    "            words.append(cs.upper() + '?' + enc.upper())\n"
    "            data = base64.b64decode(text) if enc in 'Bb' else \\\n"
    "                quopri.decodestring(text.encode(), header=True)\n"
    "            try:\n"
    "                data.decode(cs)  # each word on its own: no character cut between two\n"
    "            except ValueError as e:\n"
    "                errs.append('%s: the word %r does not decode alone: %s' % (k, text, e))\n"
    "            esc = data.rfind(b'\\x1b')\n"
    "            if esc >= 0 and data[esc:esc + 3] != b'\\x1b(B':\n"
    "                errs.append('%s: the word %r does not end in ASCII' % (k, text))\n"
    "if 'words' in exp:\n"
    "    want = sorted(w for w in one('words').split(',') if w)\n"
    "    check('encoded words', sorted(set(words)), want)\n"
    "if errs:\n"
    "    sys.exit('\\n'.join(errs))\n";

typedef struct mime_expect {
    char *args[200];
    size_t n;
} mime_expect_t;

static inline void expect_init(mime_expect_t *e)
{
    e->n = 0;
}

static inline void expect_add(mime_expect_t *e, const char *key, const char *value)
{
    assert_true(e->n < sizeof e->args / sizeof *e->args);
    size_t len = strlen(key) + strlen(value) + 2;
    char *s = malloc(len);
    assert_non_null(s);
    snprintf(s, len, "%s=%s", key, value);
    e->args[e->n++] = s;
}

static inline void expect_free(mime_expect_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->args[i]);
    e->n = 0;
}

/* Runs the check on the MIME file at path; fails the test with Python's report on stderr. */
static inline void mime_check_file(const char *path, const mime_expect_t *e)
{
    const char *argv[sizeof e->args / sizeof *e->args + 5] = {MIME_CHECK_PYTHON, "-c",
                                                              mime_check_script, path};
    memcpy(argv + 4, e->args, e->n * sizeof *e->args);
    argv[4 + e->n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (!pid) {
        execv(MIME_CHECK_PYTHON, (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_true(errno == EINTR);
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        fail_msg("Python's check of %s failed (status %d)", path, status);
}

/* Writes len bytes to a new temporary file; its path is malloc'ed. */
static inline char *mime_temp_file(const void *data, size_t len)
{
    char *path = strdup("/tmp/emailsession-mime-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    for (const char *p = data; len;) {
        ssize_t k = write(fd, p, len);
        assert_true(k > 0);
        p += k;
        len -= (size_t)k;
    }
    close(fd);
    return path;
}

/* The check on MIME bytes in memory. */
static inline void mime_check_bytes(const char *mime, size_t len, const mime_expect_t *e)
{
    char *path = mime_temp_file(mime, len);
    mime_check_file(path, e);
    unlink(path);
    free(path);
}

/* Every line ends with CRLF and holds at most 998 octets, at most 78 in the header sections. */
static inline void mime_check_lines(const char *mime, size_t len)
{
    size_t start = 0;
    bool headers = true;
    for (size_t i = 0; i < len; i++) {
        if (mime[i] == '\r' && (i + 1 == len || mime[i + 1] != '\n'))
            fail_msg("bare CR at %zu", i);
        if (mime[i] != '\n')
            continue;
        if (i == 0 || mime[i - 1] != '\r')
            fail_msg("bare LF at %zu", i);
        size_t n = i - 1 - start;
        if (n > 998)
            fail_msg("line of %zu octets at %zu", n, start);
        if (headers && n > 78)
            fail_msg("header line of %zu octets: %.*s", n, (int)n, mime + start);
        /* a part's header section starts after a boundary line (the library's start "--=_") */
        if (n > 4 && !memcmp(mime + start, "--=_", 4))
            headers = true;
        else if (!n)
            headers = false;
        start = i + 1;
    }
    if (start != len)
        fail_msg("the text does not end with CRLF");
}

#endif
