/*
 * One outbox entry, <16 hex digits of its id>.msg:
 *
 *   0  "EMOUTBOX"     8  version (1)     12 flags (OUTBOX_F_EOD_SENT; the one mutable field,
 *   16 id            24 body length      32 envelope length        outside the checksum)
 *   36 SHA-256 of envelope, body, then bytes 16-35
 *   68 the envelope: queued time, port, security, SMTPUTF8 / 8-bit, session name, host, user,
 *      from, subject, recipients (lengths first; no password or token ever)
 *   .. the body: the MIME as it goes out, attachments included
 *
 * Integers are little-endian. Written as .tmp-<id>, fsynced, renamed (never over another
 * entry), then the directory fsynced: an entry that exists is whole, and a temporary file is a
 * write that never finished.
 */
#define _GNU_SOURCE /* renameat2 */
#include "outbox.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define MAGIC "EMOUTBOX"
#define VERSION 1
#define HEADER 68
#define META_MAX (1u << 20)
#define DIGEST 32
#define NO_STRING 0xFFFFFFFFu


static int buf_le(email_buf_t *b, uint64_t v, int n)
{
    unsigned char p[8];
    email__put_le(p, v, n);
    return email__buf_append(b, p, (size_t)n);
}

static int buf_string(email_buf_t *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    int rc = buf_le(b, s ? n : NO_STRING, 4);
    return rc ? rc : email__buf_append(b, s ? s : "", n);
}

static int encode_meta(const outbox_meta_t *m, email_buf_t *b)
{
    int rc = buf_le(b, (uint64_t)m->queued, 8) | buf_le(b, (uint64_t)m->port, 4) |
             buf_le(b, (uint64_t)m->security, 4) |
             buf_le(b, (uint64_t)(m->smtputf8 | m->eight_bit << 1), 4);
    const char *strings[] = {m->name, m->host, m->user, m->from, m->subject};
    for (size_t i = 0; i < 5; i++)
        rc |= buf_string(b, strings[i]);
    rc |= buf_le(b, m->nrcpts, 4);
    for (size_t i = 0; i < m->nrcpts; i++)
        rc |= buf_string(b, m->rcpts[i]);
    return rc ? EMAIL_ENOMEM : 0;
}

typedef struct cursor {
    const unsigned char *p, *end;
    bool bad;
} cursor_t;

static uint64_t take_le(cursor_t *c, int n)
{
    if (c->bad || c->end - c->p < n) {
        c->bad = true;
        return 0;
    }
    uint64_t v = email__get_le(c->p, n);
    c->p += n;
    return v;
}

/* A string of the envelope (NULL for none); sets c->bad when it does not fit. */
static char *take_string(cursor_t *c, bool *nomem)
{
    uint64_t n = take_le(c, 4);
    if (c->bad || n == NO_STRING)
        return NULL;
    if ((uint64_t)(c->end - c->p) < n || memchr(c->p, '\0', n)) {
        c->bad = true;
        return NULL;
    }
    char *s = email__strndup((const char *)c->p, n);
    *nomem |= !s;
    c->p += n;
    return s;
}

/* 0, EMAIL_ENOMEM, or EMAIL_EIO when the envelope does not parse. */
static int decode_meta(const unsigned char *p, size_t len, outbox_meta_t *m)
{
    cursor_t c = {p, p + len, false};
    bool nomem = false;
    m->queued = (int64_t)take_le(&c, 8);
    m->port = (int)take_le(&c, 4);
    m->security = (int)take_le(&c, 4);
    uint64_t bits = take_le(&c, 4);
    m->smtputf8 = bits & 1;
    m->eight_bit = bits & 2;
    char **strings[] = {&m->name, &m->host, &m->user, &m->from, &m->subject};
    for (size_t i = 0; i < 5; i++)
        *strings[i] = take_string(&c, &nomem);
    uint64_t n = take_le(&c, 4);
    if (!c.bad && !m->from)
        c.bad = true;
    if (!c.bad && n && n < len && (m->rcpts = calloc(n, sizeof *m->rcpts))) {
        for (m->nrcpts = 0; m->nrcpts < n && !c.bad; m->nrcpts++)
            if (!(m->rcpts[m->nrcpts] = take_string(&c, &nomem)))
                c.bad = true;
    } else if (!c.bad) {
        c.bad = true; /* no recipient, more than could fit, or no memory */
        nomem = n && n < len;
    }
    if (nomem)
        return EMAIL_ENOMEM;
    return c.bad || c.p != c.end ? EMAIL_EIO : 0;
}

void email__outbox_meta_clear(outbox_meta_t *m)
{
    free(m->name);
    free(m->host);
    free(m->user);
    free(m->from);
    free(m->subject);
    for (size_t i = 0; m->rcpts && i < m->nrcpts; i++)
        free(m->rcpts[i]);
    free(m->rcpts);
    memset(m, 0, sizeof *m);
}

static int meta_copy(outbox_meta_t *to, const outbox_meta_t *from)
{
    *to = *from;
    to->name = email__strdup(from->name);
    to->host = email__strdup(from->host);
    to->user = email__strdup(from->user);
    to->from = email__strdup(from->from);
    to->subject = email__strdup(from->subject);
    to->rcpts = calloc(from->nrcpts ? from->nrcpts : 1, sizeof *to->rcpts);
    bool ok = to->rcpts && (!from->name || to->name) && (!from->host || to->host) &&
              (!from->user || to->user) && (!from->from || to->from) &&
              (!from->subject || to->subject);
    for (to->nrcpts = 0; ok && to->nrcpts < from->nrcpts; to->nrcpts++)
        ok = (to->rcpts[to->nrcpts] = email__strdup(from->rcpts[to->nrcpts])) != NULL;
    return ok ? 0 : EMAIL_ENOMEM;
}

/* The checksum's last part: the header's fixed fields. */
static void digest_tail(gnutls_hash_hd_t h, uint64_t id, uint64_t body_len, uint32_t meta_len,
                        unsigned char out[DIGEST])
{
    unsigned char fixed[20];
    email__put_le(fixed, id, 8);
    email__put_le(fixed + 8, body_len, 8);
    email__put_le(fixed + 16, meta_len, 4);
    gnutls_hash(h, fixed, sizeof fixed);
    gnutls_hash_deinit(h, out);
}

static int write_all(int fd, const void *data, size_t n, off_t at)
{
    const char *p = data;
    while (n) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
        at += w;
    }
    return 0;
}

static void io_error(char *err, size_t errlen, const outbox_t *ob, const char *what)
{
    snprintf(err, errlen, "outbox \"%s\": %s: %s", email__outbox_dir(ob), what,
             strerror(errno));
}

/* Writes the body from read(ctx) after the envelope, hashing it: 0, or the reader's failure
 * (its text in err), or EMAIL_EIO. */
static int write_body(outbox_entry_t *e, int fd, gnutls_hash_hd_t h,
                      ssize_t (*read)(void *, char *, size_t), void *ctx, char *err,
                      size_t errlen)
{
    char buf[65536];
    for (;;) {
        ssize_t got = read(ctx, buf, sizeof buf);
        if (got < 0) {
            if (!err[0])
                snprintf(err, errlen, "the message cannot be read: %s",
                         email_strerror((int)got));
            return (int)got;
        }
        if (!got)
            return 0;
        gnutls_hash(h, buf, (size_t)got);
        e->meta.eight_bit |= !email__is_ascii(buf, (size_t)got);
        if (write_all(fd, buf, (size_t)got, (off_t)(e->data_off + e->body_len)) != 0) {
            io_error(err, errlen, e->ob, "the message could not be written");
            return EMAIL_EIO;
        }
        e->body_len += (uint64_t)got;
    }
}

/* The entry's temporary file, whole and on disk (not yet renamed). */
static int write_entry(outbox_entry_t *e, int fd, ssize_t (*read)(void *, char *, size_t),
                       void *ctx, char *err, size_t errlen)
{
    email_buf_t meta;
    email__buf_init(&meta);
    gnutls_hash_hd_t h;
    int rc = encode_meta(&e->meta, &meta);
    if (rc || meta.len > META_MAX || gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0) {
        email__buf_free(&meta);
        snprintf(err, errlen, rc ? "out of memory" : "the envelope is too large");
        return rc ? rc : EMAIL_EINVAL;
    }
    e->data_off = HEADER + meta.len;
    gnutls_hash(h, meta.data, meta.len);
    rc = write_all(fd, meta.data, meta.len, HEADER);
    if (rc)
        io_error(err, errlen, e->ob, "the message could not be written");
    rc = rc ? EMAIL_EIO : write_body(e, fd, h, read, ctx, err, errlen);
    unsigned char head[HEADER];
    memcpy(head, MAGIC, 8);
    email__put_le(head + 8, VERSION, 4);
    email__put_le(head + OUTBOX_FLAGS_AT, 0, 4);
    email__put_le(head + 16, e->meta.id, 8);
    email__put_le(head + 24, e->body_len, 8);
    email__put_le(head + 32, meta.len, 4);
    digest_tail(h, e->meta.id, e->body_len, (uint32_t)meta.len, head + 36);
    email__buf_free(&meta);
    if (!rc && (write_all(fd, head, HEADER, 0) != 0 || fsync(fd) != 0)) {
        io_error(err, errlen, e->ob, "the message could not be written");
        rc = EMAIL_EIO;
    }
    return rc;
}

/* Renames the temporary file to the entry's name (never over another) and syncs the folder. */
static int publish(outbox_entry_t *e, const char *tmp, char *err, size_t errlen)
{
    char name[32];
    int dirfd = email__outbox_dirfd(e->ob);
    email__outbox_name(e->meta.id, false, name);
    if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST)
            snprintf(err, errlen, "outbox \"%s\" already holds an entry with id %llu (a "
                     "message made before email_set_outbox?)", email__outbox_dir(e->ob),
                     (unsigned long long)e->meta.id);
        else
            io_error(err, errlen, e->ob, "the entry could not be renamed");
        return EMAIL_EIO;
    }
    if ((errno = email__outbox_sync_dir(e->ob)) != 0) {
        io_error(err, errlen, e->ob, "the folder could not be synced");
        unlinkat(dirfd, name, 0);
        return EMAIL_EIO;
    }
    return 0;
}

int email__outbox_put(outbox_t *ob, const outbox_meta_t *meta,
                      ssize_t (*read)(void *ctx, char *buf, size_t n), void *ctx,
                      outbox_entry_t **out, char *err, size_t errlen)
{
    err[0] = '\0';
    int rc = email__outbox_claim(ob, meta->id);
    if (rc) {
        snprintf(err, errlen, rc == EMAIL_EBUSY ? "outbox: id %llu is in use"
                                                : "outbox: the id cannot be locked",
                 (unsigned long long)meta->id);
        return rc;
    }
    outbox_entry_t *e = calloc(1, sizeof *e);
    if (e) {
        e->ob = email__outbox_ref(ob);
        e->fd = -1;
    }
    if (!e || meta_copy(&e->meta, meta) != 0) {
        if (e)
            email__outbox_entry_free(e, true);
        else
            email__outbox_unclaim(ob, meta->id);
        snprintf(err, errlen, "out of memory");
        return EMAIL_ENOMEM;
    }
    e->meta.queued = (int64_t)time(NULL);
    char tmp[32];
    email__outbox_name(meta->id, true, tmp);
    int fd = openat(email__outbox_dirfd(ob), tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        io_error(err, errlen, ob, "the entry could not be created");
        rc = EMAIL_EIO;
    } else {
        rc = write_entry(e, fd, read, ctx, err, errlen);
        close(fd);
        rc = rc ? rc : publish(e, tmp, err, errlen);
        if (rc)
            unlinkat(email__outbox_dirfd(ob), tmp, 0);
    }
    if (rc) {
        email__outbox_entry_free(e, true);
        return rc;
    }
    *out = e;
    return 0;
}

static int read_all(int fd, void *data, size_t n, off_t at)
{
    char *p = data;
    while (n) {
        ssize_t r = pread(fd, p, n, at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
        at += r;
    }
    return 0;
}

/* The header's fields checked against the name and the file's size; the envelope read. */
static int load_header(outbox_entry_t *e, int fd, uint64_t id, unsigned char digest[DIGEST],
                       gnutls_hash_hd_t h, char *err, size_t errlen)
{
    unsigned char head[HEADER];
    struct stat st;
    if (fstat(fd, &st) != 0 || read_all(fd, head, HEADER, 0) != 0 || memcmp(head, MAGIC, 8) ||
        email__get_le(head + 8, 4) != VERSION) {
        snprintf(err, errlen, "not an outbox entry, or truncated before its envelope");
        return EMAIL_EIO;
    }
    e->flags = (uint32_t)email__get_le(head + OUTBOX_FLAGS_AT, 4);
    e->body_len = email__get_le(head + 24, 8);
    uint64_t meta_len = email__get_le(head + 32, 4);
    e->data_off = HEADER + meta_len;
    memcpy(digest, head + 36, DIGEST);
    if (email__get_le(head + 16, 8) != id || meta_len > META_MAX || (e->flags & ~OUTBOX_F_EOD_SENT) ||
        (uint64_t)st.st_size != e->data_off + e->body_len) {
        snprintf(err, errlen, "%s", (uint64_t)st.st_size < e->data_off + e->body_len
                                        ? "truncated" : "a header field is wrong");
        return EMAIL_EIO;
    }
    unsigned char *meta = malloc(meta_len ? meta_len : 1);
    if (!meta)
        return EMAIL_ENOMEM;
    int rc = read_all(fd, meta, meta_len, HEADER) != 0 ? EMAIL_EIO
             : decode_meta(meta, meta_len, &e->meta);
    if (!rc && h)
        gnutls_hash(h, meta, meta_len);
    free(meta);
    if (rc == EMAIL_EIO)
        snprintf(err, errlen, "its envelope does not parse");
    e->meta.id = id;
    return rc;
}

/* Hashes the body and compares the checksum. */
static int verify_body(outbox_entry_t *e, int fd, gnutls_hash_hd_t h,
                       const unsigned char digest[DIGEST], char *err, size_t errlen)
{
    char buf[65536];
    for (uint64_t at = 0; at < e->body_len;) {
        size_t n = e->body_len - at < sizeof buf ? (size_t)(e->body_len - at) : sizeof buf;
        if (read_all(fd, buf, n, (off_t)(e->data_off + at)) != 0) {
            snprintf(err, errlen, "its body cannot be read: %s", strerror(errno));
            return EMAIL_EIO;
        }
        gnutls_hash(h, buf, n);
        at += n;
    }
    unsigned char got[DIGEST];
    digest_tail(h, e->meta.id, e->body_len, (uint32_t)(e->data_off - HEADER), got);
    if (memcmp(got, digest, DIGEST) != 0) {
        snprintf(err, errlen, "bad checksum");
        return EMAIL_EIO;
    }
    return 0;
}

int email__outbox_load(outbox_t *ob, const char *name, bool verify, outbox_entry_t **out,
                       char *err, size_t errlen)
{
    uint64_t id = strtoull(name, NULL, 16);
    int fd = openat(email__outbox_dirfd(ob), name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? EMAIL_ENOTFOUND : (io_error(err, errlen, ob, name), EMAIL_EIO);
    outbox_entry_t *e = calloc(1, sizeof *e);
    gnutls_hash_hd_t h = NULL;
    if (!e || (verify && gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)) {
        free(e);
        close(fd);
        return EMAIL_ENOMEM;
    }
    e->ob = email__outbox_ref(ob);
    e->fd = -1;
    unsigned char digest[DIGEST];
    int rc = load_header(e, fd, id, digest, h, err, errlen);
    if (!rc && h) {
        rc = verify_body(e, fd, h, digest, err, errlen);
        h = NULL; /* verify_body ended it */
    }
    if (h)
        gnutls_hash_deinit(h, NULL);
    close(fd);
    if (rc) {
        email__outbox_entry_free(e, false);
        return rc;
    }
    *out = e;
    return 0;
}

/* The entry's file opened for reading and marking. */
static int entry_open(outbox_entry_t *e)
{
    if (e->fd >= 0)
        return 0;
    char name[32];
    email__outbox_name(e->meta.id, false, name);
    e->fd = openat(email__outbox_dirfd(e->ob), name, O_RDWR | O_CLOEXEC);
    if (e->fd < 0)
        snprintf(e->error, sizeof e->error, "outbox entry %s cannot be opened: %s", name,
                 strerror(errno));
    return e->fd < 0 ? EMAIL_EIO : 0;
}

ssize_t email__outbox_entry_read(outbox_entry_t *e, char *buf, size_t n)
{
    if (entry_open(e) != 0)
        return EMAIL_EIO;
    uint64_t left = e->body_len - e->body_off;
    if (!left)
        return 0;
    size_t want = left < n ? (size_t)left : n;
    ssize_t got = pread(e->fd, buf, want, (off_t)(e->data_off + e->body_off));
    if (got <= 0) {
        snprintf(e->error, sizeof e->error, "outbox entry %llu cannot be read: %s",
                 (unsigned long long)e->meta.id, got ? strerror(errno) : "truncated");
        return EMAIL_EIO;
    }
    e->body_off += (uint64_t)got;
    return got;
}

void email__outbox_entry_rewind(outbox_entry_t *e)
{
    e->body_off = 0;
}

void email__outbox_entry_free(outbox_entry_t *e, bool claimed)
{
    if (e->fd >= 0)
        close(e->fd);
    if (claimed)
        email__outbox_unclaim(e->ob, e->meta.id);
    email__outbox_release(e->ob);
    email__outbox_meta_clear(&e->meta);
    free(e);
}

void email__outbox_entry_settle(outbox_entry_t *e, enum outbox_verdict verdict)
{
    if (verdict == OUTBOX_REMOVE) {
        char name[32];
        email__outbox_name(e->meta.id, false, name);
        unlinkat(email__outbox_dirfd(e->ob), name, 0);
    } else if ((verdict == OUTBOX_KEEP) == !!(e->flags & OUTBOX_F_EOD_SENT)) {
        /* kept: its end of data never went out after all (a plain retry later), or it did */
        email__marks_append(email__outbox_marks(e->ob), &e->meta.id, 1,
                            verdict == OUTBOX_KEEP_UNKNOWN, false);
    }
    email__outbox_entry_free(e, true);
}
