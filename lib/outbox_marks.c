/*
 * The outbox's marks: an entry is marked before its end of data can go out, so that a crash
 * before the server's reply makes it EMAIL_EUNKNOWN after the restart instead of sent again.
 *
 * A mark is a record appended to <dir>/.marks and fdatasynced before the end of data goes
 * (never on the loop thread: the transporter runs it on libuv's thread pool). Threads marking at
 * once share one fdatasync (group commit), and the transporter marks the next messages of a
 * connection with the one whose end of data waits, so one fsync covers a flight.
 * A record (16 bytes): "MK", 'S' (marked) or 'C' (cleared), 0, the id (8 bytes, little-endian),
 * FNV-1a of the first 12 bytes. The last record of an id wins over the flag in the entry's
 * header (where marks were kept before the journal, and where compaction carries them).
 * Records are found by their check, not by their offset: a torn one (a crash, a full disk) is
 * skipped, and it was never synced, so no end of data waited for it.
 *
 * What a crash leaves, and why it is safe:
 *   - a mark whose end of data never went out (the crash came first, or the mark was taken
 *     ahead for a later message of the flight): the entry is reported EMAIL_EUNKNOWN although
 *     the server never had it; resent on request, it arrives once. Never a duplicate unreported.
 *   - a clear (the connection ended before the end of data) is appended without a sync: lost,
 *     the same false EMAIL_EUNKNOWN.
 * The journal is a fixed area of zeros (MARKS_SIZE, written and synced once): a record is
 * written into the first free slot, so its fdatasync flushes data only, never the file's size
 * (an append costs a commit of ext4's journal per mark). When no slot is left the journal is
 * compacted: the states of the entries still there are carried into their headers (marks
 * fdatasynced), then the area is zeroed again (grown instead when that fails). Writers of every
 * process hold the write lock on its byte 0 (an open file description lock), so no record lands
 * between the copy and the zeroing.
 */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include "outbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#ifndef F_OFD_SETLK
#define F_OFD_SETLK F_SETLK
#define F_OFD_SETLKW F_SETLKW
#endif

#define RECORD 16
#define MARKS_SIZE (64 * 1024)

struct outbox_marks {
    int fd, dirfd;               /* dirfd: the outbox's, borrowed */
    pthread_mutex_t lock;        /* writes and compaction, in this process */
    off_t next;                  /* the first slot that may be free */
    outbox_gsync_t sync;
};

int email__outbox_gsync(outbox_gsync_t *g, pthread_mutex_t *lock, int fd, bool data)
{
    int rc = 0;
    uint64_t mine = ++g->announced;
    while (!rc && g->synced < mine) {
        if (g->syncing) { /* a sync under way may have started before this change: wait */
            pthread_cond_wait(&g->cond, lock);
            continue;
        }
        g->syncing = true;
        uint64_t covers = g->announced;
        pthread_mutex_unlock(lock);
        rc = (data ? fdatasync(fd) : fsync(fd)) != 0 ? errno : 0;
        pthread_mutex_lock(lock);
        g->syncing = false;
        if (!rc && covers > g->synced)
            g->synced = covers;
        pthread_cond_broadcast(&g->cond);
    }
    return rc;
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}


static void make_record(unsigned char r[RECORD], uint64_t id, bool marked)
{
    r[0] = 'M';
    r[1] = 'K';
    r[2] = marked ? 'S' : 'C';
    r[3] = 0;
    email__put_le(r + 4, id, 8);
    email__put_le(r + 12, fnv1a(r, 12), 4);
}

static bool valid_record(const unsigned char *r)
{
    return r[0] == 'M' && r[1] == 'K' && (r[2] == 'S' || r[2] == 'C') && r[3] == 0 &&
           email__get_le(r + 12, 4) == fnv1a(r, 12);
}

static int byte0_lock(int fd, short type, bool wait)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    return fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
}

outbox_marks_t *email__marks_open(int dirfd)
{
    outbox_marks_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->fd = openat(dirfd, ".marks", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (m->fd < 0) {
        free(m);
        return NULL;
    }
    m->dirfd = dirfd;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->sync.cond, NULL);
    return m;
}

void email__marks_free(outbox_marks_t *m)
{
    if (!m)
        return;
    close(m->fd);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->sync.cond);
    free(m);
}

static int by_id(const void *a, const void *b)
{
    const mark_state_t *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int by_id_only(const void *a, const void *b)
{
    const mark_state_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Every id's last state in the journal, sorted by id: 0 or an errno. */
static int read_states(outbox_marks_t *m, mark_state_t **out, size_t *nout)
{
    struct stat st;
    if (fstat(m->fd, &st) != 0)
        return errno;
    size_t size = (size_t)st.st_size, n = 0;
    unsigned char *buf = malloc(size ? size : 1);
    mark_state_t *v = malloc((size / RECORD + 1) * sizeof *v);
    ssize_t got = buf && v ? pread(m->fd, buf, size, 0) : -1;
    for (size_t at = 0; got > 0 && at + RECORD <= (size_t)got;) {
        if (!valid_record(buf + at)) {
            at++; /* a torn record: the next one starts somewhere after it */
            continue;
        }
        v[n] = (mark_state_t){email__get_le(buf + at + 4, 8), n, buf[at + 2] == 'S'};
        n++;
        at += RECORD;
    }
    int rc = !buf || !v ? ENOMEM : got < 0 ? errno : 0;
    free(buf);
    if (rc) {
        free(v);
        return rc;
    }
    qsort(v, n, sizeof *v, by_id);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) /* the last record of each id wins */
        if (i + 1 == n || v[i + 1].id != v[i].id)
            v[k++] = v[i];
    *out = v;
    *nout = k;
    return 0;
}

uint32_t email__marks_header_flags(int dirfd, uint64_t id, int *fd_out)
{
    char name[32];
    email__outbox_name(id, false, name);
    int fd = openat(dirfd, name, O_RDWR | O_CLOEXEC);
    unsigned char p[4] = {0};
    if (fd >= 0 && pread(fd, p, 4, OUTBOX_FLAGS_AT) != 4) {
        close(fd);
        fd = -1;
    }
    if (fd_out)
        *fd_out = fd;
    else if (fd >= 0)
        close(fd);
    return (uint32_t)email__get_le(p, 4);
}

/* Carries s into its entry's header (a mark fdatasynced); true when done or the entry is gone. */
static bool carry(outbox_marks_t *m, const mark_state_t *s)
{
    int fd;
    uint32_t flags = email__marks_header_flags(m->dirfd, s->id, &fd);
    if (fd < 0)
        return errno == ENOENT;
    uint32_t want = s->marked ? flags | OUTBOX_F_EOD_SENT : flags & ~OUTBOX_F_EOD_SENT;
    unsigned char p[4];
    email__put_le(p, want, 4);
    bool ok = want == flags || (pwrite(fd, p, 4, OUTBOX_FLAGS_AT) == 4 &&
                                (!s->marked || fdatasync(fd) == 0));
    close(fd);
    return ok;
}

/* Writes zeros over [from, to) of the journal and syncs them: 0 or an errno. */
static int zero_fill(outbox_marks_t *m, off_t from, off_t to)
{
    static const unsigned char zeros[4096];
    for (off_t at = from; at < to; at += (off_t)sizeof zeros)
        if (pwrite(m->fd, zeros, sizeof zeros, at) != (ssize_t)sizeof zeros)
            return errno ? errno : ENOSPC;
    return fsync(m->fd) != 0 ? errno : 0;
}

/* Room for a batch: the states carried into the headers and the area zeroed, or (that failing)
 * the area grown. Write lock and m->lock held. 0 or an errno. */
static int make_room(outbox_marks_t *m, off_t size)
{
    mark_state_t *v = NULL;
    size_t n = 0;
    bool ok = read_states(m, &v, &n) == 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = carry(m, &v[i]);
    free(v);
    int rc = ok ? zero_fill(m, 0, size) : zero_fill(m, size, size + MARKS_SIZE);
    m->next = ok ? 0 : size;
    return rc;
}

/* The offset of `len` free bytes (all zeros) at or after m->next; write lock and m->lock held. */
static int find_slot(outbox_marks_t *m, size_t len, off_t *at)
{
    struct stat st;
    if (fstat(m->fd, &st) != 0)
        return errno;
    off_t size = st.st_size - st.st_size % RECORD;
    int rc = size < MARKS_SIZE ? zero_fill(m, size, MARKS_SIZE) : 0;
    size = size < MARKS_SIZE ? MARKS_SIZE : size;
    unsigned char buf[8 * RECORD], zeros[8 * RECORD] = {0};
    while (!rc) {
        if (m->next + (off_t)len > size) {
            rc = make_room(m, size);
            size = m->next ? m->next + MARKS_SIZE : size;
            continue;
        }
        if (pread(m->fd, buf, len, m->next) != (ssize_t)len)
            return errno ? errno : EIO;
        if (!memcmp(buf, zeros, len)) {
            *at = m->next;
            return 0;
        }
        m->next += RECORD; /* written by another process, or before this one opened it */
    }
    return rc;
}

int email__marks_append(outbox_marks_t *m, const uint64_t *ids, size_t n, bool marked,
                        bool sync)
{
    unsigned char r[8 * RECORD];
    if (n > 8)
        return EINVAL;
    for (size_t i = 0; i < n; i++)
        make_record(r + i * RECORD, ids[i], marked);
    pthread_mutex_lock(&m->lock);
    off_t at = 0;
    int rc = byte0_lock(m->fd, F_WRLCK, true) != 0 ? errno : find_slot(m, n * RECORD, &at);
    if (!rc) {
        rc = pwrite(m->fd, r, n * RECORD, at) == (ssize_t)(n * RECORD) ? 0 : errno ? errno : EIO;
        m->next = at + (off_t)(n * RECORD);
    }
    byte0_lock(m->fd, F_UNLCK, false);
    if (!rc && sync)
        rc = email__outbox_gsync(&m->sync, &m->lock, m->fd, true);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int email__marks_apply(outbox_marks_t *m, outbox_entry_t **v, size_t n)
{
    mark_state_t *s;
    size_t ns;
    int rc = read_states(m, &s, &ns);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        mark_state_t key = {.id = v[i]->meta.id};
        mark_state_t *hit = ns ? bsearch(&key, s, ns, sizeof *s, by_id_only) : NULL;
        /* read again after the journal: a mark compaction carried meanwhile is in the header
         * now (the entries are claimed: nobody marks them any more) */
        uint32_t flags = v[i]->flags;
        if (!hit)
            flags |= email__marks_header_flags(m->dirfd, v[i]->meta.id, NULL);
        v[i]->flags = hit ? (hit->marked ? flags | OUTBOX_F_EOD_SENT
                                         : flags & ~OUTBOX_F_EOD_SENT)
                          : flags;
    }
    free(s);
    return 0;
}
